//===- Importer.cpp - A model into moe + qnt + upstream IR ----------------===//

#include "compiler/import/Importer.h"

#include "dialects/moe/IR/MoeOps.h"
#include "dialects/qnt/IR/QntOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Verifier.h"

#include <cmath>
#include <map>

using namespace llvm;
using namespace mlir;
using namespace moec;
using namespace moec::importer;
using model::ModelConfig;
using model::StoredTensor;
using model::TensorRole;

namespace {

/// The `qnt` format of a ggml block type, if it has one.
std::optional<qnt::QuantFormat> quantFormatOf(gguf::GgmlType type) {
  using G = gguf::GgmlType;
  using Q = qnt::QuantFormat;
  switch (type) {
  case G::Q4_0:
    return Q::Q4_0;
  case G::Q4_1:
    return Q::Q4_1;
  case G::Q5_0:
    return Q::Q5_0;
  case G::Q5_1:
    return Q::Q5_1;
  case G::Q8_0:
    return Q::Q8_0;
  case G::Q2_K:
    return Q::Q2_K;
  case G::Q3_K:
    return Q::Q3_K;
  case G::Q4_K:
    return Q::Q4_K;
  case G::Q5_K:
    return Q::Q5_K;
  case G::Q6_K:
    return Q::Q6_K;
  case G::MXFP4:
    return Q::MXFP4;
  default:
    return std::nullopt;
  }
}

class ModelImporter {
public:
  ModelImporter(MLIRContext &context, const model::WeightStore &store,
                int64_t contextLength)
      : b(&context), store(store), c(store.getConfig()),
        contextLength(contextLength) {
    for (const StoredTensor &t : store.getTensors())
      byRole[{t.role->kind, t.role->layer}] = &t;
  }

  OwningOpRef<ModuleOp> run();

private:
  /// The IR type of a stored tensor: its shape outermost first, as a
  /// quantized tensor or a float tensor.
  Type typeOf(const StoredTensor &t) {
    SmallVector<int64_t> shape(llvm::reverse(t.dims));
    return typeOf(t.type, shape);
  }
  /// The per-expert types of a bank of mixed formats, or null.
  ArrayAttr expertTypes(int layer) {
    using K = TensorRole::Kind;
    const StoredTensor *parts[3] = {&tensor(K::ExpertGate, layer),
                                    &tensor(K::ExpertUp, layer),
                                    &tensor(K::ExpertDown, layer)};
    if (llvm::none_of(parts, [](const StoredTensor *t) {
          return t->hasMixedExperts();
        }))
      return ArrayAttr();
    SmallVector<Attribute> entries;
    for (int64_t e = 0; e < c.numExperts; ++e) {
      SmallVector<Attribute> types;
      for (const StoredTensor *t : parts) {
        SmallVector<int64_t> shape(llvm::reverse(t->dims));
        shape.erase(shape.begin());
        types.push_back(TypeAttr::get(typeOf(t->getExpertType(e), shape)));
      }
      entries.push_back(b.getArrayAttr(types));
    }
    return b.getArrayAttr(entries);
  }
  Type typeOf(gguf::GgmlType type, ArrayRef<int64_t> shape) {
    if (std::optional<qnt::QuantFormat> format = quantFormatOf(type))
      return qnt::QuantizedTensorType::get(b.getContext(), shape, *format);
    if (std::optional<gguf::OwnGroupType> own = gguf::getOwnGroupType(type)) {
      qnt::QuantFormat format = own->bits == 2   ? qnt::QuantFormat::Int2
                                : own->bits == 3 ? qnt::QuantFormat::Int3
                                : own->bits == 4 ? qnt::QuantFormat::Int4
                                                 : qnt::QuantFormat::Int8;
      return qnt::QuantizedTensorType::get(b.getContext(), shape, format,
                                           own->group, own->asymmetric, 1);
    }
    Type element = type == gguf::GgmlType::F16    ? b.getF16Type()
                   : type == gguf::GgmlType::BF16 ? b.getBF16Type()
                                                  : b.getF32Type();
    return RankedTensorType::get(shape, element);
  }
  const StoredTensor &tensor(TensorRole::Kind kind, int layer) {
    auto it = byRole.find({kind, layer});
    assert(it != byRole.end() && "the store has every role of its config");
    return *it->second;
  }
  qnt::WeightRefAttr ref(TensorRole::Kind kind, int layer) {
    const StoredTensor &t = tensor(kind, layer);
    return qnt::WeightRefAttr::get(b.getContext(), t.name, typeOf(t));
  }
  Value weight(TensorRole::Kind kind, int layer) {
    const StoredTensor &t = tensor(kind, layer);
    return qnt::WeightOp::create(b, loc, typeOf(t), t.name);
  }
  /// A 1-D weight (norms, biases) as f32, converting when stored narrower.
  Value vectorWeight(TensorRole::Kind kind, int layer) {
    Value w = weight(kind, layer);
    auto type = cast<RankedTensorType>(w.getType());
    if (type.getElementType().isF32())
      return w;
    return arith::ExtFOp::create(
        b, loc, RankedTensorType::get(type.getShape(), b.getF32Type()), w);
  }
  RankedTensorType activations(ArrayRef<int64_t> inner) {
    SmallVector<int64_t> shape = {ShapedType::kDynamic};
    shape.append(inner.begin(), inner.end());
    return RankedTensorType::get(shape, b.getF32Type());
  }
  /// x [T, in] times weights [out, in] -> [T, out], plus a bias when given.
  Value project(Value x, TensorRole::Kind kind, int layer,
                std::optional<TensorRole::Kind> bias = std::nullopt) {
    Value w = weight(kind, layer);
    int64_t out = tensor(kind, layer).dims[1];
    Value biasValue = bias ? vectorWeight(*bias, layer) : Value();
    return qnt::MatmulOp::create(b, loc, activations({out}), w, x, biasValue);
  }
  Value reshapeToHeads(Value x, int64_t heads) {
    auto type = activations({heads, c.headDim});
    SmallVector<OpFoldResult> shape = {tensor::getMixedSize(b, loc, x, 0),
                                       b.getIndexAttr(heads),
                                       b.getIndexAttr(c.headDim)};
    return tensor::ExpandShapeOp::create(
        b, loc, type, x, ArrayRef<ReassociationIndices>{{0}, {1, 2}}, shape);
  }
  Value flattenHeads(Value x) {
    int64_t width = cast<RankedTensorType>(x.getType()).getDimSize(1) *
                    cast<RankedTensorType>(x.getType()).getDimSize(2);
    return tensor::CollapseShapeOp::create(
        b, loc, activations({width}), x,
        ArrayRef<ReassociationIndices>{{0}, {1, 2}});
  }

