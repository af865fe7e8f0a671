//===- GgufFile.cpp - A memory-mapped GGUF reader -------------------------===//

#include "compiler/gguf/GgufFile.h"
#include "compiler/support/FileUtil.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <numeric>

using namespace llvm;
using namespace moec::gguf;

namespace {
constexpr uint32_t kMagic = 0x46554747; // "GGUF" read as a little-endian u32
constexpr uint32_t kMaxDims = 4;        // GGML_MAX_DIMS
constexpr unsigned kMaxArrayNesting = 2;

bool isValidValueType(uint32_t type) { return type <= 12; }
} // namespace

uint64_t moec::gguf::getValueTypeSize(ValueType type) {
  switch (type) {
  case ValueType::UInt8:
  case ValueType::Int8:
  case ValueType::Bool:
    return 1;
  case ValueType::UInt16:
  case ValueType::Int16:
    return 2;
  case ValueType::UInt32:
  case ValueType::Int32:
  case ValueType::Float32:
    return 4;
  case ValueType::UInt64:
  case ValueType::Int64:
  case ValueType::Float64:
    return 8;
  case ValueType::String:
  case ValueType::Array:
    return 0;
  }
  return 0;
}

StringRef moec::gguf::getValueTypeName(ValueType type) {
  switch (type) {
  case ValueType::UInt8:
    return "u8";
  case ValueType::Int8:
    return "i8";
  case ValueType::UInt16:
    return "u16";
  case ValueType::Int16:
    return "i16";
  case ValueType::UInt32:
    return "u32";
  case ValueType::Int32:
    return "i32";
  case ValueType::Float32:
    return "f32";
  case ValueType::Bool:
    return "bool";
  case ValueType::String:
    return "string";
  case ValueType::Array:
    return "array";
  case ValueType::UInt64:
    return "u64";
  case ValueType::Int64:
    return "i64";
  case ValueType::Float64:
    return "f64";
  }
  return "unknown";
}

//===----------------------------------------------------------------------===//
// Value
//===----------------------------------------------------------------------===//

bool Value::isInteger() const {
  switch (type) {
  case ValueType::UInt8:
  case ValueType::Int8:
  case ValueType::UInt16:
  case ValueType::Int16:
  case ValueType::UInt32:
  case ValueType::Int32:
  case ValueType::UInt64:
  case ValueType::Int64:
    return true;
  default:
    return false;
  }
}

static bool isSignedType(ValueType type) {
  return type == ValueType::Int8 || type == ValueType::Int16 ||
         type == ValueType::Int32 || type == ValueType::Int64;
}

std::optional<uint64_t> Value::getAsUnsigned() const {
  if (type == ValueType::Bool)
    return scalar.u;
  if (!isInteger())
    return std::nullopt;
  if (isSignedType(type) && scalar.i < 0)
    return std::nullopt;
  return scalar.u;
}

std::optional<int64_t> Value::getAsSigned() const {
  if (!isInteger() && type != ValueType::Bool)
    return std::nullopt;
  if (!isSignedType(type) && scalar.u > static_cast<uint64_t>(INT64_MAX))
    return std::nullopt;
  return scalar.i;
}

std::optional<double> Value::getAsDouble() const {
  if (isFloat())
    return scalar.f;
  if (isSignedType(type))
    return static_cast<double>(scalar.i);
  if (isInteger())
    return static_cast<double>(scalar.u);
  return std::nullopt;
}

std::optional<bool> Value::getAsBool() const {
  if (type != ValueType::Bool)
    return std::nullopt;
  return scalar.u != 0;
}

std::optional<StringRef> Value::getAsString() const {
  if (type != ValueType::String)
    return std::nullopt;
  return string;
}

namespace moec::gguf {

/// Decodes values from validated bytes (arrays) and parses whole files.
class GgufParser {
public:
  GgufParser(GgufFile &file)
      : file(file),
        bytes(reinterpret_cast<const uint8_t *>(
                  file.buffer->getBufferStart()),
              file.buffer->getBufferSize()) {}

