//===- Allocate.cpp - Formats under a size budget -------------------------===//

#include "compiler/compress/Allocate.h"
#include "compiler/compress/CalibrationFile.h"
#include "compiler/quant/Dequantize.h"
#include "compiler/quant/ImportanceQuantize.h"
#include "compiler/quant/Quantize.h"

#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>

using namespace llvm;
using namespace moec;
using namespace moec::compress;
using gguf::GgmlType;
using model::StoredTensor;

namespace {

struct Choice {
  GgmlType type;
  uint64_t bytes;
  double error;
};

/// One tensor to allocate and its candidates, cheapest first after
/// pruning to the lower convex hull.
struct Unit {
  /// One tensor, or gate and up of the same layer, which the CPU backend
  /// runs as one fused kernel and so must share a format.
  llvm::SmallVector<const StoredTensor *, 2> tensors;
  std::vector<Choice> hull;
  size_t chosen = 0;
  /// One expert of the tensors (banks), or -1: all of them.
  int64_t expert = -1;
};

/// The tensor `t` shares its format with (up for gate, gate for up; experts
/// and shared experts), or null.
const StoredTensor *partnerOf(const model::WeightStore &store,
                              const StoredTensor &t) {
  if (!t.role)
    return nullptr;
  using K = model::TensorRole::Kind;
  K partner;
  switch (t.role->kind) {
  case K::ExpertGate:
    partner = K::ExpertUp;
    break;
  case K::ExpertUp:
    partner = K::ExpertGate;
    break;
  case K::SharedGate:
    partner = K::SharedUp;
    break;
  case K::SharedUp:
    partner = K::SharedGate;
    break;
  default:
    return nullptr;
  }
  for (const StoredTensor &other : store.getTensors())
    if (other.role && other.role->kind == partner &&
        other.role->layer == t.role->layer)
      return &other;
  return nullptr;
}

/// The predicted error of `t` in each format of `menu`: sampled rows of
/// every matrix quantized as the compression will, importance-weighted,
/// scaled to the matrix's rows and weighted by the expert's routing mass.
/// Per matrix (expert) of `t`, per format of `menu`.
std::vector<std::vector<double>>
measureErrors(const model::WeightStore &store, const StoredTensor &t,
              ArrayRef<GgmlType> menu, const CompressOptions &options,
              int64_t sampleRows, int64_t onlyMatrix = -1) {
  int64_t cols = t.dims[0];
  int64_t rows = elementCount(t) / cols;
  const CalibrationFile *calibration = options.calibration;
  const CalibrationFile::TensorStats *stats =
      calibration ? calibration->find(t.name) : nullptr;
  if (stats && stats->columns != cols)
    stats = nullptr;
  bool isExperts = classify(t) == TensorClass::Experts;
  int64_t matrices = isExperts && t.dims.size() == 3 ? t.dims[2] : 1;
  int64_t rowsPerMatrix = rows / matrices;
  int64_t sampled = std::min(rowsPerMatrix, std::max<int64_t>(1, sampleRows));

  // Routing mass per expert, as the share of calibration tokens' weight.
  std::vector<double> weightOf(matrices, 1.0);
  if (isExperts && calibration && t.role) {
    const auto &layers = calibration->getLayers();
    if (t.role->layer >= 0 && size_t(t.role->layer) < layers.size() &&
        layers[t.role->layer].weightMass.size() == size_t(matrices) &&
        calibration->getTokens() > 0)
      for (int64_t e = 0; e < matrices; ++e)
        weightOf[e] = layers[t.role->layer].weightMass[e] /
                      double(calibration->getTokens());
  }

  gguf::GgmlTypeInfo from = gguf::getGgmlTypeInfo(t.type);
  uint64_t fromRowBytes = cols / from.blockSize * from.blockBytes;
  std::vector<std::vector<double>> errors(
      matrices, std::vector<double>(menu.size(), 0.0));
  std::vector<uint8_t> raw(fromRowBytes), blocks;
  std::vector<float> values(cols);
  for (int64_t m = 0; m < matrices; ++m) {
    if (weightOf[m] == 0 || (onlyMatrix >= 0 && m != onlyMatrix))
      continue; // never routed to: its error costs nothing
    const float *importance = nullptr;
    if (stats && stats->rows[size_t(m < stats->experts ? m : 0)] >=
                     options.minCalibrationRows)
      importance = stats->meanSquares + (m < stats->experts ? m : 0) * cols;
    std::vector<double> sums(menu.size(), 0.0);
    for (int64_t s = 0; s < sampled; ++s) {
      int64_t r = m * rowsPerMatrix + s * rowsPerMatrix / sampled;
      store.copyBytes(t, uint64_t(r) * fromRowBytes, fromRowBytes,
                 raw.data());
      quant::dequantizeRow(t.type, raw.data(), values.data(), cols);
      for (size_t f = 0; f < menu.size(); ++f) {
        quant::QuantFormat format = quant::QuantFormat::fromType(menu[f]);
        blocks.resize(format.rowBytes(cols));
        if (options.rounding == Rounding::Importance)
          quant::quantizeRowImportance(format, values.data(), blocks.data(),
                                       cols, importance,
                                       {/*magnitudeFactor=*/true});
        else
          quant::quantizeRow(menu[f], values.data(), blocks.data(), cols);
        sums[f] += quant::importanceWeightedError(
            format, values.data(), blocks.data(), cols, importance);
      }
    }
    for (size_t f = 0; f < menu.size(); ++f)
      errors[m][f] = weightOf[m] * sums[f] * double(rowsPerMatrix) /
                     double(sampled);
  }
  if (onlyMatrix < 0 || onlyMatrix + 1 == matrices)
    store.releaseBytes(t, 0, t.numBytes);
  return errors;
}

/// The lower convex hull of the (bytes, error) points, cheapest first:
/// choices that another one dominates, or that lie above the segment
/// between their neighbours, are never worth their bytes.
std::vector<Choice> lowerHull(std::vector<Choice> choices) {
  std::sort(choices.begin(), choices.end(), [](const Choice &a, const Choice &b) {
    return a.bytes != b.bytes ? a.bytes < b.bytes : a.error < b.error;
  });
  std::vector<Choice> hull;
  for (const Choice &c : choices) {
    if (!hull.empty() && c.error >= hull.back().error)
      continue; // more bytes for no less error
    while (hull.size() >= 2) {
      const Choice &a = hull[hull.size() - 2], &b = hull.back();
      // b is above the segment a-c: drop it.
      double cross = (double(b.bytes) - double(a.bytes)) * (c.error - a.error) -
                     (b.error - a.error) * (double(c.bytes) - double(a.bytes));
      if (cross <= 0)
        hull.pop_back();
      else
        break;
    }
    hull.push_back(c);
  }
  return hull;
}

} // namespace

