//===- gemv_from_cache.cpp - Decode GEMVs with their weights in cache ---===//
//
// How fast each decode kernel (KernelLibrary's GEMV on 8-row interleaved
// tiles with 8-bit activations, the bundle's layout) computes when its
// weights do not come from memory: one matrix small enough for the core's
// L2, run over and over on one thread. Beside it, in the same run, a loop
// that only loads the same bytes (the cache's read rate): the kernel's
// instructions are the limit where its rate is far below that loop's.
//
// A decode step reads every weight from memory once, so a kernel keeps up
// with memory only where its rate from cache is well above the memory's
// read rate per core (membw's figure over the threads); a kernel close to
// it is waiting on its instructions.
//
//   ninja -C build moec-bench-gemv
//   build/bin/moec-bench-gemv [--formats=q4_0,q4_k,...] [--dots=...]
//                             [--kib=384] [--k=2048] [--trials=7]
//
// JIT-compiled for the host CPU (test/codegen/cpu/JitMatmul); the dots the
// host runs: avx512-vnni (zmm, 16 lanes), avx-vnni and avx2 (8 lanes: the
// rows of targets without AVX-512). Prints one Markdown table. Not a test:
// run by hand, figures compared only within one run.
//
//===----------------------------------------------------------------------===//

#include "codegen/cpu/Kernels.h"
#include "compiler/emit/Repack.h"
#include "dialects/qnt/IR/QntDialect.h"
#include "targets/TargetDescription.h"
#include "test/codegen/cpu/JitMatmul.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/TargetParser/Host.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

using namespace moec;
using namespace moec::test;
using codegen::KernelLibrary;
using qnt::QuantFormat;

