//===- GgufWriter.cpp - Writes GGUF v3 files ------------------------------===//

#include "compiler/gguf/GgufWriter.h"
#include "compiler/support/FileUtil.h"

#include "llvm/ADT/bit.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/raw_ostream.h"

using namespace llvm;
using namespace moec::gguf;

WriteValue WriteValue::f32(float v) {
  return scalar(ValueType::Float32, llvm::bit_cast<uint32_t>(v));
}
WriteValue WriteValue::f64(double v) {
  return scalar(ValueType::Float64, llvm::bit_cast<uint64_t>(v));
}
WriteValue WriteValue::str(std::string v) {
  WriteValue w;
  w.type = ValueType::String;
  w.string = std::move(v);
  return w;
}
WriteValue WriteValue::array(ValueType elementType,
                             std::vector<WriteValue> elements) {
  WriteValue w;
  w.type = ValueType::Array;
  w.elementType = elementType;
  w.elements = std::move(elements);
  return w;
}

WriteValue WriteValue::copyOf(const Value &value) {
  switch (value.getType()) {
  case ValueType::String:
    return str(value.getAsString()->str());
  case ValueType::Float32:
    return f32(static_cast<float>(*value.getAsDouble()));
  case ValueType::Float64:
    return f64(*value.getAsDouble());
  case ValueType::Array: {
    std::vector<WriteValue> elements;
    for (const Value &e : value.getArrayElements())
      elements.push_back(copyOf(e));
    return array(value.getArrayElementType(), std::move(elements));
  }
  case ValueType::Bool:
    return boolean(*value.getAsBool());
  default:
    return scalar(value.getType(),
                  value.getAsSigned() ? static_cast<uint64_t>(*value.getAsSigned())
                                      : *value.getAsUnsigned());
  }
}

namespace {

uint64_t valueSize(const WriteValue &v) {
  if (v.type == ValueType::String)
    return 8 + v.string.size();
  if (v.type == ValueType::Array) {
    uint64_t size = 12;
    for (const WriteValue &e : v.elements)
      size += valueSize(e);
    return size;
  }
  return getValueTypeSize(v.type);
}

void writeLE(raw_ostream &os, uint64_t value, unsigned bytes) {
  char buf[8];
  support::endian::write64le(buf, value);
  os.write(buf, bytes);
}

void writeString(raw_ostream &os, StringRef s) {
  writeLE(os, s.size(), 8);
  os << s;
}

void writeValue(raw_ostream &os, const WriteValue &v) {
  switch (v.type) {
  case ValueType::String:
    writeString(os, v.string);
    return;
  case ValueType::Array:
    writeLE(os, static_cast<uint32_t>(v.elementType), 4);
    writeLE(os, v.elements.size(), 8);
    for (const WriteValue &e : v.elements)
      writeValue(os, e);
    return;
  default:
    writeLE(os, v.bits, getValueTypeSize(v.type));
  }
}

} // namespace

void GgufWriter::setMetadata(StringRef key, WriteValue value) {
  for (auto &[k, v] : metadata)
    if (k == key) {
      v = std::move(value);
      return;
    }
  metadata.emplace_back(key.str(), std::move(value));
}

Error GgufWriter::addTensor(StringRef name, ArrayRef<int64_t> dims,
                            GgmlType type, TensorDataFn data) {
  GgmlTypeInfo info = getGgmlTypeInfo(type);
  if (dims.empty() || dims.size() > 4)
    return createStringError(inconvertibleErrorCode(),
                             "tensor '%s': %zu dimensions, expected 1 to 4",
                             name.str().c_str(), dims.size());
  uint64_t elements = 1;
  for (int64_t d : dims) {
    if (d <= 0)
      return createStringError(inconvertibleErrorCode(),
                               "tensor '%s': dimension %lld is not positive",
                               name.str().c_str(), static_cast<long long>(d));
    if (elements > (uint64_t(1) << 50) / static_cast<uint64_t>(d))
      return createStringError(inconvertibleErrorCode(),
                               "tensor '%s': more than 2^50 elements",
                               name.str().c_str());
    elements *= d;
  }
  if (dims[0] % info.blockSize != 0)
    return createStringError(
        inconvertibleErrorCode(),
        "tensor '%s': row of %lld elements is not a multiple of the %s block "
        "size %lld",
        name.str().c_str(), static_cast<long long>(dims[0]),
        info.name.str().c_str(), static_cast<long long>(info.blockSize));
  for (const PendingTensor &t : tensors)
    if (t.name == name)
      return createStringError(inconvertibleErrorCode(),
                               "duplicate tensor name '%s'",
                               name.str().c_str());
  PendingTensor t;
  t.name = name.str();
  t.dims.assign(dims.begin(), dims.end());
  t.type = type;
  t.numBytes = elements / info.blockSize * info.blockBytes;
  t.offset = dataSize;
  t.data = std::move(data);
  dataSize = alignTo(dataSize + t.numBytes, alignment);
  tensors.push_back(std::move(t));
  return Error::success();
}

uint64_t GgufWriter::headerSize() const {
  uint64_t size = 4 + 4 + 8 + 8;
  for (const auto &[key, value] : metadata)
    size += 8 + key.size() + 4 + valueSize(value);
  for (const PendingTensor &t : tensors)
    size += 8 + t.name.size() + 4 + 8 * t.dims.size() + 4 + 8;
  return size;
}

uint64_t GgufWriter::getFileSize() const {
  if (tensors.empty())
    return headerSize();
  const PendingTensor &last = tensors.back();
  return alignTo(headerSize(), alignment) + last.offset + last.numBytes;
}

Error GgufWriter::write(StringRef path,
                        std::function<void(uint64_t, uint64_t)> progress) {
  if (alignment != 32) {
    bool found = false;
    for (auto &[k, v] : metadata)
      found |= k == "general.alignment";
    if (!found)
      setMetadata("general.alignment",
                  WriteValue::u32(static_cast<uint32_t>(alignment)));
  }
  uint64_t total = getFileSize();
  return writeFileAtomically(path, [&](raw_ostream &os) {
    os << "GGUF";
    writeLE(os, 3, 4);
    writeLE(os, tensors.size(), 8);
    writeLE(os, metadata.size(), 8);
    for (const auto &[key, value] : metadata) {
      writeString(os, key);
      writeLE(os, static_cast<uint32_t>(value.type), 4);
      writeValue(os, value);
    }
    for (const PendingTensor &t : tensors) {
      writeString(os, t.name);
      writeLE(os, t.dims.size(), 4);
      for (int64_t d : t.dims)
        writeLE(os, d, 8);
      writeLE(os, static_cast<uint32_t>(t.type), 4);
      writeLE(os, t.offset, 8);
    }
    uint64_t written = headerSize();
    std::vector<uint8_t> buffer;
    for (PendingTensor &t : tensors) {
      os.write_zeros(alignTo(written, alignment) - written);
      written = alignTo(written, alignment);
      buffer.resize(t.numBytes);
      t.data(buffer);
      os.write(reinterpret_cast<const char *>(buffer.data()), buffer.size());
      written += t.numBytes;
      if (progress)
        progress(written, total);
    }
  });
}
