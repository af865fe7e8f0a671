//===- ReferenceModel.cpp - The correctness oracle for compiled models ----===//

#include "test/reference/ReferenceModel.h"

#include "compiler/model/WeightStore.h"
#include "compiler/quant/Dequantize.h"

#include "llvm/Support/ErrorHandling.h"

#include <cmath>

using namespace llvm;
using namespace moec;
using namespace moec::reference;
using model::QkNorm;
using model::TensorRole;

//===----------------------------------------------------------------------===//
// Loading
//===----------------------------------------------------------------------===//

namespace {

/// `elements` values of `type` in `bytes` to f32 at `out`.
void dequantizeInto(const std::string &name, gguf::GgmlType type,
                    ArrayRef<uint8_t> bytes, int64_t rowLength,
                    int64_t elements, float *out) {
  gguf::GgmlTypeInfo info = gguf::getGgmlTypeInfo(type);
  if (!quant::canDequantize(type))
    fail("tensor '" + name + "' has type " + info.name +
         ", which has no dequantizer");
  // Blocks never span rows: the innermost dimension is a whole number of
  // blocks, so the tensor dequantizes as one long row.
  if (rowLength % info.blockSize != 0 ||
      static_cast<uint64_t>(elements / info.blockSize * info.blockBytes) !=
          bytes.size())
    fail("tensor '" + name + "' holds " + Twine(bytes.size()) +
         " bytes, which is not " + Twine(elements) + " elements of " +
         info.name);
  quant::dequantizeRow(type, bytes.data(), out, elements);
}

/// All elements of one stored tensor, dequantized to f32; a bank of mixed
/// formats expert by expert, each slice in its own.
std::vector<float> dequantize(const model::WeightStore &store,
                              const model::StoredTensor &t) {
  std::vector<uint8_t> bytes;
  bytes.reserve(t.numBytes);
  for (const model::StoredTensor::Extent &e : t.extents) {
    ArrayRef<uint8_t> part = store.getExtentData(e);
    bytes.insert(bytes.end(), part.begin(), part.end());
  }
  int64_t elements = 1;
  for (int64_t d : t.dims)
    elements *= d;
  if (t.dims.empty())
    fail("tensor '" + t.name + "' has no dimensions");
  std::vector<float> out(elements);
  int64_t slices = t.hasMixedExperts() ? t.dims.back() : 1;
  int64_t perSlice = elements / slices;
  for (int64_t e = 0; e < slices; ++e) {
    uint64_t offset = slices > 1 ? t.getExpertOffset(e) : 0;
    uint64_t size = slices > 1 ? t.getExpertBytes(e) : bytes.size();
    dequantizeInto(t.name, t.getExpertType(e),
                   ArrayRef<uint8_t>(bytes).slice(offset, size), t.dims[0],
                   perSlice, out.data() + e * perSlice);
  }
  return out;
}

} // namespace

ReferenceModel::ReferenceModel(const model::WeightStore &store)
    : config(store.getConfig()) {
  weights.resize(config.numLayers + 1);
  for (const model::StoredTensor &t : store.getTensors()) {
    if (!t.role)
      fail("tensor '" + t.name + "' has no role");
    std::vector<float> &slot = weights[t.role->layer + 1][t.role->kind];
    slot = dequantize(store, t);
    if (names.size() <= size_t(t.role->layer + 1))
      names.resize(t.role->layer + 2);
    names[t.role->layer + 1][t.role->kind] = t.name;
    byName[t.name] = &slot;
  }
  keys.resize(config.numLayers);
  values.resize(config.numLayers);
}

void ReferenceModel::observe(int layer, Kind kind, ArrayRef<float> x,
                             int expert) const {
  if (!observer)
    return;
  auto it = names[layer + 1].find(kind);
  if (it != names[layer + 1].end())
    observer->input(it->second, expert, x);
}

bool ReferenceModel::hasWeight(int layer, Kind kind) const {
  return weights[layer + 1].count(kind) != 0;
}

ArrayRef<float> ReferenceModel::weightOrNone(int layer, Kind kind) const {
  if (!hasWeight(layer, kind))
    return {};
  return weight(layer, kind);
}

const std::vector<float> &ReferenceModel::weight(int layer, Kind kind) const {
  auto it = weights[layer + 1].find(kind);
  if (it == weights[layer + 1].end())
    fail("layer " + Twine(layer) + " has no tensor of role " +
         Twine(static_cast<int>(kind)));
  return it->second;
}

MutableArrayRef<float> ReferenceModel::getWeight(StringRef name) {
  auto it = byName.find(name);
  if (it == byName.end())
    return {};
  return *it->second;
}

void ReferenceModel::reset() {
  for (std::vector<float> &k : keys)
    k.clear();
  for (std::vector<float> &v : values)
    v.clear();
  routing.clear();
  numPositions = 0;
}

//===----------------------------------------------------------------------===//
// Forward pass
//===----------------------------------------------------------------------===//

std::vector<float> ReferenceModel::decode(int32_t token) {
  return prefill(ArrayRef<int32_t>(token));
}

