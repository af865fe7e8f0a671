//===- Dequantize.h - Reference dequantization of ggml types ----*- C++ -*-===//
//
// The scalar definition of every tensor type moec computes with: F32, F16,
// BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, MXFP4.
// Results are bit-exact with the GGUF project's own reference (the gguf
// package's gguf.quants.dequantize), float operation for float operation,
// including signed zeros, infinities and NaNs coming from the scales; every
// fast path (generated kernels) is tested against this.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_QUANT_DEQUANTIZE_H
#define MOEC_COMPILER_QUANT_DEQUANTIZE_H

#include "compiler/gguf/GgmlType.h"

#include <cstdint>

namespace moec::quant {

/// IEEE half to single precision, exact (NaN payloads kept).
float halfToFloat(uint16_t bits);

/// Rounds to IEEE half, to nearest even (as numpy's astype(float16)).
uint16_t floatToHalf(float value);

/// Whether dequantizeRow supports `type`.
bool canDequantize(gguf::GgmlType type);

/// Dequantizes `numElements` elements (a multiple of the type's block size)
/// stored at `src` into `dst`. `type` must satisfy canDequantize.
void dequantizeRow(gguf::GgmlType type, const uint8_t *src, float *dst,
                   int64_t numElements);

} // namespace moec::quant

#endif // MOEC_COMPILER_QUANT_DEQUANTIZE_H
