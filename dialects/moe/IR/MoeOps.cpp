//===- MoeOps.cpp - moe operation verifiers and canonicalizations ---------===//

#include "dialects/moe/IR/MoeOps.h"
#include "dialects/qnt/IR/QntDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/IR/TypeUtilities.h"

#include <cmath>

using namespace mlir;
using namespace moec;
using namespace moec::moe;

namespace {

/// The logical shape of a weight reference's type (a ranked tensor or a
/// quantized tensor; WeightRefAttr's verifier admits nothing else).
ArrayRef<int64_t> weightShape(qnt::WeightRefAttr ref) {
  if (auto quantized = dyn_cast<qnt::QuantizedTensorType>(ref.getType()))
    return quantized.getShape();
  return cast<RankedTensorType>(ref.getType()).getShape();
}

std::string shapeString(ArrayRef<int64_t> shape) {
  std::string s;
  llvm::raw_string_ostream os(s);
  os << '[';
  llvm::interleave(
      shape, os,
      [&](int64_t d) {
        if (d == ShapedType::kDynamic)
          os << '?';
        else
          os << d;
      },
      ", ");
  os << ']';
  return s;
}

/// Checks that the weight `name` of `op` has shape `expected` (where
/// kDynamic in `expected` is a wildcard).
LogicalResult verifyWeightShape(Operation *op, StringRef name,
                                qnt::WeightRefAttr ref,
                                ArrayRef<int64_t> expected,
                                StringRef meaning) {
  ArrayRef<int64_t> shape = weightShape(ref);
  if (shape.size() != expected.size() ||
      failed(verifyCompatibleShape(shape, expected)))
    return op->emitOpError() << name << " weight '" << ref.getName()
                             << "' has shape " << shapeString(shape)
                             << ", expected " << meaning << " = "
                             << shapeString(expected);
  return success();
}

/// Two sizes agree when either is dynamic or both are equal.
bool compatible(int64_t a, int64_t b) {
  return a == ShapedType::kDynamic || b == ShapedType::kDynamic || a == b;
}

/// Checks that the attribute `name` of `op`, `value`, is positive and finite.
LogicalResult verifyPositiveFinite(Operation *op, StringRef name,
                                   double value) {
  if (value > 0.0 && !std::isinf(value))
    return success();
  return op->emitOpError() << name << " must be positive and finite, got "
                           << value;
}

/// Resolves `symbol` from `op` to a moe.experts bank, with a diagnostic.
FailureOr<ExpertsOp> lookupBank(Operation *op, FlatSymbolRefAttr symbol,
                                SymbolTableCollection &symbolTable) {
  auto bank = symbolTable.lookupNearestSymbolFrom<ExpertsOp>(op, symbol);
  if (!bank)
    return op->emitOpError() << "'" << symbol.getValue()
                             << "' does not name a moe.experts bank";
  return bank;
}

} // namespace

//===----------------------------------------------------------------------===//
// ExpertsOp
//===----------------------------------------------------------------------===//

int64_t ExpertsOp::getNumExperts() { return weightShape(getGate())[0]; }
int64_t ExpertsOp::getHiddenSize() { return weightShape(getGate())[2]; }
int64_t ExpertsOp::getIntermediateSize() { return weightShape(getGate())[1]; }

Type ExpertsOp::getExpertType(unsigned part, int64_t expert) {
  if (ArrayAttr types = getExpertTypesAttr())
    return cast<TypeAttr>(cast<ArrayAttr>(types[expert])[part]).getValue();
  qnt::WeightRefAttr ref = part == 0 ? getGate() : part == 1 ? getUp()
                                                             : getDown();
  Type type = ref.getType();
  if (auto q = dyn_cast<qnt::QuantizedTensorType>(type))
    return q.withShape(q.getShape().drop_front());
  auto t = cast<RankedTensorType>(type);
  return RankedTensorType::get(t.getShape().drop_front(), t.getElementType());
}

