//===- WeightStoreTest.cpp - One model from GGUF, safetensors, shards -----===//
//
// The same synthesized model written as GGUF, as one safetensors file and as
// a sharded checkpoint must open to the same configuration and the same
// tensor bytes (Mixtral's Q/K rows differing exactly by GGUF's permutation),
// and malformed checkpoints must be refused with messages naming the file
// and the tensor or key.

#include "compiler/model/Synth.h"
#include "compiler/model/WeightStore.h"
#include "compiler/safetensors/SafetensorsFile.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

using namespace llvm;
using namespace moec;
using namespace moec::model;
using ::testing::HasSubstr;

namespace {

std::string tempDir() {
  SmallString<128> dir;
  EXPECT_FALSE(sys::fs::createUniqueDirectory("moec-store-test", dir));
  return std::string(dir);
}

std::string join(StringRef a, StringRef b) {
  SmallString<256> p(a);
  sys::path::append(p, b);
  return std::string(p);
}

/// All bytes of a stored tensor, extents concatenated.
std::vector<uint8_t> bytesOf(const WeightStore &store, const StoredTensor &t) {
  std::vector<uint8_t> bytes;
  for (const StoredTensor::Extent &e : t.extents) {
    ArrayRef<uint8_t> part = store.getExtentData(e);
    bytes.insert(bytes.end(), part.begin(), part.end());
  }
  return bytes;
}

std::unique_ptr<WeightStore> openOrFail(StringRef path) {
  Expected<std::unique_ptr<WeightStore>> store = WeightStore::open(path);
  EXPECT_TRUE(bool(store)) << toString(store.takeError());
  return store ? std::move(*store) : nullptr;
}

class SameModelEveryFormat : public ::testing::TestWithParam<const char *> {};

TEST_P(SameModelEveryFormat, OpensToTheSameTensors) {
  const FamilyInfo *family = lookupFamilyByName(GetParam());
  ASSERT_TRUE(family);
  SynthOptions options;
  ASSERT_TRUE(applyPreset("tiny", *family, options));
  options.config.numLayers = 3;
  options.seed = 42;
  std::string dir = tempDir();
  std::string ggufPath = join(dir, "model.gguf");
  ASSERT_FALSE(errorToBool(writeSynthGguf(options, ggufPath)));
  ASSERT_FALSE(errorToBool(writeSynthSafetensors(options, join(dir, "single"), 1)));
  ASSERT_FALSE(errorToBool(writeSynthSafetensors(options, join(dir, "sharded"), 3)));
  EXPECT_TRUE(sys::fs::exists(join(dir, "sharded/model-00003-of-00003.safetensors")));
  EXPECT_TRUE(sys::fs::exists(join(dir, "sharded/model.safetensors.index.json")));

  auto gguf = openOrFail(ggufPath);
  auto single = openOrFail(join(dir, "single"));
  auto sharded = openOrFail(join(dir, "sharded/model.safetensors.index.json"));
  ASSERT_TRUE(gguf && single && sharded);
  EXPECT_EQ(sharded->getFiles().size(), 3u);
  for (const WeightStore *s : {single.get(), sharded.get()}) {
    const ModelConfig &a = gguf->getConfig(), &b = s->getConfig();
    EXPECT_EQ(a.family, b.family);
    EXPECT_EQ(a.hiddenSize, b.hiddenSize);
    EXPECT_EQ(a.numLayers, b.numLayers);
    EXPECT_EQ(a.numExperts, b.numExperts);
    EXPECT_EQ(a.numExpertsUsed, b.numExpertsUsed);
    EXPECT_EQ(a.expertFfnSize, b.expertFfnSize);
    EXPECT_EQ(a.sharedExpertFfnSize, b.sharedExpertFfnSize);
    EXPECT_EQ(a.normTopK, b.normTopK);
    EXPECT_EQ(b.rope, family->hfRope);
  }
  EXPECT_EQ(gguf->getConfig().rope, family->ggufRope);

  const ModelConfig &c = gguf->getConfig();
  ASSERT_EQ(gguf->getTensors().size(), single->getTensors().size());
  for (const StoredTensor &t : gguf->getTensors()) {
    SCOPED_TRACE(t.name);
    const StoredTensor *u = single->find(t.name);
    const StoredTensor *v = sharded->find(t.name);
    ASSERT_TRUE(u && v);
    EXPECT_EQ(t.dims, u->dims);
    EXPECT_EQ(t.type, u->type);
    std::vector<uint8_t> a = bytesOf(*gguf, t), b = bytesOf(*single, *u);
    EXPECT_EQ(b, bytesOf(*sharded, *v)) << "sharded differs from single";
    bool permuted = family->ggufRope == RopeStyle::Interleaved &&
                    (t.role->kind == TensorRole::AttnQ ||
                     t.role->kind == TensorRole::AttnK);
    if (!permuted) {
      EXPECT_EQ(a, b);
      continue;
    }
    // GGUF row (head, i, half) is checkpoint row (head, half, i).
    int64_t rowBytes = t.dims[0] * 2, half = c.headDim / 2;
    int64_t heads = t.dims[1] / c.headDim;
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < half; ++i)
        for (int64_t p = 0; p < 2; ++p) {
          int64_t g = h * c.headDim + 2 * i + p, f = h * c.headDim + p * half + i;
          ASSERT_TRUE(std::equal(a.begin() + g * rowBytes,
                                 a.begin() + (g + 1) * rowBytes,
                                 b.begin() + f * rowBytes))
              << "row " << g;
        }
  }
}

