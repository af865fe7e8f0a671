//===- Synth.cpp - Random-weight models of every supported family ---------===//

#include "compiler/model/Synth.h"

#include "compiler/gguf/GgufFile.h"
#include "compiler/gguf/GgufWriter.h"
#include "compiler/quant/Dequantize.h"
#include "compiler/quant/Quantize.h"
#include "compiler/support/FileUtil.h"

#include "llvm/ADT/bit.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>

using namespace llvm;
using namespace moec;
using namespace moec::model;
using gguf::GgmlType;

namespace {

/// SplitMix64: a tiny, fast generator whose streams are cheap to seed, one
/// per (tensor, chunk), so that output does not depend on thread count.
struct Random {
  uint64_t state;
  explicit Random(uint64_t seed) : state(seed) {}
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1).
  double uniform() { return (next() >> 11) * 0x1p-53; }
  /// Standard normal (Box-Muller).
  double normal() {
    double u = uniform(), v = uniform();
    return std::sqrt(-2.0 * std::log(1.0 - u)) * std::cos(6.283185307179586 * v);
  }
};

uint64_t mix(uint64_t a, uint64_t b) {
  Random r(a * 0x2545f4914f6cdd1dull ^ (b + 0x632be59bd9b4e019ull));
  return r.next();
}

void putHalf(uint8_t *p, float v) {
  support::endian::write16le(p, quant::floatToHalf(v));
}

/// Fills one block of a quantized format with random codes, its scales set
/// so that the values have roughly standard deviation `sigma`.
void randomBlock(GgmlType type, const gguf::GgmlTypeInfo &info, float sigma,
                 Random &rng, uint8_t *b) {
  for (int64_t i = 0; i < info.blockBytes; i += 8) {
    uint64_t r = rng.next();
    std::memcpy(b + i, &r, std::min<int64_t>(8, info.blockBytes - i));
  }
  switch (type) {
  case GgmlType::Q4_0:
    putHalf(b, sigma / 4.6f);
    break;
  case GgmlType::Q4_1:
    putHalf(b, sigma / 4.6f);
    putHalf(b + 2, -7.5f * sigma / 4.6f);
    break;
  case GgmlType::Q5_0:
    putHalf(b, sigma / 9.2f);
    break;
  case GgmlType::Q5_1:
    putHalf(b, sigma / 9.2f);
    putHalf(b + 2, -15.5f * sigma / 9.2f);
    break;
  case GgmlType::Q8_0:
    putHalf(b, sigma / 73.0f);
    break;
  case GgmlType::MXFP4: { // x = 2^(e-128) * code, |code| up to 12
    int e = 128 + static_cast<int>(std::lround(std::log2(sigma / 4.0f)));
    b[0] = static_cast<uint8_t>(std::clamp(e, 1, 254));
    break;
  }
  default:
    llvm_unreachable("not a block format");
  }
}

/// Fills `out` with `count` floats of type `type` (F32/F16/BF16) drawn from
/// N(mean, sigma).
void randomFloats(GgmlType type, float mean, float sigma, Random &rng,
                  uint8_t *out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    float v = mean + sigma * static_cast<float>(rng.normal());
    switch (type) {
    case GgmlType::F32:
      support::endian::write32le(out + 4 * i, llvm::bit_cast<uint32_t>(v));
      break;
    case GgmlType::F16:
      support::endian::write16le(out + 2 * i, quant::floatToHalf(v));
      break;
    case GgmlType::BF16: // round to nearest even
    {
      uint32_t bits = llvm::bit_cast<uint32_t>(v);
      bits += 0x7fff + ((bits >> 16) & 1);
      support::endian::write16le(out + 2 * i, static_cast<uint16_t>(bits >> 16));
      break;
    }
    default:
      llvm_unreachable("not a float type");
    }
  }
}

/// Whether tensors of `type` are filled with quantized N(mean, sigma) values
/// (every block format with a quantizer) rather than random codes: random
/// codes and scales give sub-blocks random offsets and heavy tails that no
/// trained model has, and make comparisons of lossy kernels (8-bit
/// activations) meaningless.
bool quantizesGaussian(GgmlType type) {
  return quant::canQuantize(type) && gguf::getGgmlTypeInfo(type).blockSize > 1;
}

