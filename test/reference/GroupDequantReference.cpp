//===- GroupDequantReference.cpp - Own int formats, second opinion --------===//
//
// Deliberately unlike compiler/quant/GroupFormats.cpp: halves are decoded
// with ldexp rather than by assembling f32 bits, and codes are read from a
// 16-bit little-endian window rather than bit by bit.
//
//===----------------------------------------------------------------------===//

#include "test/reference/GroupDequantReference.h"

#include <cassert>
#include <cmath>
#include <cstring>

using namespace moec;

namespace {

/// IEEE binary16 to float, from the definition: subnormals are
/// mantissa * 2^-24, normals (1024 + mantissa) * 2^(exponent - 25).
float halfValue(uint16_t h) {
  bool negative = h & 0x8000;
  int exponent = (h >> 10) & 0x1f;
  int mantissa = h & 0x3ff;
  float magnitude;
  if (exponent == 31) {
    // Infinity, or NaN with its payload in the top mantissa bits.
    uint32_t bits = 0x7f800000u | (uint32_t(mantissa) << 13);
    std::memcpy(&magnitude, &bits, sizeof(bits));
  } else if (exponent == 0) {
    magnitude = std::ldexp(float(mantissa), -24);
  } else {
    magnitude = std::ldexp(float(1024 + mantissa), exponent - 25);
  }
  // copysign, not negation: -0.0 and the sign of NaN are kept.
  return std::copysign(magnitude, negative ? -1.0f : 1.0f);
}

uint16_t readU16(const uint8_t *p) { return uint16_t(p[0] | (p[1] << 8)); }

} // namespace

void reference::dequantizeGroup(unsigned bits, unsigned group, bool asymmetric,
                                const uint8_t *src, float *dst,
                                int64_t numElements) {
  assert((bits == 2 || bits == 3 || bits == 4 || bits == 8) && group % 8 == 0 &&
         numElements % group == 0);
  const int64_t codeBytes = int64_t(group) * bits / 8;
  const int64_t blockBytes = 2 + (asymmetric ? 2 : 0) + codeBytes;
  const unsigned mask = (1u << bits) - 1;
  for (int64_t block = 0; block < numElements / group; ++block) {
    const uint8_t *p = src + block * blockBytes;
    float scale = halfValue(readU16(p));
    float min = asymmetric ? halfValue(readU16(p + 2)) : 0.0f;
    const uint8_t *codes = p + (asymmetric ? 4 : 2);
    for (unsigned j = 0; j < group; ++j) {
      // Bits [j*B, j*B + B) lie within the two bytes from bit j*B / 8 (B is
      // at most 8); the second byte exists only when they reach into it.
      unsigned firstBit = j * bits, byte = firstBit / 8, shift = firstBit % 8;
      unsigned window = codes[byte];
      if (shift + bits > 8)
        window |= unsigned(codes[byte + 1]) << 8;
      int u = int((window >> shift) & mask);
      // One float operation per statement: nothing for -ffp-contract=on
      // (clang's default) to fuse, on any target.
      float x;
      if (asymmetric) {
        float product = scale * float(u);
        x = product + min;
      } else {
        x = scale * float(u - (1 << (bits - 1)));
      }
      dst[block * group + j] = x;
    }
  }
}