  Error parse();

  /// Decodes the value of type `type` at the start of `data` (validated
  /// already) and returns how many bytes it took.
  static uint64_t decode(ValueType type, ArrayRef<uint8_t> data, Value &out);

private:
  Error error(uint64_t offset, const Twine &message) {
    return file.makeError("offset " + Twine(offset) + ": " + message);
  }
  uint64_t remaining() const { return bytes.size() - pos; }

  Error need(uint64_t count, const Twine &what) {
    if (count > remaining())
      return error(pos, what + " needs " + Twine(count) + " bytes but only " +
                            Twine(remaining()) + " remain in the file (size " +
                            Twine(bytes.size()) + ")");
    return Error::success();
  }
  Expected<uint32_t> readU32(const Twine &what) {
    if (Error e = need(4, what))
      return std::move(e);
    uint32_t v = support::endian::read32le(bytes.data() + pos);
    pos += 4;
    return v;
  }
  Expected<uint64_t> readU64(const Twine &what) {
    if (Error e = need(8, what))
      return std::move(e);
    uint64_t v = support::endian::read64le(bytes.data() + pos);
    pos += 8;
    return v;
  }
  Expected<StringRef> readString(const Twine &what) {
    uint64_t start = pos;
    Expected<uint64_t> length = readU64(what + " length");
    if (!length)
      return length.takeError();
    if (*length > remaining())
      return error(start, what + " length " + Twine(*length) +
                              " runs past the end of the file (" +
                              Twine(remaining()) + " bytes remain)");
    StringRef s(reinterpret_cast<const char *>(bytes.data() + pos), *length);
    pos += *length;
    return s;
  }

  /// Checks the value of type `type` at `pos` and moves past it.
  Error skipValue(ValueType type, unsigned depth, StringRef key);

  Error parseMetadata(uint64_t count);
  Error parseTensorInfos(uint64_t count);
  Error layoutData();

  GgufFile &file;
  ArrayRef<uint8_t> bytes;
  uint64_t pos = 0;
};

} // namespace moec::gguf

uint64_t GgufParser::decode(ValueType type, ArrayRef<uint8_t> data,
                            Value &out) {
  using namespace support::endian;
  out = Value();
  out.type = type;
  const uint8_t *p = data.data();
  switch (type) {
  case ValueType::UInt8:
  case ValueType::Bool:
    out.scalar.u = p[0];
    return 1;
  case ValueType::Int8:
    out.scalar.i = static_cast<int8_t>(p[0]);
    return 1;
  case ValueType::UInt16:
    out.scalar.u = read16le(p);
    return 2;
  case ValueType::Int16:
    out.scalar.i = static_cast<int16_t>(read16le(p));
    return 2;
  case ValueType::UInt32:
    out.scalar.u = read32le(p);
    return 4;
  case ValueType::Int32:
    out.scalar.i = static_cast<int32_t>(read32le(p));
    return 4;
  case ValueType::Float32:
    out.scalar.f = llvm::bit_cast<float>(read32le(p));
    return 4;
  case ValueType::UInt64:
    out.scalar.u = read64le(p);
    return 8;
  case ValueType::Int64:
    out.scalar.i = static_cast<int64_t>(read64le(p));
    return 8;
  case ValueType::Float64:
    out.scalar.f = llvm::bit_cast<double>(read64le(p));
    return 8;
  case ValueType::String: {
    uint64_t length = read64le(p);
    out.string = StringRef(reinterpret_cast<const char *>(p + 8), length);
    return 8 + length;
  }
  case ValueType::Array: {
    out.arrayElementType = static_cast<ValueType>(read32le(p));
    out.arraySize = read64le(p + 4);
    ArrayRef<uint8_t> rest = data.drop_front(12);
    // The array was validated: walk its elements to find its end.
    uint64_t size = 0;
    if (uint64_t fixed = getValueTypeSize(out.arrayElementType)) {
      size = fixed * out.arraySize;
    } else {
      for (uint64_t i = 0; i < out.arraySize; ++i) {
        Value element;
        size += decode(out.arrayElementType, rest.drop_front(size), element);
      }
    }
    out.arrayBytes = rest.take_front(size);
    return 12 + size;
  }
  }
  return 0;
}

