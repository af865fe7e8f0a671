//===- Model.cpp - Running compiled model code on the CPU -----------------===//

#include "runtime/exec/Model.h"

#include "runtime/bundle/Bundle.h"
#include "runtime/exec/BarrierProfile.h"
#include "runtime/exec/Calibration.h"
#include "runtime/exec/ThreadPool.h"
#include "runtime/stream/ExpertStreamer.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <set>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <unordered_map>

//===----------------------------------------------------------------------===//
// The context the compiled code hands back to the runtime's callbacks
//===----------------------------------------------------------------------===//

/// One per model, reused by every forward call. The compiled code sees it
/// as an opaque pointer (moec_abi.h).
struct moec_rt_context_t {
  moec::exec::Model *model = nullptr;
  moec::exec::ThreadPool *pool = nullptr;
  /// Set during the decode steps of a profiled model (BarrierProfile.h).
  moec::exec::BarrierProfile *barrierProfile = nullptr;
  uint32_t layers = 0, expertsPerLayer = 0;
  /// Byte offset of each (layer, expert) extent in the experts buffer,
  /// index layer * expertsPerLayer + expert.
  std::vector<int64_t> expertOffsets;
  /// Acquires not yet released, per expert and in all, this call.
  std::vector<uint32_t> inUse;
  uint64_t outstanding = 0;
  moec::exec::ModelStats stats;
  /// moec_rt_routing's view of the running call: where its scratch buffer
  /// starts and how big it is, the batch's first position, and whether
  /// (and where) routing is recorded.
  const uint8_t *scratch = nullptr;
  uint64_t scratchBytes = 0;
  int64_t batchPosition = 0;
  uint32_t sequence = 0;
  bool recordRouting = false;
  /// Streaming (null streamer: every expert resident at expertOffsets).
  moec::stream::ExpertStreamer *streamer = nullptr;
  moec::cache::ExpertCache *cache = nullptr;
  const uint8_t *arena = nullptr;
  std::string bundlePath;
  bool prefetch = false;
  /// The experts of the layer being computed that are ready, by offset.
  int32_t readyLayer = -1;
  std::unordered_map<uint32_t, int64_t> ready;
  /// The layer's try-acquires (ABI 0.6): how many found their expert, and
  /// whether one did not (then the found ones were computed on while reads
  /// were in flight).
  uint64_t layerTryHits = 0;
  bool layerTryMissed = false;
  /// Per layer: the experts the last call used, the prediction made for
  /// this call and which of the predicted experts had to be read.
  std::vector<std::vector<uint32_t>> lastUsed, predicted;
  std::vector<std::vector<std::pair<uint32_t, uint64_t>>> prefetchReads;
  std::vector<moec::exec::RoutingRecord> routingRecords;
  std::vector<int32_t> routingIds;
  /// Calibration (instrumented code, ABI 0.5): what the observations add
  /// up to, and whether any arrived.
  std::unique_ptr<moec::exec::CalibrationRecorder> calibration;
  bool observed = false;
  /// The first breach of the ABI's contract seen in the running call; the
  /// code cannot be stopped mid-call, so the call fails when it returns.
  std::atomic<bool> failed{false};
  std::string error;

  /// The bundle's extent of (layer, expert), for prefetch accounting.
  std::function<const moec_bundle_expert *(uint32_t, uint32_t)>
      bundleExperts;
  void streamLayer(int32_t layer, const int32_t *ids, int64_t count);
  void prefetchPredicted(int32_t layer, const int32_t *ids, int64_t count);
  /// Starts reading `experts` of `layer` that are not cached, recording
  /// them as that layer's prediction.
  void prefetchExperts(uint32_t layer, std::vector<uint32_t> experts);
  /// Whether [offset, offset + bytes) lies inside the scratch buffer.
  bool inScratch(int64_t offset, uint64_t bytes) const {
    return offset >= 0 && uint64_t(offset) <= scratchBytes &&
           bytes <= scratchBytes - uint64_t(offset);
  }
  /// The compiled code predicts layers (moec_rt_predict, ABI 0.4): the
  /// history-based prediction is not used.
  bool codePredicts = false;
  /// The offset of a streamed expert of the layer being computed, waiting
  /// for its read (`wait`) or -1 while it is still in flight.
  int64_t streamedOffset(int32_t layer, int32_t expert, bool wait);
  /// Counts an acquire of expert `index` (released later).
  void countAcquire(size_t index) {
    ++inUse[index];
    ++outstanding;
    ++stats.expertAcquires;
    ++stats.acquiresPerExpert[index];
  }

  void fail(std::string message) {
    bool expected = false;
    if (failed.compare_exchange_strong(expected, true))
      error = std::move(message);
  }
  /// Thread 0 only, says the ABI: the bookkeeping here is not synchronised.
  bool onThreadZero(const char *function) {
    int index = moec::exec::ThreadPool::currentThreadIndex();
    if (index == 0)
      return true;
    fail(std::string("compiled code called ") + function +
         (index < 0 ? " outside a forward call"
                    : " on thread " + std::to_string(index)) +
         ": the ABI allows it on thread 0 only");
    return false;
  }
  bool findExpert(const char *function, int32_t layer, int32_t expert,
                  size_t &index) {
    if (layer < 0 || uint32_t(layer) >= layers || expert < 0 ||
        uint32_t(expert) >= expertsPerLayer) {
      fail(std::string("compiled code called ") + function + " for layer " +
           std::to_string(layer) + " expert " + std::to_string(expert) +
           ", but the model has " + std::to_string(layers) + " layers of " +
           std::to_string(expertsPerLayer) + " experts");
      return false;
    }
    index = size_t(layer) * expertsPerLayer + size_t(expert);
    return true;
  }
};

// Streaming, called on thread 0 from the callbacks below.
void moec_rt_context_t::streamLayer(int32_t layer, const int32_t *ids,
                                    int64_t count) {
  if (failed.load())
    return;
  std::set<uint32_t> wanted;
  for (int64_t i = 0; i < count; ++i)
    if (ids[i] >= 0 && uint32_t(ids[i]) < expertsPerLayer)
      wanted.insert(uint32_t(ids[i]));
  std::vector<uint32_t> experts(wanted.begin(), wanted.end());
  size_t l = size_t(layer);
  // How good the prediction made for this layer was.
  if (!predicted[l].empty()) {
    stats.predicted += predicted[l].size();
    stats.usedAfterPrediction += experts.size();
    for (uint32_t e : predicted[l])
      stats.predictedUsed += wanted.count(e);
    for (auto [e, bytes] : prefetchReads[l])
      if (!wanted.count(e))
        stats.wastedPrefetchBytes += bytes;
    predicted[l].clear();
    prefetchReads[l].clear();
  }
  std::vector<moec::stream::ReadyExpert> now;
  std::string why;
  ready.clear();
  readyLayer = layer;
  layerTryHits = 0;
  layerTryMissed = false;
  if (!streamer->request(uint32_t(layer), experts, now, why)) {
    fail(bundlePath + ": layer " + std::to_string(layer) + ": " + why);
    return;
  }
  for (const moec::stream::ReadyExpert &r : now)
    ready[r.expert] = int64_t(r.data - arena);
  // Predict the next layer: the experts it used last call (routing is
  // sticky between neighbouring tokens), read while this layer computes.
  if (prefetch && !codePredicts && l + 1 < layers &&
      !lastUsed[l + 1].empty())
    prefetchExperts(uint32_t(l + 1), lastUsed[l + 1]);
  lastUsed[l] = std::move(experts);
}

