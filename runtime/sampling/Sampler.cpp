//===- Sampler.cpp - Choosing the next token from logits ------------------===//

#include "runtime/sampling/Sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_set>

namespace moec::sampling {

std::string SamplerOptions::validate() const {
  if (!std::isfinite(temperature))
    return "temperature must be finite";
  if (!(topP > 0.0f) || topP > 1.0f)
    return "top-p must be in (0, 1]";
  if (minP < 0.0f || minP > 1.0f)
    return "min-p must be in [0, 1]";
  if (!(repeatPenalty > 0.0f) || !std::isfinite(repeatPenalty))
    return "repetition penalty must be positive";
  if (repeatLastN < 0)
    return "the repetition window must not be negative";
  return "";
}

Sampler::Sampler(const SamplerOptions &options)
    : options(options), state(options.seed) {}

double Sampler::uniform() {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1p-53;
}

void Sampler::accept(int32_t token) {
  if (options.repeatLastN <= 0)
    return;
  recent.push_back(token);
  while (static_cast<int32_t>(recent.size()) > options.repeatLastN)
    recent.pop_front();
}

double Sampler::penalized(double logit) const {
  return logit > 0 ? logit / options.repeatPenalty
                   : logit * options.repeatPenalty;
}

namespace {
/// The largest of x[0, n) (n > 0) that is not NaN; -inf when all are NaN.
/// Eight running maxima, so that the compares do not wait on each other
/// and the loop vectorizes (a 32000-entry vocabulary took ~60 us a token
/// with one).
float largest(const float *x, size_t n) {
  float m[8];
  std::fill(m, m + 8, -std::numeric_limits<float>::infinity());
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k)
      m[k] = x[i + k] > m[k] ? x[i + k] : m[k];
  for (; i < n; ++i)
    m[0] = x[i] > m[0] ? x[i] : m[0];
  return *std::max_element(m, m + 8);
}
} // namespace

int32_t Sampler::argmax(const float *input, size_t n) {
  // The distinct recent tokens in order: the logits between them are
  // compared as they are, each of them penalized.
  penalizedIds.clear();
  if (options.repeatPenalty != 1.0f)
    for (int32_t t : recent)
      if (t >= 0 && static_cast<size_t>(t) < n)
        penalizedIds.push_back(t);
  std::sort(penalizedIds.begin(), penalizedIds.end());
  penalizedIds.erase(std::unique(penalizedIds.begin(), penalizedIds.end()),
                     penalizedIds.end());
  // Ascending ids and a strict comparison keep the lowest id among equals.
  int32_t best = 0;
  double bestLogit = -std::numeric_limits<double>::infinity();
  auto offerRun = [&](size_t lo, size_t hi) {
    if (lo == hi)
      return;
    float m = largest(input + lo, hi - lo);
    if (!(m > bestLogit))
      return;
    size_t i = lo;
    while (input[i] != m)
      ++i;
    best = static_cast<int32_t>(i);
    bestLogit = m;
  };
  size_t next = 0;
  for (int32_t id : penalizedIds) {
    offerRun(next, static_cast<size_t>(id));
    double logit = penalized(input[id]);
    if (logit > bestLogit) {
      best = id;
      bestLogit = logit;
    }
    next = static_cast<size_t>(id) + 1;
  }
  offerRun(next, n);
  return best;
}

int32_t Sampler::sample(const float *input, size_t n) {
  if (n == 0)
    return -1;
  // Greedy needs no candidate list: a pass over the logits (a decode step
  // of a 32000-token vocabulary spent ~100 us filling and sorting one).
  if (options.temperature <= 0.0f) {
    int32_t chosen = argmax(input, n);
    accept(chosen);
    return chosen;
  }

  struct Candidate {
    int32_t id;
    double logit, p;
  };
  std::vector<Candidate> c(n);
  for (size_t i = 0; i < n; ++i)
    c[i] = {static_cast<int32_t>(i), input[i], 0.0};

  // Repetition penalty, once per distinct recent token (llama.cpp).
  if (options.repeatPenalty != 1.0f) {
    std::unordered_set<int32_t> seen(recent.begin(), recent.end());
    for (int32_t t : seen)
      if (t >= 0 && static_cast<size_t>(t) < c.size())
        c[t].logit = penalized(c[t].logit);
  }

  // Most likely first; lowest id first among equals, so ties are stable.
  // Only the candidates that can survive top-k are sorted.
  auto before = [](const Candidate &a, const Candidate &b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  size_t keep = c.size();
  if (options.topK > 0 && static_cast<size_t>(options.topK) < c.size())
    keep = static_cast<size_t>(options.topK);
  std::partial_sort(c.begin(), c.begin() + keep, c.end(), before);
  c.resize(keep);

  auto softmax = [&](double temperature) {
    double max = c.front().logit, sum = 0;
    for (Candidate &x : c)
      sum += x.p = std::exp((x.logit - max) / temperature);
    for (Candidate &x : c)
      x.p /= sum;
  };
  // top-p and min-p act on the untempered distribution, as llama.cpp's
  // chain applies temperature after them.
  softmax(1.0);
  if (options.topP < 1.0f) {
    double cumulative = 0;
    size_t keep = c.size();
    for (size_t i = 0; i < c.size(); ++i) {
      cumulative += c[i].p;
      if (cumulative >= options.topP) {
        keep = i + 1;
        break;
      }
    }
    c.resize(keep);
  }
  if (options.minP > 0.0f) {
    double threshold = c.front().p * options.minP;
    size_t keep = 1;
    while (keep < c.size() && c[keep].p >= threshold)
      ++keep;
    c.resize(keep);
  }
  softmax(options.temperature);
  double r = uniform(), cumulative = 0;
  int32_t chosen = c.back().id;
  for (const Candidate &x : c) {
    cumulative += x.p;
    if (r < cumulative) {
      chosen = x.id;
      break;
    }
  }
  accept(chosen);
  return chosen;
}

} // namespace moec::sampling
