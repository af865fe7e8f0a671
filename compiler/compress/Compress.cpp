//===- Compress.cpp - The compress phase: weights into chosen formats -----===//

#include "compiler/compress/Compress.h"
#include "compiler/compress/CalibrationFile.h"
#include "compiler/gguf/GgufFile.h"
#include "compiler/gguf/GgufWriter.h"
#include "compiler/quant/Dequantize.h"
#include "compiler/quant/Gptq.h"
#include "compiler/quant/ImportanceQuantize.h"
#include "compiler/quant/Quantize.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <map>
#include <set>
#include <cstring>
#include <thread>

using namespace llvm;
using namespace moec;
using namespace moec::compress;
using gguf::GgmlType;
using model::StoredTensor;
using model::TensorRole;

/// The objective of the importance search: llama.cpp's, which also weighs
/// each weight by its magnitude (w_i = imp_i sqrt(sigma^2 + x_i^2)). On the
/// example model it keeps more than minimising sum imp_i (x_i - q_i)^2
/// alone, which clips the large weights that matter: mean KL to F16 with
/// int3_g64 experts 0.00098 against 0.00152 (round to nearest 0.00106);
/// Q3_K experts 0.00065 against 0.00094 (nearest 0.00071).
const quant::ImportanceOptions kSearchObjective{/*magnitudeFactor=*/true};

std::optional<Rounding> moec::compress::parseRounding(StringRef name) {
  if (name == "nearest")
    return Rounding::Nearest;
  if (name == "importance")
    return Rounding::Importance;
  if (name == "gptq")
    return Rounding::Gptq;
  return std::nullopt;
}

int64_t moec::compress::elementCount(const StoredTensor &t) {
  int64_t n = 1;
  for (int64_t d : t.dims)
    n *= d;
  return n;
}

uint64_t moec::compress::bytesIn(GgmlType type, const StoredTensor &t) {
  gguf::GgmlTypeInfo info = gguf::getGgmlTypeInfo(type);
  return uint64_t(elementCount(t)) / info.blockSize * info.blockBytes;
}

TensorClass moec::compress::classify(const StoredTensor &t) {
  if (!t.role || t.dims.size() < 2)
    return TensorClass::Kept;
  switch (t.role->kind) {
  case TensorRole::TokenEmbedding:
    return TensorClass::Embedding;
  case TensorRole::Output:
    return TensorClass::Output;
  case TensorRole::ExpertGate:
  case TensorRole::ExpertUp:
  case TensorRole::ExpertDown:
    return TensorClass::Experts;
  case TensorRole::AttnQ:
  case TensorRole::AttnK:
  case TensorRole::AttnV:
  case TensorRole::AttnOutput:
  case TensorRole::SharedGate:
  case TensorRole::SharedUp:
  case TensorRole::SharedDown:
    return TensorClass::Dense;
  default:
    // Norms, biases, the router and the shared expert's input gate: small,
    // and the router decides which experts run at all.
    return TensorClass::Kept;
  }
}

double moec::compress::bitsPerWeight(GgmlType type) {
  gguf::GgmlTypeInfo info = gguf::getGgmlTypeInfo(type);
  return 8.0 * info.blockBytes / info.blockSize;
}

namespace {

bool isFloat(GgmlType t) {
  return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16;
}

/// Whether rows of `type` can be written: floats, or a quantizer exists.
bool isWritable(GgmlType t) {
  return t == GgmlType::F32 || quant::canQuantize(t);
}

/// llama.cpp's fallback when a row does not divide into k-quant blocks: a
/// 32-element format of at least the bits (it uses IQ4_NL for Q2_K and
/// Q3_K, which moec does not compute with; Q4_0 has the same size).
std::optional<GgmlType> fallbackFor(GgmlType t) {
  switch (t) {
  case GgmlType::Q2_K:
  case GgmlType::Q3_K:
    return GgmlType::Q4_0;
  case GgmlType::Q4_K:
    return GgmlType::Q5_0;
  case GgmlType::Q5_K:
    return GgmlType::Q5_1;
  case GgmlType::Q6_K:
    return GgmlType::Q8_0;
  default:
    return std::nullopt;
  }
}

StringRef className(TensorClass c) {
  switch (c) {
  case TensorClass::Experts:
    return "experts";
  case TensorClass::Dense:
    return "attention/shared";
  case TensorClass::Embedding:
    return "embedding";
  case TensorClass::Output:
    return "output";
  case TensorClass::Kept:
    return "kept";
  }
  return "";
}

} // namespace

