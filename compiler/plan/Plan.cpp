//===- Plan.cpp - What stays in memory under a budget ---------------------===//

#include "compiler/plan/Plan.h"
#include "compiler/compress/CalibrationFile.h"

#include "compiler/support/FileUtil.h"
#include "compiler/support/Json.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/MathExtras.h"

#include <algorithm>
#include <cmath>

using namespace llvm;
using namespace moec;
using namespace moec::plan;

Expected<uint64_t> moec::plan::parseSize(StringRef text) {
  StringRef s = text.trim();
  size_t digits = s.find_first_not_of("0123456789.");
  StringRef number = s.take_front(digits), unit = s.drop_front(
                                                   number.size()).trim();
  double value;
  if (number.empty() || number.getAsDouble(value) || !(value >= 0))
    return createStringError(inconvertibleErrorCode(),
                             "'%s' is not a size (like 6GiB, 512MiB, 1.5GB)",
                             text.str().c_str());
  struct {
    const char *name;
    double factor;
  } units[] = {{"", 1},         {"B", 1},         {"KiB", 1024.0},
               {"MiB", 1048576.0}, {"GiB", 1073741824.0},
               {"TiB", 1099511627776.0}, {"KB", 1e3}, {"MB", 1e6},
               {"GB", 1e9},     {"TB", 1e12},     {"K", 1024.0},
               {"M", 1048576.0}, {"G", 1073741824.0}};
  for (const auto &u : units)
    if (unit.equals_insensitive(u.name) && (unit == u.name || unit.size() > 1)) {
      double bytes = value * u.factor;
      if (bytes > 1.8e19)
        break;
      return static_cast<uint64_t>(std::llround(bytes));
    }
  return createStringError(inconvertibleErrorCode(),
                           "'%s' has an unknown unit '%s' (B, KiB, MiB, GiB, "
                           "TiB, KB, MB, GB, TB)",
                           text.str().c_str(), unit.str().c_str());
}

Expected<RoutingCounts>
moec::plan::readRoutingCounts(StringRef path, const model::ModelConfig &c) {
  Expected<std::unique_ptr<MemoryBuffer>> buffer = mapFile(path);
  if (!buffer)
    return buffer.takeError();
  auto fail = [&](const Twine &message) {
    return createStringError(inconvertibleErrorCode(), path + ": " + message);
  };
  // A calib.dat (moec calibrate) carries the same routing object in its
  // JSON header as a --stats file.
  StringRef text = (*buffer)->getBuffer();
  if (compress::CalibrationFile::hasMagic(text)) {
    Expected<StringRef> header =
        compress::CalibrationFile::headerJson(text, path);
    if (!header)
      return header.takeError();
    text = *header;
  }
  Expected<json::Value> json = parseUntrustedJson(text, 8);
  if (!json)
    return fail("invalid JSON: " + toString(json.takeError()));
  const json::Object *root = json->getAsObject();
  const json::Object *routing = root ? root->getObject("routing") : nullptr;
  const json::Array *layers = routing ? routing->getArray("counts") : nullptr;
  if (!layers)
    return fail("no routing.counts array");
  if (static_cast<int64_t>(layers->size()) != c.numLayers)
    return fail("routing.counts has " + Twine(layers->size()) +
                " layers but the model has " + Twine(c.numLayers));
  RoutingCounts counts;
  for (const json::Value &layer : *layers) {
    const json::Array *experts = layer.getAsArray();
    if (!experts || static_cast<int64_t>(experts->size()) != c.numExperts)
      return fail("routing.counts[" + Twine(counts.counts.size()) +
                  "] is not an array of " + Twine(c.numExperts) + " counts");
    std::vector<uint64_t> row;
    for (const json::Value &v : *experts) {
      std::optional<int64_t> n = v.getAsInteger();
      if (!n || *n < 0)
        return fail("routing counts must be non-negative integers");
      row.push_back(static_cast<uint64_t>(*n));
    }
    counts.counts.push_back(std::move(row));
  }
  return counts;
}

json::Value Plan::toJson() const {
  json::Array pins;
  for (auto [layer, expert] : pinned)
    pins.push_back(json::Array{layer, expert});
  return json::Object{{"budget_bytes", budgetBytes},
                      {"resident_bytes", residentBytes},
                      {"kv_cache_bytes", kvCacheBytes},
                      {"scratch_bytes", scratchBytes},
                      {"all_expert_bytes", allExpertBytes},
                      {"expert_cache_bytes", expertCacheBytes},
                      {"all_experts_resident", allExpertsResident},
                      {"pinned", std::move(pins)},
                      {"prefetch_depth", prefetchDepth},
                      {"minimum_budget", minimumBudget}};
}