// copyBytes and releaseBytes walk a tensor's extents (one per expert in a
// checkpoint): ranges inside one extent, across a boundary and over all of
// them read the same bytes as the extents concatenated, before and after
// the pages are released.
TEST(WeightStore, CopyBytesAcrossExtents) {
  const FamilyInfo *family = lookupFamilyByName("qwen3moe");
  ASSERT_TRUE(family);
  SynthOptions options;
  ASSERT_TRUE(applyPreset("tiny", *family, options));
  options.config.numLayers = 2;
  options.seed = 7;
  std::string dir = tempDir();
  Error written = writeSynthSafetensors(options, join(dir, "ckpt"), 1);
  ASSERT_FALSE(bool(written)) << toString(std::move(written));
  auto store = openOrFail(join(dir, "ckpt"));
  ASSERT_TRUE(store);
  // A model this small would stay cached: release its pages anyway.
  store->setReleasesPages(true);
  const StoredTensor *t = store->find("blk.0.ffn_down_exps.weight");
  ASSERT_TRUE(t);
  ASSERT_GE(t->extents.size(), 3u);
  std::vector<uint8_t> all = bytesOf(*store, *t);
  ASSERT_EQ(all.size(), t->numBytes);
  uint64_t extent = t->extents[0].size;
  std::vector<std::pair<uint64_t, uint64_t>> ranges = {
      {0, t->numBytes},          {3, 5},
      {extent - 7, 20},          {extent - 1, 2 * extent + 2},
      {t->numBytes - 9, 9},      {extent, extent},
      {extent + 1, 0}};
  for (int pass = 0; pass < 2; ++pass) {
    for (auto [offset, size] : ranges) {
      SCOPED_TRACE(testing::Message() << "pass " << pass << " offset "
                                      << offset << " size " << size);
      std::vector<uint8_t> out(size + 1, 0xA5);
      store->copyBytes(*t, offset, size, out.data());
      EXPECT_TRUE(std::equal(out.begin(), out.begin() + size,
                             all.begin() + offset));
      EXPECT_EQ(out[size], 0xA5) << "wrote past the range";
    }
    for (auto [offset, size] : ranges)
      store->releaseBytes(*t, offset, size);
  }
  sys::fs::remove_directories(dir);
}

INSTANTIATE_TEST_SUITE_P(Families, SameModelEveryFormat,
                         ::testing::Values("qwen3moe", "qwen2moe", "mixtral",
                                           "olmoe"));

//===----------------------------------------------------------------------===//
// Malformed checkpoints
//===----------------------------------------------------------------------===//

std::string parseError(StringRef bytes) {
  auto file = safetensors::SafetensorsFile::parse(
      MemoryBuffer::getMemBufferCopy(bytes, "x.safetensors"));
  return file ? "" : toString(file.takeError());
}

std::string withHeader(StringRef json, size_t dataBytes) {
  std::string s(8, '\0');
  uint64_t n = json.size();
  std::memcpy(s.data(), &n, 8);
  return s + json.str() + std::string(dataBytes, '\0');
}