void moec_rt_context_t::prefetchPredicted(int32_t layer, const int32_t *ids,
                                          int64_t count) {
  codePredicts = true;
  if (failed.load() || !prefetch)
    return;
  std::set<uint32_t> wanted;
  for (int64_t i = 0; i < count; ++i)
    if (ids[i] >= 0 && uint32_t(ids[i]) < expertsPerLayer)
      wanted.insert(uint32_t(ids[i]));
  prefetchExperts(uint32_t(layer),
                  std::vector<uint32_t>(wanted.begin(), wanted.end()));
}

void moec_rt_context_t::prefetchExperts(uint32_t layer,
                                        std::vector<uint32_t> experts) {
  size_t l = layer;
  predicted[l] = std::move(experts);
  prefetchReads[l].clear();
  for (uint32_t e : predicted[l])
    if (!cache->contains(layer, e)) {
      std::string ignored;
      const moec_bundle_expert *entry = nullptr;
      // No room (everything in use) only means no prefetch.
      if (streamer->prefetch(layer, {e}, ignored) &&
          cache->contains(layer, e) &&
          (entry = bundleExperts ? bundleExperts(layer, e) : nullptr))
        prefetchReads[l].push_back({e, entry->size});
    }
}

int64_t moec_rt_context_t::streamedOffset(int32_t layer, int32_t expert,
                                          bool wait) {
  if (failed.load())
    return 0; // in bounds; the call fails when it returns
  if (layer != readyLayer) {
    fail("compiled code acquired layer " + std::to_string(layer) +
         " expert " + std::to_string(expert) + " before routing that layer");
    return 0;
  }
  auto it = ready.find(uint32_t(expert));
  std::string why;
  moec::stream::ReadyExpert r;
  while (it == ready.end()) {
    if (!streamer->next(r, why, wait)) {
      if (why.empty() && !wait)
        return -1; // still in flight
      fail(bundlePath + ": " +
           (why.empty() ? "layer " + std::to_string(layer) + " expert " +
                              std::to_string(expert) +
                              " was acquired but not routed to"
                        : why));
      return 0;
    }
    if (r.layer == uint32_t(layer))
      ready[r.expert] = int64_t(r.data - arena);
    it = ready.find(uint32_t(expert));
  }
  return it->second;
}

extern "C" void moec_rt_barrier(moec_rt_context_t *ctx) {
  moec::exec::BarrierProfile *profile = ctx->barrierProfile;
  if (!profile) {
    ctx->pool->barrier();
    return;
  }
  uint64_t arrived = moec::exec::readTicks();
  ctx->pool->barrier();
  uint64_t left = moec::exec::readTicks();
  profile->record(unsigned(moec::exec::ThreadPool::currentThreadIndex()),
                  reinterpret_cast<uintptr_t>(__builtin_return_address(0)),
                  arrived, left);
}

extern "C" int64_t moec_rt_expert_acquire(moec_rt_context_t *ctx, int32_t layer,
                                          int32_t expert) {
  size_t index;
  if (!ctx->onThreadZero("moec_rt_expert_acquire") ||
      !ctx->findExpert("moec_rt_expert_acquire", layer, expert, index))
    return 0; // in bounds, so that the call can run to its end and fail
  ctx->countAcquire(index);
  if (!ctx->streamer)
    return ctx->expertOffsets[index]; // all resident: a lookup
  // Streaming: the expert's slot in the cache, waiting for its read when it
  // is still in flight. After try-acquires that missed, the ones that hit
  // have been computed on while these reads landed.
  if (ctx->layerTryMissed) {
    ++ctx->stats.expertsWaitedFor;
    ctx->stats.expertsOverlapped += ctx->layerTryHits;
    ctx->layerTryHits = 0;
  }
  return ctx->streamedOffset(layer, expert, /*wait=*/true);
}

extern "C" int64_t moec_rt_expert_try_acquire(moec_rt_context_t *ctx,
                                              int32_t layer, int32_t expert) {
  size_t index;
  if (!ctx->onThreadZero("moec_rt_expert_try_acquire") ||
      !ctx->findExpert("moec_rt_expert_try_acquire", layer, expert, index))
    return 0; // in bounds, so that the call can run to its end and fail
  int64_t offset = ctx->streamer
                       ? ctx->streamedOffset(layer, expert, /*wait=*/false)
                       : ctx->expertOffsets[index];
  if (offset < 0) {
    ctx->layerTryMissed = true;
    return -1;
  }
  ctx->countAcquire(index);
  ++ctx->layerTryHits;
  return offset;
}

extern "C" void moec_rt_routing(moec_rt_context_t *ctx, int32_t layer,
                                int64_t tokens, int64_t topK,
                                int64_t idsOffset, int64_t weightsOffset) {
  if (!ctx->onThreadZero("moec_rt_routing"))
    return;
  uint64_t bytes = uint64_t(tokens) * uint64_t(topK) * 4;
  if (layer < 0 || uint32_t(layer) >= ctx->layers || tokens < 0 ||
      topK <= 0 || topK > int64_t(ctx->expertsPerLayer) ||
      !ctx->inScratch(idsOffset, bytes) ||
      !ctx->inScratch(weightsOffset, bytes)) {
    ctx->fail("compiled code reported routing outside its buffers (layer " +
              std::to_string(layer) + ", " + std::to_string(tokens) +
              " tokens, top-" + std::to_string(topK) + ")");
    return;
  }
  const int32_t *ids =
      reinterpret_cast<const int32_t *>(ctx->scratch + idsOffset);
  if (ctx->streamer)
    ctx->streamLayer(layer, ids, tokens * topK);
  if (ctx->calibration)
    ctx->calibration->recordRouting(
        layer, ids,
        reinterpret_cast<const float *>(ctx->scratch + weightsOffset), tokens,
        topK);
  if (!ctx->recordRouting)
    return;
  for (int64_t t = 0; t < tokens; ++t) {
    ctx->routingRecords.push_back(
        {ctx->sequence, int32_t(ctx->batchPosition + t), layer});
    ctx->routingIds.insert(ctx->routingIds.end(), ids + t * topK,
                           ids + (t + 1) * topK);
  }
}

