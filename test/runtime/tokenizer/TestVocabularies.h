//===- TestVocabularies.h - Small vocabularies for tokenizer tests -*- C++ -*-===//
//
// Hand-made vocabularies that the unit tests and the tokenizer fuzzer share:
// a byte-level BPE one (all 256 byte tokens, a few merges, a control and a
// user-defined token) under any pre-tokenizer name.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_TEST_RUNTIME_TOKENIZER_TESTVOCABULARIES_H
#define MOEC_TEST_RUNTIME_TOKENIZER_TESTVOCABULARIES_H

#include "runtime/tokenizer/Tokenizer.h"
#include "runtime/tokenizer/Unicode.h"

namespace moec::tokenizer::test_vocabularies {

/// GPT-2's printable spelling of byte `b`.
inline std::string byteSpelling(int b) {
  int n = 0;
  for (int i = 0; i < b; ++i) {
    bool printable = (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) ||
                     (i >= 0xAE && i <= 0xFF);
    n += !printable;
  }
  bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) ||
                   (b >= 0xAE && b <= 0xFF);
  std::string s;
  appendUtf8(s, printable ? uint32_t(b) : uint32_t(256 + n));
  return s;
}

/// Byte tokens 0..255, merges "Ġ t", "h e", "Ġt he" (so " the" is one
/// token), control <|end|> (256 + merges), user-defined <tool>.
inline Vocabulary makeByteLevelVocabulary(const std::string &pre) {
  Vocabulary v;
  v.model = "gpt2";
  v.preTokenizer = pre;
  for (int b = 0; b < 256; ++b)
    v.tokens.push_back(byteSpelling(b));
  const std::string space = byteSpelling(' ');
  v.merges = {space + " t", "h e", space + "t he", "i n", "in g"};
  for (const std::string &m : v.merges) {
    size_t sep = m.find(' ');
    v.tokens.push_back(m.substr(0, sep) + m.substr(sep + 1));
  }
  v.types.assign(v.tokens.size(), TokenType::Normal);
  v.tokens.push_back("<|end|>");
  v.types.push_back(TokenType::Control);
  v.tokens.push_back("<tool>");
  v.types.push_back(TokenType::UserDefined);
  v.bos = v.eos = static_cast<int32_t>(v.tokens.size() - 2);
  return v;
}

} // namespace moec::tokenizer::test_vocabularies

#endif // MOEC_TEST_RUNTIME_TOKENIZER_TESTVOCABULARIES_H
