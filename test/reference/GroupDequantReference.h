//===- GroupDequantReference.h - Own int formats, 2nd opinion ---*- C++ -*-===//
//
// A second scalar dequantizer of moec's own group-wise int2/int3/int4/int8
// formats, written from the format's definition (compiler/quant/
// GroupFormats.h) without calling compiler/quant: generated decoders are
// checked against both, and the two against each other, so that a mistake
// shared by the definition's implementation and a decoder cannot hide.
//
// Storage, one block per group of G elements (G a multiple of 8):
//
//   f16 scale | f16 min (asymmetric only) | G codes of B bits, packed
//   little-endian: code j occupies bits [j*B, (j+1)*B) of the code bytes.
//
// Codes u are unsigned; symmetric x = scale * (u - 2^(B-1)), asymmetric
// x = scale * u + min, in f32, multiply then add.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_TEST_REFERENCE_GROUPDEQUANTREFERENCE_H
#define MOEC_TEST_REFERENCE_GROUPDEQUANTREFERENCE_H

#include <cstdint>

namespace moec::reference {

/// Dequantizes `numElements` (a multiple of `group`) elements of the own
/// format with `bits` bits per code (2, 3, 4 or 8) stored at `src`.
void dequantizeGroup(unsigned bits, unsigned group, bool asymmetric,
                     const uint8_t *src, float *dst, int64_t numElements);

} // namespace moec::reference

#endif // MOEC_TEST_REFERENCE_GROUPDEQUANTREFERENCE_H
