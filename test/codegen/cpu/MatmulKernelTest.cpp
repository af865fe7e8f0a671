//===- MatmulKernelTest.cpp - Generated matmuls vs the reference dequantizers -===//
//
// For every weight format and vector width, JIT-compiles KernelLibrary's
// matmul (through codegen::lowerToLLVMDialect, as the backend lowers it) and
// runs it at decode token counts (T <= 2: the kernel's GEMV path) and prefill
// ones (T > 2: its GEMM path) on random weights and activations, once on one
// thread and once split over three (the kernel's row split), and compares
// every output with a double-precision dot product of the reference
// dequantizer's rows (compiler/quant for the GGUF and float formats,
// test/reference/GroupDequantReference for the own int formats) with the
// activations, within the error bound of an f32 accumulation.
//
// The variants (SwiGLU gate/up pairs, a residual to accumulate, an f32 bias
// read from the weight buffer) and the 8-bit activation path
// (quantizeActivations, then the integer matmul, compared with the reference
// on the dequantized 8-bit activations) have suites of their own.
//
// Weights, activations and outputs sit at non-zero offsets; the weights and
// the activations end right before an inaccessible page, so a kernel that
// reads past them crashes; outputs outside the kernel's rows are checked to
// be untouched.
//
//===----------------------------------------------------------------------===//

#include "codegen/cpu/BlockDecode.h"
#include "codegen/cpu/EmitObject.h"
#include "codegen/cpu/Kernels.h"
#include "compiler/emit/Repack.h"
#include "compiler/quant/Dequantize.h"
#include "dialects/qnt/IR/QntDialect.h"
#include "targets/TargetDescription.h"
#include "test/codegen/cpu/JitMatmul.h"
#include "test/reference/GroupDequantReference.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/ExecutionEngine/CRunnerUtils.h"
#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/ADT/bit.h"
#include "llvm/TargetParser/Host.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

using namespace mlir;
using namespace moec;
using codegen::IntegerDot;
using codegen::KernelLibrary;
using codegen::MatmulSpec;
using codegen::WeightFormat;
using qnt::QuantFormat;
using namespace moec::test;

