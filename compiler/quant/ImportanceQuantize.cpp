//===- ImportanceQuantize.cpp - Importance-weighted quantization ----------===//
//
// Three layers, bottom up:
//
//  1. ggml's searches (make_qx_quants, make_qkx3_quants, make_qp_quants and
//     the quantize_row_*_impl pipelines built on them), written after the
//     algorithms of ggml-quants.c with the same float32 operations in the
//     same order, so that the same weights give the same bytes as ggml's
//     (libggml-base is built without fused multiply-add, and so is this
//     file: -ffp-contract=off). Their inner objective is ggml's, not E.
//  2. moec's own searches, which evaluate every candidate on what will be
//     stored: the scale (and min) rounded to f16 before the codes are
//     chosen, the error that of the values the dequantizer will produce
//     (summed in float to compare candidates; the final choice is exact).
//  3. Per block, every candidate is encoded, dequantized with the reference
//     dequantizer and weighed; the least weighted error wins. That makes the
//     final choice exact whatever the searches' proxies, and never worse
//     than round to nearest, which is one of the candidates.
//
//===----------------------------------------------------------------------===//

#include "compiler/quant/ImportanceQuantize.h"
#include "compiler/quant/Dequantize.h"
#include "compiler/quant/Quantize.h"

#include "llvm/ADT/bit.h"
#include "llvm/Support/ErrorHandling.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <vector>

using namespace moec;
using namespace moec::quant;
using gguf::GgmlType;

namespace {

constexpr int QK_K = 256;
/// ggml's GROUP_MAX_EPS: blocks whose largest magnitude is below are zero.
constexpr float kGroupMaxEps = 1e-15f;

//===----------------------------------------------------------------------===//
// Small helpers
//===----------------------------------------------------------------------===//

/// Round half to even, as ggml's nearest_int: adding 1.5 * 2^23 leaves the
/// rounded integer in the low mantissa bits (no libm call, which
/// std::nearbyint is without SSE4.1). Values beyond the +-2^22 that ggml
/// accepts saturate instead of wrapping (NaN to the upper bound).
int nearestInt(float v) {
  v = std::fmax(std::fmin(v, 4194303.0f), -4194303.0f);
  float shifted = v + 12582912.0f;
  return static_cast<int>(llvm::bit_cast<uint32_t>(shifted) & 0x007fffff) -
         0x00400000;
}

int clampInt(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

float roundHalf(float v) { return halfToFloat(floatToHalf(v)); }

/// The f16 value `steps` representable values away from `v` (an f16 value),
/// moving along the real line; saturates at the largest finite magnitude.
float nextHalf(float v, int steps) {
  // Map f16 bit patterns to a monotonic integer line, step, map back.
  uint16_t h = floatToHalf(v);
  int line = (h & 0x8000) ? -int(h & 0x7fff) : int(h & 0x7fff);
  line = clampInt(line + steps, -0x7bff, 0x7bff);
  uint16_t back = line < 0 ? uint16_t(0x8000 | -line) : uint16_t(line);
  return halfToFloat(back);
}

void storeHalf(uint8_t *p, float v) {
  uint16_t h = floatToHalf(v);
  p[0] = static_cast<uint8_t>(h);
  p[1] = static_cast<uint8_t>(h >> 8);
}

float loadHalf(const uint8_t *p) {
  return halfToFloat(static_cast<uint16_t>(p[0] | (p[1] << 8)));
}

/// sum w_i (x_i - y_i)^2 in double; `w` null weighs 1.
double weightedError(const float *x, const float *y, const float *w,
                     int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    double d = double(x[i]) - double(y[i]);
    sum += (w ? double(w[i]) : 1.0) * d * d;
  }
  return sum;
}

/// Keeps the best of a sequence of candidate blocks: each is dequantized
/// with the reference dequantizer and weighed; ties keep the earlier one.
class BlockChooser {
public:
  BlockChooser(const QuantFormat &format, const float *x, const float *w)
      : format(format), x(x), w(w), size(format.blockSize()),
        best(format.blockBytes()), values(size) {}

  /// Considers `block`; returns its error.
  double offer(const uint8_t *block) {
    dequantizeRow(format, block, values.data(), size);
    double err = weightedError(x, values.data(), w, size);
    if (!any || err < bestError) {
      std::memcpy(best.data(), block, best.size());
      bestError = err;
      any = true;
    }
    return err;
  }
  double error() const { return bestError; }
  const uint8_t *block() const { return best.data(); }

private:
  const QuantFormat &format;
  const float *x, *w;
  int64_t size;
  std::vector<uint8_t> best;
  std::vector<float> values;
  double bestError = 0;
  bool any = false;
};

//===----------------------------------------------------------------------===//
// ggml's searches. Each function mirrors the ggml-quants.c function of the
// same name, with the same float32 operations in the same order (sums run
// sequentially, products associate left to right), so that it returns the
// same scales and codes for the same inputs.
//===----------------------------------------------------------------------===//

/// make_qx_quants with rmse_type 1 and weights: symmetric codes
/// l in [-nmax, nmax) stored as L = l + nmax; the element of largest
/// magnitude goes to -nmax, then 18 nearby scales (nmax +- 0.1 k) are tried
/// and the one maximizing (sum w x l)^2 / sum w l^2 (the weighted
/// least-squares fit) kept. Returns the scale sum w x l / sum w l^2.
float makeQxQuants(int n, int nmax, const float *x, int8_t *L, const float *w) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::memset(L, 0, n);
    return 0.0f;
  }
  const float fnmax = static_cast<float>(nmax);
  auto fit = [&](float iscale, float &sumlx, float &suml2, bool store) {
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = clampInt(nearestInt(iscale * x[i]), -nmax, nmax - 1);
      if (store)
        L[i] = static_cast<int8_t>(l + nmax);
      float fl = static_cast<float>(l);
      sumlx += w[i] * x[i] * fl;
      suml2 += w[i] * fl * fl;
    }
  };
  float sumlx, suml2;
  fit(-fnmax / max, sumlx, suml2, true);
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0)
      continue;
    float iscale = -(fnmax + 0.1f * static_cast<float>(is)) / max;
    fit(iscale, sumlx, suml2, false);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      fit(iscale, sumlx, suml2, true);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