/// Fills a whole tensor, in parallel chunks with their own streams.
void fillTensor(GgmlType type, float mean, float sigma, uint64_t seed,
                MutableArrayRef<uint8_t> out, unsigned threads) {
  gguf::GgmlTypeInfo info = gguf::getGgmlTypeInfo(type);
  int64_t blocks = out.size() / info.blockBytes;
  constexpr int64_t kChunkBlocks = 1 << 14;
  int64_t chunks = (blocks + kChunkBlocks - 1) / kChunkBlocks;
  auto work = [&](int64_t chunk) {
    Random rng(mix(seed, chunk));
    int64_t first = chunk * kChunkBlocks;
    int64_t last = std::min(blocks, first + kChunkBlocks);
    uint8_t *p = out.data() + first * info.blockBytes;
    if (info.blockSize == 1) {
      randomFloats(type, mean, sigma, rng, p, last - first);
      return;
    }
    if (quantizesGaussian(type)) {
      std::vector<float> values(info.blockSize);
      for (int64_t b = first; b < last; ++b, p += info.blockBytes) {
        for (float &v : values)
          v = mean + sigma * static_cast<float>(rng.normal());
        quant::quantizeRow(type, values.data(), p, info.blockSize);
      }
      return;
    }
    for (int64_t b = first; b < last; ++b, p += info.blockBytes)
      randomBlock(type, info, sigma, rng, p);
  };
  unsigned n = std::max<unsigned>(1, std::min<int64_t>(threads, chunks));
  if (n == 1) {
    for (int64_t c = 0; c < chunks; ++c)
      work(c);
    return;
  }
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < n; ++t)
    pool.emplace_back([&, t] {
      for (int64_t c = t; c < chunks; c += n)
        work(c);
    });
  for (std::thread &th : pool)
    th.join();
}

} // namespace

namespace {

/// The vocabulary size of the tokenizer in `vocabularyFile` (a GGUF).
Expected<int64_t> vocabularySize(StringRef vocabularyFile,
                                 std::unique_ptr<gguf::GgufFile> *keep) {
  Expected<std::unique_ptr<gguf::GgufFile>> v =
      gguf::GgufFile::open(vocabularyFile);
  if (!v)
    return v.takeError();
  const gguf::Value *tokens = (*v)->lookup("tokenizer.ggml.tokens");
  if (!tokens || tokens->getType() != gguf::ValueType::Array)
    return (*v)->makeError("no tokenizer.ggml.tokens array");
  int64_t size = static_cast<int64_t>(tokens->getArraySize());
  if (keep)
    *keep = std::move(*v);
  return size;
}

/// How one tensor of a synthesized model is generated: its type, value
/// distribution and random stream. GGUF and safetensors output draw the same
/// values from it, so that one seed gives one model in either format.
struct RoleGenerator {
  GgmlType type;
  float mean, sigma;
  uint64_t seed;
  unsigned threads;
  void fill(MutableArrayRef<uint8_t> out) const {
    fillTensor(type, mean, sigma, seed, out, threads);
  }
};

Expected<RoleGenerator> describeRole(const SynthOptions &o,
                                     ArrayRef<TensorRole> roles, size_t index) {
  const TensorRole &role = roles[index];
  GgmlType type = GgmlType::F32;
  if (role.tensorClass == "experts")
    type = o.expertsTypesPerLayer.empty()
               ? o.expertsType
               : o.expertsTypesPerLayer[role.layer %
                                        o.expertsTypesPerLayer.size()];
  else if (role.tensorClass == "attention")
    type = o.attentionType;
  else if (role.tensorClass == "embeddings")
    type = o.embeddingsType;
  if (!quant::canDequantize(type))
    return createStringError(inconvertibleErrorCode(),
                             "moec synth: type %s is not one moec computes "
                             "with (supported: %s)",
                             gguf::getGgmlTypeInfo(type).name.str().c_str(),
                             gguf::computeSupportedGgmlTypeNames().c_str());
  // Norm weights near one, everything else around zero with a standard
  // deviation of 1/sqrt(fan-in), so that activations keep their scale.
  bool isNorm = role.ggufName.find("norm") != std::string::npos;
  RoleGenerator g;
  g.type = type;
  g.mean = isNorm ? 1.0f : 0.0f;
  g.sigma = isNorm ? 0.1f : 1.0f / std::sqrt(static_cast<float>(role.dims[0]));
  if (role.kind == TensorRole::TokenEmbedding)
    g.sigma = 1.0f;
  if (role.kind == TensorRole::Router)
    g.sigma *= o.routerScale;
  g.seed = mix(o.seed, index);
  g.threads = o.threads ? o.threads : std::thread::hardware_concurrency();
  return g;
}

} // namespace