uint64_t CompressionPlan::totalBytes() const {
  uint64_t sum = 0;
  for (const TensorChoice &c : tensors)
    sum += c.numBytes;
  return sum;
}

uint64_t CompressionPlan::expertBytes() const {
  uint64_t sum = 0;
  for (const TensorChoice &c : tensors)
    if (classify(*c.tensor) == TensorClass::Experts)
      sum += c.numBytes;
  return sum;
}

int64_t CompressionPlan::expertElements() const {
  int64_t sum = 0;
  for (const TensorChoice &c : tensors)
    if (classify(*c.tensor) == TensorClass::Experts)
      sum += elementCount(*c.tensor);
  return sum;
}

std::vector<std::string> CompressionPlan::summary() const {
  struct Sums {
    uint64_t bytes = 0, sourceBytes = 0;
    int64_t elements = 0;
    std::map<std::string, int> types;
  };
  std::map<TensorClass, Sums> sums;
  for (const TensorChoice &c : tensors) {
    Sums &s = sums[classify(*c.tensor)];
    s.bytes += c.numBytes;
    s.sourceBytes += c.tensor->numBytes;
    s.elements += elementCount(*c.tensor);
    if (c.expertTypes.empty())
      ++s.types[gguf::getGgmlTypeInfo(c.type).name.str()];
    else
      ++s.types["per-expert mix"];
  }
  std::vector<std::string> lines;
  for (const auto &[cls, s] : sums) {
    std::string line;
    raw_string_ostream os(line);
    os << className(cls) << ": " << s.sourceBytes << " -> " << s.bytes
       << " bytes, " << format("%.3f", 8.0 * s.bytes / s.elements)
       << " bits per weight (";
    bool first = true;
    for (const auto &[name, count] : s.types) {
      os << (first ? "" : ", ") << count << " " << name;
      first = false;
    }
    os << ")";
    lines.push_back(line);
  }
  return lines;
}

bool CompressionPlan::changesAnything() const {
  for (const TensorChoice &c : tensors)
    if (c.action != TensorChoice::Copy)
      return true;
  return false;
}

