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

static constexpr char kMagic[] = "MOECCAL1";

bool CalibrationFile::hasMagic(StringRef bytes) {
  return bytes.starts_with(StringRef(kMagic, 8));
}

Expected<StringRef> CalibrationFile::headerJson(StringRef bytes,
                                                StringRef path) {
  if (!hasMagic(bytes) || bytes.size() < 16)
    return createStringError(path + ": not a moec calibration file");
  uint64_t size = support::endian::read64le(bytes.data() + 8);
  if (size > bytes.size() - 16)
    return createStringError(path + ": truncated: the header says " +
                             Twine(size) + " bytes of JSON, the file has " +
                             Twine(bytes.size() - 16));
  return bytes.substr(16, size);
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
  Expected<StringRef> header = headerJson(bytes, path);
  if (!header)
    return header.takeError();
  Expected<json::Value> json = parseUntrustedJson(*header, 8);
  if (!json)
    return fail("invalid JSON header: " + toString(json.takeError()));
  const json::Object *root = json->getAsObject();
  if (!root || root->getString("format") != "moec-calibration" ||
      root->getInteger("version") != 1)
    return fail("not a version 1 moec-calibration header");
  file->tokens = uint64_t(root->getInteger("tokens").value_or(0));
  if (const json::Object *src = root->getObject("source")) {
    file->source.text = src->getString("text").value_or("").str();
    file->source.context = src->getInteger("context").value_or(0);
    file->source.chunks = src->getInteger("chunks").value_or(0);
  }

  uint64_t dataStart = (16 + header->size() + 7) / 8 * 8;
  if (dataStart > bytes.size())
    return fail("truncated before its data");
  uint64_t dataSize = bytes.size() - dataStart;
  const json::Array *tensors = root->getArray("tensors");
  if (!tensors)
    return fail("no tensors array");
  for (const json::Value &v : *tensors) {
    const json::Object *t = v.getAsObject();
    std::optional<StringRef> name = t ? t->getString("name") : std::nullopt;
    std::optional<int64_t> experts = t ? t->getInteger("experts") : std::nullopt,
                           columns = t ? t->getInteger("columns") : std::nullopt,
                           offset = t ? t->getInteger("offset") : std::nullopt;
    const json::Array *rows = t ? t->getArray("rows") : nullptr;
    if (!name || !experts || !columns || !offset || !rows || *experts < 1 ||
        *experts > (1 << 16) || *columns < 1 || *columns > (1 << 24) ||
        *offset < 0 || *offset % 4 || int64_t(rows->size()) != *experts)
      return fail("malformed tensor entry");
    uint64_t bytesNeeded = uint64_t(*experts) * uint64_t(*columns) * 4;
    if (uint64_t(*offset) > dataSize || bytesNeeded > dataSize - *offset)
      return fail("tensor " + *name + "'s data lies outside the file");
    TensorStats stats;
    stats.experts = unsigned(*experts);
    stats.columns = *columns;
    for (const json::Value &r : *rows) {
      std::optional<int64_t> n = r.getAsInteger();
      if (!n || *n < 0)
        return fail("tensor " + *name + ": rows must be non-negative");
      stats.rows.push_back(uint64_t(*n));
    }
    stats.meanSquares = reinterpret_cast<const float *>(
        bytes.data() + dataStart + *offset);
    for (uint64_t i = 0; i < bytesNeeded / 4; ++i)
      if (!std::isfinite(stats.meanSquares[i]) || stats.meanSquares[i] < 0)
        return fail("tensor " + *name +
                    " has a negative or non-finite mean square");
    if (!file->tensors.try_emplace(*name, std::move(stats)).second)
      return fail("tensor " + *name + " appears twice");
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
  auto fail = [&](const Twine &message) {
    return createStringError(path + ": " + message);
  };
  if (!bytes.starts_with("MOECHES1") || bytes.size() < 16)
    return fail("not a moec Hessian file");
  uint64_t size = support::endian::read64le(bytes.data() + 8);
  if (size > bytes.size() - 16)
    return fail("truncated header");
  Expected<json::Value> json = parseUntrustedJson(bytes.substr(16, size), 8);
  if (!json)
    return fail("invalid JSON header: " + toString(json.takeError()));
  const json::Object *root = json->getAsObject();
  const json::Array *tensors = root ? root->getArray("tensors") : nullptr;
  if (!tensors || root->getString("format") != "moec-hessians")
    return fail("not a moec-hessians header");
  uint64_t dataStart = (16 + size + 7) / 8 * 8;
  uint64_t dataSize = bytes.size() > dataStart ? bytes.size() - dataStart : 0;
  for (const json::Value &v : *tensors) {
    const json::Object *t = v.getAsObject();
    std::optional<StringRef> name = t ? t->getString("name") : std::nullopt;
    std::optional<int64_t> experts = t ? t->getInteger("experts") : std::nullopt,
                           columns = t ? t->getInteger("columns") : std::nullopt,
                           offset = t ? t->getInteger("offset") : std::nullopt;
    const json::Array *rows = t ? t->getArray("rows") : nullptr;
    if (!name || !experts || !columns || !offset || !rows || *experts < 1 ||
        *experts > (1 << 16) || *columns < 1 || *columns > (1 << 16) ||
        *offset < 0 || *offset % 8 || int64_t(rows->size()) != *experts)
      return fail("malformed tensor entry");
    uint64_t need = uint64_t(*experts) * uint64_t(*columns) *
                    uint64_t(*columns) * 8;
    if (uint64_t(*offset) > dataSize || need > dataSize - uint64_t(*offset))
      return fail("tensor " + *name + "'s data lies outside the file");
    Entry e;
    e.experts = unsigned(*experts);
    e.columns = *columns;
    for (const json::Value &r : *rows)
      e.rows.push_back(uint64_t(r.getAsInteger().value_or(0)));
    e.data = reinterpret_cast<const double *>(bytes.data() + dataStart +
                                              *offset);
    file->entries[*name] = std::move(e);
  }
  return file;
}

const HessianFile::Entry *HessianFile::find(StringRef name) const {
  auto it = entries.find(name);
  return it == entries.end() ? nullptr : &it->second;
}
