//===- BundleWriter.h - Writing a model's weight bundle ---------*- C++ -*-===//
//
// Lays out a model's weights as runtime/abi/moec_bundle.h specifies: the
// resident tensors, then one extent per (layer, expert) holding that
// expert's gate, up and down projections contiguously, aligned to the
// target's I/O block, each checksummed. The plan of this version keeps every
// expert resident at run time (the layout is the streaming one already).
// Deterministic: the same inputs give the same bytes.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_EMIT_BUNDLEWRITER_H
#define MOEC_COMPILER_EMIT_BUNDLEWRITER_H

#include "compiler/model/WeightStore.h"

#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"

#include <functional>

namespace moec::emit {

struct BundleOptions {
  /// Extent alignment: the target's I/O block (O_DIRECT granularity).
  uint32_t ioBlock = 4096;
  /// The plan (plan::Plan::toJson) recorded in the metadata; null: every
  /// expert resident.
  llvm::json::Value plan = nullptr;
};

/// Writes `store` as a bundle to `path` (atomically). `progress` gets bytes
/// written and the total.
llvm::Error writeBundle(const model::WeightStore &store, llvm::StringRef path,
                        const BundleOptions &options,
                        std::function<void(uint64_t, uint64_t)> progress = {});

} // namespace moec::emit

#endif // MOEC_COMPILER_EMIT_BUNDLEWRITER_H
