//===- PreTokenizer.h - Splitting text before byte-level BPE ----*- C++ -*-===//
//
// The pre-tokenizers that GGUF's `tokenizer.ggml.pre` names, as llama.cpp
// runs them: each name stands for a list of regular expressions applied in
// turn, each splitting every piece the previous ones left into its matches
// and the text between them. Two patterns (GPT-2's and Llama 3's) have
// hand-written equivalents in llama.cpp, reproduced here; the others run on
// the Regex matcher with llama.cpp's way of seeing Unicode:
//
// * A pattern that uses a category (\p{L}, \p{N}, \p{P}, \p{M}, \p{S}, and
//   \p{Lu} \p{Ll} \p{Lt} \p{Lm} \p{Lo}, which llama.cpp treats as \p{L})
//   sees the text "collapsed": ASCII stays itself, other White_Space code
//   points become U+000B, other code points become one symbol per
//   category class; a category matches its ASCII members (llama.cpp's
//   lists: `~` is in neither \p{P} nor \p{S}) and its symbol.
// * Other patterns see code points, with non-ASCII White_Space as U+000B
//   (std::regex's \s is ASCII-only).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_TOKENIZER_PRETOKENIZER_H
#define MOEC_RUNTIME_TOKENIZER_PRETOKENIZER_H

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moec::tokenizer {

class Regex;

class PreTokenizer {
public:
  ~PreTokenizer();

  /// The pre-tokenizer `name` (tokenizer.ggml.pre); null and `error` (one
  /// line listing the supported names) when moec does not implement it.
  static std::unique_ptr<PreTokenizer> create(std::string_view name,
                                              std::string &error);

  /// Every name create() accepts, aliases included, sorted.
  static std::vector<std::string> getSupportedNames();

  /// Splits `cpts` into pieces, as [begin, end) code point ranges that
  /// cover it in order.
  std::vector<std::pair<size_t, size_t>>
  split(const std::vector<uint32_t> &cpts) const;

  /// llama.cpp's ignore_merges: a piece that is a token as a whole is that
  /// token, whatever the merges would make of it (Llama 3, Tekken).
  bool ignoresMerges() const { return ignoreMerges; }

  struct Step;

private:
  PreTokenizer() = default;
  std::vector<Step> steps;
  bool ignoreMerges = false;
};

} // namespace moec::tokenizer

#endif // MOEC_RUNTIME_TOKENIZER_PRETOKENIZER_H
