//===- GroupFormatsTest.cpp - The own int formats' definition -------------===//

#include "compiler/quant/Dequantize.h"
#include "compiler/quant/GroupFormats.h"
#include "dialects/qnt/IR/QntDialect.h"

#include "mlir/IR/MLIRContext.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

using namespace moec;
using namespace moec::quant;

namespace {

const unsigned kBits[] = {2, 3, 4, 8};

TEST(GroupFormats, BlockBytesAreTheDialectsBlockBytes) {
  mlir::MLIRContext context;
  context.loadDialect<qnt::QntDialect>();
  const qnt::QuantFormat formats[] = {qnt::QuantFormat::Int2,
                                      qnt::QuantFormat::Int3,
                                      qnt::QuantFormat::Int4,
                                      qnt::QuantFormat::Int8};
  for (int i = 0; i < 4; ++i)
    for (unsigned group : {8u, 32u, 64u, 128u})
      for (bool asym : {false, true}) {
        auto type = qnt::QuantizedTensorType::get(&context, {4, 2 * group},
                                                  formats[i], group, asym, 1);
        GroupFormat f{kBits[i], group, asym};
        EXPECT_EQ(f.blockBytes(), type.getBlockBytes())
            << kBits[i] << " bits, group " << group << ", asym " << asym;
      }
}

TEST(GroupFormats, Int4SymmetricByHand) {
  // scale 0.5 (f16 0x3800), codes u_j = j for j < 8: x = 0.5 * (j - 8).
  uint8_t block[2 + 4] = {0x00, 0x38, 0x10, 0x32, 0x54, 0x76};
  float x[8];
  dequantizeGroupRow({4, 8, false}, block, x, 8);
  for (int j = 0; j < 8; ++j)
    EXPECT_EQ(x[j], 0.5f * (j - 8)) << j;
}

TEST(GroupFormats, Int3CodesCrossByteBoundaries) {
  // Eight 3-bit codes 7,6,5,4,3,2,1,0 packed LSB first: bits
  // 111 011 101 001 110 010 100 000 (code 0 in bits 0-2, ...).
  unsigned codes[8] = {7, 6, 5, 4, 3, 2, 1, 0};
  uint8_t packed[3] = {0, 0, 0};
  for (unsigned j = 0; j < 8; ++j)
    for (unsigned k = 0; k < 3; ++k)
      if ((codes[j] >> k) & 1)
        packed[(3 * j + k) / 8] |= 1u << ((3 * j + k) % 8);
  // scale 1.0 (0x3C00), min -2.0 (0xC000), asymmetric: x = u - 2.
  uint8_t block[4 + 3] = {0x00, 0x3C, 0x00, 0xC0, packed[0], packed[1],
                          packed[2]};
  float x[8];
  dequantizeGroupRow({3, 8, true}, block, x, 8);
  for (int j = 0; j < 8; ++j)
    EXPECT_EQ(x[j], float(codes[j]) - 2.0f) << j;
}

TEST(GroupFormats, RepresentableGroupsRoundTripExactly) {
  std::mt19937 rng(5);
  for (unsigned bits : kBits)
    for (bool asym : {false, true}) {
      GroupFormat f{bits, 32, asym};
      unsigned levels = 1u << bits;
      for (int trial = 0; trial < 200; ++trial) {
        // A block with a representable scale/min and random codes that use
        // the extreme code(s) the quantizer derives its scale from.
        std::vector<uint8_t> block(f.blockBytes(), 0);
        float scale = std::ldexp(1.0f + (rng() % 1024) / 1024.0f,
                                 -int(rng() % 8));
        uint16_t s = floatToHalf(scale);
        block[0] = s & 0xff;
        block[1] = s >> 8;
        if (asym) {
          uint16_t m = floatToHalf(-float(rng() % 100) / 16.0f);
          block[2] = m & 0xff;
          block[3] = m >> 8;
        }
        uint8_t *codes = block.data() + (asym ? 4 : 2);
        for (unsigned j = 0; j < 32; ++j) {
          unsigned u = rng() % levels;
          if (j == 0)
            u = 0; // most negative (symmetric) / the min (asymmetric)
          if (j == 1 && asym)
            u = levels - 1;
          if (!asym && u == 0 && j)
            u = 1; // one element alone holds the largest magnitude
          for (unsigned k = 0; k < bits; ++k)
            if ((u >> k) & 1)
              codes[(j * bits + k) / 8] |= 1u << ((j * bits + k) % 8);
        }
        float x[32];
        dequantizeGroupRow(f, block.data(), x, 32);
        std::vector<uint8_t> again(f.blockBytes());
        quantizeGroupRow(f, x, again.data(), 32);
        float y[32];
        dequantizeGroupRow(f, again.data(), y, 32);
        for (int j = 0; j < 32; ++j)
          ASSERT_EQ(x[j], y[j]) << bits << " bits, asym " << asym
                                << ", trial " << trial << ", element " << j;
      }
    }
}

// Asymmetric groups span their range: error within half a step. Symmetric
// groups map the largest magnitude to the extreme code of its sign, as Q4_0
// does, so values of the other sign near it may clip: within one step.
TEST(GroupFormats, RoundToNearestErrorBounds) {
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (unsigned bits : kBits)
    for (bool asym : {false, true}) {
      GroupFormat f{bits, 64, asym};
      std::vector<float> x(64 * 16), y(x.size());
      for (float &v : x)
        v = normal(rng);
      std::vector<uint8_t> q(16 * f.blockBytes());
      quantizeGroupRow(f, x.data(), q.data(), x.size());
      dequantizeGroupRow(f, q.data(), y.data(), y.size());
      for (size_t b = 0; b < 16; ++b) {
        float scale = halfToFloat(
            uint16_t(q[b * f.blockBytes()] | q[b * f.blockBytes() + 1] << 8));
        for (size_t j = 0; j < 64; ++j) {
          size_t i = b * 64 + j;
          // Plus the f16 rounding of scale and min.
          float steps = asym ? 0.5f : 1.0f;
          EXPECT_LE(std::fabs(x[i] - y[i]), steps * scale * 1.01f + 1e-3f)
              << bits << " bits, asym " << asym << ", element " << i;
        }
      }
    }
}

} // namespace
