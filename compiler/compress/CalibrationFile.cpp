//===- CalibrationFile.cpp - Reads calib.dat ------------------------------===//

#include "compiler/compress/CalibrationFile.h"
#include "compiler/support/FileUtil.h"
#include "compiler/support/Json.h"

#include "llvm/Support/Endian.h"
#include "llvm/Support/JSON.h"

#include <cmath>
#include <cstring>

using namespace llvm;
using namespace moec::compress;

namespace {

/// A moec statistics file (calib.dat, a Hessian file): an 8-byte magic, a
/// u64 size, that many bytes of JSON, zero padding to a multiple of 8 from
/// the file's start, then the data its JSON's tensor entries point into:
/// per entry `experts` blocks of `columns` (or `columns x columns`)
/// elements at `offset` from the data's start.
struct FileKind {
  const char *magic;     // 8 bytes
  const char *name;      // for messages: "not a moec <name> file"
  unsigned elementBytes; // also every offset's alignment
  int64_t maxColumns;
  bool squareBlocks; // columns x columns per expert
};

constexpr FileKind kCalibration = {"MOECCAL1", "calibration", 4, 1 << 24,
                                   false};
constexpr FileKind kHessians = {"MOECHES1", "Hessian", 8, 1 << 16, true};

Error failure(StringRef path, const Twine &message) {
  return createStringError(path + ": " + message);
}

Expected<StringRef> headerOf(StringRef bytes, const FileKind &kind,
                             StringRef path) {
  if (!bytes.starts_with(StringRef(kind.magic, 8)) || bytes.size() < 16)
    return failure(path, Twine("not a moec ") + kind.name + " file");
  uint64_t size = support::endian::read64le(bytes.data() + 8);
  if (size > bytes.size() - 16)
    return failure(path, "truncated: the header says " + Twine(size) +
                             " bytes of JSON, the file has " +
                             Twine(bytes.size() - 16));
  return bytes.substr(16, size);
}

/// The parsed JSON header and the data after it.
struct Sections {
  json::Value header = nullptr;
  StringRef data;
};

Expected<Sections> readSections(StringRef bytes, const FileKind &kind,
                                StringRef path) {
  Expected<StringRef> header = headerOf(bytes, kind, path);
  if (!header)
    return header.takeError();
  Expected<json::Value> json = moec::parseUntrustedJson(*header, 8);
  if (!json)
    return failure(path, "invalid JSON header: " + toString(json.takeError()));
  uint64_t dataStart = (16 + header->size() + 7) / 8 * 8;
  if (dataStart > bytes.size())
    return failure(path, "truncated before its data");
  return Sections{std::move(*json), bytes.substr(dataStart)};
}

/// One entry of the header's "tensors" array, checked against the data.
struct TensorEntry {
  StringRef name;
  unsigned experts = 1;
  int64_t columns = 0;
  std::vector<uint64_t> rows; // per expert
  const char *data = nullptr;
  uint64_t elements = 0;
};

Expected<TensorEntry> readEntry(const json::Value &v, StringRef data,
                                const FileKind &kind, StringRef path) {
  const json::Object *t = v.getAsObject();
  std::optional<StringRef> name = t ? t->getString("name") : std::nullopt;
  std::optional<int64_t> experts = t ? t->getInteger("experts") : std::nullopt,
                         columns = t ? t->getInteger("columns") : std::nullopt,
                         offset = t ? t->getInteger("offset") : std::nullopt;
  const json::Array *rows = t ? t->getArray("rows") : nullptr;
  if (!name || !experts || !columns || !offset || !rows || *experts < 1 ||
      *experts > (1 << 16) || *columns < 1 || *columns > kind.maxColumns ||
      *offset < 0 || *offset % kind.elementBytes ||
      int64_t(rows->size()) != *experts)
    return failure(path, "malformed tensor entry");
  TensorEntry e;
  e.name = *name;
  e.experts = unsigned(*experts);
  e.columns = *columns;
  e.elements = uint64_t(*experts) * uint64_t(*columns) *
               (kind.squareBlocks ? uint64_t(*columns) : 1);
  uint64_t bytesNeeded = e.elements * kind.elementBytes;
  if (uint64_t(*offset) > data.size() ||
      bytesNeeded > data.size() - uint64_t(*offset))
    return failure(path, "tensor " + *name + "'s data lies outside the file");
  for (const json::Value &r : *rows) {
    std::optional<int64_t> n = r.getAsInteger();
    if (!n || *n < 0)
      return failure(path, "tensor " + *name + ": rows must be non-negative");
    e.rows.push_back(uint64_t(*n));
  }
  e.data = data.data() + *offset;
  return e;
}

} // namespace

