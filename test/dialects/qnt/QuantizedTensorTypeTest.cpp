//===- QuantizedTensorTypeTest.cpp - !qnt.tensor sizes and verification --===//
//
// Block sizes and bytes of the GGUF formats are checked against the sizes of
// GGUF's block structs (ggml-common.h's static_asserts); the own formats
// against their definition (packed codes + f16 scale [+ f16 min] per group).

#include "dialects/qnt/IR/QntDialect.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"

#include <gtest/gtest.h>

using namespace mlir;
using namespace moec::qnt;

namespace {

class QuantizedTensorTypeTest : public ::testing::Test {
protected:
  QuantizedTensorTypeTest() { context.loadDialect<QntDialect>(); }

  QuantizedTensorType get(ArrayRef<int64_t> shape, QuantFormat format,
                          unsigned group = 0, bool asymmetric = false,
                          unsigned interleave = 1) {
    return QuantizedTensorType::getChecked(
        [&] { return emitError(UnknownLoc::get(&context)); }, &context, shape,
        format, group, asymmetric, interleave);
  }

  MLIRContext context;
};

struct GgufBlock {
  QuantFormat format;
  int64_t elements;
  int64_t bytes;
};

// sizeof(block_*) and QK_* of GGUF's ggml-common.h.
constexpr GgufBlock kGgufBlocks[] = {
    {QuantFormat::Q4_0, 32, 18},   {QuantFormat::Q4_1, 32, 20},
    {QuantFormat::Q5_0, 32, 22},   {QuantFormat::Q5_1, 32, 24},
    {QuantFormat::Q8_0, 32, 34},   {QuantFormat::Q2_K, 256, 84},
    {QuantFormat::Q3_K, 256, 110}, {QuantFormat::Q4_K, 256, 144},
    {QuantFormat::Q5_K, 256, 176}, {QuantFormat::Q6_K, 256, 210},
    {QuantFormat::MXFP4, 32, 17},
};

TEST_F(QuantizedTensorTypeTest, GgufBlockSizesAndBytes) {
  for (const GgufBlock &block : kGgufBlocks) {
    SCOPED_TRACE(stringifyQuantFormat(block.format).str());
    EXPECT_TRUE(isGgufFormat(block.format));
    QuantizedTensorType type = get({3, 2 * block.elements}, block.format);
    ASSERT_TRUE(type);
    EXPECT_EQ(type.getBlockSize(), block.elements);
    EXPECT_EQ(type.getBlockBytes(), block.bytes);
    EXPECT_EQ(type.getRowBytes(), 2 * block.bytes);
    EXPECT_EQ(type.getStorageBytes(), 3 * 2 * block.bytes);
  }
}

TEST_F(QuantizedTensorTypeTest, OwnFormatBytesIncludeScalesAndMins) {
  struct Case {
    QuantFormat format;
    unsigned bits;
  } cases[] = {{QuantFormat::Int2, 2},
               {QuantFormat::Int3, 3},
               {QuantFormat::Int4, 4},
               {QuantFormat::Int8, 8}};
  for (const Case &c : cases) {
    SCOPED_TRACE(stringifyQuantFormat(c.format).str());
    EXPECT_FALSE(isGgufFormat(c.format));
    EXPECT_EQ(getOwnFormatBits(c.format), c.bits);
    for (unsigned group : {8u, 32u, 64u, 128u}) {
      QuantizedTensorType sym = get({4, 4 * group}, c.format, group);
      ASSERT_TRUE(sym);
      EXPECT_EQ(sym.getBlockSize(), group);
      EXPECT_EQ(sym.getBlockBytes(), group * c.bits / 8 + 2);
      QuantizedTensorType asym = get({4, 4 * group}, c.format, group, true);
      ASSERT_TRUE(asym);
      EXPECT_EQ(asym.getBlockBytes(), group * c.bits / 8 + 4);
      EXPECT_EQ(asym.getStorageBytes(), 4 * 4 * (group * c.bits / 8 + 4));
    }
  }
}

TEST_F(QuantizedTensorTypeTest, StackedExpertsCountEveryRow) {
  // 8 experts of 128 rows of 2048 Q4_K elements: 8 * 128 * 8 blocks.
  QuantizedTensorType type = get({8, 128, 2048}, QuantFormat::Q4_K);
  ASSERT_TRUE(type);
  EXPECT_EQ(type.getStorageBytes(), 8 * 128 * 8 * 144);
}

TEST_F(QuantizedTensorTypeTest, RejectsWhatCannotBeStored) {
  // Silence the diagnostics the rejected types emit.
  ScopedDiagnosticHandler quiet(&context, [](Diagnostic &) { return success(); });
  EXPECT_FALSE(get({4, 48}, QuantFormat::Q4_0));       // 48 % 32 != 0
  EXPECT_FALSE(get({4, 128}, QuantFormat::Q4_K));      // 128 % 256 != 0
  EXPECT_FALSE(get({4, 64}, QuantFormat::Q4_0, 32));   // GGUF with group
  EXPECT_FALSE(get({4, 64}, QuantFormat::Q8_0, 0, true));
  EXPECT_FALSE(get({4, 64}, QuantFormat::Int4));       // own without group
  EXPECT_FALSE(get({4, 60}, QuantFormat::Int4, 12));   // group % 8 != 0
  EXPECT_FALSE(get({4, ShapedType::kDynamic}, QuantFormat::Q8_0));
  EXPECT_FALSE(get({}, QuantFormat::Q8_0));
  EXPECT_FALSE(get({0, 32}, QuantFormat::Q8_0));
  EXPECT_FALSE(get({6, 32}, QuantFormat::Q8_0, 0, false, 4)); // 6 % 4 != 0
  EXPECT_FALSE(get({8, 32}, QuantFormat::Q8_0, 0, false, 3)); // not 2^n
  EXPECT_TRUE(get({8, 32}, QuantFormat::Q8_0, 0, false, 4));
  EXPECT_TRUE(get({ShapedType::kDynamic, 32}, QuantFormat::Q8_0));
}

} // namespace
