//===- WeightLayout.cpp - The bundle layout's weight types in the IR ------===//

#include "compiler/driver/WeightLayout.h"

#include "dialects/qnt/IR/QntOps.h"

#include "llvm/ADT/StringMap.h"

using namespace llvm;
using namespace moec;

namespace {

Error layoutError(const Twine &what) {
  return createStringError(inconvertibleErrorCode(),
                           "internal error: plan: " + what);
}

/// `type` with `interleave`, or an error where it cannot carry one.
Expected<mlir::Type> withInterleave(StringRef name, mlir::Type type,
                                    unsigned interleave) {
  auto quantized = dyn_cast<qnt::QuantizedTensorType>(type);
  if (!quantized) {
    if (interleave == 1)
      return type;
    return layoutError("the layout interleaves '" + name +
                       "', whose type is not a !qnt.tensor");
  }
  return mlir::Type(quantized.withInterleave(interleave));
}

} // namespace

Error driver::applyWeightLayout(mlir::ModuleOp module,
                                const emit::BundleLayout &layout) {
  StringMap<unsigned> interleaveOf;
  for (const emit::BundleLayout::Resident &r : layout.resident)
    interleaveOf[r.tensor->name] = r.interleave;
  for (const auto &parts : layout.expertParts)
    for (const emit::BundleLayout::ExpertPart &p : parts)
      interleaveOf[p.tensor->name] = p.interleave;
  auto lookup = [&](StringRef name) {
    auto it = interleaveOf.find(name);
    return it == interleaveOf.end() ? 1u : it->second;
  };

  Error error = Error::success();
  module.walk([&](qnt::WeightOp weight) {
    if (error)
      return;
    Expected<mlir::Type> type =
        withInterleave(weight.getName(), weight.getType(),
                       lookup(weight.getName()));
    if (!type) {
      error = type.takeError();
      return;
    }
    weight.getResult().setType(*type);
  });
  if (error)
    return error;
  // Every reference to a stored weight (expert banks, shared experts,
  // lookups) says the same.
  module.walk([&](mlir::Operation *op) {
    if (error)
      return;
    for (mlir::NamedAttribute attr : op->getAttrs()) {
      auto ref = dyn_cast<qnt::WeightRefAttr>(attr.getValue());
      if (!ref)
        continue;
      Expected<mlir::Type> type =
          withInterleave(ref.getName(), ref.getType(), lookup(ref.getName()));
      if (!type) {
        error = type.takeError();
        return;
      }
      if (*type != ref.getType())
        op->setAttr(attr.getName(),
                    qnt::WeightRefAttr::get(ref.getName(), *type));
    }
  });
  if (error)
    return error;
  return Error::success();
}
