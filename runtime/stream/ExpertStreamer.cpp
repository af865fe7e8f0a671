//===- ExpertStreamer.cpp - Experts from the bundle into the cache --------===//

#include "runtime/stream/ExpertStreamer.h"

#include <chrono>
#include <cstring>

namespace moec::stream {

namespace {
uint64_t key(uint32_t layer, uint32_t expert) {
  return (uint64_t(layer) << 32) | expert;
}
uint64_t alignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
} // namespace

ExpertStreamer::ExpertStreamer(const bundle::Bundle &bundle, int fd,
                               cache::ExpertCache &cache,
                               io::IoEngine &engine)
    : bundle(bundle), fd(fd), cache(cache), engine(engine) {}

bool ExpertStreamer::submit(uint32_t layer, uint32_t expert, bool wanted,
                            std::string &error) {
  const moec_bundle_expert *e = bundle.findExpert(layer, expert);
  if (!e) {
    error = "the bundle has no expert " + std::to_string(expert) +
            " in layer " + std::to_string(layer);
    return false;
  }
  // Whole I/O blocks: the file ends on one, and the slot is as large.
  uint64_t size = alignUp(e->size, bundle.getHeader().io_block);
  uint8_t *slot = cache.insert(layer, expert, size, error);
  // Prefetches in flight hold their slots until read: a wanted expert
  // waits for them to land (and become evictable) rather than fail.
  while (!slot && wanted) {
    bool prefetching = false;
    for (const auto &[k, f] : inFlight)
      prefetching |= !f.wanted;
    if (!prefetching)
      return false;
    std::vector<io::Completion> done;
    engine.poll(done, /*block=*/true);
    for (const io::Completion &c : done)
      if (!complete(c, finished, error))
        return false;
    error.clear();
    slot = cache.insert(layer, expert, size, error);
  }
  if (!slot)
    return false;
  cache.acquire(layer, expert); // not evictable while being read
  inFlight[key(layer, expert)] = {e, slot, wanted, !wanted};
  engine.submit({{fd, e->offset, size, slot, key(layer, expert)}});
  ++stats.reads;
  stats.bytesRead += size;
  if (!wanted)
    ++stats.prefetches;
  return true;
}

bool ExpertStreamer::request(uint32_t layer,
                             const std::vector<uint32_t> &experts,
                             std::vector<ReadyExpert> &ready,
                             std::string &error) {
  // Two passes: the cached and in-flight experts are taken (put in use)
  // first, so that reading the missed ones cannot evict them.
  if (layerCount)
    cache.setCurrentLayer(layer, layerCount);
  std::vector<uint32_t> missed;
  for (uint32_t x : experts) {
    auto flying = inFlight.find(key(layer, x));
    if (flying != inFlight.end()) {
      // A prefetch is already reading it: wait for that read.
      if (!flying->second.wanted) {
        flying->second.wanted = true;
        ++wantedOutstanding;
        ++stats.prefetchHits;
      }
      continue;
    }
    if (uint8_t *data = cache.lookup(layer, x)) {
      cache.acquire(layer, x);
      ready.push_back({layer, x, data, bundle.findExpert(layer, x)});
      continue;
    }
    missed.push_back(x);
  }
  for (uint32_t x : missed) {
    if (!submit(layer, x, /*wanted=*/true, error))
      return false;
    ++wantedOutstanding;
  }
  return true;
}

bool ExpertStreamer::prefetch(uint32_t layer,
                              const std::vector<uint32_t> &experts,
                              std::string &error) {
  for (uint32_t x : experts)
    if (!inFlight.count(key(layer, x)) && !cache.contains(layer, x))
      if (!submit(layer, x, /*wanted=*/false, error))
        return false;
  return true;
}

bool ExpertStreamer::complete(const io::Completion &c,
                              std::vector<ReadyExpert> &out,
                              std::string &error) {
  auto it = inFlight.find(c.tag);
  if (it == inFlight.end())
    return true;
  InFlight f = it->second;
  inFlight.erase(it);
  if (f.wanted)
    --wantedOutstanding; // handed out below, or failed
  uint32_t layer = uint32_t(c.tag >> 32), expert = uint32_t(c.tag);
  if (c.error) {
    error = "reading layer " + std::to_string(layer) + " expert " +
            std::to_string(expert) + " at offset " +
            std::to_string(f.entry->offset) + ": " + std::strerror(c.error);
    return false;
  }
  if (bundle::checksum(f.slot, f.entry->size) != f.entry->checksum) {
    error = "offset " + std::to_string(f.entry->offset) + ": extent of layer " +
            std::to_string(layer) + " expert " + std::to_string(expert) +
            ": checksum mismatch";
    return false;
  }
  if (f.wanted)
    out.push_back({layer, expert, f.slot, f.entry});
  else
    cache.release(layer, expert); // prefetched: cached, not in use
  return true;
}

bool ExpertStreamer::next(ReadyExpert &out, std::string &error, bool wait) {
  error.clear();
  auto start = std::chrono::steady_clock::now();
  // Not waiting: one look at what has completed.
  bool looked = false;
  while (finished.empty() && wantedOutstanding > 0 && (wait || !looked)) {
    looked = true;
    std::vector<io::Completion> done;
    if (engine.poll(done, wait) == 0 && wait && engine.getPending() == 0) {
      error = "internal error: waiting for an expert that no read brings";
      return false;
    }
    for (const io::Completion &c : done)
      if (!complete(c, finished, error))
        return false;
  }
  if (wait)
    stats.stallSeconds += std::chrono::duration<double>(
                              std::chrono::steady_clock::now() - start)
                              .count();
  if (finished.empty())
    return false;
  out = finished.back();
  finished.pop_back();
  return true;
}

void ExpertStreamer::release(uint32_t layer, uint32_t expert) {
  cache.release(layer, expert);
}

} // namespace moec::stream
