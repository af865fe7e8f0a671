//===- TargetDescriptionTest.cpp - Target descriptions and host detection -===//
//
// Every named target must be usable by LLVM's code generator as written
// (its triple's backend exists in the LLVM moec links, its CPU name and every
// feature flag are known to it), and `host` must report exactly the ISA
// features that the kernel reports as usable in /proc/cpuinfo (which it
// clears when XCR0 does not enable a state).

#include "targets/TargetDescription.h"

#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/TargetParser/Triple.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <sstream>

using namespace llvm;
using namespace moec::targets;

namespace {

TEST(Targets, NamesTheIssueAsks) {
  std::vector<std::string> names;
  for (const TargetDescription &t : getTargets())
    names.push_back(t.name);
  EXPECT_THAT(
      names, ::testing::ElementsAre("host", "x86_64-avx2", "x86_64-avxvnni",
                                    "x86_64-avx512", "x86_64-amx", "rpi5",
                                    "jetson-orin-nano",
                                    "snapdragon-8gen3-hexagon", "riscv64-rvv"));
}

TEST(Targets, EveryDescriptionIsUsableByLLVM) {
  InitializeAllTargetInfos();
  InitializeAllTargetMCs();
  for (const TargetDescription &t : getTargets()) {
    SCOPED_TRACE(t.name);
    std::string error;
    Triple triple(t.triple);
    const Target *target = TargetRegistry::lookupTarget(triple, error);
    ASSERT_TRUE(target) << error;
    std::unique_ptr<MCSubtargetInfo> sti(
        target->createMCSubtargetInfo(triple, t.cpu, ""));
    ASSERT_TRUE(sti);
    EXPECT_TRUE(sti->isCPUStringValid(t.cpu)) << t.cpu;
    std::set<std::string> known;
    for (const SubtargetFeatureKV &kv : sti->getAllProcessorFeatures())
      known.insert(kv.Key);
    for (const std::string &feature : t.features) {
      ASSERT_EQ(feature[0], '+');
      EXPECT_TRUE(known.count(feature.substr(1))) << feature;
    }
    EXPECT_GT(t.vectorBits, 0u);
    EXPECT_GT(t.ioBlockBytes, 0u);
    if (t.name != "host") {
      EXPECT_GT(t.memoryGBps, 0.0);
      EXPECT_GT(t.storageGBps, 0.0);
    }
  }
}

TEST(Targets, UnknownNameListsTheKnownOnes) {
  Expected<TargetDescription> t = lookupTarget("vax");
  ASSERT_FALSE(bool(t));
  EXPECT_THAT(toString(t.takeError()),
              ::testing::HasSubstr("unknown target 'vax' (targets: host, "
                                   "x86_64-avx2, x86_64-avxvnni, "
                                   "x86_64-avx512, x86_64-amx, rpi5"));
  EXPECT_TRUE(bool(lookupTarget("rpi5")));
}

#if defined(__x86_64__)
TEST(Targets, HostReportsWhatTheKernelEnables) {
  // /proc files report size 0: read them as streams.
  auto cpuinfo = MemoryBuffer::getFileAsStream("/proc/cpuinfo");
  ASSERT_TRUE(bool(cpuinfo));
  std::set<std::string> flags;
  SmallVector<StringRef> lines;
  (*cpuinfo)->getBuffer().split(lines, '\n');
  for (StringRef line : lines)
    if (line.starts_with("flags")) {
      std::istringstream words(line.split(':').second.str());
      for (std::string w; words >> w;)
        flags.insert(w);
      break;
    }
  ASSERT_FALSE(flags.empty());
  TargetDescription host = detectHost();
  // LLVM feature name -> /proc/cpuinfo flag.
  std::pair<const char *, const char *> pairs[] = {
      {"avx", "avx"},           {"avx2", "avx2"},
      {"fma", "fma"},           {"f16c", "f16c"},
      {"bmi2", "bmi2"},         {"avxvnni", "avx_vnni"},
      {"avx512f", "avx512f"},   {"avx512bw", "avx512bw"},
      {"avx512vl", "avx512vl"}, {"avx512dq", "avx512dq"},
      {"avx512vnni", "avx512_vnni"}, {"avx512bf16", "avx512_bf16"}};
  for (auto [feature, flag] : pairs)
    EXPECT_EQ(host.hasFeature(feature), flags.count(flag) == 1)
        << feature << " vs cpuinfo " << flag;
  // AMX needs the CPU, XCR0 and the kernel's per-process grant; without
  // the CPU flag it can never be reported.
  if (!flags.count("amx_tile"))
    EXPECT_FALSE(host.hasFeature("amx-tile"));
  EXPECT_EQ(host.vectorBits, host.hasFeature("avx512f") ? 512u : 256u);
}
#endif

} // namespace