bool CalibrationFile::hasMagic(StringRef bytes) {
  return bytes.starts_with(StringRef(kCalibration.magic, 8));
}

Expected<StringRef> CalibrationFile::headerJson(StringRef bytes,
                                                StringRef path) {
  return headerOf(bytes, kCalibration, path);
}

Expected<std::unique_ptr<CalibrationFile>>
CalibrationFile::read(StringRef path) {
  Expected<std::unique_ptr<MemoryBuffer>> mapped = mapFile(path);
  if (!mapped)
    return mapped.takeError();
  auto file = std::unique_ptr<CalibrationFile>(new CalibrationFile());
  file->path = path.str();
  file->buffer = std::move(*mapped);
  StringRef bytes = file->buffer->getBuffer();
  auto fail = [&](const Twine &message) {
    return createStringError(path + ": " + message);
  };
  Expected<Sections> sections = readSections(bytes, kCalibration, path);
  if (!sections)
    return sections.takeError();
  const json::Object *root = sections->header.getAsObject();
  if (!root || root->getString("format") != "moec-calibration" ||
      root->getInteger("version") != 1)
    return fail("not a version 1 moec-calibration header");
  file->tokens = uint64_t(root->getInteger("tokens").value_or(0));
  if (const json::Object *src = root->getObject("source")) {
    file->source.text = src->getString("text").value_or("").str();
    file->source.context = src->getInteger("context").value_or(0);
    file->source.chunks = src->getInteger("chunks").value_or(0);
  }

  const json::Array *tensors = root->getArray("tensors");
  if (!tensors)
    return fail("no tensors array");
  for (const json::Value &v : *tensors) {
    Expected<TensorEntry> entry =
        readEntry(v, sections->data, kCalibration, path);
    if (!entry)
      return entry.takeError();
    TensorStats stats;
    stats.experts = entry->experts;
    stats.columns = entry->columns;
    stats.rows = std::move(entry->rows);
    stats.meanSquares = reinterpret_cast<const float *>(entry->data);
    for (uint64_t i = 0; i < entry->elements; ++i)
      if (!std::isfinite(stats.meanSquares[i]) || stats.meanSquares[i] < 0)
        return fail("tensor " + entry->name +
                    " has a negative or non-finite mean square");
    if (!file->tensors.try_emplace(entry->name, std::move(stats)).second)
      return fail("tensor " + entry->name + " appears twice");
  }
  if (const json::Array *experts = root->getArray("experts")) {
    for (const json::Value &v : *experts) {
      const json::Object *o = v.getAsObject();
      const json::Array *tokens = o ? o->getArray("tokens") : nullptr;
      const json::Array *mass = o ? o->getArray("weight_mass") : nullptr;
      const json::Array *reap = o ? o->getArray("reap") : nullptr;
      if (!tokens || !mass || !reap || tokens->size() != mass->size() ||
          tokens->size() != reap->size())
        return fail("malformed experts entry");
      LayerExperts layer;
      for (size_t e = 0; e < tokens->size(); ++e) {
        std::optional<int64_t> n = (*tokens)[e].getAsInteger();
        std::optional<double> m = (*mass)[e].getAsNumber(),
                              r = (*reap)[e].getAsNumber();
        if (!n || *n < 0 || !m || !r)
          return fail("malformed experts entry");
        layer.tokens.push_back(uint64_t(*n));
        layer.weightMass.push_back(*m);
        layer.reap.push_back(*r);
      }
      file->layers.push_back(std::move(layer));
    }
  }
  return file;
}