/// make_qkx3_quants (without use_mad): asymmetric codes 0..nmax for
/// x ~ scale * L + min with min <= 0. Starting from the range, 37 inverse
/// scales (nmax - 0.9 .. nmax + 0.9 over the range, measured from the best
/// min so far) assign codes, the weighted least-squares (scale, min) for
/// those codes is solved (min clamped to 0), and the fit of least weighted
/// squared error kept. Returns the scale and sets *theMin = -min.
float makeQkx3Quants(int n, int nmax, const float *x, const float *weights,
                     uint8_t *L, float *theMin, float rmin, float rdelta,
                     int nstep) {
  float min = x[0], max = x[0];
  float sumW = weights[0];
  float sumX = sumW * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min)
      min = x[i];
    if (x[i] > max)
      max = x[i];
    float w = weights[i];
    sumW += w;
    sumX += w * x[i];
  }
  if (min > 0)
    min = 0;
  if (max <= min) {
    std::memset(L, 0, n);
    *theMin = -min;
    return 0.0f;
  }
  const float fnmax = static_cast<float>(nmax);
  float iscale = fnmax / (max - min);
  float scale = 1 / iscale;
  float bestError = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearestInt(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(clampInt(l, 0, nmax));
    float diff = scale * static_cast<float>(L[i]) + min - x[i];
    diff = diff * diff;
    bestError += weights[i] * diff;
  }
  uint8_t aux[QK_K];
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + fnmax) / (max - min);
    float sumL = 0, sumL2 = 0, sumXL = 0;
    for (int i = 0; i < n; ++i) {
      float v = iscale * (x[i] - min);
      int l = v > 0 ? nearestInt(v < fnmax ? v : fnmax) : 0;
      aux[i] = static_cast<uint8_t>(l);
      float w = weights[i], fl = static_cast<float>(l);
      sumL += w * fl;
      sumL2 += w * fl * fl;
      sumXL += w * fl * x[i];
    }
    float D = sumW * sumL2 - sumL * sumL;
    if (D > 0) {
      float thisScale = (sumW * sumXL - sumX * sumL) / D;
      float thisMin = (sumL2 * sumX - sumL * sumXL) / D;
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = sumXL / sumL2;
      }
      float err = 0;
      for (int i = 0; i < n; ++i) {
        float diff = thisScale * static_cast<float>(aux[i]) + thisMin - x[i];
        diff = diff * diff;
        err += weights[i] * diff;
      }
      if (err < bestError) {
        std::memcpy(L, aux, n);
        bestError = err;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  *theMin = -min;
  return scale;
}

/// make_qp_quants: non-negative values x (sub-block scales or mins) as
/// scale * L with L in 0..nmax, under weights: 9 scales around max / nmax
/// by weighted error, then up to 5 rounds moving single codes where that
/// improves the least-squares fit. Returns the scale.
float makeQpQuants(int n, int nmax, const float *x, uint8_t *L,
                   const float *w) {
  float max = 0;
  for (int i = 0; i < n; ++i)
    max = std::max(max, x[i]);
  if (max < kGroupMaxEps) {
    std::memset(L, 0, n);
    return 0.0f;
  }
  const float fnmax = static_cast<float>(nmax);
  float iscale = fnmax / max;
  for (int i = 0; i < n; ++i)
    L[i] = static_cast<uint8_t>(nearestInt(iscale * x[i]));
  float scale = 1 / iscale;
  float bestMse = 0;
  for (int i = 0; i < n; ++i) {
    float diff = x[i] - scale * static_cast<float>(L[i]);
    bestMse += w[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0)
      continue;
    float iscaleIs = (0.1f * static_cast<float>(is) + fnmax) / max;
    float scaleIs = 1 / iscaleIs;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      int l = std::min(nmax, nearestInt(iscaleIs * x[i]));
      float diff = x[i] - scaleIs * static_cast<float>(l);
      mse += w[i] * diff * diff;
    }
    if (mse < bestMse) {
      bestMse = mse;
      iscale = iscaleIs;
    }
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = std::min(nmax, nearestInt(iscale * x[i]));
    L[i] = static_cast<uint8_t>(l);
    float fl = static_cast<float>(L[i]);
    sumlx += w[i] * x[i] * fl;
    suml2 += w[i] * fl * fl;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      float fl = static_cast<float>(L[i]);
      float slx = sumlx - w[i] * x[i] * fl;
      float sl2 = suml2 - w[i] * fl * fl;
      if (slx > 0 && sl2 > 0) {
        int newL = std::min(nmax, nearestInt(x[i] * sl2 / slx));
        if (newL != L[i]) {
          float fn = static_cast<float>(newL);
          slx += w[i] * x[i] * fn;
          sl2 += w[i] * fn * fn;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<uint8_t>(newL);
            sumlx = slx;
            suml2 = sl2;
            ++changed;
          }
        }
      }
    }
    if (!changed)
      break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

//===----------------------------------------------------------------------===//
// moec's exact searches: y = d * l (symmetric) or y = scale * u + min
// (asymmetric), d / scale / min f16 values, every candidate weighed on the
// values the dequantizer produces.
//===----------------------------------------------------------------------===//

/// Symmetric codes l in [-nmax, nmax) nearest x / d (0 where d is 0).
void symmetricCodes(const float *x, int n, int nmax, float d, int *l) {
  float inverse = d != 0.0f ? 1.0f / d : 0.0f;
  for (int i = 0; i < n; ++i)
    l[i] = clampInt(nearestInt(x[i] * inverse), -nmax, nmax - 1);
}

