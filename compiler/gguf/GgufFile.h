//===- GgufFile.h - A memory-mapped GGUF reader -----------------*- C++ -*-===//
//
// Reads GGUF v2 and v3 (little-endian): metadata of every value type
// (arrays, nested arrays included), tensor infos, `general.alignment`, and
// gives each tensor's bytes straight from the mapping.
//
// The file is untrusted: every count, length, offset and dimension is checked
// against the bytes that are really there before it is used, and no
// allocation is ever sized by a field that was not. Arrays are validated once
// and decoded on demand, so that a metadata array costs no memory until it is
// read. Errors name the file, the byte offset and what was expected.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_GGUF_GGUFFILE_H
#define MOEC_COMPILER_GGUF_GGUFFILE_H

#include "compiler/gguf/GgmlType.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/MemoryBuffer.h"

#include <memory>
#include <string>
#include <vector>

namespace moec::gguf {

/// GGUF metadata value types.
enum class ValueType : uint32_t {
  UInt8 = 0,
  Int8 = 1,
  UInt16 = 2,
  Int16 = 3,
  UInt32 = 4,
  Int32 = 5,
  Float32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  UInt64 = 10,
  Int64 = 11,
  Float64 = 12,
};

llvm::StringRef getValueTypeName(ValueType type);

/// Bytes of one value of a fixed-size type; 0 for strings and arrays.
uint64_t getValueTypeSize(ValueType type);

/// One metadata value. Scalars and strings are decoded; arrays keep their
/// validated bytes and decode elements on request.
class Value {
public:
  ValueType getType() const { return type; }
  bool isInteger() const;
  bool isFloat() const {
    return type == ValueType::Float32 || type == ValueType::Float64;
  }

  /// Integer types and Bool.
  std::optional<uint64_t> getAsUnsigned() const;
  std::optional<int64_t> getAsSigned() const;
  /// Float types and, converted, integer types.
  std::optional<double> getAsDouble() const;
  std::optional<bool> getAsBool() const;
  std::optional<llvm::StringRef> getAsString() const;

  // Arrays.
  ValueType getArrayElementType() const { return arrayElementType; }
  uint64_t getArraySize() const { return arraySize; }
  /// Decodes every element (strings point into the file mapping).
  std::vector<Value> getArrayElements() const;

  /// A short description for messages: "u32 7", "string \"llama\"",
  /// "array of 32000 string".
  std::string describe() const;

private:
  friend class GgufParser;
  ValueType type = ValueType::UInt8;
  union {
    uint64_t u;
    int64_t i;
    double f;
  } scalar = {0};
  llvm::StringRef string;
  ValueType arrayElementType = ValueType::UInt8;
  uint64_t arraySize = 0;
  /// The array's encoded elements (after its type and count).
  llvm::ArrayRef<uint8_t> arrayBytes;
};

struct KeyValue {
  llvm::StringRef key;
  Value value;
  /// Where the key starts in the file, for messages.
  uint64_t fileOffset;
};

struct TensorInfo {
  llvm::StringRef name;
  /// ggml order: dims[0] is the innermost (contiguous) dimension.
  llvm::SmallVector<int64_t, 4> dims;
  GgmlTypeInfo type;
  /// Offset of the data from the start of the data section.
  uint64_t offset;
  uint64_t numElements;
  uint64_t numBytes;
  /// Where this tensor's info starts in the file, for messages.
  uint64_t infoFileOffset;

  /// Outermost first, as MLIR shapes are written: [dims[n-1], ..., dims[0]].
  llvm::SmallVector<int64_t, 4> getShape() const {
    return llvm::SmallVector<int64_t, 4>(llvm::reverse(dims));
  }
};

class GgufFile {
public:
  /// Maps and parses `path`.
  static llvm::Expected<std::unique_ptr<GgufFile>> open(llvm::StringRef path);
  /// Parses a file already in memory; `name` is used in messages.
  static llvm::Expected<std::unique_ptr<GgufFile>>
  parse(std::unique_ptr<llvm::MemoryBuffer> buffer);

  llvm::StringRef getPath() const { return buffer->getBufferIdentifier(); }
  uint64_t getFileSize() const { return buffer->getBufferSize(); }
  /// The whole file, as mapped.
  llvm::ArrayRef<uint8_t> getFileData() const {
    return llvm::ArrayRef<uint8_t>(
        reinterpret_cast<const uint8_t *>(buffer->getBufferStart()),
        buffer->getBufferSize());
  }
  uint32_t getVersion() const { return version; }
  uint64_t getAlignment() const { return alignment; }
  uint64_t getDataOffset() const { return dataOffset; }

  llvm::ArrayRef<KeyValue> getMetadata() const { return metadata; }
  const Value *lookup(llvm::StringRef key) const;

  // Typed metadata access with messages naming the file and key.
  llvm::Expected<uint64_t> getUnsigned(llvm::StringRef key) const;
  llvm::Expected<double> getDouble(llvm::StringRef key) const;
  llvm::Expected<llvm::StringRef> getString(llvm::StringRef key) const;
  llvm::Expected<bool> getBool(llvm::StringRef key) const;

  llvm::ArrayRef<TensorInfo> getTensors() const { return tensors; }
  const TensorInfo *findTensor(llvm::StringRef name) const;
  /// The tensor's bytes, inside the mapping.
  llvm::ArrayRef<uint8_t> getTensorData(const TensorInfo &tensor) const;

  /// An error "PATH: MESSAGE".
  llvm::Error makeError(const llvm::Twine &message) const;

private:
  friend class GgufParser;
  GgufFile() = default;

  std::unique_ptr<llvm::MemoryBuffer> buffer;
  uint32_t version = 0;
  uint64_t alignment = 32;
  uint64_t dataOffset = 0;
  std::vector<KeyValue> metadata;
  llvm::StringMap<size_t> metadataIndex;
  std::vector<TensorInfo> tensors;
  llvm::StringMap<size_t> tensorIndex;
};

} // namespace moec::gguf

#endif // MOEC_COMPILER_GGUF_GGUFFILE_H
