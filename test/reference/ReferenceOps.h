//===- ReferenceOps.h - Scalar operations of the reference ------*- C++ -*-===//
//
// The few operations the reference executor is made of, each written once,
// in plain scalar C++: matrix-vector product, RMSNorm, rotary embedding,
// softmax, SiLU, sigmoid and top-k routing. Vectors between operations are
// f32; every reduction (dot product, sum of squares, softmax sum) and every
// transcendental is evaluated in f64 and rounded to f32 once, when stored.
// They are exposed so that tests can check them against hand-computed values.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_TEST_REFERENCE_REFERENCEOPS_H
#define MOEC_TEST_REFERENCE_REFERENCEOPS_H

#include "compiler/model/ModelConfig.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/Twine.h"

#include <cstdint>
#include <vector>

namespace moec::reference {

/// Stops the program with "moec reference: <message>". The reference runs
/// only in tests, where a misuse (a token outside the vocabulary, a tensor
/// of the wrong size) is a bug to report, not an input to recover from.
[[noreturn]] void fail(const llvm::Twine &message);

namespace ops {

/// sum_i a[i] * b[i], accumulated in f64 (in index order).
double dot(llvm::ArrayRef<float> a, llvm::ArrayRef<float> b);

/// y[o] = sum_i w[o][i] * x[i] (+ bias[o] when given) for a row-major w of
/// `y.size()` rows of `x.size()` columns (a ggml weight with dims
/// [x.size(), y.size()]); each row's sum in f64, rounded to f32 once.
void matVec(llvm::ArrayRef<float> w, llvm::ArrayRef<float> x,
            llvm::MutableArrayRef<float> y, llvm::ArrayRef<float> bias = {});

/// y[i] = x[i] / sqrt(mean_j(x[j]^2) + eps) * w[i], in f64, rounded once.
/// `y` may alias `x`.
void rmsNorm(llvm::ArrayRef<float> x, llvm::ArrayRef<float> w, double eps,
             llvm::MutableArrayRef<float> y);

/// theta^(-2i/d): the rotation frequency of pair `i` of a `d`-wide head.
double ropeInverseFrequency(double theta, int64_t i, int64_t d);

/// Rotates one head in place for absolute position `position`: pair
/// (a, b) becomes (a cos - b sin, b cos + a sin) with angle
/// position * ropeInverseFrequency(theta, i, d). NeoX pairs (i, i + d/2),
/// Interleaved pairs (2i, 2i + 1).
void rope(llvm::MutableArrayRef<float> head, int64_t position, double theta,
          model::RopeStyle style);

/// exp(x[i] - max) / sum_j exp(x[j] - max), in f64.
std::vector<double> softmax(llvm::ArrayRef<double> x);

/// x / (1 + exp(-x)).
double silu(double x);

/// 1 / (1 + exp(-x)).
double sigmoid(double x);

/// Indices of the `k` largest values, largest first; equal values in
/// increasing index order (so ties go to the lower index).
std::vector<int64_t> topK(llvm::ArrayRef<double> values, int64_t k);

/// The experts one token is sent to, with their weights.
struct Routing {
  std::vector<int64_t> experts;
  std::vector<double> weights;
  /// Probability of the k-th chosen expert minus that of the best expert
  /// left out (infinity when every expert is used): how far the choice is
  /// from flipping. Comparisons with other implementations may differ in
  /// their choice where this is within rounding.
  double margin;
};

/// probs = softmax(logits); the top `k` of probs; with `normalize`, their
/// weights divided by their sum.
Routing route(llvm::ArrayRef<float> routerLogits, int64_t k, bool normalize);

} // namespace ops
} // namespace moec::reference

#endif // MOEC_TEST_REFERENCE_REFERENCEOPS_H