  Value attention(Value x, int layer, Value positions, Value kCache,
                  Value vCache, Value &newK, Value &newV);
  Value moeBlock(Value x, int layer, moe::ExpertsOp bank);

  OpBuilder b;
  Location loc = b.getUnknownLoc();
  const model::WeightStore &store;
  const ModelConfig &c;
  int64_t contextLength;
  std::map<std::pair<TensorRole::Kind, int>, const StoredTensor *> byRole;
};

} // namespace

Value ModelImporter::attention(Value x, int layer, Value positions,
                               Value kCache, Value vCache, Value &newK,
                               Value &newV) {
  using K = TensorRole::Kind;
  const model::FamilyInfo &f = *c.family;
  Value xn = moe::RmsNormOp::create(b, loc, x, vectorWeight(K::AttnNorm, layer),
                                    b.getF64FloatAttr(c.rmsNormEps));
  auto bias = [&](K kind) -> std::optional<K> {
    return f.qkvBias ? std::optional<K>(kind) : std::nullopt;
  };
  Value q = project(xn, K::AttnQ, layer, bias(K::AttnQBias));
  Value k = project(xn, K::AttnK, layer, bias(K::AttnKBias));
  Value v = project(xn, K::AttnV, layer, bias(K::AttnVBias));
  FloatAttr eps = b.getF64FloatAttr(c.rmsNormEps);
  if (f.qkNorm == model::QkNorm::Whole) {
    q = moe::RmsNormOp::create(b, loc, q, vectorWeight(K::AttnQNorm, layer), eps);
    k = moe::RmsNormOp::create(b, loc, k, vectorWeight(K::AttnKNorm, layer), eps);
  }
  q = reshapeToHeads(q, c.numHeads);
  k = reshapeToHeads(k, c.numKvHeads);
  v = reshapeToHeads(v, c.numKvHeads);
  if (f.qkNorm == model::QkNorm::PerHead) {
    q = moe::RmsNormOp::create(b, loc, q, vectorWeight(K::AttnQNorm, layer), eps);
    k = moe::RmsNormOp::create(b, loc, k, vectorWeight(K::AttnKNorm, layer), eps);
  }
  auto style = moe::RopeStyleAttr::get(
      b.getContext(), c.rope == model::RopeStyle::NeoX
                          ? moe::RopeStyle::NeoX
                          : moe::RopeStyle::Interleaved);
  FloatAttr theta = b.getF64FloatAttr(c.ropeTheta);
  q = moe::RopeOp::create(b, loc, q, positions, style, theta);
  k = moe::RopeOp::create(b, loc, k, positions, style, theta);
  auto attn = moe::AttentionOp::create(
      b, loc, q.getType(), kCache.getType(), vCache.getType(), q, k, v, kCache,
      vCache, positions, b.getF64FloatAttr(1.0 / std::sqrt(double(c.headDim))));
  newK = attn.getNewKCache();
  newV = attn.getNewVCache();
  return project(flattenHeads(attn.getResult()), K::AttnOutput, layer);
}

