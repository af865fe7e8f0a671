//===- Dequantize.cpp - Reference dequantization of ggml types ------------===//
//
// Each function follows the float operations of the gguf package's
// dequantize_blocks one for one (same operands, same order, float32
// throughout), which is what makes the results bit-exact; this file is built
// with -ffp-contract=off so that no multiply-add is fused. Layouts follow
// GGUF's block structs.
//
//===----------------------------------------------------------------------===//

#include "compiler/quant/Dequantize.h"
#include "compiler/quant/GroupFormats.h"

#include "llvm/ADT/bit.h"
#include "llvm/Support/ErrorHandling.h"

#include <cmath>
#include <cstring>

using namespace moec;
using namespace moec::quant;
using gguf::GgmlType;

float moec::quant::halfToFloat(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float.
    float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return llvm::bit_cast<float>(llvm::bit_cast<uint32_t>(magnitude) | sign);
  }
  if (exponent == 31) // Infinity or NaN (payload kept).
    return llvm::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return llvm::bit_cast<float>(sign | ((exponent + 112) << 23) |
                               (mantissa << 13));
}

uint16_t moec::quant::floatToHalf(float value) {
  uint32_t x = llvm::bit_cast<uint32_t>(value);
  uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  uint32_t magnitude = x & 0x7fffffffu;
  if (magnitude > 0x7f800000u) { // NaN: keep the top payload bits, stay NaN.
    uint16_t h = static_cast<uint16_t>(0x7c00u + ((x & 0x7fffffu) >> 13));
    if (h == 0x7c00u)
      ++h;
    return sign | h;
  }
  if (magnitude >= 0x477ff000u) // Rounds to infinity (>= 65520).
    return sign | 0x7c00u;
  if (magnitude < 0x38800000u) { // Half subnormal or zero.
    float scaled = llvm::bit_cast<float>(magnitude) * 0x1p24f;
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));
  }
  uint32_t h = (((magnitude >> 23) - 112) << 10) | ((magnitude >> 13) & 0x3ff);
  uint32_t rest = magnitude & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1)))
    ++h; // A carry into the exponent is the correct rounding.
  return sign | static_cast<uint16_t>(h);
}