/// The scale d (an f16 value) and codes l in [-nmax, nmax) minimizing
/// sum w (x - d l)^2 over a sweep: the element of largest magnitude mapped
/// to ggml's 18 positions around -nmax and to a range of clipping levels,
/// on either side of zero; each assignment's least-squares d rounded to
/// f16 and weighed with the codes nearest for it; then alternating least
/// squares and the neighbouring f16 values of the best d. Candidates are
/// compared in float; the returned error (double) is exact.
double searchSymmetric(const float *x, const float *w, int n, int nmax,
                       float &bestD, int *bestL) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  // The weighted squared error of d with the nearest codes.
  auto errorOf = [&](float d) {
    float inverse = 1.0f / d, sum = 0;
    for (int i = 0; i < n; ++i) {
      int l = clampInt(nearestInt(x[i] * inverse), -nmax, nmax - 1);
      float diff = x[i] - d * static_cast<float>(l);
      sum += w[i] * diff * diff;
    }
    return sum;
  };
  // The least-squares scale, in f16, of the codes nearest iscale * x.
  auto fitScale = [&](float iscale) {
    float sxl = 0, sll = 0;
    for (int i = 0; i < n; ++i) {
      float l = static_cast<float>(
          clampInt(nearestInt(iscale * x[i]), -nmax, nmax - 1));
      sxl += w[i] * x[i] * l;
      sll += w[i] * l * l;
    }
    return sll > 0 ? roundHalf(sxl / sll) : 0.0f;
  };
  bestD = 0;
  float bestError = 0;
  for (int i = 0; i < n; ++i)
    bestError += w[i] * x[i] * x[i];
  auto consider = [&](float d) {
    if (d == 0.0f || !std::isfinite(d))
      return false;
    float err = errorOf(d);
    if (err < bestError) {
      bestError = err;
      bestD = d;
      return true;
    }
    return false;
  };
  if (amax > 0.0f) {
    const float fnmax = static_cast<float>(nmax);
    for (int k = -9; k <= 21; ++k) {
      // ggml's targets nmax + 0.1 k, then clipping by 3.3% steps.
      float t = k <= 9 ? fnmax + 0.1f * static_cast<float>(k)
                       : fnmax * (1.0f - 0.033f * static_cast<float>(k - 9));
      consider(fitScale(-t / max));
      consider(fitScale(t / max));
    }
    for (int iter = 0; iter < 4 && bestD != 0.0f; ++iter)
      if (!consider(fitScale(1.0f / bestD)))
        break;
    float center = bestD;
    for (int step : {-2, -1, 1, 2})
      if (center != 0.0f)
        consider(nextHalf(center, step));
  }
  symmetricCodes(x, n, nmax, bestD, bestL);
  double exact = 0;
  for (int i = 0; i < n; ++i) {
    double diff = double(x[i]) - double(bestD * static_cast<float>(bestL[i]));
    exact += double(w[i]) * diff * diff;
  }
  return exact;
}

/// The scale and min (f16 values, min of either sign) and codes in
/// [0, maxCode] minimizing sum w (x - scale u - min)^2: inverse scales
/// swept over the range (ggml's 37 of make_qkx3_quants plus clipping
/// levels), each assignment's weighted least-squares (scale, min) rounded
/// to f16 and weighed with the codes nearest for it; then alternating
/// least squares and the f16 neighbours of the best scale and min.
double searchAsymmetric(const float *x, const float *w, int n, int maxCode,
                        float &bestScale, float &bestMin, int *bestU) {
  float lo = x[0], hi = x[0];
  for (int i = 1; i < n; ++i) {
    lo = std::fmin(lo, x[i]);
    hi = std::fmax(hi, x[i]);
  }
  auto errorOf = [&](float scale, float min) {
    float inverse = 1.0f / scale, sum = 0;
    for (int i = 0; i < n; ++i) {
      int u = clampInt(nearestInt((x[i] - min) * inverse), 0, maxCode);
      float diff = x[i] - (scale * static_cast<float>(u) + min);
      sum += w[i] * diff * diff;
    }
    return sum;
  };
  // The weighted least-squares (scale, min), in f16, of the codes nearest
  // iscale * (x - from).
  auto fitParams = [&](float iscale, float from, float &scale, float &min) {
    double sw = 0, sl = 0, sll = 0, sx = 0, sxl = 0;
    for (int i = 0; i < n; ++i) {
      double u = clampInt(nearestInt(iscale * (x[i] - from)), 0, maxCode);
      double wi = w[i], wx = wi * x[i];
      sw += wi;
      sl += wi * u;
      sll += wi * u * u;
      sx += wx;
      sxl += wx * u;
    }
    double det = sw * sll - sl * sl;
    if (!(det > 1e-12 * sw * sll))
      return false;
    scale = roundHalf(static_cast<float>((sw * sxl - sx * sl) / det));
    min = roundHalf(static_cast<float>((sll * sx - sl * sxl) / det));
    return true;
  };
  bestScale = 0;
  bestMin = roundHalf(lo);
  float bestError = 0;
  for (int i = 0; i < n; ++i) {
    float diff = x[i] - bestMin;
    bestError += w[i] * diff * diff;
  }
  auto consider = [&](float scale, float min) {
    if (scale == 0.0f || !std::isfinite(scale) || !std::isfinite(min))
      return false;
    float err = errorOf(scale, min);
    if (err < bestError) {
      bestError = err;
      bestScale = scale;
      bestMin = min;
      return true;
    }
    return false;
  };
  if (hi > lo) {
    const float fmax = static_cast<float>(maxCode);
    for (int k = 0; k <= 44; ++k) {
      // ggml's targets maxCode - 0.9 .. + 0.9, then clipping by 4% steps.
      float t = k <= 36 ? fmax - 0.9f + 0.05f * static_cast<float>(k)
                        : fmax * (1.0f - 0.04f * static_cast<float>(k - 36));
      float scale, min;
      if (t > 0 && fitParams(t / (hi - lo), lo, scale, min))
        consider(scale, min);
    }
    for (int iter = 0; iter < 6 && bestScale != 0.0f; ++iter) {
      float scale, min;
      if (!fitParams(1.0f / bestScale, bestMin, scale, min) ||
          !consider(scale, min))
        break;
    }
    float centerScale = bestScale, centerMin = bestMin;
    if (centerScale != 0.0f)
      for (int ds = -1; ds <= 1; ++ds)
        for (int dm = -1; dm <= 1; ++dm)
          if (ds || dm)
            consider(nextHalf(centerScale, ds), nextHalf(centerMin, dm));
  }
  double exact = 0;
  float inverse = bestScale != 0.0f ? 1.0f / bestScale : 0.0f;
  for (int i = 0; i < n; ++i) {
    bestU[i] =
        bestScale != 0.0f
            ? clampInt(nearestInt((x[i] - bestMin) * inverse), 0, maxCode)
            : 0;
    double diff = double(x[i]) -
                  double(bestScale * static_cast<float>(bestU[i]) + bestMin);
    exact += double(w[i]) * diff * diff;
  }
  return exact;
}

//===----------------------------------------------------------------------===//
// The simple GGUF formats (32-element blocks)
//===----------------------------------------------------------------------===//

