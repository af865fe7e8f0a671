//===- Repack.h - Row-interleaved storage of quantized matrices -*- C++ -*-===//
//
// The storage layout `interleave = N` of !qnt.tensor (dialects/qnt): the
// blocks of N consecutive rows stored block by block, so that a kernel
// computing N rows at once reads one sequential stream instead of N strided
// ones. Within a tile, the N blocks of one block index form a run; formats
// with a split header (gguf::getSplitHeaderBytes: H leading bytes of scale
// fields, Q4_0's f16 d for one) store a run's N headers first and then the
// N blocks' remaining bytes (P = blockBytes - H each), both in row order:
//
//   row-major:   r0b0 r0b1 ... r0bB | r1b0 r1b1 ... | ...
//   interleaved: h(r0b0) ... h(r(N-1)b0) p(r0b0) ... p(r(N-1)b0) | ...b1...
//
// so that a kernel loads the run's N scales as one vector and the rows'
// codes as one stream (two Q4_0 rows' codes fill one 32-byte register).
// With H = 0 (every other format) a run is the N whole blocks. Run b of the
// tile of row r starts at byte
//   (r / N) * N * rowBytes + b * N * blockBytes,
// row r's header at run + (r % N) * H and its payload at
// run + N * H + (r % N) * P. Rows must be a multiple of N (the qnt type's
// verifier requires it).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_EMIT_REPACK_H
#define MOEC_COMPILER_EMIT_REPACK_H

#include <cassert>
#include <cstdint>
#include <cstring>

namespace moec::emit {

/// Where block `block` of row `row` is stored in the interleaved layout:
/// its first `headerBytes` at `header`, the rest at `payload`.
struct InterleavedBlock {
  uint64_t header, payload;
};

inline InterleavedBlock interleavedBlockOffset(uint64_t row, uint64_t block,
                                               uint64_t rowBytes,
                                               uint64_t blockBytes,
                                               uint64_t headerBytes,
                                               unsigned interleave) {
  uint64_t tile = row / interleave, inTile = row % interleave;
  uint64_t run = tile * interleave * rowBytes + block * interleave * blockBytes;
  return {run + inTile * headerBytes,
          run + interleave * headerBytes + inTile * (blockBytes - headerBytes)};
}

/// Copies `rows` row-major rows of `rowBytes` (blocks of `blockBytes`, of
/// which the first `headerBytes` are split out) from `src` to `dst` in the
/// interleaved layout. `interleave` 1 copies.
inline void repackRows(const uint8_t *src, uint8_t *dst, uint64_t rows,
                       uint64_t rowBytes, uint64_t blockBytes,
                       uint64_t headerBytes, unsigned interleave) {
  assert(interleave >= 1 && rows % interleave == 0 &&
         rowBytes % blockBytes == 0 && headerBytes < blockBytes &&
         "not a repackable matrix");
  if (interleave == 1) {
    std::memcpy(dst, src, rows * rowBytes);
    return;
  }
  uint64_t blocks = rowBytes / blockBytes;
  for (uint64_t r = 0; r < rows; ++r)
    for (uint64_t b = 0; b < blocks; ++b) {
      InterleavedBlock at = interleavedBlockOffset(r, b, rowBytes, blockBytes,
                                                   headerBytes, interleave);
      const uint8_t *block = src + r * rowBytes + b * blockBytes;
      std::memcpy(dst + at.header, block, headerBytes);
      std::memcpy(dst + at.payload, block + headerBytes,
                  blockBytes - headerBytes);
    }
}

} // namespace moec::emit

#endif // MOEC_COMPILER_EMIT_REPACK_H