namespace {

//===----------------------------------------------------------------------===//
// Formats
//===----------------------------------------------------------------------===//

bool isKQuant(const WeightFormat &format) {
  if (format.kind != WeightFormat::Kind::Quantized)
    return false;
  switch (format.quant) {
  case QuantFormat::Q2_K:
  case QuantFormat::Q3_K:
  case QuantFormat::Q4_K:
  case QuantFormat::Q5_K:
  case QuantFormat::Q6_K:
    return true;
  default:
    return false;
  }
}

/// Every format: the float ones, the GGUF block formats, and the own int
/// formats, symmetric and asymmetric, with groups of 24 (a multiple of 8
/// that no power of two above 8 divides: runs of 8 elements in the 8-bit
/// activation path), 32 and 128.
std::vector<WeightFormat> allFormats() {
  std::vector<WeightFormat> formats = {floatFormat(WeightFormat::Kind::F32),
                                       floatFormat(WeightFormat::Kind::F16),
                                       floatFormat(WeightFormat::Kind::BF16)};
  for (QuantFormat quant :
       {QuantFormat::Q4_0, QuantFormat::Q4_1, QuantFormat::Q5_0,
        QuantFormat::Q5_1, QuantFormat::Q8_0, QuantFormat::Q2_K,
        QuantFormat::Q3_K, QuantFormat::Q4_K, QuantFormat::Q5_K,
        QuantFormat::Q6_K, QuantFormat::MXFP4})
    formats.push_back(quantFormat(quant));
  for (QuantFormat quant : {QuantFormat::Int2, QuantFormat::Int3,
                            QuantFormat::Int4, QuantFormat::Int8})
    for (unsigned group : {24u, 32u, 128u})
      for (bool asymmetric : {false, true})
        formats.push_back(quantFormat(quant, group, asymmetric));
  return formats;
}

/// Rows: not a multiple of the row tiles (4, 2 for SwiGLU), so that both
/// the tiles and the remainders run, on one thread and on each of three.
constexpr int64_t kRows = 38;

/// Columns: a multiple of the format's block and of 32 (the block of the
/// 8-bit activations); two super-blocks for the K-quants.
int64_t columnsFor(const WeightFormat &format) {
  if (isOwnFormat(format) && format.group == 24)
    return 480;
  if (isKQuant(format) || (isOwnFormat(format) && format.group == 128))
    return 512;
  return 256;
}

/// Vector widths to test: 4 and 8 everywhere (LLVM legalizes them on any
/// x86-64 or AArch64 host); 16 only where the CPU has AVX-512, decided at
/// run time from the host's features.
std::vector<unsigned> lanesToTest() {
  std::vector<unsigned> lanes = {4, 8};
  if (hostHas("avx512f"))
    lanes.push_back(16);
  return lanes;
}

/// The integer dot products this host can run: the portable one, AVX2's,
/// VNNI's. (On a host without VNNI its cases are not registered; CI's
/// machines, Sapphire Rapids and Zen 4, have it.)
std::vector<IntegerDot> hostIntegerDots() {
  std::vector<IntegerDot> dots = {IntegerDot::Generic};
  if (!hostHas("avx2"))
    return dots;
  dots.push_back(IntegerDot::X86Avx2);
  // vpdpbusd on ymm and xmm: AVX-VNNI, or AVX512-VNNI with AVX512VL (what
  // the compiler asks of a target for IntegerDot::X86AvxVnni).
  if (hostHas("avxvnni") || (hostHas("avx512vnni") && hostHas("avx512vl")))
    dots.push_back(IntegerDot::X86AvxVnni);
  return dots;
}

/// Whether the host runs IntegerDot::X86Avx512Vnni's zmm code (which only
/// decode's tiled GEMV of 8-row tiles adds to X86AvxVnni's).
bool hostHasAvx512Vnni() {
  return hostHas("avx512vnni") && hostHas("avx512vl") && hostHas("avx512bw");
}

/// Whether the host runs IntegerDot::X86Amx's tile code: the host target
/// (which asks the kernel for the tile state, as the runtime does at open,
/// and lists AMX only where it is granted) has AMX-TILE and AMX-INT8.
bool hostHasAmx() {
  targets::TargetDescription host = targets::detectHost();
  return hostHasAvx512Vnni() && host.hasFeature("amx-tile") &&
         host.hasFeature("amx-int8");
}

bool decodable(const WeightFormat &format, unsigned lanes) {
  return format.blockElements(lanes) % lanes == 0;
}

gguf::GgmlType ggmlType(const WeightFormat &format) {
  return static_cast<gguf::GgmlType>(*format.getGgmlTypeId());
}

/// The reference's values of `rows` weight rows of `k` elements.
std::vector<float> dequantizeReference(const WeightFormat &format,
                                       const uint8_t *bytes, int64_t rows,
                                       int64_t k) {
  std::vector<float> values(rows * k);
  if (isOwnFormat(format))
    reference::dequantizeGroup(qnt::getOwnFormatBits(format.quant),
                               format.group, format.asymmetric, bytes,
                               values.data(), rows * k);
  else
    moec::quant::dequantizeRow(ggmlType(format), bytes, values.data(),
                               rows * k);
  return values;
}

//===----------------------------------------------------------------------===//
// 8-bit activations: the rule of Kernels.h, in C++
//===----------------------------------------------------------------------===//

/// One token's row quantized as quantizeActivations documents: codes, the
/// per-32 scales, the per-16 sums and the integer code sums per 16 and 32.
struct QuantizedRow {
  std::vector<int8_t> codes;
  std::vector<float> scales, sums;
  std::vector<int32_t> codeSums16, codeSums32;
  /// d * code, the values the integer matmul multiplies with.
  std::vector<float> values;
};

QuantizedRow quantizeRow(const float *x, int64_t k) {
  QuantizedRow row;
  row.codes.resize(k);
  row.values.resize(k);
  for (int64_t block = 0; block < k / 32; ++block) {
    const float *xb = x + block * 32;
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j)
      amax = std::max(amax, std::fabs(xb[j]));
    float d = amax / 127.0f;
    float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    row.scales.push_back(d);
    for (int j = 0; j < 32; ++j) {
      // nearbyint in the default rounding mode: ties to even.
      float q = std::nearbyint(xb[j] * id);
      row.codes[block * 32 + j] = static_cast<int8_t>(q);
      row.values[block * 32 + j] = d * q;
    }
  }
  for (int64_t half = 0; half < k / 16; ++half) {
    int sum = 0;
    for (int j = 0; j < 16; ++j)
      sum += row.codes[half * 16 + j];
    row.sums.push_back(row.scales[half / 2] * static_cast<float>(sum));
    row.codeSums16.push_back(sum);
    if (half % 2 == 1)
      row.codeSums32.push_back(row.codeSums16[half - 1] + sum);
  }
  return row;
}

//===----------------------------------------------------------------------===//
// The test driver
//===----------------------------------------------------------------------===//

struct Variant {
  bool swiglu = false, accumulate = false, bias = false;
};

std::string variantName(const Variant &v) {
  std::string name;
  if (v.swiglu)
    name += "_swiglu";
  if (v.accumulate)
    name += "_acc";
  if (v.bias)
    name += "_bias";
  return name.empty() ? "plain" : name.substr(1);
}

