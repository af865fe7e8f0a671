//===- ExpertCacheTest.cpp - Eviction, pinning, variable sizes ------------===//

#include "runtime/cache/ExpertCache.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>

using namespace moec::cache;

namespace {

constexpr uint32_t kBlock = 4096;

uint8_t *put(ExpertCache &c, uint32_t expert, uint64_t blocks = 1) {
  std::string error;
  uint8_t *p = c.insert(0, expert, blocks * kBlock, error);
  EXPECT_TRUE(p) << error;
  return p;
}

TEST(ExpertCache, LruEvictsTheLeastRecentlyUsed) {
  ExpertCache c(4 * kBlock, kBlock, EvictionPolicy::LRU);
  for (uint32_t e = 0; e < 4; ++e)
    put(c, e);
  EXPECT_TRUE(c.lookup(0, 0) && c.lookup(0, 1) && c.lookup(0, 2));
  put(c, 4);
  EXPECT_FALSE(c.contains(0, 3));
  EXPECT_TRUE(c.contains(0, 0) && c.contains(0, 4));
  EXPECT_EQ(c.getStats().evictions, 1u);
  EXPECT_EQ(c.getStats().hits, 3u);
  EXPECT_EQ(c.lookup(0, 3), nullptr);
  EXPECT_EQ(c.getStats().misses, 1u);
}

// Experts of two sizes in an arena of four large ones. Small, large,
// small, large, small, small fill it; with the two large and the last
// small in use, evicting every other leaves three one-block holes between
// them and no room for a third large expert, though three blocks are free.
// Slots of the largest size (what the runtime sets when sizes differ) hold
// the same in-use experts with a large one's room to spare.
TEST(ExpertCache, MixedSizesFitInLargestSlots) {
  auto fill = [](ExpertCache &c) {
    uint64_t sizes[] = {1, 2, 1, 2, 1, 1};
    std::string error;
    for (uint32_t e = 0; e < 6; ++e)
      c.insert(0, e, sizes[e] * kBlock, error);
    for (uint32_t e : {1u, 3u, 5u})
      if (c.contains(0, e))
        c.acquire(0, e);
  };
  std::string error;
  ExpertCache bytes(8 * kBlock, kBlock, EvictionPolicy::LRU);
  fill(bytes);
  EXPECT_TRUE(bytes.contains(0, 1) && bytes.contains(0, 3) &&
              bytes.contains(0, 5));
  EXPECT_EQ(bytes.insert(0, 6, 2 * kBlock, error), nullptr);
  EXPECT_NE(error.find("no room for an expert of 8192 bytes"),
            std::string::npos)
      << error;

  ExpertCache slots(8 * kBlock, kBlock, EvictionPolicy::LRU);
  slots.setMinimumSlot(2 * kBlock);
  fill(slots);
  // Four slots: the last two inserts evicted the two oldest (0, and 1 before
  // it was in use); whatever is in use, a large expert still finds a slot.
  error.clear();
  EXPECT_NE(slots.insert(0, 6, 2 * kBlock, error), nullptr) << error;
}

TEST(ExpertCache, LfuEvictsTheLeastFrequentlyUsed) {
  ExpertCache c(4 * kBlock, kBlock, EvictionPolicy::LFU, 1000);
  for (uint32_t e = 0; e < 4; ++e)
    put(c, e); // one use each
  for (int i = 0; i < 5; ++i)
    c.lookup(0, 0);
  for (int i = 0; i < 3; ++i)
    c.lookup(0, 1);
  for (int i = 0; i < 2; ++i)
    c.lookup(0, 3);
  c.lookup(0, 2); // the most recent use, but only 2 uses in all
  put(c, 4);      // LRU would evict 3; LFU evicts 2
  EXPECT_FALSE(c.contains(0, 2));
  EXPECT_TRUE(c.contains(0, 3));
  put(c, 5); // 4 has 1 use against 0 (6), 1 (4), 3 (3)
  EXPECT_FALSE(c.contains(0, 4));
  EXPECT_TRUE(c.contains(0, 0) && c.contains(0, 1) && c.contains(0, 3));
}

TEST(ExpertCache, LfuEvictsFromTheLayerNeededLatest) {
  // Three layers, visited 0, 1, 2, 0, ... While layer 1 computes (its
  // experts for this token in use), layer 2 is needed now, layer 0 by the
  // next token and layer 1's other experts after that: those go first,
  // then layer 0's, least used first; layer 2's last.
  std::string error;
  ExpertCache c(5 * kBlock, kBlock, EvictionPolicy::LFU, 1000);
  ASSERT_TRUE(c.insert(0, 7, kBlock, error));
  ASSERT_TRUE(c.insert(0, 8, kBlock, error));
  ASSERT_TRUE(c.insert(2, 1, kBlock, error));
  ASSERT_TRUE(c.insert(1, 3, kBlock, error));
  ASSERT_TRUE(c.insert(1, 2, kBlock, error));
  for (int i = 0; i < 5; ++i)
    c.lookup(0, 7);
  c.lookup(0, 8);
  for (int i = 0; i < 9; ++i)
    c.lookup(1, 3);
  c.setCurrentLayer(1, 3);
  c.acquire(1, 2); // this token's expert of layer 1
  ASSERT_TRUE(c.insert(1, 4, kBlock, error));
  c.acquire(1, 4);
  EXPECT_FALSE(c.contains(1, 3)); // popular, but needed latest
  ASSERT_TRUE(c.insert(1, 5, kBlock, error));
  c.acquire(1, 5);
  EXPECT_FALSE(c.contains(0, 8)); // then layer 0, the least used
  EXPECT_TRUE(c.contains(0, 7) && c.contains(2, 1));
  ASSERT_TRUE(c.insert(1, 6, kBlock, error));
  EXPECT_FALSE(c.contains(0, 7));
  EXPECT_TRUE(c.contains(2, 1)); // needed now: kept
}

TEST(ExpertCache, LfuAgingForgetsOldPopularity) {
  ExpertCache c(2 * kBlock, kBlock, EvictionPolicy::LFU, /*agingPeriod=*/4);
  put(c, 0);
  put(c, 1);
  for (int i = 0; i < 8; ++i)
    c.lookup(0, 0); // counts halve every 4 lookups
  for (int i = 0; i < 12; ++i)
    c.lookup(0, 1);
  put(c, 2);
  EXPECT_FALSE(c.contains(0, 0));
  EXPECT_TRUE(c.contains(0, 1));
}

TEST(ExpertCache, PinnedAndInUseExpertsStay) {
  ExpertCache c(3 * kBlock, kBlock, EvictionPolicy::LRU);
  put(c, 0);
  put(c, 1);
  put(c, 2);
  c.pin(0, 0, true);
  c.acquire(0, 1);
  put(c, 3); // only 2 may go
  EXPECT_TRUE(c.contains(0, 0) && c.contains(0, 1) && !c.contains(0, 2));
  c.acquire(0, 3);
  std::string error;
  EXPECT_EQ(c.insert(0, 4, kBlock, error), nullptr);
  EXPECT_EQ(error, "the expert cache (12288 bytes) has no room for an expert "
                   "of 4096 bytes: 12288 bytes are pinned or in use");
  c.release(0, 1);
  EXPECT_TRUE(put(c, 4));
  EXPECT_FALSE(c.contains(0, 1));
}

TEST(ExpertCache, VariableSizesCoalesceTheirSpace) {
  ExpertCache c(16 * kBlock, kBlock, EvictionPolicy::LRU);
  put(c, 0, 4);
  put(c, 1, 8);
  put(c, 2, 4);
  c.lookup(0, 0);
  c.lookup(0, 2);
  // 12 blocks fit only when 1 and a neighbour are gone: LRU evicts 1 (8
  // blocks) and then 0, whose range coalesces with 1's.
  EXPECT_TRUE(put(c, 3, 12));
  EXPECT_FALSE(c.contains(0, 1));
  EXPECT_FALSE(c.contains(0, 0));
  EXPECT_TRUE(c.contains(0, 2));
  EXPECT_EQ(c.getUsedBytes(), 16u * kBlock);
  std::string error;
  EXPECT_EQ(c.insert(0, 9, 17 * kBlock, error), nullptr);
}

// Random traffic: what a lookup returns is always what was written for that
// expert, slots never overlap, and the budget is never exceeded.
TEST(ExpertCache, RandomTrafficKeepsContents) {
  for (EvictionPolicy policy : {EvictionPolicy::LRU, EvictionPolicy::LFU}) {
    ExpertCache c(40 * kBlock, kBlock, policy, 64);
    std::mt19937 rng(3);
    std::map<uint32_t, uint64_t> sizes;
    for (int step = 0; step < 20000; ++step) {
      uint32_t expert = rng() % 64;
      uint8_t *p = c.lookup(1, expert);
      if (p) {
        uint64_t size = sizes.at(expert);
        for (uint64_t i = 0; i < size; i += 997)
          ASSERT_EQ(p[i], uint8_t(expert * 31 + i)) << "step " << step;
        continue;
      }
      uint64_t size = (1 + rng() % 5) * kBlock - rng() % 100;
      std::string error;
      p = c.insert(1, expert, size, error);
      ASSERT_TRUE(p) << error;
      for (uint64_t i = 0; i < size; ++i)
        p[i] = uint8_t(expert * 31 + i);
      sizes[expert] = size;
      ASSERT_LE(c.getUsedBytes(), c.getCapacity());
    }
    EXPECT_GT(c.getStats().hits, 0u);
    EXPECT_GT(c.getStats().evictions, 0u);
  }
}

} // namespace