namespace {

struct Options {
  std::vector<std::string> formats = {"q4_0", "q8_0", "q4_k", "q5_k",
                                      "q6_k", "q2_k", "q3_k"};
  std::vector<std::string> dots = {"avx512-vnni", "avx-vnni", "avx2"};
  int64_t kib = 384, k = 2048, trials = 7;
};

std::vector<std::string> splitList(llvm::StringRef list) {
  llvm::SmallVector<llvm::StringRef> parts;
  list.split(parts, ',', -1, false);
  return std::vector<std::string>(parts.begin(), parts.end());
}

bool parseOptions(int argc, char **argv, Options &o) {
  for (int i = 1; i < argc; ++i) {
    llvm::StringRef arg(argv[i]);
    auto value = [&](llvm::StringRef name, int64_t &out) {
      if (!arg.consume_front(name))
        return false;
      if (arg.getAsInteger(10, out) || out < 1) {
        std::fprintf(stderr, "moec-bench-gemv: %s needs a positive integer\n",
                     argv[i]);
        std::exit(2);
      }
      return true;
    };
    if (arg.consume_front("--formats="))
      o.formats = splitList(arg);
    else if (arg.consume_front("--dots="))
      o.dots = splitList(arg);
    else if (value("--kib=", o.kib) || value("--k=", o.k) ||
             value("--trials=", o.trials))
      continue;
    else {
      std::fprintf(stderr,
                   "usage: moec-bench-gemv [--formats=q4_0,q4_k,...] "
                   "[--dots=avx512-vnni,avx-vnni,avx2] [--kib=N] [--k=N] "
                   "[--trials=N]\n");
      return false;
    }
  }
  return true;
}

/// How the kernels of one integer dot are compiled: its IntegerDot, vector
/// width and the target whose CPU and features the backend compiles them
/// for (empty cpu: the host's).
struct DotTarget {
  IntegerDot dot;
  unsigned lanes;
  std::string cpu;
  std::vector<std::string> features;
};

bool isDotName(llvm::StringRef name) {
  return name == "avx512-vnni" || name == "avx-vnni" || name == "avx2";
}

/// The dot's compilation, if the host runs it: avx512-vnni as the host
/// target (zmm), avx-vnni and avx2 as the targets x86_64-avxvnni and
/// x86_64-avx2 (x86-64-v3: ymm, 16 vector registers).
bool dotOf(llvm::StringRef name, DotTarget &out) {
  auto named = [&](llvm::StringRef target, IntegerDot dot) {
    llvm::Expected<targets::TargetDescription> t =
        targets::lookupTarget(target);
    if (!t) {
      llvm::consumeError(t.takeError());
      return false;
    }
    out = {dot, 8, t->cpu, t->features};
    return true;
  };
  if (name == "avx512-vnni" && hostHas("avx512vnni") && hostHas("avx512bw") &&
      hostHas("avx512vl")) {
    out = {IntegerDot::X86Avx512Vnni, 16, "", {}};
    return true;
  }
  if (name == "avx-vnni" && hostHas("avxvnni"))
    return named("x86_64-avxvnni", IntegerDot::X86AvxVnni);
  if (name == "avx2" && hostHas("avx2"))
    return named("x86_64-avx2", IntegerDot::X86Avx2);
  return false;
}

double seconds() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// The best rates in bytes per second of `kernel` and `loads` (each reads
/// `bytes` bytes a call) over `trials` trials of at least 20 ms each, the
/// two alternated trial by trial: this guest's clock and its neighbours
/// move both alike, so their ratio holds where each alone swings.
template <typename Kernel, typename Loads>
std::pair<double, double> bestRates(int64_t bytes, int64_t trials,
                                    Kernel kernel, Loads loads) {
  auto repsFor = [](auto &pass) {
    pass(); // warm the caches and the code
    int64_t reps = 1;
    for (double t0 = seconds(); seconds() - t0 < 0.02; ++reps)
      pass();
    return reps;
  };
  auto trial = [&](auto &pass, int64_t reps) {
    double t0 = seconds();
    for (int64_t r = 0; r < reps; ++r)
      pass();
    return double(bytes) * double(reps) / (seconds() - t0);
  };
  int64_t kernelReps = repsFor(kernel), loadsReps = repsFor(loads);
  double bestKernel = 0, bestLoads = 0;
  for (int64_t t = 0; t < trials; ++t) {
    bestKernel = std::max(bestKernel, trial(kernel, kernelReps));
    bestLoads = std::max(bestLoads, trial(loads, loadsReps));
  }
  return {bestKernel, bestLoads};
}

// The cache's read rate: 32-byte loads, eight a step into four sums (as
// bench/membw.c reads memory), over the same bytes as the kernel.
using Bytes32 = long long __attribute__((vector_size(32)));

__attribute__((target("avx2"), noinline)) long long loadAll(const uint8_t *p,
                                                            int64_t bytes) {
  Bytes32 s0 = {}, s1 = {}, s2 = {}, s3 = {};
  int64_t i = 0;
  for (; i + 256 <= bytes; i += 256) {
    Bytes32 v[8];
    std::memcpy(v, p + i, sizeof(v));
    s0 ^= v[0] ^ v[4];
    s1 ^= v[1] ^ v[5];
    s2 ^= v[2] ^ v[6];
    s3 ^= v[3] ^ v[7];
  }
  Bytes32 s = s0 ^ s1 ^ s2 ^ s3;
  return s[0] ^ s[1] ^ s[2] ^ s[3];
}

struct Row {
  std::string format, matrix;
  int64_t bytes;
  double gbps, loadsGbps;
};

/// One kernel's rate: `swiglu` runs gate and up side by side (an expert's
/// first matmul), else one matrix (attention's, the down projection's).
bool measure(const Options &o, QuantFormat quant, const DotTarget &target,
             bool swiglu, Row &row) {
  const unsigned lanes = target.lanes;
  WeightFormat format = quantFormat(quant);
  format.interleave = 8;
  int64_t blockElements = format.blockElements(lanes);
  if (o.k % blockElements != 0 || o.k % 256 != 0) {
    std::fprintf(stderr,
                 "moec-bench-gemv: --k=%lld is not a multiple of "
                 "256 and of %s's block\n",
                 (long long)o.k, format.name().c_str());
    return false;
  }
  int64_t rowBytes = o.k / blockElements * format.blockBytes(lanes);
  // Rows: the matrices together about --kib, a multiple of 128 (whole
  // passes of the 4-stream GEMVs, as the model's units are), claimed in
  // the default units (about four for the one thread, the last in parts).
  int64_t matrices = swiglu ? 2 : 1;
  int64_t n =
      std::max<int64_t>(1, (o.kib * 1024 / (matrices * rowBytes) + 64) / 128) *
      128;

  MatmulSpec spec;
  spec.format = format;
  spec.n = n;
  spec.k = o.k;
  spec.swiglu = swiglu;
  spec.int8Activations = true;
  JitMatmul kernel(spec, lanes, target.dot, target.cpu, target.features);
  if (!kernel.error.empty()) {
    std::fprintf(stderr, "moec-bench-gemv: %s: %s\n", format.name().c_str(),
                 kernel.error.c_str());
    return false;
  }

  WeightLayout layout(spec, lanes);
  GuardedBuffer w(layout.totalBytes);
  std::mt19937 rng(20261127);
  for (int64_t m = 0; m < matrices; ++m) {
    std::vector<uint8_t> bytes = randomWeights(format, lanes, n, o.k, rng);
    emit::repackRows(bytes.data(), w.data + (m ? layout.wOff2 : layout.wOff), n,
                     rowBytes, format.blockBytes(lanes),
                     format.splitHeaderBytes(), format.interleave);
  }
  GuardedBuffer x((kXOffset + o.k) * sizeof(float));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t i = 0; i < kXOffset + o.k; ++i)
    x.floats()[i] = normal(rng);
  GuardedBuffer q(kQOffset + KernelLibrary::getQuantizedRowBytes(o.k));
  if (std::string e = kernel.quantize(x, q, 1, 0, 1); !e.empty()) {
    std::fprintf(stderr, "moec-bench-gemv: %s\n", e.c_str());
    return false;
  }
  std::vector<float> y(kYOffset + n + kYSlack);
  int64_t weightBytes = matrices * n * rowBytes;
  int32_t counter = 0;
  std::unique_ptr<JitMatmul::BoundRun> run =
      kernel.bindRun(w, x, q, y, 1, 0, 1, counter);
  if (!run) {
    std::fprintf(stderr, "moec-bench-gemv: %s\n", kernel.error.c_str());
    return false;
  }
  volatile long long sink = 0;
  auto [rate, loads] = bestRates(
      weightBytes, o.trials,
      [&] {
        counter = 0; // the claims' counter, reset for each call
        (*run)();
      },
      [&] { sink = sink + loadAll(w.data + layout.wOff, weightBytes); });
  row.format = format.name();
  row.matrix = swiglu ? "gate+up (SwiGLU)" : "one matrix";
  row.bytes = weightBytes;
  row.gbps = rate / 1e9;
  row.loadsGbps = loads / 1e9;
  return true;
}

} // namespace

