//===- GroupFormats.h - moec's own group-wise integer formats ---*- C++ -*-===//
//
// The storage and the scalar definition of the `qnt` dialect's own formats
// int2, int3, int4 and int8 (`!qnt.tensor<..., intB, group = G[, asymmetric]>`),
// the reference that generated kernels are tested against.
//
// Storage, block by block along the innermost dimension, one block per group
// of G elements (G a multiple of 8), like GGUF's Q4_1:
//
//   f16 scale | f16 min (asymmetric only) | G codes of B bits, packed
//   little-endian: code j occupies bits [j*B, (j+1)*B) of the code bytes.
//
// Codes are unsigned u in [0, 2^B). Symmetric: x = scale * (u - 2^(B-1)).
// Asymmetric: x = scale * u + min. Both in float32, multiply then add.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_QUANT_GROUPFORMATS_H
#define MOEC_COMPILER_QUANT_GROUPFORMATS_H

#include <cstdint>

namespace moec::quant {

struct GroupFormat {
  unsigned bits;   // 2, 3, 4 or 8
  unsigned group;  // elements per block, a multiple of 8
  bool asymmetric;

  /// Bytes per block: scale, min when asymmetric, packed codes.
  int64_t blockBytes() const {
    return 2 + (asymmetric ? 2 : 0) + int64_t(group) * bits / 8;
  }
  bool isValid() const {
    return (bits == 2 || bits == 3 || bits == 4 || bits == 8) && group > 0 &&
           group % 8 == 0;
  }
};

/// Dequantizes `numElements` (a multiple of the group) at `src` into `dst`.
void dequantizeGroupRow(GroupFormat format, const uint8_t *src, float *dst,
                        int64_t numElements);

/// Round-to-nearest quantization of finite values. Symmetric: the element
/// of largest magnitude maps to the extreme code of its sign (scale
/// |x|max / 2^(B-1) for a negative one, / (2^(B-1) - 1) for a positive one).
/// Asymmetric: min = the group's minimum, scale = (max - min) / (2^B - 1).
/// Scale and min are rounded to f16 before the codes are computed from them,
/// so that a group the format represents exactly is reproduced exactly.
void quantizeGroupRow(GroupFormat format, const float *src, uint8_t *dst,
                      int64_t numElements);

} // namespace moec::quant

#endif // MOEC_COMPILER_QUANT_GROUPFORMATS_H
