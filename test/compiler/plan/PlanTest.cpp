//===- PlanTest.cpp - Budgets, the minimum, pinning, prefetch depth -------===//

#include "compiler/model/Synth.h"
#include "compiler/plan/Plan.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

using namespace llvm;
using namespace moec;
using ::testing::HasSubstr;

namespace {

// One expert of the tiny qwen3moe in Q8_0: gate and up are 32 rows of 64
// (2 blocks of 34 bytes each: 2176 bytes), down 64 rows of 32 (1 block:
// 2176 bytes); 6528 bytes with 64-byte aligned parts, a slot of two 4 KiB
// I/O blocks.
constexpr uint64_t kSlot = 8192;

std::unique_ptr<model::WeightStore> tinyModel() {
  model::SynthOptions o;
  model::applyPreset("tiny", *model::lookupFamilyByName("qwen3moe"), o);
  o.expertsType = gguf::GgmlType::Q8_0;
  SmallString<128> dir;
  EXPECT_FALSE(sys::fs::createUniqueDirectory("moec-plan-test", dir));
  std::string path = (dir + "/m.gguf").str();
  EXPECT_FALSE(errorToBool(model::writeSynthGguf(o, path)));
  auto store = model::WeightStore::open(path);
  EXPECT_TRUE(bool(store));
  return std::move(*store);
}

TEST(Plan, Sizes) {
  EXPECT_EQ(*plan::parseSize("4096"), 4096u);
  EXPECT_EQ(*plan::parseSize("6GiB"), 6ull << 30);
  EXPECT_EQ(*plan::parseSize("512MiB"), 512ull << 20);
  EXPECT_EQ(*plan::parseSize("1.5GB"), 1500000000ull);
  EXPECT_EQ(*plan::parseSize("8 kib"), 8192u);
  EXPECT_THAT(toString(plan::parseSize("lots").takeError()),
              HasSubstr("'lots' is not a size"));
  EXPECT_THAT(toString(plan::parseSize("3 parsecs").takeError()),
              HasSubstr("unknown unit 'parsecs'"));
}

TEST(Plan, TheMinimumIsExactAndExplained) {
  auto store = tinyModel();
  targets::TargetDescription t = targets::detectHost();
  plan::PlanOptions o;
  o.budgetBytes = 1ull << 40;
  Expected<plan::Plan> big = plan::makePlan(*store, t, o);
  ASSERT_TRUE(bool(big)) << toString(big.takeError());
  EXPECT_TRUE(big->allExpertsResident);
  EXPECT_EQ(big->prefetchDepth, 0u);
  // tiny qwen3moe: 2 layers x 256 positions x 2 KV heads x 16 x K,V x f32.
  EXPECT_EQ(big->kvCacheBytes, 2u * 256 * 2 * 16 * 2 * 4);
  EXPECT_EQ(big->allExpertBytes, 16u * kSlot); // 2 layers x 8 experts

  o.budgetBytes = big->minimumBudget;
  Expected<plan::Plan> tight = plan::makePlan(*store, t, o);
  ASSERT_TRUE(bool(tight)) << toString(tight.takeError());
  EXPECT_FALSE(tight->allExpertsResident);
  EXPECT_EQ(tight->expertCacheBytes, 2u * kSlot); // top-2 of one layer
  EXPECT_EQ(tight->prefetchDepth, 0u);

  o.budgetBytes = big->minimumBudget - 1;
  Expected<plan::Plan> small = plan::makePlan(*store, t, o);
  ASSERT_FALSE(bool(small));
  EXPECT_THAT(toString(small.takeError()),
              HasSubstr("needs at least " + std::to_string(big->minimumBudget) +
                        " bytes"));
}

TEST(Plan, RoomForMoreLayersMeansPrefetching) {
  auto store = tinyModel();
  targets::TargetDescription t = targets::detectHost();
  plan::PlanOptions o;
  o.budgetBytes = 1ull << 40;
  uint64_t minimum = plan::makePlan(*store, t, o)->minimumBudget;
  o.budgetBytes = minimum + 2 * kSlot; // two layers' top-2
  EXPECT_EQ(plan::makePlan(*store, t, o)->prefetchDepth, 1u);
  o.budgetBytes = minimum + 5 * kSlot;
  EXPECT_EQ(plan::makePlan(*store, t, o)->prefetchDepth, 2u);
}

TEST(Plan, CalibrationPinsTheHottestExperts) {
  auto store = tinyModel();
  targets::TargetDescription t = targets::detectHost();
  plan::RoutingCounts counts;
  counts.counts = {{0, 50, 0, 0, 9, 0, 0, 0}, {0, 0, 0, 70, 0, 0, 30, 0}};
  plan::PlanOptions o;
  o.budgetBytes = 1ull << 40;
  uint64_t minimum = plan::makePlan(*store, t, o)->minimumBudget;
  o.budgetBytes = minimum + 4 * kSlot; // 6 slots: up to 3 pinned
  o.calibration = &counts;
  Expected<plan::Plan> p = plan::makePlan(*store, t, o);
  ASSERT_TRUE(bool(p)) << toString(p.takeError());
  EXPECT_EQ(p->pinned, (std::vector<std::pair<uint32_t, uint32_t>>{
                           {1, 3}, {0, 1}, {1, 6}}));
  std::string json;
  raw_string_ostream(json) << p->toJson();
  EXPECT_THAT(json, HasSubstr("\"pinned\":[[1,3],[0,1],[1,6]]"));
}

TEST(Plan, RoutingCountsFileIsChecked) {
  auto store = tinyModel();
  SmallString<128> path;
  ASSERT_FALSE(sys::fs::createTemporaryFile("counts", "json", path));
  {
    std::error_code ec;
    raw_fd_ostream os(path, ec);
    os << R"({"routing": {"counts": [[1,2,3,4,5,6,7,8]]}})";
  }
  EXPECT_THAT(toString(plan::readRoutingCounts(path, store->getConfig())
                           .takeError()),
              HasSubstr("routing.counts has 1 layers but the model has 2"));
  {
    std::error_code ec;
    raw_fd_ostream os(path, ec);
    os << R"({"routing": {"counts": [[1,2,3,4,5,6,7,8],[0,0,0,0,0,0,0,1]]}})";
  }
  Expected<plan::RoutingCounts> ok =
      plan::readRoutingCounts(path, store->getConfig());
  ASSERT_TRUE(bool(ok)) << toString(ok.takeError());
  EXPECT_EQ(ok->counts[1][7], 1u);
}

} // namespace
