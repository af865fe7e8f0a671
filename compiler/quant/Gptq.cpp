//===- Gptq.cpp - GPTQ quantization into moec's own formats ---------------===//

#include "compiler/quant/Gptq.h"
#include "compiler/quant/ImportanceQuantize.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>
#include <vector>

using namespace moec;
using namespace moec::quant;

namespace {

bool fail(std::string *error, std::string message) {
  if (error)
    *error = std::move(message);
  return false;
}

/// Replaces the symmetric positive definite A [n x n] (upper triangle read)
/// by the upper triangular U with U^T U = A^-1, in two O(n^3 / 6) steps
/// instead of the reference's Cholesky, Cholesky inverse and Cholesky:
///  1. A = V V^T with V upper triangular (Cholesky run from the last
///     column to the first);
///  2. U = V^-1 (upper triangular), since then
///     U^T U = V^-T V^-1 = (V V^T)^-1 = A^-1.
/// Returns false when A is not (numerically) positive definite. The lower
/// triangle is left as it was.
bool upperFactorOfInverse(std::vector<double> &a, int64_t n) {
  auto at = [&](int64_t i, int64_t j) -> double & { return a[i * n + j]; };
  for (int64_t j = n - 1; j >= 0; --j) {
    double diag = at(j, j);
    for (int64_t k = j + 1; k < n; ++k)
      diag -= at(j, k) * at(j, k);
    if (!(diag > 0) || !std::isfinite(diag))
      return false;
    double v = std::sqrt(diag);
    at(j, j) = v;
    for (int64_t i = 0; i < j; ++i) {
      double sum = at(i, j);
      const double *ri = &at(i, 0), *rj = &at(j, 0);
      for (int64_t k = j + 1; k < n; ++k)
        sum -= ri[k] * rj[k];
      at(i, j) = sum / v;
    }
  }
  // Back substitution, bottom row first: row i of U needs row i of V and
  // the rows of U below it, so U overwrites V in place.
  std::vector<double> t(n);
  for (int64_t i = n - 1; i >= 0; --i) {
    std::fill(t.begin() + i, t.end(), 0.0);
    for (int64_t k = i + 1; k < n; ++k) {
      double vik = at(i, k);
      const double *uk = &at(k, 0);
      for (int64_t j = k; j < n; ++j)
        t[j] += vik * uk[j];
    }
    double inv = 1.0 / at(i, i);
    at(i, i) = inv;
    for (int64_t j = i + 1; j < n; ++j)
      at(i, j) = -t[j] * inv;
  }
  return true;
}

} // namespace

void moec::quant::accumulateHessian(const float *X, int64_t tokens,
                                    int64_t cols, double *H) {
  // The upper triangle token by token, then mirrored.
  std::vector<double> upper(cols * cols, 0.0);
  for (int64_t t = 0; t < tokens; ++t) {
    const float *x = X + t * cols;
    for (int64_t i = 0; i < cols; ++i) {
      double xi = x[i];
      if (xi == 0)
        continue;
      double *row = &upper[i * cols];
      for (int64_t j = i; j < cols; ++j)
        row[j] += xi * x[j];
    }
  }
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = i; j < cols; ++j) {
      H[i * cols + j] += upper[i * cols + j];
      if (j != i)
        H[j * cols + i] += upper[i * cols + j];
    }
}

