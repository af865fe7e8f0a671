//===- Tokenizer.h - Text to token ids, as llama.cpp does it ----*- C++ -*-===//
//
// The runtime's tokenizer (plain C++, no LLVM): built from the vocabulary a
// model carries (GGUF's tokenizer.ggml.* metadata), it reproduces llama.cpp's
// tokenization:
//
// * SentencePiece-style vocabularies (`tokenizer.ggml.model = llama`): the
//   text gets a space prefix, spaces become U+2581, characters are merged
//   greedily by the highest-scoring pair that forms a token, and what forms
//   no token falls back to byte tokens <0xXX>.
// * Byte-level BPE (`gpt2`): the text is split by the pre-tokenizer that
//   `tokenizer.ggml.pre` names, each piece's bytes are mapped to GPT-2's
//   printable byte alphabet, and merged by merge rank.
//
// Pre-tokenizers implemented so far: gpt-2. Others are refused by name.
// Special tokens in the text are not parsed (llama.cpp's parse_special =
// false); control tokens are only added as BOS/EOS.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_TOKENIZER_TOKENIZER_H
#define MOEC_RUNTIME_TOKENIZER_TOKENIZER_H

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace moec::tokenizer {

/// GGUF's token types (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

/// What a model's metadata says about its vocabulary.
struct Vocabulary {
  /// tokenizer.ggml.model: "llama" (SentencePiece) or "gpt2" (BPE).
  std::string model;
  /// tokenizer.ggml.pre (BPE only).
  std::string preTokenizer = "default";
  std::vector<std::string> tokens;
  std::vector<float> scores;         // SentencePiece
  std::vector<TokenType> types;      // may be empty: all Normal
  std::vector<std::string> merges;   // BPE: "left right", by rank
  int32_t bos = -1, eos = -1, unknown = -1;
  bool addSpacePrefix = true;        // SentencePiece
};

class Tokenizer {
public:
  virtual ~Tokenizer() = default;

  /// Builds the tokenizer of `vocabulary`; on failure returns null and sets
  /// `error` to one line saying why (naming the unsupported model or
  /// pre-tokenizer).
  static std::unique_ptr<Tokenizer> create(Vocabulary vocabulary,
                                           std::string &error);

  /// Token ids of `text`, with BOS first when `addBos`.
  std::vector<int32_t> encode(std::string_view text, bool addBos) const;

  const Vocabulary &getVocabulary() const { return vocab; }
  /// The id of the token spelled `text`, or -1.
  int32_t lookup(std::string_view text) const;

protected:
  explicit Tokenizer(Vocabulary vocabulary);
  virtual void encodeText(std::string_view text,
                          std::vector<int32_t> &out) const = 0;

  Vocabulary vocab;
  std::unordered_map<std::string, int32_t> ids;
};

} // namespace moec::tokenizer

#endif // MOEC_RUNTIME_TOKENIZER_TOKENIZER_H
