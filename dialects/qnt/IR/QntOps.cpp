//===- QntOps.cpp - qnt operation verifiers and folders -------------------===//

#include "dialects/qnt/IR/QntOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/IR/TypeUtilities.h"

using namespace mlir;
using namespace moec::qnt;

namespace {

/// Prints a shape the way a type does: 128x?x64.
std::string shapeString(ArrayRef<int64_t> shape) {
  std::string s;
  llvm::raw_string_ostream os(s);
  llvm::interleave(
      shape, os,
      [&](int64_t d) {
        if (d == ShapedType::kDynamic)
          os << '?';
        else
          os << d;
      },
      "x");
  return s;
}

/// The shape of the scales (and mins) of an own-format tensor of type `type`.
SmallVector<int64_t> groupShape(QuantizedTensorType type) {
  SmallVector<int64_t> shape(type.getShape());
  shape.back() /= type.getGroup();
  return shape;
}

/// The element type that codes of an own format have in qnt.pack/unpack.
Type codeElementType(QuantizedTensorType type) {
  return IntegerType::get(type.getContext(), 8,
                          type.getAsymmetric() ? IntegerType::Unsigned
                                               : IntegerType::Signless);
}

/// Checks the codes, scales and mins of an own-format quantized tensor
/// (shared by qnt.pack and qnt.unpack).
LogicalResult verifyGroupParts(Operation *op, QuantizedTensorType quantized,
                               RankedTensorType codes, RankedTensorType scales,
                               RankedTensorType mins) {
  if (isGgufFormat(quantized.getFormat()))
    return op->emitOpError("expects an own group-wise format (int2, int3, "
                           "int4, int8), got ")
           << stringifyQuantFormat(quantized.getFormat())
           << ", whose scales live inside its blocks";
  if (failed(verifyCompatibleShape(codes.getShape(), quantized.getShape())))
    return op->emitOpError("codes of shape ")
           << shapeString(codes.getShape())
           << " do not match the quantized shape "
           << shapeString(quantized.getShape());
  Type codeType = codeElementType(quantized);
  if (codes.getElementType() != codeType)
    return op->emitOpError("expects codes of element type ")
           << codeType << " for "
           << (quantized.getAsymmetric() ? "an asymmetric" : "a symmetric")
           << " format, got " << codes.getElementType();
  // Scales must fit the groups of both the quantized type and the codes
  // (which may know outer sizes that the quantized type leaves dynamic).
  SmallVector<int64_t> expected = groupShape(quantized);
  SmallVector<int64_t> fromCodes(codes.getShape());
  fromCodes.back() = expected.back();
  if (failed(verifyCompatibleShape(scales.getShape(), expected)) ||
      failed(verifyCompatibleShape(scales.getShape(), fromCodes)))
    return op->emitOpError("scales of shape ")
           << shapeString(scales.getShape()) << " do not match the group shape "
           << shapeString(expected) << " of codes "
           << shapeString(codes.getShape());
  if (quantized.getAsymmetric() != static_cast<bool>(mins))
    return op->emitOpError(quantized.getAsymmetric()
                               ? "an asymmetric format needs mins"
                               : "a symmetric format has no mins");
  if (mins && failed(verifyCompatibleShape(mins.getShape(), scales.getShape())))
    return op->emitOpError("mins of shape ")
           << shapeString(mins.getShape())
           << " do not match the scales' shape "
           << shapeString(scales.getShape());
  return success();
}

} // namespace

//===----------------------------------------------------------------------===//
// WeightOp
//===----------------------------------------------------------------------===//

LogicalResult WeightOp::verify() {
  if (getName().empty())
    return emitOpError("weight name must not be empty");
  return verifyWeightStoreType([&] { return emitOpError(); },
                               getResult().getType());
}

//===----------------------------------------------------------------------===//
// QuantizeOp / DequantizeOp
//===----------------------------------------------------------------------===//

LogicalResult QuantizeOp::verify() {
  auto input = getInput().getType();
  auto result = getResult().getType();
  if (failed(verifyCompatibleShape(input.getShape(), result.getShape())))
    return emitOpError("input shape ")
           << shapeString(input.getShape())
           << " does not match the quantized shape "
           << shapeString(result.getShape());
  return success();
}

// quantize(dequantize(%q)) -> %q: the dequantized values are exactly
// representable in %q's format, and every quantizer reproduces those.
OpFoldResult QuantizeOp::fold(FoldAdaptor) {
  auto dequantize = getInput().getDefiningOp<DequantizeOp>();
  if (dequantize && dequantize.getInput().getType() == getType())
    return dequantize.getInput();
  return {};
}

