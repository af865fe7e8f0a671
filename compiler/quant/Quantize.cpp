//===- Quantize.cpp - Round-to-nearest quantization into ggml types -------===//
//
// Each function of the simple formats follows the float32 operations of the
// gguf package's quantize_blocks one for one; this file is built with
// -ffp-contract=off so that no multiply-add is fused. The k-quants, below
// them, are moec's own round-to-nearest quantizers.
//
//===----------------------------------------------------------------------===//

#include "compiler/quant/Quantize.h"
#include "compiler/quant/Dequantize.h"
#include "compiler/quant/GroupFormats.h"

#include "llvm/ADT/bit.h"
#include "llvm/Support/ErrorHandling.h"

#include <cmath>
#include <cstring>

using namespace moec;
using namespace moec::quant;
using gguf::GgmlType;

namespace {

void storeHalf(uint8_t *p, float v) {
  uint16_t h = floatToHalf(v);
  p[0] = static_cast<uint8_t>(h);
  p[1] = static_cast<uint8_t>(h >> 8);
}

/// The element of largest magnitude, the first one among equals (numpy's
/// argmax of abs).
float signedAbsMax(const float *x, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (std::fabs(x[i]) > std::fabs(x[best]))
      best = i;
  return x[best];
}

float inverse(float d) { return d == 0.0f ? 0.0f : 1.0f / d; }

/// numpy's trunc(...).astype(uint8).clip(0, max) for values in range.
uint8_t truncClip(float v, int max) {
  int q = static_cast<int>(std::trunc(v));
  return static_cast<uint8_t>(q < 0 ? 0 : q > max ? max : q);
}

/// Packs 32 four-bit codes: element j < 16 low nibble of byte j, element
/// j + 16 high nibble.
void packNibbles(const uint8_t q[32], uint8_t *qs) {
  for (int j = 0; j < 16; ++j)
    qs[j] = (q[j] & 0x0f) | static_cast<uint8_t>(q[j + 16] << 4);
}

/// Bit j of the little-endian u32 is the fifth bit of element j.
void packHighBits(const uint8_t q[32], uint8_t *qh) {
  uint32_t bits = 0;
  for (int j = 0; j < 32; ++j)
    bits |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
  std::memcpy(qh, &bits, 4); // little-endian hosts only (checked below)
}

void q4_0(const float *x, uint8_t *b) {
  float d = signedAbsMax(x, 32) / -8.0f, id = inverse(d);
  uint8_t q[32];
  for (int j = 0; j < 32; ++j)
    q[j] = truncClip(x[j] * id + 8.5f, 15);
  storeHalf(b, d);
  packNibbles(q, b + 2);
}

void minMax(const float *x, float &min, float &max) {
  min = max = x[0];
  for (int j = 1; j < 32; ++j) {
    min = std::fmin(min, x[j]);
    max = std::fmax(max, x[j]);
  }
}

void q4_1(const float *x, uint8_t *b) {
  float min, max;
  minMax(x, min, max);
  float d = (max - min) / 15.0f, id = inverse(d);
  uint8_t q[32];
  for (int j = 0; j < 32; ++j)
    q[j] = truncClip((x[j] - min) * id + 0.5f, 15);
  storeHalf(b, d);
  storeHalf(b + 2, min);
  packNibbles(q, b + 4);
}

void q5_0(const float *x, uint8_t *b) {
  float d = signedAbsMax(x, 32) / -16.0f, id = inverse(d);
  uint8_t q[32];
  for (int j = 0; j < 32; ++j)
    q[j] = truncClip(x[j] * id + 16.5f, 31);
  storeHalf(b, d);
  packHighBits(q, b + 2);
  packNibbles(q, b + 6);
}

void q5_1(const float *x, uint8_t *b) {
  float min, max;
  minMax(x, min, max);
  float d = (max - min) / 31.0f, id = inverse(d);
  uint8_t q[32];
  for (int j = 0; j < 32; ++j)
    q[j] = truncClip((x[j] - min) * id + 0.5f, 31);
  storeHalf(b, d);
  storeHalf(b + 2, min);
  packHighBits(q, b + 4);
  packNibbles(q, b + 8);
}

/// gguf's np_roundf: round half away from zero, in float32 steps.
float roundHalfAway(float n) {
  float a = std::fabs(n), floored = std::floor(a);
  float r = floored + std::floor(2.0f * (a - floored));
  return n > 0 ? r : n < 0 ? -r : 0.0f * r;
}

void q8_0(const float *x, uint8_t *b) {
  float amax = 0;
  for (int j = 0; j < 32; ++j)
    amax = std::fmax(amax, std::fabs(x[j]));
  float d = amax / 127.0f, id = inverse(d);
  storeHalf(b, d);
  for (int j = 0; j < 32; ++j)
    b[2 + j] = static_cast<uint8_t>(
        static_cast<int8_t>(static_cast<int>(roundHalfAway(x[j] * id))));
}

constexpr int8_t kMxfp4Values[16] = {0, 1,  2,  3,  4,  6,  8,  12,
                                     0, -1, -2, -3, -4, -6, -8, -12};

void mxfp4(const float *x, uint8_t *b) {
  float amax = 0;
  for (int j = 0; j < 32; ++j)
    amax = std::fmax(amax, std::fabs(x[j]));
  uint8_t e = 0;
  if (amax > 0)
    e = static_cast<uint8_t>(
        static_cast<int>(std::floor(std::log2(amax)) - 2.0f + 127.0f));
  // The E8M0 scale, halved (the codes are doubled).
  uint32_t bits = e < 2 ? (0x00200000u << e) : (static_cast<uint32_t>(e - 1) << 23);
  float d = llvm::bit_cast<float>(bits);
  uint8_t q[32];
  for (int j = 0; j < 32; ++j) {
    int best = 0;
    float bestErr = std::fabs(d * static_cast<float>(kMxfp4Values[0]) - x[j]);
    for (int k = 1; k < 16; ++k) {
      float err = std::fabs(d * static_cast<float>(kMxfp4Values[k]) - x[j]);
      if (err < bestErr) {
        bestErr = err;
        best = k;
      }
    }
    q[j] = static_cast<uint8_t>(best);
  }
  b[0] = e;
  packNibbles(q, b + 1);
}

//===----------------------------------------------------------------------===//
// K-quants: round to nearest, in three steps per 256-element super-block.
//
//  1. Each sub-block (16 or 32 elements) gets its own float scale (and, for
//     Q2_K/Q4_K/Q5_K, min) from its range: asymmetric formats (x = d*sc*q -
//     dmin*m, q >= 0) span [min(0, lo), hi], as ggml's make_qkx quantizers
//     do, so that `- dmin*m` covers the negative part; symmetric formats
//     (Q3_K, Q6_K: x = d*sc*q, q signed) map the element of largest
//     magnitude to the most negative code, as Q4_0 does.
//  2. The sub-block scales (and mins) become the format's 4-, 6- or 8-bit
//     fields: the super-block's f16 d (dmin) is the largest scale (min)
//     divided by the largest field value (one f16 step larger where the
//     rounding to f16 would push the largest beyond the field's range), each
//     field the nearest integer of scale / d, clamped to the field's range.
//  3. The codes round (x + dmin*m) / (d*sc) to the nearest integer, computed
//     with the stored (quantized) d, sc, dmin and m, clamped to the code
//     range; a sub-block whose step is zero gets code 0.
//
// Unlike llama.cpp's quantize_row_*_K, nothing searches for better scales:
// the blocks are valid GGUF (any reader dequantizes them), but not the same
// bytes llama.cpp would choose.
//===----------------------------------------------------------------------===//

constexpr int QK_K = 256;

int nearestClamped(float v, int lo, int hi) {
  float r = std::nearbyint(v);
  return r < static_cast<float>(lo)   ? lo
         : r > static_cast<float>(hi) ? hi
                                      : static_cast<int>(r);
}

/// Sub-block fit of an asymmetric format with codes 0..maxCode: x is about
/// scale * q - min with min >= 0.
void fitAsymmetric(const float *x, int n, int maxCode, float &scale,
                   float &min) {
  float lo = x[0], hi = x[0];
  for (int j = 1; j < n; ++j) {
    lo = std::fmin(lo, x[j]);
    hi = std::fmax(hi, x[j]);
  }
  if (lo > 0.0f)
    lo = 0.0f;
  scale = (hi - lo) / static_cast<float>(maxCode);
  min = -lo;
}

/// The f16 super-block scale nearest `largest / fieldOfLargest` (the sub-block
/// scale of largest magnitude, mapped to the field value of largest
/// magnitude), its magnitude raised by an f16 step where rounding it down (to
/// a subnormal or zero, mostly) would put `largest` beyond the field range.
float superBlockScale(float largest, int fieldOfLargest) {
  uint16_t h = floatToHalf(largest / static_cast<float>(fieldOfLargest));
  auto fits = [&] {
    float d = halfToFloat(h);
    return d != 0.0f && std::nearbyint(std::fabs(largest / d)) <=
                            static_cast<float>(std::abs(fieldOfLargest));
  };
  if (largest != 0.0f)
    while (!fits() && (h & 0x7fffu) < 0x7bffu)
      ++h; // one f16 step away from zero, whatever the sign
  return halfToFloat(h);
}

/// The stored super-block scale for sub-block values `v` (all >= 0) whose
/// largest must map to field value `maxField`, and the fields themselves.
float quantizeScalesAsymmetric(const float *v, int n, int maxField,
                               uint8_t *fields) {
  float max = 0.0f;
  for (int i = 0; i < n; ++i)
    max = std::fmax(max, v[i]);
  float d = superBlockScale(max, maxField);
  for (int i = 0; i < n; ++i)
    fields[i] =
        d > 0.0f ? static_cast<uint8_t>(nearestClamped(v[i] / d, 0, maxField))
                 : 0;
  return d;
}

/// Codes 0..maxCode of one sub-block for the stored step d*sc and offset
/// dmin*m (the dequantizer's operations: x = (d*sc)*q - (dmin*m)).
void codesAsymmetric(const float *x, int n, float step, float offset,
                     int maxCode, uint8_t *q) {
  for (int j = 0; j < n; ++j)
    q[j] = step > 0.0f ? static_cast<uint8_t>(
                             nearestClamped((x[j] + offset) / step, 0, maxCode))
                       : 0;
}

/// Sub-block scales, mins and codes of Q2_K (16 x 16, 4-bit fields, codes
/// 0..3), Q4_K (8 x 32, 6-bit, 0..15) and Q5_K (8 x 32, 6-bit, 0..31).
void kQuantAsymmetric(const float *x, int subSize, int maxField, int maxCode,
                      float &d, float &dmin, uint8_t *sc, uint8_t *m,
                      uint8_t *q) {
  int subs = QK_K / subSize;
  float scales[16], mins[16];
  for (int s = 0; s < subs; ++s)
    fitAsymmetric(x + s * subSize, subSize, maxCode, scales[s], mins[s]);
  d = quantizeScalesAsymmetric(scales, subs, maxField, sc);
  dmin = quantizeScalesAsymmetric(mins, subs, maxField, m);
  for (int s = 0; s < subs; ++s)
    codesAsymmetric(x + s * subSize, subSize, d * static_cast<float>(sc[s]),
                    dmin * static_cast<float>(m[s]), maxCode, q + s * subSize);
}

/// Signed sub-block scales, as signed fields -maxField..maxField-1, and
/// signed codes -maxCode..maxCode-1 of Q3_K (16 x 16, 6-bit fields, codes
/// -4..3) and Q6_K (16 x 16, 8-bit, -32..31), all sub-blocks of 16.
void kQuantSymmetric(const float *x, int maxField, int maxCode, float &d,
                     int8_t sc[16], int8_t q[QK_K]) {
  float scales[16];
  int largest = 0;
  for (int s = 0; s < 16; ++s) {
    scales[s] = signedAbsMax(x + 16 * s, 16) / static_cast<float>(-maxCode);
    if (std::fabs(scales[s]) > std::fabs(scales[largest]))
      largest = s;
  }
  d = superBlockScale(scales[largest], -maxField);
  for (int s = 0; s < 16; ++s) {
    sc[s] = d != 0.0f ? static_cast<int8_t>(nearestClamped(
                            scales[s] / d, -maxField, maxField - 1))
                      : 0;
    float step = d * static_cast<float>(sc[s]);
    for (int j = 0; j < 16; ++j)
      q[16 * s + j] = step != 0.0f
                          ? static_cast<int8_t>(nearestClamped(
                                x[16 * s + j] / step, -maxCode, maxCode - 1))
                          : 0;
  }
}

/// Element e of 256 in 2 bits of qs[32 * (e / 128) + e % 32] at shift
/// 2 * ((e % 128) / 32) (Q2_K's and Q3_K's low bits).
void pack2Bits(const uint8_t q[QK_K], uint8_t *qs) {
  std::memset(qs, 0, 64);
  for (int e = 0; e < QK_K; ++e)
    qs[32 * (e / 128) + e % 32] |=
        static_cast<uint8_t>((q[e] & 3) << (2 * ((e % 128) / 32)));
}

/// Sub-block s of 32 in nibble s % 2 of qs[32 * (s / 2) + l] (Q4_K, Q5_K).
void packKNibbles(const uint8_t q[QK_K], uint8_t *qs) {
  for (int s = 0; s < 8; s += 2)
    for (int l = 0; l < 32; ++l)
      qs[16 * s + l] = (q[32 * s + l] & 0x0f) |
                       static_cast<uint8_t>((q[32 * (s + 1) + l] & 0x0f) << 4);
}

/// The 6-bit scales and mins of Q4_K and Q5_K in 12 bytes.
void packScaleMin(const uint8_t sc[8], const uint8_t m[8], uint8_t *s) {
  for (int j = 0; j < 4; ++j) {
    s[j] = (sc[j] & 0x3f) | static_cast<uint8_t>((sc[4 + j] >> 4) << 6);
    s[4 + j] = (m[j] & 0x3f) | static_cast<uint8_t>((m[4 + j] >> 4) << 6);
    s[8 + j] =
        (sc[4 + j] & 0x0f) | static_cast<uint8_t>((m[4 + j] & 0x0f) << 4);
  }
}

// block_q2_K { uint8 scales[16]; uint8 qs[64]; half d, dmin; }
void q2_K(const float *x, uint8_t *b) {
  float d, dmin;
  uint8_t sc[16], m[16], q[QK_K];
  kQuantAsymmetric(x, 16, 15, 3, d, dmin, sc, m, q);
  for (int i = 0; i < 16; ++i)
    b[i] = sc[i] | static_cast<uint8_t>(m[i] << 4);
  pack2Bits(q, b + 16);
  storeHalf(b + 80, d);
  storeHalf(b + 82, dmin);
}

// block_q3_K { uint8 hmask[32]; uint8 qs[64]; uint8 scales[12]; half d; }
void q3_K(const float *x, uint8_t *b) {
  float d;
  int8_t sc[16], q[QK_K];
  kQuantSymmetric(x, 32, 4, d, sc, q);
  uint8_t u[QK_K];
  std::memset(b, 0, 32); // hmask: the high bit, set for codes >= 0
  for (int e = 0; e < QK_K; ++e) {
    u[e] = static_cast<uint8_t>(q[e] + 4);
    b[e % 32] |= static_cast<uint8_t>((u[e] >> 2) << (e / 32));
  }
  pack2Bits(u, b + 32);
  uint8_t *packed = b + 96;
  std::memset(packed, 0, 12);
  for (int i = 0; i < 16; ++i) {
    int l = sc[i] + 32; // 0..63
    packed[i % 8] |= static_cast<uint8_t>((l & 0x0f) << (4 * (i / 8)));
    packed[8 + i % 4] |= static_cast<uint8_t>((l >> 4) << (2 * (i / 4)));
  }
  storeHalf(b + 108, d);
}

// block_q4_K { half d, dmin; uint8 scales[12]; uint8 qs[128]; }
void q4_K(const float *x, uint8_t *b) {
  float d, dmin;
  uint8_t sc[8], m[8], q[QK_K];
  kQuantAsymmetric(x, 32, 63, 15, d, dmin, sc, m, q);
  storeHalf(b, d);
  storeHalf(b + 2, dmin);
  packScaleMin(sc, m, b + 4);
  packKNibbles(q, b + 16);
}

// block_q5_K { half d, dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128]; }
void q5_K(const float *x, uint8_t *b) {
  float d, dmin;
  uint8_t sc[8], m[8], q[QK_K];
  kQuantAsymmetric(x, 32, 63, 31, d, dmin, sc, m, q);
  storeHalf(b, d);
  storeHalf(b + 2, dmin);
  packScaleMin(sc, m, b + 4);
  uint8_t *qh = b + 16;
  std::memset(qh, 0, 32);
  for (int s = 0; s < 8; ++s)
    for (int l = 0; l < 32; ++l)
      qh[l] |= static_cast<uint8_t>((q[32 * s + l] >> 4) << s);
  packKNibbles(q, b + 48);
}

// block_q6_K { uint8 ql[128]; uint8 qh[64]; int8 scales[16]; half d; }
void q6_K(const float *x, uint8_t *b) {
  float d;
  int8_t sc[16], q[QK_K];
  kQuantSymmetric(x, 128, 32, d, sc, q);
  uint8_t *ql = b, *qh = b + 128;
  std::memset(b, 0, 192);
  for (int e = 0; e < QK_K; ++e) {
    int h = e / 128, r = e % 128;
    int u = q[e] + 32; // 0..63
    ql[64 * h + r % 64] |= static_cast<uint8_t>((u & 0x0f) << (4 * (r / 64)));
    qh[32 * h + r % 32] |= static_cast<uint8_t>((u >> 4) << (2 * (r / 32)));
  }
  std::memcpy(b + 192, sc, 16);
  storeHalf(b + 208, d);
}

} // namespace

