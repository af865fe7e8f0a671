//===- Importer.h - A model into moe + qnt + upstream IR --------*- C++ -*-===//
//
// Builds the `input` phase IR of a model from its weight store: a module
// holding one `moe.experts` bank per layer and `@forward`, one step of the
// model over a batch of tokens at given positions with a KV cache per layer:
//
//   func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>,
//                      %k_cache_0, %v_cache_0, ...)
//       -> (tensor<?xVOCABxf32>, %k_cache_0', %v_cache_0', ...)
//
// Weights are named (`qnt.weight`, `#qnt.ref`), never inlined, with the type
// they have in the store, so the IR of a 4 GB model is kilobytes. The
// module's `moe.model` attribute records the family and hyper-parameters and
// `moe.weight_store` the files the names refer into.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_IMPORT_IMPORTER_H
#define MOEC_COMPILER_IMPORT_IMPORTER_H

#include "compiler/model/WeightStore.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

namespace moec::importer {

/// Imports `store` into a new module; `contextLength` sizes the KV caches
/// (0: the model's own context length, an error if it states none).
llvm::Expected<mlir::OwningOpRef<mlir::ModuleOp>>
importModel(mlir::MLIRContext &context, const model::WeightStore &store,
            int64_t contextLength = 0);

} // namespace moec::importer

#endif // MOEC_COMPILER_IMPORT_IMPORTER_H
