//===- ExpertStreamer.h - Experts from the bundle into the cache -*- C++ -*-===//
//
// Ties the bundle, the expert cache and the I/O engine together for one
// layer's experts at a time: `request` hands back at once the experts that
// are cached (so compute can start on them) and submits one read per missed
// expert, all at once; `next` returns the missed ones as their reads
// complete, each checked against its extent checksum. `prefetch` issues reads
// for experts predicted for later layers without waiting for them. Experts
// handed out stay in use (never evicted) until `release`.
// Plain C++, no LLVM.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_STREAM_EXPERTSTREAMER_H
#define MOEC_RUNTIME_STREAM_EXPERTSTREAMER_H

#include "runtime/bundle/Bundle.h"
#include "runtime/cache/ExpertCache.h"
#include "runtime/io/IoEngine.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace moec::stream {

struct ReadyExpert {
  uint32_t layer, expert;
  /// The extent: gate | up | down at the entry's part offsets.
  const uint8_t *data;
  const moec_bundle_expert *entry;
};

struct StreamStats {
  uint64_t reads = 0, bytesRead = 0, prefetches = 0, prefetchHits = 0;
  /// Time spent blocked in `next`, in seconds.
  double stallSeconds = 0;
};

class ExpertStreamer {
public:
  /// `fd` reads the bundle (O_DIRECT where possible; extents and slots are
  /// I/O-block aligned).
  ExpertStreamer(const bundle::Bundle &bundle, int fd,
                 cache::ExpertCache &cache, io::IoEngine &engine);

  /// Appends the cached ones of `experts` (of `layer`) to `ready` and
  /// submits reads for the others. False with `error` when the cache has no
  /// room or an expert does not exist.
  bool request(uint32_t layer, const std::vector<uint32_t> &experts,
               std::vector<ReadyExpert> &ready, std::string &error);

  /// The model's layer count, for the cache's layer-aware eviction; 0:
  /// unknown.
  void setLayerCount(uint32_t layers) { layerCount = layers; }

  /// The next missed expert of the last `request` to land, waiting for it
  /// unless `wait` is false; false when none is outstanding (or, not
  /// waiting, none has landed yet: then `error` is empty) or a read or
  /// checksum failed.
  bool next(ReadyExpert &out, std::string &error, bool wait = true);

  /// Starts reading `experts` of `layer` that are neither cached nor in
  /// flight; a later request finds them cached or in flight.
  bool prefetch(uint32_t layer, const std::vector<uint32_t> &experts,
                std::string &error);

  /// Ends the use of an expert handed out by request/next.
  void release(uint32_t layer, uint32_t expert);

  const StreamStats &getStats() const { return stats; }

private:
  struct InFlight {
    const moec_bundle_expert *entry;
    uint8_t *slot;
    bool wanted;      // by the current request (else a prefetch)
    bool prefetched;  // started by prefetch
  };
  bool submit(uint32_t layer, uint32_t expert, bool wanted,
              std::string &error);
  /// Handles one completion; appends to `finished` when it is wanted.
  bool complete(const io::Completion &c, std::vector<ReadyExpert> &finished,
                std::string &error);

  const bundle::Bundle &bundle;
  int fd;
  cache::ExpertCache &cache;
  io::IoEngine &engine;
  std::map<uint64_t, InFlight> inFlight; // key: layer << 32 | expert
  std::vector<ReadyExpert> finished;
  size_t wantedOutstanding = 0;
  uint32_t layerCount = 0;
  StreamStats stats;
};

} // namespace moec::stream

#endif // MOEC_RUNTIME_STREAM_EXPERTSTREAMER_H
