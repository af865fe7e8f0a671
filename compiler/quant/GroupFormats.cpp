//===- GroupFormats.cpp - moec's own group-wise integer formats -----------===//

#include "compiler/quant/GroupFormats.h"
#include "compiler/quant/Dequantize.h"

#include <cassert>
#include <cmath>
#include <cstring>

using namespace moec::quant;

namespace {

uint16_t load16(const uint8_t *p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
void store16(uint8_t *p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}

unsigned readCode(const uint8_t *codes, unsigned bits, unsigned j) {
  unsigned bit = j * bits, value = 0;
  for (unsigned k = 0; k < bits; ++k, ++bit)
    value |= ((codes[bit / 8] >> (bit % 8)) & 1u) << k;
  return value;
}

void writeCode(uint8_t *codes, unsigned bits, unsigned j, unsigned value) {
  unsigned bit = j * bits;
  for (unsigned k = 0; k < bits; ++k, ++bit) {
    uint8_t mask = static_cast<uint8_t>(1u << (bit % 8));
    if ((value >> k) & 1u)
      codes[bit / 8] |= mask;
    else
      codes[bit / 8] &= static_cast<uint8_t>(~mask);
  }
}

} // namespace

void moec::quant::dequantizeGroupRow(GroupFormat f, const uint8_t *src,
                                     float *dst, int64_t n) {
  assert(f.isValid() && n % f.group == 0);
  const int offset = 1 << (f.bits - 1);
  for (int64_t b = 0; b < n / f.group; ++b, src += f.blockBytes()) {
    float scale = halfToFloat(load16(src));
    float min = f.asymmetric ? halfToFloat(load16(src + 2)) : 0.0f;
    const uint8_t *codes = src + (f.asymmetric ? 4 : 2);
    for (unsigned j = 0; j < f.group; ++j) {
      int u = static_cast<int>(readCode(codes, f.bits, j));
      dst[b * f.group + j] =
          f.asymmetric ? scale * static_cast<float>(u) + min
                       : scale * static_cast<float>(u - offset);
    }
  }
}

void moec::quant::quantizeGroupRow(GroupFormat f, const float *src,
                                   uint8_t *dst, int64_t n) {
  assert(f.isValid() && n % f.group == 0);
  const int levels = 1 << f.bits, offset = levels / 2;
  for (int64_t b = 0; b < n / f.group; ++b, dst += f.blockBytes()) {
    const float *x = src + b * f.group;
    float lo = x[0], hi = x[0];
    for (unsigned j = 1; j < f.group; ++j) {
      lo = std::fmin(lo, x[j]);
      hi = std::fmax(hi, x[j]);
    }
    // The scale and min are rounded to f16 first and the codes computed
    // from the rounded values, so what is stored is what decodes.
    float scale, min = 0;
    if (f.asymmetric) {
      min = halfToFloat(floatToHalf(lo));
      scale = halfToFloat(floatToHalf((hi - min) / float(levels - 1)));
    } else {
      // Symmetric: the largest magnitude maps to the most negative code
      // (-2^(B-1)) or the most positive (2^(B-1) - 1), whichever keeps the
      // larger scale resolution, as Q4_0 does with max / -8.
      float amax = std::fmax(std::fabs(lo), std::fabs(hi));
      float signedMax = std::fabs(lo) >= std::fabs(hi) ? lo : hi;
      scale = halfToFloat(floatToHalf(
          signedMax < 0 ? amax / float(offset) : amax / float(offset - 1)));
    }
    store16(dst, floatToHalf(scale));
    if (f.asymmetric)
      store16(dst + 2, floatToHalf(min));
    uint8_t *codes = dst + (f.asymmetric ? 4 : 2);
    std::memset(codes, 0, size_t(f.group) * f.bits / 8);
    float inverse = scale == 0.0f ? 0.0f : 1.0f / scale;
    for (unsigned j = 0; j < f.group; ++j) {
      float q = f.asymmetric ? (x[j] - min) * inverse : x[j] * inverse;
      int u = static_cast<int>(std::nearbyint(q)) + (f.asymmetric ? 0 : offset);
      u = u < 0 ? 0 : u >= levels ? levels - 1 : u;
      writeCode(codes, f.bits, j, static_cast<unsigned>(u));
    }
  }
}
