//===- WeightStore.h - A model's tensors under their canonical names -*- C++ -*-===//
//
// Opens a model in any supported format (a GGUF file; a Hugging Face
// checkpoint: config.json with model.safetensors or a sharded
// model.safetensors.index.json) and presents its configuration and its
// tensors under one naming, GGUF's ("blk.3.ffn_gate_exps.weight"), which is
// what the IR refers to. A tensor is a list of byte extents in the model's
// files: one for GGUF; for a checkpoint that stores experts one tensor per
// expert, one extent per expert of the stacked tensor. No weight is copied.
// Tensors of any ggml type are described; consumers that compute refuse the
// types they cannot (gguf::GgmlTypeInfo::computeSupported).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_MODEL_WEIGHTSTORE_H
#define MOEC_COMPILER_MODEL_WEIGHTSTORE_H

#include "compiler/gguf/GgmlType.h"
#include "compiler/model/ModelConfig.h"

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/Error.h"

#include <memory>
#include <string>
#include <vector>

namespace moec::gguf {
class GgufFile;
}
namespace moec::safetensors {
class SafetensorsFile;
}

namespace moec::model {

enum class SourceFormat { Gguf, Safetensors };

struct StoredTensor {
  /// The canonical (GGUF) name.
  std::string name;
  /// ggml order: dims[0] is innermost.
  llvm::SmallVector<int64_t, 4> dims;
  gguf::GgmlType type;
  uint64_t numBytes;
  /// The extents that, concatenated, hold the tensor.
  struct Extent {
    unsigned file;
    uint64_t offset; // from the start of the file
    uint64_t size;
  };
  llvm::SmallVector<Extent, 1> extents;
  const TensorRole *role = nullptr;
  /// A bank of routed experts whose experts have different formats (moec's
  /// own GGUF: one tensor per expert, getExpertSliceName): the format of
  /// each expert, whose slices lie one after another in expert order (one
  /// extent each); `type` is expert 0's. Empty: every expert is in `type`.
  llvm::SmallVector<gguf::GgmlType, 0> expertTypes;

  bool hasMixedExperts() const { return !expertTypes.empty(); }
  /// The format of expert `e` (of a bank; `type` for any other tensor).
  gguf::GgmlType getExpertType(int64_t e) const {
    return expertTypes.empty() ? type : expertTypes[size_t(e)];
  }
  /// Bytes of one expert's slice of a bank, and where it starts in the
  /// tensor's bytes.
  uint64_t getExpertBytes(int64_t e) const;
  uint64_t getExpertOffset(int64_t e) const;
};

class WeightStore {
public:
  ~WeightStore();

  /// Opens a GGUF file, a checkpoint directory, its config.json, a
  /// .safetensors file (config.json beside it) or a
  /// model.safetensors.index.json.
  static llvm::Expected<std::unique_ptr<WeightStore>>
  open(llvm::StringRef path);

  SourceFormat getFormat() const { return format; }
  const ModelConfig &getConfig() const { return config; }
  /// The model's files (one GGUF, or the checkpoint's shards).
  llvm::ArrayRef<std::string> getFiles() const { return files; }
  uint64_t getTotalBytes() const;

  /// Tensors in model order (getTensorRoles).
  llvm::ArrayRef<StoredTensor> getTensors() const { return tensors; }
  const StoredTensor *find(llvm::StringRef name) const;
  /// The bytes of one extent, inside the file mapping.
  llvm::ArrayRef<uint8_t> getExtentData(const StoredTensor::Extent &e) const;
  /// Copies bytes [offset, offset + size) of `t`, across its extents, to
  /// `out` (the range must lie inside the tensor).
  void copyBytes(const StoredTensor &t, uint64_t offset, uint64_t size,
                 uint8_t *out) const;
  /// Hints that bytes [offset, offset + size) of `t` will not be read
  /// again soon, so that their pages leave this process's memory: a pass
  /// over a model larger than memory (compression, bundle writing) then
  /// keeps its resident set to what it is working on. Reading them again
  /// still works (from storage). Does nothing for a source smaller than
  /// half of the physical memory, which stays cached.
  void releaseBytes(const StoredTensor &t, uint64_t offset,
                    uint64_t size) const;
  /// Overrides open()'s choice of whether releaseBytes gives pages back
  /// (tests reach the release on small models this way).
  void setReleasesPages(bool on) { releasesPages = on; }
  /// The GGUF file, for GGUF models (metadata such as the tokenizer).
  const gguf::GgufFile *getGguf() const { return ggufFile.get(); }

private:
  WeightStore() = default;
  llvm::Error addTensors(const llvm::StringMap<unsigned> &shardOf);
  /// open() without the choice of releasesPages.
  static llvm::Expected<std::unique_ptr<WeightStore>>
  openByName(llvm::StringRef path);
  static llvm::Expected<std::unique_ptr<WeightStore>>
  openGguf(llvm::StringRef path);
  static llvm::Expected<std::unique_ptr<WeightStore>>
  openCheckpoint(llvm::StringRef directory, llvm::StringRef weightsFile);

  SourceFormat format = SourceFormat::Gguf;
  ModelConfig config;
  std::vector<TensorRole> roles;
  std::vector<std::string> files;
  std::unique_ptr<gguf::GgufFile> ggufFile;
  std::vector<std::unique_ptr<safetensors::SafetensorsFile>> shards;
  std::vector<StoredTensor> tensors;
  llvm::StringMap<size_t> index;
  /// Whether releaseBytes gives pages back: only for sources larger than
  /// half of the physical memory (open()).
  bool releasesPages = true;
};

} // namespace moec::model

#endif // MOEC_COMPILER_MODEL_WEIGHTSTORE_H