std::vector<float> ReferenceModel::prefill(ArrayRef<int32_t> tokens) {
  const int64_t h = config.hiddenSize, v = config.vocabSize;
  const int64_t count = static_cast<int64_t>(tokens.size());
  const int64_t start = numPositions;

  // Embedding lookup: row `token` of token_embd ([V][H]).
  const std::vector<float> &embedding = weight(-1, Kind::TokenEmbedding);
  std::vector<float> x(count * h);
  for (int64_t t = 0; t < count; ++t) {
    if (tokens[t] < 0 || tokens[t] >= v)
      fail("token " + Twine(tokens[t]) + " is outside the vocabulary of " +
           Twine(v));
    std::copy_n(embedding.begin() + tokens[t] * h, h, x.begin() + t * h);
  }

  if (observer)
    observer->tokens(count);
  routing.resize(start + count, std::vector<ops::Routing>(config.numLayers));
  // Layer by layer over all positions (decode is the case count == 1).
  for (int layer = 0; layer < config.numLayers; ++layer)
    runLayer(layer, x, start);
  numPositions += count;

  // Final norm and output projection (token_embd when tied).
  const std::vector<float> &norm = weight(-1, Kind::OutputNorm);
  const std::vector<float> &output =
      hasWeight(-1, Kind::Output) ? weight(-1, Kind::Output) : embedding;
  std::vector<float> logits(count * v);
  std::vector<float> normed(h);
  for (int64_t t = 0; t < count; ++t) {
    ArrayRef<float> row = ArrayRef<float>(x).slice(t * h, h);
    ops::rmsNorm(row, norm, config.rmsNormEps, normed);
    observe(-1, hasWeight(-1, Kind::Output) ? Kind::Output : Kind::TokenEmbedding,
            normed);
    ops::matVec(output, normed, MutableArrayRef<float>(logits).slice(t * v, v));
  }
  return logits;
}

void ReferenceModel::runLayer(int layer, std::vector<float> &x, int64_t start) {
  const int64_t h = config.hiddenSize, d = config.headDim;
  const int64_t heads = config.numHeads, kvHeads = config.numKvHeads;
  const int64_t qSize = heads * d, kvSize = kvHeads * d;
  const int64_t count = static_cast<int64_t>(x.size()) / h;
  const double eps = config.rmsNormEps;
  const QkNorm qkNorm = config.family->qkNorm;
  std::vector<float> &cacheK = keys[layer], &cacheV = values[layer];

  // Q, K, V of every new position; K and V go to the cache.
  std::vector<float> q(count * qSize);
  std::vector<float> normed(h), k(kvSize), val(kvSize);
  for (int64_t t = 0; t < count; ++t) {
    const int64_t position = start + t;
    MutableArrayRef<float> qt =
        MutableArrayRef<float>(q).slice(t * qSize, qSize);
    ops::rmsNorm(ArrayRef<float>(x).slice(t * h, h),
                 weight(layer, Kind::AttnNorm), eps, normed);
    observe(layer, Kind::AttnQ, normed);
    observe(layer, Kind::AttnK, normed);
    observe(layer, Kind::AttnV, normed);
    // Q, K and V biases (qwen2moe) are part of the projection's f64 sum.
    ops::matVec(weight(layer, Kind::AttnQ), normed, qt,
                weightOrNone(layer, Kind::AttnQBias));
    ops::matVec(weight(layer, Kind::AttnK), normed, k,
                weightOrNone(layer, Kind::AttnKBias));
    ops::matVec(weight(layer, Kind::AttnV), normed, val,
                weightOrNone(layer, Kind::AttnVBias));
    if (qkNorm == QkNorm::Whole) {
      // OLMoE: one RMSNorm over all heads, before splitting them.
      ops::rmsNorm(qt, weight(layer, Kind::AttnQNorm), eps, qt);
      ops::rmsNorm(k, weight(layer, Kind::AttnKNorm), eps, k);
    }
    for (int64_t head = 0; head < heads; ++head) {
      MutableArrayRef<float> one = qt.slice(head * d, d);
      if (qkNorm == QkNorm::PerHead) // Qwen3-MoE: RMSNorm of each head.
        ops::rmsNorm(one, weight(layer, Kind::AttnQNorm), eps, one);
      ops::rope(one, position, config.ropeTheta, config.rope);
    }
    for (int64_t head = 0; head < kvHeads; ++head) {
      MutableArrayRef<float> one = MutableArrayRef<float>(k).slice(head * d, d);
      if (qkNorm == QkNorm::PerHead)
        ops::rmsNorm(one, weight(layer, Kind::AttnKNorm), eps, one);
      ops::rope(one, position, config.ropeTheta, config.rope);
    }
    if (f16KvCache)
      for (std::vector<float> *row : {&k, &val})
        for (float &x : *row)
          x = quant::halfToFloat(quant::floatToHalf(x));
    cacheK.insert(cacheK.end(), k.begin(), k.end());
    cacheV.insert(cacheV.end(), val.begin(), val.end());
  }

  // Causal attention: position p sees cached positions 0..p. Query head
  // `head` reads KV head head / (heads / kvHeads) (transformers' repeat_kv).
  const int64_t group = heads / kvHeads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  std::vector<float> attn(qSize), projected(h);
  for (int64_t t = 0; t < count; ++t) {
    const int64_t position = start + t;
    for (int64_t head = 0; head < heads; ++head) {
      ArrayRef<float> qh = ArrayRef<float>(q).slice(t * qSize + head * d, d);
      const int64_t kvHead = head / group;
      std::vector<double> scores(position + 1);
      for (int64_t j = 0; j <= position; ++j)
        scores[j] = ops::dot(qh, ArrayRef<float>(cacheK).slice(
                                     j * kvSize + kvHead * d, d)) *
                    scale;
      std::vector<double> p = ops::softmax(scores);
      for (int64_t i = 0; i < d; ++i) {
        double sum = 0.0;
        for (int64_t j = 0; j <= position; ++j)
          sum += p[j] * cacheV[j * kvSize + kvHead * d + i];
        attn[head * d + i] = static_cast<float>(sum);
      }
    }
    observe(layer, Kind::AttnOutput, attn);
    ops::matVec(weight(layer, Kind::AttnOutput), attn, projected);
    for (int64_t i = 0; i < h; ++i)
      x[t * h + i] =
          static_cast<float>(static_cast<double>(x[t * h + i]) + projected[i]);
  }

  // MoE block with its own residual.
  for (int64_t t = 0; t < count; ++t) {
    MutableArrayRef<float> row = MutableArrayRef<float>(x).slice(t * h, h);
    ops::rmsNorm(row, weight(layer, Kind::FfnNorm), eps, normed);
    std::vector<float> out = moe(layer, normed, routing[start + t][layer]);
    for (int64_t i = 0; i < h; ++i)
      row[i] = static_cast<float>(static_cast<double>(row[i]) + out[i]);
  }
}