extern "C" void moec_rt_predict(moec_rt_context_t *ctx, int32_t layer,
                                int64_t tokens, int64_t topK,
                                int64_t idsOffset) {
  if (!ctx->onThreadZero("moec_rt_predict"))
    return;
  uint64_t bytes = uint64_t(tokens) * uint64_t(topK) * 4;
  if (layer < 0 || uint32_t(layer) >= ctx->layers || tokens < 0 ||
      topK <= 0 || topK > int64_t(ctx->expertsPerLayer) ||
      !ctx->inScratch(idsOffset, bytes)) {
    ctx->fail("compiled code reported a prediction outside its buffers "
              "(layer " + std::to_string(layer) + ")");
    return;
  }
  if (ctx->streamer)
    ctx->prefetchPredicted(
        layer, reinterpret_cast<const int32_t *>(ctx->scratch + idsOffset),
        tokens * topK);
}

extern "C" void moec_rt_observe_input(moec_rt_context_t *ctx,
                                      const char *tensor, int64_t rows,
                                      int64_t cols, int64_t dataOffset,
                                      int64_t expertOffsetsOffset) {
  if (!ctx->onThreadZero("moec_rt_observe_input"))
    return;
  ctx->observed = true;
  if (!ctx->calibration)
    return;
  uint64_t experts = ctx->expertsPerLayer;
  bool byExpert = expertOffsetsOffset >= 0;
  if (!tensor || rows < 0 || cols <= 0 ||
      !ctx->inScratch(dataOffset, uint64_t(rows) * uint64_t(cols) * 4) ||
      (byExpert && !ctx->inScratch(expertOffsetsOffset, (experts + 1) * 4))) {
    ctx->fail("compiled code reported a projection input outside its "
              "buffers");
    return;
  }
  const int32_t *offsets =
      byExpert ? reinterpret_cast<const int32_t *>(ctx->scratch +
                                                   expertOffsetsOffset)
               : nullptr;
  if (offsets) {
    for (uint64_t e = 0; e < experts; ++e)
      if (offsets[e] < 0 || offsets[e] > offsets[e + 1] ||
          offsets[e + 1] > rows) {
        ctx->fail(std::string("compiled code reported expert rows of ") +
                  tensor + " that are not ordered within its " +
                  std::to_string(rows) + " rows");
        return;
      }
  }
  std::string error;
  if (!ctx->calibration->observeInput(
          tensor, reinterpret_cast<const float *>(ctx->scratch + dataOffset),
          rows, cols, offsets, error))
    ctx->fail(error);
}

extern "C" void moec_rt_observe_experts(moec_rt_context_t *ctx, int32_t layer,
                                        int64_t tokens, int64_t topK,
                                        int64_t cols, int64_t dataOffset,
                                        int64_t inverseOffset) {
  if (!ctx->onThreadZero("moec_rt_observe_experts"))
    return;
  ctx->observed = true;
  if (!ctx->calibration)
    return;
  uint64_t pairs = uint64_t(tokens) * uint64_t(topK);
  if (layer < 0 || uint32_t(layer) >= ctx->layers || tokens < 0 ||
      topK <= 0 || cols <= 0 || !ctx->inScratch(inverseOffset, pairs * 4) ||
      !ctx->inScratch(dataOffset, pairs * uint64_t(cols) * 4)) {
    ctx->fail("compiled code reported expert outputs outside its buffers");
    return;
  }
  std::string error;
  if (!ctx->calibration->observeExperts(
          layer, tokens, topK, cols,
          reinterpret_cast<const float *>(ctx->scratch + dataOffset),
          reinterpret_cast<const int32_t *>(ctx->scratch + inverseOffset),
          int64_t(pairs), error))
    ctx->fail(error);
}

extern "C" void moec_rt_expert_release(moec_rt_context_t *ctx, int32_t layer,
                                       int32_t expert) {
  size_t index;
  if (!ctx->onThreadZero("moec_rt_expert_release") ||
      !ctx->findExpert("moec_rt_expert_release", layer, expert, index))
    return;
  if (ctx->inUse[index] == 0) {
    ctx->fail("compiled code released layer " + std::to_string(layer) +
              " expert " + std::to_string(expert) +
              ", which it had not acquired");
    return;
  }
  --ctx->inUse[index];
  --ctx->outstanding;
  ++ctx->stats.expertReleases;
  if (ctx->streamer)
    ctx->streamer->release(uint32_t(layer), uint32_t(expert));
}

namespace moec::exec {

namespace {

uint64_t alignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

std::string at(const std::string &path, uint64_t offset) {
  return path + ": offset " + std::to_string(offset) + ": ";
}

/// A minimal JSON reader: enough to find one top-level integer in the
/// bundle's metadata without a JSON library in the runtime. The metadata
/// comes from a bundle whose tables checksum matched, so it is well formed
/// unless the writer was broken; anything unexpected is reported as such.
class JsonScanner {
public:
  explicit JsonScanner(const std::string &text) : s(text) {}

  enum class Found { Yes, No, Malformed };
  /// Looks for `key` in the top-level object; on Yes, `raw` is its value's
  /// text (a number, a string with quotes, ...).
  Found findTopLevel(const std::string &key, std::string &raw) {
    space();
    if (!eat('{'))
      return Found::Malformed;
    space();
    if (eat('}'))
      return Found::No;
    for (;;) {
      std::string name;
      if (!string(&name) || (space(), !eat(':')))
        return Found::Malformed;
      space();
      size_t begin = i;
      if (!value())
        return Found::Malformed;
      if (name == key) {
        raw = s.substr(begin, i - begin);
        return Found::Yes;
      }
      space();
      if (eat('}'))
        return Found::No;
      if (!eat(','))
        return Found::Malformed;
      space();
    }
  }

private:
  void space() {
    while (i < s.size() &&
           (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
      ++i;
  }
  bool eat(char c) {
    if (i < s.size() && s[i] == c) {
      ++i;
      return true;
    }
    return false;
  }
  bool string(std::string *out) {
    if (!eat('"'))
      return false;
    while (i < s.size() && s[i] != '"') {
      if (s[i] == '\\') { // keys of interest have no escapes: keep it raw
        if (out)
          out->push_back(s[i]);
        ++i;
        if (i == s.size())
          return false;
      }
      if (out)
        out->push_back(s[i]);
      ++i;
    }
    return eat('"');
  }
  bool value() {
    if (i >= s.size())
      return false;
    char c = s[i];
    if (c == '"')
      return string(nullptr);
    if (c == '{' || c == '[') {
      char close = c == '{' ? '}' : ']';
      ++i;
      space();
      if (eat(close))
        return true;
      for (;;) {
        if (c == '{') {
          if (!string(nullptr) || (space(), !eat(':')))
            return false;
          space();
        }
        if (!value())
          return false;
        space();
        if (eat(close))
          return true;
        if (!eat(','))
          return false;
        space();
      }
    }
    // A number or a literal: the run of characters that can make one.
    size_t begin = i;
    while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) ||
                            s[i] == '-' || s[i] == '+' || s[i] == '.'))
      ++i;
    return i > begin;
  }

