//===- ImportanceQuantizeTest.cpp - Importance-weighted quantization ------===//
//
// QuantFormat's names and dispatch, and the importance-weighted quantizer
// of every format: never worse than round to nearest in the weighted error
// (row by row, with heavy-tailed importance), nor in plain squared error
// with uniform importance; exact on representable groups; deterministic
// across threads. check_quantize_importance_vs_gguf.py checks its blocks
// with the gguf package, check_importance_vs_ggml.py against ggml's own.
//
//===----------------------------------------------------------------------===//

#include "compiler/quant/ImportanceQuantize.h"
#include "compiler/quant/Dequantize.h"
#include "compiler/quant/QuantFormat.h"
#include "compiler/quant/Quantize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

using namespace moec;
using namespace moec::quant;
using gguf::GgmlType;

namespace {

constexpr int64_t kCols = 512; // a multiple of every block size tested

/// Every GGUF format with a quantizer and the own formats at several groups.
std::vector<QuantFormat> allFormats() {
  std::vector<QuantFormat> formats;
  for (GgmlType t :
       {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
        GgmlType::Q8_0, GgmlType::MXFP4, GgmlType::Q2_K, GgmlType::Q3_K,
        GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K})
    formats.push_back(QuantFormat::ggml(t));
  for (unsigned bits : {2u, 3u, 4u, 8u})
    for (unsigned group : {8u, 32u, 128u})
      for (bool asym : {false, true})
        formats.push_back(QuantFormat::ownGroup({bits, group, asym}));
  return formats;
}

/// Rows of several shapes (Gaussian, heavy-tailed, outliers, shifted,
/// one-signed, sub-blocks of mixed scale), `count` of them.
std::vector<float> makeRows(uint32_t seed, int count) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::student_t_distribution<float> student(3.0f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<float> x(count * kCols);
  for (int r = 0; r < count; ++r) {
    float scale = 0.02f * std::pow(10.0f, 2 * uniform(rng) - 1);
    float shift = uniform(rng) < 0.5f ? -1.5f : 1.5f;
    float blockScale = 1;
    for (int64_t c = 0; c < kCols; ++c) {
      float v;
      switch (r % 6) {
      case 0:
        v = normal(rng);
        break;
      case 1:
        v = student(rng);
        break;
      case 2:
        v = normal(rng) * (uniform(rng) < 0.01f ? 20.0f : 1.0f);
        break;
      case 3:
        v = normal(rng) + shift;
        break;
      case 4:
        v = std::fabs(normal(rng));
        break;
      default:
        if (c % 16 == 0)
          blockScale = std::pow(10.0f, 2 * uniform(rng) - 1.5f);
        v = normal(rng) * blockScale;
        break;
      }
      x[r * kCols + c] = v * scale;
    }
  }
  return x;
}

/// Log-normal importance with a few columns 100x and a few zero.
std::vector<float> makeImportance(uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> imp(kCols);
  for (float &v : imp)
    v = std::exp(1.5f * normal(rng));
  for (int k = 0; k < 8; ++k)
    imp[rng() % kCols] *= 100.0f;
  for (int k = 0; k < 4; ++k)
    imp[rng() % kCols] = 0.0f;
  return imp;
}

std::vector<uint8_t> quantizeRtn(const QuantFormat &f, const float *x) {
  std::vector<uint8_t> b(f.rowBytes(kCols));
  quantizeRow(f, x, b.data(), kCols);
  return b;
}

std::vector<uint8_t> quantizeImp(const QuantFormat &f, const float *x,
                                 const float *imp) {
  std::vector<uint8_t> b(f.rowBytes(kCols));
  quantizeRowImportance(f, x, b.data(), kCols, imp);
  return b;
}

TEST(QuantFormat, ParsesAndPrintsNames) {
  struct Case {
    const char *name, *canonical;
    int64_t blockSize, blockBytes;
  } cases[] = {
      {"q4_k", "q4_k", 256, 144},
      {"Q8_0", "q8_0", 32, 34},
      {"mxfp4", "mxfp4", 32, 17},
      {"f16", "f16", 1, 2},
      {"int3_g32", "int3_g32", 32, 14},
      {"int4_g64_asym", "int4_g64_asym", 64, 36},
      {"int4_g64_sym", "int4_g64", 64, 34},
      {"INT8_G128", "int8_g128", 128, 130},
      {"int2_g8", "int2_g8", 8, 4},
  };
  for (const Case &c : cases) {
    std::optional<QuantFormat> f = parseQuantFormat(c.name);
    ASSERT_TRUE(f) << c.name;
    EXPECT_EQ(f->name(), c.canonical);
    EXPECT_EQ(f->blockSize(), c.blockSize) << c.name;
    EXPECT_EQ(f->blockBytes(), c.blockBytes) << c.name;
    EXPECT_EQ(f->rowBytes(4 * c.blockSize), 4 * c.blockBytes) << c.name;
    EXPECT_EQ(parseQuantFormat(f->name()), f) << c.name;
  }
  for (const char *bad : {"int5_g32", "int4_g12", "int4_g0", "int4_g32_foo",
                          "int4", "int4_32", "q8_k", "iq2_xxs", "nonsense"})
    EXPECT_FALSE(parseQuantFormat(bad)) << bad;
  EXPECT_TRUE(parseQuantFormat("int4_g32")->isGroupFormat());
  EXPECT_EQ(parseQuantFormat("q6_k")->ggmlType(), GgmlType::Q6_K);
}

TEST(QuantFormat, DispatchesToTheReferenceFunctions) {
  std::vector<float> x = makeRows(1, 1);
  for (const QuantFormat &f : allFormats()) {
    std::vector<uint8_t> viaFormat = quantizeRtn(f, x.data()),
                         direct(f.rowBytes(kCols));
    if (f.isGgml())
      quantizeRow(f.ggmlType(), x.data(), direct.data(), kCols);
    else
      quantizeGroupRow(f.groupFormat(), x.data(), direct.data(), kCols);
    EXPECT_EQ(viaFormat, direct) << f.name();
    std::vector<float> a(kCols), b(kCols);
    dequantizeRow(f, direct.data(), a.data(), kCols);
    if (f.isGgml())
      dequantizeRow(f.ggmlType(), direct.data(), b.data(), kCols);
    else
      dequantizeGroupRow(f.groupFormat(), direct.data(), b.data(), kCols);
    EXPECT_EQ(a, b) << f.name();
  }
}

TEST(ImportanceQuantize, ErrorIsTheWeightedSquaredError) {
  std::vector<float> x = makeRows(2, 1), imp = makeImportance(3);
  QuantFormat f = *parseQuantFormat("q4_k");
  std::vector<uint8_t> b = quantizeImp(f, x.data(), imp.data());
  std::vector<float> y(kCols);
  dequantizeRow(f, b.data(), y.data(), kCols);
  double weighted = 0, plain = 0;
  for (int64_t i = 0; i < kCols; ++i) {
    double d = double(x[i]) - y[i];
    weighted += imp[i] * d * d;
    plain += d * d;
  }
  EXPECT_DOUBLE_EQ(
      importanceWeightedError(f, x.data(), b.data(), kCols, imp.data()),
      weighted);
  EXPECT_DOUBLE_EQ(
      importanceWeightedError(f, x.data(), b.data(), kCols, nullptr), plain);
}

// The weighted error of every row is at most round to nearest's and, for
// the GGUF formats, ggml's search's (both are candidates of every block);
// the totals show by how much less.
TEST(ImportanceQuantize, NeverWorseThanRoundToNearestOrGgmlWeighted) {
  constexpr int kRows = 24;
  std::vector<float> x = makeRows(4, kRows), imp = makeImportance(5);
  for (const QuantFormat &f : allFormats()) {
    double sumImp = 0, sumRtn = 0, sumGgml = 0;
    for (int r = 0; r < kRows; ++r) {
      const float *row = x.data() + r * kCols;
      double eImp = importanceWeightedError(
          f, row, quantizeImp(f, row, imp.data()).data(), kCols, imp.data());
      double eRtn = importanceWeightedError(f, row, quantizeRtn(f, row).data(),
                                            kCols, imp.data());
      EXPECT_LE(eImp, eRtn * (1 + 1e-12)) << f.name() << ", row " << r;
      sumImp += eImp;
      sumRtn += eRtn;
      if (f.isGgml()) {
        std::vector<uint8_t> b(f.rowBytes(kCols));
        quantizeRowLikeGgml(f.ggmlType(), row, b.data(), kCols, imp.data());
        double eGgml =
            importanceWeightedError(f, row, b.data(), kCols, imp.data());
        EXPECT_LE(eImp, eGgml * (1 + 1e-12)) << f.name() << ", row " << r;
        sumGgml += eGgml;
      }
    }
    std::printf("%-16s weighted error / round to nearest's: %.4f",
                f.name().c_str(), sumImp / sumRtn);
    if (f.isGgml())
      std::printf(", / ggml's search's: %.4f", sumImp / sumGgml);
    std::printf("\n");
  }
}

TEST(ImportanceQuantize, UniformImportanceNotWorseInSquaredError) {
  constexpr int kRows = 8;
  std::mt19937 rng(6);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(kRows * kCols);
  for (float &v : x)
    v = normal(rng);
  for (const QuantFormat &f : allFormats()) {
    double sumImp = 0, sumRtn = 0;
    for (int r = 0; r < kRows; ++r) {
      const float *row = x.data() + r * kCols;
      double eImp = importanceWeightedError(
          f, row, quantizeImp(f, row, nullptr).data(), kCols, nullptr);
      double eRtn = importanceWeightedError(f, row, quantizeRtn(f, row).data(),
                                            kCols, nullptr);
      EXPECT_LE(eImp, eRtn * (1 + 1e-12)) << f.name() << ", row " << r;
      sumImp += eImp;
      sumRtn += eRtn;
    }
    std::printf("%-16s Gaussian MSE / round to nearest's: %.4f\n",
                f.name().c_str(), sumImp / sumRtn);
  }
}

// The magnitude option changes the objective, not the guarantees in it:
// llama.cpp's weighting is still never worse than round to nearest.
TEST(ImportanceQuantize, MagnitudeFactorObjective) {
  std::vector<float> x = makeRows(7, 6), imp = makeImportance(8);
  ImportanceOptions options;
  options.magnitudeFactor = true;
  for (const QuantFormat &f : allFormats())
    for (int r = 0; r < 6; ++r) {
      const float *row = x.data() + r * kCols;
      double sumx2 = 0;
      for (int64_t i = 0; i < kCols; ++i)
        sumx2 += double(row[i]) * row[i];
      std::vector<float> w(kCols);
      for (int64_t i = 0; i < kCols; ++i)
        w[i] = imp[i] * std::sqrt(float(2 * sumx2 / kCols) + row[i] * row[i]);
      std::vector<uint8_t> b(f.rowBytes(kCols));
      quantizeRowImportance(f, row, b.data(), kCols, imp.data(), options);
      EXPECT_LE(importanceWeightedError(f, row, b.data(), kCols, w.data()),
                importanceWeightedError(f, row, quantizeRtn(f, row).data(),
                                        kCols, w.data()) *
                    (1 + 1e-12))
          << f.name() << ", row " << r;
    }
}

TEST(ImportanceQuantize, ZeroRowsStayZero) {
  std::vector<float> zeros(kCols, 0.0f), imp = makeImportance(9);
  for (const QuantFormat &f : allFormats()) {
    std::vector<uint8_t> b = quantizeImp(f, zeros.data(), imp.data());
    std::vector<float> y(kCols, 1.0f);
    dequantizeRow(f, b.data(), y.data(), kCols);
    for (int64_t i = 0; i < kCols; ++i)
      ASSERT_EQ(y[i], 0.0f) << f.name() << ", element " << i;
  }
}

// A group that the format represents exactly (an f16 scale and min, codes
// spanning the range) comes back exactly, whatever the importance.
TEST(ImportanceQuantize, RepresentableGroupsRoundTripExactly) {
  std::mt19937 rng(10);
  for (unsigned bits : {2u, 3u, 4u, 8u})
    for (bool asym : {false, true})
      for (unsigned group : {8u, 32u}) {
        GroupFormat g{bits, group, asym};
        QuantFormat f = QuantFormat::ownGroup(g);
        unsigned levels = 1u << bits;
        for (int trial = 0; trial < 100; ++trial) {
          GroupParams p;
          p.scale = halfToFloat(floatToHalf(
              std::ldexp(1.0f + (rng() % 1024) / 1024.0f, -int(rng() % 8))));
          if (asym)
            p.min = halfToFloat(floatToHalf(-float(rng() % 100) / 16.0f));
          std::vector<uint8_t> codes(group);
          // The extreme code(s) round to nearest derives its scale from:
          // the most negative code once (symmetric), or both ends.
          for (unsigned j = 0; j < group; ++j)
            codes[j] =
                uint8_t(asym ? rng() % levels : 1 + rng() % (levels - 1));
          codes[0] = 0;
          if (asym)
            codes[1] = uint8_t(levels - 1);
          std::vector<uint8_t> block(g.blockBytes());
          writeGroupBlock(g, p, codes.data(), block.data());
          std::vector<float> x(group), imp(group), y(group);
          dequantizeGroupRow(g, block.data(), x.data(), group);
          for (float &v : imp)
            v = std::exp(float(rng() % 100) / 20.0f);
          for (const float *weights : {static_cast<const float *>(imp.data()),
                                       static_cast<const float *>(nullptr)}) {
            std::vector<uint8_t> again(g.blockBytes());
            quantizeRowImportance(f, x.data(), again.data(), group, weights);
            dequantizeGroupRow(g, again.data(), y.data(), group);
            for (unsigned j = 0; j < group; ++j)
              ASSERT_EQ(x[j], y[j])
                  << f.name() << ", trial " << trial << ", element " << j;
          }
        }
      }
}

TEST(ImportanceQuantize, GroupCodeIsNearest) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (unsigned bits : {2u, 3u, 4u, 8u})
    for (bool asym : {false, true}) {
      GroupFormat g{bits, 32, asym};
      std::vector<float> x(32);
      for (float &v : x)
        v = normal(rng);
      GroupParams p = searchGroupParams(g, x.data(), nullptr);
      for (int k = 0; k < 200; ++k) {
        float v = 3 * normal(rng);
        float best = std::fabs(v - groupValue(g, p, groupCode(g, p, v)));
        for (unsigned c = 0; c < (1u << bits); ++c)
          ASSERT_LE(best, std::fabs(v - groupValue(g, p, c)))
              << bits << " bits, asym " << asym << ", value " << v;
      }
    }
}

TEST(ImportanceQuantize, DeterministicAcrossThreads) {
  constexpr int kRows = 8;
  std::vector<float> x = makeRows(12, kRows), imp = makeImportance(13);
  for (const char *name :
       {"q4_k", "q3_k", "q5_1", "int3_g32_asym", "int4_g64"}) {
    QuantFormat f = *parseQuantFormat(name);
    int64_t rowBytes = f.rowBytes(kCols);
    std::vector<uint8_t> serial(kRows * rowBytes), parallel(kRows * rowBytes);
    for (int r = 0; r < kRows; ++r)
      quantizeRowImportance(f, x.data() + r * kCols,
                            serial.data() + r * rowBytes, kCols, imp.data());
    std::vector<std::thread> threads;
    for (int r = 0; r < kRows; ++r)
      threads.emplace_back([&, r] {
        quantizeRowImportance(f, x.data() + r * kCols,
                              parallel.data() + r * rowBytes, kCols,
                              imp.data());
      });
    for (std::thread &t : threads)
      t.join();
    EXPECT_EQ(serial, parallel) << name;
  }
}

} // namespace
