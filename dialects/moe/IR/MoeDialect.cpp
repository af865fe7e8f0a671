//===- MoeDialect.cpp - moe dialect and attributes ------------------------===//

#include "dialects/moe/IR/MoeDialect.h"
#include "dialects/moe/IR/MoeOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>

using namespace mlir;
using namespace moec::moe;

#include "dialects/moe/IR/MoeOpsDialect.cpp.inc"
#include "dialects/moe/IR/MoeEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/moe/IR/MoeAttrs.cpp.inc"

void MoeDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/moe/IR/MoeOps.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/moe/IR/MoeAttrs.cpp.inc"
      >();
}

//===----------------------------------------------------------------------===//
// ActivationAttr
//===----------------------------------------------------------------------===//

LogicalResult
ActivationAttr::verify(llvm::function_ref<InFlightDiagnostic()> emitError,
                       ActivationKind kind, FloatAttr alpha, FloatAttr limit) {
  bool clamped = kind == ActivationKind::SwiGLUClamped;
  if (!clamped && (alpha || limit))
    return emitError() << "activation " << stringifyActivationKind(kind)
                       << " takes no alpha or limit";
  if (clamped && (!alpha || !limit))
    return emitError() << "activation swiglu_clamped requires alpha and limit";
  if (clamped) {
    for (auto [name, value] : {std::pair<StringRef, FloatAttr>{"alpha", alpha},
                               {"limit", limit}}) {
      double v = value.getValueAsDouble();
      if (!(v > 0.0) || std::isinf(v))
        return emitError() << "swiglu_clamped " << name
                           << " must be positive and finite, got " << v;
    }
  }
  return success();
}

// #moe.act<KIND[, alpha = F, limit = F]>
Attribute ActivationAttr::parse(AsmParser &parser, Type) {
  StringRef kindName;
  SMLoc kindLoc;
  if (parser.parseLess())
    return {};
  kindLoc = parser.getCurrentLocation();
  if (parser.parseKeyword(&kindName))
    return {};
  std::optional<ActivationKind> kind = symbolizeActivationKind(kindName);
  if (!kind) {
    parser.emitError(kindLoc) << "unknown activation '" << kindName
                              << "', expected swiglu, geglu or swiglu_clamped";
    return {};
  }
  FloatAttr alpha, limit;
  Type f64 = parser.getBuilder().getF64Type();
  while (succeeded(parser.parseOptionalComma())) {
    StringRef key;
    SMLoc keyLoc = parser.getCurrentLocation();
    double value;
    if (parser.parseKeyword(&key) || parser.parseEqual() ||
        parser.parseFloat(value))
      return {};
    if ((key == "alpha" && alpha) || (key == "limit" && limit)) {
      parser.emitError(keyLoc) << "'" << key << "' given twice";
      return {};
    }
    if (key == "alpha") {
      alpha = FloatAttr::get(f64, value);
    } else if (key == "limit") {
      limit = FloatAttr::get(f64, value);
    } else {
      parser.emitError(keyLoc) << "expected 'alpha' or 'limit', got '" << key
                               << "'";
      return {};
    }
  }
  if (parser.parseGreater())
    return {};
  return parser.getChecked<ActivationAttr>(parser.getContext(), *kind, alpha,
                                           limit);
}

void ActivationAttr::print(AsmPrinter &printer) const {
  printer << "<" << stringifyActivationKind(getKind());
  if (getAlpha()) {
    printer << ", alpha = ";
    printer.printFloat(getAlpha().getValue());
  }
  if (getLimit()) {
    printer << ", limit = ";
    printer.printFloat(getLimit().getValue());
  }
  printer << ">";
}

//===----------------------------------------------------------------------===//
// PrefetchAttr
//===----------------------------------------------------------------------===//

LogicalResult
PrefetchAttr::verify(llvm::function_ref<InFlightDiagnostic()> emitError,
                     unsigned distance, Predictor) {
  if (distance == 0)
    return emitError() << "prefetch distance must be at least one layer";
  return success();
}
