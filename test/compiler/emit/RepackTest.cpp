//===- RepackTest.cpp - The row-interleaved storage layout ----------------===//
//
// compiler/emit/Repack.h against the layout written out by hand: Q4_0-like
// blocks (2 header bytes, 16 payload bytes) of 4 rows, 2 blocks a row, and
// whole blocks where a format splits nothing.
//
//===----------------------------------------------------------------------===//

#include "compiler/emit/Repack.h"
#include "compiler/gguf/GgmlType.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

using namespace moec;

namespace {

/// Byte j of block b of row r: a value that names all three.
uint8_t tag(unsigned r, unsigned b, unsigned j) {
  return uint8_t(r * 64 + b * 32 + j);
}

std::vector<uint8_t> rowMajor(unsigned rows, unsigned blocks,
                              unsigned blockBytes) {
  std::vector<uint8_t> bytes;
  for (unsigned r = 0; r < rows; ++r)
    for (unsigned b = 0; b < blocks; ++b)
      for (unsigned j = 0; j < blockBytes; ++j)
        bytes.push_back(tag(r, b, j));
  return bytes;
}

TEST(Repack, SplitHeadersComeFirstInEachRun) {
  const unsigned rows = 4, blocks = 2, blockBytes = 18, header = 2;
  std::vector<uint8_t> src = rowMajor(rows, blocks, blockBytes);
  std::vector<uint8_t> dst(src.size());
  emit::repackRows(src.data(), dst.data(), rows, blocks * blockBytes,
                   blockBytes, header, /*interleave=*/4);
  // Run b: the 4 rows' 2-byte headers, then their 16-byte payloads.
  std::vector<uint8_t> expected;
  for (unsigned b = 0; b < blocks; ++b) {
    for (unsigned r = 0; r < rows; ++r)
      for (unsigned j = 0; j < header; ++j)
        expected.push_back(tag(r, b, j));
    for (unsigned r = 0; r < rows; ++r)
      for (unsigned j = header; j < blockBytes; ++j)
        expected.push_back(tag(r, b, j));
  }
  EXPECT_EQ(dst, expected);
}

TEST(Repack, WholeBlocksWithoutSplitHeader) {
  const unsigned rows = 4, blocks = 2, blockBytes = 18;
  std::vector<uint8_t> src = rowMajor(rows, blocks, blockBytes);
  std::vector<uint8_t> dst(src.size());
  emit::repackRows(src.data(), dst.data(), rows, blocks * blockBytes,
                   blockBytes, /*headerBytes=*/0, /*interleave=*/2);
  // Tiles of 2 rows: r0b0 r1b0 r0b1 r1b1 | r2b0 r3b0 r2b1 r3b1.
  std::vector<uint8_t> expected;
  for (unsigned tile = 0; tile < 2; ++tile)
    for (unsigned b = 0; b < blocks; ++b)
      for (unsigned r = 2 * tile; r < 2 * tile + 2; ++r)
        for (unsigned j = 0; j < blockBytes; ++j)
          expected.push_back(tag(r, b, j));
  EXPECT_EQ(dst, expected);
}

TEST(Repack, InterleaveOneCopies) {
  std::vector<uint8_t> src = rowMajor(3, 2, 18);
  std::vector<uint8_t> dst(src.size());
  emit::repackRows(src.data(), dst.data(), 3, 36, 18, 2, 1);
  EXPECT_EQ(dst, src);
}

TEST(Repack, SplitHeaderBytesPerFormat) {
  using gguf::GgmlType;
  EXPECT_EQ(gguf::getSplitHeaderBytes(GgmlType::Q4_0), 2);
  EXPECT_EQ(gguf::getSplitHeaderBytes(GgmlType::Q5_0), 2);
  EXPECT_EQ(gguf::getSplitHeaderBytes(GgmlType::Q8_0), 2);
  EXPECT_EQ(gguf::getSplitHeaderBytes(GgmlType::Q4_1), 4);
  EXPECT_EQ(gguf::getSplitHeaderBytes(GgmlType::Q5_1), 4);
  EXPECT_EQ(gguf::getSplitHeaderBytes(GgmlType::Q4_K), 0);
  EXPECT_EQ(gguf::getSplitHeaderBytes(GgmlType::Q6_K), 0);
  EXPECT_EQ(gguf::getSplitHeaderBytes(GgmlType::MXFP4), 0);
  EXPECT_EQ(gguf::getSplitHeaderBytes(GgmlType::F16), 0);
  EXPECT_EQ(gguf::getSplitHeaderBytes(
                *gguf::makeOwnGroupType({4, 32, /*asymmetric=*/false})),
            2);
  EXPECT_EQ(gguf::getSplitHeaderBytes(
                *gguf::makeOwnGroupType({3, 64, /*asymmetric=*/true})),
            4);
}

} // namespace
