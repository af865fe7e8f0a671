//===- Order.h - Pruning and quantization: which goes first ----*- C++ -*-===//
//
// When a compilation both prunes experts and quantizes, the two steps can
// run in either order, and each changes what the other sees:
//
//   prune then quantize: the experts are scored on the original model; the
//   quantization's statistics (importance, Hessians, allocation) come from
//   the pruned model, whose surviving experts receive the tokens of the
//   pruned ones;
//   quantize then prune: the quantization sees every expert; the experts
//   are scored on the quantized model, which is the one that will run.
//
// The driver (compiler/driver) builds both, the second step of each
// re-calibrated on the first step's output, and keeps the one whose output
// distribution is closer to the original model's (mean KL divergence) on
// windows of the calibration text that no calibration saw. This file holds
// the parts of that search that need no compiler: the order's names, where
// the calibration text is cut for the held-aside windows, and the figures
// model-run reports.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_COMPRESS_ORDER_H
#define MOEC_COMPILER_COMPRESS_ORDER_H

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"

#include <cstdint>
#include <optional>

namespace moec::compress {

enum class PruneOrder {
  /// Both orders built and measured; the better kept.
  Auto,
  PruneFirst,
  QuantizeFirst,
};

/// "auto", "prune-first", "quantize-first".
std::optional<PruneOrder> parsePruneOrder(llvm::StringRef name);
llvm::StringRef getPruneOrderName(PruneOrder order);
/// The compression record's key of a fixed order: "prune_then_quantize",
/// "quantize_then_prune".
llvm::StringRef getPruneOrderKey(PruneOrder order);

/// Where a calibration text is cut: the text from `offset` on is the
/// held-aside slice.
struct TextSplit {
  size_t offset = 0;
  /// Tokens of the text before and from `offset` (as `countTokens` counts
  /// them: BOS included, as model-run tokenizes a file).
  int64_t headTokens = 0, tailTokens = 0;
};

/// Cuts `text` at the latest line start whose tail still holds
/// `tailTokens` tokens; the start of a word when the lines are too long to
/// leave any head (one long line). Errors when even the whole text is
/// shorter.
llvm::Expected<TextSplit>
splitForEvaluation(llvm::StringRef text, int64_t tailTokens,
                   llvm::function_ref<int64_t(llvm::StringRef)> countTokens);

/// What model-run --perplexity --kl-divergence reports (its --stats
/// "kl_divergence" object).
struct KlFigures {
  double mean = 0, p99 = 0, sameTop1 = 0, lnPplRatio = 0;
  int64_t positions = 0;
};

/// The figures of a model-run --stats file's JSON; an error naming what is
/// missing.
llvm::Expected<KlFigures> parseKlStats(llvm::StringRef json);

llvm::json::Object toJson(const KlFigures &figures);

} // namespace moec::compress

#endif // MOEC_COMPILER_COMPRESS_ORDER_H
