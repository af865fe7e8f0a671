//===- Compress.h - The compress phase: weights into chosen formats -*- C++ -*-===//
//
// Re-encodes a model's weights into the formats a user (or, with the
// allocator, a size budget) chose, tensor by tensor, and writes the result
// as a GGUF file: the input of the rest of the pipeline, and what
// `moec MODEL --emit=gguf` hands to llama.cpp users.
//
// What is quantized: every matrix (token embedding, output, attention and
// shared-expert projections, routed experts). Norms, biases and the router
// (ffn_gate_inp, like llama.cpp, which keeps routing exact) keep their
// type. A tensor already in its chosen type keeps its exact blocks; one in
// another quantized type is re-quantized only when asked (lossy twice).
// Rows whose length is not a multiple of a k-quant's 256 fall back to a
// 32-element format of at least the same bits, with a warning, as
// llama.cpp's quantizer does.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_COMPRESS_COMPRESS_H
#define MOEC_COMPILER_COMPRESS_COMPRESS_H

#include "compiler/gguf/GgmlType.h"
#include "compiler/model/WeightStore.h"

#include "llvm/ADT/StringMap.h"

#include <cstdint>
#include "llvm/Support/Error.h"

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace moec::compress {

class CalibrationFile;
class HessianFile;

/// How quantized values are chosen.
enum class Rounding {
  /// Round to nearest with the format's reference scales.
  Nearest,
  /// Search scales (and mins) minimising the importance-weighted error.
  Importance,
  /// GPTQ (error compensation under the inputs' Hessian) for moec's own
  /// formats; the other formats are rounded as Importance.
  Gptq,
};

std::optional<Rounding> parseRounding(llvm::StringRef name);

/// The tensor classes a format is chosen for.
enum class TensorClass { Experts, Dense, Embedding, Output, Kept };

/// The class of a tensor by its role: Kept for norms, biases, the router.
TensorClass classify(const model::StoredTensor &tensor);

/// The elements of `tensor`: the product of its dims.
int64_t elementCount(const model::StoredTensor &tensor);
/// The bytes of `tensor`'s elements in `type` (its rows a whole number of
/// the type's blocks).
uint64_t bytesIn(gguf::GgmlType type, const model::StoredTensor &tensor);

struct CompressOptions {
  /// Format per class; std::nullopt keeps each tensor's type.
  std::optional<gguf::GgmlType> expertsType, denseType, embeddingType,
      outputType;
  /// Per-tensor formats by name (from another GGUF: llama.cpp's presets),
  /// over the class formats.
  llvm::StringMap<gguf::GgmlType> tensorTypes;
  /// Per-expert formats of routed-expert banks by name (the allocation's,
  /// when it chooses per expert), over everything else.
  llvm::StringMap<std::vector<gguf::GgmlType>> expertTypes;
  Rounding rounding = Rounding::Nearest;
  /// Per-column importance for Rounding::Importance (moec calibrate); null:
  /// uniform importance (plain squared error).
  const CalibrationFile *calibration = nullptr;
  /// Experts that calibration routed fewer tokens to than this get uniform
  /// importance: a handful of rows is noise, not a statistic.
  uint64_t minCalibrationRows = 16;
  /// Tensors whose bytes were computed already (GPTQ, layer by layer).
  const llvm::StringMap<std::vector<uint8_t>> *precomputed = nullptr;
  /// Re-quantize tensors that are already quantized in another type.
  bool allowRequantize = false;
  /// The output is for llama.cpp (--emit=gguf): moec's own formats, which
  /// no other GGUF reader knows, are refused.
  bool forLlamaCpp = false;
  /// Worker threads (0: all cores).
  unsigned threads = 0;
};

/// What happens to one tensor.
struct TensorChoice {
  const model::StoredTensor *tensor;
  gguf::GgmlType type;
  enum Action { Copy, Convert } action;
  uint64_t numBytes;
  /// A bank whose experts get different formats: each expert's (`type` is
  /// expert 0's); written one GGUF tensor per expert.
  std::vector<gguf::GgmlType> expertTypes;
};

struct CompressionPlan {
  std::vector<TensorChoice> tensors;
  /// One line each: fallbacks and re-quantizations.
  std::vector<std::string> warnings;

  uint64_t totalBytes() const;
  /// Bytes and elements of the routed experts' tensors.
  uint64_t expertBytes() const;
  int64_t expertElements() const;
  bool changesAnything() const;
  /// One line per tensor class: bytes before and after, bits per weight,
  /// the formats chosen.
  std::vector<std::string> summary() const;
};

/// Chooses every tensor's format. Errors name the tensor and the reason
/// (an unsupported format, re-quantization without allowRequantize).
llvm::Expected<CompressionPlan> planCompression(const model::WeightStore &store,
                                                const CompressOptions &options);

/// Writes the model with the plan's formats as a GGUF file at `path`
/// (atomically): the source's metadata (a checkpoint's configuration when
/// the source is safetensors) and the tensors in model order. `progress`
/// gets bytes written and the total.
llvm::Error writeCompressedGguf(const model::WeightStore &store,
                                const CompressionPlan &plan,
                                const CompressOptions &options,
                                llvm::StringRef path,
                                std::function<void(uint64_t, uint64_t)>
                                    progress = {});

/// The layers (-1: tensors outside the layers) holding tensors that GPTQ
/// quantizes under `plan` (own formats, converted).
std::vector<int> getGptqLayers(const CompressionPlan &plan);

/// GPTQ of the plan's own-format tensors of `layer` under the Hessians of
/// that layer's inputs: their blocks go into `out` by name. Experts that
/// calibration saw fewer than minCalibrationRows times are rounded with
/// uniform importance instead (their Hessian is no statistic).
llvm::Error gptqQuantizeLayer(const model::WeightStore &store,
                              const CompressionPlan &plan,
                              const CompressOptions &options, int layer,
                              const HessianFile &hessians,
                              llvm::StringMap<std::vector<uint8_t>> &out);

/// Bits per element of `type` (blocks' bytes x 8 / block elements).
double bitsPerWeight(gguf::GgmlType type);

} // namespace moec::compress

#endif // MOEC_COMPILER_COMPRESS_COMPRESS_H