int main(int argc, char **argv) {
  Options o;
  if (!parseOptions(argc, argv, o))
    return 2;
  if (o.formats.empty() || o.dots.empty()) {
    std::fprintf(stderr, "moec-bench-gemv: --formats and --dots need at "
                         "least one name\n");
    return 2;
  }
  // The GGUF block formats by the qnt dialect's names (the own int formats
  // need a group, which this tool does not take).
  std::vector<QuantFormat> quants;
  for (const std::string &name : o.formats) {
    std::optional<QuantFormat> quant =
        qnt::symbolizeQuantFormat(llvm::StringRef(name).lower());
    if (!quant || !qnt::isGgufFormat(*quant)) {
      std::fprintf(stderr,
                   "moec-bench-gemv: unknown format '%s' (a GGUF block "
                   "format: q4_0, q8_0, q4_k, ...)\n",
                   name.c_str());
      return 2;
    }
    quants.push_back(*quant);
  }
  for (const std::string &name : o.dots)
    if (!isDotName(name)) {
      std::fprintf(stderr,
                   "moec-bench-gemv: unknown dot '%s' (avx512-vnni, "
                   "avx-vnni, avx2)\n",
                   name.c_str());
      return 2;
    }
  std::printf("| format | dot | matrix | weights KiB | GB/s from cache | "
              "loads alone GB/s | share |\n|---|---|---|---|---|---|---|\n");
  int failures = 0, measured = 0;
  for (const std::string &dotName : o.dots) {
    DotTarget target;
    if (!dotOf(dotName, target)) {
      std::fprintf(stderr,
                   "moec-bench-gemv: this host does not run %s (skipped)\n",
                   dotName.c_str());
      continue;
    }
    for (QuantFormat quant : quants)
      for (bool swiglu : {false, true}) {
        Row row;
        if (!measure(o, quant, target, swiglu, row)) {
          ++failures;
          continue;
        }
        ++measured;
        std::printf("| %s | %s | %s | %lld | %.1f | %.1f | %.0f%% |\n",
                    row.format.c_str(), dotName.c_str(), row.matrix.c_str(),
                    (long long)(row.bytes / 1024), row.gbps, row.loadsGbps,
                    100 * row.gbps / row.loadsGbps);
        std::fflush(stdout);
      }
  }
  if (measured == 0 && failures == 0)
    std::fprintf(stderr, "moec-bench-gemv: this host runs none of the dots "
                         "asked for\n");
  return failures || measured == 0 ? 1 : 0;
}
