//===- Plan.h - What stays in memory under a budget -------------*- C++ -*-===//
//
// The `plan` decision: from a model's weights, the target and a memory
// budget, what is resident (everything but the routed experts: embeddings,
// attention, norms, routers, shared experts; all experts too when they fit;
// else the hottest experts by calibration counts, pinned), how large the
// expert cache is, and how many layers ahead to prefetch. A budget below the
// minimum (resident set + KV cache + scratch + the experts one layer routes
// a token to) is an error that says the minimum.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_PLAN_PLAN_H
#define MOEC_COMPILER_PLAN_PLAN_H

#include "compiler/model/WeightStore.h"
#include "targets/TargetDescription.h"

#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"

#include <cstdint>
#include <utility>
#include <vector>

namespace moec::plan {

/// Routing counts per layer and expert (how many tokens chose each).
/// Read from JSON: {"routing": {"counts": [[c_00, c_01, ...], ...]}}, the
/// `routing` object that model-run --stats and calibration files carry.
struct RoutingCounts {
  std::vector<std::vector<uint64_t>> counts; // [layer][expert]
};
llvm::Expected<RoutingCounts> readRoutingCounts(llvm::StringRef path,
                                                const model::ModelConfig &c);

/// "6GiB", "512MiB", "1.5GB", "4096": bytes. Binary and decimal units.
llvm::Expected<uint64_t> parseSize(llvm::StringRef text);

struct Plan {
  uint64_t budgetBytes = 0;
  /// Dense weights (everything but routed experts).
  uint64_t residentBytes = 0;
  uint64_t kvCacheBytes = 0;
  /// Activations and logits of a batch (see makePlan).
  uint64_t scratchBytes = 0;
  /// Every expert extent, each rounded to the I/O block as the cache holds it.
  uint64_t allExpertBytes = 0;
  uint64_t expertCacheBytes = 0;
  bool allExpertsResident = false;
  /// Experts pinned in the cache (hottest by calibration).
  std::vector<std::pair<uint32_t, uint32_t>> pinned; // (layer, expert)
  uint32_t prefetchDepth = 0;
  uint64_t minimumBudget = 0;

  llvm::json::Value toJson() const;
};

struct PlanOptions {
  /// 0: the target's memory.
  uint64_t budgetBytes = 0;
  /// Positions the KV cache holds (0: the model's context length).
  int64_t contextLength = 0;
  /// Bytes of one key or value element in the KV caches (4: f32, 2: f16).
  int64_t kvElementBytes = 4;
  /// Tokens one prefill batch computes at once (scratch sizing).
  int64_t batchTokens = 512;
  const RoutingCounts *calibration = nullptr;
};

llvm::Expected<Plan> makePlan(const model::WeightStore &store,
                              const targets::TargetDescription &target,
                              const PlanOptions &options);

} // namespace moec::plan

#endif // MOEC_COMPILER_PLAN_PLAN_H