LogicalResult ExpertsOp::verify() {
  ArrayRef<int64_t> gate = weightShape(getGate());
  if (gate.size() != 3)
    return emitOpError() << "gate weight '" << getGate().getName()
                         << "' must have shape [experts, intermediate, "
                            "hidden], got "
                         << shapeString(gate);
  int64_t e = gate[0], i = gate[1], h = gate[2];
  if (failed(verifyWeightShape(*this, "up", getUp(), {e, i, h},
                               "[experts, intermediate, hidden]")) ||
      failed(verifyWeightShape(*this, "down", getDown(), {e, h, i},
                               "[experts, hidden, intermediate]")))
    return failure();
  if (auto bias = getGateBiasAttr())
    if (failed(verifyWeightShape(*this, "gate_bias", bias, {e, i},
                                 "[experts, intermediate]")))
      return failure();
  if (auto bias = getUpBiasAttr())
    if (failed(verifyWeightShape(*this, "up_bias", bias, {e, i},
                                 "[experts, intermediate]")))
      return failure();
  if (auto bias = getDownBiasAttr())
    if (failed(verifyWeightShape(*this, "down_bias", bias, {e, h},
                                 "[experts, hidden]")))
      return failure();
  if (auto placement = getPlacementAttr()) {
    int64_t n = placement.getExperts().size();
    if (n != e)
      return emitOpError() << "placement lists " << n << " experts but the "
                           << "bank has " << e;
  }
  if (ArrayAttr types = getExpertTypesAttr()) {
    if (int64_t(types.size()) != e)
      return emitOpError() << "expert_types lists " << types.size()
                           << " experts but the bank has " << e;
    const char *names[3] = {"gate", "up", "down"};
    SmallVector<int64_t> shapes[3] = {{i, h}, {i, h}, {h, i}};
    qnt::WeightRefAttr refs[3] = {getGate(), getUp(), getDown()};
    for (auto [x, entry] : llvm::enumerate(types)) {
      auto parts = dyn_cast<ArrayAttr>(entry);
      if (!parts || parts.size() != 3)
        return emitOpError() << "expert_types entry " << x
                             << " must list the gate, up and down types";
      for (unsigned p = 0; p < 3; ++p) {
        auto typeAttr = dyn_cast<TypeAttr>(parts[p]);
        Type type = typeAttr ? typeAttr.getValue() : Type();
        ArrayRef<int64_t> shape;
        if (auto q = dyn_cast_or_null<qnt::QuantizedTensorType>(type))
          shape = q.getShape();
        else if (auto t = dyn_cast_or_null<RankedTensorType>(type))
          shape = t.getShape();
        if (shape.empty() || shape != ArrayRef<int64_t>(shapes[p]))
          return emitOpError()
                 << "expert " << x << "'s " << names[p] << " type must be a "
                 << shapeString(shapes[p]) << " matrix";
      }
    }
    // The references carry expert 0's formats.
    for (unsigned p = 0; p < 3; ++p) {
      Type first = cast<TypeAttr>(cast<ArrayAttr>(types[0])[p]).getValue();
      Type ref = refs[p].getType();
      Type refPerExpert;
      if (auto q = dyn_cast<qnt::QuantizedTensorType>(ref))
        refPerExpert = q.withShape(q.getShape().drop_front());
      else if (auto t = dyn_cast<RankedTensorType>(ref))
        refPerExpert =
            RankedTensorType::get(t.getShape().drop_front(), t.getElementType());
      if (refPerExpert != first)
        return emitOpError() << names[p] << " reference has type " << ref
                             << " but expert 0's is " << first;
    }
  }
  return success();
}

//===----------------------------------------------------------------------===//
// RouteOp
//===----------------------------------------------------------------------===//

