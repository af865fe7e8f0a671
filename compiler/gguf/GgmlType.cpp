//===- GgmlType.cpp - ggml tensor type table ------------------------------===//

#include "compiler/gguf/GgmlType.h"
#include "runtime/abi/moec_bundle.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"

#include <map>
#include <mutex>
#include <string>

using namespace moec::gguf;

namespace {

constexpr int64_t QK_K = 256;

// Block sizes and bytes follow ggml's type_traits (and the gguf package's
// GGML_QUANT_SIZES, which a test compares this table with).
const GgmlTypeInfo kTypes[] = {
    {GgmlType::F32, "F32", 1, 4, true},
    {GgmlType::F16, "F16", 1, 2, true},
    {GgmlType::Q4_0, "Q4_0", 32, 2 + 16, true},
    {GgmlType::Q4_1, "Q4_1", 32, 2 + 2 + 16, true},
    {GgmlType::Q5_0, "Q5_0", 32, 2 + 4 + 16, true},
    {GgmlType::Q5_1, "Q5_1", 32, 2 + 2 + 4 + 16, true},
    {GgmlType::Q8_0, "Q8_0", 32, 2 + 32, true},
    {GgmlType::Q8_1, "Q8_1", 32, 4 + 4 + 32, false},
    {GgmlType::Q2_K, "Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4, true},
    {GgmlType::Q3_K, "Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12, true},
    {GgmlType::Q4_K, "Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12, true},
    {GgmlType::Q5_K, "Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12, true},
    {GgmlType::Q6_K, "Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16, true},
    {GgmlType::Q8_K, "Q8_K", QK_K, 4 + QK_K + QK_K / 8, false},
    {GgmlType::IQ2_XXS, "IQ2_XXS", QK_K, 2 + QK_K / 4, false},
    {GgmlType::IQ2_XS, "IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32, false},
    {GgmlType::IQ3_XXS, "IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8, false},
    {GgmlType::IQ1_S, "IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16, false},
    {GgmlType::IQ4_NL, "IQ4_NL", 32, 2 + 16, false},
    {GgmlType::IQ3_S, "IQ3_S", QK_K,
     2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4, false},
    {GgmlType::IQ2_S, "IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16, false},
    {GgmlType::IQ4_XS, "IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64, false},
    {GgmlType::I8, "I8", 1, 1, false},
    {GgmlType::I16, "I16", 1, 2, false},
    {GgmlType::I32, "I32", 1, 4, false},
    {GgmlType::I64, "I64", 1, 8, false},
    {GgmlType::F64, "F64", 1, 8, false},
    {GgmlType::IQ1_M, "IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32, false},
    {GgmlType::BF16, "BF16", 1, 2, true},
    {GgmlType::TQ1_0, "TQ1_0", QK_K, 2 + 4 * 13, false},
    {GgmlType::TQ2_0, "TQ2_0", QK_K, 2 + 64, false},
    {GgmlType::MXFP4, "MXFP4", 32, 1 + 16, true},
    {GgmlType::NVFP4, "NVFP4", 64, 4 + 32, false},
    {GgmlType::Q1_0, "Q1_0", 128, 2 + 16, false},
};

} // namespace

std::optional<GgmlType>
moec::gguf::makeOwnGroupType(OwnGroupType f) {
  if ((f.bits != 2 && f.bits != 3 && f.bits != 4 && f.bits != 8) ||
      f.group == 0 || f.group % 8 != 0 || f.group >= 4096)
    return std::nullopt;
  return GgmlType(MOEC_BUNDLE_OWN_TYPE(f.bits, f.group, f.asymmetric ? 1 : 0));
}

std::optional<OwnGroupType> moec::gguf::getOwnGroupType(GgmlType type) {
  uint32_t id = static_cast<uint32_t>(type);
  if ((id & ~0x1ffffu) != MOEC_BUNDLE_OWN_TYPE_BASE)
    return std::nullopt;
  OwnGroupType f{(id >> 12) & 0xf, id & 0xfff, ((id >> 16) & 1) != 0};
  std::optional<GgmlType> canonical = makeOwnGroupType(f);
  if (!canonical || *canonical != type)
    return std::nullopt;
  return f;
}

namespace {
/// The name of an own type, kept for the process's life (GgmlTypeInfo holds
/// a StringRef).
llvm::StringRef ownTypeName(OwnGroupType f, uint32_t id) {
  static std::mutex mutex;
  static std::map<uint32_t, std::string> names;
  std::lock_guard<std::mutex> lock(mutex);
  std::string &name = names[id];
  if (name.empty())
    name = "INT" + std::to_string(f.bits) + "_G" + std::to_string(f.group) +
           (f.asymmetric ? "_ASYM" : "");
  return name;
}
} // namespace

std::optional<GgmlTypeInfo> moec::gguf::lookupGgmlType(uint32_t id) {
  if (std::optional<OwnGroupType> own = getOwnGroupType(GgmlType(id)))
    return GgmlTypeInfo{GgmlType(id), ownTypeName(*own, id), own->group,
                        int64_t(2 + (own->asymmetric ? 2 : 0) +
                                own->group * own->bits / 8),
                        true};
  for (const GgmlTypeInfo &info : kTypes)
    if (static_cast<uint32_t>(info.type) == id)
      return info;
  return std::nullopt;
}

GgmlTypeInfo moec::gguf::getGgmlTypeInfo(GgmlType type) {
  std::optional<GgmlTypeInfo> info =
      lookupGgmlType(static_cast<uint32_t>(type));
  assert(info && "every enumerator is in the table");
  return *info;
}

std::optional<GgmlType> moec::gguf::parseGgmlTypeName(llvm::StringRef name) {
  for (const GgmlTypeInfo &info : kTypes)
    if (info.name.equals_insensitive(name))
      return info.type;
  // int4_g32, int3_g64_asym
  std::string lower = name.lower();
  llvm::StringRef rest(lower);
  OwnGroupType f{0, 0, false};
  if (!rest.consume_front("int") || rest.consumeInteger(10, f.bits) ||
      !rest.consume_front("_g") || rest.consumeInteger(10, f.group))
    return std::nullopt;
  if (rest.consume_front("_asym"))
    f.asymmetric = true;
  else
    rest.consume_front("_sym");
  if (!rest.empty())
    return std::nullopt;
  return makeOwnGroupType(f);
}

std::string moec::gguf::computeSupportedGgmlTypeNames() {
  std::string names;
  for (const GgmlTypeInfo &info : kTypes) {
    if (!info.computeSupported)
      continue;
    if (!names.empty())
      names += ", ";
    names += info.name.str();
  }
  return names + ", INT2/INT3/INT4/INT8_G<group>[_ASYM] (moec's own)";
}

int64_t moec::gguf::getSplitHeaderBytes(GgmlType type) {
  if (std::optional<OwnGroupType> own = getOwnGroupType(type))
    return own->asymmetric ? 4 : 2;
  switch (type) {
  case GgmlType::Q4_0:
  case GgmlType::Q5_0:
  case GgmlType::Q8_0:
    return 2;
  case GgmlType::Q4_1:
  case GgmlType::Q5_1:
    return 4;
  default:
    return 0;
  }
}