std::vector<float> ReferenceModel::swiglu(ArrayRef<float> gate,
                                          ArrayRef<float> up,
                                          ArrayRef<float> down, int64_t ffn,
                                          ArrayRef<float> x,
                                          function_ref<void(ArrayRef<float>)>
                                              observeDownInput) {
  std::vector<float> g(ffn), u(ffn), a(ffn), out(x.size());
  ops::matVec(gate, x, g);
  ops::matVec(up, x, u);
  for (int64_t i = 0; i < ffn; ++i)
    a[i] = static_cast<float>(ops::silu(g[i]) * static_cast<double>(u[i]));
  if (observeDownInput)
    observeDownInput(a);
  ops::matVec(down, a, out);
  return out;
}

std::vector<float> ReferenceModel::moe(int layer, ArrayRef<float> x,
                                       ops::Routing &r) const {
  const int64_t h = config.hiddenSize, e = config.numExperts,
                ffn = config.expertFfnSize;
  std::vector<float> routerLogits(e);
  observe(layer, Kind::Router, x);
  ops::matVec(weight(layer, Kind::Router), x, routerLogits);
  r = ops::route(routerLogits, config.numExpertsUsed, config.normTopK);

  // Expert `id` is slice id of the stacked [E][I][H] gate/up and [E][H][I]
  // down tensors.
  ArrayRef<float> gates = weight(layer, Kind::ExpertGate),
                  ups = weight(layer, Kind::ExpertUp),
                  downs = weight(layer, Kind::ExpertDown);
  std::vector<double> sum(h, 0.0);
  std::vector<std::vector<float>> outputs;
  for (size_t j = 0; j < r.experts.size(); ++j) {
    int64_t id = r.experts[j];
    observe(layer, Kind::ExpertGate, x, int(id));
    observe(layer, Kind::ExpertUp, x, int(id));
    std::vector<float> y =
        swiglu(gates.slice(id * ffn * h, ffn * h),
               ups.slice(id * ffn * h, ffn * h),
               downs.slice(id * h * ffn, h * ffn), ffn, x,
               [&](ArrayRef<float> a) {
                 observe(layer, Kind::ExpertDown, a, int(id));
               });
    for (int64_t i = 0; i < h; ++i)
      sum[i] += r.weights[j] * y[i];
    if (observer)
      outputs.push_back(std::move(y));
  }
  if (observer)
    observer->experts(layer, r, outputs);

  if (config.family->sharedExpert) {
    observe(layer, Kind::SharedGate, x);
    observe(layer, Kind::SharedUp, x);
    std::vector<float> y =
        swiglu(weight(layer, Kind::SharedGate), weight(layer, Kind::SharedUp),
               weight(layer, Kind::SharedDown), config.sharedExpertFfnSize, x,
               [&](ArrayRef<float> a) {
                 observe(layer, Kind::SharedDown, a);
               });
    double g = 1.0;
    if (config.family->sharedExpertGate)
      g = ops::sigmoid(ops::dot(weight(layer, Kind::SharedInputGate), x));
    for (int64_t i = 0; i < h; ++i)
      sum[i] += g * y[i];
  }
  return std::vector<float>(sum.begin(), sum.end());
}