LogicalResult RouteOp::verify() {
  auto logits = getLogits().getType();
  if (logits.getRank() != 2)
    return emitOpError() << "expects logits of shape [tokens, experts], got "
                            "rank "
                         << logits.getRank();
  int64_t tokens = logits.getDimSize(0);
  int64_t experts = logits.getDimSize(1);
  if (ShapedType::isDynamic(experts))
    return emitOpError("the number of experts must be static");
  int64_t k = getK();
  if (k > experts)
    return emitOpError() << "k = " << k << " exceeds the number of experts ("
                         << experts << ")";

  SmallVector<int64_t> expected = {tokens, k};
  for (auto [name, type] :
       {std::pair<StringRef, RankedTensorType>{"ids", getIds().getType()},
        {"weights", getWeights().getType()}})
    if (type.getRank() != 2 ||
        failed(verifyCompatibleShape(type.getShape(), expected)))
      return emitOpError() << name << " have shape "
                           << shapeString(type.getShape())
                           << ", expected [tokens, k] = "
                           << shapeString(expected);
  if (getWeights().getType().getElementType() != logits.getElementType())
    return emitOpError() << "weights have element type "
                         << getWeights().getType().getElementType()
                         << " but the logits have " << logits.getElementType();

  if (auto bias = getBias()) {
    auto type = bias.getType();
    if (type.getRank() != 1 || !compatible(type.getDimSize(0), experts))
      return emitOpError() << "bias has shape " << shapeString(type.getShape())
                           << ", expected [experts] = [" << experts << "]";
  }

  std::optional<int64_t> nGroup = getNGroup(), topkGroup = getTopkGroup();
  if (nGroup.has_value() != topkGroup.has_value())
    return emitOpError("group-limited routing needs both n_group and "
                       "topk_group");
  if (nGroup) {
    if (*nGroup < 1 || experts % *nGroup != 0)
      return emitOpError() << "n_group = " << *nGroup
                           << " does not divide the " << experts
                           << " experts into equal groups";
    if (*topkGroup < 1 || *topkGroup > *nGroup)
      return emitOpError() << "topk_group = " << *topkGroup
                           << " must be in [1, n_group = " << *nGroup << "]";
    int64_t selectable = *topkGroup * (experts / *nGroup);
    if (k > selectable)
      return emitOpError() << "k = " << k << " exceeds the " << selectable
                           << " experts that topk_group = " << *topkGroup
                           << " groups of " << experts / *nGroup
                           << " leave selectable";
  }

  if (auto scale = getScale())
    return verifyPositiveFinite(*this, "scale", scale->convertToDouble());
  return success();
}

namespace {

/// Keeping the top n_group of n_group groups keeps every expert: the group
/// limit selects nothing away.
///
///   moe.route %l top 8 sigmoid groups(8, 8)  ->  moe.route %l top 8 sigmoid
struct DropTrivialGroupLimit : OpRewritePattern<RouteOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(RouteOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.getNGroup() || *op.getNGroup() != *op.getTopkGroup())
      return failure();
    rewriter.modifyOpInPlace(op, [&] {
      op.removeNGroupAttr();
      op.removeTopkGroupAttr();
    });
    return success();
  }
};

/// With every expert selected, softmax weights already sum to one:
/// renormalising them changes nothing.
///
///   moe.route %l top 8 softmax normalize : tensor<?x8xf32> -> ...
///     -> moe.route %l top 8 softmax : tensor<?x8xf32> -> ...
struct DropNormalizeOfFullSoftmax : OpRewritePattern<RouteOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(RouteOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.getNormalize() || static_cast<int64_t>(op.getK()) != op.getNumExperts() ||
        op.getScoring() != ScoringFunc::Softmax || op.getNGroup())
      return failure();
    rewriter.modifyOpInPlace(op, [&] { op.setNormalize(false); });
    return success();
  }
};

/// A route that keeps every expert with unnormalised, unscaled weights is
/// dense: its weights are the scores in expert order and its ids are
/// 0..E-1 on every row (the order of the k choices is unspecified, so expert
/// order is as good as any). A selection bias cannot change a selection of
/// everything, so it is dropped.
///
///   %ids, %w = moe.route %l top 8 softmax : tensor<?x8xf32> -> ...
///     ->
///   %w = moe.score %l softmax : tensor<?x8xf32>
///   %ids = tensor.generate %t { ^bb0(%i: index, %j: index):
///     tensor.yield (arith.index_cast %j : index to i32) }
struct DenseRouteToScore : OpRewritePattern<RouteOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(RouteOp op,
                                PatternRewriter &rewriter) const override {
    if (static_cast<int64_t>(op.getK()) != op.getNumExperts() || op.getNormalize() ||
        op.getNGroup() || (op.getScale() && !op.getScale()->isExactlyValue(1.0)))
      return failure();
    Location loc = op.getLoc();
    auto weightsType = op.getWeights().getType();
    auto idsType = op.getIds().getType();
    // moe.score yields the logits' type; refine to the weights' type (which
    // verification keeps compatible) only when they differ in static-ness.
    Value scores = ScoreOp::create(rewriter, loc, op.getLogits(),
                                   op.getScoringAttr());
    if (scores.getType() != weightsType)
      scores = tensor::CastOp::create(rewriter, loc, weightsType, scores);

    SmallVector<Value> dynamicSizes;
    if (idsType.isDynamicDim(0))
      dynamicSizes.push_back(
          tensor::DimOp::create(rewriter, loc, op.getLogits(), 0));
    auto ids = tensor::GenerateOp::create(
        rewriter, loc, idsType, dynamicSizes,
        [&](OpBuilder &b, Location l, ValueRange indices) {
          Value expert = arith::IndexCastOp::create(
              b, l, b.getI32Type(), indices[1]);
          tensor::YieldOp::create(b, l, expert);
        });
    rewriter.replaceOp(op, {ids.getResult(), scores});
    return success();
  }
};

} // namespace

void RouteOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                          MLIRContext *context) {
  results.add<DropTrivialGroupLimit, DropNormalizeOfFullSoftmax,
              DenseRouteToScore>(context);
}

//===----------------------------------------------------------------------===//
// DispatchOp
//===----------------------------------------------------------------------===//

LogicalResult DispatchOp::verify() {
  auto input = getInput().getType();
  auto ids = getIds().getType();
  if (input.getRank() != 2)
    return emitOpError() << "expects input of shape [tokens, hidden], got rank "
                         << input.getRank();
  if (ids.getRank() != 2)
    return emitOpError() << "expects ids of shape [tokens, k], got rank "
                         << ids.getRank();
  if (!compatible(input.getDimSize(0), ids.getDimSize(0)))
    return emitOpError() << "input has " << input.getDimSize(0)
                         << " tokens but ids have " << ids.getDimSize(0);
  int64_t pairs = ShapedType::kDynamic;
  if (!input.isDynamicDim(0) && !ids.isDynamicDim(1))
    pairs = input.getDimSize(0) * ids.getDimSize(1);
  else if (!ids.isDynamicDim(0) && !ids.isDynamicDim(1))
    pairs = ids.getDimSize(0) * ids.getDimSize(1);

  SmallVector<int64_t> rowsShape = {pairs, input.getDimSize(1)};
  auto rows = getRows().getType();
  if (rows.getRank() != 2 ||
      failed(verifyCompatibleShape(rows.getShape(), rowsShape)))
    return emitOpError() << "rows have shape " << shapeString(rows.getShape())
                         << ", expected [tokens * k, hidden] = "
                         << shapeString(rowsShape);
  if (rows.getElementType() != input.getElementType())
    return emitOpError() << "rows have element type " << rows.getElementType()
                         << " but the input has " << input.getElementType();
  auto slots = getSlots().getType();
  if (slots.getRank() != 1 || !compatible(slots.getDimSize(0), pairs) ||
      !compatible(slots.getDimSize(0), rows.getDimSize(0)))
    return emitOpError() << "slots have shape "
                         << shapeString(slots.getShape())
                         << ", expected one entry per row";
  auto offsets = getOffsets().getType();
  if (offsets.getRank() != 1 || offsets.isDynamicDim(0) ||
      offsets.getDimSize(0) < 2)
    return emitOpError() << "offsets must have a static shape [experts + 1] "
                            "with at least one expert, got "
                         << shapeString(offsets.getShape());
  int64_t experts = offsets.getDimSize(0) - 1;
  if (!ids.isDynamicDim(1) && ids.getDimSize(1) > experts)
    return emitOpError() << "k = " << ids.getDimSize(1)
                         << " exceeds the number of experts (" << experts
                         << ")";
  return success();
}

//===----------------------------------------------------------------------===//
// ExpertFfnOp
//===----------------------------------------------------------------------===//

LogicalResult ExpertFfnOp::verify() {
  auto rows = getRows().getType();
  if (rows.getRank() != 2)
    return emitOpError() << "expects rows of shape [rows, hidden], got rank "
                         << rows.getRank();
  if (getResult().getType() != rows)
    return emitOpError() << "result type " << getResult().getType()
                         << " differs from the rows' type " << rows;
  auto offsets = getOffsets().getType();
  if (offsets.getRank() != 1 || offsets.isDynamicDim(0))
    return emitOpError() << "offsets must have a static shape [experts + 1], "
                            "got "
                         << shapeString(offsets.getShape());
  return success();
}