LogicalResult DequantizeOp::verify() {
  auto input = getInput().getType();
  auto result = getResult().getType();
  if (failed(verifyCompatibleShape(input.getShape(), result.getShape())))
    return emitOpError("result shape ")
           << shapeString(result.getShape())
           << " does not match the quantized shape "
           << shapeString(input.getShape());
  return success();
}

//===----------------------------------------------------------------------===//
// MatmulOp
//===----------------------------------------------------------------------===//

/// The shape of a ranked tensor or a quantized tensor.
static ArrayRef<int64_t> shapeOf(Type type) {
  if (auto quantized = dyn_cast<QuantizedTensorType>(type))
    return quantized.getShape();
  return cast<RankedTensorType>(type).getShape();
}

LogicalResult MatmulOp::verify() {
  ArrayRef<int64_t> weights = shapeOf(getWeights().getType());
  if (weights.size() != 2)
    return emitOpError("expects 2-D weights [out, in], got rank ")
           << weights.size();

  if (ShapedType::isDynamicShape(weights))
    return emitOpError("weights must have a static shape");

  ArrayRef<int64_t> inputShape = shapeOf(getInput().getType());
  if (inputShape.size() != 2)
    return emitOpError("expects 2-D activations [tokens, in], got rank ")
           << inputShape.size();

  int64_t in = weights[1];
  if (inputShape[1] != ShapedType::kDynamic && inputShape[1] != in)
    return emitOpError("activations have ")
           << inputShape[1] << " input features but the weights have " << in;

  SmallVector<int64_t> expected = {inputShape[0], weights[0]};
  auto result = getResult().getType();
  if (failed(verifyCompatibleShape(result.getShape(), expected)))
    return emitOpError("result shape ")
           << shapeString(result.getShape()) << " does not match [tokens, out] = "
           << shapeString(expected);
  if (Value bias = getBias()) {
    auto type = cast<RankedTensorType>(bias.getType());
    if (type.getRank() != 1 || failed(verifyCompatibleShape(
                                   type.getShape(), ArrayRef(weights[0]))))
      return emitOpError("bias of shape ")
             << shapeString(type.getShape()) << " does not match [out] = ["
             << weights[0] << "]";
  }
  return success();
}

//===----------------------------------------------------------------------===//
// RepackOp
//===----------------------------------------------------------------------===//

LogicalResult RepackOp::verify() {
  auto input = getInput().getType();
  auto result = getResult().getType();
  if (input.withInterleave(result.getInterleave()) != result)
    return emitOpError("may change only the storage layout, but ")
           << input << " and " << result
           << " differ in shape, format, group or asymmetry";
  return success();
}

// repack(%x : T -> T) -> %x, and repack(repack(%x)) -> repack(%x): values
// are never changed, so only the last layout matters.
OpFoldResult RepackOp::fold(FoldAdaptor) {
  if (getInput().getType() == getType())
    return getInput();
  if (auto inner = getInput().getDefiningOp<RepackOp>()) {
    getInputMutable().assign(inner.getInput());
    return getResult();
  }
  return {};
}

//===----------------------------------------------------------------------===//
// PackOp / UnpackOp
//===----------------------------------------------------------------------===//

LogicalResult PackOp::verify() {
  return verifyGroupParts(*this, getResult().getType(), getCodes().getType(),
                          getScales().getType(),
                          getMins() ? getMins().getType() : RankedTensorType());
}

// pack(unpack(%q)) -> %q.
OpFoldResult PackOp::fold(FoldAdaptor) {
  auto unpack = getCodes().getDefiningOp<UnpackOp>();
  if (!unpack || unpack.getInput().getType() != getType() ||
      getScales() != unpack.getScales() || getMins() != unpack.getMins())
    return {};
  return unpack.getInput();
}

LogicalResult UnpackOp::verify() {
  return verifyGroupParts(*this, getInput().getType(), getCodes().getType(),
                          getScales().getType(),
                          getMins() ? getMins().getType() : RankedTensorType());
}

// unpack(pack(%c, %s, %m)) -> %c, %s, %m.
LogicalResult UnpackOp::fold(FoldAdaptor,
                             SmallVectorImpl<OpFoldResult> &results) {
  auto pack = getInput().getDefiningOp<PackOp>();
  if (!pack)
    return failure();
  if (pack.getCodes().getType() != getCodes().getType() ||
      pack.getScales().getType() != getScales().getType() ||
      (getMins() && pack.getMins().getType() != getMins().getType()))
    return failure();
  results.push_back(pack.getCodes());
  results.push_back(pack.getScales());
  if (getMins())
    results.push_back(pack.getMins());
  return success();
}

#define GET_OP_CLASSES
#include "dialects/qnt/IR/QntOps.cpp.inc"
