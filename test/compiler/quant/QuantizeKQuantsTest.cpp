//===- QuantizeKQuantsTest.cpp - Round-to-nearest k-quant quantizers ------===//
//
// Quantizes rows into Q2_K..Q6_K with compiler/quant's quantizer and
// dequantizes them with its (gguf-bit-exact) reference dequantizer:
// accuracy on Gaussian rows and edge cases, and the scale fields using their
// range. check_quantize_kquants_vs_gguf.py checks the same blocks with the
// gguf package's own dequantizer.
//
//===----------------------------------------------------------------------===//

#include "compiler/quant/Dequantize.h"
#include "compiler/quant/Quantize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

using namespace moec;
using namespace moec::quant;
using gguf::GgmlType;

namespace {

constexpr int QK_K = 256;

struct KQuant {
  GgmlType type;
  const char *name;
  int blockBytes;
  /// Bound on the RMS error relative to the RMS of Gaussian rows: about 10%
  /// above the measured values (over 20,000 super-blocks: Q2_K 0.329, Q3_K
  /// 0.155, Q4_K 0.078, Q5_K 0.038, Q6_K 0.0188; the worst single
  /// super-block at 1.12 times its format's bound, which 1.25 times bounds).
  /// Round to nearest from the sub-block range: llama.cpp's scale search
  /// does better.
  double bound;
  /// The same in a super-block holding a 50-sigma outlier, the outlier left
  /// out: about 20% above the worst of 200 random such super-blocks (Q2_K
  /// 1.05, Q3_K 0.40, Q4_K 0.52, Q5_K 0.22, Q6_K 0.145).
  double outlierBound;
};

const KQuant kKQuants[] = {
    {GgmlType::Q2_K, "Q2_K", 84, 0.36, 1.25},
    {GgmlType::Q3_K, "Q3_K", 110, 0.17, 0.5},
    {GgmlType::Q4_K, "Q4_K", 144, 0.086, 0.65},
    {GgmlType::Q5_K, "Q5_K", 176, 0.042, 0.28},
    {GgmlType::Q6_K, "Q6_K", 210, 0.021, 0.18},
};

std::vector<float> gaussian(uint32_t seed, size_t n, float mean, float sigma) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(mean, sigma);
  std::vector<float> x(n);
  for (float &v : x)
    v = normal(rng);
  return x;
}

struct RoundTrip {
  std::vector<uint8_t> blocks;
  std::vector<float> y;
};

RoundTrip roundTrip(const KQuant &k, const std::vector<float> &x) {
  RoundTrip r;
  r.blocks.resize(x.size() / QK_K * k.blockBytes);
  r.y.resize(x.size());
  quantizeRow(k.type, x.data(), r.blocks.data(), x.size());
  dequantizeRow(k.type, r.blocks.data(), r.y.data(), x.size());
  return r;
}

/// RMS of x - y over [begin, end) relative to the RMS of x there.
double relativeRms(const std::vector<float> &x, const std::vector<float> &y,
                   size_t begin, size_t end) {
  double err = 0, ref = 0;
  for (size_t i = begin; i < end; ++i) {
    err += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    ref += double(x[i]) * x[i];
  }
  return std::sqrt(err / ref);
}
double relativeRms(const std::vector<float> &x, const std::vector<float> &y) {
  return relativeRms(x, y, 0, x.size());
}

float loadHalf(const uint8_t *p) {
  return halfToFloat(static_cast<uint16_t>(p[0] | p[1] << 8));
}

TEST(QuantizeKQuants, EveryKQuantHasAQuantizer) {
  for (const KQuant &k : kKQuants) {
    EXPECT_TRUE(canQuantize(k.type)) << k.name;
    EXPECT_EQ(gguf::getGgmlTypeInfo(k.type).blockBytes, k.blockBytes) << k.name;
    EXPECT_EQ(gguf::getGgmlTypeInfo(k.type).blockSize, QK_K) << k.name;
  }
}

TEST(QuantizeKQuants, GaussianRowsWithinRmsBound) {
  for (const KQuant &k : kKQuants)
    for (uint32_t seed = 1; seed <= 5; ++seed)
      for (float sigma : {1.0f / 16.0f, 1.0f, 30.0f}) {
        std::vector<float> x = gaussian(seed, 16 * QK_K, 0.0f, sigma);
        RoundTrip r = roundTrip(k, x);
        EXPECT_LT(relativeRms(x, r.y), k.bound)
            << k.name << ", seed " << seed << ", sigma " << sigma;
        for (size_t b = 0; b < 16; ++b)
          EXPECT_LT(relativeRms(x, r.y, b * QK_K, (b + 1) * QK_K),
                    1.25 * k.bound)
              << k.name << ", seed " << seed << ", sigma " << sigma
              << ", super-block " << b;
      }
}