Expected<Plan> moec::plan::makePlan(const model::WeightStore &store,
                                    const targets::TargetDescription &target,
                                    const PlanOptions &options) {
  const model::ModelConfig &c = store.getConfig();
  Plan p;
  p.budgetBytes = options.budgetBytes ? options.budgetBytes : target.memoryBytes;
  int64_t context = options.contextLength ? options.contextLength
                                          : c.contextLength;
  // KV caches as the backend stores them: keys and values per layer.
  p.kvCacheBytes = uint64_t(c.numLayers) * uint64_t(context) *
                   uint64_t(c.numKvHeads) * uint64_t(c.headDim) * 2 *
                   uint64_t(options.kvElementBytes);
  // A batch's activations (hidden state, Q/K/V/O, the widest FFN) and its
  // logits, in f32.
  int64_t widest = std::max({c.numHeads * c.headDim, c.expertFfnSize,
                             c.sharedExpertFfnSize, c.hiddenSize});
  p.scratchBytes = uint64_t(options.batchTokens) * 4 *
                   uint64_t(4 * c.hiddenSize + 3 * widest + c.vocabSize);

  // Expert extents as the cache holds them (bundle layout: gate|up|down,
  // parts 64-byte aligned, the slot rounded to the I/O block).
  std::vector<uint64_t> extent(c.numLayers, 0);
  for (const model::StoredTensor &t : store.getTensors()) {
    if (t.role->tensorClass != "experts") {
      p.residentBytes += t.numBytes;
      continue;
    }
    extent[t.role->layer] +=
        alignTo(t.numBytes / uint64_t(c.numExperts), 64);
  }
  uint64_t largest = 0;
  for (uint64_t &e : extent) {
    e = alignTo(e, target.ioBlockBytes);
    largest = std::max(largest, e);
    p.allExpertBytes += e * uint64_t(c.numExperts);
  }
  uint64_t fixed = p.residentBytes + p.kvCacheBytes + p.scratchBytes;
  uint64_t oneLayer = largest * uint64_t(c.numExpertsUsed);
  p.minimumBudget = fixed + oneLayer;
  if (p.budgetBytes < p.minimumBudget)
    return createStringError(
        inconvertibleErrorCode(),
        "--memory-budget: %llu bytes is too small for this model; it needs "
        "at least %llu bytes (%llu resident weights + %llu KV cache for %lld "
        "positions + %llu scratch + %llu for the %lld experts one layer "
        "routes a token to)",
        (unsigned long long)p.budgetBytes, (unsigned long long)p.minimumBudget,
        (unsigned long long)p.residentBytes,
        (unsigned long long)p.kvCacheBytes, (long long)context,
        (unsigned long long)p.scratchBytes, (unsigned long long)oneLayer,
        (long long)c.numExpertsUsed);

  uint64_t available = p.budgetBytes - fixed;
  if (available >= p.allExpertBytes) {
    p.allExpertsResident = true;
    p.expertCacheBytes = p.allExpertBytes;
    return p;
  }
  p.expertCacheBytes = available;
  // Pin the hottest experts, keeping at least half the cache for streaming
  // (and never less than one layer's worth).
  if (options.calibration) {
    std::vector<std::tuple<uint64_t, uint32_t, uint32_t>> byCount;
    for (int64_t l = 0; l < c.numLayers; ++l)
      for (int64_t e = 0; e < c.numExperts; ++e)
        byCount.emplace_back(options.calibration->counts[l][e], uint32_t(l),
                             uint32_t(e));
    // Most tokens first; ties in (layer, expert) order, deterministically.
    std::sort(byCount.begin(), byCount.end(), [](auto &a, auto &b) {
      if (std::get<0>(a) != std::get<0>(b))
        return std::get<0>(a) > std::get<0>(b);
      return std::make_pair(std::get<1>(a), std::get<2>(a)) <
             std::make_pair(std::get<1>(b), std::get<2>(b));
    });
    uint64_t pinBudget = available / 2 > oneLayer ? available / 2 : 0;
    uint64_t pinnedBytes = 0;
    for (auto [count, l, e] : byCount) {
      if (count == 0 || pinnedBytes + extent[l] > pinBudget)
        break;
      pinnedBytes += extent[l];
      p.pinned.emplace_back(l, e);
    }
  }
  // Prefetch as many layers ahead as the unpinned cache holds beyond the
  // current layer (at most two).
  uint64_t pinnedBytes = 0;
  for (auto [l, e] : p.pinned)
    pinnedBytes += extent[l];
  uint64_t layersHeld = (available - pinnedBytes) / std::max<uint64_t>(oneLayer, 1);
  p.prefetchDepth = static_cast<uint32_t>(
      std::min<uint64_t>(2, layersHeld > 0 ? layersHeld - 1 : 0));
  return p;
}
