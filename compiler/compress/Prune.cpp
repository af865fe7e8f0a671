//===- Prune.cpp - Expert pruning -----------------------------------------===//

#include "compiler/compress/Prune.h"
#include "compiler/gguf/GgufFile.h"
#include "compiler/gguf/GgufWriter.h"

#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <numeric>

using namespace llvm;
using namespace moec;
using namespace moec::compress;
using model::StoredTensor;
using model::TensorRole;

std::optional<PruneScoring> moec::compress::parsePruneScoring(StringRef name) {
  if (name == "reap")
    return PruneScoring::Reap;
  if (name == "frequency")
    return PruneScoring::Frequency;
  return std::nullopt;
}

StringRef moec::compress::getPruneScoringName(PruneScoring scoring) {
  return scoring == PruneScoring::Reap ? "reap" : "frequency";
}

Expected<PruneChoice>
moec::compress::choosePrunedExperts(const model::ModelConfig &c,
                                    const CalibrationFile &calibration,
                                    const PruneOptions &options) {
  if (!(options.fraction > 0 && options.fraction < 1))
    return createStringError("--prune-experts must be in (0, 1), got " +
                             std::to_string(options.fraction));
  const auto &layers = calibration.getLayers();
  if (int64_t(layers.size()) != c.numLayers)
    return createStringError(calibration.getPath() + ": statistics of " +
                             Twine(layers.size()).str() +
                             " MoE layers, the model has " +
                             Twine(c.numLayers).str());
  int64_t prune = int64_t(options.fraction * double(c.numExperts));
  if (prune == 0)
    return createStringError("--prune-experts=" +
                             std::to_string(options.fraction) + " of " +
                             Twine(c.numExperts).str() +
                             " experts prunes none");
  PruneChoice choice;
  for (size_t l = 0; l < layers.size(); ++l) {
    const CalibrationFile::LayerExperts &stats = layers[l];
    if (int64_t(stats.tokens.size()) != c.numExperts)
      return createStringError(calibration.getPath() + ": layer " +
                               Twine(l).str() + " has statistics of " +
                               Twine(stats.tokens.size()).str() +
                               " experts, the model " +
                               Twine(c.numExperts).str());
    std::vector<double> score(stats.tokens.size());
    for (size_t e = 0; e < score.size(); ++e)
      score[e] = options.scoring == PruneScoring::Frequency
                     ? double(stats.tokens[e])
                 : stats.tokens[e] ? stats.reap[e] / double(stats.tokens[e])
                                   : 0.0;
    // Lowest score first; the higher id goes first among equals, so that
    // ties keep the lower ids. A total order, so std::sort is
    // deterministic (std::stable_sort warns in libstdc++ 12 under clang).
    std::vector<uint32_t> order(score.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
      return score[a] != score[b] ? score[a] < score[b] : a > b;
    });
    std::vector<uint32_t> kept(order.begin() + prune, order.end());
    std::sort(kept.begin(), kept.end());
    std::string line;
    raw_string_ostream os(line);
    os << "layer " << l << ": pruned";
    for (int64_t i = 0; i < prune; ++i)
      os << " " << order[i] << format(" (%.4g)", score[order[i]]);
    choice.kept.push_back(std::move(kept));
    choice.log.push_back(line);
  }
  return choice;
}

Error moec::compress::writePrunedGguf(
    const model::WeightStore &store, const PruneChoice &choice, StringRef path,
    std::function<void(uint64_t, uint64_t)> progress) {
  model::ModelConfig c = store.getConfig();
  int64_t kept = int64_t(choice.kept.front().size());
  for (const std::vector<uint32_t> &k : choice.kept)
    if (int64_t(k.size()) != kept)
      return createStringError("pruning must keep as many experts in every "
                               "layer");
  gguf::GgufWriter writer;
  std::string arch = c.family->ggufArch.str() + ".";
  if (const gguf::GgufFile *source = store.getGguf()) {
    for (const gguf::KeyValue &kv : source->getMetadata())
      writer.setMetadata(kv.key, gguf::WriteValue::copyOf(kv.value));
  } else {
    model::writeGgufConfig(c, "moec prune of " + store.getFiles().front(),
                           writer);
  }
  writer.setMetadata(arch + "expert_count",
                     gguf::WriteValue::u32(uint32_t(kept)));
  writer.setMetadata(arch + "expert_used_count",
                     gguf::WriteValue::u32(uint32_t(
                         std::min<int64_t>(kept, c.numExpertsUsed))));
  std::vector<gguf::WriteValue> ids;
  for (const std::vector<uint32_t> &k : choice.kept)
    for (uint32_t e : k)
      ids.push_back(gguf::WriteValue::u32(e));
  writer.setMetadata("moec.pruning.kept_experts",
                     gguf::WriteValue::array(gguf::ValueType::UInt32,
                                             std::move(ids)));

  for (const StoredTensor &t : store.getTensors()) {
    bool bank = t.role && (t.role->kind == TensorRole::ExpertGate ||
                           t.role->kind == TensorRole::ExpertUp ||
                           t.role->kind == TensorRole::ExpertDown);
    bool router = t.role && t.role->kind == TensorRole::Router;
    if (!bank && !router) {
      if (Error e = writer.addTensor(
              t.name, t.dims, t.type, [&store, &t](MutableArrayRef<uint8_t> out) {
                store.copyBytes(t, 0, out.size(), out.data());
                store.releaseBytes(t, 0, out.size());
              }))
        return e;
      continue;
    }
    const std::vector<uint32_t> &keep = choice.kept[size_t(t.role->layer)];
    if (bank && t.hasMixedExperts()) {
      // Experts in different formats: the survivors, one stacked tensor
      // when they share a format, else one tensor each (moec's own GGUF).
      bool one = llvm::all_of(keep, [&](uint32_t x) {
        return t.getExpertType(x) == t.getExpertType(keep.front());
      });
      SmallVector<int64_t, 4> dims(t.dims.begin(), t.dims.end());
      dims[2] = one ? int64_t(keep.size()) : 1;
      if (!one)
        dims.pop_back();
      for (size_t i = 0; i < (one ? 1 : keep.size()); ++i) {
        std::vector<uint32_t> which =
            one ? keep : std::vector<uint32_t>{keep[i]};
        if (Error e = writer.addTensor(
                one ? t.name : model::getExpertSliceName(t.name, int64_t(i)),
                dims, t.getExpertType(which.front()),
                [&store, &t, which](MutableArrayRef<uint8_t> out) {
                  uint64_t at = 0;
                  for (uint32_t x : which) {
                    store.copyBytes(t, t.getExpertOffset(x),
                                    t.getExpertBytes(x), out.data() + at);
                    at += t.getExpertBytes(x);
                  }
                }))
          return e;
      }
      continue;
    }
    // The kept experts' slices (a bank: dims[2] experts) or rows (the
    // router: dims[1] experts), in order.
    size_t experts = bank ? size_t(t.dims[2]) : size_t(t.dims[1]);
    uint64_t slice = t.numBytes / experts;
    SmallVector<int64_t, 4> dims(t.dims.begin(), t.dims.end());
    dims[bank ? 2 : 1] = kept;
    if (Error e = writer.addTensor(
            t.name, dims, t.type,
            [&store, &t, &keep, slice](MutableArrayRef<uint8_t> out) {
              for (size_t i = 0; i < keep.size(); ++i)
                store.copyBytes(t, uint64_t(keep[i]) * slice, slice,
                                out.data() + i * slice);
              store.releaseBytes(t, 0, t.numBytes);
            }))
      return e;
  }
  return writer.write(path, std::move(progress));
}
