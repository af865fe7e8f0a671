//===- ExpertCache.h - Experts in memory under a byte budget ----*- C++ -*-===//
//
// The runtime's expert cache: one arena allocated once (the memory budget
// is real), holding experts of different sizes (compression gives the
// experts of one layer different formats), placed by best fit in a
// coalescing free list. When an expert does not fit, unpinned experts that
// are not in use are evicted in the order of the chosen policy until a
// contiguous range does:
//
// * LRU: least recently used first;
// * LFU, layer-aware: a token visits the layers in order, so the experts of
//   the layer visited last are needed again latest; among the experts of
//   the layer whose next visit is farthest (given by setCurrentLayer), the
//   least frequently used first, counts halved every `agingPeriod` lookups
//   so that the cache follows a changing working set (ties: least recently
//   used). Without a current layer, plain LFU.
//
// Pinned experts (the plan's hot ones) are never evicted. Plain C++, no
// LLVM, not thread-safe (the runtime's scheduler serialises it).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_CACHE_EXPERTCACHE_H
#define MOEC_RUNTIME_CACHE_EXPERTCACHE_H

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

namespace moec::cache {

enum class EvictionPolicy { LRU, LFU };

struct CacheStats {
  uint64_t hits = 0, misses = 0, evictions = 0, bytesInserted = 0;
  double hitRate() const {
    uint64_t n = hits + misses;
    return n ? double(hits) / double(n) : 0.0;
  }
};

class ExpertCache {
public:
  /// An arena of `capacityBytes`; slots are aligned to `alignment` (the
  /// O_DIRECT block, a power of two).
  ExpertCache(uint64_t capacityBytes, uint32_t alignment,
              EvictionPolicy policy, uint64_t agingPeriod = 1024);
  ~ExpertCache();

  /// The cached expert's bytes, counting a hit (and a use for the policy),
  /// or null, counting a miss.
  uint8_t *lookup(uint32_t layer, uint32_t expert);

  /// Every slot takes at least `bytes` (0: just the expert's size). With
  /// experts of different sizes, in-use experts can split the free bytes
  /// into holes smaller than the next expert; slots of the largest size
  /// cannot, so that the runtime's count of experts that fit holds.
  void setMinimumSlot(uint64_t bytes) { minimumSlot = bytes; }

  /// Reserves `size` bytes for an expert that is not cached, evicting as the
  /// policy says, and returns where to read it; null when even evicting
  /// everything evictable leaves no contiguous room (then `error` says how
  /// much was needed and how much is pinned or in use).
  uint8_t *insert(uint32_t layer, uint32_t expert, uint64_t size,
                  std::string &error);

  /// The layer being computed, of `layers`: what the layer-aware policy
  /// measures the next visit of each layer from.
  void setCurrentLayer(uint32_t layer, uint32_t layers) {
    currentLayer = layer;
    layerCount = layers;
  }

  /// Pinned experts are never evicted (the plan's resident hot experts).
  void pin(uint32_t layer, uint32_t expert, bool pinned);
  /// Experts in use (being computed with, or being read into) are not
  /// evicted either; uses nest.
  void acquire(uint32_t layer, uint32_t expert);
  void release(uint32_t layer, uint32_t expert);

  bool contains(uint32_t layer, uint32_t expert) const;
  /// The arena's first byte: slots are offsets from it.
  uint8_t *getArena() const { return arena.get(); }
  uint64_t getCapacity() const { return capacity; }
  uint64_t getUsedBytes() const { return used; }
  const CacheStats &getStats() const { return stats; }

private:
  struct Entry {
    uint64_t offset, size;
    uint64_t lastUse, frequency;
    bool pinned = false;
    uint32_t inUse = 0;
  };
  static uint64_t key(uint32_t layer, uint32_t expert) {
    return (uint64_t(layer) << 32) | expert;
  }
  void touch(Entry &e);
  void age();
  /// Frees the range of `e` into the free list, coalescing neighbours.
  void freeRange(const Entry &e);
  /// Best-fit allocation from the free list; UINT64_MAX when none fits.
  uint64_t allocate(uint64_t size);
  /// The entry to evict next, or end().
  std::unordered_map<uint64_t, Entry>::iterator victim();

  uint64_t capacity;
  uint32_t alignment;
  uint64_t minimumSlot = 0;
  EvictionPolicy policy;
  uint64_t agingPeriod;
  std::unique_ptr<uint8_t[], void (*)(uint8_t *)> arena;
  std::map<uint64_t, uint64_t> freeRanges; // offset -> size
  std::unordered_map<uint64_t, Entry> entries;
  uint64_t used = 0, clock = 0, lookupsSinceAging = 0;
  uint32_t currentLayer = 0, layerCount = 0;
  CacheStats stats;
};

} // namespace moec::cache

#endif // MOEC_RUNTIME_CACHE_EXPERTCACHE_H