std::vector<Value> Value::getArrayElements() const {
  std::vector<Value> elements;
  if (type != ValueType::Array)
    return elements;
  // Every element takes at least one byte of the validated array, so this
  // reservation is bounded by the file's size.
  elements.reserve(arraySize);
  uint64_t offset = 0;
  for (uint64_t i = 0; i < arraySize; ++i) {
    Value element;
    offset += GgufParser::decode(arrayElementType,
                                 arrayBytes.drop_front(offset), element);
    elements.push_back(element);
  }
  return elements;
}

std::string Value::describe() const {
  std::string s;
  raw_string_ostream os(s);
  os << getValueTypeName(type);
  switch (type) {
  case ValueType::String:
    os << " \"" << (string.size() > 40 ? string.take_front(40).str() + "..."
                                       : string.str())
       << "\"";
    break;
  case ValueType::Array:
    os << " of " << arraySize << " " << getValueTypeName(arrayElementType);
    break;
  case ValueType::Float32:
  case ValueType::Float64:
    os << " " << scalar.f;
    break;
  case ValueType::Bool:
    os << (scalar.u ? " true" : " false");
    break;
  default:
    if (isSignedType(type))
      os << " " << scalar.i;
    else
      os << " " << scalar.u;
  }
  return s;
}

//===----------------------------------------------------------------------===//
// Parsing
//===----------------------------------------------------------------------===//

Error GgufParser::skipValue(ValueType type, unsigned depth, StringRef key) {
  if (uint64_t size = getValueTypeSize(type)) {
    if (Error e = need(size, "value of key '" + key.str() + "'"))
      return e;
    if (type == ValueType::Bool && bytes[pos] > 1)
      return error(pos, "bool value of key '" + key + "' is " +
                            Twine(unsigned(bytes[pos])) + ", expected 0 or 1");
    pos += size;
    return Error::success();
  }
  if (type == ValueType::String)
    return readString("string value of key '" + key.str() + "'").takeError();

  // An array: element type, count, elements.
  uint64_t start = pos;
  Expected<uint32_t> elementType =
      readU32("array element type of key '" + key.str() + "'");
  if (!elementType)
    return elementType.takeError();
  if (!isValidValueType(*elementType))
    return error(start, "array of key '" + key + "' has unknown element type " +
                            Twine(*elementType) + ", expected 0-12");
  if (*elementType == static_cast<uint32_t>(ValueType::Array) &&
      depth + 1 >= kMaxArrayNesting)
    return error(start, "array of key '" + key + "' nests arrays deeper than " +
                            Twine(kMaxArrayNesting) + " levels");
  Expected<uint64_t> count = readU64("array length of key '" + key.str() + "'");
  if (!count)
    return count.takeError();
  auto element = static_cast<ValueType>(*elementType);
  if (uint64_t size = getValueTypeSize(element)) {
    if (*count > remaining() / size)
      return error(start, "array of key '" + key + "' has " + Twine(*count) +
                              " elements of " + getValueTypeName(element) +
                              ", which run past the end of the file (" +
                              Twine(remaining()) + " bytes remain)");
    if (element == ValueType::Bool)
      for (uint64_t i = 0; i < *count; ++i)
        if (bytes[pos + i] > 1)
          return error(pos + i, "bool element of key '" + key + "' is " +
                                    Twine(unsigned(bytes[pos + i])) +
                                    ", expected 0 or 1");
    pos += *count * size;
    return Error::success();
  }
  // Strings and arrays take at least 8 (12) bytes each: a count that cannot
  // fit is rejected before the walk.
  uint64_t minSize = element == ValueType::String ? 8 : 12;
  if (*count > remaining() / minSize)
    return error(start, "array of key '" + key + "' has " + Twine(*count) +
                            " elements of " + getValueTypeName(element) +
                            ", which cannot fit in the " + Twine(remaining()) +
                            " bytes that remain");
  for (uint64_t i = 0; i < *count; ++i)
    if (Error e = skipValue(element, depth + 1, key))
      return e;
  return Error::success();
}

