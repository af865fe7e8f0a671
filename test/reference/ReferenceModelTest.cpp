//===- ReferenceModelTest.cpp - The reference executor checks itself ------===//
//
// The oracle that compiled code is compared with must be right on its own:
//  - its scalar operations against values worked out by hand;
//  - whole models with parts zeroed or flattened, whose logits follow from a
//    few lines of arithmetic done here independently (in f64 throughout);
//  - prefill against decode (and chunked prefill), for every family;
//  - one synthesized model as GGUF and as a (sharded) safetensors checkpoint,
//    which differ in Mixtral's Q/K row order and RoPE style;
//  - quantized GGUF models.
// Agreement with transformers itself is checked by hand
// (check_against_transformers.py; see README.md).

#include "test/reference/ReferenceModel.h"
#include "test/reference/ReferenceOps.h"

#include "compiler/model/Synth.h"
#include "compiler/model/WeightStore.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

using namespace llvm;
using namespace moec;
using namespace moec::model;
using namespace moec::reference;
using gguf::GgmlType;
using ::testing::ElementsAre;

namespace {

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

const char *const kFamilies[] = {"qwen3moe", "qwen2moe", "mixtral", "olmoe"};

/// A fresh directory, removed with what it holds when this goes out of
/// scope (stores opened from it keep their mappings of unlinked files).
struct TempDir {
  std::string path;
  TempDir() {
    SmallString<128> dir;
    EXPECT_FALSE(sys::fs::createUniqueDirectory("moec-reference-test", dir));
    path = std::string(dir);
  }
  ~TempDir() { sys::fs::remove_directories(path); }
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;
};

std::string join(StringRef a, StringRef b) {
  SmallString<256> p(a);
  sys::path::append(p, b);
  return std::string(p);
}

std::unique_ptr<WeightStore> openOrFail(StringRef path) {
  Expected<std::unique_ptr<WeightStore>> store = WeightStore::open(path);
  EXPECT_TRUE(bool(store)) << toString(store.takeError());
  return store ? std::move(*store) : nullptr;
}

SynthOptions tinyOptions(StringRef familyName, int64_t layers = 2) {
  const FamilyInfo *family = lookupFamilyByName(familyName);
  EXPECT_TRUE(family) << familyName.str();
  SynthOptions options;
  EXPECT_TRUE(applyPreset("tiny", *family, options));
  options.config.numLayers = layers;
  options.seed = 1234;
  options.threads = 1;
  return options;
}

/// Writes `options` as GGUF and opens it.
std::unique_ptr<WeightStore> synthGguf(const SynthOptions &options) {
  TempDir dir;
  std::string path = join(dir.path, "model.gguf");
  EXPECT_FALSE(errorToBool(writeSynthGguf(options, path)));
  return openOrFail(path);
}

/// A fixed token sequence spread over the vocabulary.
std::vector<int32_t> someTokens(int64_t count, int64_t vocab) {
  std::vector<int32_t> tokens;
  for (int64_t i = 0; i < count; ++i)
    tokens.push_back(static_cast<int32_t>((37 * i * i + 11 * i + 5) % vocab));
  return tokens;
}

double maxAbs(ArrayRef<float> a) {
  double m = 0.0;
  for (float v : a)
    m = std::max(m, std::fabs(static_cast<double>(v)));
  return m;
}

double maxAbsDiff(ArrayRef<float> a, ArrayRef<float> b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0.0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  return m;
}

/// |a - b| <= rel * max|a|, elementwise.
void expectClose(ArrayRef<float> a, ArrayRef<float> b, double rel) {
  ASSERT_EQ(a.size(), b.size());
  EXPECT_LE(maxAbsDiff(a, b), rel * maxAbs(a)) << "max |a| = " << maxAbs(a);
}

/// The logits of a random tiny model: all finite, of the scale that
/// 1/sqrt(fan-in) weights give (standard deviation around one).
void expectSensible(ArrayRef<float> logits) {
  for (float v : logits)
    ASSERT_TRUE(std::isfinite(v));
  double m = maxAbs(logits);
  EXPECT_GT(m, 0.5);
  EXPECT_LT(m, 20.0);
}

//===----------------------------------------------------------------------===//
// Independent f64 arithmetic for the hand-checked models
//===----------------------------------------------------------------------===//

using Vec = std::vector<double>;

Vec toVec(ArrayRef<float> a) { return Vec(a.begin(), a.end()); }

/// y = W x for a row-major W of x.size() columns.
Vec mat(ArrayRef<float> w, const Vec &x) {
  Vec y(w.size() / x.size(), 0.0);
  for (size_t o = 0; o < y.size(); ++o)
    for (size_t i = 0; i < x.size(); ++i)
      y[o] += w[o * x.size() + i] * x[i];
  return y;
}

Vec norm(const Vec &x, ArrayRef<float> w, double eps) {
  double ss = 0.0;
  for (double v : x)
    ss += v * v;
  double r = 1.0 / std::sqrt(ss / x.size() + eps);
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    y[i] = x[i] * r * w[i];
  return y;
}

Vec add(Vec a, const Vec &b) {
  for (size_t i = 0; i < a.size(); ++i)
    a[i] += b[i];
  return a;
}

std::vector<float> toFloats(const Vec &v) {
  return std::vector<float>(v.begin(), v.end());
}

/// down(silu(gate x) * up x) for one expert slice.
Vec ffn(ArrayRef<float> gate, ArrayRef<float> up, ArrayRef<float> down,
        const Vec &x) {
  Vec g = mat(gate, x), u = mat(up, x);
  for (size_t i = 0; i < g.size(); ++i)
    g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
  return mat(down, g);
}

void zero(MutableArrayRef<float> w) {
  ASSERT_FALSE(w.empty());
  std::fill(w.begin(), w.end(), 0.0f);
}

std::string blk(int layer, StringRef suffix) {
  return ("blk." + Twine(layer) + "." + suffix).str();
}

//===----------------------------------------------------------------------===//
// Scalar operations, by hand
//===----------------------------------------------------------------------===//

TEST(Ops, RmsNorm) {
  // x = [1, 2, 3, 4]: mean(x^2) = 30/4 = 7.5; with eps 0.5 the divisor is
  // sqrt(8) = 2*sqrt(2).
  std::vector<float> x = {1, 2, 3, 4}, w = {1, 1, 2, 0.5f}, y(4);
  ops::rmsNorm(x, w, 0.5, y);
  double r = 1.0 / (2.0 * std::sqrt(2.0));
  EXPECT_THAT(
      y, ElementsAre(float(1 * r), float(2 * r), float(6 * r), float(2 * r)));
  // x = [1, -1, 1, -1]: mean(x^2) = 1, so with eps 0 the output is x * w.
  std::vector<float> s = {1, -1, 1, -1};
  ops::rmsNorm(s, w, 0.0, s); // in place
  EXPECT_THAT(s, ElementsAre(1.0f, -1.0f, 2.0f, -0.5f));
}

TEST(Ops, RopeFrequenciesAndPairs) {
  // d = 4, theta = 10000: inv_freq = [10000^0, 10000^(-2/4)] = [1, 0.01].
  EXPECT_DOUBLE_EQ(ops::ropeInverseFrequency(10000.0, 0, 4), 1.0);
  EXPECT_DOUBLE_EQ(ops::ropeInverseFrequency(10000.0, 1, 4), 0.01);
  // NeoX pairs (0, 2) at angle p*1 and (1, 3) at angle p*0.01: at p = 1,
  // e0 = [1,0,0,0] turns to [cos 1, 0, sin 1, 0] and e1 to
  // [0, cos .01, 0, sin .01].
  std::vector<float> a = {1, 0, 0, 0}, b = {0, 1, 0, 0};
  ops::rope(a, 1, 10000.0, RopeStyle::NeoX);
  ops::rope(b, 1, 10000.0, RopeStyle::NeoX);
  EXPECT_THAT(
      a, ElementsAre(float(std::cos(1.0)), 0.0f, float(std::sin(1.0)), 0.0f));
  EXPECT_THAT(
      b, ElementsAre(0.0f, float(std::cos(0.01)), 0.0f, float(std::sin(0.01))));
  // Interleaved pairs (0, 1) at angle 1 and (2, 3) at angle 0.01.
  std::vector<float> c = {1, 0, 0, 0}, d = {0, 0, 1, 0};
  ops::rope(c, 1, 10000.0, RopeStyle::Interleaved);
  ops::rope(d, 1, 10000.0, RopeStyle::Interleaved);
  EXPECT_THAT(
      c, ElementsAre(float(std::cos(1.0)), float(std::sin(1.0)), 0.0f, 0.0f));
  EXPECT_THAT(
      d, ElementsAre(0.0f, 0.0f, float(std::cos(0.01)), float(std::sin(0.01))));
  // The second element of a pair turns the other way: (0, 1) -> (-sin, cos).
  std::vector<float> e = {0, 1, 0, 0};
  ops::rope(e, 2, 10000.0, RopeStyle::Interleaved);
  EXPECT_THAT(
      e, ElementsAre(float(-std::sin(2.0)), float(std::cos(2.0)), 0.0f, 0.0f));
  // Position 0 is the identity.
  std::vector<float> f = {0.5f, -2, 3, 7};
  ops::rope(f, 0, 10000.0, RopeStyle::NeoX);
  EXPECT_THAT(f, ElementsAre(0.5f, -2.0f, 3.0f, 7.0f));
}

TEST(Ops, RopeStylesDifferByGgufPermutation) {
  // GGUF's llama permutation puts row (i, half) of a head at 2i + half:
  // interleaved RoPE of the permuted head is the permuted NeoX RoPE.
  const int64_t d = 8, half = d / 2;
  std::vector<float> neox = {0.3f,  -1.2f, 2.5f,  0.7f,
                             -0.4f, 1.9f,  -2.2f, 0.05f};
  std::vector<float> inter(d);
  for (int64_t i = 0; i < half; ++i)
    for (int64_t p = 0; p < 2; ++p)
      inter[2 * i + p] = neox[p * half + i];
  ops::rope(neox, 37, 500.0, RopeStyle::NeoX);
  ops::rope(inter, 37, 500.0, RopeStyle::Interleaved);
  for (int64_t i = 0; i < half; ++i)
    for (int64_t p = 0; p < 2; ++p)
      EXPECT_EQ(inter[2 * i + p], neox[p * half + i]);
}

TEST(Ops, SoftmaxSiluSigmoid) {
  // softmax([0, ln 2, ln 3]) = [1, 2, 3] / 6.
  std::vector<double> p = ops::softmax({0.0, std::log(2.0), std::log(3.0)});
  EXPECT_NEAR(p[0], 1.0 / 6, 1e-15);
  EXPECT_NEAR(p[1], 2.0 / 6, 1e-15);
  EXPECT_NEAR(p[2], 3.0 / 6, 1e-15);
  // Shifted by the maximum: no overflow.
  EXPECT_THAT(ops::softmax({1000.0, 1000.0}), ElementsAre(0.5, 0.5));
  EXPECT_EQ(ops::silu(0.0), 0.0);
  EXPECT_NEAR(ops::silu(1.0), 0.7310585786300049, 1e-15); // 1 / (1 + 1/e)
  EXPECT_NEAR(ops::silu(-1.0), -0.2689414213699951, 1e-15);
  EXPECT_EQ(ops::sigmoid(0.0), 0.5);
  EXPECT_NEAR(ops::sigmoid(2.0), 0.8807970779778823, 1e-15);
}

TEST(Ops, TopKAndRouting) {
  EXPECT_THAT(ops::topK({0.1, 0.3, 0.3, 0.2}, 2), ElementsAre(1, 2));
  EXPECT_THAT(ops::topK({0.1, 0.3, 0.3, 0.2}, 3), ElementsAre(1, 2, 3));
  EXPECT_THAT(ops::topK({0.2, 0.2, 0.2}, 2), ElementsAre(0, 1));
  // Logits [0, ln 3, ln 2, ln 2] give probabilities [1, 3, 2, 2] / 8: expert
  // 1, then the tie between 2 and 3 goes to 2; nothing separates 2 from 3.
  std::vector<float> logits = {0.0f, float(std::log(3.0)), float(std::log(2.0)),
                               float(std::log(2.0))};
  ops::Routing raw = ops::route(logits, 2, /*normalize=*/false);
  EXPECT_THAT(raw.experts, ElementsAre(1, 2));
  EXPECT_NEAR(raw.weights[0], 3.0 / 8, 1e-7);
  EXPECT_NEAR(raw.weights[1], 2.0 / 8, 1e-7);
  EXPECT_EQ(raw.margin, 0.0);
  // Renormalized: 3/5 and 2/5.
  ops::Routing normed = ops::route(logits, 2, /*normalize=*/true);
  EXPECT_NEAR(normed.weights[0], 0.6, 1e-7);
  EXPECT_NEAR(normed.weights[1], 0.4, 1e-7);
  // Top 1 of 4: margin 3/8 - 2/8.
  EXPECT_NEAR(ops::route(logits, 1, false).margin, 1.0 / 8, 1e-7);
  EXPECT_TRUE(std::isinf(ops::route(logits, 4, false).margin));
}

TEST(Ops, MatVecRowsAreOutputs) {
  // ggml dims [in = 3, out = 2]: row-major [2][3], y[o] = sum_i W[o][i] x[i].
  std::vector<float> w = {1, 2, 3, 4, 5, 6}, x = {1, 0, -1}, y(2);
  ops::matVec(w, x, y);
  EXPECT_THAT(y, ElementsAre(-2.0f, -2.0f));
  std::vector<float> x2 = {0, 1, 0};
  ops::matVec(w, x2, y);
  EXPECT_THAT(y, ElementsAre(2.0f, 5.0f));
  std::vector<float> bias = {0.5f, -5};
  ops::matVec(w, x2, y, bias);
  EXPECT_THAT(y, ElementsAre(2.5f, 0.0f));
}

//===----------------------------------------------------------------------===//
// Whole models with known behaviour
//===----------------------------------------------------------------------===//

class EveryFamily : public ::testing::TestWithParam<const char *> {};

/// With every attention output projection and every expert's (and the
/// shared expert's) down projection zero, each block adds zero: the logits
/// are output . RMSNorm(embedding), whatever the context.
TEST_P(EveryFamily, ZeroedBlocksPassTheEmbeddingThrough) {
  auto store = synthGguf(tinyOptions(GetParam()));
  ASSERT_TRUE(store);
  ReferenceModel model(*store);
  const ModelConfig &c = model.getConfig();
  for (int l = 0; l < c.numLayers; ++l) {
    zero(model.getWeight(blk(l, "attn_output.weight")));
    zero(model.getWeight(blk(l, "ffn_down_exps.weight")));
    if (c.family->sharedExpert)
      zero(model.getWeight(blk(l, "ffn_down_shexp.weight")));
  }
  std::vector<int32_t> tokens = {3, 200, 3, 17};
  std::vector<float> logits = model.prefill(tokens);
  ArrayRef<float> embd = model.getWeight("token_embd.weight");
  for (size_t t = 0; t < tokens.size(); ++t) {
    SCOPED_TRACE(t);
    Vec x = toVec(embd.slice(tokens[t] * c.hiddenSize, c.hiddenSize));
    Vec expected =
        mat(model.getWeight("output.weight"),
            norm(x, model.getWeight("output_norm.weight"), c.rmsNormEps));
    expectClose(toFloats(expected),
                ArrayRef<float>(logits).slice(t * c.vocabSize, c.vocabSize),
                1e-6);
  }
  // Position 0 and 2 hold the same token: the same logits, exactly.
  EXPECT_TRUE(std::equal(logits.begin(), logits.begin() + c.vocabSize,
                         logits.begin() + 2 * c.vocabSize));
}

/// At position 0 attention has one key: softmax gives it weight 1, so query
/// head h outputs V of KV head h / (heads / kvHeads) whatever Q, K, their
/// norms and RoPE are. With the experts' down projections zero, one layer's
/// logits are output . norm(e + Wo . expand(Wv . norm(e) + bv)).
TEST_P(EveryFamily, FirstPositionAttendsToItsOwnValue) {
  auto store = synthGguf(tinyOptions(GetParam(), /*layers=*/1));
  ASSERT_TRUE(store);
  ReferenceModel model(*store);
  const ModelConfig &c = model.getConfig();
  zero(model.getWeight(blk(0, "ffn_down_exps.weight")));
  if (c.family->sharedExpert)
    zero(model.getWeight(blk(0, "ffn_down_shexp.weight")));
  const int32_t token = 77;
  std::vector<float> logits = model.prefill({token});

  const int64_t d = c.headDim, group = c.numHeads / c.numKvHeads;
  Vec e = toVec(model.getWeight("token_embd.weight")
                    .slice(token * c.hiddenSize, c.hiddenSize));
  Vec v =
      mat(model.getWeight(blk(0, "attn_v.weight")),
          norm(e, model.getWeight(blk(0, "attn_norm.weight")), c.rmsNormEps));
  if (c.family->qkvBias)
    v = add(v, toVec(model.getWeight(blk(0, "attn_v.bias"))));
  Vec attn(c.numHeads * d);
  for (int64_t h = 0; h < c.numHeads; ++h)
    for (int64_t i = 0; i < d; ++i)
      attn[h * d + i] = v[(h / group) * d + i];
  Vec x = add(e, mat(model.getWeight(blk(0, "attn_output.weight")), attn));
  Vec expected =
      mat(model.getWeight("output.weight"),
          norm(x, model.getWeight("output_norm.weight"), c.rmsNormEps));
  expectClose(toFloats(expected), logits, 1e-5);
}

/// With a zero router every expert has probability 1/E: the tie goes to
/// experts 0..k-1, weighted 1/E each (1/k renormalized). With attention
/// output zero, one layer's hidden state is
///   e + sum_{j<k} w * down_j(silu(gate_j n) * up_j n) [+ shared expert],
/// n = RMSNorm(e), which checks the slicing of the stacked expert tensors
/// ([E][I][H] gate/up, [E][H][I] down).
TEST_P(EveryFamily, UniformRouterPicksTheFirstExperts) {
  auto store = synthGguf(tinyOptions(GetParam(), /*layers=*/1));
  ASSERT_TRUE(store);
  ReferenceModel model(*store);
  const ModelConfig &c = model.getConfig();
  zero(model.getWeight(blk(0, "attn_output.weight")));
  zero(model.getWeight(blk(0, "ffn_gate_inp.weight")));
  const int32_t token = 5;
  std::vector<float> logits = model.prefill({token});

  const ops::Routing &r = model.getRouting(0, 0);
  ASSERT_EQ(c.numExpertsUsed, 2);
  EXPECT_THAT(r.experts, ElementsAre(0, 1));
  double w = c.normTopK ? 1.0 / c.numExpertsUsed : 1.0 / c.numExperts;
  EXPECT_THAT(r.weights, ElementsAre(::testing::DoubleNear(w, 1e-15),
                                     ::testing::DoubleNear(w, 1e-15)));
  EXPECT_EQ(r.margin, 0.0);

  const int64_t h = c.hiddenSize, i = c.expertFfnSize;
  Vec e = toVec(model.getWeight("token_embd.weight").slice(token * h, h));
  Vec n = norm(e, model.getWeight(blk(0, "ffn_norm.weight")), c.rmsNormEps);
  ArrayRef<float> gate = model.getWeight(blk(0, "ffn_gate_exps.weight")),
                  up = model.getWeight(blk(0, "ffn_up_exps.weight")),
                  down = model.getWeight(blk(0, "ffn_down_exps.weight"));
  Vec x = e;
  for (int64_t j = 0; j < 2; ++j) {
    Vec y = ffn(gate.slice(j * i * h, i * h), up.slice(j * i * h, i * h),
                down.slice(j * h * i, h * i), n);
    for (int64_t k = 0; k < h; ++k)
      x[k] += w * y[k];
  }
  if (c.family->sharedExpert) {
    Vec y = ffn(model.getWeight(blk(0, "ffn_gate_shexp.weight")),
                model.getWeight(blk(0, "ffn_up_shexp.weight")),
                model.getWeight(blk(0, "ffn_down_shexp.weight")), n);
    double g = 1.0;
    if (c.family->sharedExpertGate) {
      ArrayRef<float> wg = model.getWeight(blk(0, "ffn_gate_inp_shexp.weight"));
      double dotp = 0.0;
      for (int64_t k = 0; k < h; ++k)
        dotp += wg[k] * n[k];
      g = 1.0 / (1.0 + std::exp(-dotp));
    }
    for (int64_t k = 0; k < h; ++k)
      x[k] += g * y[k];
  }
  Vec expected =
      mat(model.getWeight("output.weight"),
          norm(x, model.getWeight("output_norm.weight"), c.rmsNormEps));
  expectClose(toFloats(expected), logits, 1e-5);
}

/// RoPE written out again: pair (a, b) of frequency i turns by p *
/// theta^(-2i/d).
void ropeByHand(Vec &head, int64_t p, double theta, RopeStyle style) {
  const size_t d = head.size(), half = d / 2;
  for (size_t i = 0; i < half; ++i) {
    size_t a = style == RopeStyle::NeoX ? i : 2 * i;
    size_t b = style == RopeStyle::NeoX ? i + half : 2 * i + 1;
    double angle = p * std::pow(theta, -2.0 * i / d);
    double x = head[a], y = head[b];
    head[a] = x * std::cos(angle) - y * std::sin(angle);
    head[b] = y * std::cos(angle) + x * std::sin(angle);
  }
}

/// The second position of a one-layer model (experts' down projections
/// zero) worked out here: Q/K/V with biases, the family's Q/K norm, RoPE at
/// positions 0 and 1, a two-way softmax per head, GQA, output projection.
TEST_P(EveryFamily, SecondPositionAttentionByHand) {
  auto store = synthGguf(tinyOptions(GetParam(), /*layers=*/1));
  ASSERT_TRUE(store);
  ReferenceModel model(*store);
  const ModelConfig &c = model.getConfig();
  zero(model.getWeight(blk(0, "ffn_down_exps.weight")));
  if (c.family->sharedExpert)
    zero(model.getWeight(blk(0, "ffn_down_shexp.weight")));
  const std::vector<int32_t> tokens = {42, 137};
  std::vector<float> logits = model.prefill(tokens);

  const int64_t d = c.headDim, h = c.hiddenSize,
                group = c.numHeads / c.numKvHeads;
  const double eps = c.rmsNormEps;
  auto w = [&](StringRef name) -> ArrayRef<float> {
    return model.getWeight(blk(0, name));
  };
  /// The projection `kind` ("q", "k" or "v") of the token at `pos`, with
  /// bias, norm and RoPE, as a list of heads.
  auto project = [&](char kind, int64_t pos) {
    Vec x =
        toVec(model.getWeight("token_embd.weight").slice(tokens[pos] * h, h));
    std::string name = std::string("attn_") + kind;
    Vec y = mat(w(name + ".weight"), norm(x, w("attn_norm.weight"), eps));
    if (c.family->qkvBias)
      y = add(y, toVec(w(name + ".bias")));
    if (kind != 'v' && c.family->qkNorm == QkNorm::Whole)
      y = norm(y, w(name + "_norm.weight"), eps);
    std::vector<Vec> heads;
    for (size_t at = 0; at < y.size(); at += d) {
      Vec one(y.begin() + at, y.begin() + at + d);
      if (kind != 'v') {
        if (c.family->qkNorm == QkNorm::PerHead)
          one = norm(one, w(name + "_norm.weight"), eps);
        ropeByHand(one, pos, c.ropeTheta, c.rope);
      }
      heads.push_back(one);
    }
    return heads;
  };
  std::vector<Vec> q = project('q', 1), k0 = project('k', 0),
                   k1 = project('k', 1), v0 = project('v', 0),
                   v1 = project('v', 1);
  Vec attn;
  for (int64_t head = 0; head < c.numHeads; ++head) {
    int64_t g = head / group;
    double s0 = 0.0, s1 = 0.0;
    for (int64_t i = 0; i < d; ++i) {
      s0 += q[head][i] * k0[g][i];
      s1 += q[head][i] * k1[g][i];
    }
    s0 /= std::sqrt(double(d));
    s1 /= std::sqrt(double(d));
    double p0 = 1.0 / (1.0 + std::exp(s1 - s0)), p1 = 1.0 - p0;
    for (int64_t i = 0; i < d; ++i)
      attn.push_back(p0 * v0[g][i] + p1 * v1[g][i]);
  }
  Vec x =
      add(toVec(model.getWeight("token_embd.weight").slice(tokens[1] * h, h)),
          mat(w("attn_output.weight"), attn));
  Vec expected = mat(model.getWeight("output.weight"),
                     norm(x, model.getWeight("output_norm.weight"), eps));
  expectClose(toFloats(expected),
              ArrayRef<float>(logits).take_back(c.vocabSize), 1e-5);
}

//===----------------------------------------------------------------------===//
// Prefill, decode and the KV cache
//===----------------------------------------------------------------------===//

TEST_P(EveryFamily, PrefillMatchesDecode) {
  auto store = synthGguf(tinyOptions(GetParam()));
  ASSERT_TRUE(store);
  ReferenceModel model(*store);
  const int64_t v = model.getConfig().vocabSize, n = 12;
  std::vector<int32_t> tokens = someTokens(n, v);

  std::vector<float> all = model.prefill(tokens);
  ASSERT_EQ(all.size(), static_cast<size_t>(n * v));
  expectSensible(all);
  EXPECT_EQ(model.getNumPositions(), n);

  // One token, then decode steps.
  model.reset();
  EXPECT_EQ(model.getNumPositions(), 0);
  std::vector<float> stepped =
      model.prefill(ArrayRef<int32_t>(tokens).take_front(1));
  for (int64_t t = 1; t < n; ++t) {
    std::vector<float> row = model.decode(tokens[t]);
    ASSERT_EQ(row.size(), static_cast<size_t>(v));
    stepped.insert(stepped.end(), row.begin(), row.end());
  }
  expectClose(all, stepped, 1e-5);

  // Two chunks of prefill.
  model.reset();
  std::vector<float> chunked =
      model.prefill(ArrayRef<int32_t>(tokens).take_front(5));
  std::vector<float> rest =
      model.prefill(ArrayRef<int32_t>(tokens).drop_front(5));
  chunked.insert(chunked.end(), rest.begin(), rest.end());
  expectClose(all, chunked, 1e-5);

  // Causality: a different last token changes only the last row.
  model.reset();
  std::vector<int32_t> changed = tokens;
  changed.back() = (changed.back() + 1) % v;
  std::vector<float> other = model.prefill(changed);
  EXPECT_TRUE(std::equal(all.begin(), all.end() - v, other.begin()));
  EXPECT_GT(maxAbsDiff(ArrayRef<float>(all).take_back(v),
                       ArrayRef<float>(other).take_back(v)),
            1e-3);

  // Context matters: the same token at position 1 after different tokens.
  model.reset();
  std::vector<float> a = model.prefill({1, 9});
  model.reset();
  std::vector<float> b = model.prefill({2, 9});
  EXPECT_GT(maxAbsDiff(ArrayRef<float>(a).take_back(v),
                       ArrayRef<float>(b).take_back(v)),
            1e-3);
}

//===----------------------------------------------------------------------===//
// One model, every format
//===----------------------------------------------------------------------===//

void checkFormatsAgree(SynthOptions options) {
  TempDir temp;
  const std::string &dir = temp.path;
  std::string ggufPath = join(dir, "model.gguf");
  ASSERT_FALSE(errorToBool(writeSynthGguf(options, ggufPath)));
  ASSERT_FALSE(
      errorToBool(writeSynthSafetensors(options, join(dir, "single"), 1)));
  ASSERT_FALSE(
      errorToBool(writeSynthSafetensors(options, join(dir, "sharded"), 2)));
  auto gguf = openOrFail(ggufPath);
  auto single = openOrFail(join(dir, "single"));
  auto sharded = openOrFail(join(dir, "sharded"));
  ASSERT_TRUE(gguf && single && sharded);
  ASSERT_EQ(sharded->getFiles().size(), 2u);
  const FamilyInfo &family = *options.config.family;
  EXPECT_EQ(gguf->getConfig().rope, family.ggufRope);
  EXPECT_EQ(single->getConfig().rope, family.hfRope);

  std::vector<int32_t> tokens = someTokens(9, options.config.vocabSize);
  ReferenceModel fromGguf(*gguf);
  std::vector<float> expected = fromGguf.prefill(tokens);
  expectSensible(expected);
  for (const WeightStore *store : {single.get(), sharded.get()}) {
    SCOPED_TRACE(store->getFiles().size() == 1 ? "single" : "sharded");
    ReferenceModel model(*store);
    expectClose(expected, model.prefill(tokens), 1e-5);
  }

  if (family.ggufRope == family.hfRope)
    return;
  // The check above can fail: undo GGUF's Q/K row permutation but keep
  // interleaved RoPE, and the logits move far away.
  const ModelConfig &c = fromGguf.getConfig();
  const int64_t d = c.headDim, half = d / 2, h = c.hiddenSize;
  for (int l = 0; l < c.numLayers; ++l)
    for (const char *name : {"attn_q.weight", "attn_k.weight"}) {
      MutableArrayRef<float> w = fromGguf.getWeight(blk(l, name));
      std::vector<float> permuted(w.begin(), w.end());
      for (int64_t head = 0; head < static_cast<int64_t>(w.size()) / (h * d);
           ++head)
        for (int64_t i = 0; i < half; ++i)
          for (int64_t p = 0; p < 2; ++p)
            std::copy_n(permuted.begin() + (head * d + 2 * i + p) * h, h,
                        w.begin() + (head * d + p * half + i) * h);
    }
  fromGguf.reset();
  EXPECT_GT(maxAbsDiff(expected, fromGguf.prefill(tokens)),
            1e-2 * maxAbs(expected));
}

TEST_P(EveryFamily, GgufAndSafetensorsAgree) {
  checkFormatsAgree(tinyOptions(GetParam())); // F16 everywhere
}

TEST_P(EveryFamily, GgufAndSafetensorsAgreeInF32) {
  SynthOptions options = tinyOptions(GetParam());
  options.expertsType = options.attentionType = options.embeddingsType =
      GgmlType::F32;
  options.seed = 99;
  checkFormatsAgree(options);
}

//===----------------------------------------------------------------------===//
// Quantized models
//===----------------------------------------------------------------------===//

TEST_P(EveryFamily, QuantizedGgufPrefillMatchesDecode) {
  SynthOptions options = tinyOptions(GetParam());
  options.expertsType = GgmlType::Q4_0;
  options.attentionType = GgmlType::Q8_0;
  options.embeddingsType = GgmlType::Q8_0;
  auto store = synthGguf(options);
  ASSERT_TRUE(store);
  EXPECT_EQ(store->find("blk.1.ffn_down_exps.weight")->type, GgmlType::Q4_0);
  EXPECT_EQ(store->find("blk.0.attn_q.weight")->type, GgmlType::Q8_0);
  EXPECT_EQ(store->find("output.weight")->type, GgmlType::Q8_0);
  ReferenceModel model(*store);
  const int64_t v = model.getConfig().vocabSize, n = 10;
  std::vector<int32_t> tokens = someTokens(n, v);
  std::vector<float> all = model.prefill(tokens);
  expectSensible(all);
  model.reset();
  std::vector<float> stepped;
  for (int32_t token : tokens) {
    std::vector<float> row = model.decode(token);
    stepped.insert(stepped.end(), row.begin(), row.end());
  }
  expectClose(all, stepped, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Families, EveryFamily, ::testing::ValuesIn(kFamilies));

} // namespace
