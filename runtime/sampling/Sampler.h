//===- Sampler.h - Choosing the next token from logits ----------*- C++ -*-===//
//
// The runtime's sampler (plain C++, no LLVM), with llama.cpp's chain and
// order: repetition penalty, top-k, top-p, min-p, temperature, then a draw
// from the remaining distribution with a seeded generator; a temperature of
// zero or less is greedy. The same seed and inputs give the same tokens on
// every machine (the generator and the arithmetic are specified here, not
// left to the standard library's distributions).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_SAMPLING_SAMPLER_H
#define MOEC_RUNTIME_SAMPLING_SAMPLER_H

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace moec::sampling {

struct SamplerOptions {
  /// <= 0: greedy (argmax, lowest id on ties).
  float temperature = 0.8f;
  /// Keep the k most likely tokens; <= 0 keeps all.
  int32_t topK = 40;
  /// Keep the smallest set whose probability reaches p; >= 1 keeps all.
  float topP = 0.95f;
  /// Keep tokens at least min_p times as likely as the most likely; <= 0
  /// keeps all.
  float minP = 0.05f;
  /// Divide positive logits (multiply negative ones) of the last
  /// `repeatLastN` tokens by this; 1 disables.
  float repeatPenalty = 1.0f;
  int32_t repeatLastN = 64;
  uint64_t seed = 0;

  /// One message naming the first option out of range, or "".
  std::string validate() const;
};

class Sampler {
public:
  explicit Sampler(const SamplerOptions &options);

  /// Chooses the next token from `logits` (one per vocabulary entry) and
  /// remembers it for the repetition penalty.
  int32_t sample(const std::vector<float> &logits) {
    return sample(logits.data(), logits.size());
  }
  int32_t sample(const float *logits, size_t n);

  /// Remembers a token that was not sampled (the prompt's).
  void accept(int32_t token);

private:
  /// A uniform double in [0, 1) from a 64-bit SplitMix generator.
  double uniform();
  /// A logit under the repetition penalty.
  double penalized(double logit) const;
  /// The greedy choice: the largest logit (penalized for recent tokens),
  /// the lowest id among equals.
  int32_t argmax(const float *logits, size_t n);

  SamplerOptions options;
  uint64_t state;
  std::deque<int32_t> recent;
  /// argmax's sorted distinct recent tokens, kept to reuse its storage.
  std::vector<int32_t> penalizedIds;
};

} // namespace moec::sampling

#endif // MOEC_RUNTIME_SAMPLING_SAMPLER_H