struct Case {
  WeightFormat format; // format.interleave: the weights' storage layout
  unsigned lanes;
  Variant variant;
  bool int8 = false;
  IntegerDot integerDot = IntegerDot::Generic;
  /// MatmulSpec::amxPassTokens (0: the default).
  int64_t amxPassTokens = 0;
};

/// Rows of the tested matrices: not a multiple of any row tile for
/// row-major weights; for interleaved ones, a few tiles of rows, an odd
/// number so that three threads get unequal shares.
int64_t rowsFor(const WeightFormat &format) {
  return format.interleave > 1 ? 13 * int64_t(format.interleave) : kRows;
}

// gtest prints a failing case's parameter with this rather than its bytes.
void PrintTo(const Case &c, std::ostream *os) {
  *os << c.format.name() << ", lanes " << c.lanes << ", "
      << variantName(c.variant)
      << (!c.int8                                  ? ""
          : c.integerDot == IntegerDot::X86Avx2    ? ", 8-bit activations, AVX2"
          : c.integerDot == IntegerDot::X86AvxVnni ? ", 8-bit activations, VNNI"
          : c.integerDot == IntegerDot::X86Avx512Vnni
              ? ", 8-bit activations, AVX-512 VNNI"
          : c.integerDot == IntegerDot::X86Amx ? ", 8-bit activations, AMX"
                                               : ", 8-bit activations");
}

std::string caseName(const ::testing::TestParamInfo<Case> &info) {
  std::string name = info.param.format.name();
  for (char &c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)))
      c = '_';
  name += "_lanes" + std::to_string(info.param.lanes);
  if (info.param.variant.swiglu || info.param.variant.accumulate ||
      info.param.variant.bias)
    name += "_" + variantName(info.param.variant);
  if (info.param.int8 && info.param.format.interleave > 1)
    name += "_i8act";
  if (info.param.int8 && info.param.integerDot == IntegerDot::X86Avx2)
    name += "_avx2";
  if (info.param.int8 && info.param.integerDot == IntegerDot::X86AvxVnni)
    name += "_avxvnni";
  if (info.param.int8 && info.param.integerDot == IntegerDot::X86Avx512Vnni)
    name += "_avx512vnni";
  if (info.param.int8 && info.param.integerDot == IntegerDot::X86Amx)
    name += "_amx";
  return name;
}

MatmulSpec specOf(const Case &c) {
  MatmulSpec spec;
  spec.format = c.format;
  spec.n = rowsFor(c.format);
  spec.k = columnsFor(c.format);
  spec.swiglu = c.variant.swiglu;
  spec.accumulate = c.variant.accumulate;
  spec.bias = c.variant.bias;
  spec.int8Activations = c.int8;
  // Units of 8 rows: three threads claim several each. Interleaved rows:
  // units of 5 tiles (5, 5 and 3 of the 13), which the GEMV reads as one
  // pass over four streams and a tile left over (two passes over two
  // streams and one left for a SwiGLU pair), and as three tiles left over
  // (one pass and one tile).
  spec.claimRows = c.format.interleave > 1 ? 5 * c.format.interleave : 8;
  spec.amxPassTokens = c.amxPassTokens;
  return spec;
}

/// The largest token count tested; the activations hold this many rows.
constexpr int64_t kMaxTokens = 40;
/// GEMV (T <= 2) and GEMM (T > 2) token counts, with remainders of the
/// GEMM's token tile of 3.
constexpr int64_t kTokenCounts[] = {1, 2, 3, 7, 16};

/// Random activations of kMaxTokens rows; a few 32-element blocks of token 0
/// are made to exercise the 8-bit rule's corners: all zeros; a maximum of
/// exactly 127 (so that codes are the values themselves) with halves that
/// round to even; one non-zero value.
std::vector<float> randomActivations(int64_t k, std::mt19937 &rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(kMaxTokens * k);
  for (float &v : x)
    v = normal(rng);
  for (int j = 0; j < 32; ++j) {
    x[j] = 0.0f;
    x[32 + j] = (j % 2 ? -1.0f : 1.0f) * (0.5f + static_cast<float>(j));
    x[64 + j] = 0.0f;
  }
  x[32 + 31] = 127.0f;
  x[64 + 5] = -3.25f;
  return x;
}

class MatmulHarness {
public:
  explicit MatmulHarness(const Case &c)
      : c(c), spec(specOf(c)), layout(spec, c.lanes),
        kernel(spec, c.lanes, c.integerDot),
        w(layout.totalBytes),
        x((kXOffset + kMaxTokens * spec.k) * sizeof(float)) {}

