//===- SizesTest.cpp - Elements and bytes of a tensor in a format ---------===//
//
// elementCount and bytesIn, which the allocator and the compress phase
// size tensors by, against ggml's block sizes (Q4_K: 144 bytes per 256
// weights, Q8_0: 34 per 32, F16: 2 per weight; ggml-common.h) and moec's
// own int4_g32 (an f16 scale and 16 bytes of codes per 32).
//
//===----------------------------------------------------------------------===//

#include "compiler/compress/Compress.h"

#include <gtest/gtest.h>

using namespace moec;
using namespace moec::compress;
using gguf::GgmlType;

TEST(Sizes, ElementsAndBytesInEachFormat) {
  model::StoredTensor t;
  t.dims = {512, 6, 4}; // 512 columns, 6 rows, 4 experts
  t.type = GgmlType::F16;
  t.numBytes = 512 * 6 * 4 * 2;
  EXPECT_EQ(elementCount(t), 12288);
  EXPECT_EQ(bytesIn(GgmlType::F16, t), 24576u);
  EXPECT_EQ(bytesIn(GgmlType::F32, t), 49152u);
  EXPECT_EQ(bytesIn(GgmlType::Q4_K, t), 48u * 144);
  EXPECT_EQ(bytesIn(GgmlType::Q8_0, t), 384u * 34);
  std::optional<GgmlType> int4 = gguf::parseGgmlTypeName("int4_g32");
  ASSERT_TRUE(int4);
  EXPECT_EQ(bytesIn(*int4, t), 384u * 18);
  t.dims = {7};
  EXPECT_EQ(elementCount(t), 7);
}