TEST(QuantizeKQuants, ZerosStayZero) {
  for (const KQuant &k : kKQuants) {
    std::vector<float> x(2 * QK_K, 0.0f);
    // A second super-block of Gaussian values with one sub-block of zeros:
    // a zero step and zero min reproduce zeros exactly.
    std::vector<float> g = gaussian(3, QK_K, 0.0f, 1.0f);
    std::copy(g.begin(), g.end(), x.begin() + QK_K);
    std::fill(x.begin() + QK_K + 64, x.begin() + QK_K + 96, 0.0f);
    RoundTrip r = roundTrip(k, x);
    for (int i = 0; i < QK_K; ++i)
      ASSERT_EQ(r.y[i], 0.0f) << k.name << ", element " << i;
    for (int i = QK_K + 64; i < QK_K + 96; ++i)
      ASSERT_EQ(r.y[i], 0.0f) << k.name << ", element " << i;
  }
}

// A constant row is its sub-blocks' largest scale (or min) everywhere: the
// largest field value times d, exact but for d's f16 rounding. Tiny values
// make d an f16 subnormal (Q6_K: d = 2.5e-3 / 32 / 128 = 6.1e-7, a tenth of
// an f16 step off) and leave the rounding to the 6/8-bit fields: within 1%.
TEST(QuantizeKQuants, ConstantRowsWithinHalfPrecision) {
  for (const KQuant &k : kKQuants)
    for (float c : {0.37f, -0.37f, 1500.0f, 2.5e-3f, -2.5e-3f}) {
      std::vector<float> x(2 * QK_K, c);
      RoundTrip r = roundTrip(k, x);
      float tolerance = (std::fabs(c) < 0.01f ? 1e-2f : 1e-3f) * std::fabs(c);
      for (size_t i = 0; i < x.size(); ++i)
        ASSERT_NEAR(r.y[i], c, tolerance)
            << k.name << ", constant " << c << ", element " << i;
    }
}

// One element of 50 sigma: it is kept to within 0.5% (it sets its
// sub-block's and its super-block's scale or min, the largest field value);
// the other super-blocks are unaffected. Its own super-block suffers: the
// other elements of the outlier's sub-block mostly round to zero, and with
// dmin set by a -50 min, the other sub-blocks' mins round to 0 or to dmin,
// far from their own (Q2_K's 4-bit mins worst: about what zeroing the
// super-block would lose).
TEST(QuantizeKQuants, OneOutlier) {
  for (const KQuant &k : kKQuants)
    for (int position : {5, 100, 255})
      for (float sign : {1.0f, -1.0f}) {
        std::vector<float> x = gaussian(7 + position, 4 * QK_K, 0.0f, 1.0f);
        size_t at = 2 * QK_K + position;
        x[at] = 50.0f * sign;
        RoundTrip r = roundTrip(k, x);
        EXPECT_NEAR(r.y[at], x[at], 5e-3f * 50.0f)
            << k.name << ", position " << position << ", sign " << sign;
        for (size_t b : {0, 1, 3})
          EXPECT_LT(relativeRms(x, r.y, b * QK_K, (b + 1) * QK_K),
                    1.25 * k.bound)
              << k.name << ", super-block " << b;
        double err = 0, ref = 0;
        for (size_t i = 2 * QK_K; i < 3 * QK_K; ++i)
          if (i != at) {
            err += (double(x[i]) - r.y[i]) * (double(x[i]) - r.y[i]);
            ref += double(x[i]) * x[i];
          }
        EXPECT_LT(std::sqrt(err / ref), k.outlierBound)
            << k.name << ", position " << position << ", sign " << sign;
      }
}

