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

#include <array>
#include <functional>
#include <vector>

namespace moec::emit {

/// Where every weight goes in a bundle, independent of the metadata that
/// precedes it: resident tensors relative to the resident segment, expert
/// parts relative to their extent. Compiled code addresses weights by these
/// offsets, so code and bundle must share one layout; `hash` identifies it.
struct BundleLayout {
  struct Resident {
    const model::StoredTensor *tensor;
    uint64_t offset; // from the resident segment's start
    uint64_t size;
  };
  struct ExpertPart {
    const model::StoredTensor *tensor; // the stacked [E, rows, cols] tensor
    uint64_t offset; // from the extent's start
    uint64_t size;   // one expert's bytes
  };
  std::vector<Resident> resident;
  uint64_t residentSize = 0;
  /// Per layer: gate, up, down.
  std::vector<std::array<ExpertPart, 3>> expertParts;
  std::vector<uint64_t> extentSize;
  /// Low 63 bits of the XXH3 of the layout's description.
  int64_t hash = 0;

  const Resident *findResident(llvm::StringRef name) const;
};

BundleLayout computeBundleLayout(const model::WeightStore &store);

struct BundleOptions {
  /// Extent alignment: the target's I/O block (O_DIRECT granularity).
  uint32_t ioBlock = 4096;
  /// The plan (plan::Plan::toJson) recorded in the metadata; null: every
  /// expert resident.
  llvm::json::Value plan = nullptr;
  /// The tokenizer's vocabulary (tokenizer::Vocabulary::serialize), or ""
  /// when the model carries none.
  std::string vocabulary = {};
  /// What the compress phase did (formats, budget, predicted error), or
  /// null when it did not run.
  llvm::json::Value compression = nullptr;
};

/// Writes `store` as a bundle to `path` (atomically). `progress` gets bytes
/// written and the total.
llvm::Error writeBundle(const model::WeightStore &store, llvm::StringRef path,
                        const BundleOptions &options,
                        std::function<void(uint64_t, uint64_t)> progress = {});

} // namespace moec::emit

#endif // MOEC_COMPILER_EMIT_BUNDLEWRITER_H
