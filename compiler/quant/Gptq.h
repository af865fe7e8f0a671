//===- Gptq.h - GPTQ quantization into moec's own formats -------*- C++ -*-===//
//
// GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for
// Generative Pre-trained Transformers", 2022) for the group-wise integer
// formats of GroupFormats.h.
//
// A linear layer y = W x with W [rows x cols] (cols the input dimension) is
// quantized column by column so as to minimize ||X W^T - X Wq^T||_F over
// calibration inputs X [tokens x cols], which depends on X only through
// the Hessian H = X^T X [cols x cols]. After column i is rounded, its
// error is spread over the columns not yet quantized through the upper
// Cholesky factor U of H^-1 (the optimal compensation, the Optimal Brain
// Surgeon update): w[j] -= (w[i] - q[i]) / U[i][i] * U[i][j] for j > i.
// As in the paper's reference implementation:
//  - H is dampened by percdamp * mean(diag H) on the diagonal;
//  - dead columns (H[i][i] == 0: an input never active in calibration) get
//    H[i][i] = 1 and their weights are zeroed before quantization;
//  - columns go in blocks of 128 with the lazy-batch update: the errors of
//    a block update the rest of the matrix once, at the block's end;
//  - a group's scale (and min) is fixed when the column loop enters the
//    group, from the group's current (error-updated) weights.
// Rows are independent (they share U), so threads split the rows; the
// result does not depend on the number of threads.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_QUANT_GPTQ_H
#define MOEC_COMPILER_QUANT_GPTQ_H

#include "compiler/quant/GroupFormats.h"

#include <cstdint>
#include <string>

namespace moec::quant {

struct GptqOptions {
  /// Dampening of H's diagonal, relative to its mean.
  double percdamp = 0.01;
  /// Columns per lazy-batch block; rounded up to a multiple of the group so
  /// that no group straddles two blocks.
  int64_t blockSize = 128;
  /// Choose a group's scale (and min) by searchGroupParams, weighting each
  /// column by its GPTQ cost 1 / U[i][i]^2, rather than round to nearest.
  bool searchGroupScales = true;
  /// Threads over rows (0 and 1 both mean the calling thread only).
  unsigned threads = 1;
};

/// Quantizes W [rows x cols] (row-major, f32, finite) into `dst` (rows
/// times cols / format.group blocks of `format`, row after row, the storage
/// of quantizeGroupRow) under H [cols x cols] (row-major; only its upper
/// triangle, diagonal included, is read). `cols` must be a multiple of the
/// group. When `dequantized` is not null it receives the rows x cols values
/// the blocks decode to. Returns false, with a message in `*error` when
/// `error` is not null, when an argument is invalid or the dampened H is
/// not positive definite; `dst` is then unspecified.
bool gptqQuantize(GroupFormat format, const float *W, int64_t rows,
                  int64_t cols, const double *H, const GptqOptions &options,
                  uint8_t *dst, std::string *error,
                  float *dequantized = nullptr);

/// Adds X^T X to H [cols x cols] (both triangles) for the inputs X
/// [tokens x cols] (row-major): calls over batches of tokens accumulate the
/// calibration Hessian.
void accumulateHessian(const float *X, int64_t tokens, int64_t cols, double *H);

} // namespace moec::quant

#endif // MOEC_COMPILER_QUANT_GPTQ_H