/// Writes a Q4_0/Q5_0/Q8_0 block from d and codes u (Q4_0: 0..15, Q5_0:
/// 0..31, Q8_0: the int8 code as a byte), or a Q4_1/Q5_1 block from d, m.
void encodeSimple(GgmlType type, float d, float m, const int *u, uint8_t *b) {
  auto nibbles = [&](uint8_t *qs) {
    for (int j = 0; j < 16; ++j)
      qs[j] = static_cast<uint8_t>((u[j] & 0x0f) | ((u[j + 16] & 0x0f) << 4));
  };
  auto highBits = [&](uint8_t *qh) {
    uint32_t bits = 0;
    for (int j = 0; j < 32; ++j)
      bits |= static_cast<uint32_t>((u[j] >> 4) & 1) << j;
    for (int k = 0; k < 4; ++k)
      qh[k] = static_cast<uint8_t>(bits >> (8 * k));
  };
  switch (type) {
  case GgmlType::Q4_0:
    storeHalf(b, d);
    nibbles(b + 2);
    return;
  case GgmlType::Q4_1:
    storeHalf(b, d);
    storeHalf(b + 2, m);
    nibbles(b + 4);
    return;
  case GgmlType::Q5_0:
    storeHalf(b, d);
    highBits(b + 2);
    nibbles(b + 6);
    return;
  case GgmlType::Q5_1:
    storeHalf(b, d);
    storeHalf(b + 2, m);
    highBits(b + 4);
    nibbles(b + 8);
    return;
  case GgmlType::Q8_0:
    storeHalf(b, d);
    for (int j = 0; j < 32; ++j)
      b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(u[j]));
    return;
  default:
    llvm_unreachable("not a simple format");
  }
}

/// ggml's quantize_row_q{4,5}_{0,1}_impl for one block, with ggml's
/// weights `w`: make_qx_quants for the symmetric formats, make_qkx3_quants
/// for the asymmetric ones; the codes are those of the search's float
/// scale (not recomputed from the stored f16 one), as ggml's.
void ggmlSimpleBlock(GgmlType type, const float *x, const float *w,
                     uint8_t *b) {
  int u[32];
  if (type == GgmlType::Q4_0 || type == GgmlType::Q5_0) {
    int nmax = type == GgmlType::Q4_0 ? 8 : 16;
    int8_t L[32];
    float d = makeQxQuants(32, nmax, x, L, w);
    for (int j = 0; j < 32; ++j)
      u[j] = L[j];
    encodeSimple(type, d, 0, u, b);
    return;
  }
  int nmax = type == GgmlType::Q4_1 ? 15 : 31;
  uint8_t L[32];
  float min;
  float d = makeQkx3Quants(32, nmax, x, w, L, &min, -0.9f, 0.05f, 36);
  for (int j = 0; j < 32; ++j)
    u[j] = L[j];
  encodeSimple(type, d, -min, u, b);
}

