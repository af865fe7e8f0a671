//===- IoEngineTest.cpp - io_uring and the pread pool read the same bytes -===//

#include "runtime/io/IoEngine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <random>
#include <unistd.h>

using namespace moec::io;

namespace {

constexpr uint64_t kBlock = 4096, kBlocks = 96;

struct Aligned {
  uint8_t *p;
  explicit Aligned(uint64_t size)
      : p(static_cast<uint8_t *>(std::aligned_alloc(kBlock, size))) {}
  ~Aligned() { std::free(p); }
};

std::string makeFile() {
  char path[] = "/var/tmp/moec-io-XXXXXX";
  int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  std::vector<uint8_t> data(kBlocks * kBlock);
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<uint8_t>(i * 7 + i / kBlock);
  EXPECT_EQ(write(fd, data.data(), data.size()), ssize_t(data.size()));
  close(fd);
  return path;
}

void readEverything(EngineKind kind, const char *expectedName) {
  std::string error;
  auto engine = IoEngine::create(kind, 16, error);
  ASSERT_TRUE(engine) << error;
  EXPECT_STREQ(engine->getName(), expectedName);
  std::string path = makeFile();
  bool direct = false;
  int fd = openForStreaming(path, true, direct);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  // Extents of 1 to 3 blocks, in random order, all submitted at once.
  std::vector<ReadRequest> requests;
  Aligned buffer(kBlocks * kBlock);
  std::memset(buffer.p, 0, kBlocks * kBlock);
  for (uint64_t b = 0; b < kBlocks;) {
    uint64_t n = std::min<uint64_t>(1 + b % 3, kBlocks - b);
    requests.push_back({fd, b * kBlock, n * kBlock, buffer.p + b * kBlock, b});
    b += n;
  }
  std::shuffle(requests.begin(), requests.end(), std::mt19937(1));
  engine->submit(requests);
  std::vector<Completion> done;
  while (done.size() < requests.size())
    ASSERT_GT(engine->poll(done, /*block=*/true), 0u);
  EXPECT_EQ(engine->getPending(), 0u);
  std::vector<uint64_t> tags;
  for (const Completion &c : done) {
    EXPECT_EQ(c.error, 0) << "tag " << c.tag;
    tags.push_back(c.tag);
  }
  std::sort(tags.begin(), tags.end());
  EXPECT_EQ(std::adjacent_find(tags.begin(), tags.end()), tags.end());
  for (uint64_t i = 0; i < kBlocks * kBlock; ++i)
    ASSERT_EQ(buffer.p[i], static_cast<uint8_t>(i * 7 + i / kBlock)) << i;

  // A read past the end of the file completes with an error.
  Aligned one(kBlock);
  engine->submit({{fd, kBlocks * kBlock, kBlock, one.p, 999}});
  done.clear();
  while (done.empty())
    engine->poll(done, true);
  EXPECT_EQ(done[0].tag, 999u);
  EXPECT_EQ(done[0].error, EIO);
  close(fd);
  unlink(path.c_str());
}

TEST(IoEngine, IoUringReadsEverythingAsSubmitted) {
  readEverything(EngineKind::IoUring, "io_uring");
}

TEST(IoEngine, PreadPoolReadsEverythingAsSubmitted) {
  readEverything(EngineKind::PreadPool, "pread");
}

TEST(IoEngine, AutoPrefersIoUring) {
  std::string error;
  auto engine = IoEngine::create(EngineKind::Auto, 4, error);
  ASSERT_TRUE(engine) << error;
  EXPECT_STREQ(engine->getName(), "io_uring");
}

TEST(IoEngine, DirectIoWhereTheFileSystemAllowsIt) {
  std::string path = makeFile();
  bool direct = false;
  int fd = openForStreaming(path, true, direct);
  ASSERT_GE(fd, 0);
  int flags = fcntl(fd, F_GETFL);
  EXPECT_EQ((flags & O_DIRECT) != 0, direct);
  close(fd);
  fd = openForStreaming(path, false, direct);
  EXPECT_FALSE(direct);
  close(fd);
  unlink(path.c_str());
}

} // namespace
