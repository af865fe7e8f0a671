//===- ImportanceQuantize.h - Importance-weighted quantization --*- C++ -*-===//
//
// Quantization of one row that minimizes an importance-weighted error
// instead of rounding to nearest, for every format of QuantFormat.h.
//
// The importance of a column is llama.cpp's imatrix entry: the mean squared
// input activation that the column's weight multiplies, so that
//
//   E = sum_i importance_i * (x_i - q_i)^2
//
// (x the row, q its dequantization) estimates, to a diagonal
// approximation, the squared output error the quantization causes. E is what
// importanceWeightedError returns and what the quantizer minimizes (by
// default; see ImportanceOptions), block by block: each block is encoded
// with several candidate searches and the candidate of least E is kept, so
// the result is never worse in E than round to nearest (quantizeRow), one of
// the candidates.
//
// The candidates:
//  - round to nearest (Quantize.cpp, GroupFormats.cpp);
//  - for the GGUF formats with one in ggml, ggml's own importance search
//    (quantize_row_*_impl: make_qx_quants, make_qkx3_quants, make_qp_quants),
//    reimplemented to give the same bytes for the same weights. llama.cpp
//    searches under w_i = importance_i * sqrt(sigma2 + x_i^2) (a magnitude
//    factor that regularizes a noisy imatrix; sigma2 per format as ggml
//    has it); that search is run with ggml's weights and again with E's own;
//  - for the k-quants, a refinement of the best of those: least-squares
//    super-block scales (d, dmin) rounded to f16 and a local search of each
//    sub-block's scale/min fields, codes recomputed each time;
//  - for Q4_0, Q5_0, Q8_0, Q4_1, Q5_1 and moec's own formats, a scale sweep
//    (and for the asymmetric ones alternating least squares of scale and
//    min) in which every candidate is evaluated exactly: scale and min
//    rounded to f16 first, codes computed from the rounded values;
//  - MXFP4: the shared exponent among round to nearest's and its two
//    neighbours.
//
// Everything is deterministic, keeps no state and is safe to call from many
// threads at once (callers parallelize over rows).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_QUANT_IMPORTANCEQUANTIZE_H
#define MOEC_COMPILER_QUANT_IMPORTANCEQUANTIZE_H

#include "compiler/quant/GroupFormats.h"
#include "compiler/quant/QuantFormat.h"

#include <cstdint>

namespace moec::quant {

struct ImportanceOptions {
  /// Minimize llama.cpp's objective sum_i w_i (x_i - q_i)^2 with
  /// w_i = importance_i * sqrt(sigma2 + x_i^2), sigma2 twice the row's mean
  /// square, instead of E. Off by default: E is the error the bit
  /// allocator compares, and what the quantizer is measured on.
  bool magnitudeFactor = false;
};

/// Quantizes `n` finite floats (a multiple of the format's block size) at
/// `src` into `dst` (format.rowBytes(n) bytes), minimizing the
/// importance-weighted error. `importance` holds `n` finite non-negative
/// weights, one per column, or is null for uniform weights (plain squared
/// error). `format` must be valid.
void quantizeRowImportance(const QuantFormat &format, const float *src,
                           uint8_t *dst, int64_t n, const float *importance,
                           const ImportanceOptions &options = {});

/// ggml's own importance quantization (llama.cpp's quantize with an
/// imatrix: ggml_quantize_chunk), reproduced byte for byte: the GGUF format
/// `type` (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, MXFP4, Q2_K..Q6_K; ggml ignores
/// the importance of Q8_0 and MXFP4) for `n` elements, importance not null.
/// For comparisons and llama.cpp-identical files; quantizeRowImportance is
/// never worse in the importance-weighted error.
void quantizeRowLikeGgml(gguf::GgmlType type, const float *src, uint8_t *dst,
                         int64_t n, const float *importance);

/// sum_i importance_i * (src_i - q_i)^2 over the `n` elements of the row
/// whose blocks are at `blocks` (q their reference dequantization), in double.
/// A null `importance` weighs every element 1 (the plain squared error).
double importanceWeightedError(const QuantFormat &format, const float *src,
                               const uint8_t *blocks, int64_t n,
                               const float *importance);

//===----------------------------------------------------------------------===//
// One group of moec's own formats, for quantizers that fix a group's scale
// before its elements (GPTQ).
//===----------------------------------------------------------------------===//

/// A group's scale and min, both exactly representable in f16 (min is 0 for
/// symmetric formats).
struct GroupParams {
  float scale = 0.0f;
  float min = 0.0f;
};

/// The scale and min that quantizeGroupRow chooses for the group at `x`.
GroupParams roundToNearestGroupParams(GroupFormat format, const float *x);

/// The scale and min minimizing sum_i w_i (x_i - q_i)^2 over the group at
/// `x` (format.group elements, `w` as many non-negative weights or null for
/// uniform), codes nearest (groupCode); never worse than
/// roundToNearestGroupParams.
GroupParams searchGroupParams(GroupFormat format, const float *x,
                              const float *w);

/// The code whose dequantized value is nearest `x`.
unsigned groupCode(GroupFormat format, GroupParams params, float x);

/// The dequantized value of `code` (dequantizeGroupRow's float operations).
float groupValue(GroupFormat format, GroupParams params, unsigned code);

/// Writes one block: the f16 scale (and min), then the packed codes
/// (format.group of them, each below 2^bits).
void writeGroupBlock(GroupFormat format, GroupParams params,
                     const uint8_t *codes, uint8_t *block);

} // namespace moec::quant

#endif // MOEC_COMPILER_QUANT_IMPORTANCEQUANTIZE_H