const CalibrationFile::TensorStats *
CalibrationFile::find(StringRef name) const {
  auto it = tensors.find(name);
  return it == tensors.end() ? nullptr : &it->second;
}

std::unique_ptr<CalibrationFile> CalibrationFile::withExperts(
    const std::vector<std::vector<uint32_t>> &kept) const {
  auto copy = std::unique_ptr<CalibrationFile>(new CalibrationFile());
  copy->path = path;
  copy->source = source;
  copy->tokens = tokens;
  for (size_t l = 0; l < layers.size(); ++l) {
    LayerExperts layer;
    for (uint32_t e : kept[l < kept.size() ? l : 0]) {
      layer.tokens.push_back(e < layers[l].tokens.size() ? layers[l].tokens[e]
                                                         : 0);
      layer.weightMass.push_back(
          e < layers[l].weightMass.size() ? layers[l].weightMass[e] : 0.0);
      layer.reap.push_back(e < layers[l].reap.size() ? layers[l].reap[e]
                                                     : 0.0);
    }
    copy->layers.push_back(std::move(layer));
  }
  for (const auto &entry : tensors) {
    const TensorStats &t = entry.getValue();
    unsigned layer = 0;
    StringRef name = entry.getKey();
    bool routed = t.experts > 1 && name.consume_front("blk.") &&
                  !name.split('.').first.getAsInteger(10, layer) &&
                  layer < kept.size();
    if (!routed) {
      copy->tensors[entry.getKey()] = t;
      continue;
    }
    TensorStats s;
    s.columns = t.columns;
    s.experts = unsigned(kept[layer].size());
    auto values = std::make_unique<float[]>(size_t(s.experts) * t.columns);
    for (size_t i = 0; i < kept[layer].size(); ++i) {
      uint32_t e = kept[layer][i];
      s.rows.push_back(e < t.rows.size() ? t.rows[e] : 0);
      for (int64_t c = 0; c < t.columns; ++c)
        values[i * t.columns + c] =
            e < t.experts ? t.meanSquares[e * t.columns + c] : 0.0f;
    }
    s.meanSquares = values.get();
    copy->owned.push_back(std::move(values));
    copy->tensors[entry.getKey()] = std::move(s);
  }
  return copy;
}

Expected<std::unique_ptr<HessianFile>> HessianFile::read(StringRef path) {
  Expected<std::unique_ptr<MemoryBuffer>> mapped = mapFile(path);
  if (!mapped)
    return mapped.takeError();
  auto file = std::unique_ptr<HessianFile>(new HessianFile());
  file->buffer = std::move(*mapped);
  StringRef bytes = file->buffer->getBuffer();
  Expected<Sections> sections = readSections(bytes, kHessians, path);
  if (!sections)
    return sections.takeError();
  const json::Object *root = sections->header.getAsObject();
  const json::Array *tensors = root ? root->getArray("tensors") : nullptr;
  if (!tensors || root->getString("format") != "moec-hessians")
    return failure(path, "not a moec-hessians header");
  for (const json::Value &v : *tensors) {
    Expected<TensorEntry> entry = readEntry(v, sections->data, kHessians, path);
    if (!entry)
      return entry.takeError();
    Entry e;
    e.experts = entry->experts;
    e.columns = entry->columns;
    e.rows = std::move(entry->rows);
    e.data = reinterpret_cast<const double *>(entry->data);
    file->entries[entry->name] = std::move(e);
  }
  return file;
}

const HessianFile::Entry *HessianFile::find(StringRef name) const {
  auto it = entries.find(name);
  return it == entries.end() ? nullptr : &it->second;
}