  /// Fills the buffers from `seed` and computes the reference.
  void prepare(unsigned seed) {
    std::mt19937 rng(seed * 7919 + c.lanes);
    std::memset(w.data, 0xa5, kWeightOffset);
    unsigned matrices = spec.swiglu ? 2 : 1;
    weights.clear();
    for (unsigned m = 0; m < matrices; ++m) {
      std::vector<uint8_t> bytes =
          randomWeights(spec.format, c.lanes, spec.n, spec.k, rng);
      // Stored as the layout says (the bundle writer's repack); the
      // reference reads the row-major original.
      int64_t blockBytes = spec.format.blockBytes(c.lanes);
      int64_t rowBytes = spec.k / spec.format.blockElements(c.lanes) *
                         blockBytes;
      emit::repackRows(bytes.data(),
                       w.data + (m == 0 ? layout.wOff : layout.wOff2),
                       spec.n, rowBytes, blockBytes,
                       spec.format.splitHeaderBytes(), spec.format.interleave);
      weights.push_back(
          dequantizeReference(spec.format, bytes.data(), spec.n, spec.k));
    }
    std::normal_distribution<float> normal(0.0f, 4.0f);
    bias.assign(spec.n, 0.0f);
    if (spec.bias) {
      for (float &v : bias)
        v = normal(rng);
      std::memcpy(w.data + layout.biasOff, bias.data(), 4 * spec.n);
    }
    acc.assign(kAccOffset + kMaxTokens * spec.n, 0.0f);
    for (float &v : acc)
      v = normal(rng);

    std::vector<float> xs = randomActivations(spec.k, rng);
    for (int64_t i = 0; i < kXOffset; ++i)
      x.floats()[i] = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(x.floats() + kXOffset, xs.data(), xs.size() * 4);
    activations = xs;
    quantized.clear();
    if (spec.int8Activations) {
      for (int64_t t = 0; t < kMaxTokens; ++t) {
        quantized.push_back(quantizeRow(xs.data() + t * spec.k, spec.k));
        std::copy(quantized.back().values.begin(),
                  quantized.back().values.end(),
                  activations.begin() + t * spec.k);
      }
    }
  }

  /// Runs the kernel for T tokens split over `threads` threads (each
  /// thread's call in turn), after quantizing the activations the same way
  /// where the spec has 8-bit activations, and checks every output.
  void check(int64_t T, int64_t threads) {
    SCOPED_TRACE("T = " + std::to_string(T) + ", " + std::to_string(threads) +
                 " thread(s)");
    std::vector<float> y;
    run(T, threads, y);
    if (::testing::Test::HasFatalFailure())
      return;

    int64_t untouched = 0;
    for (int64_t i = 0; i < static_cast<int64_t>(y.size()); ++i)
      if ((i < kYOffset || i >= kYOffset + T * spec.n) &&
          llvm::bit_cast<uint32_t>(y[i]) != 0x7fc0dead)
        ++untouched;
    EXPECT_EQ(untouched, 0) << "the kernel wrote outside y's rows";
    checkOutputs(y, T);
  }

  /// The kernel's outputs for T tokens on `threads` threads (y, with
  /// kYOffset sentinels before and kYSlack after), the 8-bit activations
  /// quantized and checked first.
  void run(int64_t T, int64_t threads, std::vector<float> &y) {
    std::unique_ptr<GuardedBuffer> q;
    if (spec.int8Activations) {
      int64_t rowBytes = KernelLibrary::getQuantizedRowBytes(spec.k);
      q = std::make_unique<GuardedBuffer>(kQOffset + T * rowBytes);
      std::memset(q->data, 0x5a, q->size);
      for (int64_t thread = 0; thread < threads; ++thread)
        ASSERT_EQ(kernel.quantize(x, *q, T, thread, threads), "");
      checkQuantized(*q, T);
    }

    const float sentinel = llvm::bit_cast<float>(0x7fc0dead);
    y.assign(kYOffset + T * spec.n + kYSlack, sentinel);
    // The threads' calls in turn: each takes its first unit, the first
    // also claims every unit left (a unit nobody computed leaves the
    // sentinel, which the checks below catch).
    int32_t counter = 0;
    for (int64_t thread = 0; thread < threads; ++thread)
      ASSERT_EQ(kernel.run(w, x, q.get(), y, spec.accumulate ? &acc : nullptr,
                           T, thread, threads, counter),
                "");
  }

  /// Every output against the reference.
  void checkOutputs(const std::vector<float> &y, int64_t T) {
    int64_t failures = 0;
    std::ostringstream first;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < spec.n; ++n) {
        double bound;
        double expected = reference(t, n, bound);
        double actual = y[kYOffset + t * spec.n + n];
        if (!(std::fabs(actual - expected) <= bound)) {
          if (failures++ == 0)
            first << "y[" << t << "][" << n << "] = " << actual
                  << ", the reference " << expected << " (error "
                  << std::fabs(actual - expected) << ", bound " << bound
                  << ")";
        }
      }
    EXPECT_EQ(failures, 0) << failures << " of " << T * spec.n
                           << " outputs off; first: " << first.str();
  }

  JitMatmul &jit() { return kernel; }

