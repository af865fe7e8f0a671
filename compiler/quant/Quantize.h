//===- Quantize.h - Round-to-nearest quantization into ggml types -*- C++ -*-===//
//
// The reference quantizers of GGUF's simple block formats (Q4_0, Q4_1,
// Q5_0, Q5_1, Q8_0, MXFP4) and of F16/BF16, producing blocks bit-identical
// to the GGUF project's own (the gguf package's gguf.quants.quantize, which
// matches ggml's quantize_row_*_ref) for finite inputs: same float32
// operations in the same order, the same tie-breaking.
//
// The k-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) are quantized round to
// nearest: per sub-block a scale (and min) from its range, the scales
// rounded to their 4/6/8-bit fields under the super-block's f16 d (and
// dmin), then the codes rounded with the quantized scales (Quantize.cpp has
// the details). That is not llama.cpp's quantize_row_*_K, which searches
// for scales minimizing the error: the blocks are valid, bit-compatible GGUF
// that any reader dequantizes, but not byte-identical to llama.cpp's, and
// somewhat less accurate (the gguf package has no k-quant quantizer to
// compare with). The statement above covers only the formats it lists.
// Inputs must be finite and small enough that the scales fit an f16.
// The importance-weighted quantizers of every format are in
// ImportanceQuantize.h, GPTQ in Gptq.h.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_QUANT_QUANTIZE_H
#define MOEC_COMPILER_QUANT_QUANTIZE_H

#include "compiler/gguf/GgmlType.h"

#include <cstdint>

namespace moec::quant {

/// Whether quantizeRow supports `type`.
bool canQuantize(gguf::GgmlType type);

/// Quantizes `numElements` floats (a multiple of the type's block size,
/// finite) into blocks of `type` at `dst`. `type` must satisfy canQuantize.
void quantizeRow(gguf::GgmlType type, const float *src, uint8_t *dst,
                 int64_t numElements);

} // namespace moec::quant

#endif // MOEC_COMPILER_QUANT_QUANTIZE_H