  const std::string &s;
  size_t i = 0;
};

/// Parses a JSON integer that fits int64; false for anything else.
bool parseInteger(const std::string &raw, int64_t &out) {
  if (raw.empty() || raw.size() > 20)
    return false;
  size_t i = raw[0] == '-' ? 1 : 0;
  if (i == raw.size())
    return false;
  for (size_t j = i; j < raw.size(); ++j)
    if (raw[j] < '0' || raw[j] > '9')
      return false;
  errno = 0;
  char *end = nullptr;
  long long v = std::strtoll(raw.c_str(), &end, 10);
  if (errno == ERANGE || *end != '\0')
    return false;
  out = v;
  return true;
}

/// Why an info entry is out of range, or "".
std::string checkInfo(const int64_t *info, int index, const char *name,
                      int64_t lo, int64_t hi) {
  if (info[index] >= lo && info[index] <= hi)
    return "";
  return "model code: " + std::string(name) + " is " +
         std::to_string(info[index]) + ", outside " + std::to_string(lo) +
         ".." + std::to_string(hi) +
         ": the code is damaged or not moec model "
         "code";
}

/// Enables the processor state the code uses (MOEC_INFO_CPU_STATE) for
/// this process, or says why it cannot be: "" when all is granted.
std::string enableCpuState(int64_t state) {
  if (state & ~int64_t(MOEC_CPU_STATE_AMX_TILE))
    return "processor state " + std::to_string(state) +
           " has bits no moec ABI defines: the code is damaged or not moec "
           "model code";
  if (state & MOEC_CPU_STATE_AMX_TILE) {
#if defined(__linux__) && defined(__x86_64__)
    // ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA (asm/prctl.h, Linux 5.16):
    // the permission is the process's, so every pool thread may use tiles.
    constexpr long kReqXcompPerm = 0x1023, kXtileData = 18;
    if (::syscall(SYS_arch_prctl, kReqXcompPerm, kXtileData) != 0)
      return std::string("it uses AMX tiles, and the kernel does not grant "
                         "this process their state (arch_prctl: ") +
             std::strerror(errno) +
             "); compile the model for a target without AMX (for example "
             "--target=x86_64-avx512)";
#else
    return "it uses AMX tiles, which this runtime can only enable on Linux "
           "x86-64; compile the model for a target without AMX";
#endif
  }
  return "";
}

} // namespace

//===----------------------------------------------------------------------===//
// Region
//===----------------------------------------------------------------------===//

namespace {
// What an empty buffer points at: never null, aligned like the others.
alignas(64) uint8_t emptyRegion[64];
} // namespace

Region::~Region() {
  if (mapped)
    ::munmap(base, mapped);
}

uint64_t Region::hugePageBytes() {
#if defined(__linux__)
  static const uint64_t bytes = [] {
    if (FILE *f =
            std::fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r")) {
      char setting[128] = {}; // "always [madvise] never"
      size_t n = std::fread(setting, 1, sizeof(setting) - 1, f);
      std::fclose(f);
      if (n && std::strstr(setting, "[never]"))
        return uint64_t(0);
    }
    uint64_t v = 0;
    if (FILE *f = std::fopen(
            "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", "r")) {
      unsigned long long read = 0;
      if (std::fscanf(f, "%llu", &read) == 1)
        v = read;
      std::fclose(f);
    }
    // A 512 MiB PMD (aarch64, 64 KiB pages) would round small regions up
    // by as much: not worth it for the buffers here.
    return v && v <= (32u << 20) && (v & (v - 1)) == 0 ? v : 0;
  }();
  return bytes;
#else
  return 0;
#endif
}

bool Region::allocate(uint64_t size, const char *what, std::string &error) {
  bytes = size;
  if (size == 0) {
    base = emptyRegion;
    return true;
  }
  uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  uint64_t length = alignUp(size, page);
  // Weights and activations are swept every token: a region of at least
  // one huge page starts and ends on huge-page boundaries, so that all of
  // it can be mapped with huge pages. mmap aligns only to the base page,
  // and the first and last partial huge pages of an unaligned region stay
  // on 4 KiB pages (a TLB miss per 4 KiB, and a stop for the hardware
  // prefetchers at each page's end).
  uint64_t huge = hugePageBytes();
  if (huge && length >= huge)
    length = alignUp(length, huge);
  else
    huge = 0;
  uint64_t reserved = length + huge;
  // Anonymous memory: zero-filled and committed page by page as it is
  // touched, so that a KV cache for a long context costs what is used.
  void *p = ::mmap(nullptr, reserved, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    error = "cannot allocate " + std::to_string(size) + " bytes for the " +
            what + ": " + std::strerror(errno);
    return false;
  }
  uint8_t *start = static_cast<uint8_t *>(p);
  if (huge) {
    // Keep the aligned `length` bytes inside the reservation.
    uint8_t *aligned = reinterpret_cast<uint8_t *>(
        alignUp(reinterpret_cast<uintptr_t>(start), huge));
    uint64_t head = uint64_t(aligned - start);
    if (head)
      ::munmap(start, head);
    if (uint64_t tail = reserved - head - length)
      ::munmap(aligned + length, tail);
    start = aligned;
  }
  base = start;
  mapped = length;
#ifdef MADV_HUGEPAGE
  // A hint where the kernel's setting is `madvise`; ignored where it has
  // no transparent huge pages.
  if (huge)
    ::madvise(base, mapped, MADV_HUGEPAGE);
#endif
  return true;
}

void Region::collapseHugePages() {
#if defined(__linux__)
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25 // Linux 6.1; older kernels refuse it (EINVAL)
#endif
  // Pages the kernel could not give as huge pages when they were first
  // touched (no free 2 MiB block at that moment) stay small until
  // khugepaged gets to them, if ever; collapsing them once the region is
  // filled puts every weight on huge pages now. Best effort: a kernel
  // without it, or short of memory, leaves the region as it is.
  if (hugePageBytes() && mapped >= hugePageBytes())
    ::madvise(base, mapped, MADV_COLLAPSE);
#endif
}

void Region::zero() {
  if (!mapped)
    return;
  // A private anonymous mapping reads as zeroes after MADV_DONTNEED, and
  // gives its pages back instead of writing every byte.
  if (::madvise(base, mapped, MADV_DONTNEED) != 0)
    std::memset(base, 0, bytes);
}

//===----------------------------------------------------------------------===//
// Model
//===----------------------------------------------------------------------===//

Model::Model() : context(new moec_rt_context_t) {}

Model::~Model() {
  if (barrierProfile) {
    std::string error;
    if (!barrierProfile->write(barrierProfilePath,
                               reinterpret_cast<uintptr_t>(code.forward),
                               error))
      std::fprintf(stderr, "moec: %s\n", error.c_str());
  }
  // The pool first: its threads must be gone before the buffers are.
  pool.reset();
  streamer.reset();
  ioEngine.reset(); // waits for reads in flight before their buffers go
  if (fd >= 0)
    ::close(fd);
  if (streamFd >= 0)
    ::close(streamFd);
}

