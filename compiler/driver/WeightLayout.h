//===- WeightLayout.h - The bundle layout's weight types in the IR -*- C++ -*-===//
//
// The plan phase decides how the bundle stores each weight
// (emit::BundleLayout); repacked matrices change type in the IR to say so
// (`interleave` of !qnt.tensor), so that the kernels generated from the IR
// read them as the bundle holds them.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_DRIVER_WEIGHTLAYOUT_H
#define MOEC_COMPILER_DRIVER_WEIGHTLAYOUT_H

#include "compiler/emit/BundleWriter.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/Error.h"

namespace moec::driver {

/// Gives every qnt.weight and every moe.experts weight reference the
/// interleave `layout` stores it with. A weight the layout interleaves but
/// whose type cannot say so (not a !qnt.tensor) is an internal error.
llvm::Error applyWeightLayout(mlir::ModuleOp module,
                              const emit::BundleLayout &layout);

} // namespace moec::driver

#endif // MOEC_COMPILER_DRIVER_WEIGHTLAYOUT_H