namespace {

constexpr int QK_K = 256;

uint16_t load16(const uint8_t *p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
uint32_t load32(const uint8_t *p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
float loadHalf(const uint8_t *p) { return halfToFloat(load16(p)); }

// block_q4_0 { half d; uint8 qs[16]; }: element j < 16 is the low nibble of
// qs[j], element j >= 16 the high nibble of qs[j - 16]; x = d * (q - 8).
void q4_0(const uint8_t *b, float *y) {
  float d = loadHalf(b);
  const uint8_t *qs = b + 2;
  for (int j = 0; j < 32; ++j) {
    int q = (j < 16 ? qs[j] & 0x0f : qs[j - 16] >> 4) - 8;
    y[j] = d * static_cast<float>(q);
  }
}

// block_q4_1 { half d, m; uint8 qs[16]; }: x = d * q + m.
void q4_1(const uint8_t *b, float *y) {
  float d = loadHalf(b), m = loadHalf(b + 2);
  const uint8_t *qs = b + 4;
  for (int j = 0; j < 32; ++j) {
    int q = j < 16 ? qs[j] & 0x0f : qs[j - 16] >> 4;
    y[j] = d * static_cast<float>(q) + m;
  }
}

// block_q5_0 { half d; uint32 qh; uint8 qs[16]; }: bit j of qh is the fifth
// bit of element j; x = d * (q - 16).
void q5_0(const uint8_t *b, float *y) {
  float d = loadHalf(b);
  uint32_t qh = load32(b + 2);
  const uint8_t *qs = b + 6;
  for (int j = 0; j < 32; ++j) {
    int low = j < 16 ? qs[j] & 0x0f : qs[j - 16] >> 4;
    int q = (low | static_cast<int>(((qh >> j) & 1) << 4)) - 16;
    y[j] = d * static_cast<float>(q);
  }
}

// block_q5_1 { half d, m; uint32 qh; uint8 qs[16]; }: x = d * q + m.
void q5_1(const uint8_t *b, float *y) {
  float d = loadHalf(b), m = loadHalf(b + 2);
  uint32_t qh = load32(b + 4);
  const uint8_t *qs = b + 8;
  for (int j = 0; j < 32; ++j) {
    int low = j < 16 ? qs[j] & 0x0f : qs[j - 16] >> 4;
    int q = low | static_cast<int>(((qh >> j) & 1) << 4);
    y[j] = d * static_cast<float>(q) + m;
  }
}

// block_q8_0 { half d; int8 qs[32]; }: x = q * d.
void q8_0(const uint8_t *b, float *y) {
  float d = loadHalf(b);
  for (int j = 0; j < 32; ++j)
    y[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}

// block_q2_K { uint8 scales[16]; uint8 qs[64]; half d, dmin; }: sixteen
// sub-blocks of 16, each with a 4-bit scale (low nibble) and 4-bit min (high
// nibble); element e of the 256 takes 2 bits of qs[32 * (e / 128) + e % 32]
// at shift 2 * ((e % 128) / 32); x = (d * sc) * q - (dmin * m).
void q2_K(const uint8_t *b, float *y) {
  const uint8_t *scales = b, *qs = b + 16;
  float d = loadHalf(b + 80), dmin = loadHalf(b + 82);
  for (int e = 0; e < QK_K; ++e) {
    uint8_t sc = scales[e / 16];
    float dl = d * static_cast<float>(sc & 0x0f);
    float ml = dmin * static_cast<float>(sc >> 4);
    int q = (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
    y[e] = dl * static_cast<float>(q) - ml;
  }
}

// block_q3_K { uint8 hmask[32]; uint8 qs[64]; uint8 scales[12]; half d; }:
// 6-bit signed scales (low 4 bits from scales[0..7] nibbles, high 2 bits from
// scales[8..11]) minus 32; element e has 2 low bits as in Q2_K and its high
// bit at bit e / 32 of hmask[e % 32], which, when clear, subtracts 4.
void q3_K(const uint8_t *b, float *y) {
  const uint8_t *hmask = b, *qs = b + 32, *packed = b + 96;
  float d = loadHalf(b + 108);
  for (int e = 0; e < QK_K; ++e) {
    int i = e / 16;
    int low = (i < 8 ? packed[i] : packed[i - 8] >> 4) & 0x0f;
    int high = (packed[8 + i % 4] >> (2 * (i / 4))) & 0x03;
    int scale = static_cast<int8_t>(low | (high << 4)) - 32;
    float dl = d * static_cast<float>(scale);
    int ql = (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
    int qh = ((hmask[e % 32] >> (e / 32)) & 1) ^ 1;
    int q = ql - (qh << 2);
    y[e] = dl * static_cast<float>(q);
  }
}

// The 6-bit scales and mins of the eight 32-element sub-blocks of Q4_K and
// Q5_K, packed in 12 bytes.
void unpackScaleMin(const uint8_t *s, uint8_t sc[8], uint8_t m[8]) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = s[j] & 0x3f;
    m[j] = s[4 + j] & 0x3f;
    sc[4 + j] = (s[8 + j] & 0x0f) | ((s[j] >> 2) & 0x30);
    m[4 + j] = (s[8 + j] >> 4) | ((s[4 + j] >> 2) & 0x30);
  }
}

// block_q4_K { half d, dmin; uint8 scales[12]; uint8 qs[128]; }: sub-block
// s of 32 takes nibble s % 2 of qs[32 * (s / 2) + l];
// x = (d * sc) * q - (dmin * m).
void q4_K(const uint8_t *b, float *y) {
  float d = loadHalf(b), dmin = loadHalf(b + 2);
  uint8_t sc[8], m[8];
  unpackScaleMin(b + 4, sc, m);
  const uint8_t *qs = b + 16;
  for (int s = 0; s < 8; ++s) {
    float ds = d * static_cast<float>(sc[s]);
    float dm = dmin * static_cast<float>(m[s]);
    for (int l = 0; l < 32; ++l) {
      int q = (qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 0x0f;
      y[32 * s + l] = ds * static_cast<float>(q) - dm;
    }
  }
}

// block_q5_K { half d, dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128]; }:
// as Q4_K with a fifth bit, bit s of qh[l], for sub-block s.
void q5_K(const uint8_t *b, float *y) {
  float d = loadHalf(b), dmin = loadHalf(b + 2);
  uint8_t sc[8], m[8];
  unpackScaleMin(b + 4, sc, m);
  const uint8_t *qh = b + 16, *qs = b + 48;
  for (int s = 0; s < 8; ++s) {
    float ds = d * static_cast<float>(sc[s]);
    float dm = dmin * static_cast<float>(m[s]);
    for (int l = 0; l < 32; ++l) {
      int q = ((qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 0x0f) |
              (((qh[l] >> s) & 1) << 4);
      y[32 * s + l] = ds * static_cast<float>(q) - dm;
    }
  }
}

// block_q6_K { uint8 ql[128]; uint8 qh[64]; int8 scales[16]; half d; }:
// element e = 128 * h + r takes nibble r / 64 of ql[64 * h + r % 64] and 2
// bits at shift 2 * (r / 32) of qh[32 * h + r % 32]; x = (d * sc) * (q - 32).
void q6_K(const uint8_t *b, float *y) {
  const uint8_t *ql = b, *qh = b + 128;
  const auto *scales = reinterpret_cast<const int8_t *>(b + 192);
  float d = loadHalf(b + 208);
  for (int e = 0; e < QK_K; ++e) {
    int h = e / 128, r = e % 128;
    int low = (ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0f;
    int high = (qh[32 * h + r % 32] >> (2 * (r / 32))) & 0x03;
    int q = static_cast<int8_t>(low | (high << 4)) - 32;
    float ds = d * static_cast<float>(scales[e / 16]);
    y[e] = ds * static_cast<float>(q);
  }
}

// MXFP4 (OCP microscaling): block { uint8 e; uint8 qs[16]; }, e2m1 codes
// doubled (so they are integers), with the E8M0 scale halved to compensate.
float e8m0ToFloatHalf(uint8_t e) {
  uint32_t bits = e < 2 ? (0x00200000u << e) : (static_cast<uint32_t>(e - 1) << 23);
  return llvm::bit_cast<float>(bits);
}
constexpr int8_t kMxfp4Values[16] = {0, 1,  2,  3,  4,  6,  8,  12,
                                     0, -1, -2, -3, -4, -6, -8, -12};
void mxfp4(const uint8_t *b, float *y) {
  float d = e8m0ToFloatHalf(b[0]);
  const uint8_t *qs = b + 1;
  for (int j = 0; j < 32; ++j) {
    int code = j < 16 ? qs[j] & 0x0f : qs[j - 16] >> 4;
    y[j] = d * static_cast<float>(kMxfp4Values[code]);
  }
}

} // namespace

bool moec::quant::canDequantize(GgmlType type) {
  return gguf::getGgmlTypeInfo(type).computeSupported;
}

void moec::quant::dequantizeRow(GgmlType type, const uint8_t *src, float *dst,
                                int64_t n) {
  gguf::GgmlTypeInfo info = gguf::getGgmlTypeInfo(type);
  assert(info.computeSupported && "no reference dequantizer for this type");
  assert(n % info.blockSize == 0 && "partial block");
  if (std::optional<gguf::OwnGroupType> own = gguf::getOwnGroupType(type)) {
    dequantizeGroupRow({own->bits, own->group, own->asymmetric}, src, dst, n);
    return;
  }
  using BlockFn = void (*)(const uint8_t *, float *);
  BlockFn fn = nullptr;
  switch (type) {
  case GgmlType::F32:
    std::memcpy(dst, src, n * sizeof(float));
    return;
  case GgmlType::F16:
    for (int64_t i = 0; i < n; ++i)
      dst[i] = halfToFloat(load16(src + 2 * i));
    return;
  case GgmlType::BF16:
    for (int64_t i = 0; i < n; ++i)
      dst[i] = llvm::bit_cast<float>(static_cast<uint32_t>(load16(src + 2 * i))
                                     << 16);
    return;
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
  case GgmlType::MXFP4:
    fn = mxfp4;
    break;
  default:
    llvm_unreachable("no reference dequantizer for this type");
  }
  for (int64_t block = 0; block < n / info.blockSize; ++block)
    fn(src + block * info.blockBytes, dst + block * info.blockSize);
}
