//===- Sampler.cpp - Choosing the next token from logits ------------------===//

#include "runtime/sampling/Sampler.h"

#include <algorithm>
#include <cmath>
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

int32_t Sampler::sample(const float *input, size_t n) {
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
      if (t >= 0 && static_cast<size_t>(t) < c.size()) {
        double &l = c[t].logit;
        l = l > 0 ? l / options.repeatPenalty : l * options.repeatPenalty;
      }
  }

  // Most likely first; lowest id first among equals, so ties are stable.
  // Only the candidates that can survive top-k are sorted.
  auto before = [](const Candidate &a, const Candidate &b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  size_t keep = c.size();
  if (options.temperature <= 0.0f)
    keep = 1;
  else if (options.topK > 0 && static_cast<size_t>(options.topK) < c.size())
    keep = static_cast<size_t>(options.topK);
  if (c.empty())
    return -1;
  std::partial_sort(c.begin(), c.begin() + keep, c.end(), before);
  c.resize(keep);

  int32_t chosen;
  if (options.temperature <= 0.0f) {
    chosen = c.front().id;
  } else {
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
    chosen = c.back().id;
    for (const Candidate &x : c) {
      cumulative += x.p;
      if (r < cumulative) {
        chosen = x.id;
        break;
      }
    }
  }
  accept(chosen);
  return chosen;
}

} // namespace moec::sampling
