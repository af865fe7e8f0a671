//===- Model.h - Running compiled model code on the CPU ---------*- C++ -*-===//
//
// The runtime side of "Compiled model code <-> runtime" in
// runtime/abi/moec_abi.h: checks that the code and the bundle belong
// together (ABI version, layout hash, resident size), loads the resident
// segment and the expert extents with their checksums verified, allocates
// the scratch and KV buffers the code's info table asks for, and runs the
// forward function SPMD on a ThreadPool in batches of at most max_batch
// tokens. It also defines the moec_rt_* callbacks of the ABI.
//
// Every expert is loaded at open (the plan of this version keeps them all
// resident); moec_rt_expert_acquire is a table lookup. Acquire and release
// are the seam where streaming from storage (runtime/stream/) plugs in.
//
// runtime/exec/model.h is the C interface over this class. Plain C++, no
// LLVM.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_EXEC_MODEL_H
#define MOEC_RUNTIME_EXEC_MODEL_H

#include "runtime/abi/moec_abi.h"
#include "runtime/cache/ExpertCache.h"
#include "runtime/io/IoEngine.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace moec::bundle {
class Bundle;
} // namespace moec::bundle
namespace moec::stream {
class ExpertStreamer;
} // namespace moec::stream

namespace moec::exec {

class ThreadPool;
class BarrierProfile;

/// The compiled code a model runs: its info table and forward function.
/// linkedModelCode() is what the program was linked with; tests and hosts
/// of several models pass their own.
struct ModelCode {
  const int64_t *info; // MOEC_INFO_COUNT entries
  decltype(&_mlir_ciface_moec_model_forward) forward;
};

/// moec_model_info and _mlir_ciface_moec_model_forward, as linked
/// (ModelApi.cpp: only programs that use it, or the C interface, need a
/// compiled model linked in).
ModelCode linkedModelCode();

struct ModelOptions {
  std::string bundlePath;
  /// Bytes of memory for weights, KV cache and buffers; 0: the plan's
  /// budget (the bundle's). Below what every expert needs, experts stream
  /// from the bundle through an expert cache of what is left.
  uint64_t memoryBudget = 0;
  cache::EvictionPolicy evictionPolicy = cache::EvictionPolicy::LRU;
  io::EngineKind ioEngine = io::EngineKind::Auto;
  /// While a layer computes, read the experts the next layer is predicted
  /// to need (the ones it used for the previous tokens).
  bool prefetch = true;
  /// The most tokens per forward call; 0 (or more than compiled): the
  /// compiled batch.
  int64_t maxBatch = 0;
  /// Compute threads; 0: ThreadPool::defaultThreadCount().
  unsigned threads = 0;
  /// The pool's spin budget (ThreadPool's spinNanos; < 0 chooses).
  int64_t spinNanos = -1;
};

/// What the runtime counted while running the code.
struct ModelStats {
  /// Streaming (all zero when every expert is resident).
  bool streaming = false;
  uint64_t cacheBytes = 0, cacheHits = 0, cacheMisses = 0, evictions = 0;
  uint64_t reads = 0, bytesRead = 0;
  double stallSeconds = 0, forwardSeconds = 0;
  /// Prefetch: experts predicted, predicted and then used, used by a layer
  /// (over layers that had a prediction), and bytes read for predictions
  /// that were not used.
  uint64_t predicted = 0, predictedUsed = 0, usedAfterPrediction = 0,
           wastedPrefetchBytes = 0;
  /// Overlap (ABI 0.6 try-acquires): experts computed on while reads of
  /// their layer were in flight, and experts the code then waited for.
  uint64_t expertsOverlapped = 0, expertsWaitedFor = 0;
  std::string ioEngine;
  uint64_t forwardCalls = 0;
  uint64_t tokens = 0;
  uint64_t expertAcquires = 0;
  uint64_t expertReleases = 0;
  /// Acquires per (layer, expert), index layer * experts + expert.
  std::vector<uint64_t> acquiresPerExpert;
};

/// Where one token went in one MoE layer (moec_rt_routing), while routing
/// is recorded: `sequence` counts resets, so that consecutive positions of
/// one sequence can be told from a new start.
struct RoutingRecord {
  uint32_t sequence;
  int32_t position;
  int32_t layer;
};

/// A memory region for the code's buffers: page-aligned (so 64-byte
/// aligned), zero-filled, committed by the kernel on first touch.
class Region {
public:
  Region() = default;
  ~Region();
  Region(const Region &) = delete;
  Region &operator=(const Region &) = delete;
  /// False with `error` set (naming `what`) when the memory cannot be had.
  bool allocate(uint64_t size, const char *what, std::string &error);
  /// Back to all zeroes, giving the pages back to the kernel.
  void zero();
  /// The size of the transparent huge pages the kernel maps anonymous
  /// memory with (a PMD's reach: 2 MiB on x86-64 and on aarch64 with 4 KiB
  /// pages), or 0 where it has none, they are switched off (`never`) or
  /// too large to align regions to. Regions of at least this size start
  /// and end on its boundaries.
  static uint64_t hugePageBytes();
  /// Maps what is filled of the region with huge pages where the kernel
  /// gave small ones at first (weights, once loaded).
  void collapseHugePages();
  uint8_t *data() const { return base; }
  uint64_t size() const { return bytes; }

private:
  uint8_t *base = nullptr;
  uint64_t bytes = 0, mapped = 0;
};

class Model {
public:
  /// Opens `options.bundlePath` for `code`; null with `error` set (one line
  /// naming the file, offset or value) when they do not belong together,
  /// the bundle is damaged or memory is short.
  static std::unique_ptr<Model>
  open(const ModelCode &code, const ModelOptions &options, std::string &error);
  ~Model();

