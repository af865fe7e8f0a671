//===- Synth.h - Random-weight models of every supported family -*- C++ -*-===//
//
// Writes models with random weights, deterministic for a seed, at any size
// and with a chosen tensor type per tensor class: the test models of every
// suite and the benchmark model. Quantized tensors hold Gaussian values
// quantized with compiler/quant's round-to-nearest quantizers (every block
// format moec computes with has one), so that their blocks look like those
// of a quantized trained model: no random offsets, no heavy tails.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_MODEL_SYNTH_H
#define MOEC_COMPILER_MODEL_SYNTH_H

#include "compiler/gguf/GgmlType.h"
#include "compiler/model/ModelConfig.h"

#include "llvm/Support/Error.h"

#include <functional>
#include <string>

namespace moec::model {

struct SynthOptions {
  ModelConfig config;
  gguf::GgmlType expertsType = gguf::GgmlType::F16;
  /// When not empty: layer l's routed experts are of type
  /// expertsTypesPerLayer[l % size] (overrides expertsType), so that one
  /// model exercises several formats.
  std::vector<gguf::GgmlType> expertsTypesPerLayer;
  gguf::GgmlType attentionType = gguf::GgmlType::F16;
  gguf::GgmlType embeddingsType = gguf::GgmlType::F16;
  uint64_t seed = 0;
  /// Multiplies the router weights' spread. Random routers put experts
  /// near ties, where any rounding (8-bit activations, say) may pick other
  /// experts; trained routers are sharper, and a scale of ~10 is too.
  float routerScale = 1.0f;
  /// A GGUF whose tokenizer.* metadata is copied (its vocabulary size then
  /// sets the model's); empty for none.
  std::string vocabularyFile;
  /// Threads that generate weights (0: all cores).
  unsigned threads = 0;
};

/// The named size presets: "tiny" (a few hundred KB, for tests) and "bench"
/// (the benchmark model: qwen3moe, 16 layers, hidden 2048, 64 experts top-8,
/// expert FFN 1024, 32 heads / 4 KV heads of 128, about 3.8 GB with Q4_0
/// experts and Q8_0 elsewhere). Returns false for an unknown name.
bool applyPreset(llvm::StringRef preset, const FamilyInfo &family,
                 SynthOptions &options);

/// Writes the model as GGUF to `path` (atomically). `progress` gets bytes
/// written and the total.
llvm::Error writeSynthGguf(const SynthOptions &options, llvm::StringRef path,
                           std::function<void(uint64_t, uint64_t)> progress = {});

/// Writes the same model (same seed, same values) as a Hugging Face
/// checkpoint into `directory`: config.json and model.safetensors, or, with
/// `shards` > 1, model-0000N-of-0000M.safetensors and
/// model.safetensors.index.json. Routed experts are stored one tensor per
/// expert, as published checkpoints are; Mixtral's Q and K rows are
/// un-permuted (GGUF stores them permuted for interleaved RoPE). Types must
/// be F32, F16 or BF16.
llvm::Error writeSynthSafetensors(const SynthOptions &options,
                                  llvm::StringRef directory, unsigned shards);

} // namespace moec::model

#endif // MOEC_COMPILER_MODEL_SYNTH_H
