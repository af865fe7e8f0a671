//===- TargetDescription.cpp - What moec compiles for ---------------------===//

#include "targets/TargetDescription.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/TargetParser/Host.h"

#include <unistd.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#endif
#if defined(__aarch64__)
#include <sys/auxv.h>
#endif

using namespace llvm;
using namespace moec::targets;

StringRef moec::targets::getBackendName(BackendKind kind) {
  switch (kind) {
  case BackendKind::Cpu:
    return "cpu";
  case BackendKind::Vulkan:
    return "vulkan";
  case BackendKind::OpenCL:
    return "opencl";
  case BackendKind::Cuda:
    return "cuda";
  case BackendKind::Hexagon:
    return "hexagon";
  }
  return "?";
}

bool moec::targets::isBackendImplemented(BackendKind kind) {
  // The CPU backend generates code; Vulkan, OpenCL, CUDA and Hexagon come
  // later behind the same pipeline.
  return kind == BackendKind::Cpu;
}

bool TargetDescription::hasFeature(StringRef feature) const {
  return llvm::is_contained(features, ("+" + feature).str());
}

namespace {

constexpr uint64_t KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;

std::vector<TargetDescription> namedBoards() {
  // Nominal figures from the vendors' data sheets; benchmarks measure the
  // real ones on the device.
  return {
      {"x86_64-avx2", "x86-64 with AVX2 and FMA (Haswell and later, Zen)",
       "x86_64-unknown-linux-gnu", "x86-64-v3",
       {"+avx2", "+fma", "+f16c", "+bmi2"}, BackendKind::Cpu, 256, 32 * KiB,
       1 * MiB, 32 * MiB, 16 * GiB, 40.0, 3.0, 4096},
      {"x86_64-avxvnni",
       "x86-64-avx2 with AVX-VNNI (Intel client cores from Alder Lake on)",
       "x86_64-unknown-linux-gnu", "x86-64-v3",
       {"+avx2", "+fma", "+f16c", "+bmi2", "+avxvnni"}, BackendKind::Cpu, 256,
       48 * KiB, 2 * MiB, 24 * MiB, 16 * GiB, 80.0, 5.0, 4096},
      {"x86_64-avx512",
       "x86-64 with AVX-512, VNNI and BF16 (Sapphire Rapids, Zen 4)",
       "x86_64-unknown-linux-gnu", "x86-64-v4",
       {"+avx2", "+fma", "+f16c", "+bmi2", "+avx512f", "+avx512bw",
        "+avx512vl", "+avx512dq", "+avx512vnni", "+avx512bf16"},
       BackendKind::Cpu, 512, 48 * KiB, 2 * MiB, 32 * MiB, 32 * GiB, 60.0, 3.0,
       4096},
      {"x86_64-amx",
       "x86-64-avx512 with AMX tiles for prefill (Sapphire Rapids and later; "
       "the OS must grant the tile state)",
       "x86_64-unknown-linux-gnu", "x86-64-v4",
       {"+avx2", "+fma", "+f16c", "+bmi2", "+avx512f", "+avx512bw",
        "+avx512vl", "+avx512dq", "+avx512vnni", "+avx512bf16", "+amx-tile",
        "+amx-int8", "+amx-bf16"},
       BackendKind::Cpu, 512, 48 * KiB, 2 * MiB, 32 * MiB, 32 * GiB, 60.0, 3.0,
       4096},
      {"rpi5", "Raspberry Pi 5: 4x Cortex-A76, 8 GB LPDDR4X, microSD/NVMe",
       "aarch64-unknown-linux-gnu", "cortex-a76",
       {"+neon", "+dotprod", "+fullfp16", "+rcpc"}, BackendKind::Cpu, 128,
       64 * KiB, 512 * KiB, 2 * MiB, 8 * GiB, 17.0, 0.45, 4096},
      {"jetson-orin-nano",
       "NVIDIA Jetson Orin Nano 8GB: 6x Cortex-A78AE, Ampere GPU (sm_87), NVMe",
       "aarch64-unknown-linux-gnu", "cortex-a78",
       {"+neon", "+dotprod", "+fullfp16", "+rcpc"}, BackendKind::Cuda, 128,
       64 * KiB, 256 * KiB, 2 * MiB, 8 * GiB, 68.0, 1.5, 4096},
      {"snapdragon-8gen3-hexagon",
       "Snapdragon 8 Gen 3 Hexagon NPU (HVX 128-byte vectors; v67 under "
       "qemu-hexagon)",
       "hexagon-unknown-unknown-elf", "hexagonv67",
       {"+hvxv67", "+hvx-length128b"}, BackendKind::Hexagon, 1024, 0,
       1 * MiB, 0, 12 * GiB, 77.0, 4.0, 4096},
      {"riscv64-rvv", "RISC-V 64 with the vector extension (VLEN >= 128)",
       "riscv64-unknown-linux-gnu", "generic-rv64",
       {"+m", "+a", "+f", "+d", "+c", "+v", "+zvl128b"}, BackendKind::Cpu, 128,
       32 * KiB, 512 * KiB, 0, 4 * GiB, 8.0, 0.5, 4096},
  };
}

#if defined(__x86_64__)
uint64_t readXcr0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

/// Linux grants the AMX tile state per process (arch_prctl
/// ARCH_REQ_XCOMP_PERM); where it refuses, AMX instructions fault.
bool kernelGrantsAmx() {
  constexpr long ARCH_REQ_XCOMP_PERM = 0x1023;
  constexpr long XFEATURE_XTILEDATA = 18;
  return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

void detectX86(TargetDescription &t) {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx))
    return;
  bool osxsave = ecx & (1u << 27);
  uint64_t xcr0 = osxsave ? readXcr0() : 0;
  // The OS saves YMM state (XCR0 bits 1, 2) and, for AVX-512, the opmask
  // and upper ZMM state (bits 5, 6, 7).
  bool avxState = (xcr0 & 0x6) == 0x6;
  bool avx512State = avxState && (xcr0 & 0xe0) == 0xe0;
  bool amxState = (xcr0 & (3ull << 17)) == (3ull << 17);
  auto add = [&](bool present, const char *feature) {
    if (present)
      t.features.push_back(feature);
  };
  add(ecx & (1u << 20), "+sse4.2");
  add(avxState && (ecx & (1u << 28)), "+avx");
  add(avxState && (ecx & (1u << 12)), "+fma");
  add(avxState && (ecx & (1u << 29)), "+f16c");
  unsigned maxLeaf = __get_cpuid_max(0, nullptr);
  if (maxLeaf >= 7) {
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    unsigned ebx7 = ebx, ecx7 = ecx, edx7 = edx;
    __cpuid_count(7, 1, eax, ebx, ecx, edx);
    unsigned eax71 = eax;
    add(avxState && (ebx7 & (1u << 5)), "+avx2");
    add(ebx7 & (1u << 8), "+bmi2");
    add(avxState && (eax71 & (1u << 4)), "+avxvnni");
    add(avx512State && (ebx7 & (1u << 16)), "+avx512f");
    add(avx512State && (ebx7 & (1u << 17)), "+avx512dq");
    add(avx512State && (ebx7 & (1u << 30)), "+avx512bw");
    add(avx512State && (ebx7 & (1u << 31)), "+avx512vl");
    add(avx512State && (ecx7 & (1u << 11)), "+avx512vnni");
    add(avx512State && (eax71 & (1u << 5)), "+avx512bf16");
    bool amx = amxState && (edx7 & (1u << 24)) && kernelGrantsAmx();
    add(amx, "+amx-tile");
    add(amx && (edx7 & (1u << 25)), "+amx-int8");
    add(amx && (edx7 & (1u << 22)), "+amx-bf16");
  }
  t.vectorBits = t.hasFeature("avx512f") ? 512 : t.hasFeature("avx") ? 256 : 128;
}
#endif