private:
  /// The expected y[t][n] and the bound of its error: 1e-5 of the sum of
  /// the magnitudes of the products (an f32 accumulation), carried through
  /// the epilogue.
  ///
  /// With 8-bit activations, the magnitude of each block of 32 is its
  /// largest |w| times its sum of |x| instead: the integer path computes a
  /// run as scale * sum(code * q) + offset * sum(q), whose two terms are
  /// bounded by the run's largest weight, not by each weight (an int2 code
  /// of 2 is w = 0, yet adds 2 * scale * q to both terms, which cancel), so
  /// f32 roundings of those terms exceed 1e-5 of sum |w x| where most
  /// weights of a block are near zero.
  double reference(int64_t t, int64_t n, double &bound) {
    double dot[2] = {0, 0}, magnitude[2] = {0, 0};
    const float *xr = activations.data() + t * spec.k;
    for (size_t m = 0; m < weights.size(); ++m) {
      const float *wr = weights[m].data() + n * spec.k;
      for (int64_t i = 0; i < spec.k; ++i) {
        double p = static_cast<double>(wr[i]) * static_cast<double>(xr[i]);
        dot[m] += p;
        magnitude[m] += std::fabs(p);
      }
      if (spec.int8Activations) {
        magnitude[m] = 0;
        for (int64_t b = 0; b < spec.k; b += 32) {
          double wMax = 0, xSum = 0;
          for (int64_t i = b; i < b + 32; ++i) {
            wMax = std::max(wMax, static_cast<double>(std::fabs(wr[i])));
            xSum += std::fabs(xr[i]);
          }
          magnitude[m] += wMax * xSum;
        }
      }
    }
    const double rel = 1e-5;
    double value = dot[0];
    bound = rel * magnitude[0];
    if (spec.swiglu) {
      double g = dot[0], u = dot[1];
      double silu = g / (1.0 + std::exp(-g));
      // |silu'| <= 1.1; expf and the division add a few ulps of the result.
      bound = rel * (1.1 * magnitude[0] * std::fabs(u) +
                     std::fabs(silu) * magnitude[1]) +
              1e-6 * std::fabs(silu * u);
      value = silu * u;
    }
    if (spec.bias) {
      value += bias[n];
      bound += rel * std::fabs(value);
    }
    if (spec.accumulate) {
      value += acc[kAccOffset + t * spec.n + n];
      bound += rel * std::fabs(value);
    }
    bound += 1e-30;
    return value;
  }

  /// The quantized activations, byte for byte as Kernels.h documents them
  /// (the per-16 sums within an f32 rounding or two).
  void checkQuantized(GuardedBuffer &q, int64_t T) {
    int64_t rowBytes = KernelLibrary::getQuantizedRowBytes(spec.k);
    int64_t codeErrors = 0, scaleErrors = 0, sumErrors = 0;
    std::ostringstream first;
    for (int64_t t = 0; t < T; ++t) {
      const uint8_t *row = q.data + kQOffset + t * rowBytes;
      const QuantizedRow &expected = quantized[t];
      for (int64_t i = 0; i < spec.k; ++i)
        if (static_cast<int8_t>(row[i]) != expected.codes[i] &&
            codeErrors++ == 0)
          first << "code " << i << " of token " << t << ": "
                << int(static_cast<int8_t>(row[i])) << " vs "
                << int(expected.codes[i]) << " (x = "
                << activations[t * spec.k + i] << ") ";
      for (int64_t b = 0; b < spec.k / 32; ++b) {
        float d;
        std::memcpy(&d, row + spec.k + 4 * b, 4);
        if (llvm::bit_cast<uint32_t>(d) !=
                llvm::bit_cast<uint32_t>(expected.scales[b]) &&
            scaleErrors++ == 0)
          first << "scale " << b << " of token " << t << ": " << d << " vs "
                << expected.scales[b] << " ";
      }
      for (int64_t h = 0; h < spec.k / 16; ++h) {
        float s;
        std::memcpy(&s, row + spec.k + spec.k / 8 + 4 * h, 4);
        double magnitude = 0;
        for (int j = 0; j < 16; ++j)
          magnitude += std::abs(expected.codes[h * 16 + j]);
        magnitude *= std::fabs(expected.scales[h / 2]);
        if (!(std::fabs(s - expected.sums[h]) <= 1e-6 * magnitude) &&
            sumErrors++ == 0)
          first << "sum " << h << " of token " << t << ": " << s << " vs "
                << expected.sums[h] << " ";
      }
    }
    // The integer code sums: exact.
    for (int64_t t = 0; t < T; ++t) {
      const uint8_t *row = q.data + kQOffset + t * rowBytes;
      const QuantizedRow &expected = quantized[t];
      for (int64_t run : {16, 32}) {
        const std::vector<int32_t> &sums =
            run == 16 ? expected.codeSums16 : expected.codeSums32;
        int64_t at = KernelLibrary::getQuantizedCodeSumsOffset(spec.k, run);
        for (int64_t i = 0; i < spec.k / run; ++i) {
          int32_t s;
          std::memcpy(&s, row + at + 4 * i, 4);
          if (s != sums[i] && sumErrors++ == 0)
            first << "code sum " << i << " per " << run << " of token " << t
                  << ": " << s << " vs " << sums[i] << " ";
        }
      }
    }
    EXPECT_EQ(codeErrors + scaleErrors + sumErrors, 0)
        << codeErrors << " codes, " << scaleErrors << " scales, " << sumErrors
        << " sums differ; first: " << first.str();
  }

  Case c;
  MatmulSpec spec;
  WeightLayout layout;
  JitMatmul kernel;
  GuardedBuffer w, x;
  std::vector<std::vector<float>> weights; // the reference's, per matrix
  std::vector<float> activations;           // as the matmul sees them
  std::vector<QuantizedRow> quantized;
  std::vector<float> bias, acc;
};