Expected<Allocation>
moec::compress::allocateFormats(const model::WeightStore &store,
                                const CompressOptions &options,
                                const AllocationOptions &allocation) {
  if (allocation.menu.empty())
    return createStringError("the format menu is empty");
  if ((allocation.sizeBudget != 0) == (allocation.bitsPerWeight != 0))
    return createStringError(
        "give one budget: a size for all weights or bits per expert weight");
  for (GgmlType type : allocation.menu)
    if (options.forLlamaCpp && gguf::getOwnGroupType(type))
      return createStringError(
          "the format menu holds " + gguf::getGgmlTypeInfo(type).name.str() +
          ", moec's own format, which llama.cpp cannot read (--emit=gguf)");
  for (GgmlType type : allocation.menu)
    if (!quant::canQuantize(type) || type == GgmlType::F16 ||
        type == GgmlType::BF16)
      return createStringError(
          "the format menu holds " + gguf::getGgmlTypeInfo(type).name.str() +
          ", which is not a quantized format moec writes");

  // Which tensors the budget covers: the compression's plan without the
  // allocation says what the others become.
  Expected<CompressionPlan> fixed = planCompression(store, options);
  if (!fixed)
    return fixed.takeError();
  std::vector<Unit> units;
  uint64_t fixedBytes = 0;
  bool expertsOnly = allocation.bitsPerWeight != 0;
  for (const TensorChoice &c : fixed->tensors) {
    TensorClass cls = classify(*c.tensor);
    bool open = false;
    if (!options.tensorTypes.count(c.tensor->name)) {
      if (cls == TensorClass::Experts)
        open = !options.expertsType;
      else if (!expertsOnly)
        open = (cls == TensorClass::Dense && !options.denseType) ||
               (cls == TensorClass::Embedding && !options.embeddingType) ||
               (cls == TensorClass::Output && !options.outputType);
    }
    if (!open) {
      if (!expertsOnly || cls == TensorClass::Experts)
        fixedBytes += c.numBytes;
      continue;
    }
    // Gate and up form one unit (the first of the two to come opens it);
    // per expert, one unit per expert of them.
    if (c.tensor->hasMixedExperts())
      return createStringError("tensor '" + c.tensor->name +
                               "' already stores its experts in different "
                               "formats: compress the F16/BF16/F32 model");
    bool split = allocation.perExpert && cls == TensorClass::Experts &&
                 c.tensor->dims.size() == 3;
    int64_t experts = split ? c.tensor->dims[2] : 1;
    const StoredTensor *partner = partnerOf(store, *c.tensor);
    for (int64_t e = 0; e < experts; ++e) {
      int64_t expert = split ? e : -1;
      bool joined = false;
      if (partner)
        for (Unit &u : units)
          if (u.tensors.front() == partner && u.expert == expert) {
            u.tensors.push_back(c.tensor);
            joined = true;
          }
      if (!joined)
        units.push_back({{c.tensor}, {}, 0, expert});
    }
  }
  for (const Unit &u : units)
    if (const StoredTensor *partner = partnerOf(store, *u.tensors.front()))
      if (u.tensors.size() != 2)
        return createStringError(
            "tensors '" + u.tensors.front()->name + "' and '" + partner->name +
            "' must share a format (one fused kernel), but only one of them "
            "is left to the budget");
  if (units.empty())
    return createStringError("no tensor is left for the budget to allocate: "
                             "the format flags fix them all");

  Allocation result;
  int64_t allocatedElements = 0;
  for (const Unit &u : units)
    for (const StoredTensor *t : u.tensors)
      allocatedElements +=
          elementCount(*t) / (u.expert < 0 ? 1 : t->dims[2]);
  result.budgetBytes =
      expertsOnly ? uint64_t(allocation.bitsPerWeight *
                             double(allocatedElements) / 8.0)
                  : allocation.sizeBudget;
  if (result.budgetBytes < fixedBytes)
    return createStringError("the budget of " + Twine(result.budgetBytes) +
                             " bytes is below the " + Twine(fixedBytes) +
                             " bytes of the tensors whose format is fixed");

  // The candidates of each unit, measured in parallel.
  unsigned threads = options.threads ? options.threads
                                     : std::max(1u, std::thread::hardware_concurrency());
  std::atomic<size_t> next{0};
  std::vector<std::string> problems(units.size());
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < units.size();) {
      Unit &u = units[i];
      std::vector<GgmlType> fits;
      for (GgmlType type : allocation.menu) {
        bool all = true;
        for (const StoredTensor *t : u.tensors)
          all &= t->dims[0] % gguf::getGgmlTypeInfo(type).blockSize == 0;
        if (all)
          fits.push_back(type);
      }
      if (fits.empty()) {
        problems[i] = "tensor '" + u.tensors.front()->name + "': rows of " +
                      std::to_string(u.tensors.front()->dims[0]) +
                      " elements fit no format of the menu";
        continue;
      }
      std::vector<Choice> choices;
      for (GgmlType type : fits)
        choices.push_back({type, 0, 0.0});
      for (const StoredTensor *t : u.tensors) {
        std::vector<std::vector<double>> errors = measureErrors(
            store, *t, fits, options, allocation.sampleRows, u.expert);
        for (size_t f = 0; f < fits.size(); ++f) {
          choices[f].bytes +=
              u.expert < 0 ? bytesIn(fits[f], *t)
                           : bytesIn(fits[f], *t) / uint64_t(t->dims[2]);
          for (size_t m = 0; m < errors.size(); ++m)
            choices[f].error += errors[m][f];
        }
      }
      u.hull = lowerHull(std::move(choices));
    }
  };
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < std::min<size_t>(threads, units.size()); ++i)
    pool.emplace_back(work);
  work();
  for (std::thread &th : pool)
    th.join();
  for (const std::string &p : problems)
    if (!p.empty())
      return createStringError(p);

  // Start from the cheapest choice of every unit, then take upgrades in
  // order of error removed per byte while they fit.
  uint64_t used = fixedBytes;
  for (const Unit &u : units)
    used += u.hull.front().bytes;
  if (used > result.budgetBytes)
    return createStringError(
        "the budget of " + Twine(result.budgetBytes) +
        " bytes is below the smallest the menu allows (" + Twine(used) +
        " bytes)");
  struct Step {
    double ratio;
    size_t unit;
    size_t to;
  };
  auto stepOf = [&](size_t i) -> std::optional<Step> {
    const Unit &u = units[i];
    if (u.chosen + 1 >= u.hull.size())
      return std::nullopt;
    const Choice &a = u.hull[u.chosen], &b = u.hull[u.chosen + 1];
    return Step{(a.error - b.error) / double(b.bytes - a.bytes), i,
                u.chosen + 1};
  };
  auto worse = [](const Step &a, const Step &b) {
    return a.ratio != b.ratio ? a.ratio < b.ratio : a.unit > b.unit;
  };
  std::vector<Step> heap;
  for (size_t i = 0; i < units.size(); ++i)
    if (std::optional<Step> s = stepOf(i))
      heap.push_back(*s);
  std::make_heap(heap.begin(), heap.end(), worse);
  // Only the first upgrade cut off bounds the gap: the LP optimum follows
  // the greedy up to it and takes a fraction of it; later upgrades that
  // still fit only lower our error.
  bool cutOff = false;
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), worse);
    Step s = heap.back();
    heap.pop_back();
    Unit &u = units[s.unit];
    uint64_t extra = u.hull[s.to].bytes - u.hull[u.chosen].bytes;
    if (used + extra > result.budgetBytes) {
      // The LP relaxation would take a fraction of this upgrade: the
      // integer optimum is at most its error drop better than ours.
      if (!cutOff) {
        result.gapBound = u.hull[u.chosen].error - u.hull[s.to].error;
        cutOff = true;
      }
      continue;
    }
    used += extra;
    u.chosen = s.to;
    if (std::optional<Step> n = stepOf(s.unit)) {
      heap.push_back(*n);
      std::push_heap(heap.begin(), heap.end(), worse);
    }
  }

  result.totalBytes = used;
  result.allocatedElements = allocatedElements;
  for (const Unit &u : units) {
    const Choice &c = u.hull[u.chosen];
    for (const StoredTensor *t : u.tensors) {
      if (u.expert < 0) {
        result.types[t->name] = c.type;
        continue;
      }
      std::vector<GgmlType> &perExpert = result.expertTypes[t->name];
      perExpert.resize(size_t(t->dims[2]), c.type);
      perExpert[size_t(u.expert)] = c.type;
    }
    result.allocatedBytes += c.bytes;
    result.predictedError += c.error;
  }
  // Banks whose experts all got one format are ordinary tensors.
  size_t mixed = 0;
  for (auto it = result.expertTypes.begin(); it != result.expertTypes.end();) {
    auto current = it++;
    if (llvm::all_equal(current->getValue())) {
      result.types[current->getKey()] = current->getValue().front();
      result.expertTypes.erase(current);
    } else {
      ++mixed;
    }
  }
  if (expertsOnly)
    result.totalBytes = result.allocatedBytes;
  std::string line;
  raw_string_ostream os(line);
  os << "allocated " << result.types.size() + mixed << " tensors"
     << (allocation.perExpert
             ? " (" + std::to_string(mixed) + " with experts of mixed formats)"
             : std::string())
     << ": "
     << result.allocatedBytes << " bytes, "
     << format("%.3f", 8.0 * double(result.allocatedBytes) /
                           double(allocatedElements))
     << " bits per weight; budget " << result.budgetBytes << " bytes"
     << (expertsOnly ? " (routed experts)" : " (all weights)")
     << ", used " << used << "; predicted error "
     << format("%.6g", result.predictedError) << ", at most "
     << format("%.6g", result.gapBound) << " above the optimum";
  result.log.push_back(line);
  return result;
}