// Rows of one sign: the asymmetric formats' min covers the offset; the
// symmetric ones use half their codes. Relative to the input's RMS, no worse
// than Gaussian rows.
TEST(QuantizeKQuants, OneSignedRows) {
  for (const KQuant &k : kKQuants)
    for (uint32_t seed = 1; seed <= 3; ++seed) {
      std::vector<float> g = gaussian(seed, 8 * QK_K, 0.0f, 1.0f);
      std::vector<float> neg(g.size()), pos(g.size()), shifted(g.size());
      for (size_t i = 0; i < g.size(); ++i) {
        neg[i] = -std::fabs(g[i]);
        pos[i] = std::fabs(g[i]);
        shifted[i] = g[i] - 3.0f; // almost all negative
      }
      EXPECT_LT(relativeRms(neg, roundTrip(k, neg).y), k.bound)
          << k.name << ", seed " << seed;
      EXPECT_LT(relativeRms(pos, roundTrip(k, pos).y), k.bound)
          << k.name << ", seed " << seed;
      EXPECT_LT(relativeRms(shifted, roundTrip(k, shifted).y), k.bound)
          << k.name << ", seed " << seed;
    }
}

// The super-block scale is the largest sub-block scale over the largest
// field value: some field takes that value, and every d is a finite f16 (d
// and dmin non-negative in the asymmetric formats). In the symmetric
// formats the element of largest magnitude is reproduced to f16 precision.
TEST(QuantizeKQuants, ScaleFieldsUseTheirRange) {
  for (uint32_t seed = 1; seed <= 4; ++seed)
    for (const KQuant &k : kKQuants) {
      std::vector<float> x = gaussian(seed, 8 * QK_K, 0.0f, 0.05f);
      RoundTrip r = roundTrip(k, x);
      for (int b = 0; b < 8; ++b) {
        const uint8_t *p = r.blocks.data() + b * k.blockBytes;
        const float *xb = x.data() + b * QK_K;
        SCOPED_TRACE(::testing::Message()
                     << k.name << ", seed " << seed << ", block " << b);
        int maxScale = 0, maxMin = 0, minSigned = 0;
        float d = 0, dmin = 0;
        switch (k.type) {
        case GgmlType::Q2_K:
          d = loadHalf(p + 80);
          dmin = loadHalf(p + 82);
          for (int i = 0; i < 16; ++i) {
            maxScale = std::max(maxScale, p[i] & 0x0f);
            maxMin = std::max(maxMin, p[i] >> 4);
          }
          EXPECT_EQ(maxScale, 15);
          EXPECT_EQ(maxMin, 15);
          break;
        case GgmlType::Q4_K:
        case GgmlType::Q5_K:
          d = loadHalf(p);
          dmin = loadHalf(p + 2);
          for (int j = 0; j < 4; ++j) {
            const uint8_t *s = p + 4;
            maxScale = std::max({maxScale, s[j] & 0x3f,
                                 (s[8 + j] & 0x0f) | ((s[j] >> 2) & 0x30)});
            maxMin = std::max({maxMin, s[4 + j] & 0x3f,
                               (s[8 + j] >> 4) | ((s[4 + j] >> 2) & 0x30)});
          }
          EXPECT_EQ(maxScale, 63);
          EXPECT_EQ(maxMin, 63);
          break;
        case GgmlType::Q3_K:
          d = loadHalf(p + 108);
          for (int i = 0; i < 16; ++i) {
            const uint8_t *s = p + 96;
            int low = (i < 8 ? s[i] : s[i - 8] >> 4) & 0x0f;
            int high = (s[8 + i % 4] >> (2 * (i / 4))) & 0x03;
            minSigned = std::min(minSigned, (low | high << 4) - 32);
          }
          EXPECT_EQ(minSigned, -32);
          break;
        case GgmlType::Q6_K:
          d = loadHalf(p + 208);
          for (int i = 0; i < 16; ++i)
            minSigned = std::min<int>(minSigned, int8_t(p[192 + i]));
          EXPECT_EQ(minSigned, -128);
          break;
        default:
          FAIL();
        }
        EXPECT_TRUE(std::isfinite(d) && std::isfinite(dmin));
        bool symmetric = k.type == GgmlType::Q3_K || k.type == GgmlType::Q6_K;
        if (!symmetric) {
          EXPECT_FALSE(std::signbit(d));
          EXPECT_FALSE(std::signbit(dmin));
          continue;
        }
        int largest = 0;
        for (int i = 1; i < QK_K; ++i)
          if (std::fabs(xb[i]) > std::fabs(xb[largest]))
            largest = i;
        EXPECT_NEAR(r.y[b * QK_K + largest], xb[largest],
                    2e-3f * std::fabs(xb[largest]));
      }
    }
}

} // namespace