void runCase(const Case &c, unsigned seeds) {
  MatmulHarness harness(c);
  ASSERT_EQ(harness.jit().error, "");
  for (unsigned seed = 0; seed < seeds; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    harness.prepare(seed);
    // No tokens: nothing written.
    harness.check(0, 1);
    for (int64_t T : kTokenCounts)
      for (int64_t threads : {1, 3})
        harness.check(T, threads);
    // AMX's GEMM takes tokens 16 at a time: three groups, the last partial.
    if (c.integerDot == IntegerDot::X86Amx)
      for (int64_t threads : {1, 3})
        harness.check(kMaxTokens, threads);
  }
}

//===----------------------------------------------------------------------===//
// Suites
//===----------------------------------------------------------------------===//

std::vector<Case> plainCases() {
  std::vector<Case> cases;
  for (const WeightFormat &format : allFormats())
    for (unsigned lanes : lanesToTest())
      if (decodable(format, lanes))
        cases.push_back({format, lanes, {}, false});
  return cases;
}

/// The variants, for float and block formats of each family.
std::vector<WeightFormat> variantFormats() {
  return {floatFormat(WeightFormat::Kind::F32),
          floatFormat(WeightFormat::Kind::BF16), quantFormat(QuantFormat::Q5_0),
          quantFormat(QuantFormat::Q4_K),
          quantFormat(QuantFormat::Int3, 32, /*asymmetric=*/true)};
}

std::vector<Variant> allVariants() {
  Variant swiglu, accumulate, bias, all;
  swiglu.swiglu = true;
  accumulate.accumulate = true;
  bias.bias = true;
  all.swiglu = all.accumulate = all.bias = true;
  return {swiglu, accumulate, bias, all};
}

std::vector<Case> variantCases() {
  std::vector<Case> cases;
  for (const WeightFormat &format : variantFormats())
    for (const Variant &variant : allVariants())
      cases.push_back({format, 8, variant, false});
  return cases;
}

/// 8-bit activations: every block format (the float formats have no integer
/// form), at each width, with the generic integer dot product and those of
/// the host (hostIntegerDots); the variants for two formats.
std::vector<Case> int8Cases() {
  std::vector<IntegerDot> dots = hostIntegerDots();
  std::vector<Case> cases;
  for (IntegerDot dot : dots) {
    for (const WeightFormat &format : allFormats())
      if (format.kind == WeightFormat::Kind::Quantized)
        for (unsigned lanes : lanesToTest())
          if (decodable(format, lanes))
            cases.push_back({format, lanes, {}, true, dot});
    for (const WeightFormat &format :
         {quantFormat(QuantFormat::Q4_K),
          quantFormat(QuantFormat::Int4, 32, /*asymmetric=*/true)})
      for (const Variant &variant : allVariants())
        cases.push_back({format, 8, variant, true, dot});
  }
  return cases;
}

class Matmul : public ::testing::TestWithParam<Case> {};

TEST_P(Matmul, MatchesReference) { runCase(GetParam(), /*seeds=*/2); }

INSTANTIATE_TEST_SUITE_P(AllFormats, Matmul, ::testing::ValuesIn(plainCases()),
                         caseName);

class MatmulVariants : public ::testing::TestWithParam<Case> {};

TEST_P(MatmulVariants, MatchesReference) { runCase(GetParam(), /*seeds=*/2); }

INSTANTIATE_TEST_SUITE_P(Formats, MatmulVariants,
                         ::testing::ValuesIn(variantCases()), caseName);

class MatmulInt8 : public ::testing::TestWithParam<Case> {};

