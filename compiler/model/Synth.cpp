//===- Synth.cpp - Random-weight models of every supported family ---------===//

#include "compiler/model/Synth.h"

#include "compiler/gguf/GgufFile.h"
#include "compiler/gguf/GgufWriter.h"
#include "compiler/quant/Dequantize.h"

#include "llvm/ADT/bit.h"
#include "llvm/Support/Endian.h"

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
  case GgmlType::Q2_K: // x = d*sc*q - dmin*m, sc and m in 0..15, q in 0..3
    putHalf(b + 80, sigma / 8.0f);
    putHalf(b + 82, sigma / 8.0f);
    break;
  case GgmlType::Q3_K: // x = d*(sc-32)*q, q in -4..3
    putHalf(b + 108, sigma / 40.0f);
    break;
  case GgmlType::Q4_K: // x = d*sc*q - dmin*m, sc and m in 0..63, q in 0..15
    putHalf(b, sigma / 150.0f);
    putHalf(b + 2, sigma / 20.0f);
    break;
  case GgmlType::Q5_K:
    putHalf(b, sigma / 300.0f);
    putHalf(b + 2, sigma / 20.0f);
    break;
  case GgmlType::Q6_K: // x = d*sc*(q-32), sc in -128..127
    putHalf(b + 208, sigma / 1200.0f);
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
    Expected<std::unique_ptr<gguf::GgufFile>> v =
        gguf::GgufFile::open(o.vocabularyFile);
    if (!v)
      return v.takeError();
    vocabulary = std::move(*v);
    const gguf::Value *tokens = vocabulary->lookup("tokenizer.ggml.tokens");
    if (!tokens || tokens->getType() != gguf::ValueType::Array)
      return vocabulary->makeError("no tokenizer.ggml.tokens array to copy");
    c.vocabSize = static_cast<int64_t>(tokens->getArraySize());
  }
  if (Error e = c.validate("moec synth"))
    return e;

  std::string p = c.family->ggufArch.str() + ".";
  auto u32 = [&](StringRef key, int64_t v) {
    writer.setMetadata(p + key.str(), gguf::WriteValue::u32(static_cast<uint32_t>(v)));
  };
  writer.setMetadata("general.architecture",
                     gguf::WriteValue::str(c.family->ggufArch.str()));
  writer.setMetadata("general.name",
                     gguf::WriteValue::str("moec synth " + c.family->name.str() +
                                           " seed " + std::to_string(o.seed)));
  u32("context_length", c.contextLength);
  u32("embedding_length", c.hiddenSize);
  u32("block_count", c.numLayers);
  u32("feed_forward_length", c.expertFfnSize);
  u32("expert_feed_forward_length", c.expertFfnSize);
  if (c.family->sharedExpert)
    u32("expert_shared_feed_forward_length", c.sharedExpertFfnSize);
  u32("attention.head_count", c.numHeads);
  u32("attention.head_count_kv", c.numKvHeads);
  u32("attention.key_length", c.headDim);
  u32("attention.value_length", c.headDim);
  u32("expert_count", c.numExperts);
  u32("expert_used_count", c.numExpertsUsed);
  u32("vocab_size", c.vocabSize);
  writer.setMetadata(p + "attention.layer_norm_rms_epsilon",
                     gguf::WriteValue::f32(static_cast<float>(c.rmsNormEps)));
  writer.setMetadata(p + "rope.freq_base",
                     gguf::WriteValue::f32(static_cast<float>(c.ropeTheta)));
  writer.setMetadata(p + "expert_weights_norm",
                     gguf::WriteValue::boolean(c.normTopK));
  if (vocabulary)
    for (const gguf::KeyValue &kv : vocabulary->getMetadata())
      if (kv.key.starts_with("tokenizer."))
        writer.setMetadata(kv.key, gguf::WriteValue::copyOf(kv.value));

  unsigned threads = o.threads ? o.threads : std::thread::hardware_concurrency();
  std::vector<TensorRole> roles = getTensorRoles(c);
  for (size_t index = 0; index < roles.size(); ++index) {
    const TensorRole &role = roles[index];
    GgmlType type = GgmlType::F32;
    if (role.tensorClass == "experts")
      type = o.expertsType;
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
    float mean = isNorm ? 1.0f : 0.0f;
    float sigma = isNorm ? 0.1f : 1.0f / std::sqrt(static_cast<float>(role.dims[0]));
    if (role.kind == TensorRole::TokenEmbedding)
      sigma = 1.0f;
    uint64_t seed = mix(o.seed, index);
    if (Error e = writer.addTensor(
            role.ggufName, role.dims, type,
            [=](MutableArrayRef<uint8_t> out) {
              fillTensor(type, mean, sigma, seed, out, threads);
            }))
      return e;
  }
  return writer.write(path, std::move(progress));
}
