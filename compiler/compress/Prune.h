//===- Prune.h - Expert pruning --------------------------------*- C++ -*-===//
//
// Removes the least useful routed experts of every MoE layer, as measured by
// calibration (moec calibrate):
//
//   REAP (Lasby et al. 2025): the mean over the tokens routed to the expert
//   of router weight x the L2 norm of the expert's output -- how much the
//   expert actually moves the hidden state when it is chosen;
//   frequency: tokens routed to it (for comparison).
//
// The same number of experts goes from every layer (GGUF has one expert
// count per model): floor(fraction x experts). Their slices leave the
// stacked expert tensors and their rows leave the router, so the softmax
// over router logits runs over the survivors only: the family's routing
// (top-k, renormalised where it renormalises) then weighs the survivors as
// it would have weighed them had the others never existed. k stays, capped
// at the experts left. Shared experts are separate tensors and are never
// pruned. The kept experts' original ids go into the GGUF metadata
// (moec.pruning.kept_experts, layer-major).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_COMPRESS_PRUNE_H
#define MOEC_COMPILER_COMPRESS_PRUNE_H

#include "compiler/compress/CalibrationFile.h"
#include "compiler/compress/Order.h"
#include "compiler/model/WeightStore.h"

#include "llvm/Support/Error.h"

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace moec::compress {

enum class PruneScoring { Reap, Frequency };

std::optional<PruneScoring> parsePruneScoring(llvm::StringRef name);
llvm::StringRef getPruneScoringName(PruneScoring scoring);

struct PruneOptions {
  /// Share of each layer's routed experts to remove, in [0, 1).
  double fraction = 0;
  PruneScoring scoring = PruneScoring::Reap;
  /// With quantization: which step goes first (compress/Order.h).
  PruneOrder order = PruneOrder::Auto;
  /// Auto: perplexity windows at the end of the calibration text that no
  /// calibration sees, on which both orders are measured.
  int64_t orderEvalChunks = 4;
};

struct PruneChoice {
  /// Per MoE layer, the original ids of the experts kept, ascending.
  std::vector<std::vector<uint32_t>> kept;
  /// One line per layer: what went, with scores.
  std::vector<std::string> log;
};

/// Scores every expert from the calibration and chooses who stays. Errors:
/// a calibration of another model (layers, experts), nothing to prune, or
/// all experts pruned.
llvm::Expected<PruneChoice> choosePrunedExperts(const model::ModelConfig &config,
                                                const CalibrationFile &calibration,
                                                const PruneOptions &options);

/// Writes the model without the pruned experts as GGUF at `path` (weights
/// in their types, bytes unchanged).
llvm::Error writePrunedGguf(const model::WeightStore &store,
                            const PruneChoice &choice, llvm::StringRef path,
                            std::function<void(uint64_t, uint64_t)> progress = {});

} // namespace moec::compress

#endif // MOEC_COMPILER_COMPRESS_PRUNE_H