#if defined(__aarch64__)
void detectAarch64(TargetDescription &t) {
  unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
  t.features.push_back("+neon");
  if (hw & (1ul << 20)) // HWCAP_ASIMDDP
    t.features.push_back("+dotprod");
  if (hw & (1ul << 22)) // HWCAP_SVE
    t.features.push_back("+sve");
  if (hw2 & (1ul << 13)) // HWCAP2_I8MM
    t.features.push_back("+i8mm");
  t.vectorBits = 128;
}
#endif

} // namespace

TargetDescription moec::targets::detectHost() {
  TargetDescription t;
  t.name = "host";
  t.summary = "this machine, as its OS enables it";
  t.triple = sys::getDefaultTargetTriple();
  t.backend = BackendKind::Cpu;
  t.vectorBits = 128;
#if defined(__x86_64__)
  // A generic CPU with explicit features: a named CPU (say
  // sapphirerapids) would imply features, AMX among them, that the OS may
  // not enable.
  t.cpu = "x86-64";
  detectX86(t);
#elif defined(__aarch64__)
  t.cpu = "generic";
  detectAarch64(t);
#else
  t.cpu = "generic";
#endif
  auto conf = [](int name) {
    long v = sysconf(name);
    return v > 0 ? static_cast<uint64_t>(v) : 0;
  };
  t.l1dBytes = conf(_SC_LEVEL1_DCACHE_SIZE);
  t.l2Bytes = conf(_SC_LEVEL2_CACHE_SIZE);
  t.l3Bytes = conf(_SC_LEVEL3_CACHE_SIZE);
  t.memoryBytes = conf(_SC_PHYS_PAGES) * conf(_SC_PAGESIZE);
  t.memoryGBps = 0;
  t.storageGBps = 0;
  t.ioBlockBytes = 4096;
  return t;
}

std::vector<TargetDescription> moec::targets::getTargets() {
  std::vector<TargetDescription> targets = {detectHost()};
  for (TargetDescription &t : namedBoards())
    targets.push_back(std::move(t));
  return targets;
}

Expected<TargetDescription> moec::targets::lookupTarget(StringRef name) {
  std::string names;
  for (TargetDescription &t : getTargets()) {
    if (t.name == name)
      return std::move(t);
    names += (names.empty() ? "" : ", ") + t.name;
  }
  return createStringError(inconvertibleErrorCode(),
                           "unknown target '%s' (targets: %s; "
                           "'moec --list-targets' describes them)",
                           name.str().c_str(), names.c_str());
}
