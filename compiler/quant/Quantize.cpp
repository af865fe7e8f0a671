//===- Quantize.cpp - Round-to-nearest quantization into ggml types -------===//
//
// Each function follows the float32 operations of the gguf package's
// quantize_blocks one for one; this file is built with -ffp-contract=off so
// that no multiply-add is fused.
//
//===----------------------------------------------------------------------===//

#include "compiler/quant/Quantize.h"
#include "compiler/quant/Dequantize.h"

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

} // namespace

bool moec::quant::canQuantize(GgmlType type) {
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
  BlockFn fn = type == GgmlType::Q4_0   ? q4_0
               : type == GgmlType::Q4_1 ? q4_1
               : type == GgmlType::Q5_0 ? q5_0
               : type == GgmlType::Q5_1 ? q5_1
               : type == GgmlType::Q8_0 ? q8_0
                                        : mxfp4;
  for (int64_t b = 0; b < n / info.blockSize; ++b)
    fn(src + b * info.blockSize, dst + b * info.blockBytes);
}