unsigned Model::getThreadCount() const { return pool->size(); }

ModelStats Model::getStats() const {
  ModelStats s = context->stats;
  if (expertCache) {
    const cache::CacheStats &c = expertCache->getStats();
    s.cacheHits = c.hits;
    s.cacheMisses = c.misses;
    s.evictions = c.evictions;
    const stream::StreamStats &r = streamer->getStats();
    s.reads = r.reads;
    s.bytesRead = r.bytesRead;
    s.stallSeconds = r.stallSeconds;
  }
  return s;
}

std::unique_ptr<Model> Model::open(const ModelCode &code,
                                   const ModelOptions &options,
                                   std::string &error) {
  const int64_t *info = code.info;
  if (!info || !code.forward) {
    error = "no compiled model code";
    return nullptr;
  }
  // The ABI version first: what the rest of the table means depends on it.
  int64_t major = info[MOEC_INFO_ABI_MAJOR], minor = info[MOEC_INFO_ABI_MINOR];
  if (major < 0 || major > 0xffff || minor < 0 || minor > 0xffff) {
    error = "model code: ABI version " + std::to_string(major) + "." +
            std::to_string(minor) +
            " is not a version: the code is damaged or not moec model code";
    return nullptr;
  }
  moec_abi_version_t version{static_cast<uint16_t>(major),
                             static_cast<uint16_t>(minor)};
  moec_abi_status_t status = moec_abi_check(version);
  if (status != MOEC_ABI_COMPATIBLE) {
    char message[256];
    moec_abi_describe(status, version, message, sizeof(message));
    error = std::string("model code: ") + message;
    return nullptr;
  }
  constexpr int64_t kInt32Max = INT32_MAX, kBytesMax = INT64_MAX / 2;
  for (const std::string &why :
       {checkInfo(info, MOEC_INFO_LAYER_COUNT, "the layer count", 0, 1 << 16),
        checkInfo(info, MOEC_INFO_EXPERT_COUNT, "the expert count", 0, 1 << 16),
        checkInfo(info, MOEC_INFO_VOCAB_SIZE, "the vocabulary size", 1,
                  kInt32Max),
        checkInfo(info, MOEC_INFO_CONTEXT_LENGTH, "the context length", 1,
                  kInt32Max),
        checkInfo(info, MOEC_INFO_MAX_BATCH, "the batch size", 1, 1 << 20),
        checkInfo(info, MOEC_INFO_SCRATCH_BYTES, "the scratch size", 0,
                  kBytesMax),
        checkInfo(info, MOEC_INFO_KV_BYTES, "the KV cache size", 0, kBytesMax),
        checkInfo(info, MOEC_INFO_RESIDENT_BYTES, "the resident size", 0,
                  kBytesMax)})
    if (!why.empty()) {
      error = why;
      return nullptr;
    }
  if (minor >= 8) {
    std::string why = enableCpuState(info[MOEC_INFO_CPU_STATE]);
    if (!why.empty()) {
      error = "model code: " + why;
      return nullptr;
    }
  }
  if (options.threads > ThreadPool::kMaxThreads) {
    error = "threads: " + std::to_string(options.threads) +
            " is out of range (1.." + std::to_string(ThreadPool::kMaxThreads) +
            ")";
    return nullptr;
  }

  std::unique_ptr<Model> m(new Model());
  m->code = code;
  m->options = options;
  m->vocab = info[MOEC_INFO_VOCAB_SIZE];
  m->contextLength = info[MOEC_INFO_CONTEXT_LENGTH];
  m->maxBatch = info[MOEC_INFO_MAX_BATCH];
  if (options.maxBatch > 0)
    m->maxBatch = std::min<int64_t>(m->maxBatch, options.maxBatch);
  m->bundle = bundle::Bundle::open(options.bundlePath, error);
  if (!m->bundle || !m->checkBundle(error))
    return nullptr;
  m->fd = ::open(options.bundlePath.c_str(), O_RDONLY | O_CLOEXEC);
  if (m->fd < 0) {
    error = options.bundlePath + ": cannot open: " + std::strerror(errno);
    return nullptr;
  }
  unsigned threads =
      options.threads ? options.threads : ThreadPool::defaultThreadCount();
  m->pool = std::make_unique<ThreadPool>(threads, options.spinNanos);
  // A diagnostic for tuning the schedule: where a decode step's threads
  // wait (scripts/barrier_profile.py reads the file).
  if (const char *path = std::getenv("MOEC_BARRIER_PROFILE"); path && *path) {
    m->barrierProfile = std::make_unique<BarrierProfile>(m->pool->size());
    m->barrierProfilePath = path;
  }
  m->context->model = m.get();
  m->context->pool = m->pool.get();

  // What stays in memory: every expert, or a cache of what the budget
  // leaves after the resident weights, KV cache and scratch buffer.
  const moec_bundle_header &h = m->bundle->getHeader();
  uint64_t fixed = h.resident_size + uint64_t(info[MOEC_INFO_SCRATCH_BYTES]) +
                   uint64_t(info[MOEC_INFO_KV_BYTES]);
  uint64_t allExperts = 0, largest = 0;
  uint64_t alignment = std::max<uint64_t>(h.io_block, 64);
  for (const moec_bundle_expert &e : m->bundle->getExperts()) {
    allExperts += alignUp(e.size, alignment);
    largest = std::max(largest, alignUp(e.size, alignment));
  }
  uint64_t cacheBytes = allExperts;
  std::string planRaw, raw;
  if (JsonScanner(m->bundle->getMetadata()).findTopLevel("plan", planRaw) ==
          JsonScanner::Found::Yes &&
      JsonScanner(planRaw).findTopLevel("all_experts_resident", raw) ==
          JsonScanner::Found::Yes &&
      raw == "false" &&
      JsonScanner(planRaw).findTopLevel("expert_cache_bytes", raw) ==
          JsonScanner::Found::Yes) {
    int64_t planned;
    if (parseInteger(raw, planned) && planned >= 0)
      cacheBytes = uint64_t(planned);
  }
  if (options.memoryBudget) {
    int64_t k = info[MOEC_INFO_EXPERTS_USED];
    uint64_t minimum = fixed + uint64_t(std::max<int64_t>(k, 1)) * largest;
    if (options.memoryBudget < minimum) {
      error = "memory budget: " + std::to_string(options.memoryBudget) +
              " bytes is too small for this model; it needs at least " +
              std::to_string(minimum) + " bytes (" +
              std::to_string(h.resident_size) + " resident weights + " +
              std::to_string(info[MOEC_INFO_KV_BYTES]) + " KV cache + " +
              std::to_string(info[MOEC_INFO_SCRATCH_BYTES]) + " scratch + " +
              std::to_string(k) + " experts of " + std::to_string(largest) +
              " bytes)";
      return nullptr;
    }
    cacheBytes = options.memoryBudget - fixed;
  }
  bool streaming = cacheBytes < allExperts;
  if (!m->resident.allocate(h.resident_size, "resident weights", error) ||
      !m->loadResident(error))
    return nullptr;
  m->resident.collapseHugePages();
  if (!(streaming ? m->startStreaming(cacheBytes, error)
                  : m->loadExperts(error)))
    return nullptr;
  if (!streaming)
    m->experts.collapseHugePages();
  if (!m->scratch.allocate(uint64_t(info[MOEC_INFO_SCRATCH_BYTES]),
                           "scratch buffer", error) ||
      !m->kv.allocate(uint64_t(info[MOEC_INFO_KV_BYTES]), "KV cache", error))
    return nullptr;

  m->batchTokens.resize(size_t(m->maxBatch));
  m->batchPositions.resize(size_t(m->maxBatch));
  m->lastLogits.assign(size_t(m->vocab), 0.0f);
  return m;
}

