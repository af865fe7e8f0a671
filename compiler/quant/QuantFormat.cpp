//===- QuantFormat.cpp - One name for every weight format -----------------===//

#include "compiler/quant/QuantFormat.h"
#include "compiler/quant/Dequantize.h"
#include "compiler/quant/Quantize.h"

#include "llvm/ADT/StringExtras.h"

#include <cassert>

using namespace moec;
using namespace moec::quant;

bool QuantFormat::isValid() const {
  if (isGroup)
    return group.isValid();
  return canQuantize(type) && canDequantize(type);
}

int64_t QuantFormat::blockSize() const {
  return isGroup ? int64_t(group.group) : gguf::getGgmlTypeInfo(type).blockSize;
}

int64_t QuantFormat::blockBytes() const {
  return isGroup ? group.blockBytes() : gguf::getGgmlTypeInfo(type).blockBytes;
}

std::string QuantFormat::name() const {
  if (!isGroup)
    return llvm::StringRef(gguf::getGgmlTypeInfo(type).name).lower();
  return "int" + std::to_string(group.bits) + "_g" +
         std::to_string(group.group) + (group.asymmetric ? "_asym" : "");
}

bool QuantFormat::operator==(const QuantFormat &other) const {
  if (isGroup != other.isGroup)
    return false;
  if (!isGroup)
    return type == other.type;
  return group.bits == other.group.bits && group.group == other.group.group &&
         group.asymmetric == other.group.asymmetric;
}

std::optional<QuantFormat> moec::quant::parseQuantFormat(llvm::StringRef name) {
  std::string lower = name.lower();
  llvm::StringRef rest(lower);
  if (rest.consume_front("int")) {
    // int<B>_g<G>[_sym|_asym]
    unsigned bits = 0, group = 0;
    if (rest.consumeInteger(10, bits) || !rest.consume_front("_g") ||
        rest.consumeInteger(10, group))
      return std::nullopt;
    bool asymmetric = false;
    if (rest.consume_front("_asym"))
      asymmetric = true;
    else
      rest.consume_front("_sym");
    if (!rest.empty())
      return std::nullopt;
    QuantFormat f = QuantFormat::ownGroup({bits, group, asymmetric});
    return f.isValid() ? std::optional<QuantFormat>(f) : std::nullopt;
  }
  std::optional<gguf::GgmlType> type = gguf::parseGgmlTypeName(name);
  if (!type)
    return std::nullopt;
  QuantFormat f = QuantFormat::ggml(*type);
  return f.isValid() ? std::optional<QuantFormat>(f) : std::nullopt;
}

void moec::quant::quantizeRow(const QuantFormat &format, const float *src,
                              uint8_t *dst, int64_t n) {
  assert(format.isValid() && n % format.blockSize() == 0);
  if (format.isGroupFormat())
    quantizeGroupRow(format.groupFormat(), src, dst, n);
  else
    quantizeRow(format.ggmlType(), src, dst, n);
}

void moec::quant::dequantizeRow(const QuantFormat &format, const uint8_t *src,
                                float *dst, int64_t n) {
  assert(format.isValid() && n % format.blockSize() == 0);
  if (format.isGroupFormat())
    dequantizeGroupRow(format.groupFormat(), src, dst, n);
  else
    dequantizeRow(format.ggmlType(), src, dst, n);
}
