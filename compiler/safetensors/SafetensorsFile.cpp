//===- SafetensorsFile.cpp - A memory-mapped safetensors reader -----------===//

#include "compiler/safetensors/SafetensorsFile.h"

#include "compiler/support/FileUtil.h"
#include "compiler/support/Json.h"

#include "llvm/Support/Endian.h"
#include "llvm/Support/JSON.h"

#include <algorithm>

using namespace llvm;
using namespace moec::safetensors;

namespace {
// The safetensors reference implementation caps the header at 100 MB.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeInfo {
  DType type;
  StringRef name;
  unsigned size;
};
const DTypeInfo kDTypes[] = {
    {DType::F64, "F64", 8},        {DType::F32, "F32", 4},
    {DType::F16, "F16", 2},        {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8},        {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},        {DType::I8, "I8", 1},
    {DType::U64, "U64", 8},        {DType::U32, "U32", 4},
    {DType::U16, "U16", 2},        {DType::U8, "U8", 1},
    {DType::Bool, "BOOL", 1},      {DType::F8E4M3, "F8_E4M3", 1},
    {DType::F8E5M2, "F8_E5M2", 1}, {DType::F8E8M0, "F8_E8M0", 1},
};
} // namespace

StringRef moec::safetensors::getDTypeName(DType type) {
  for (const DTypeInfo &d : kDTypes)
    if (d.type == type)
      return d.name;
  return "?";
}

unsigned moec::safetensors::getDTypeSize(DType type) {
  for (const DTypeInfo &d : kDTypes)
    if (d.type == type)
      return d.size;
  return 0;
}

Error SafetensorsFile::makeError(const Twine &message) const {
  return createStringError(inconvertibleErrorCode(),
                           getPath() + ": " + message);
}