Expected<CompressionPlan>
moec::compress::planCompression(const model::WeightStore &store,
                                const CompressOptions &options) {
  for (const auto &entry : options.tensorTypes)
    if (!store.find(entry.getKey()))
      return createStringError("per-tensor formats name '" +
                               entry.getKey().str() +
                               "', which the model does not have");

  for (const auto &entry : options.expertTypes) {
    const StoredTensor *t = store.find(entry.getKey());
    if (!t || classify(*t) != TensorClass::Experts || t->dims.size() != 3 ||
        int64_t(entry.getValue().size()) != t->dims[2])
      return createStringError("per-expert formats name '" +
                               entry.getKey().str() +
                               "', which is not a bank of routed experts of "
                               "that many experts");
    if (options.forLlamaCpp)
      return createStringError(
          "tensor '" + entry.getKey().str() +
          "': its experts get different formats, which a GGUF tensor cannot "
          "hold and llama.cpp cannot read (--emit=gguf allocates per tensor)");
    if (options.rounding == Rounding::Gptq)
      return createStringError("tensor '" + entry.getKey().str() +
                               "': GPTQ rounds whole tensors of one format; "
                               "per-expert formats take nearest or importance "
                               "rounding");
  }

  CompressionPlan plan;
  for (const StoredTensor &t : store.getTensors()) {
    TensorClass cls = classify(t);
    auto perExpert = options.expertTypes.find(t.name);
    if (perExpert != options.expertTypes.end()) {
      if (t.hasMixedExperts() || !isFloat(t.type))
        return createStringError(
            "tensor '" + t.name + "' is " +
            gguf::getGgmlTypeInfo(t.type).name.str() +
            (t.hasMixedExperts() ? " (experts of mixed formats)" : "") +
            ": per-expert formats are chosen for F16/BF16/F32 models");
      TensorChoice choice{&t, perExpert->second.front(), TensorChoice::Convert,
                          0, perExpert->second};
      for (GgmlType type : perExpert->second) {
        gguf::GgmlTypeInfo info = gguf::getGgmlTypeInfo(type);
        if (!info.computeSupported || !isWritable(type) ||
            t.dims[0] % info.blockSize != 0)
          return createStringError("tensor '" + t.name + "': moec cannot "
                                   "write its experts in " +
                                   info.name.str());
        choice.numBytes += bytesIn(type, t) / uint64_t(t.dims[2]);
      }
      plan.tensors.push_back(std::move(choice));
      continue;
    }
    if (t.hasMixedExperts()) {
      // Kept as they are, or re-encoded: the latter is not supported.
      std::optional<GgmlType> wanted =
          cls == TensorClass::Experts ? options.expertsType : std::nullopt;
      auto named = options.tensorTypes.find(t.name);
      if (named != options.tensorTypes.end())
        wanted = named->second;
      if (wanted)
        return createStringError("tensor '" + t.name +
                                 "' stores its experts in different formats; "
                                 "re-compressing it is not supported: "
                                 "compress the F16/BF16/F32 model");
      plan.tensors.push_back({&t, t.type, TensorChoice::Copy, t.numBytes,
                              std::vector<GgmlType>(t.expertTypes.begin(),
                                                    t.expertTypes.end())});
      continue;
    }
    std::optional<GgmlType> wanted;
    switch (cls) {
    case TensorClass::Experts:
      wanted = options.expertsType;
      break;
    case TensorClass::Dense:
      wanted = options.denseType;
      break;
    case TensorClass::Embedding:
      wanted = options.embeddingType;
      break;
    case TensorClass::Output:
      wanted = options.outputType;
      break;
    case TensorClass::Kept:
      break;
    }
    auto named = options.tensorTypes.find(t.name);
    if (named != options.tensorTypes.end()) {
      // A preset may quantize what the classes keep (llama.cpp quantizes
      // no norm, but a file may say so): only matrices are re-encoded.
      if (cls == TensorClass::Kept && named->second != t.type &&
          !isFloat(named->second))
        return createStringError(
            "tensor '" + t.name + "' is kept in " +
            gguf::getGgmlTypeInfo(t.type).name.str() +
            " (norms, biases and the router are not quantized), but the "
            "per-tensor formats ask for " +
            gguf::getGgmlTypeInfo(named->second).name.str());
      wanted = named->second;
    }

    TensorChoice choice{&t, t.type, TensorChoice::Copy, t.numBytes, {}};
    if (!wanted || *wanted == t.type) {
      plan.tensors.push_back(choice);
      continue;
    }
    GgmlType type = *wanted;
    gguf::GgmlTypeInfo info = gguf::getGgmlTypeInfo(type);
    if (options.forLlamaCpp && gguf::getOwnGroupType(type))
      return createStringError(
          "tensor '" + t.name + "': " + info.name.str() +
          " is moec's own format, which llama.cpp cannot read: --emit=gguf "
          "needs GGUF formats (compile the model to use it)");
    if (!info.computeSupported || !isWritable(type))
      return createStringError("tensor '" + t.name + "': moec cannot write " +
                               info.name.str());
    if (t.dims[0] % info.blockSize != 0) {
      std::optional<GgmlType> fallback = fallbackFor(type);
      if (!fallback ||
          t.dims[0] % gguf::getGgmlTypeInfo(*fallback).blockSize != 0)
        return createStringError(
            "tensor '" + t.name + "': rows of " + Twine(t.dims[0]).str() +
            " elements do not divide into " + info.name.str() + " blocks of " +
            Twine(info.blockSize).str());
      plan.warnings.push_back(
          "tensor '" + t.name + "': rows of " + Twine(t.dims[0]).str() +
          " elements do not divide into " + info.name.str() + " blocks of " +
          Twine(info.blockSize).str() + "; using " +
          gguf::getGgmlTypeInfo(*fallback).name.str());
      type = *fallback;
      if (type == t.type) {
        plan.tensors.push_back(choice);
        continue;
      }
    }
    if (options.rounding != Rounding::Nearest && options.calibration)
      if (const CalibrationFile::TensorStats *stats =
              options.calibration->find(t.name))
        if (stats->columns != t.dims[0])
          return createStringError(
              options.calibration->getPath() + ": tensor '" + t.name +
              "' has " + Twine(stats->columns).str() +
              " columns of statistics, the model's rows " +
              Twine(t.dims[0]).str() + " elements: another model's file?");
    if (!isFloat(t.type)) {
      if (!quant::canDequantize(t.type))
        return createStringError("tensor '" + t.name + "' is " +
                                 gguf::getGgmlTypeInfo(t.type).name.str() +
                                 ", which moec cannot read");
      // Widening loses nothing; anything else rounds rounded values again.
      if (!isFloat(type)) {
        if (!options.allowRequantize)
          return createStringError(
              "tensor '" + t.name + "' is already " +
              gguf::getGgmlTypeInfo(t.type).name.str() +
              "; re-quantizing it to " + gguf::getGgmlTypeInfo(type).name.str() +
              " compounds two roundings: pass --allow-requantize to do it "
              "anyway, or compress the F16/BF16/F32 model");
        plan.warnings.push_back(
            "re-quantizing '" + t.name + "' from " +
            gguf::getGgmlTypeInfo(t.type).name.str() + " to " +
            gguf::getGgmlTypeInfo(type).name.str() +
            " (two roundings: quality below compressing the original)");
      }
    }
    choice.type = type;
    choice.action = TensorChoice::Convert;
    choice.numBytes = bytesIn(type, t);
    plan.tensors.push_back(choice);
  }
  return plan;
}