TEST_P(MatmulInt8, MatchesReferenceOnQuantizedActivations) {
  runCase(GetParam(), /*seeds=*/2);
}

INSTANTIATE_TEST_SUITE_P(AllFormats, MatmulInt8,
                         ::testing::ValuesIn(int8Cases()), caseName);

/// Row-interleaved weights (the bundle's layout for the GEMV kernels):
/// with 8-bit activations every block format at 8 rows per tile, with each
/// integer dot product, plus the variants; 4 and 16 rows (fewer and more
/// rows than a reduction's lanes); with AVX-512 VNNI where the host has it,
/// the formats decode reads on zmm and two it does not; f32 activations for
/// a few formats (row-major kernels reading interleaved rows).
std::vector<Case> interleavedCases() {
  std::vector<IntegerDot> dots = hostIntegerDots();
  auto interleaved = [](WeightFormat f, unsigned rows) {
    f.interleave = rows;
    return f;
  };
  std::vector<Case> cases;
  for (IntegerDot dot : dots) {
    for (const WeightFormat &format : allFormats())
      if (format.kind == WeightFormat::Kind::Quantized && decodable(format, 8))
        cases.push_back({interleaved(format, 8), 8, {}, true, dot});
    for (const WeightFormat &format :
         {quantFormat(QuantFormat::Q4_0), quantFormat(QuantFormat::Q4_K),
          quantFormat(QuantFormat::Int4, 32, /*asymmetric=*/true)})
      for (const Variant &variant : allVariants())
        cases.push_back({interleaved(format, 8), 8, variant, true, dot});
    for (unsigned rows : {4u, 16u})
      for (const WeightFormat &format :
           {quantFormat(QuantFormat::Q4_0), quantFormat(QuantFormat::Q8_0),
            quantFormat(QuantFormat::Q6_K)})
        cases.push_back({interleaved(format, rows), 8, {}, true, dot});
    // The K-quant decode's ymm rows (AVX2, AVX-VNNI): every format's
    // variants, the second stream of SwiGLU reusing the block's activations.
    if (dot == IntegerDot::X86Avx2 || dot == IntegerDot::X86AvxVnni)
      for (QuantFormat quant : {QuantFormat::Q2_K, QuantFormat::Q3_K,
                                QuantFormat::Q5_K, QuantFormat::Q6_K})
        for (const Variant &variant : allVariants())
          cases.push_back(
              {interleaved(quantFormat(quant), 8), 8, variant, true, dot});
    // AVX-VNNI's dots on a 512-bit target (`--integer-dot=avx-vnni`): the
    // K-quants take the ymm rows there too.
    if (dot == IntegerDot::X86AvxVnni && hostHasAvx512Vnni())
      for (QuantFormat quant :
           {QuantFormat::Q2_K, QuantFormat::Q3_K, QuantFormat::Q4_K,
            QuantFormat::Q5_K, QuantFormat::Q6_K})
        cases.push_back(
            {interleaved(quantFormat(quant), 8), 16, {}, true, dot});
  }
  // AVX-512 VNNI at the width the compiler picks it for: the formats whose
  // decode it reads on zmm (Q4_0 and Q8_0 as WideVnniTiles, the K-quants
  // as KQuantVnniTiles; all variants), and Q5_0, which it leaves to the
  // lane-per-row reduction.
  if (hostHasAvx512Vnni())
    for (const WeightFormat &format :
         {quantFormat(QuantFormat::Q4_0), quantFormat(QuantFormat::Q8_0),
          quantFormat(QuantFormat::Q2_K), quantFormat(QuantFormat::Q3_K),
          quantFormat(QuantFormat::Q4_K), quantFormat(QuantFormat::Q6_K),
          quantFormat(QuantFormat::Q5_0), quantFormat(QuantFormat::Q5_K)}) {
      cases.push_back(
          {interleaved(format, 8), 16, {}, true, IntegerDot::X86Avx512Vnni});
      if (format.quant == QuantFormat::Q4_0 ||
          format.quant == QuantFormat::Q8_0 ||
          format.quant == QuantFormat::Q2_K ||
          format.quant == QuantFormat::Q3_K ||
          format.quant == QuantFormat::Q4_K ||
          format.quant == QuantFormat::Q5_K ||
          format.quant == QuantFormat::Q6_K)
        for (const Variant &variant : allVariants())
          cases.push_back({interleaved(format, 8), 16, variant, true,
                           IntegerDot::X86Avx512Vnni});
    }
  // AMX tiles where the host grants them: runs of 32 (Q4_0 and Q8_0 decoded
  // a tile at a time, the others a row at a time; Q4_K, Q2_K and int4 with
  // offsets) and of 16 (Q6_K, Q2_K), MXFP4's table; the variants for three.
  // Units of 5, 5 and 3 tiles of 8 rows: two strips of 16 and a tile for
  // the VNNI GEMM, and one strip and a tile.
  if (hostHasAmx())
    for (const WeightFormat &format :
         {quantFormat(QuantFormat::Q4_0), quantFormat(QuantFormat::Q8_0),
          quantFormat(QuantFormat::Q4_K), quantFormat(QuantFormat::Q6_K),
          quantFormat(QuantFormat::Q2_K), quantFormat(QuantFormat::MXFP4),
          quantFormat(QuantFormat::Int4, 32, /*asymmetric=*/true)}) {
      cases.push_back(
          {interleaved(format, 8), 16, {}, true, IntegerDot::X86Amx});
      if (format.quant == QuantFormat::Q4_0 ||
          format.quant == QuantFormat::Q8_0 ||
          format.quant == QuantFormat::Q4_K)
        for (const Variant &variant : allVariants())
          cases.push_back(
              {interleaved(format, 8), 16, variant, true, IntegerDot::X86Amx});
    }
  for (const WeightFormat &format :
       {quantFormat(QuantFormat::Q4_0), quantFormat(QuantFormat::Q4_K),
        quantFormat(QuantFormat::Int3, 32, /*asymmetric=*/true)}) {
    cases.push_back({interleaved(format, 8), 8, {}, false});
    Variant swiglu;
    swiglu.swiglu = true;
    cases.push_back({interleaved(format, 8), 8, swiglu, false});
  }
  return cases;
}