Error GgufParser::parseMetadata(uint64_t count) {
  // Each entry takes at least 8 (key length) + 4 (type) + 1 bytes.
  if (count > remaining() / 13)
    return error(pos, "metadata count " + Twine(count) +
                          " cannot fit in the " + Twine(remaining()) +
                          " bytes that remain");
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t start = pos;
    Expected<StringRef> key = readString("metadata key");
    if (!key)
      return key.takeError();
    Expected<uint32_t> type = readU32("value type of key '" + key->str() + "'");
    if (!type)
      return type.takeError();
    if (!isValidValueType(*type))
      return error(pos - 4, "key '" + *key + "' has unknown value type " +
                                Twine(*type) + ", expected 0-12");
    uint64_t valueStart = pos;
    if (Error e = skipValue(static_cast<ValueType>(*type), 0, *key))
      return e;
    KeyValue kv;
    kv.key = *key;
    kv.fileOffset = start;
    decode(static_cast<ValueType>(*type), bytes.slice(valueStart), kv.value);
    if (!file.metadataIndex.try_emplace(*key, file.metadata.size()).second)
      return error(start, "duplicate metadata key '" + *key + "'");
    file.metadata.push_back(kv);
  }
  return Error::success();
}

Error GgufParser::parseTensorInfos(uint64_t count) {
  // Each info takes at least 8 (name) + 4 (dims) + 8 (one dim) + 4 + 8 bytes.
  if (count > remaining() / 32)
    return error(pos, "tensor count " + Twine(count) + " cannot fit in the " +
                          Twine(remaining()) + " bytes that remain");
  for (uint64_t i = 0; i < count; ++i) {
    TensorInfo info;
    info.infoFileOffset = pos;
    Expected<StringRef> name = readString("tensor name");
    if (!name)
      return name.takeError();
    info.name = *name;
    std::string what = ("tensor '" + *name + "'").str();
    uint64_t dimsAt = pos;
    Expected<uint32_t> numDims = readU32("dimension count of " + what);
    if (!numDims)
      return numDims.takeError();
    if (*numDims == 0 || *numDims > kMaxDims)
      return error(dimsAt, what + " has " + Twine(*numDims) +
                               " dimensions, expected 1 to " +
                               Twine(kMaxDims));
    uint64_t elements = 1;
    for (uint32_t d = 0; d < *numDims; ++d) {
      uint64_t dimAt = pos;
      Expected<uint64_t> dim = readU64("dimension of " + what);
      if (!dim)
        return dim.takeError();
      if (*dim > static_cast<uint64_t>(INT64_MAX))
        return error(dimAt, what + " dimension " + Twine(d) + " is " +
                                Twine(static_cast<int64_t>(*dim)) +
                                ", expected a non-negative size");
      if (*dim != 0 && elements > static_cast<uint64_t>(INT64_MAX) / *dim)
        return error(dimAt, what + ": the product of its dimensions "
                                   "overflows 64 bits");
      elements *= *dim;
      info.dims.push_back(static_cast<int64_t>(*dim));
    }
    uint64_t typeAt = pos;
    Expected<uint32_t> typeId = readU32("type of " + what);
    if (!typeId)
      return typeId.takeError();
    std::optional<GgmlTypeInfo> type = lookupGgmlType(*typeId);
    if (!type)
      return error(typeAt, what + " has unknown ggml type id " +
                               Twine(*typeId));
    info.type = *type;
    if (info.dims[0] % type->blockSize != 0)
      return error(typeAt, what + " of type " + type->name +
                               " has a row of " + Twine(info.dims[0]) +
                               " elements, not a multiple of its block size " +
                               Twine(type->blockSize));
    Expected<uint64_t> offset = readU64("data offset of " + what);
    if (!offset)
      return offset.takeError();
    info.offset = *offset;
    info.numElements = elements;
    uint64_t blocks = elements / type->blockSize;
    if (blocks > UINT64_MAX / type->blockBytes)
      return error(typeAt, what + ": its size in bytes overflows 64 bits");
    info.numBytes = blocks * type->blockBytes;
    if (!file.tensorIndex.try_emplace(*name, file.tensors.size()).second)
      return error(info.infoFileOffset, "duplicate tensor name '" + *name + "'");
    file.tensors.push_back(std::move(info));
  }
  return Error::success();
}