bool moec::quant::canQuantize(GgmlType type) {
  if (gguf::getOwnGroupType(type))
    return true;
  switch (type) {
  case GgmlType::F32:
  case GgmlType::F16:
  case GgmlType::BF16:
  case GgmlType::Q4_0:
  case GgmlType::Q4_1:
  case GgmlType::Q5_0:
  case GgmlType::Q5_1:
  case GgmlType::Q8_0:
  case GgmlType::MXFP4:
  case GgmlType::Q2_K:
  case GgmlType::Q3_K:
  case GgmlType::Q4_K:
  case GgmlType::Q5_K:
  case GgmlType::Q6_K:
    return true;
  default:
    return false;
  }
}

void moec::quant::quantizeRow(GgmlType type, const float *src, uint8_t *dst,
                              int64_t n) {
  static_assert(llvm::endianness::native == llvm::endianness::little,
                "block layouts are little-endian");
  gguf::GgmlTypeInfo info = gguf::getGgmlTypeInfo(type);
  assert(canQuantize(type) && n % info.blockSize == 0);
  if (std::optional<gguf::OwnGroupType> own = gguf::getOwnGroupType(type)) {
    quantizeGroupRow({own->bits, own->group, own->asymmetric}, src, dst, n);
    return;
  }
  switch (type) {
  case GgmlType::F32:
    std::memcpy(dst, src, n * sizeof(float));
    return;
  case GgmlType::F16:
    for (int64_t i = 0; i < n; ++i)
      storeHalf(dst + 2 * i, src[i]);
    return;
  case GgmlType::BF16:
    for (int64_t i = 0; i < n; ++i) {
      // gguf's (and ggml's) rounding: NaN made quiet, else nearest even.
      uint32_t u = llvm::bit_cast<uint32_t>(src[i]);
      if ((u & 0x7fffffffu) > 0x7f800000u)
        u = (u & 0xffff0000u) | (64u << 16);
      uint16_t h = static_cast<uint16_t>(
          (static_cast<uint64_t>(u) + (0x7fffu + ((u >> 16) & 1))) >> 16);
      dst[2 * i] = static_cast<uint8_t>(h);
      dst[2 * i + 1] = static_cast<uint8_t>(h >> 8);
    }
    return;
  default:
    break;
  }
  using BlockFn = void (*)(const float *, uint8_t *);
  BlockFn fn = nullptr;
  switch (type) {
  case GgmlType::Q4_0:
    fn = q4_0;
    break;
  case GgmlType::Q4_1:
    fn = q4_1;
    break;
  case GgmlType::Q5_0:
    fn = q5_0;
    break;
  case GgmlType::Q5_1:
    fn = q5_1;
    break;
  case GgmlType::Q8_0:
    fn = q8_0;
    break;
  case GgmlType::MXFP4:
    fn = mxfp4;
    break;
  case GgmlType::Q2_K:
    fn = q2_K;
    break;
  case GgmlType::Q3_K:
    fn = q3_K;
    break;
  case GgmlType::Q4_K:
    fn = q4_K;
    break;
  case GgmlType::Q5_K:
    fn = q5_K;
    break;
  case GgmlType::Q6_K:
    fn = q6_K;
    break;
  default:
    llvm_unreachable("no quantizer for this type");
  }
  for (int64_t b = 0; b < n / info.blockSize; ++b)
    fn(src + b * info.blockSize, dst + b * info.blockBytes);
}