namespace {

/// Re-encodes `choice`'s tensor (or, `expert` >= 0, that expert's slice
/// of a bank in its own format) into `out`, rows split across threads.
void convertTensor(const model::WeightStore &store, const TensorChoice &choice,
                   const CompressOptions &options, MutableArrayRef<uint8_t> out,
                   int64_t expert = -1) {
  const StoredTensor &t = *choice.tensor;
  int64_t rowElements = t.dims[0];
  int64_t rows = 1;
  for (size_t i = 1; i < t.dims.size(); ++i)
    rows *= t.dims[i];
  // One expert: its rows of the bank; `first` is where they start.
  int64_t first = 0;
  GgmlType toType = choice.type;
  if (expert >= 0) {
    rows /= t.dims[2];
    first = expert * rows;
    toType = choice.expertTypes[size_t(expert)];
  }
  gguf::GgmlTypeInfo from = gguf::getGgmlTypeInfo(t.type);
  gguf::GgmlTypeInfo to = gguf::getGgmlTypeInfo(toType);
  uint64_t fromRowBytes = rowElements / from.blockSize * from.blockBytes;
  uint64_t toRowBytes = rowElements / to.blockSize * to.blockBytes;

  unsigned threads = options.threads ? options.threads
                                     : std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<unsigned>(
      std::min<int64_t>(threads, std::max<int64_t>(1, rows / 16)));
  // Importance per row: the calibration's statistics of the row's matrix
  // (an expert of a stacked bank: dims[2] experts of dims[1] rows each).
  bool importance = options.rounding != Rounding::Nearest;
  const CalibrationFile::TensorStats *stats =
      importance && options.calibration ? options.calibration->find(t.name)
                                        : nullptr;
  int64_t allRows = expert >= 0 ? rows * t.dims[2] : rows;
  int64_t rowsPerMatrix =
      stats && stats->experts > 1 ? allRows / stats->experts : allRows;
  auto importanceOf = [&](int64_t row) -> const float * {
    if (!stats)
      return nullptr;
    int64_t e = row / rowsPerMatrix;
    if (e >= int64_t(stats->experts) ||
        stats->rows[size_t(e)] < options.minCalibrationRows)
      return nullptr;
    return stats->meanSquares + e * stats->columns;
  };
  quant::QuantFormat format = quant::QuantFormat::fromType(toType);
  auto work = [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> raw(fromRowBytes);
    std::vector<float> values(rowElements);
    for (int64_t r = begin; r < end; ++r) {
      int64_t row = first + r; // in the whole tensor
      store.copyBytes(t, row * fromRowBytes, fromRowBytes, raw.data());
      quant::dequantizeRow(t.type, raw.data(), values.data(), rowElements);
      uint8_t *dst = out.data() + r * toRowBytes;
      if (toType == GgmlType::F32)
        std::memcpy(dst, values.data(), toRowBytes);
      else if (importance && !isFloat(toType))
        quant::quantizeRowImportance(format, values.data(), dst, rowElements,
                                     importanceOf(row), kSearchObjective);
      else
        quant::quantizeRow(toType, values.data(), dst, rowElements);
    }
  };
  if (threads <= 1) {
    work(0, rows);
  } else {
    std::vector<std::thread> pool;
    int64_t per = (rows + threads - 1) / threads;
    for (unsigned i = 0; i < threads; ++i) {
      int64_t begin = i * per, end = std::min(rows, begin + per);
      if (begin < end)
        pool.emplace_back(work, begin, end);
    }
    for (std::thread &th : pool)
      th.join();
  }
  // Done with the source tensor: its pages leave (models beyond memory).
  store.releaseBytes(t, uint64_t(first) * fromRowBytes,
                     uint64_t(rows) * fromRowBytes);
}

} // namespace

