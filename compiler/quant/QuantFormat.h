//===- QuantFormat.h - One name for every weight format ---------*- C++ -*-===//
//
// A QuantFormat names either a ggml type that moec quantizes (F32, F16,
// BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, MXFP4, Q2_K..Q6_K) or one of moec's own
// group-wise integer formats (GroupFormats.h), so that the compression steps
// (importance quantization, GPTQ, the bit allocator) handle both alike:
// parsing a name, sizing rows, and dispatching to the reference
// round-to-nearest quantizers and the dequantizers.
//
// Names: the ggml type names, lower or upper case ("q4_k", "Q8_0", "f16"),
// and "int<B>_g<G>[_sym|_asym]" for the own formats ("int3_g32",
// "int4_g64_asym"); name() prints lower case and omits "_sym".
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_QUANT_QUANTFORMAT_H
#define MOEC_COMPILER_QUANT_QUANTFORMAT_H

#include "compiler/gguf/GgmlType.h"
#include "compiler/quant/GroupFormats.h"

#include "llvm/ADT/StringRef.h"

#include <cstdint>
#include <optional>
#include <string>

namespace moec::quant {

class QuantFormat {
public:
  /// A ggml type; valid when quantizeRow and dequantizeRow support it.
  /// The format of a tensor type: a ggml type, or an own format's type
  /// (gguf::getOwnGroupType).
  static QuantFormat fromType(gguf::GgmlType type) {
    if (std::optional<gguf::OwnGroupType> own = gguf::getOwnGroupType(type))
      return ownGroup({own->bits, own->group, own->asymmetric});
    return ggml(type);
  }
  static QuantFormat ggml(gguf::GgmlType type) {
    QuantFormat f;
    f.isGroup = false;
    f.type = type;
    return f;
  }
  /// One of moec's own formats; valid when `group.isValid()`.
  static QuantFormat ownGroup(GroupFormat group) {
    QuantFormat f;
    f.isGroup = true;
    f.group = group;
    return f;
  }

  bool isGgml() const { return !isGroup; }
  bool isGroupFormat() const { return isGroup; }
  /// The ggml type (isGgml() only).
  gguf::GgmlType ggmlType() const { return type; }
  /// The own format (isGroupFormat() only).
  GroupFormat groupFormat() const { return group; }

  /// Whether moec can quantize and dequantize this format.
  bool isValid() const;
  /// Elements per block (1 for F32/F16/BF16, 32, 256, or the group).
  int64_t blockSize() const;
  /// Bytes per block.
  int64_t blockBytes() const;
  /// Bytes of `n` elements, `n` a multiple of blockSize().
  int64_t rowBytes(int64_t n) const { return n / blockSize() * blockBytes(); }
  /// The canonical name ("q4_k", "int4_g64_asym").
  std::string name() const;

  bool operator==(const QuantFormat &other) const;
  bool operator!=(const QuantFormat &other) const { return !(*this == other); }

private:
  QuantFormat() = default;
  bool isGroup = false;
  gguf::GgmlType type = gguf::GgmlType::F32;
  GroupFormat group{0, 0, false};
};

/// The format named `name`, or nullopt when the name is unknown or names a
/// format moec does not quantize.
std::optional<QuantFormat> parseQuantFormat(llvm::StringRef name);

/// Round-to-nearest quantization of `n` elements (a multiple of the block
/// size): quantizeRow or quantizeGroupRow.
void quantizeRow(const QuantFormat &format, const float *src, uint8_t *dst,
                 int64_t n);

/// Reference dequantization of `n` elements: dequantizeRow or
/// dequantizeGroupRow.
void dequantizeRow(const QuantFormat &format, const uint8_t *src, float *dst,
                   int64_t n);

} // namespace moec::quant

#endif // MOEC_COMPILER_QUANT_QUANTFORMAT_H