bool Model::checkBundle(std::string &error) {
  const std::string &path = options.bundlePath;
  const moec_bundle_header &h = bundle->getHeader();
  // Code and bundle from one compile: the compiler writes the layout hash
  // into both (a top-level integer "layout_hash" in the metadata).
  std::string raw;
  JsonScanner scanner(bundle->getMetadata());
  switch (scanner.findTopLevel("layout_hash", raw)) {
  case JsonScanner::Found::Malformed:
    error = at(path, h.tables_offset) + "the metadata is not a JSON object";
    return false;
  case JsonScanner::Found::No:
    error = at(path, h.tables_offset) +
            "the metadata has no \"layout_hash\": the bundle was not written "
            "for compiled code (recompile the model with code generation)";
    return false;
  case JsonScanner::Found::Yes:
    break;
  }
  int64_t bundleHash;
  if (!parseInteger(raw, bundleHash)) {
    error = at(path, h.tables_offset) + "the metadata's \"layout_hash\" is " +
            raw + ", not an integer";
    return false;
  }
  int64_t codeHash = code.info[MOEC_INFO_LAYOUT_HASH];
  if (bundleHash != codeHash) {
    error = path + ": bundle layout hash " + std::to_string(bundleHash) +
            " does not match the compiled code's " + std::to_string(codeHash) +
            ": the code and the bundle come from different compiles (use the "
            "model.moeb written with this program)";
    return false;
  }
  if (h.resident_size != uint64_t(code.info[MOEC_INFO_RESIDENT_BYTES])) {
    error = at(path, h.resident_offset) + "the resident segment is " +
            std::to_string(h.resident_size) +
            " bytes but the compiled code expects " +
            std::to_string(code.info[MOEC_INFO_RESIDENT_BYTES]) +
            ": the code and the bundle come from different compiles";
    return false;
  }
  if (h.resident_offset > h.file_size ||
      h.resident_size > h.file_size - h.resident_offset) {
    error = at(path, h.resident_offset) +
            "the resident segment runs past the end of the file";
    return false;
  }
  for (const moec_bundle_tensor &t : bundle->getTensors())
    if (t.offset < h.resident_offset ||
        t.offset - h.resident_offset > h.resident_size ||
        t.size > h.resident_size - (t.offset - h.resident_offset)) {
      error = at(path, t.offset) + "tensor '" +
              std::string(bundle->getTensorName(t)) +
              "' lies outside the resident segment";
      return false;
    }

  // Exactly one extent per (layer, expert) the code routes to.
  int64_t layers = code.info[MOEC_INFO_LAYER_COUNT];
  int64_t perLayer = code.info[MOEC_INFO_EXPERT_COUNT];
  context->layers = static_cast<uint32_t>(layers);
  context->expertsPerLayer = static_cast<uint32_t>(perLayer);
  size_t total = size_t(layers) * size_t(perLayer);
  context->expertOffsets.assign(total, -1);
  context->inUse.assign(total, 0);
  context->stats.acquiresPerExpert.assign(total, 0);
  for (const moec_bundle_expert &e : bundle->getExperts()) {
    if (e.layer >= layers || e.expert >= perLayer) {
      error = at(path, e.offset) + "the bundle has an extent for layer " +
              std::to_string(e.layer) + " expert " + std::to_string(e.expert) +
              " but the compiled code has " + std::to_string(layers) +
              " layers of " + std::to_string(perLayer) +
              " experts: the code and the bundle come from different compiles";
      return false;
    }
    int64_t &slot =
        context->expertOffsets[size_t(e.layer) * perLayer + e.expert];
    if (slot != -1) {
      error = at(path, e.offset) + "a second extent for layer " +
              std::to_string(e.layer) + " expert " + std::to_string(e.expert);
      return false;
    }
    slot = 0; // placed by loadExperts
  }
  for (size_t i = 0; i < total; ++i)
    if (context->expertOffsets[i] == -1) {
      error = path + ": the bundle has no extent for layer " +
              std::to_string(i / perLayer) + " expert " +
              std::to_string(i % perLayer) +
              ", which the compiled code routes to";
      return false;
    }
  return true;
}

bool Model::readAt(uint64_t offset, uint8_t *out, uint64_t size,
                   std::string &error) {
  // The bytes live in anonymous memory from now on: their page-cache copy
  // would count a second time against a memory cap (a cgroup counts the
  // page cache), so it goes once read. Advice only.
  struct DropCached {
    int fd;
    uint64_t offset, size;
    ~DropCached() {
#ifdef POSIX_FADV_DONTNEED
      ::posix_fadvise(fd, static_cast<off_t>(offset),
                      static_cast<off_t>(size), POSIX_FADV_DONTNEED);
#endif
    }
  } drop{fd, offset, size};
  while (size > 0) {
    ssize_t n = ::pread(fd, out, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      error = at(options.bundlePath, offset) +
              (n == 0 ? "unexpected end of file"
                      : std::string("read failed: ") + std::strerror(errno));
      return false;
    }
    out += n;
    offset += static_cast<uint64_t>(n);
    size -= static_cast<uint64_t>(n);
  }
  return true;
}

namespace {
/// Runs check(i) for i in [0, count) split over the pool's threads; on
/// failure keeps the error of the lowest index, so that the message does
/// not depend on the thread count.
template <typename Check>
bool forEachOnPool(ThreadPool &pool, size_t count, std::string &error,
                   Check check) {
  std::vector<std::string> errors(pool.size());
  std::vector<size_t> failedAt(pool.size(), SIZE_MAX);
  pool.run([&](unsigned t, unsigned n) {
    for (size_t i = t; i < count; i += n)
      if (!check(i, errors[t])) {
        failedAt[t] = i;
        return;
      }
  });
  size_t first =
      std::min_element(failedAt.begin(), failedAt.end()) - failedAt.begin();
  if (failedAt[first] == SIZE_MAX)
    return true;
  error = errors[first];
  return false;
}
} // namespace