Error moec::compress::writeCompressedGguf(
    const model::WeightStore &store, const CompressionPlan &plan,
    const CompressOptions &options, StringRef path,
    std::function<void(uint64_t, uint64_t)> progress) {
  gguf::GgufWriter writer;
  if (const gguf::GgufFile *source = store.getGguf()) {
    for (const gguf::KeyValue &kv : source->getMetadata()) {
      // llama.cpp guesses the file type from the tensors when the key is
      // absent; the source's would misname a mix.
      if (kv.key == "general.file_type")
        continue;
      writer.setMetadata(kv.key, gguf::WriteValue::copyOf(kv.value));
    }
  } else {
    model::writeGgufConfig(store.getConfig(),
                           "moec compress of " + store.getFiles().front(),
                           writer);
  }
  bool quantized = false;
  for (const TensorChoice &c : plan.tensors)
    quantized |= !isFloat(c.type);
  if (quantized)
    writer.setMetadata("general.quantization_version",
                       gguf::WriteValue::u32(2));

  for (const TensorChoice &c : plan.tensors) {
    const StoredTensor &t = *c.tensor;
    if (!c.expertTypes.empty()) {
      // One GGUF tensor per expert, each in its format.
      SmallVector<int64_t, 2> dims(t.dims.begin(), t.dims.end() - 1);
      for (int64_t e = 0; e < t.dims[2]; ++e) {
        gguf::GgufWriter::TensorDataFn fill;
        if (c.action == TensorChoice::Copy)
          fill = [&store, &t, e](MutableArrayRef<uint8_t> out) {
            store.copyBytes(t, t.getExpertOffset(e), out.size(), out.data());
            store.releaseBytes(t, t.getExpertOffset(e), out.size());
          };
        else
          fill = [&store, c, &options, e](MutableArrayRef<uint8_t> out) {
            convertTensor(store, c, options, out, e);
          };
        if (Error err = writer.addTensor(model::getExpertSliceName(t.name, e),
                                         dims, c.expertTypes[size_t(e)],
                                         std::move(fill)))
          return err;
      }
      continue;
    }
    gguf::GgufWriter::TensorDataFn fill;
    if (c.action == TensorChoice::Copy)
      fill = [&store, &t](MutableArrayRef<uint8_t> out) {
        store.copyBytes(t, 0, out.size(), out.data());
        store.releaseBytes(t, 0, out.size());
      };
    else if (options.precomputed && options.precomputed->count(t.name))
      fill = [&options, &t](MutableArrayRef<uint8_t> out) {
        const std::vector<uint8_t> &bytes = options.precomputed->at(t.name);
        assert(bytes.size() == out.size() && "precomputed tensor's size");
        std::memcpy(out.data(), bytes.data(), out.size());
      };
    else
      fill = [&store, c, &options](MutableArrayRef<uint8_t> out) {
        convertTensor(store, c, options, out);
      };
    if (Error e = writer.addTensor(t.name, t.dims, c.type, std::move(fill)))
      return e;
  }
  return writer.write(path, std::move(progress));
}