  /// Appends `n` tokens to the context. Writes the logits after every token
  /// to `allLogits` (n x vocab) when it is not null; the logits after the
  /// last one are kept either way (getLogits). False with `error` set; the
  /// context then holds the batches that completed (getPosition).
  bool eval(const int32_t *tokens, int64_t n, float *allLogits,
            std::string &error);
  /// The logits after the last token, or null while the context is empty.
  const float *getLogits() const {
    return position > 0 ? lastLogits.data() : nullptr;
  }
  /// Empties the context and zeroes the KV cache.
  void reset();

  int64_t getInfo(int index) const { return code.info[index]; }
  int64_t getVocabSize() const { return vocab; }
  int64_t getContextLength() const { return contextLength; }
  int64_t getMaxBatch() const { return maxBatch; }
  int64_t getPosition() const { return position; }
  unsigned getThreadCount() const;
  ModelStats getStats() const;
  /// Calibration: from now on, instrumented code's observations (every
  /// projection's input, the experts' outputs) are accumulated.
  void startCalibration();
  /// Writes what was accumulated as calib.dat (exec/Calibration.h). False
  /// with `error`, also when the code is not instrumented.
  bool writeCalibration(const std::string &path, std::string &error);
  /// What calib.dat records as its source (a JSON object).
  void setCalibrationSource(std::string json);
  /// GPTQ: also collect the Hessians of layer `layer`'s weights (-1: those
  /// outside the layers); starts calibration when it is not.
  void collectHessians(int32_t layer);
  bool writeHessians(const std::string &path, std::string &error);
  /// Records every token's experts from now on (off: forgets them).
  void setRecordRouting(bool on);
  /// The records, and top-k expert ids per record, in order.
  const std::vector<RoutingRecord> &getRoutingRecords() const;
  const std::vector<int32_t> &getRoutingIds() const;
  /// The tokenizer's vocabulary the bundle carries (binary form; "" if
  /// none).
  const std::string &getVocabularyBytes() const;
  /// Bytes the model's memory takes: resident weights, experts (all, or
  /// the cache), scratch and KV cache.
  uint64_t getBudgetBytes() const {
    return resident.size() + (expertCache ? expertCache->getCapacity()
                                          : experts.size()) +
           scratch.size() + kv.size();
  }
  /// Bytes of weights held in memory (resident tensors and experts).
  uint64_t getWeightBytes() const { return resident.size() + experts.size(); }

private:
  Model();
  bool checkBundle(std::string &error);
  bool loadResident(std::string &error);
  bool loadExperts(std::string &error);
  /// Sets up the expert cache, I/O engine and streamer for `cacheBytes`.
  bool startStreaming(uint64_t cacheBytes, std::string &error);
  /// Reads [offset, offset + size) of the bundle (thread-safe).
  bool readAt(uint64_t offset, uint8_t *out, uint64_t size, std::string &error);
  /// One call of the compiled forward function on every thread.
  bool forward(const int32_t *tokens, int64_t n, float *logits, bool allLogits,
               std::string &error);

  ModelCode code{};
  ModelOptions options;
  int64_t vocab = 0, contextLength = 0, maxBatch = 0, position = 0;
  uint32_t sequence = 0;
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<moec_rt_context_t> context;
  /// MOEC_BARRIER_PROFILE=FILE at open: the decode steps' barrier profile,
  /// written to the file when the model closes (BarrierProfile.h).
  std::unique_ptr<BarrierProfile> barrierProfile;
  std::string barrierProfilePath;
  Region resident, experts, scratch, kv;
  std::vector<int32_t> batchTokens, batchPositions;
  std::vector<float> lastLogits;
  std::unique_ptr<bundle::Bundle> bundle;
  /// The bundle, opened again for the bulk reads of the weights.
  int fd = -1;
  /// Streaming: the bundle opened for O_DIRECT reads, the cache, engine
  /// and streamer; the most tokens one forward call may take so that their
  /// experts fit the cache at once.
  int streamFd = -1;
  std::unique_ptr<cache::ExpertCache> expertCache;
  std::unique_ptr<io::IoEngine> ioEngine;
  std::unique_ptr<stream::ExpertStreamer> streamer;
  int64_t streamBatch = 0;
  /// Set when streaming failed mid-call: later calls fail with it.
  std::string broken;
};

} // namespace moec::exec

#endif // MOEC_RUNTIME_EXEC_MODEL_H