/// One block of a simple format: round to nearest, ggml's search (with
/// ggml's weights and with the objective's), moec's exact search; the best
/// by the objective. MXFP4: the best of three exponents.
void simpleBlock(const QuantFormat &format, const float *x, const float *obj,
                 const float *ggmlWeights, uint8_t *out) {
  GgmlType type = format.ggmlType();
  BlockChooser chooser(format, x, obj);
  uint8_t block[64];
  quantizeRow(type, x, block, 32);
  chooser.offer(block);

  if (type == GgmlType::MXFP4) {
    // Round to nearest's exponent e and its neighbours; the codes are the
    // nearest values whatever the weights, as each element's error is its
    // own.
    constexpr int8_t kValues[16] = {0, 1,  2,  3,  4,  6,  8,  12,
                                    0, -1, -2, -3, -4, -6, -8, -12};
    int e0 = block[0];
    for (int e = e0 - 1; e <= e0 + 1; e += 2) {
      if (e < 0 || e > 254)
        continue;
      uint32_t bits =
          e < 2 ? (0x00200000u << e) : (static_cast<uint32_t>(e - 1) << 23);
      float d = llvm::bit_cast<float>(bits);
      int q[32];
      for (int j = 0; j < 32; ++j) {
        int best = 0;
        float bestErr = std::fabs(d * float(kValues[0]) - x[j]);
        for (int k = 1; k < 16; ++k) {
          float err = std::fabs(d * float(kValues[k]) - x[j]);
          if (err < bestErr) {
            bestErr = err;
            best = k;
          }
        }
        q[j] = best;
      }
      block[0] = static_cast<uint8_t>(e);
      for (int j = 0; j < 16; ++j)
        block[1 + j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
      chooser.offer(block);
    }
    std::memcpy(out, chooser.block(), format.blockBytes());
    return;
  }

  if (type != GgmlType::Q8_0) {
    ggmlSimpleBlock(type, x, ggmlWeights, block);
    chooser.offer(block);
    ggmlSimpleBlock(type, x, obj, block);
    chooser.offer(block);
  }
  int u[32];
  if (type == GgmlType::Q4_1 || type == GgmlType::Q5_1) {
    float scale, min;
    searchAsymmetric(x, obj, 32, type == GgmlType::Q4_1 ? 15 : 31, scale, min,
                     u);
    encodeSimple(type, scale, min, u, block);
  } else {
    int nmax = type == GgmlType::Q4_0 ? 8 : type == GgmlType::Q5_0 ? 16 : 128;
    float d;
    searchSymmetric(x, obj, 32, nmax, d, u);
    if (type != GgmlType::Q8_0)
      for (int &v : u)
        v += nmax;
    encodeSimple(type, d, 0, u, block);
  }
  chooser.offer(block);
  std::memcpy(out, chooser.block(), format.blockBytes());
}

//===----------------------------------------------------------------------===//
// K-quants: a super-block of 256 as d (and dmin) in f16, per sub-block an
// integer scale field (and min field), per element a code.
//===----------------------------------------------------------------------===//

struct KSpec {
  GgmlType type;
  bool asymmetric; // x = d sc q - dmin m (else x = d sc q, all signed)
  int subSize, subs;
  int fieldLo, fieldHi; // sub-block scale (and min) field range
  int codeLo, codeHi;   // code range
};

const KSpec kQ2K{GgmlType::Q2_K, true, 16, 16, 0, 15, 0, 3};
const KSpec kQ3K{GgmlType::Q3_K, false, 16, 16, -32, 31, -4, 3};
const KSpec kQ4K{GgmlType::Q4_K, true, 32, 8, 0, 63, 0, 15};
const KSpec kQ5K{GgmlType::Q5_K, true, 32, 8, 0, 63, 0, 31};
const KSpec kQ6K{GgmlType::Q6_K, false, 16, 16, -128, 127, -32, 31};

const KSpec &kSpecOf(GgmlType type) {
  switch (type) {
  case GgmlType::Q2_K:
    return kQ2K;
  case GgmlType::Q3_K:
    return kQ3K;
  case GgmlType::Q4_K:
    return kQ4K;
  case GgmlType::Q5_K:
    return kQ5K;
  case GgmlType::Q6_K:
    return kQ6K;
  default:
    llvm_unreachable("not a k-quant");
  }
}

/// One super-block's content, before packing.
struct KState {
  float d = 0, dmin = 0; // f16 values
  int sc[16] = {}, m[16] = {};
  int q[QK_K] = {};
};

/// The value of element i (the dequantizer's float operations).
float kValue(const KSpec &s, const KState &k, int i) {
  int j = i / s.subSize;
  float step = k.d * static_cast<float>(k.sc[j]);
  float value = step * static_cast<float>(k.q[i]);
  return s.asymmetric ? value - k.dmin * static_cast<float>(k.m[j]) : value;
}

/// The nearest code of x for a sub-block's step and offset (0 where the
/// step is zero: the code does not matter then).
inline int kCode(const KSpec &s, float x, float inverseStep, float offset) {
  return clampInt(nearestInt((x + offset) * inverseStep), s.codeLo, s.codeHi);
}

/// The nearest codes of sub-block j for its fields.
void kCodes(const KSpec &s, const float *x, KState &k, int j) {
  float step = k.d * static_cast<float>(k.sc[j]);
  float offset = s.asymmetric ? k.dmin * static_cast<float>(k.m[j]) : 0.0f;
  float inverse = step != 0.0f ? 1.0f / step : 0.0f;
  for (int i = j * s.subSize; i < (j + 1) * s.subSize; ++i)
    k.q[i] = kCode(s, x[i], inverse, offset);
}

/// The weighted error of sub-block j with fields (sc, m) and nearest codes,
/// in float (for comparing candidates).
float kSubErrorFor(const KSpec &s, const float *x, const float *w,
                   const KState &k, int j, int sc, int m) {
  float step = k.d * static_cast<float>(sc);
  float offset = s.asymmetric ? k.dmin * static_cast<float>(m) : 0.0f;
  float inverse = step != 0.0f ? 1.0f / step : 0.0f;
  float sum = 0;
  for (int i = j * s.subSize; i < (j + 1) * s.subSize; ++i) {
    float value =
        step * static_cast<float>(kCode(s, x[i], inverse, offset)) - offset;
    float diff = x[i] - value;
    sum += w[i] * diff * diff;
  }
  return sum;
}

double kSubError(const KSpec &s, const float *x, const float *w,
                 const KState &k, int j) {
  double sum = 0;
  for (int i = j * s.subSize; i < (j + 1) * s.subSize; ++i) {
    double diff = double(x[i]) - double(kValue(s, k, i));
    sum += double(w[i]) * diff * diff;
  }
  return sum;
}

double kError(const KSpec &s, const float *x, const float *w, const KState &k) {
  double sum = 0;
  for (int j = 0; j < s.subs; ++j)
    sum += kSubError(s, x, w, k, j);
  return sum;
}

/// Element e of 256 in 2 bits of qs[32 * (e / 128) + e % 32] at shift
/// 2 * ((e % 128) / 32) (Q2_K's and Q3_K's low bits).
void pack2Bits(const uint8_t u[QK_K], uint8_t *qs) {
  std::memset(qs, 0, 64);
  for (int e = 0; e < QK_K; ++e)
    qs[32 * (e / 128) + e % 32] |=
        static_cast<uint8_t>((u[e] & 3) << (2 * ((e % 128) / 32)));
}

/// Writes the block of `k` (fields and codes within the format's ranges).
void kEncode(const KSpec &s, const KState &k, uint8_t *b) {
  uint8_t u[QK_K];
  int bias = -s.codeLo; // unsigned code = q - codeLo
  for (int e = 0; e < QK_K; ++e)
    u[e] = static_cast<uint8_t>(k.q[e] + bias);
  switch (s.type) {
  case GgmlType::Q2_K: // scales[16] qs[64] d dmin
    for (int j = 0; j < 16; ++j)
      b[j] = static_cast<uint8_t>(k.sc[j] | (k.m[j] << 4));
    pack2Bits(u, b + 16);
    storeHalf(b + 80, k.d);
    storeHalf(b + 82, k.dmin);
    return;
  case GgmlType::Q3_K: { // hmask[32] qs[64] scales[12] d
    std::memset(b, 0, 32);
    uint8_t low[QK_K];
    for (int e = 0; e < QK_K; ++e) {
      b[e % 32] |= static_cast<uint8_t>((u[e] >> 2) << (e / 32));
      low[e] = u[e] & 3;
    }
    pack2Bits(low, b + 32);
    uint8_t *packed = b + 96;
    std::memset(packed, 0, 12);
    for (int j = 0; j < 16; ++j) {
      int l = k.sc[j] + 32;
      packed[j % 8] |= static_cast<uint8_t>((l & 0x0f) << (4 * (j / 8)));
      packed[8 + j % 4] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
    }
    storeHalf(b + 108, k.d);
    return;
  }
  case GgmlType::Q4_K:
  case GgmlType::Q5_K: { // d dmin scales[12] [qh[32]] qs[128]
    storeHalf(b, k.d);
    storeHalf(b + 2, k.dmin);
    uint8_t *sm = b + 4;
    for (int j = 0; j < 4; ++j) {
      sm[j] =
          static_cast<uint8_t>((k.sc[j] & 0x3f) | ((k.sc[4 + j] >> 4) << 6));
      sm[4 + j] =
          static_cast<uint8_t>((k.m[j] & 0x3f) | ((k.m[4 + j] >> 4) << 6));
      sm[8 + j] = static_cast<uint8_t>((k.sc[4 + j] & 0x0f) |
                                       ((k.m[4 + j] & 0x0f) << 4));
    }
    uint8_t *qs = b + 16;
    if (s.type == GgmlType::Q5_K) {
      uint8_t *qh = b + 16;
      std::memset(qh, 0, 32);
      for (int e = 0; e < QK_K; ++e)
        qh[e % 32] |= static_cast<uint8_t>((u[e] >> 4) << (e / 32));
      qs = b + 48;
    }
    for (int sb = 0; sb < 8; sb += 2)
      for (int l = 0; l < 32; ++l)
        qs[16 * sb + l] = static_cast<uint8_t>(
            (u[32 * sb + l] & 0x0f) | ((u[32 * (sb + 1) + l] & 0x0f) << 4));
    return;
  }
  case GgmlType::Q6_K: { // ql[128] qh[64] scales[16] d
    uint8_t *ql = b, *qh = b + 128;
    std::memset(b, 0, 192);
    for (int e = 0; e < QK_K; ++e) {
      int h = e / 128, r = e % 128;
      ql[64 * h + r % 64] |=
          static_cast<uint8_t>((u[e] & 0x0f) << (4 * (r / 64)));
      qh[32 * h + r % 32] |=
          static_cast<uint8_t>((u[e] >> 4) << (2 * (r / 32)));
    }
    for (int j = 0; j < 16; ++j)
      b[192 + j] = static_cast<uint8_t>(static_cast<int8_t>(k.sc[j]));
    storeHalf(b + 208, k.d);
    return;
  }
  default:
    llvm_unreachable("not a k-quant");
  }
}

/// ggml's quantize_row_q*_K_impl for one super-block under weights `w`
/// (ggml's own: the imatrix times the magnitude factor, or the imatrix
/// alone for Q6_K): per sub-block a scale (and min) search, then the scales
/// (and mins) quantized to their fields under the sub-blocks' total weights,
/// then the codes recomputed with the stored values, as ggml does (a
/// sub-block whose step is zero keeps its search codes).
KState ggmlKBlock(const KSpec &s, const float *x, const float *w) {
  KState k;
  float scales[16], mins[16], sw[16];
  for (int j = 0; j < s.subs; ++j) {
    const float *xs = x + j * s.subSize, *ws = w + j * s.subSize;
    float sum = 0;
    for (int l = 0; l < s.subSize; ++l)
      sum += ws[l];
    sw[j] = sum;
    if (s.asymmetric) {
      uint8_t L[32];
      scales[j] = makeQkx3Quants(s.subSize, s.codeHi, xs, ws, L, &mins[j],
                                 -0.9f, 0.05f, 36);
      for (int l = 0; l < s.subSize; ++l)
        k.q[j * s.subSize + l] = L[l];
    } else {
      int8_t L[16];
      scales[j] = makeQxQuants(16, -s.codeLo, xs, L, ws);
      for (int l = 0; l < 16; ++l)
        k.q[j * 16 + l] = L[l] + s.codeLo;
    }
  }

  if (s.asymmetric) {
    uint8_t Ls[16], Lm[16];
    float dm = makeQpQuants(s.subs, s.fieldHi, scales, Ls, sw);
    float mm = makeQpQuants(s.subs, s.fieldHi, mins, Lm, sw);
    k.d = roundHalf(dm);
    k.dmin = roundHalf(mm);
    for (int j = 0; j < s.subs; ++j) {
      // Q2_K packs sc | m << 4 into a byte; the 6-bit fields of Q4_K and
      // Q5_K are at most 63 (make_qp_quants caps them).
      k.sc[j] = Ls[j] & s.fieldHi;
      k.m[j] = Lm[j] & s.fieldHi;
    }
  } else if (s.type == GgmlType::Q3_K) {
    int8_t Ls[16];
    float dBlock = makeQxQuants(16, 32, scales, Ls, sw);
    k.d = roundHalf(dBlock);
    for (int j = 0; j < 16; ++j)
      k.sc[j] = Ls[j] - 32;
  } else { // Q6_K
    float maxScale = 0, maxAbsScale = 0;
    for (int j = 0; j < 16; ++j)
      if (std::fabs(scales[j]) > maxAbsScale) {
        maxAbsScale = std::fabs(scales[j]);
        maxScale = scales[j];
      }
    if (maxAbsScale < kGroupMaxEps) {
      KState zero;
      for (int &q : zero.q)
        q = s.codeLo; // ggml zeroes the whole block: unsigned code 0
      return zero;
    }
    float iscale = -128.0f / maxScale;
    k.d = roundHalf(1 / iscale);
    for (int j = 0; j < 16; ++j)
      k.sc[j] =
          static_cast<int8_t>(std::min(127, nearestInt(iscale * scales[j])));
  }

  // ggml's requantization divides by the step (kCodes multiplies by its
  // inverse, which can round a tie the other way).
  for (int j = 0; j < s.subs; ++j) {
    float step = k.d * static_cast<float>(k.sc[j]);
    if (step == 0.0f)
      continue;
    float offset = s.asymmetric ? k.dmin * static_cast<float>(k.m[j]) : 0.0f;
    for (int i = j * s.subSize; i < (j + 1) * s.subSize; ++i)
      k.q[i] = clampInt(nearestInt((x[i] + offset) / step), s.codeLo, s.codeHi);
  }
  return k;
}

/// Improves `k` under weights `w`: alternately the least-squares d (and
/// dmin) for the current fields and codes, rounded to f16 (and its f16
/// neighbours), and a local search of each sub-block's fields (+-2), codes
/// recomputed each time. Returns the error of the result.
double refineK(const KSpec &s, const float *x, const float *w, KState &k) {
  // Start from codes consistent with the fields, as every later step has.
  KState cur = k;
  for (int j = 0; j < s.subs; ++j)
    kCodes(s, x, cur, j);
  double curError = kError(s, x, w, cur);
  double startError = kError(s, x, w, k);
  if (startError <= curError) {
    cur = k;
    curError = startError;
  }

  auto tryScales = [&](float d, float dmin) {
    if (!std::isfinite(d) || !std::isfinite(dmin))
      return false;
    KState c = cur;
    c.d = d;
    c.dmin = dmin;
    for (int j = 0; j < s.subs; ++j)
      kCodes(s, x, c, j);
    double err = kError(s, x, w, c);
    if (err < curError) {
      cur = c;
      curError = err;
      return true;
    }
    return false;
  };

  for (int round = 0; round < 4; ++round) {
    double before = curError;
    // Least squares over the super-block: x ~ d * a - dmin * b with
    // a = sc q and b = m (b = 0 for symmetric formats).
    double saa = 0, sab = 0, sbb = 0, sxa = 0, sxb = 0;
    for (int i = 0; i < QK_K; ++i) {
      int j = i / s.subSize;
      double a = double(cur.sc[j]) * cur.q[i], b = s.asymmetric ? cur.m[j] : 0;
      double wi = w[i];
      saa += wi * a * a;
      sab += wi * a * b;
      sbb += wi * b * b;
      sxa += wi * x[i] * a;
      sxb += wi * x[i] * b;
    }
    if (s.asymmetric) {
      // Normal equations [saa -sab; -sab sbb] [d; dmin] = [sxa; -sxb].
      double det = saa * sbb - sab * sab;
      if (det > 1e-12 * saa * sbb)
        tryScales(roundHalf(float((sbb * sxa - sab * sxb) / det)),
                  roundHalf(float((sab * sxa - saa * sxb) / det)));
      else if (saa > 0)
        tryScales(roundHalf(float((sxa + cur.dmin * sab) / saa)), cur.dmin);
    } else if (saa > 0) {
      tryScales(roundHalf(float(sxa / saa)), 0.0f);
    }
    float d = cur.d, dmin = cur.dmin;
    for (int step : {-1, 1}) {
      tryScales(nextHalf(d, step), dmin);
      if (s.asymmetric)
        tryScales(d, nextHalf(dmin, step));
    }

    // Fields, sub-block by sub-block (their errors are independent).
    constexpr int kWindow = 2;
    for (int j = 0; j < s.subs; ++j) {
      float bestSub = kSubErrorFor(s, x, w, cur, j, cur.sc[j], cur.m[j]);
      int bestSc = cur.sc[j], bestM = cur.m[j];
      int mLo = s.asymmetric ? std::max(s.fieldLo, cur.m[j] - kWindow) : 0;
      int mHi = s.asymmetric ? std::min(s.fieldHi, cur.m[j] + kWindow) : 0;
      for (int sc = std::max(s.fieldLo, cur.sc[j] - kWindow);
           sc <= std::min(s.fieldHi, cur.sc[j] + kWindow); ++sc)
        for (int m = mLo; m <= mHi; ++m) {
          if (sc == cur.sc[j] && m == cur.m[j])
            continue;
          float err = kSubErrorFor(s, x, w, cur, j, sc, m);
          if (err < bestSub) {
            bestSub = err;
            bestSc = sc;
            bestM = m;
          }
        }
      if (bestSc != cur.sc[j] || bestM != cur.m[j]) {
        cur.sc[j] = bestSc;
        cur.m[j] = bestM;
        kCodes(s, x, cur, j);
      }
    }
    curError = kError(s, x, w, cur);
    if (!(curError < before))
      break;
  }
  k = cur;
  return curError;
}

/// ggml's weights for a k-quant super-block: importance * sqrt(sigma2 +
/// x^2), sigma2 the super-block's mean square (Q2_K) or twice it (Q3_K,
/// Q4_K, Q5_K); the importance alone for Q6_K. Float operations as ggml's.
void ggmlKWeights(GgmlType type, const float *x, const float *importance,
                  float *w) {
  if (type == GgmlType::Q6_K) {
    std::memcpy(w, importance, QK_K * sizeof(float));
    return;
  }
  float sumx2 = 0;
  for (int j = 0; j < QK_K; ++j)
    sumx2 += x[j] * x[j];
  float sigma2 = type == GgmlType::Q2_K ? sumx2 / QK_K : 2 * sumx2 / QK_K;
  for (int j = 0; j < QK_K; ++j)
    w[j] = importance[j] * std::sqrt(sigma2 + x[j] * x[j]);
}

/// One k-quant super-block: round to nearest, ggml's search with ggml's
/// weights and with the objective's, the refinement of the better of those
/// two; the best by the objective.
void kQuantBlock(const QuantFormat &format, const float *x, const float *obj,
                 const float *importance, uint8_t *out) {
  const KSpec &s = kSpecOf(format.ggmlType());
  BlockChooser chooser(format, x, obj);
  uint8_t block[256];
  quantizeRow(s.type, x, block, QK_K);
  chooser.offer(block);

  float ggmlW[QK_K];
  ggmlKWeights(s.type, x, importance, ggmlW);
  KState fromGgml = ggmlKBlock(s, x, ggmlW);
  kEncode(s, fromGgml, block);
  double ggmlError = chooser.offer(block);

  KState best = fromGgml;
  if (std::memcmp(ggmlW, obj, sizeof(ggmlW)) != 0) {
    KState fromObj = ggmlKBlock(s, x, obj);
    kEncode(s, fromObj, block);
    if (chooser.offer(block) < ggmlError)
      best = fromObj;
  }
  refineK(s, x, obj, best);
  kEncode(s, best, block);
  chooser.offer(block);
  std::memcpy(out, chooser.block(), format.blockBytes());
}

//===----------------------------------------------------------------------===//
// moec's own formats
//===----------------------------------------------------------------------===//

void writeCode(uint8_t *codes, unsigned bits, unsigned j, unsigned value) {
  unsigned bit = j * bits;
  for (unsigned k = 0; k < bits; ++k, ++bit)
    if ((value >> k) & 1u)
      codes[bit / 8] |= static_cast<uint8_t>(1u << (bit % 8));
}

} // namespace