bool Model::loadResident(std::string &error) {
  const moec_bundle_header &h = bundle->getHeader();
  // One read of the whole segment; the code addresses it by the offsets
  // the compiler laid out (relative to resident_offset).
  if (!readAt(h.resident_offset, resident.data(), h.resident_size, error))
    return false;
  const std::vector<moec_bundle_tensor> &tensors = bundle->getTensors();
  return forEachOnPool(
      *pool, tensors.size(), error, [&](size_t i, std::string &why) {
        const moec_bundle_tensor &t = tensors[i];
        if (bundle::checksum(resident.data() + (t.offset - h.resident_offset),
                             t.size) == t.checksum)
          return true;
        why = at(options.bundlePath, t.offset) + "tensor '" +
              std::string(bundle->getTensorName(t)) + "': checksum mismatch";
        return false;
      });
}

bool Model::startStreaming(uint64_t cacheBytes, std::string &error) {
  const moec_bundle_header &h = bundle->getHeader();
  uint64_t alignment = std::max<uint64_t>(h.io_block, 64);
  uint64_t largest = 0, smallest = UINT64_MAX;
  for (const moec_bundle_expert &e : bundle->getExperts()) {
    largest = std::max(largest, alignUp(e.size, alignment));
    smallest = std::min(smallest, alignUp(e.size, alignment));
  }
  int64_t k = std::max<int64_t>(code.info[MOEC_INFO_EXPERTS_USED], 1);
  int64_t perLayer = code.info[MOEC_INFO_EXPERT_COUNT];
  if (cacheBytes < uint64_t(k) * largest) {
    error = options.bundlePath + ": an expert cache of " +
            std::to_string(cacheBytes) + " bytes cannot hold the " +
            std::to_string(k) + " experts of " + std::to_string(largest) +
            " bytes one token needs";
    return false;
  }
  // As many tokens per forward call as leave every routed expert in the
  // cache at once (all of a layer's experts fit: any batch).
  uint64_t slots = cacheBytes / largest;
  streamBatch = slots >= uint64_t(perLayer)
                    ? maxBatch
                    : std::max<int64_t>(1, int64_t(slots) / k);
  streamBatch = std::min(streamBatch, maxBatch);

  bool direct = false;
  streamFd = io::openForStreaming(options.bundlePath, true, direct);
  if (streamFd < 0) {
    error = options.bundlePath + ": cannot open: " + std::strerror(errno);
    return false;
  }
  ioEngine = io::IoEngine::create(options.ioEngine, 64, error);
  if (!ioEngine)
    return false;
  expertCache = std::make_unique<cache::ExpertCache>(
      cacheBytes, uint32_t(alignment), options.evictionPolicy);
  // Extents of different sizes (layers or experts in different formats):
  // slots of the largest, or in-use experts could leave only holes too
  // small for the next one and the batch above would not fit. Size classes
  // would keep the smaller experts' bytes; not built yet.
  if (smallest != largest)
    expertCache->setMinimumSlot(largest);
  if (!expertCache->getArena()) {
    error = "cannot allocate the expert cache (" + std::to_string(cacheBytes) +
            " bytes)";
    return false;
  }
  streamer = std::make_unique<stream::ExpertStreamer>(*bundle, streamFd,
                                                      *expertCache, *ioEngine);
  streamer->setLayerCount(uint32_t(code.info[MOEC_INFO_LAYER_COUNT]));
  moec_rt_context_t &c = *context;
  c.streamer = streamer.get();
  c.cache = expertCache.get();
  c.arena = expertCache->getArena();
  c.bundlePath = options.bundlePath;
  c.prefetch = options.prefetch;
  c.lastUsed.assign(c.layers, {});
  c.predicted.assign(c.layers, {});
  c.prefetchReads.assign(c.layers, {});
  const bundle::Bundle *b = bundle.get();
  c.bundleExperts = [b](uint32_t layer, uint32_t expert) {
    return b->findExpert(layer, expert);
  };
  c.stats.streaming = true;
  c.stats.cacheBytes = expertCache->getCapacity();
  c.stats.ioEngine = ioEngine->getName();
  if (!direct)
    c.stats.ioEngine += " (buffered: the file system refused O_DIRECT)";

  // The plan's pinned experts (the hottest, from calibration) are read now
  // and never evicted.
  std::string planRaw, raw;
  if (JsonScanner(bundle->getMetadata()).findTopLevel("plan", planRaw) ==
          JsonScanner::Found::Yes &&
      JsonScanner(planRaw).findTopLevel("pinned", raw) ==
          JsonScanner::Found::Yes) {
    std::vector<int64_t> numbers;
    for (size_t i = 0; i < raw.size();) {
      if (std::isdigit(static_cast<unsigned char>(raw[i]))) {
        size_t j = i;
        while (j < raw.size() && std::isdigit(static_cast<unsigned char>(raw[j])))
          ++j;
        numbers.push_back(std::strtoll(raw.substr(i, j - i).c_str(), nullptr, 10));
        i = j;
      } else {
        ++i;
      }
    }
    for (size_t i = 0; i + 1 < numbers.size(); i += 2) {
      uint32_t layer = uint32_t(numbers[i]), expert = uint32_t(numbers[i + 1]);
      std::vector<stream::ReadyExpert> ready;
      stream::ReadyExpert r;
      if (!streamer->request(layer, {expert}, ready, error) ||
          (ready.empty() && !streamer->next(r, error))) {
        error = options.bundlePath + ": pinning layer " +
                std::to_string(layer) + " expert " + std::to_string(expert) +
                ": " + error;
        return false;
      }
      expertCache->pin(layer, expert, true);
      streamer->release(layer, expert);
    }
  }
  return true;
}

bool Model::loadExperts(std::string &error) {
  const moec_bundle_header &h = bundle->getHeader();
  const std::vector<moec_bundle_expert> &entries = bundle->getExperts();
  // Slots in file order, aligned like the file's extents: streaming will
  // read extents into slots of this arena with O_DIRECT.
  uint64_t alignment = std::max<uint64_t>(h.io_block, 64);
  std::vector<uint64_t> slots(entries.size());
  uint64_t arenaSize = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    slots[i] = arenaSize;
    arenaSize += alignUp(entries[i].size, alignment);
    context->expertOffsets[size_t(entries[i].layer) * context->expertsPerLayer +
                           entries[i].expert] = int64_t(slots[i]);
  }
  if (!experts.allocate(arenaSize, "expert arena", error))
    return false;
  // Reads and checksums in parallel: with every expert resident, opening
  // a model reads most of its file.
  return forEachOnPool(
      *pool, entries.size(), error, [&](size_t i, std::string &why) {
        const moec_bundle_expert &e = entries[i];
        uint8_t *slot = experts.data() + slots[i];
        if (!readAt(e.offset, slot, e.size, why))
          return false;
        if (bundle::checksum(slot, e.size) == e.checksum)
          return true;
        why = at(options.bundlePath, e.offset) + "extent of layer " +
              std::to_string(e.layer) + " expert " + std::to_string(e.expert) +
              ": checksum mismatch";
        return false;
      });
}

