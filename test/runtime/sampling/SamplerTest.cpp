//===- SamplerTest.cpp - Sampling: each stage and the draw ----------------===//

#include "runtime/sampling/Sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>

using namespace moec::sampling;

namespace {

std::vector<float> logitsOf(std::vector<double> probabilities) {
  std::vector<float> logits;
  for (double p : probabilities)
    logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

SamplerOptions plain(uint64_t seed = 1) {
  SamplerOptions o;
  o.temperature = 1.0f;
  o.topK = 0;
  o.topP = 1.0f;
  o.minP = 0.0f;
  o.seed = seed;
  return o;
}

std::vector<int> histogram(Sampler &s, const std::vector<float> &logits,
                           int draws) {
  std::vector<int> counts(logits.size());
  for (int i = 0; i < draws; ++i)
    ++counts[s.sample(logits)];
  return counts;
}

TEST(Sampler, GreedyIsArgmaxWithLowestIdOnTies) {
  SamplerOptions o = plain();
  o.temperature = 0;
  Sampler s(o);
  EXPECT_EQ(s.sample({0.1f, 3.0f, -1.0f, 3.0f}), 1);
  EXPECT_EQ(s.sample({-5.0f, -4.0f}), 1);
}

TEST(Sampler, DrawsFollowTheDistribution) {
  Sampler s(plain(7));
  std::vector<int> counts = histogram(s, logitsOf({0.5, 0.3, 0.2}), 100000);
  EXPECT_NEAR(counts[0] / 1e5, 0.5, 0.01);
  EXPECT_NEAR(counts[1] / 1e5, 0.3, 0.01);
  EXPECT_NEAR(counts[2] / 1e5, 0.2, 0.01);
}

TEST(Sampler, SameSeedSameTokensOtherSeedOtherTokens) {
  std::vector<float> logits = logitsOf({0.25, 0.25, 0.25, 0.25});
  Sampler a(plain(42)), b(plain(42)), c(plain(43));
  std::vector<int32_t> ta, tb, tc;
  for (int i = 0; i < 64; ++i) {
    ta.push_back(a.sample(logits));
    tb.push_back(b.sample(logits));
    tc.push_back(c.sample(logits));
  }
  EXPECT_EQ(ta, tb);
  EXPECT_NE(ta, tc);
}

TEST(Sampler, TopKTopPMinPCutTheTail) {
  std::vector<float> logits = logitsOf({0.5, 0.3, 0.2});
  SamplerOptions k = plain();
  k.topK = 2;
  Sampler sk(k);
  EXPECT_EQ(histogram(sk, logits, 2000)[2], 0);

  SamplerOptions p = plain();
  p.topP = 0.5f; // the first token alone reaches 0.5
  Sampler sp(p);
  EXPECT_EQ(histogram(sp, logits, 2000)[0], 2000);

  SamplerOptions m = plain();
  m.minP = 0.5f; // keeps p >= 0.25: tokens 0 and 1
  Sampler sm(m);
  std::vector<int> counts = histogram(sm, logits, 20000);
  EXPECT_EQ(counts[2], 0);
  // Renormalised over {0.5, 0.3}: 0.625 / 0.375.
  EXPECT_NEAR(counts[0] / 2e4, 0.625, 0.02);
}

TEST(Sampler, LowTemperatureIsAlmostGreedy) {
  SamplerOptions o = plain();
  o.temperature = 0.01f;
  Sampler s(o);
  EXPECT_EQ(histogram(s, logitsOf({0.4, 0.35, 0.25}), 1000)[0], 1000);
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegative) {
  SamplerOptions o = plain();
  o.temperature = 0;
  o.repeatPenalty = 1.5f;
  Sampler s(o);
  s.accept(0);
  // 2.0 / 1.5 = 1.33 < 1.9: the repeated token loses.
  EXPECT_EQ(s.sample({2.0f, 1.9f}), 1);
  // Token 1 is recent: -1.0 * 1.5 = -1.5 < -1.2.
  Sampler t(o);
  t.accept(1);
  EXPECT_EQ(t.sample({-1.2f, -1.0f}), 0);
}

TEST(Sampler, GreedyMatchesAScanOfThePenalizedLogits) {
  // Logits from a few values (many ties), recent tokens with repeats and
  // ids outside the vocabulary, penalties that lower and that raise.
  uint64_t state = 12345;
  auto next = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(state >> 33);
  };
  for (float penalty : {1.0f, 1.3f, 0.7f}) {
    for (int trial = 0; trial < 200; ++trial) {
      SamplerOptions o = plain();
      o.temperature = 0;
      o.repeatPenalty = penalty;
      o.repeatLastN = 16;
      Sampler s(o);
      size_t n = 1 + next() % 300;
      std::vector<float> logits(n);
      for (float &l : logits)
        l = static_cast<float>(static_cast<int>(next() % 9) - 4) * 0.75f;
      std::vector<int32_t> recent;
      for (int k = 0, count = next() % 24; k < count; ++k) {
        int32_t t = static_cast<int32_t>(next() % (n + 4)) - 2;
        s.accept(t);
        recent.push_back(t);
      }
      if (recent.size() > 16)
        recent.erase(recent.begin(), recent.end() - 16);
      std::vector<double> adjusted(logits.begin(), logits.end());
      for (size_t i = 0; i < n; ++i)
        if (penalty != 1.0f &&
            std::find(recent.begin(), recent.end(), int32_t(i)) != recent.end())
          adjusted[i] = adjusted[i] > 0 ? adjusted[i] / penalty
                                        : adjusted[i] * penalty;
      int32_t expected = static_cast<int32_t>(
          std::max_element(adjusted.begin(), adjusted.end()) -
          adjusted.begin());
      ASSERT_EQ(s.sample(logits), expected)
          << "penalty " << penalty << ", trial " << trial;
    }
  }
}

TEST(Sampler, RepetitionWindowForgetsOldTokens) {
  SamplerOptions o = plain();
  o.temperature = 0;
  o.repeatPenalty = 10.0f;
  o.repeatLastN = 2;
  Sampler s(o);
  s.accept(0);
  s.accept(5);
  s.accept(6); // token 0 has left the window
  EXPECT_EQ(s.sample({2.0f, 1.9f}), 0);
}

TEST(Sampler, OptionsOutOfRangeAreNamed) {
  SamplerOptions o;
  EXPECT_EQ(o.validate(), "");
  o.topP = 0;
  EXPECT_EQ(o.validate(), "top-p must be in (0, 1]");
  o = SamplerOptions();
  o.minP = 2;
  EXPECT_EQ(o.validate(), "min-p must be in [0, 1]");
  o = SamplerOptions();
  o.repeatPenalty = 0;
  EXPECT_EQ(o.validate(), "repetition penalty must be positive");
  o = SamplerOptions();
  o.temperature = INFINITY;
  EXPECT_EQ(o.validate(), "temperature must be finite");
  o = SamplerOptions();
  o.repeatLastN = -1;
  EXPECT_EQ(o.validate(), "the repetition window must not be negative");
}

TEST(Sampler, TemperatureSharpensAndFlattensAsPowersOfTheDistribution) {
  // At temperature T the draw follows p^(1/T), renormalised.
  std::vector<double> p = {0.5, 0.3, 0.2};
  for (float t : {0.5f, 2.0f}) {
    SamplerOptions o = plain(11);
    o.temperature = t;
    Sampler s(o);
    std::vector<int> counts = histogram(s, logitsOf(p), 100000);
    double z = 0;
    for (double x : p)
      z += std::pow(x, 1.0 / t);
    for (size_t i = 0; i < p.size(); ++i)
      EXPECT_NEAR(counts[i] / 1e5, std::pow(p[i], 1.0 / t) / z, 0.01)
          << "T=" << t << " token " << i;
  }
}

TEST(Sampler, LargeVocabularyNeverLeavesTopKOrTheNucleus) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(5000);
  for (float &l : logits)
    l = normal(rng);
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });

  SamplerOptions k = plain(3);
  k.topK = 10;
  Sampler sk(k);
  std::set<int32_t> best(order.begin(), order.begin() + 10);
  for (int i = 0; i < 5000; ++i)
    ASSERT_TRUE(best.count(sk.sample(logits)));

  // Top-p: the smallest prefix of the sorted tokens whose mass reaches p.
  double max = logits[order[0]], z = 0;
  for (float l : logits)
    z += std::exp(l - max);
  std::set<int32_t> nucleus;
  double mass = 0;
  for (int32_t id : order) {
    nucleus.insert(id);
    mass += std::exp(logits[id] - max) / z;
    if (mass >= 0.7)
      break;
  }
  SamplerOptions p = plain(4);
  p.topP = 0.7f;
  Sampler sp(p);
  for (int i = 0; i < 5000; ++i)
    ASSERT_TRUE(nucleus.count(sp.sample(logits)));

  // Temperature 0 is the argmax, whatever the other options say.
  SamplerOptions g;
  g.temperature = 0;
  Sampler sg(g);
  EXPECT_EQ(sg.sample(logits), order[0]);
}

} // namespace