//===----------------------------------------------------------------------===//
// Group API
//===----------------------------------------------------------------------===//

GroupParams moec::quant::roundToNearestGroupParams(GroupFormat f,
                                                   const float *x) {
  std::vector<uint8_t> block(f.blockBytes());
  quantizeGroupRow(f, x, block.data(), f.group);
  GroupParams p;
  p.scale = loadHalf(block.data());
  p.min = f.asymmetric ? loadHalf(block.data() + 2) : 0.0f;
  return p;
}

float moec::quant::groupValue(GroupFormat f, GroupParams p, unsigned code) {
  if (f.asymmetric)
    return p.scale * static_cast<float>(code) + p.min;
  return p.scale * static_cast<float>(int(code) - (1 << (f.bits - 1)));
}

unsigned moec::quant::groupCode(GroupFormat f, GroupParams p, float x) {
  const int levels = 1 << f.bits, offset = f.asymmetric ? 0 : levels / 2;
  if (p.scale == 0.0f)
    return f.asymmetric ? 0 : unsigned(offset);
  float t = f.asymmetric ? (x - p.min) / p.scale : x / p.scale;
  int u = clampInt(nearestInt(t) + offset, 0, levels - 1);
  // The rounded quotient is nearest in exact arithmetic; a neighbour can
  // win by a rounding of the division or of the dequantizer's operations.
  float best = std::fabs(x - groupValue(f, p, unsigned(u)));
  int chosen = u;
  for (int v : {u - 1, u + 1})
    if (v >= 0 && v < levels) {
      float err = std::fabs(x - groupValue(f, p, unsigned(v)));
      if (err < best) {
        best = err;
        chosen = v;
      }
    }
  return unsigned(chosen);
}