LogicalResult
ExpertFfnOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  FailureOr<ExpertsOp> bank = lookupBank(*this, getExpertsAttr(), symbolTable);
  if (failed(bank))
    return failure();
  int64_t experts = bank->getNumExperts();
  int64_t offsets = getOffsets().getType().getDimSize(0);
  if (offsets != experts + 1)
    return emitOpError() << "offsets have " << offsets << " entries but bank '"
                         << bank->getSymName() << "' has " << experts
                         << " experts (expected " << experts + 1 << ")";
  int64_t hidden = bank->getHiddenSize();
  if (!compatible(getRows().getType().getDimSize(1), hidden))
    return emitOpError() << "rows have hidden size "
                         << getRows().getType().getDimSize(1) << " but bank '"
                         << bank->getSymName() << "' has " << hidden;
  return success();
}

//===----------------------------------------------------------------------===//
// CombineOp
//===----------------------------------------------------------------------===//

LogicalResult CombineOp::verify() {
  auto out = getExpertOut().getType();
  auto slots = getSlots().getType();
  auto weights = getWeights().getType();
  auto result = getResult().getType();
  if (out.getRank() != 2)
    return emitOpError() << "expects expert outputs of shape [rows, hidden], "
                            "got rank "
                         << out.getRank();
  if (slots.getRank() != 1 || !compatible(slots.getDimSize(0), out.getDimSize(0)))
    return emitOpError() << "slots have shape "
                         << shapeString(slots.getShape())
                         << ", expected one entry per expert output row";
  if (weights.getRank() != 2)
    return emitOpError() << "expects weights of shape [tokens, k], got rank "
                         << weights.getRank();
  if (weights.hasStaticShape() && !out.isDynamicDim(0) &&
      weights.getNumElements() != out.getDimSize(0))
    return emitOpError() << "weights have " << weights.getNumElements()
                         << " (token, choice) pairs but there are "
                         << out.getDimSize(0) << " expert output rows";
  SmallVector<int64_t> expected = {weights.getDimSize(0), out.getDimSize(1)};
  if (result.getRank() != 2 ||
      failed(verifyCompatibleShape(result.getShape(), expected)))
    return emitOpError() << "result has shape "
                         << shapeString(result.getShape())
                         << ", expected [tokens, hidden] = "
                         << shapeString(expected);
  if (result.getElementType() != out.getElementType() ||
      weights.getElementType() != out.getElementType())
    return emitOpError() << "expert outputs, weights and result must share "
                            "one element type";
  return success();
}

//===----------------------------------------------------------------------===//
// SharedExpertOp
//===----------------------------------------------------------------------===//

LogicalResult SharedExpertOp::verify() {
  auto input = getInput().getType();
  if (input.getRank() != 2)
    return emitOpError() << "expects input of shape [tokens, hidden], got rank "
                         << input.getRank();
  if (getResult().getType() != input)
    return emitOpError() << "result type " << getResult().getType()
                         << " differs from the input type " << input;
  ArrayRef<int64_t> gate = weightShape(getGate());
  if (gate.size() != 2)
    return emitOpError() << "gate weight '" << getGate().getName()
                         << "' must have shape [intermediate, hidden], got "
                         << shapeString(gate);
  int64_t i = gate[0], h = gate[1];
  if (!compatible(input.getDimSize(1), h))
    return emitOpError() << "input has hidden size " << input.getDimSize(1)
                         << " but the gate weight has " << h;
  if (failed(verifyWeightShape(*this, "up", getUp(), {i, h},
                               "[intermediate, hidden]")) ||
      failed(verifyWeightShape(*this, "down", getDown(), {h, i},
                               "[hidden, intermediate]")))
    return failure();
  if (auto inputGate = getInputGateAttr()) {
    ArrayRef<int64_t> shape = weightShape(inputGate);
    bool ok = (shape.size() == 1 && shape[0] == h) ||
              (shape.size() == 2 && shape[0] == 1 && shape[1] == h);
    if (!ok)
      return emitOpError() << "input_gate weight '" << inputGate.getName()
                           << "' has shape " << shapeString(shape)
                           << ", expected [hidden] or [1, hidden] with hidden "
                              "= "
                           << h;
  }
  return success();
}

//===----------------------------------------------------------------------===//
// PrefetchOp
//===----------------------------------------------------------------------===//

LogicalResult PrefetchOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  return lookupBank(*this, getExpertsAttr(), symbolTable);
}

//===----------------------------------------------------------------------===//
// EmbedOp
//===----------------------------------------------------------------------===//