Error GgufParser::layoutData() {
  if (const Value *alignment = file.lookup("general.alignment")) {
    std::optional<uint64_t> value = alignment->getAsUnsigned();
    if (alignment->getType() != ValueType::UInt32 || !value || *value == 0 ||
        !isPowerOf2_64(*value))
      return file.makeError("general.alignment is " + alignment->describe() +
                            ", expected a u32 power of two");
    file.alignment = *value;
  }
  file.dataOffset = alignTo(pos, file.alignment);
  uint64_t dataSize =
      file.dataOffset <= bytes.size() ? bytes.size() - file.dataOffset : 0;

  // Every tensor inside the data section, aligned, and no two overlapping.
  std::vector<const TensorInfo *> byOffset;
  byOffset.reserve(file.tensors.size());
  for (const TensorInfo &t : file.tensors) {
    if (t.offset % file.alignment != 0)
      return error(file.dataOffset + t.offset,
                   "tensor '" + t.name + "' data offset " + Twine(t.offset) +
                       " is not a multiple of the alignment " +
                       Twine(file.alignment));
    if (t.offset > dataSize || t.numBytes > dataSize - t.offset)
      return file.makeError(
          "tensor '" + t.name + "' (" + Twine(t.numBytes) +
          " bytes at data offset " + Twine(t.offset) + ", file offset " +
          Twine(file.dataOffset + t.offset) +
          ") runs past the end of the file (size " + Twine(bytes.size()) +
          ")");
    byOffset.push_back(&t);
  }
  std::sort(byOffset.begin(), byOffset.end(),
            [](const TensorInfo *a, const TensorInfo *b) {
              return a->offset < b->offset;
            });
  // Compare each tensor with the one reaching furthest so far; empty
  // tensors occupy nothing and may sit anywhere.
  const TensorInfo *furthest = nullptr;
  for (const TensorInfo *cur : byOffset) {
    if (cur->numBytes == 0)
      continue;
    if (furthest && cur->offset < furthest->offset + furthest->numBytes)
      return file.makeError("tensors '" + furthest->name + "' (data offset " +
                            Twine(furthest->offset) + ", " +
                            Twine(furthest->numBytes) + " bytes) and '" +
                            cur->name + "' (data offset " +
                            Twine(cur->offset) + ") overlap");
    if (!furthest ||
        cur->offset + cur->numBytes > furthest->offset + furthest->numBytes)
      furthest = cur;
  }
  return Error::success();
}

