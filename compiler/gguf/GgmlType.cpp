//===- GgmlType.cpp - ggml tensor type table ------------------------------===//

#include "compiler/gguf/GgmlType.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"

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

std::optional<GgmlTypeInfo> moec::gguf::lookupGgmlType(uint32_t id) {
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
  return std::nullopt;
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
  return names;
}