Value ModelImporter::moeBlock(Value h, int layer, moe::ExpertsOp bank) {
  using K = TensorRole::Kind;
  const model::FamilyInfo &f = *c.family;
  Value hn = moe::RmsNormOp::create(b, loc, h, vectorWeight(K::FfnNorm, layer),
                                    b.getF64FloatAttr(c.rmsNormEps));
  Value logits = project(hn, K::Router, layer);
  int64_t k = c.numExpertsUsed;
  auto route = moe::RouteOp::create(
      b, loc, activations({k}).clone(b.getI32Type()), activations({k}), logits,
      /*bias=*/Value(), b.getI64IntegerAttr(k),
      moe::ScoringFuncAttr::get(b.getContext(), moe::ScoringFunc::Softmax),
      c.normTopK ? b.getUnitAttr() : UnitAttr(), IntegerAttr(), IntegerAttr(),
      FloatAttr());
  auto dispatch = moe::DispatchOp::create(
      b, loc, activations({c.hiddenSize}),
      RankedTensorType::get({ShapedType::kDynamic}, b.getI32Type()),
      RankedTensorType::get({c.numExperts + 1}, b.getI32Type()), hn,
      route.getIds());
  Value expertOut = moe::ExpertFfnOp::create(
      b, loc, activations({c.hiddenSize}),
      FlatSymbolRefAttr::get(bank.getSymNameAttr()), dispatch.getRows(),
      dispatch.getOffsets());
  Value out = moe::CombineOp::create(b, loc, activations({c.hiddenSize}),
                                     expertOut, dispatch.getSlots(),
                                     route.getWeights());
  if (f.sharedExpert) {
    Value shared = moe::SharedExpertOp::create(
        b, loc, activations({c.hiddenSize}), hn, ref(K::SharedGate, layer),
        ref(K::SharedUp, layer), ref(K::SharedDown, layer),
        f.sharedExpertGate ? ref(K::SharedInputGate, layer)
                           : qnt::WeightRefAttr(),
        moe::ActivationAttr::get(b.getContext(), moe::ActivationKind::SwiGLU,
                                 FloatAttr(), FloatAttr()));
    out = arith::AddFOp::create(b, loc, out, shared);
  }
  return arith::AddFOp::create(b, loc, h, out);
}