bool moec::model::applyPreset(StringRef preset, const FamilyInfo &family,
                              SynthOptions &o) {
  ModelConfig &c = o.config;
  c.family = &family;
  c.rope = family.ggufRope;
  c.normTopK = family.defaultNormTopK;
  c.rmsNormEps = 1e-6;
  c.ropeTheta = 10000.0;
  if (preset == "tiny") {
    c.vocabSize = 256;
    c.hiddenSize = 64;
    c.numLayers = 2;
    c.numHeads = 4;
    c.numKvHeads = 2;
    c.headDim = 16;
    c.numExperts = 8;
    c.numExpertsUsed = 2;
    c.expertFfnSize = 32;
    c.sharedExpertFfnSize = family.sharedExpert ? 64 : 0;
    c.contextLength = 256;
    return true;
  }
  if (preset == "bench") {
    c.vocabSize = 32000;
    c.hiddenSize = 2048;
    c.numLayers = 16;
    c.numHeads = 32;
    c.numKvHeads = 4;
    c.headDim = 128;
    c.numExperts = 64;
    c.numExpertsUsed = 8;
    c.expertFfnSize = 1024;
    c.sharedExpertFfnSize = family.sharedExpert ? 4096 : 0;
    c.contextLength = 4096;
    o.expertsType = GgmlType::Q4_0;
    o.attentionType = GgmlType::Q8_0;
    o.embeddingsType = GgmlType::Q8_0;
    return true;
  }
  return false;
}

Error moec::model::writeSynthGguf(const SynthOptions &o, StringRef path,
                                  std::function<void(uint64_t, uint64_t)> progress) {
  ModelConfig c = o.config;
  gguf::GgufWriter writer;

  std::unique_ptr<gguf::GgufFile> vocabulary;
  if (!o.vocabularyFile.empty()) {
    Expected<int64_t> size = vocabularySize(o.vocabularyFile, &vocabulary);
    if (!size)
      return size.takeError();
    c.vocabSize = *size;
  }
  if (Error e = c.validate("moec synth"))
    return e;

  writeGgufConfig(c, "moec synth " + c.family->name.str() + " seed " +
                         std::to_string(o.seed),
                  writer);
  if (vocabulary)
    for (const gguf::KeyValue &kv : vocabulary->getMetadata())
      if (kv.key.starts_with("tokenizer."))
        writer.setMetadata(kv.key, gguf::WriteValue::copyOf(kv.value));

  std::vector<TensorRole> roles = getTensorRoles(c);
  for (size_t index = 0; index < roles.size(); ++index) {
    Expected<RoleGenerator> gen = describeRole(o, roles, index);
    if (!gen)
      return gen.takeError();
    if (Error e = writer.addTensor(
            roles[index].ggufName, roles[index].dims, gen->type,
            [gen = *gen](MutableArrayRef<uint8_t> out) { gen.fill(out); }))
      return e;
  }
  return writer.write(path, std::move(progress));
}

//===----------------------------------------------------------------------===//
// Safetensors
//===----------------------------------------------------------------------===//

