//===- StreamTest.cpp - Streaming experts from a bundle into the cache ----===//
//
// A bundle written by the compiler, read by the runtime's streamer through
// each I/O engine with O_DIRECT: cached experts come back at once, misses
// are read all at once and arrive checked, prefetches turn later misses into
// waits on reads already in flight, eviction follows the cache's policy, and
// a corrupt extent is reported by offset.

#include "compiler/emit/BundleWriter.h"
#include "compiler/model/Synth.h"
#include "compiler/model/WeightStore.h"
#include "runtime/stream/ExpertStreamer.h"

#include "llvm/Support/FileSystem.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <set>
#include <unistd.h>

using namespace llvm;
using namespace moec;
using ::testing::HasSubstr;

namespace {

/// A bundle in its own directory under /var/tmp (where O_DIRECT works;
/// /tmp may be tmpfs), removed with the object.
struct TempBundle {
  SmallString<128> dir;
  std::string path;
  ~TempBundle() {
    if (!dir.empty())
      sys::fs::remove_directories(dir);
  }
};

void writeBundle(TempBundle &b) {
  model::SynthOptions o;
  model::applyPreset("tiny", *model::lookupFamilyByName("qwen3moe"), o);
  o.expertsType = gguf::GgmlType::Q4_0;
  SmallString<128> &dir = b.dir;
  EXPECT_FALSE(sys::fs::createUniqueDirectory("/var/tmp/moec-stream", dir));
  std::string gguf = (dir + "/m.gguf").str(), out = (dir + "/m.moeb").str();
  b.path = out;
  EXPECT_FALSE(errorToBool(model::writeSynthGguf(o, gguf)));
  auto store = model::WeightStore::open(gguf);
  EXPECT_TRUE(bool(store));
  EXPECT_FALSE(errorToBool(emit::writeBundle(**store, out, {4096})));
}

class Streaming : public ::testing::TestWithParam<io::EngineKind> {};

TEST_P(Streaming, MissesHitsPrefetchesAndEviction) {
  TempBundle temp;
  writeBundle(temp);
  std::string path = temp.path, error;
  auto bundle = bundle::Bundle::open(path, error);
  ASSERT_TRUE(bundle) << error;
  bool direct = false;
  int fd = io::openForStreaming(path, true, direct);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(direct);
  auto engine = io::IoEngine::create(GetParam(), 8, error);
  ASSERT_TRUE(engine) << error;
  uint64_t slot = 4096; // each tiny extent fits one block
  ASSERT_LE(bundle->findExpert(0, 0)->size, slot);
  cache::ExpertCache cache(3 * slot, 4096, cache::EvictionPolicy::LRU);
  stream::ExpertStreamer streamer(*bundle, fd, cache, *engine);

  auto expectSame = [&](const stream::ReadyExpert &r) {
    std::vector<uint8_t> want(r.entry->size);
    std::string e;
    ASSERT_TRUE(bundle->readExpert(*r.entry, want.data(), e)) << e;
    EXPECT_EQ(0, std::memcmp(want.data(), r.data, want.size()))
        << "layer " << r.layer << " expert " << r.expert;
  };

  std::vector<stream::ReadyExpert> ready;
  ASSERT_TRUE(streamer.request(0, {0, 1, 2}, ready, error)) << error;
  EXPECT_TRUE(ready.empty());
  std::set<uint32_t> arrived;
  stream::ReadyExpert r;
  while (streamer.next(r, error)) {
    expectSame(r);
    arrived.insert(r.expert);
    streamer.release(r.layer, r.expert);
  }
  ASSERT_EQ(error, "");
  EXPECT_EQ(arrived, (std::set<uint32_t>{0, 1, 2}));
  EXPECT_EQ(streamer.getStats().reads, 3u);

  // 1 and 2 are cached; 3 evicts the least recently used, 0.
  ready.clear();
  ASSERT_TRUE(streamer.request(0, {1, 2, 3}, ready, error)) << error;
  ASSERT_EQ(ready.size(), 2u);
  for (const stream::ReadyExpert &x : ready) {
    expectSame(x);
    streamer.release(x.layer, x.expert);
  }
  ASSERT_TRUE(streamer.next(r, error)) << error;
  EXPECT_EQ(r.expert, 3u);
  expectSame(r);
  streamer.release(0, 3);
  EXPECT_FALSE(cache.contains(0, 0));

  // A prefetch for layer 1 becomes a wait on its read.
  ASSERT_TRUE(streamer.prefetch(1, {4}, error)) << error;
  ready.clear();
  ASSERT_TRUE(streamer.request(1, {4}, ready, error)) << error;
  if (ready.empty()) { // still in flight when requested
    ASSERT_TRUE(streamer.next(r, error)) << error;
    expectSame(r);
    EXPECT_EQ(streamer.getStats().prefetchHits, 1u);
  } else { // already done: a cache hit
    expectSame(ready[0]);
  }
  EXPECT_EQ(streamer.getStats().prefetches, 1u);
  EXPECT_EQ(streamer.getStats().reads, 5u);
  close(fd);
}

TEST_P(Streaming, CorruptExtentIsReportedByOffset) {
  TempBundle temp;
  writeBundle(temp);
  std::string path = temp.path, error;
  auto bundle = bundle::Bundle::open(path, error);
  ASSERT_TRUE(bundle) << error;
  const moec_bundle_expert *e = bundle->findExpert(1, 6);
  {
    int w = ::open(path.c_str(), O_WRONLY);
    uint8_t byte = 0x5a;
    ASSERT_EQ(pwrite(w, &byte, 1, e->offset + 10), 1);
    close(w);
  }
  bool direct = false;
  int fd = io::openForStreaming(path, true, direct);
  auto engine = io::IoEngine::create(GetParam(), 4, error);
  ASSERT_TRUE(engine) << error;
  cache::ExpertCache cache(8 * 4096, 4096, cache::EvictionPolicy::LFU);
  stream::ExpertStreamer streamer(*bundle, fd, cache, *engine);
  std::vector<stream::ReadyExpert> ready;
  ASSERT_TRUE(streamer.request(1, {6}, ready, error)) << error;
  stream::ReadyExpert r;
  EXPECT_FALSE(streamer.next(r, error));
  EXPECT_EQ(error, "offset " + std::to_string(e->offset) +
                       ": extent of layer 1 expert 6: checksum mismatch");
  close(fd);
}

INSTANTIATE_TEST_SUITE_P(Engines, Streaming,
                         ::testing::Values(io::EngineKind::IoUring,
                                           io::EngineKind::PreadPool),
                         [](const auto &info) {
                           return info.param == io::EngineKind::IoUring
                                      ? std::string("io_uring")
                                      : std::string("pread");
                         });

} // namespace
