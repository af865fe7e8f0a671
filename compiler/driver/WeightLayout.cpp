//===- WeightLayout.cpp - The bundle layout's weight types in the IR ------===//

#include "compiler/driver/WeightLayout.h"

#include "dialects/moe/IR/MoeOps.h"
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
  // A bank's reference has expert 0's format (and layout); a bank of mixed
  // formats lists each expert's (moe.experts' expert_types).
  StringMap<std::vector<unsigned>> expertInterleaves;
  for (size_t l = 0; l < layout.expertGroups.size(); ++l)
    for (unsigned g : layout.groupOfExpert[l])
      for (const emit::BundleLayout::ExpertPart &p :
           layout.expertGroups[l][g].parts)
        expertInterleaves[p.tensor->name].push_back(p.interleave);
  for (const auto &entry : expertInterleaves)
    interleaveOf[entry.getKey()] = entry.getValue().front();
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
  for (moe::ExpertsOp bank : module.getOps<moe::ExpertsOp>()) {
    mlir::ArrayAttr perExpert = bank.getExpertTypesAttr();
    if (!perExpert)
      continue;
    StringRef names[3] = {bank.getGate().getName(), bank.getUp().getName(),
                          bank.getDown().getName()};
    SmallVector<mlir::Attribute> rewritten;
    for (auto [e, entry] : llvm::enumerate(perExpert)) {
      SmallVector<mlir::Attribute> parts;
      for (auto [i, part] : llvm::enumerate(cast<mlir::ArrayAttr>(entry))) {
        const std::vector<unsigned> &interleaves =
            expertInterleaves.lookup(names[i]);
        unsigned interleave = e < interleaves.size() ? interleaves[e] : 1;
        Expected<mlir::Type> type = withInterleave(
            names[i], cast<mlir::TypeAttr>(part).getValue(), interleave);
        if (!type)
          return type.takeError();
        parts.push_back(mlir::TypeAttr::get(*type));
      }
      rewritten.push_back(mlir::ArrayAttr::get(module.getContext(), parts));
    }
    bank.setExpertTypesAttr(mlir::ArrayAttr::get(module.getContext(), rewritten));
  }
  return Error::success();
}