OwningOpRef<ModuleOp> ModelImporter::run() {
  using K = TensorRole::Kind;
  MLIRContext *ctx = b.getContext();
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  b.setInsertionPointToEnd(module->getBody());

  // What later phases need to know of the model, and where its weights are.
  SmallVector<NamedAttribute> model = {
      b.getNamedAttr("family", b.getStringAttr(c.family->name)),
      b.getNamedAttr("vocab_size", b.getI64IntegerAttr(c.vocabSize)),
      b.getNamedAttr("hidden_size", b.getI64IntegerAttr(c.hiddenSize)),
      b.getNamedAttr("layers", b.getI64IntegerAttr(c.numLayers)),
      b.getNamedAttr("heads", b.getI64IntegerAttr(c.numHeads)),
      b.getNamedAttr("kv_heads", b.getI64IntegerAttr(c.numKvHeads)),
      b.getNamedAttr("head_dim", b.getI64IntegerAttr(c.headDim)),
      b.getNamedAttr("experts", b.getI64IntegerAttr(c.numExperts)),
      b.getNamedAttr("experts_used", b.getI64IntegerAttr(c.numExpertsUsed)),
      b.getNamedAttr("context_length", b.getI64IntegerAttr(contextLength))};
  (*module)->setAttr("moe.model", b.getDictionaryAttr(model));
  SmallVector<Attribute> files;
  for (const std::string &file : store.getFiles())
    files.push_back(b.getStringAttr(file));
  (*module)->setAttr(
      "moe.weight_store",
      b.getDictionaryAttr(
          {b.getNamedAttr("format",
                          b.getStringAttr(store.getFormat() ==
                                                  model::SourceFormat::Gguf
                                              ? "gguf"
                                              : "safetensors")),
           b.getNamedAttr("files", b.getArrayAttr(files))}));

  // One expert bank per layer.
  SmallVector<moe::ExpertsOp> banks;
  auto swiglu = moe::ActivationAttr::get(ctx, moe::ActivationKind::SwiGLU,
                                         FloatAttr(), FloatAttr());
  for (int l = 0; l < c.numLayers; ++l)
    banks.push_back(moe::ExpertsOp::create(
        b, loc, b.getStringAttr("blk" + std::to_string(l) + "_experts"),
        ref(K::ExpertGate, l), ref(K::ExpertUp, l), ref(K::ExpertDown, l),
        qnt::WeightRefAttr(), qnt::WeightRefAttr(), qnt::WeightRefAttr(),
        swiglu, moe::PlacementAttr(), moe::PrefetchAttr(), expertTypes(l)));

  // @forward(tokens, positions, k_cache_0, v_cache_0, ...)
  auto i32Vector = RankedTensorType::get({ShapedType::kDynamic}, b.getI32Type());
  auto cacheType = RankedTensorType::get(
      {contextLength, c.numKvHeads, c.headDim}, b.getF32Type());
  SmallVector<Type> inputs = {i32Vector, i32Vector};
  SmallVector<Type> results = {activations({c.vocabSize})};
  for (int l = 0; l < 2 * c.numLayers; ++l) {
    inputs.push_back(cacheType);
    results.push_back(cacheType);
  }
  auto forward = func::FuncOp::create(b, loc, "forward",
                                      b.getFunctionType(inputs, results));
  SmallVector<DictionaryAttr> argAttrs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::string name = i == 0   ? "tokens"
                       : i == 1 ? "positions"
                                : (((i - 2) % 2 ? "v_cache_" : "k_cache_") +
                                   std::to_string((i - 2) / 2));
    forward.setArgAttr(i, "moe.name", b.getStringAttr(name));
  }
  Block *body = forward.addEntryBlock();
  b.setInsertionPointToEnd(body);
  Value tokens = body->getArgument(0), positions = body->getArgument(1);

  Value x = moe::EmbedOp::create(b, loc, activations({c.hiddenSize}), tokens,
                                 ref(K::TokenEmbedding, -1));
  SmallVector<Value> caches;
  for (int l = 0; l < c.numLayers; ++l) {
    Value newK, newV;
    Value attn = attention(x, l, positions, body->getArgument(2 + 2 * l),
                           body->getArgument(3 + 2 * l), newK, newV);
    caches.push_back(newK);
    caches.push_back(newV);
    Value h = arith::AddFOp::create(b, loc, x, attn);
    x = moeBlock(h, l, banks[l]);
  }
  Value xf = moe::RmsNormOp::create(b, loc, x, vectorWeight(K::OutputNorm, -1),
                                    b.getF64FloatAttr(c.rmsNormEps));
  Value logits = c.tiedEmbeddings ? project(xf, K::TokenEmbedding, -1)
                                  : project(xf, K::Output, -1);
  SmallVector<Value> returned = {logits};
  returned.append(caches.begin(), caches.end());
  func::ReturnOp::create(b, loc, returned);
  return module;
}

Expected<OwningOpRef<ModuleOp>>
moec::importer::importModel(MLIRContext &context,
                            const model::WeightStore &store,
                            int64_t contextLength) {
  const ModelConfig &c = store.getConfig();
  int64_t length = contextLength ? contextLength : c.contextLength;
  if (length <= 0)
    return createStringError(inconvertibleErrorCode(),
                             store.getFiles().front() +
                                 ": the model states no context length; "
                                 "give one with --context-length");
  // Any tensor may be described; only types moec computes with import.
  for (const StoredTensor &t : store.getTensors())
    for (int64_t e = 0; e < (t.hasMixedExperts() ? c.numExperts : 1); ++e) {
    gguf::GgmlTypeInfo info = gguf::getGgmlTypeInfo(t.getExpertType(e));
    if (!info.computeSupported)
      return createStringError(
          inconvertibleErrorCode(),
          store.getFiles()[t.extents.front().file] + ": tensor '" + t.name +
              "' has type " + info.name +
              ", which moec does not compute with (supported: " +
              gguf::computeSupportedGgmlTypeNames() + ")");
  }
  context.loadDialect<moe::MoeDialect, qnt::QntDialect, func::FuncDialect,
                      arith::ArithDialect, tensor::TensorDialect>();
  OwningOpRef<ModuleOp> module = ModelImporter(context, store, length).run();
  // The importer must produce valid IR; if it did not, that is its bug, and
  // the diagnostics say where.
  if (failed(verify(*module)))
    return createStringError(inconvertibleErrorCode(),
                             "internal error: imported IR does not verify");
  return std::move(module);
}
