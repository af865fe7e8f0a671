//===- Regex.h - The regular expressions of pre-tokenizers ------*- C++ -*-===//
//
// A small backtracking matcher with ECMAScript semantics (what std::regex
// gives llama.cpp): ordered alternation, greedy quantifiers that backtrack,
// lookahead, `^` and `$` at the ends of the subject. It matches sequences
// of 32-bit symbols: Unicode code points, or the category symbols that a
// pre-tokenizer maps code points to (see PreTokenizer.h), so the matcher
// itself knows no Unicode. What a `\p{NAME}` escape means is given when the
// pattern is compiled.
//
// Supported syntax, enough for every pre-tokenizer pattern in GGUF files:
// literals, `.`, classes `[...]` / `[^...]` with ranges and class escapes,
// `\s \S \d \D \w \W` (ASCII, as std::regex's C locale), `\p{NAME}`,
// `\r \n \t \f \v \xHH \uHHHH` and identity escapes, groups `(...)` and
// `(?:...)`, lookahead `(?=...)` and `(?!...)`, quantifiers `* + ? {n}
// {n,} {n,m}`. Lazy and possessive quantifiers, inline flags such as
// `(?i:...)`, backreferences and lookbehind are refused at compile time.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_TOKENIZER_REGEX_H
#define MOEC_RUNTIME_TOKENIZER_REGEX_H

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moec::tokenizer {

/// An inclusive range of symbols.
using SymbolRange = std::pair<uint32_t, uint32_t>;

/// Resolves `\p{NAME}` to the symbol ranges it matches; false: unknown name.
using PropertyResolver =
    std::function<bool(std::string_view name, std::vector<SymbolRange> &out)>;

class Regex {
public:
  ~Regex();

  /// Compiles `pattern` (UTF-8); on failure returns null and sets `error`
  /// to one line naming the offset and the construct.
  static std::unique_ptr<Regex> compile(std::string_view pattern,
                                        const PropertyResolver &properties,
                                        std::string &error);

  /// The first match in `subject` that starts at or after `from`, as
  /// [begin, end); false when there is none. The subject is all the pattern
  /// sees: `$` matches at its end and lookahead stops there.
  bool search(const uint32_t *subject, size_t size, size_t from,
              size_t &begin, size_t &end) const;

  struct Node;

private:
  Regex() = default;
  std::vector<Node> nodes;
  int root = -1;
  friend class RegexParser;
  friend class RegexMatcher;
};

} // namespace moec::tokenizer

#endif // MOEC_RUNTIME_TOKENIZER_REGEX_H