TEST(Safetensors, MalformedHeaders) {
  EXPECT_THAT(parseError("abc"), HasSubstr("x.safetensors: file is 3 bytes, "
                                           "too short for the 8-byte header "
                                           "length"));
  std::string longer(8, '\0');
  longer[0] = 100;
  EXPECT_THAT(parseError(longer + "{}"),
              HasSubstr("offset 0: header length 100 runs past the end of the "
                        "file (2 bytes follow)"));
  EXPECT_THAT(parseError(withHeader("{\"a\": ", 0)),
              HasSubstr("offset 8: header is not valid JSON"));
  EXPECT_THAT(parseError(withHeader(std::string(5000, '[') + std::string(5000, ']'), 0)),
              HasSubstr("JSON nests 5000 levels deep"));
  EXPECT_THAT(parseError(withHeader("[]", 0)),
              HasSubstr("header is not a JSON object"));
  EXPECT_THAT(parseError(withHeader(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 8)),
              "");
  EXPECT_THAT(parseError(withHeader(R"({"t": {"dtype": "F99", "shape": [2], "data_offsets": [0, 8]}})", 8)),
              HasSubstr("tensor 't': unknown dtype 'F99'"));
  EXPECT_THAT(parseError(withHeader(R"({"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8)),
              HasSubstr("tensor 't': data_offsets [0, 8) hold 8 bytes but 3 "
                        "F32 elements need 12"));
  EXPECT_THAT(parseError(withHeader(R"({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8)),
              HasSubstr("tensor 't': data_offsets [0, 16) run past the end of "
                        "the data (8 bytes"));
  EXPECT_THAT(parseError(withHeader(R"({"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}})", 8)),
              HasSubstr("shape entries must be non-negative integers"));
  EXPECT_THAT(parseError(withHeader(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", 8)),
              HasSubstr("0 <= begin <= end"));
  EXPECT_THAT(parseError(withHeader(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                       "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", 12)),
              HasSubstr("tensors 'a' [0, 8) and 'b' [4, 12) overlap"));
  EXPECT_THAT(parseError(withHeader(R"({"t": {"dtype": "F32", "shape": [4611686018427387904, 4611686018427387904], "data_offsets": [0, 0]}})", 0)),
              HasSubstr("the product of its shape overflows 64 bits"));
}

/// Writes a tiny olmoe checkpoint and returns its directory.
std::string tinyCheckpoint() {
  SynthOptions options;
  applyPreset("tiny", *lookupFamilyByName("olmoe"), options);
  std::string dir = join(tempDir(), "ckpt");
  EXPECT_FALSE(errorToBool(writeSynthSafetensors(options, dir, 2)));
  return dir;
}

std::string openError(StringRef path) {
  auto store = WeightStore::open(path);
  return store ? "" : toString(store.takeError());
}

void rewrite(StringRef path, StringRef from, StringRef to) {
  auto buffer = MemoryBuffer::getFile(path);
  ASSERT_TRUE(bool(buffer));
  std::string text = (*buffer)->getBuffer().str();
  size_t at = text.find(from.str());
  ASSERT_NE(at, std::string::npos) << from.str();
  text.replace(at, from.size(), to.str());
  std::error_code ec;
  raw_fd_ostream os(path, ec);
  os << text;
}

TEST(Checkpoint, ConfigProblems) {
  std::string dir = tinyCheckpoint();
  std::string config = join(dir, "config.json");
  rewrite(config, "\"model_type\": \"olmoe\"", "\"model_type\": \"gpt_neox\"");
  EXPECT_THAT(openError(dir), HasSubstr("config.json: model_type 'gpt_neox' is "
                                        "not supported (supported: qwen3_moe, "
                                        "qwen2_moe, mixtral, olmoe)"));
  rewrite(config, "\"model_type\": \"gpt_neox\"", "\"model_type\": \"olmoe\"");
  rewrite(config, "\"num_experts\": 8", "\"num_experts\": \"eight\"");
  EXPECT_THAT(openError(dir), HasSubstr("config.json: 'num_experts' must be a "
                                        "non-negative integer"));
  rewrite(config, "\"num_experts\": \"eight\"", "\"num_experts\": 6");
  EXPECT_THAT(openError(dir),
              HasSubstr("tensor 'model.layers.0.mlp.gate.weight' has shape "
                        "[8, 64] but config.json implies [6, 64]"));
  rewrite(config, "\"num_experts\": 6", "\"num_experts\": 8");
  rewrite(config, "\"num_experts_per_tok\": 2", "\"num_experts_per_tok\": 9");
  EXPECT_THAT(openError(dir), HasSubstr("9 experts used per token exceeds the "
                                        "8 experts"));
  rewrite(config, "\"num_experts_per_tok\": 9", "\"num_experts_per_tok\": 2, "
                                                "\"clip_qkv\": 8.0");
  EXPECT_THAT(openError(dir), HasSubstr("clip_qkv is set"));
  rewrite(config, "\"clip_qkv\": 8.0", "\"clip_qkv\": null");
  EXPECT_EQ(openError(dir), "");
  rewrite(config, "\"attention_bias\": false", "\"attention_bias\": true");
  EXPECT_THAT(openError(dir), HasSubstr("attention_bias is true: attention "
                                        "projection biases are not "
                                        "supported for olmoe"));
  rewrite(config, "\"attention_bias\": true", "\"attention_bias\": false");
  rewrite(config, "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"");
  EXPECT_THAT(openError(dir), HasSubstr("hidden_act is 'gelu': only SwiGLU "
                                        "experts (silu) are supported"));
  rewrite(config, "\"hidden_act\": \"gelu\"", "\"hidden_act\": \"silu\"");
  // An absurd layer count is refused before anything is sized by it.
  rewrite(config, "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 2000000000");
  EXPECT_THAT(openError(dir), HasSubstr("config.json: 2000000000 layers of 8 "
                                        "experts cannot be stored in the "
                                        "checkpoint's"));
  rewrite(config, "\"num_hidden_layers\": 2000000000", "\"num_hidden_layers\": 2");
  rewrite(config, "\"rope_theta\": 10000", "\"rope_theta\": 1e999");
  EXPECT_THAT(openError(dir), HasSubstr("RoPE base inf is not positive and "
                                        "finite"));
  rewrite(config, "\"rope_theta\": 1e999", "\"rope_theta\": 10000");
  EXPECT_EQ(openError(dir), "");
  rewrite(config, "{", "{{");
  EXPECT_THAT(openError(dir), HasSubstr("config.json: invalid JSON"));
}

TEST(Checkpoint, MissingOutputProjection) {
  std::string dir = tinyCheckpoint();
  rewrite(join(dir, "model.safetensors.index.json"), "\"lm_head.weight\"",
          "\"lm_head.weighX\"");
  rewrite(join(dir, "model-00002-of-00002.safetensors"), "\"lm_head.weight\"",
          "\"lm_head.weighX\"");
  EXPECT_THAT(openError(dir), HasSubstr("missing tensor 'lm_head.weight' "
                                        "(config.json says "
                                        "tie_word_embeddings is false)"));
  rewrite(join(dir, "config.json"), "\"tie_word_embeddings\": false",
          "\"tie_word_embeddings\": true");
  EXPECT_EQ(openError(dir), "");
}

TEST(Checkpoint, RewritingWithFewerShardsLeavesNoStaleIndex) {
  SynthOptions options;
  applyPreset("tiny", *lookupFamilyByName("qwen2moe"), options);
  std::string dir = join(tempDir(), "ckpt");
  ASSERT_FALSE(errorToBool(writeSynthSafetensors(options, dir, 2)));
  ASSERT_FALSE(errorToBool(writeSynthSafetensors(options, dir, 1)));
  auto store = openOrFail(dir);
  ASSERT_TRUE(store);
  EXPECT_EQ(store->getFiles().size(), 1u);
  EXPECT_EQ(sys::path::filename(store->getFiles().front()), "model.safetensors");
}

TEST(Checkpoint, ShardProblems) {
  std::string dir = tinyCheckpoint();
  std::string index = join(dir, "model.safetensors.index.json");
  rewrite(index, "\"model.layers.1.mlp.gate.weight\": \"model-00002-of-00002.safetensors\"",
          "\"model.layers.1.mlp.gate.weight\": \"model-00001-of-00002.safetensors\"");
  EXPECT_THAT(openError(dir), HasSubstr("weight_map puts "
                                        "'model.layers.1.mlp.gate.weight' in "
                                        "model-00001-of-00002.safetensors, "
                                        "which does not hold it"));
  rewrite(index, "\"model.layers.1.mlp.gate.weight\": \"model-00001-of-00002.safetensors\"",
          "\"model.layers.1.mlp.gate.weight\": \"../model-00002-of-00002.safetensors\"");
  EXPECT_THAT(openError(dir), HasSubstr("shard name "
                                        "'../model-00002-of-00002.safetensors' "
                                        "is not a file name in the checkpoint "
                                        "directory"));
  ASSERT_FALSE(sys::fs::remove(index));
  EXPECT_THAT(openError(dir), HasSubstr("model.safetensors: cannot open"));
}

TEST(Checkpoint, MissingExpert) {
  SynthOptions options;
  applyPreset("tiny", *lookupFamilyByName("qwen3moe"), options);
  std::string dir = join(tempDir(), "ckpt");
  ASSERT_FALSE(errorToBool(writeSynthSafetensors(options, dir, 1)));
  // Rename one expert's tensor in the header (same length: offsets stay).
  rewrite(join(dir, "model.safetensors"), "layers.0.mlp.experts.5.up_proj",
          "layers.0.mlp.experts.5.up_prox");
  EXPECT_THAT(openError(dir),
              HasSubstr("model.safetensors: missing tensor "
                        "'model.layers.0.mlp.experts.5.up_proj.weight' "
                        "(Qwen3MoeForCausalLM with the configuration in "
                        "config.json)"));
}

} // namespace