std::vector<int> moec::compress::getGptqLayers(const CompressionPlan &plan) {
  std::set<int> layers;
  for (const TensorChoice &c : plan.tensors)
    if (c.action == TensorChoice::Convert && gguf::getOwnGroupType(c.type) &&
        c.tensor->role)
      layers.insert(c.tensor->role->layer);
  return std::vector<int>(layers.begin(), layers.end());
}

Error moec::compress::gptqQuantizeLayer(const model::WeightStore &store,
                                        const CompressionPlan &plan,
                                        const CompressOptions &options,
                                        int layer, const HessianFile &hessians,
                                        StringMap<std::vector<uint8_t>> &out) {
  unsigned threads = options.threads ? options.threads
                                     : std::max(1u, std::thread::hardware_concurrency());
  for (const TensorChoice &c : plan.tensors) {
    const StoredTensor &t = *c.tensor;
    std::optional<gguf::OwnGroupType> own = gguf::getOwnGroupType(c.type);
    if (c.action != TensorChoice::Convert || !own || !t.role ||
        t.role->layer != layer)
      continue;
    const HessianFile::Entry *h = hessians.find(t.name);
    int64_t cols = t.dims[0];
    int64_t rows = 1;
    for (size_t i = 1; i < t.dims.size(); ++i)
      rows *= t.dims[i];
    int64_t matrices = t.dims.size() == 3 ? t.dims[2] : 1;
    int64_t rowsPerMatrix = rows / matrices;
    if (!h || h->columns != cols || int64_t(h->experts) != matrices)
      return createStringError("GPTQ: no Hessian of " + Twine(cols).str() +
                               " columns for tensor '" + t.name +
                               "' (the instrumented run did not observe it)");
    quant::GroupFormat group{own->bits, own->group, own->asymmetric};
    quant::QuantFormat format = quant::QuantFormat::ownGroup(group);
    uint64_t rowBytes = uint64_t(format.rowBytes(cols));
    gguf::GgmlTypeInfo from = gguf::getGgmlTypeInfo(t.type);
    uint64_t fromRowBytes = cols / from.blockSize * from.blockBytes;
    std::vector<uint8_t> &bytes = out[t.name];
    bytes.assign(uint64_t(rows) * rowBytes, 0);
    std::vector<uint8_t> raw(fromRowBytes);
    std::vector<float> W(size_t(rowsPerMatrix) * size_t(cols));
    for (int64_t m = 0; m < matrices; ++m) {
      for (int64_t r = 0; r < rowsPerMatrix; ++r) {
        store.copyBytes(t, uint64_t(m * rowsPerMatrix + r) * fromRowBytes,
                        fromRowBytes, raw.data());
        quant::dequantizeRow(t.type, raw.data(), W.data() + r * cols, cols);
      }
      uint8_t *dst = bytes.data() + uint64_t(m * rowsPerMatrix) * rowBytes;
      unsigned e = h->experts > 1 ? unsigned(m) : 0;
      if (h->rows[e] < options.minCalibrationRows) {
        // Too few inputs for a Hessian: uniform importance.
        for (int64_t r = 0; r < rowsPerMatrix; ++r)
          quant::quantizeRowImportance(format, W.data() + r * cols,
                                       dst + r * rowBytes, cols, nullptr,
                                       kSearchObjective);
        continue;
      }
      quant::GptqOptions gptq;
      gptq.threads = threads;
      std::string error;
      if (!quant::gptqQuantize(group, W.data(), rowsPerMatrix, cols,
                               h->data + size_t(e) * size_t(cols) * size_t(cols),
                               gptq, dst, &error))
        return createStringError("GPTQ of '" + t.name + "'" +
                                 (matrices > 1 ? " expert " + Twine(m).str()
                                               : std::string()) +
                                 ": " + error);
    }
    store.releaseBytes(t, 0, t.numBytes);
  }
  return Error::success();
}
