//===- Repack.h - Row-interleaved storage of quantized matrices -*- C++ -*-===//
//
// The storage layout `interleave = N` of !qnt.tensor (dialects/qnt): the
// blocks of N consecutive rows stored block by block, so that a kernel
// computing N rows at once reads one sequential stream instead of N strided
// ones. Blocks keep their bytes; only their order changes:
//
//   row-major:   r0b0 r0b1 ... r0bB | r1b0 r1b1 ... | ...
//   interleaved: r0b0 r1b0 ... r(N-1)b0 | r0b1 r1b1 ... | ... (per N rows)
//
// Block b of row r sits at byte
//   (r / N) * N * rowBytes + (b * N + r % N) * blockBytes.
// Rows must be a multiple of N (the qnt type's verifier requires it).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_EMIT_REPACK_H
#define MOEC_COMPILER_EMIT_REPACK_H

#include <cassert>
#include <cstdint>
#include <cstring>

namespace moec::emit {

/// Byte offset of block `block` of row `row` in the interleaved layout.
inline uint64_t interleavedBlockOffset(uint64_t row, uint64_t block,
                                       uint64_t rowBytes, uint64_t blockBytes,
                                       unsigned interleave) {
  uint64_t tile = row / interleave, inTile = row % interleave;
  return tile * interleave * rowBytes +
         (block * interleave + inTile) * blockBytes;
}

/// Copies `rows` row-major rows of `rowBytes` (blocks of `blockBytes`) from
/// `src` to `dst` in the interleaved layout. `interleave` 1 copies.
inline void repackRows(const uint8_t *src, uint8_t *dst, uint64_t rows,
                       uint64_t rowBytes, uint64_t blockBytes,
                       unsigned interleave) {
  assert(interleave >= 1 && rows % interleave == 0 &&
         rowBytes % blockBytes == 0 && "not a repackable matrix");
  if (interleave == 1) {
    std::memcpy(dst, src, rows * rowBytes);
    return;
  }
  uint64_t blocks = rowBytes / blockBytes;
  for (uint64_t r = 0; r < rows; ++r)
    for (uint64_t b = 0; b < blocks; ++b)
      std::memcpy(dst + interleavedBlockOffset(r, b, rowBytes, blockBytes,
                                               interleave),
                  src + r * rowBytes + b * blockBytes, blockBytes);
}

} // namespace moec::emit

#endif // MOEC_COMPILER_EMIT_REPACK_H