LogicalResult EmbedOp::verify() {
  ArrayRef<int64_t> table = weightShape(getTable());
  if (table.size() != 2)
    return emitOpError() << "table '" << getTable().getName()
                         << "' must have shape [vocabulary, hidden], got "
                         << shapeString(table);
  auto tokens = getTokens().getType();
  if (tokens.getRank() != 1)
    return emitOpError() << "expects tokens of shape [tokens], got rank "
                         << tokens.getRank();
  SmallVector<int64_t> expected = {tokens.getDimSize(0), table[1]};
  auto result = getResult().getType();
  if (result.getRank() != 2 ||
      failed(verifyCompatibleShape(result.getShape(), expected)))
    return emitOpError() << "result has shape "
                         << shapeString(result.getShape())
                         << ", expected [tokens, hidden] = "
                         << shapeString(expected);
  return success();
}

//===----------------------------------------------------------------------===//
// RmsNormOp
//===----------------------------------------------------------------------===//

LogicalResult RmsNormOp::verify() {
  auto input = getInput().getType();
  auto weight = getWeight().getType();
  if (input.getRank() < 1)
    return emitOpError("expects an input of rank 1 or more");
  if (weight.getRank() != 1 ||
      !compatible(weight.getDimSize(0), input.getShape().back()))
    return emitOpError() << "weight has shape "
                         << shapeString(weight.getShape())
                         << ", expected the input's innermost dimension ["
                         << input.getShape().back() << "]";
  return verifyPositiveFinite(*this, "epsilon",
                              getEpsilon().convertToDouble());
}

//===----------------------------------------------------------------------===//
// RopeOp
//===----------------------------------------------------------------------===//

LogicalResult RopeOp::verify() {
  auto input = getInput().getType();
  if (input.getRank() != 3)
    return emitOpError() << "expects input of shape [tokens, heads, "
                            "head_dim], got rank "
                         << input.getRank();
  int64_t headDim = input.getDimSize(2);
  if (ShapedType::isDynamic(headDim) || headDim % 2 != 0)
    return emitOpError() << "head_dim must be static and even, got "
                         << shapeString(input.getShape());
  auto positions = getPositions().getType();
  if (positions.getRank() != 1 ||
      !compatible(positions.getDimSize(0), input.getDimSize(0)))
    return emitOpError() << "positions have shape "
                         << shapeString(positions.getShape())
                         << ", expected one per token";
  return verifyPositiveFinite(*this, "theta", getTheta().convertToDouble());
}

//===----------------------------------------------------------------------===//
// AttentionOp
//===----------------------------------------------------------------------===//

LogicalResult AttentionOp::verify() {
  auto q = getQuery().getType(), k = getKey().getType(),
       v = getValue().getType(), cache = getKCache().getType();
  auto positions = getPositions().getType();
  for (auto [name, type] : {std::pair<StringRef, RankedTensorType>{"query", q},
                            {"key", k},
                            {"value", v},
                            {"k_cache", cache}})
    if (type.getRank() != 3)
      return emitOpError() << "expects " << name << " of rank 3, got "
                           << shapeString(type.getShape());
  if (k != v)
    return emitOpError() << "key and value types differ: " << k << " vs "
                         << v;
  int64_t heads = q.getDimSize(1), kvHeads = k.getDimSize(1),
          headDim = q.getDimSize(2);
  if (ShapedType::isDynamic(heads) || ShapedType::isDynamic(kvHeads) ||
      heads % kvHeads != 0)
    return emitOpError() << heads << " query heads are not a static multiple "
                         << "of " << kvHeads << " KV heads";
  if (!compatible(q.getDimSize(0), k.getDimSize(0)) ||
      !compatible(k.getDimSize(2), headDim))
    return emitOpError() << "key " << shapeString(k.getShape())
                         << " does not match query "
                         << shapeString(q.getShape())
                         << " in tokens or head_dim";
  if (!cache.hasStaticShape() || cache.getDimSize(1) != kvHeads ||
      cache.getDimSize(2) != headDim)
    return emitOpError() << "caches must have static shape [context, "
                         << kvHeads << ", " << headDim << "], got "
                         << shapeString(cache.getShape());
  if (positions.getRank() != 1 ||
      !compatible(positions.getDimSize(0), q.getDimSize(0)))
    return emitOpError() << "positions have shape "
                         << shapeString(positions.getShape())
                         << ", expected one per token";
  return verifyPositiveFinite(*this, "scale", getScale().convertToDouble());
}

#define GET_OP_CLASSES
#include "dialects/moe/IR/MoeOps.cpp.inc"