class MatmulInterleaved : public ::testing::TestWithParam<Case> {};

TEST_P(MatmulInterleaved, MatchesReference) {
  runCase(GetParam(), /*seeds=*/2);
}

INSTANTIATE_TEST_SUITE_P(Layouts, MatmulInterleaved,
                         ::testing::ValuesIn(interleavedCases()), caseName);

/// AMX's GEMM against AVX-512 VNNI's on the same inputs: the same integer
/// dots scaled by the same f32 operations in the same order, so the
/// outputs are equal to the bit (emitGemmAmx), for every token count (one
/// group, several, a partial last one), passes of one group (three at 40
/// tokens) and of the default size, and one or three threads.
class MatmulAmxMatchesVnni : public ::testing::TestWithParam<Case> {};

TEST_P(MatmulAmxMatchesVnni, BitIdentical) {
  Case amxCase = GetParam(), vnniCase = GetParam();
  vnniCase.integerDot = IntegerDot::X86Avx512Vnni;
  vnniCase.amxPassTokens = 0;
  MatmulHarness amx(amxCase), vnni(vnniCase);
  ASSERT_EQ(amx.jit().error, "");
  ASSERT_EQ(vnni.jit().error, "");
  amx.prepare(1);
  vnni.prepare(1);
  for (int64_t T : {3, 16, 17, 40})
    for (int64_t threads : {1, 3}) {
      SCOPED_TRACE("T = " + std::to_string(T) + ", " + std::to_string(threads) +
                   " thread(s)");
      std::vector<float> a, v;
      amx.run(T, threads, a);
      vnni.run(T, threads, v);
      ASSERT_EQ(a.size(), v.size());
      int64_t differ = 0;
      for (size_t i = 0; i < a.size(); ++i)
        differ +=
            llvm::bit_cast<uint32_t>(a[i]) != llvm::bit_cast<uint32_t>(v[i]);
      EXPECT_EQ(differ, 0) << differ << " of " << a.size()
                           << " floats differ from the VNNI GEMM's";
    }
}

std::vector<Case> amxCases() {
  auto interleaved = [](WeightFormat f, unsigned rows) {
    f.interleave = rows;
    return f;
  };
  std::vector<Case> cases;
  if (!hostHasAmx())
    return cases;
  for (const WeightFormat &format :
       {quantFormat(QuantFormat::Q4_0), quantFormat(QuantFormat::Q8_0),
        quantFormat(QuantFormat::Q4_K), quantFormat(QuantFormat::Q6_K),
        quantFormat(QuantFormat::Int4, 32, /*asymmetric=*/true)})
    for (int64_t passTokens : {int64_t(0), int64_t(16)}) {
      Case c{interleaved(format, 8), 16,        {}, true,
             IntegerDot::X86Amx,     passTokens};
      cases.push_back(c);
      if (format.quant == QuantFormat::Q4_0 && passTokens == 16)
        for (const Variant &variant : allVariants()) {
          c.variant = variant;
          cases.push_back(c);
        }
    }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Formats, MatmulAmxMatchesVnni,
                         ::testing::ValuesIn(amxCases()),
                         [](const ::testing::TestParamInfo<Case> &info) {
                           return caseName(info) +
                                  (info.param.amxPassTokens
                                       ? "_pass" + std::to_string(
                                                       info.param.amxPassTokens)
                                       : "");
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(MatmulAmxMatchesVnni);

} // namespace
