//===- TransformersFixtureTest.cpp - The reference vs transformers --------===//
//
// The independent check of the reference executor: for every family, tiny
// random models built by Hugging Face transformers itself (test/fixtures,
// made by make_fixtures.py), read from the saved safetensors checkpoint and
// from its GGUF conversion (the gguf package's names, llama.cpp's Q/K
// permutation), must give the logits transformers recorded for the fixed
// token sequence: max |diff| <= 1e-4 x max |logit| over all 20 positions,
// against the float64 run and the float32 run.

#include "compiler/model/WeightStore.h"
#include "test/reference/ReferenceModel.h"

#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

using namespace llvm;
using namespace moec;

namespace {

std::string fixture(StringRef family, StringRef file) {
  return (Twine(MOEC_FIXTURES_DIR) + "/" + family + "/" + file).str();
}

std::vector<float> readFloats(const std::string &path) {
  auto buffer = MemoryBuffer::getFile(path, /*IsText=*/false,
                                      /*RequiresNullTerminator=*/false);
  EXPECT_TRUE(bool(buffer)) << path;
  if (!buffer)
    return {};
  std::vector<float> values((*buffer)->getBufferSize() / sizeof(float));
  std::memcpy(values.data(), (*buffer)->getBufferStart(),
              values.size() * sizeof(float));
  return values;
}

class TransformersFixture
    : public ::testing::TestWithParam<std::tuple<const char *, const char *>> {};

TEST_P(TransformersFixture, ReferenceMatchesTransformersLogits) {
  auto [family, source] = GetParam();
  auto meta = MemoryBuffer::getFile(fixture(family, "meta.json"));
  ASSERT_TRUE(bool(meta));
  Expected<json::Value> parsed = json::parse((*meta)->getBuffer());
  ASSERT_TRUE(bool(parsed)) << toString(parsed.takeError());
  const json::Array *tokenArray = parsed->getAsObject()->getArray("tokens");
  ASSERT_TRUE(tokenArray);
  std::vector<int32_t> tokens;
  for (const json::Value &t : *tokenArray)
    tokens.push_back(static_cast<int32_t>(*t.getAsInteger()));
  ASSERT_GE(tokens.size(), 16u);

  auto store = model::WeightStore::open(fixture(family, source));
  ASSERT_TRUE(bool(store)) << toString(store.takeError());
  reference::ReferenceModel model(**store);
  std::vector<float> ours = model.prefill(tokens);
  int64_t vocab = model.getConfig().vocabSize;
  ASSERT_EQ(ours.size(), tokens.size() * vocab);

  for (const char *file : {"logits_f64ref.f32", "logits.f32"}) {
    SCOPED_TRACE(file);
    std::vector<float> theirs = readFloats(fixture(family, file));
    ASSERT_EQ(theirs.size(), ours.size());
    double maxLogit = 0, maxDiff = 0;
    for (size_t i = 0; i < ours.size(); ++i) {
      maxLogit = std::max(maxLogit, std::fabs(double(theirs[i])));
      maxDiff = std::max(maxDiff, std::fabs(double(ours[i]) - theirs[i]));
    }
    ASSERT_GT(maxLogit, 0.5) << "fixture logits are degenerate";
    EXPECT_LE(maxDiff, 1e-4 * maxLogit)
        << "max |diff| " << maxDiff << " vs max |logit| " << maxLogit;
    // The figure the note reports.
    std::printf("%s %s vs %s: max |diff| / max |logit| = %.2e over %zu "
                "positions\n",
                family, source, file, maxDiff / maxLogit, tokens.size());
  }
}

INSTANTIATE_TEST_SUITE_P(
    Families, TransformersFixture,
    ::testing::Combine(::testing::Values("qwen3moe", "qwen2moe", "mixtral",
                                         "olmoe"),
                       ::testing::Values("hf", "model.gguf")),
    [](const auto &info) {
      std::string source = std::get<1>(info.param);
      return std::string(std::get<0>(info.param)) + "_" +
             (source == "hf" ? "safetensors" : "gguf");
    });

} // namespace