GroupParams moec::quant::searchGroupParams(GroupFormat f, const float *x,
                                           const float *w) {
  const int n = int(f.group);
  std::vector<float> ones;
  if (!w) {
    ones.assign(n, 1.0f);
    w = ones.data();
  }
  auto error = [&](GroupParams p) {
    double sum = 0;
    for (int i = 0; i < n; ++i) {
      double diff = double(x[i]) - groupValue(f, p, groupCode(f, p, x[i]));
      sum += double(w[i]) * diff * diff;
    }
    return sum;
  };
  GroupParams best = roundToNearestGroupParams(f, x);
  double bestError = error(best);
  std::vector<int> codes(n);
  GroupParams searched;
  if (f.asymmetric)
    searchAsymmetric(x, w, n, (1 << f.bits) - 1, searched.scale, searched.min,
                     codes.data());
  else
    searchSymmetric(x, w, n, 1 << (f.bits - 1), searched.scale, codes.data());
  if (error(searched) < bestError)
    best = searched;
  return best;
}

void moec::quant::writeGroupBlock(GroupFormat f, GroupParams p,
                                  const uint8_t *codes, uint8_t *block) {
  storeHalf(block, p.scale);
  if (f.asymmetric)
    storeHalf(block + 2, p.min);
  uint8_t *packed = block + (f.asymmetric ? 4 : 2);
  std::memset(packed, 0, size_t(f.group) * f.bits / 8);
  for (unsigned j = 0; j < f.group; ++j)
    writeCode(packed, f.bits, j, codes[j]);
}