namespace {

/// One tensor of the checkpoint: which role it comes from and which slice.
struct HfTensor {
  std::string name;
  size_t role;
  int64_t expert; // -1: the whole role tensor
  std::vector<int64_t> shape;
  uint64_t begin, end;
};

StringRef dtypeName(GgmlType type) {
  switch (type) {
  case GgmlType::F32:
    return "F32";
  case GgmlType::F16:
    return "F16";
  default:
    return "BF16";
  }
}

json::Object hfConfigJson(const ModelConfig &c, GgmlType dtype) {
  const FamilyInfo &f = *c.family;
  json::Object o;
  o["model_type"] = f.hfModelType;
  o["architectures"] = json::Array{f.hfArchitecture};
  o["vocab_size"] = c.vocabSize;
  o["hidden_size"] = c.hiddenSize;
  o["num_hidden_layers"] = c.numLayers;
  o["num_attention_heads"] = c.numHeads;
  o["num_key_value_heads"] = c.numKvHeads;
  o["head_dim"] = c.headDim;
  o[f.hfExpertCountKey] = c.numExperts;
  o["num_experts_per_tok"] = c.numExpertsUsed;
  o[f.hfExpertFfnKey] = c.expertFfnSize;
  if (f.hfExpertFfnKey != "intermediate_size")
    o["intermediate_size"] = c.expertFfnSize;
  if (f.sharedExpert)
    o["shared_expert_intermediate_size"] = c.sharedExpertFfnSize;
  o["max_position_embeddings"] = c.contextLength;
  o["rms_norm_eps"] = c.rmsNormEps;
  o["rope_theta"] = c.ropeTheta;
  o["norm_topk_prob"] = c.normTopK;
  o["tie_word_embeddings"] = c.tiedEmbeddings;
  o["hidden_act"] = "silu";
  o["attention_bias"] = f.qkvBias;
  o["torch_dtype"] = dtype == GgmlType::F32   ? "float32"
                     : dtype == GgmlType::F16 ? "float16"
                                              : "bfloat16";
  if (f.family == Family::Qwen2Moe || f.family == Family::Qwen3Moe) {
    o["decoder_sparse_step"] = 1;
    o["mlp_only_layers"] = json::Array{};
    o["use_sliding_window"] = false;
  }
  return o;
}

} // namespace

