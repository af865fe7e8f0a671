//===- SafetensorsFile.h - A memory-mapped safetensors reader ---*- C++ -*-===//
//
// Reads the safetensors format: an 8-byte little-endian header length, a JSON
// header naming each tensor's dtype, shape and [begin, end) byte range in the
// data that follows, and the data. The file is untrusted: the header length,
// the JSON, every shape and every range are checked (sizes agree with dtype
// and shape, ranges inside the data and not overlapping) before use; errors
// name the file, the tensor or key, and what was expected.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_SAFETENSORS_SAFETENSORSFILE_H
#define MOEC_COMPILER_SAFETENSORS_SAFETENSORSFILE_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/MemoryBuffer.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace moec::safetensors {

/// Element types of safetensors. moec computes with F32, F16 and BF16; the
/// others are read (their sizes are known) but refused when used.
enum class DType {
  F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, Bool, F8E4M3,
  F8E5M2, F8E8M0
};

llvm::StringRef getDTypeName(DType type);
/// Bytes per element.
unsigned getDTypeSize(DType type);

struct TensorInfo {
  std::string name;
  DType dtype;
  /// Outermost first (PyTorch order).
  llvm::SmallVector<int64_t, 4> shape;
  /// Byte range in the data section.
  uint64_t begin, end;
  uint64_t numElements;
};

class SafetensorsFile {
public:
  static llvm::Expected<std::unique_ptr<SafetensorsFile>>
  open(llvm::StringRef path);
  static llvm::Expected<std::unique_ptr<SafetensorsFile>>
  parse(std::unique_ptr<llvm::MemoryBuffer> buffer);

  llvm::StringRef getPath() const { return buffer->getBufferIdentifier(); }
  uint64_t getFileSize() const { return buffer->getBufferSize(); }
  /// The whole file, as mapped.
  llvm::ArrayRef<uint8_t> getFileData() const {
    return llvm::ArrayRef<uint8_t>(
        reinterpret_cast<const uint8_t *>(buffer->getBufferStart()),
        buffer->getBufferSize());
  }
  uint64_t getDataOffset() const { return dataOffset; }
  /// `__metadata__`, string to string.
  const std::map<std::string, std::string> &getMetadata() const {
    return metadata;
  }
  /// Tensors in data order.
  llvm::ArrayRef<TensorInfo> getTensors() const { return tensors; }
  const TensorInfo *findTensor(llvm::StringRef name) const;
  llvm::ArrayRef<uint8_t> getTensorData(const TensorInfo &tensor) const;

  llvm::Error makeError(const llvm::Twine &message) const;

private:
  SafetensorsFile() = default;
  llvm::Error parseHeader();

  std::unique_ptr<llvm::MemoryBuffer> buffer;
  uint64_t dataOffset = 0;
  std::map<std::string, std::string> metadata;
  std::vector<TensorInfo> tensors;
  llvm::StringMap<size_t> index;
};

} // namespace moec::safetensors

#endif // MOEC_COMPILER_SAFETENSORS_SAFETENSORSFILE_H