Error GgufParser::parse() {
  if (bytes.size() < 4)
    return file.makeError("file is " + Twine(bytes.size()) +
                          " bytes, too short to be GGUF");
  Expected<uint32_t> magic = readU32("magic");
  if (!magic)
    return magic.takeError();
  if (*magic != kMagic)
    return error(0, "bad magic 0x" + utohexstr(*magic, false, 8) +
                        ", expected \"GGUF\"");
  Expected<uint32_t> version = readU32("version");
  if (!version)
    return version.takeError();
  if (*version == 0x02000000 || *version == 0x03000000)
    return error(4, "big-endian GGUF is not supported");
  if (*version != 2 && *version != 3)
    return error(4, "GGUF version " + Twine(*version) +
                        " is not supported, expected 2 or 3");
  file.version = *version;
  Expected<uint64_t> tensorCount = readU64("tensor count");
  if (!tensorCount)
    return tensorCount.takeError();
  Expected<uint64_t> metadataCount = readU64("metadata count");
  if (!metadataCount)
    return metadataCount.takeError();
  if (Error e = parseMetadata(*metadataCount))
    return e;
  if (Error e = parseTensorInfos(*tensorCount))
    return e;
  return layoutData();
}

//===----------------------------------------------------------------------===//
// GgufFile
//===----------------------------------------------------------------------===//

Expected<std::unique_ptr<GgufFile>> GgufFile::open(StringRef path) {
  Expected<std::unique_ptr<MemoryBuffer>> buffer = mapFile(path);
  if (!buffer)
    return buffer.takeError();
  return parse(std::move(*buffer));
}

Expected<std::unique_ptr<GgufFile>>
GgufFile::parse(std::unique_ptr<MemoryBuffer> buffer) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->buffer = std::move(buffer);
  GgufParser parser(*file);
  if (Error e = parser.parse())
    return std::move(e);
  return std::move(file);
}

Error GgufFile::makeError(const Twine &message) const {
  return createStringError(inconvertibleErrorCode(),
                           getPath() + ": " + message);
}

const Value *GgufFile::lookup(StringRef key) const {
  auto it = metadataIndex.find(key);
  return it == metadataIndex.end() ? nullptr : &metadata[it->second].value;
}

static std::string describeKey(const GgufFile &file, StringRef key) {
  const Value *v = file.lookup(key);
  return "metadata key '" + key.str() + "' is " + v->describe();
}

Expected<uint64_t> GgufFile::getUnsigned(StringRef key) const {
  const Value *v = lookup(key);
  if (!v)
    return makeError("missing metadata key '" + key + "'");
  std::optional<uint64_t> u = v->getAsUnsigned();
  if (!u || v->getType() == ValueType::Bool)
    return makeError(describeKey(*this, key) +
                     ", expected a non-negative integer");
  return *u;
}

Expected<double> GgufFile::getDouble(StringRef key) const {
  const Value *v = lookup(key);
  if (!v)
    return makeError("missing metadata key '" + key + "'");
  std::optional<double> d = v->getAsDouble();
  if (!d)
    return makeError(describeKey(*this, key) + ", expected a number");
  return *d;
}

Expected<StringRef> GgufFile::getString(StringRef key) const {
  const Value *v = lookup(key);
  if (!v)
    return makeError("missing metadata key '" + key + "'");
  std::optional<StringRef> s = v->getAsString();
  if (!s)
    return makeError(describeKey(*this, key) + ", expected a string");
  return *s;
}

Expected<bool> GgufFile::getBool(StringRef key) const {
  const Value *v = lookup(key);
  if (!v)
    return makeError("missing metadata key '" + key + "'");
  std::optional<bool> b = v->getAsBool();
  if (!b)
    return makeError(describeKey(*this, key) + ", expected a bool");
  return *b;
}

const TensorInfo *GgufFile::findTensor(StringRef name) const {
  auto it = tensorIndex.find(name);
  return it == tensorIndex.end() ? nullptr : &tensors[it->second];
}

ArrayRef<uint8_t> GgufFile::getTensorData(const TensorInfo &tensor) const {
  const auto *start = reinterpret_cast<const uint8_t *>(
      buffer->getBufferStart() + dataOffset + tensor.offset);
  return ArrayRef<uint8_t>(start, tensor.numBytes);
}