bool moec::quant::gptqQuantize(GroupFormat f, const float *W, int64_t rows,
                               int64_t cols, const double *H,
                               const GptqOptions &options, uint8_t *dst,
                               std::string *error, float *dequantized) {
  if (!f.isValid())
    return fail(error, "gptq: invalid group format");
  if (rows <= 0 || cols <= 0 || cols % f.group != 0)
    return fail(error, "gptq: " + std::to_string(rows) + " x " +
                           std::to_string(cols) +
                           " is not rows x a multiple of the group " +
                           std::to_string(f.group));
  if (!(options.percdamp >= 0) || options.blockSize <= 0)
    return fail(error, "gptq: percdamp must be >= 0 and blockSize > 0");

  // H with dead columns made harmless, dampened, then U (upper) with
  // U^T U = H^-1.
  std::vector<double> u(H, H + cols * cols);
  std::vector<bool> dead(cols, false);
  double meanDiag = 0;
  for (int64_t i = 0; i < cols; ++i) {
    double &d = u[i * cols + i];
    if (!std::isfinite(d) || d < 0)
      return fail(error, "gptq: H[" + std::to_string(i) + "][" +
                             std::to_string(i) + "] is negative or not finite");
    if (d == 0) {
      dead[i] = true;
      d = 1;
    }
    meanDiag += d;
  }
  double damp = options.percdamp * meanDiag / double(cols);
  for (int64_t i = 0; i < cols; ++i)
    u[i * cols + i] += damp;
  if (!upperFactorOfInverse(u, cols))
    return fail(error, "gptq: the dampened Hessian is not positive definite "
                       "(raise percdamp)");
  std::vector<float> groupWeights(cols);
  for (int64_t i = 0; i < cols; ++i) {
    double uii = u[i * cols + i];
    groupWeights[i] = float(1.0 / (uii * uii));
  }

  const int64_t group = f.group;
  const int64_t block =
      (std::max(options.blockSize, group) + group - 1) / group * group;
  const int64_t blockBytes = f.blockBytes(), groups = cols / group;
  constexpr int64_t kTile = 16; // rows processed together
  const int64_t tiles = (rows + kTile - 1) / kTile;

  // One tile of rows: the column loop of the reference, row-wise.
  auto runTile = [&](int64_t tile, std::vector<double> &w,
                     std::vector<double> &err, std::vector<uint8_t> &codes,
                     std::vector<GroupParams> &params,
                     std::vector<float> &scratch) {
    const int64_t r0 = tile * kTile, nr = std::min(kTile, rows - r0);
    for (int64_t r = 0; r < nr; ++r)
      for (int64_t c = 0; c < cols; ++c)
        w[r * cols + c] = dead[c] ? 0.0 : double(W[(r0 + r) * cols + c]);
    for (int64_t i1 = 0; i1 < cols; i1 += block) {
      const int64_t i2 = std::min(i1 + block, cols), count = i2 - i1;
      for (int64_t i = i1; i < i2; ++i) {
        const double *ui = &u[i * cols];
        const double d = ui[i];
        const int64_t g = i / group, inGroup = i % group;
        for (int64_t r = 0; r < nr; ++r) {
          double *wr = &w[r * cols];
          if (inGroup == 0) {
            // Entering a group: its scale from its current weights.
            for (int64_t c = 0; c < group; ++c)
              scratch[c] = float(wr[i + c]);
            params[r] = options.searchGroupScales
                            ? searchGroupParams(f, scratch.data(),
                                                groupWeights.data() + i)
                            : roundToNearestGroupParams(f, scratch.data());
          }
          unsigned code = groupCode(f, params[r], float(wr[i]));
          float q = groupValue(f, params[r], code);
          codes[r * group + inGroup] = uint8_t(code);
          if (dequantized)
            dequantized[(r0 + r) * cols + i] = q;
          double e = (wr[i] - double(q)) / d;
          err[r * block + (i - i1)] = e;
          for (int64_t j = i + 1; j < i2; ++j)
            wr[j] -= e * ui[j];
          if (inGroup == group - 1)
            writeGroupBlock(f, params[r], &codes[r * group],
                            dst + ((r0 + r) * groups + g) * blockBytes);
        }
      }
      // The lazy batch: the block's errors update the later columns.
      for (int64_t k = 0; k < count; ++k) {
        const double *uk = &u[(i1 + k) * cols];
        for (int64_t r = 0; r < nr; ++r) {
          double e = err[r * block + k];
          double *wr = &w[r * cols];
          for (int64_t j = i2; j < cols; ++j)
            wr[j] -= e * uk[j];
        }
      }
    }
  };

  unsigned threads = std::max(1u, options.threads);
  threads = unsigned(std::min<int64_t>(threads, tiles));
  std::atomic<int64_t> next{0};
  auto worker = [&] {
    std::vector<double> w(kTile * cols), err(kTile * block);
    std::vector<uint8_t> codes(kTile * group);
    std::vector<GroupParams> params(kTile);
    std::vector<float> scratch(group);
    for (int64_t t; (t = next.fetch_add(1)) < tiles;)
      runTile(t, w, err, codes, params, scratch);
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t)
    pool.emplace_back(worker);
  worker();
  for (std::thread &t : pool)
    t.join();
  return true;
}