Error moec::model::writeSynthSafetensors(const SynthOptions &o,
                                         StringRef directory,
                                         unsigned numShards) {
  ModelConfig c = o.config;
  if (!o.vocabularyFile.empty()) {
    Expected<int64_t> size = vocabularySize(o.vocabularyFile, nullptr);
    if (!size)
      return size.takeError();
    c.vocabSize = *size;
  }
  if (Error e = c.validate("moec synth"))
    return e;
  std::vector<GgmlType> types = {o.expertsType, o.attentionType,
                                 o.embeddingsType};
  types.insert(types.end(), o.expertsTypesPerLayer.begin(),
               o.expertsTypesPerLayer.end());
  for (GgmlType t : types)
    if (t != GgmlType::F32 && t != GgmlType::F16 && t != GgmlType::BF16)
      return createStringError(
          inconvertibleErrorCode(),
          "moec synth: safetensors holds F32, F16 and BF16 only, not %s",
          gguf::getGgmlTypeInfo(t).name.str().c_str());
  if (numShards == 0 || numShards > static_cast<unsigned>(c.numLayers))
    return createStringError(inconvertibleErrorCode(),
                             "moec synth: %u shards for %lld layers; expected "
                             "1 to the layer count",
                             numShards, static_cast<long long>(c.numLayers));
  if (std::error_code ec = sys::fs::create_directories(directory))
    return createStringError(ec, "%s: cannot create directory: %s",
                             directory.str().c_str(), ec.message().c_str());
  // A checkpoint written here before with another shard count must not be
  // mixed with this one: readers prefer an index over model.safetensors.
  {
    SmallString<256> stale(directory);
    sys::path::append(stale, numShards == 1 ? "model.safetensors.index.json"
                                            : "model.safetensors");
    sys::fs::remove(stale);
  }

  std::vector<TensorRole> roles = getTensorRoles(c);
  std::vector<RoleGenerator> generators;
  for (size_t i = 0; i < roles.size(); ++i) {
    Expected<RoleGenerator> g = describeRole(o, roles, i);
    if (!g)
      return g.takeError();
    generators.push_back(*g);
  }

  // Lay out the shards: layers split evenly, the embedding in the first
  // shard, the final norm and output in the last.
  auto shardOf = [&](const TensorRole &role) -> unsigned {
    if (role.layer < 0)
      return role.kind == TensorRole::TokenEmbedding ? 0 : numShards - 1;
    return static_cast<unsigned>(role.layer * numShards / c.numLayers);
  };
  std::vector<std::vector<HfTensor>> shards(numShards);
  std::vector<uint64_t> shardBytes(numShards, 0);
  for (size_t i = 0; i < roles.size(); ++i) {
    const TensorRole &role = roles[i];
    unsigned elementBytes = gguf::getGgmlTypeInfo(generators[i].type).blockBytes;
    bool perExpert = role.tensorClass == "experts";
    std::vector<int64_t> shape(role.dims.rbegin(), role.dims.rend());
    if (perExpert)
      shape.erase(shape.begin());
    if (role.kind == TensorRole::SharedInputGate)
      shape.insert(shape.begin(), 1); // [1, H] in transformers
    uint64_t elements = 1;
    for (int64_t d : shape)
      elements *= d;
    for (int64_t e = 0; e < (perExpert ? c.numExperts : 1); ++e) {
      unsigned s = shardOf(role);
      HfTensor t{getHfTensorName(c, role, perExpert ? e : -1), i,
                 perExpert ? e : -1, shape, shardBytes[s],
                 shardBytes[s] + elements * elementBytes};
      shardBytes[s] = t.end;
      shards[s].push_back(std::move(t));
    }
  }

  uint64_t totalBytes = 0;
  json::Object weightMap;
  for (unsigned s = 0; s < numShards; ++s) {
    std::string file = "model.safetensors";
    if (numShards > 1)
      raw_string_ostream(file = "")
          << format("model-%05u-of-%05u.safetensors", s + 1, numShards);
    json::Object header;
    header["__metadata__"] = json::Object{{"format", "pt"}};
    for (const HfTensor &t : shards[s]) {
      header[t.name] = json::Object{
          {"dtype", dtypeName(generators[t.role].type)},
          {"shape", json::Array(t.shape)},
          {"data_offsets", json::Array{t.begin, t.end}}};
      weightMap[t.name] = file;
    }
    std::string headerText;
    raw_string_ostream(headerText) << json::Value(std::move(header));
    headerText.resize(alignTo(headerText.size(), 8), ' ');
    totalBytes += shardBytes[s];

    SmallString<256> path(directory);
    sys::path::append(path, file);
    Error e = writeFileAtomically(path, [&](raw_ostream &os) {
      char length[8];
      support::endian::write64le(length, headerText.size());
      os.write(length, 8);
      os << headerText;
      // Generate each role tensor once and write the slices of this shard.
      size_t cachedRole = SIZE_MAX;
      std::vector<uint8_t> data;
      for (const HfTensor &t : shards[s]) {
        if (t.role != cachedRole) {
          const TensorRole &role = roles[t.role];
          gguf::GgmlTypeInfo info = gguf::getGgmlTypeInfo(generators[t.role].type);
          uint64_t elements = 1;
          for (int64_t d : role.dims)
            elements *= d;
          data.assign(elements * info.blockBytes, 0);
          generators[t.role].fill(data);
          // GGUF llama-family Q/K rows are permuted for interleaved RoPE;
          // a checkpoint stores them in transformers' (NeoX) order.
          bool permuted = c.family->ggufRope == RopeStyle::Interleaved &&
                          (role.kind == TensorRole::AttnQ ||
                           role.kind == TensorRole::AttnK);
          if (permuted) {
            int64_t rowBytes = role.dims[0] * info.blockBytes;
            int64_t heads = role.kind == TensorRole::AttnQ ? c.numHeads : c.numKvHeads;
            int64_t half = c.headDim / 2;
            std::vector<uint8_t> hf(data.size());
            for (int64_t h = 0; h < heads; ++h)
              for (int64_t part = 0; part < 2; ++part)
                for (int64_t i = 0; i < half; ++i) {
                  int64_t hfRow = h * c.headDim + part * half + i;
                  int64_t ggufRow = h * c.headDim + 2 * i + part;
                  std::memcpy(hf.data() + hfRow * rowBytes,
                              data.data() + ggufRow * rowBytes, rowBytes);
                }
            data.swap(hf);
          }
          cachedRole = t.role;
        }
        uint64_t size = t.end - t.begin;
        uint64_t offset = t.expert < 0 ? 0 : t.expert * size;
        os.write(reinterpret_cast<const char *>(data.data() + offset), size);
      }
    });
    if (e)
      return e;
  }

  if (numShards > 1) {
    json::Object index{{"metadata", json::Object{{"total_size", totalBytes}}},
                       {"weight_map", std::move(weightMap)}};
    SmallString<256> path(directory);
    sys::path::append(path, "model.safetensors.index.json");
    if (Error e = writeFileAtomically(path, [&](raw_ostream &os) {
          os << formatv("{0:2}", json::Value(std::move(index))) << "\n";
        }))
      return e;
  }
  SmallString<256> path(directory);
  sys::path::append(path, "config.json");
  GgmlType dtype = o.expertsType;
  return writeFileAtomically(path, [&](raw_ostream &os) {
    os << formatv("{0:2}", json::Value(hfConfigJson(c, dtype))) << "\n";
  });
}
