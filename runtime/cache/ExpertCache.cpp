//===- ExpertCache.cpp - Experts in memory under a byte budget ------------===//

#include "runtime/cache/ExpertCache.h"

#include <algorithm>

#include <cassert>
#include <cstdlib>
#include <cstring>

namespace moec::cache {

namespace {
uint64_t alignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
void freeArena(uint8_t *p) { std::free(p); }
} // namespace

ExpertCache::ExpertCache(uint64_t capacityBytes, uint32_t alignment,
                         EvictionPolicy policy, uint64_t agingPeriod)
    : capacity(capacityBytes / alignment * alignment), alignment(alignment),
      policy(policy), agingPeriod(agingPeriod ? agingPeriod : 1),
      arena(nullptr, freeArena) {
  assert(alignment && (alignment & (alignment - 1)) == 0);
  // Allocated once, aligned for O_DIRECT reads straight into the slots.
  arena.reset(static_cast<uint8_t *>(
      std::aligned_alloc(alignment, capacity ? capacity : alignment)));
  // Touched now: the budget is real memory from the start, and reads into
  // the slots do not stop to fault pages in.
  if (arena)
    std::memset(arena.get(), 0, capacity ? capacity : alignment);
  if (capacity)
    freeRanges[0] = capacity;
}

ExpertCache::~ExpertCache() = default;

void ExpertCache::touch(Entry &e) {
  e.lastUse = ++clock;
  ++e.frequency;
}

void ExpertCache::age() {
  if (++lookupsSinceAging < agingPeriod)
    return;
  lookupsSinceAging = 0;
  for (auto &[k, e] : entries)
    e.frequency /= 2;
}

uint8_t *ExpertCache::lookup(uint32_t layer, uint32_t expert) {
  age();
  auto it = entries.find(key(layer, expert));
  if (it == entries.end()) {
    ++stats.misses;
    return nullptr;
  }
  ++stats.hits;
  touch(it->second);
  return arena.get() + it->second.offset;
}

bool ExpertCache::contains(uint32_t layer, uint32_t expert) const {
  return entries.count(key(layer, expert)) != 0;
}

void ExpertCache::freeRange(const Entry &e) {
  uint64_t offset = e.offset, size = e.size;
  auto next = freeRanges.lower_bound(offset);
  if (next != freeRanges.end() && offset + size == next->first) {
    size += next->second;
    next = freeRanges.erase(next);
  }
  if (next != freeRanges.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == offset) {
      prev->second += size;
      return;
    }
  }
  freeRanges[offset] = size;
}

uint64_t ExpertCache::allocate(uint64_t size) {
  auto best = freeRanges.end();
  for (auto it = freeRanges.begin(); it != freeRanges.end(); ++it)
    if (it->second >= size &&
        (best == freeRanges.end() || it->second < best->second))
      best = it;
  if (best == freeRanges.end())
    return UINT64_MAX;
  uint64_t offset = best->first, rest = best->second - size;
  freeRanges.erase(best);
  if (rest)
    freeRanges[offset + size] = rest;
  return offset;
}

std::unordered_map<uint64_t, ExpertCache::Entry>::iterator
ExpertCache::victim() {
  auto best = entries.end();
  for (auto it = entries.begin(); it != entries.end(); ++it) {
    const Entry &e = it->second;
    if (e.pinned || e.inUse)
      continue;
    if (best == entries.end()) {
      best = it;
      continue;
    }
    const Entry &b = best->second;
    // Layers away until the next visit: the current layer's other experts
    // are needed by the next token only (layerCount - 1 away), the next
    // layer's at once (0).
    auto distance = [&](uint64_t key) -> uint32_t {
      if (!layerCount)
        return 0;
      uint32_t layer = uint32_t(key >> 32) % layerCount;
      return (layer + layerCount - currentLayer - 1) % layerCount;
    };
    bool better;
    if (policy == EvictionPolicy::LRU) {
      better = e.lastUse < b.lastUse;
    } else {
      uint32_t de = distance(it->first), db = distance(best->first);
      better = de > db ||
               (de == db && (e.frequency < b.frequency ||
                             (e.frequency == b.frequency &&
                              e.lastUse < b.lastUse)));
    }
    if (better)
      best = it;
  }
  return best;
}

uint8_t *ExpertCache::insert(uint32_t layer, uint32_t expert, uint64_t size,
                             std::string &error) {
  assert(!contains(layer, expert) && "expert already cached");
  uint64_t slot = alignUp(std::max<uint64_t>(size ? size : 1, minimumSlot),
                          alignment);
  uint64_t offset;
  while ((offset = allocate(slot)) == UINT64_MAX) {
    auto v = victim();
    if (v == entries.end()) {
      uint64_t locked = 0;
      for (auto &[k, e] : entries)
        locked += e.size;
      error = "the expert cache (" + std::to_string(capacity) +
              " bytes) has no room for an expert of " + std::to_string(slot) +
              " bytes: " + std::to_string(locked) +
              " bytes are pinned or in use";
      return nullptr;
    }
    freeRange(v->second);
    used -= v->second.size;
    ++stats.evictions;
    entries.erase(v);
  }
  Entry e{offset, slot, 0, 0};
  touch(e);
  entries.emplace(key(layer, expert), e);
  used += slot;
  stats.bytesInserted += size;
  return arena.get() + offset;
}

void ExpertCache::pin(uint32_t layer, uint32_t expert, bool pinned) {
  auto it = entries.find(key(layer, expert));
  if (it != entries.end())
    it->second.pinned = pinned;
}

void ExpertCache::acquire(uint32_t layer, uint32_t expert) {
  auto it = entries.find(key(layer, expert));
  if (it != entries.end())
    ++it->second.inUse;
}

void ExpertCache::release(uint32_t layer, uint32_t expert) {
  auto it = entries.find(key(layer, expert));
  if (it != entries.end() && it->second.inUse)
    --it->second.inUse;
}

} // namespace moec::cache
