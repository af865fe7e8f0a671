//===- GgmlType.h - ggml tensor types and their storage sizes ---*- C++ -*-===//
//
// Every tensor type id that a GGUF file can carry, with its block size and
// bytes per block (ggml's type_traits), so that the reader can size every
// tensor, including those moec does not compute with.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_GGUF_GGMLTYPE_H
#define MOEC_COMPILER_GGUF_GGMLTYPE_H

#include "llvm/ADT/StringRef.h"

#include <cstdint>
#include <optional>

namespace moec::gguf {

/// ggml's tensor type ids, as stored in GGUF tensor infos. Ids 4, 5 and
/// 31-33, 36-38 belong to removed types and are not listed.
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  NVFP4 = 40,
  Q1_0 = 41,
};

struct GgmlTypeInfo {
  GgmlType type;
  llvm::StringRef name;
  /// Elements per block (1 for plain types).
  int64_t blockSize;
  /// Bytes per block.
  int64_t blockBytes;
  /// Whether moec computes with this type (has a reference dequantizer and,
  /// later, kernels). Tensors of other types are readable but not importable.
  bool computeSupported;
};

/// The description of type id `id`, or nullopt when no ggml type has it.
std::optional<GgmlTypeInfo> lookupGgmlType(uint32_t id);

/// The description of a known type.
GgmlTypeInfo getGgmlTypeInfo(GgmlType type);

/// The type named `name` (case-insensitive: "q4_k", "Q4_K", "f16").
std::optional<GgmlType> parseGgmlTypeName(llvm::StringRef name);

/// The names of all types moec computes with, comma-separated.
std::string computeSupportedGgmlTypeNames();

/// Bytes of a block's leading scale fields (its f16 scale, and its f16 min
/// where the format has one) that row-interleaved storage keeps apart from
/// the rest of the block (compiler/emit/Repack.h), so that a kernel loads a
/// tile's scales as one vector and its rows' codes as one stream: 2 for
/// Q4_0, Q5_0, Q8_0 and symmetric own formats, 4 for Q4_1, Q5_1 and
/// asymmetric own formats, 0 for every other type (its blocks stay whole).
int64_t getSplitHeaderBytes(GgmlType type);

/// moec's own group-wise formats (compiler/quant/GroupFormats.h) as tensor
/// types: ids above every ggml id (MOEC_BUNDLE_OWN_TYPE in
/// runtime/abi/moec_bundle.h), named "INT4_G32", "INT3_G64_ASYM". Only moec
/// reads them: they appear in the GGUF files moec writes for itself and in
/// bundles, never in a GGUF for llama.cpp.
struct OwnGroupType {
  unsigned bits;  // 2, 3, 4 or 8
  unsigned group; // a multiple of 8 below 4096
  bool asymmetric;
};
/// The type of an own format, or nullopt for an invalid one.
std::optional<GgmlType> makeOwnGroupType(OwnGroupType format);
/// The own format a type is, or nullopt for a ggml type.
std::optional<OwnGroupType> getOwnGroupType(GgmlType type);

} // namespace moec::gguf

#endif // MOEC_COMPILER_GGUF_GGMLTYPE_H
