//===- GgufWriter.h - Writes GGUF v3 files ----------------------*- C++ -*-===//
//
// Writes GGUF v3 (little-endian): metadata of every value type and tensors
// whose bytes are produced on demand, one tensor at a time, so that
// multi-gigabyte files are written without holding them in memory. The file
// appears under its name only once it is complete (written to a temporary
// name, then renamed).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_GGUF_GGUFWRITER_H
#define MOEC_COMPILER_GGUF_GGUFWRITER_H

#include "compiler/gguf/GgmlType.h"
#include "compiler/gguf/GgufFile.h"

#include "llvm/ADT/SmallVector.h"
#include "llvm/Support/Error.h"

#include <functional>
#include <string>
#include <vector>

namespace moec::gguf {

/// A metadata value to write.
struct WriteValue {
  ValueType type = ValueType::UInt32;
  uint64_t bits = 0; // integers, bool; floats as their bit pattern
  std::string string;
  ValueType elementType = ValueType::UInt32;
  std::vector<WriteValue> elements;

  static WriteValue u8(uint8_t v) { return scalar(ValueType::UInt8, v); }
  static WriteValue i8(int8_t v) {
    return scalar(ValueType::Int8, static_cast<uint8_t>(v));
  }
  static WriteValue u16(uint16_t v) { return scalar(ValueType::UInt16, v); }
  static WriteValue i16(int16_t v) {
    return scalar(ValueType::Int16, static_cast<uint16_t>(v));
  }
  static WriteValue u32(uint32_t v) { return scalar(ValueType::UInt32, v); }
  static WriteValue i32(int32_t v) {
    return scalar(ValueType::Int32, static_cast<uint32_t>(v));
  }
  static WriteValue u64(uint64_t v) { return scalar(ValueType::UInt64, v); }
  static WriteValue i64(int64_t v) {
    return scalar(ValueType::Int64, static_cast<uint64_t>(v));
  }
  static WriteValue f32(float v);
  static WriteValue f64(double v);
  static WriteValue boolean(bool v) { return scalar(ValueType::Bool, v); }
  static WriteValue str(std::string v);
  static WriteValue array(ValueType elementType,
                          std::vector<WriteValue> elements);
  /// A copy of a value read from another GGUF file (arrays included).
  static WriteValue copyOf(const Value &value);

private:
  static WriteValue scalar(ValueType type, uint64_t bits) {
    WriteValue v;
    v.type = type;
    v.bits = bits;
    return v;
  }
};

class GgufWriter {
public:
  /// Fills `out` (exactly the tensor's size in bytes) with its data.
  using TensorDataFn = std::function<void(llvm::MutableArrayRef<uint8_t> out)>;

  explicit GgufWriter(uint64_t alignment = 32) : alignment(alignment) {}

  void setMetadata(llvm::StringRef key, WriteValue value);

  /// Adds a tensor of type `type` with ggml dims (dims[0] innermost). The
  /// data function is called once, while the file is written.
  llvm::Error addTensor(llvm::StringRef name, llvm::ArrayRef<int64_t> dims,
                        GgmlType type, TensorDataFn data);

  /// Writes the file: to PATH.tmp-XXXX first, renamed to `path` at the end.
  /// `progress`, when given, is called after each tensor with bytes written
  /// and the total.
  llvm::Error write(llvm::StringRef path,
                    std::function<void(uint64_t, uint64_t)> progress = {});

  /// Bytes the file will have.
  uint64_t getFileSize() const;

private:
  struct PendingTensor {
    std::string name;
    llvm::SmallVector<int64_t, 4> dims;
    GgmlType type;
    uint64_t numBytes;
    uint64_t offset;
    TensorDataFn data;
  };
  uint64_t headerSize() const;

  uint64_t alignment;
  std::vector<std::pair<std::string, WriteValue>> metadata;
  std::vector<PendingTensor> tensors;
  uint64_t dataSize = 0;
};

} // namespace moec::gguf

#endif // MOEC_COMPILER_GGUF_GGUFWRITER_H