Error SafetensorsFile::parseHeader() {
  uint64_t size = buffer->getBufferSize();
  if (size < 8)
    return makeError("file is " + Twine(size) +
                     " bytes, too short for the 8-byte header length");
  uint64_t headerBytes = support::endian::read64le(buffer->getBufferStart());
  if (headerBytes > size - 8)
    return makeError("offset 0: header length " + Twine(headerBytes) +
                     " runs past the end of the file (" + Twine(size - 8) +
                     " bytes follow)");
  if (headerBytes > kMaxHeaderBytes)
    return makeError("offset 0: header length " + Twine(headerBytes) +
                     " exceeds the format's limit of 100 MB");
  dataOffset = 8 + headerBytes;
  uint64_t dataSize = size - dataOffset;
  StringRef text(buffer->getBufferStart() + 8, headerBytes);

  Expected<json::Value> parsed = parseUntrustedJson(text, /*maxDepth=*/8);
  if (!parsed)
    return makeError("offset 8: header is not valid JSON: " +
                     toString(parsed.takeError()));
  json::Object *root = parsed->getAsObject();
  if (!root)
    return makeError("offset 8: header is not a JSON object");

  for (auto &[key, value] : *root) {
    std::string name = key.str();
    if (name == "__metadata__") {
      json::Object *meta = value.getAsObject();
      if (!meta)
        return makeError("__metadata__ is not an object of strings");
      for (auto &[k, v] : *meta) {
        std::optional<StringRef> s = v.getAsString();
        if (!s)
          return makeError("__metadata__ key '" + k.str() +
                           "' is not a string");
        metadata[k.str()] = s->str();
      }
      continue;
    }
    json::Object *entry = value.getAsObject();
    if (!entry)
      return makeError("tensor '" + name + "': entry is not an object");
    TensorInfo info;
    info.name = name;

    std::optional<StringRef> dtype = entry->getString("dtype");
    if (!dtype)
      return makeError("tensor '" + name + "': missing string 'dtype'");
    const DTypeInfo *found = nullptr;
    for (const DTypeInfo &d : kDTypes)
      if (d.name == *dtype)
        found = &d;
    if (!found)
      return makeError("tensor '" + name + "': unknown dtype '" + *dtype + "'");
    info.dtype = found->type;

    const json::Array *shape = entry->getArray("shape");
    if (!shape)
      return makeError("tensor '" + name + "': missing array 'shape'");
    uint64_t elements = 1;
    for (const json::Value &d : *shape) {
      std::optional<int64_t> dim = d.getAsInteger();
      if (!dim || *dim < 0)
        return makeError("tensor '" + name +
                         "': shape entries must be non-negative integers");
      if (*dim != 0 && elements > UINT64_MAX / 8 / static_cast<uint64_t>(*dim))
        return makeError("tensor '" + name +
                         "': the product of its shape overflows 64 bits");
      elements *= static_cast<uint64_t>(*dim);
      info.shape.push_back(*dim);
    }
    info.numElements = elements;

    const json::Array *offsets = entry->getArray("data_offsets");
    if (!offsets || offsets->size() != 2)
      return makeError("tensor '" + name +
                       "': 'data_offsets' must be [begin, end]");
    std::optional<int64_t> begin = (*offsets)[0].getAsInteger();
    std::optional<int64_t> end = (*offsets)[1].getAsInteger();
    if (!begin || !end || *begin < 0 || *end < *begin)
      return makeError("tensor '" + name +
                       "': 'data_offsets' must be integers with 0 <= begin "
                       "<= end");
    info.begin = *begin;
    info.end = *end;
    uint64_t expected = elements * found->size;
    if (info.end - info.begin != expected)
      return makeError("tensor '" + name + "': data_offsets [" +
                       Twine(info.begin) + ", " + Twine(info.end) + ") hold " +
                       Twine(info.end - info.begin) + " bytes but " +
                       Twine(elements) + " " + found->name + " elements need " +
                       Twine(expected));
    if (info.end > dataSize)
      return makeError("tensor '" + name + "': data_offsets [" +
                       Twine(info.begin) + ", " + Twine(info.end) +
                       ") run past the end of the data (" + Twine(dataSize) +
                       " bytes at file offset " + Twine(dataOffset) + ")");
    tensors.push_back(std::move(info));
  }

  std::sort(tensors.begin(), tensors.end(),
            [](const TensorInfo &a, const TensorInfo &b) {
              return a.begin != b.begin ? a.begin < b.begin : a.name < b.name;
            });
  for (size_t i = 1; i < tensors.size(); ++i)
    if (tensors[i].begin < tensors[i - 1].end)
      return makeError("tensors '" + tensors[i - 1].name + "' [" +
                       Twine(tensors[i - 1].begin) + ", " +
                       Twine(tensors[i - 1].end) + ") and '" +
                       tensors[i].name + "' [" + Twine(tensors[i].begin) +
                       ", " + Twine(tensors[i].end) + ") overlap");
  for (size_t i = 0; i < tensors.size(); ++i)
    index[tensors[i].name] = i;
  return Error::success();
}

Expected<std::unique_ptr<SafetensorsFile>>
SafetensorsFile::open(StringRef path) {
  Expected<std::unique_ptr<MemoryBuffer>> buffer = mapFile(path);
  if (!buffer)
    return buffer.takeError();
  return parse(std::move(*buffer));
}

Expected<std::unique_ptr<SafetensorsFile>>
SafetensorsFile::parse(std::unique_ptr<MemoryBuffer> buffer) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->buffer = std::move(buffer);
  if (Error e = file->parseHeader())
    return std::move(e);
  return std::move(file);
}

const TensorInfo *SafetensorsFile::findTensor(StringRef name) const {
  auto it = index.find(name);
  return it == index.end() ? nullptr : &tensors[it->second];
}

ArrayRef<uint8_t> SafetensorsFile::getTensorData(const TensorInfo &t) const {
  return ArrayRef<uint8_t>(reinterpret_cast<const uint8_t *>(
                               buffer->getBufferStart() + dataOffset + t.begin),
                           t.end - t.begin);
}