//===----------------------------------------------------------------------===//
// Rows
//===----------------------------------------------------------------------===//

double moec::quant::importanceWeightedError(const QuantFormat &format,
                                            const float *src,
                                            const uint8_t *blocks, int64_t n,
                                            const float *importance) {
  std::vector<float> values(n);
  dequantizeRow(format, blocks, values.data(), n);
  return weightedError(src, values.data(), importance, n);
}

/// ggml's weights for the simple formats: importance * sqrt(sigma2 + x^2)
/// with sigma2 the row's mean square (a float sum over the whole row).
static std::vector<float> ggmlRowWeights(const float *src, int64_t n,
                                         const float *importance) {
  std::vector<float> w(n);
  float sumx2 = 0;
  for (int64_t j = 0; j < n; ++j)
    sumx2 += src[j] * src[j];
  float sigma2 = sumx2 / static_cast<float>(n);
  for (int64_t j = 0; j < n; ++j)
    w[j] = importance[j] * std::sqrt(sigma2 + src[j] * src[j]);
  return w;
}

void moec::quant::quantizeRowLikeGgml(GgmlType type, const float *src,
                                      uint8_t *dst, int64_t n,
                                      const float *importance) {
  gguf::GgmlTypeInfo info = gguf::getGgmlTypeInfo(type);
  assert(importance && n % info.blockSize == 0);
  switch (type) {
  case GgmlType::Q8_0:
  case GgmlType::MXFP4: // ggml's reference quantizers, as quantizeRow's
    quantizeRow(type, src, dst, n);
    return;
  case GgmlType::Q4_0:
  case GgmlType::Q4_1:
  case GgmlType::Q5_0:
  case GgmlType::Q5_1: {
    std::vector<float> w = ggmlRowWeights(src, n, importance);
    for (int64_t b = 0; b < n / 32; ++b)
      ggmlSimpleBlock(type, src + 32 * b, w.data() + 32 * b,
                      dst + b * info.blockBytes);
    return;
  }
  default: {
    const KSpec &s = kSpecOf(type);
    float w[QK_K];
    for (int64_t b = 0; b < n / QK_K; ++b) {
      ggmlKWeights(type, src + QK_K * b, importance + QK_K * b, w);
      kEncode(s, ggmlKBlock(s, src + QK_K * b, w), dst + b * info.blockBytes);
    }
    return;
  }
  }
}

void moec::quant::quantizeRowImportance(const QuantFormat &format,
                                        const float *src, uint8_t *dst,
                                        int64_t n, const float *importance,
                                        const ImportanceOptions &options) {
  assert(format.isValid() && n % format.blockSize() == 0);
  if (format.isGgml()) {
    switch (format.ggmlType()) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
      quantizeRow(format, src, dst, n); // elementwise: nearest is best
      return;
    default:
      break;
    }
  }

  // The importance (ones when absent) and the objective's weights.
  std::vector<float> ones, objective;
  if (!importance) {
    ones.assign(n, 1.0f);
    importance = ones.data();
  }
  const float *obj = importance;
  if (options.magnitudeFactor) {
    double sumx2 = 0;
    for (int64_t i = 0; i < n; ++i)
      sumx2 += double(src[i]) * src[i];
    float sigma2 = float(2 * sumx2 / double(n));
    objective.resize(n);
    for (int64_t i = 0; i < n; ++i)
      objective[i] = importance[i] * std::sqrt(sigma2 + src[i] * src[i]);
    obj = objective.data();
  }

  const int64_t size = format.blockSize(), bytes = format.blockBytes();
  if (format.isGroupFormat()) {
    GroupFormat f = format.groupFormat();
    std::vector<uint8_t> codes(size);
    for (int64_t b = 0; b < n / size; ++b) {
      const float *x = src + b * size;
      GroupParams p = searchGroupParams(f, x, obj + b * size);
      for (int64_t i = 0; i < size; ++i)
        codes[i] = static_cast<uint8_t>(groupCode(f, p, x[i]));
      writeGroupBlock(f, p, codes.data(), dst + b * bytes);
    }
    return;
  }

  if (size == QK_K) {
    for (int64_t b = 0; b < n / size; ++b)
      kQuantBlock(format, src + b * size, obj + b * size, importance + b * size,
                  dst + b * bytes);
    return;
  }

  // Simple formats.
  std::vector<float> ggmlW = ggmlRowWeights(src, n, importance);
  for (int64_t b = 0; b < n / size; ++b)
    simpleBlock(format, src + b * size, obj + b * size, ggmlW.data() + b * size,
                dst + b * bytes);
}
