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
#include <optional>
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
    /// Rows interleaved block by block (compiler/emit/Repack.h); 1: as
    /// stored in the model (row-major).
    unsigned interleave = 1;
  };
  struct ExpertPart {
    const model::StoredTensor *tensor; // the stacked [E, rows, cols] tensor
    gguf::GgmlType type;               // the group's experts' format
    uint64_t offset; // from the extent's start
    uint64_t size;   // one expert's bytes
    unsigned interleave = 1;
  };
  /// The experts of a layer that share one format per projection: their
  /// extents have one layout.
  struct ExpertGroup {
    std::vector<int64_t> members; // expert ids, ascending
    std::array<ExpertPart, 3> parts; // gate, up, down
    uint64_t extentSize = 0;
  };
  std::vector<Resident> resident;
  uint64_t residentSize = 0;
  /// Per layer: its expert groups (one unless its banks mix formats, then
  /// in order of their first member) and each expert's group.
  std::vector<std::vector<ExpertGroup>> expertGroups;
  std::vector<std::vector<unsigned>> groupOfExpert;
  /// Low 63 bits of the XXH3 of the layout's description.
  int64_t hash = 0;

  const Resident *findResident(llvm::StringRef name) const;
};

/// The layout of `store`'s weights. `weightInterleave` > 1 stores every
/// quantized matrix that matmul kernels read (see getWeightInterleave) with
/// that many rows interleaved; 1 keeps the model's row-major blocks.
BundleLayout computeBundleLayout(const model::WeightStore &store,
                                 unsigned weightInterleave = 1);

/// The interleave `tensor` gets under `weightInterleave`: the requested one
/// for block-quantized matrices that only matmuls read (projections, the
/// output head), whose rows (per expert) divide by it; else 1. The token
/// embedding is read row by row by the lookup and keeps its layout.
/// `type`: the format of the experts in question of a bank of mixed
/// formats (default: the tensor's).
unsigned getWeightInterleave(const model::StoredTensor &tensor,
                             int64_t numExperts, unsigned weightInterleave,
                             std::optional<gguf::GgmlType> type = {});

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
  /// See computeBundleLayout; must be what the compiled code was generated
  /// for (the layout hash covers it).
  unsigned weightInterleave = 1;
};

/// Writes `store` as a bundle to `path` (atomically). `progress` gets bytes
/// written and the total.
llvm::Error writeBundle(const model::WeightStore &store, llvm::StringRef path,
                        const BundleOptions &options,
                        std::function<void(uint64_t, uint64_t)> progress = {});

} // namespace moec::emit

#endif // MOEC_COMPILER_EMIT_BUNDLEWRITER_H