bool Model::eval(const int32_t *tokens, int64_t n, float *allLogits,
                 std::string &error) {
  if (!broken.empty()) {
    error = "an earlier call failed reading experts (" + broken +
            "): reopen the model";
    return false;
  }
  if (n < 0) {
    error = "a negative token count (" + std::to_string(n) + ")";
    return false;
  }
  if (n == 0)
    return true;
  if (!tokens) {
    error = "no tokens (null pointer)";
    return false;
  }
  // Refused whole, before anything runs: a prompt is not cut short.
  if (n > contextLength - position) {
    error = "the context holds " + std::to_string(contextLength) +
            " tokens: " + std::to_string(position) + " are in it and " +
            std::to_string(n) + " more do not fit";
    return false;
  }
  // The code indexes its embedding table with these.
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= vocab) {
      error = "token " + std::to_string(i) + " is " +
              std::to_string(tokens[i]) + ", outside the vocabulary (0.." +
              std::to_string(vocab - 1) + ")";
      return false;
    }
  for (int64_t done = 0; done < n;) {
    int64_t batch = std::min(streamer ? streamBatch : maxBatch, n - done);
    float *logits = allLogits ? allLogits + done * vocab : lastLogits.data();
    if (!forward(tokens + done, batch, logits, allLogits != nullptr, error))
      return false;
    done += batch;
  }
  if (allLogits)
    std::memcpy(lastLogits.data(), allLogits + (n - 1) * vocab,
                size_t(vocab) * sizeof(float));
  return true;
}

bool Model::forward(const int32_t *tokens, int64_t n, float *logits,
                    bool allLogits, std::string &error) {
  // Copies, so that the code never sees (or could write) the caller's.
  for (int64_t i = 0; i < n; ++i) {
    batchTokens[i] = tokens[i];
    batchPositions[i] = static_cast<int32_t>(position + i);
  }
  auto buffer = [](void *p, int64_t size) {
    return moec_buffer_t{p, p, 0, size, 1};
  };
  moec_buffer_t tokenBuffer = buffer(batchTokens.data(), n);
  moec_buffer_t positionBuffer = buffer(batchPositions.data(), n);
  moec_buffer_t logitBuffer = buffer(logits, allLogits ? n * vocab : vocab);
  moec_buffer_t residentBuffer = buffer(resident.data(), resident.size());
  moec_buffer_t expertBuffer =
      expertCache ? buffer(expertCache->getArena(), expertCache->getCapacity())
                  : buffer(experts.data(), experts.size());
  moec_buffer_t scratchBuffer = buffer(scratch.data(), scratch.size());
  moec_buffer_t kvBuffer = buffer(kv.data(), kv.size());
  moec_rt_context_t *ctx = context.get();
  ctx->scratch = scratch.data();
  ctx->scratchBytes = scratch.size();
  ctx->batchPosition = position;
  ctx->sequence = sequence;
  auto forwardFn = code.forward;
  // Recorded routing names every token: code that may compute the last
  // layer for the last token alone (ABI 0.7) is asked not to.
  int64_t flags = allLogits ? MOEC_FORWARD_ALL_LOGITS : 0;
  if (ctx->recordRouting && code.info[MOEC_INFO_ABI_MINOR] >= 7)
    flags |= MOEC_FORWARD_EVERY_TOKEN;
  // Predictions are worth their router pass only where they are read ahead.
  if (ctx->streamer && ctx->prefetch && code.info[MOEC_INFO_ABI_MINOR] >= 7)
    flags |= MOEC_FORWARD_PREDICT;
  if (ctx->calibration)
    ctx->calibration->addTokens(n);
  auto started = std::chrono::steady_clock::now();
  if (barrierProfile && n == 1) {
    barrierProfile->beginCall();
    ctx->barrierProfile = barrierProfile.get();
  }
  pool->run([&](unsigned thread, unsigned threads) {
    forwardFn(ctx, thread, threads, n, flags, &tokenBuffer, &positionBuffer,
              &logitBuffer, &residentBuffer, &expertBuffer, &scratchBuffer,
              &kvBuffer);
  });
  if (ctx->barrierProfile) {
    ctx->barrierProfile->endCall();
    ctx->barrierProfile = nullptr;
  }
  ctx->stats.forwardSeconds += std::chrono::duration<double>(
                                   std::chrono::steady_clock::now() - started)
                                   .count();
  ++ctx->stats.forwardCalls;
  if (!ctx->failed.load() && ctx->outstanding != 0) {
    for (size_t i = 0; i < ctx->inUse.size(); ++i)
      if (ctx->inUse[i]) {
        ctx->fail("compiled code returned with layer " +
                  std::to_string(i / ctx->expertsPerLayer) + " expert " +
                  std::to_string(i % ctx->expertsPerLayer) +
                  " acquired and not released");
        break;
      }
  }
  if (ctx->failed.load()) {
    error = ctx->error;
    // A failed read leaves reads and cache slots mid-way: the model stays
    // failed. Other failures leave it ready for the next call; the context
    // keeps what completed before.
    if (streamer)
      broken = error;
    ctx->error.clear();
    ctx->failed.store(false);
    std::fill(ctx->inUse.begin(), ctx->inUse.end(), 0);
    ctx->outstanding = 0;
    return false;
  }
  position += n;
  ctx->stats.tokens += uint64_t(n);
  return true;
}

void Model::reset() {
  position = 0;
  ++sequence;
  kv.zero();
  std::fill(lastLogits.begin(), lastLogits.end(), 0.0f);
}

void Model::startCalibration() {
  context->calibration = std::make_unique<CalibrationRecorder>(
      context->layers, context->expertsPerLayer);
}

bool Model::writeCalibration(const std::string &path, std::string &error) {
  if (!context->calibration) {
    error = "calibration was not started";
    return false;
  }
  if (!context->observed) {
    error = "the model's code reported no projection inputs: it was not "
            "compiled with instrumentation (moec calibrate builds a model "
            "that is)";
    return false;
  }
  return context->calibration->write(path, error);
}

void Model::setCalibrationSource(std::string json) {
  if (context->calibration)
    context->calibration->setSource(std::move(json));
}

void Model::collectHessians(int32_t layer) {
  if (!context->calibration)
    startCalibration();
  context->calibration->collectHessians(layer);
}

bool Model::writeHessians(const std::string &path, std::string &error) {
  if (!context->calibration || !context->observed) {
    error = "the model's code reported no projection inputs: it was not "
            "compiled with instrumentation";
    return false;
  }
  return context->calibration->writeHessians(path, error);
}

void Model::setRecordRouting(bool on) {
  context->recordRouting = on;
  if (!on) {
    context->routingRecords.clear();
    context->routingIds.clear();
  }
}

const std::vector<RoutingRecord> &Model::getRoutingRecords() const {
  return context->routingRecords;
}

const std::vector<int32_t> &Model::getRoutingIds() const {
  return context->routingIds;
}

const std::string &Model::getVocabularyBytes() const {
  return bundle->getVocabulary();
}

} // namespace moec::exec
