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
// Every pre-tokenizer of PreTokenizer.h. Before either, the text is split at
// special tokens as llama.cpp does (tokenizer_st_partition): user-defined
// tokens always, control tokens only when asked to parse them.
//
// Decoding gives each token's bytes (token pieces need not be whole UTF-8
// characters; Utf8Stream joins them for printing).
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
  int32_t bos = -1, eos = -1, eot = -1, unknown = -1, padding = -1;
  /// tokenizer.ggml.add_bos_token / add_eos_token.
  bool addBos = false, addEos = false;
  bool addSpacePrefix = true;        // SentencePiece
  /// tokenizer.chat_template (Jinja), "" if none.
  std::string chatTemplate;

  /// A compact binary form (what a weight bundle carries) and back; read
  /// fails with one line saying what is wrong.
  std::string serialize() const;
  static bool deserialize(std::string_view bytes, Vocabulary &out,
                          std::string &error);
};

/// Joins token pieces into text that is printed only in whole UTF-8
/// characters: push() returns what can be printed now, finish() the rest
/// (a truncated character at the end becomes U+FFFD).
class Utf8Stream {
public:
  std::string push(std::string_view piece);
  std::string finish();

private:
  std::string pending;
};

class Tokenizer {
public:
  virtual ~Tokenizer() = default;

  /// Builds the tokenizer of `vocabulary`; on failure returns null and sets
  /// `error` to one line saying why (naming the unsupported model or
  /// pre-tokenizer).
  static std::unique_ptr<Tokenizer> create(Vocabulary vocabulary,
                                           std::string &error);

  /// Token ids of `text`, with BOS first when `addBos`. Control tokens
  /// spelled in the text are tokens only when `parseSpecial`.
  std::vector<int32_t> encode(std::string_view text, bool addBos,
                              bool parseSpecial = false) const;

  /// The bytes token `id` stands for; control tokens give "" unless
  /// `special`. Ids outside the vocabulary give "".
  std::string decodeToken(int32_t id, bool special = false) const;
  /// The text of `ids` (for SentencePiece without the leading space that
  /// encoding adds).
  std::string decode(const std::vector<int32_t> &ids,
                     bool special = false) const;
  /// EOS or EOT: generation ends here.
  bool isEndOfGeneration(int32_t id) const;
  TokenType getType(int32_t id) const;

  const Vocabulary &getVocabulary() const { return vocab; }
  /// The id of the token spelled `text`, or -1.
  int32_t lookup(std::string_view text) const;

protected:
  explicit Tokenizer(Vocabulary vocabulary);
  /// Encodes raw text (no special tokens in it); `afterSpecial`: it starts
  /// the text or follows a special token (SentencePiece adds its space).
  virtual void encodeText(std::string_view text, bool afterSpecial,
                          std::vector<int32_t> &out) const = 0;

  virtual std::string decodeText(int32_t id) const = 0;

  Vocabulary vocab;
  std::unordered_map<std::string, int32_t> ids;
  /// Control, user-defined and unknown tokens, longest first.
  std::vector<int32_t> specialTokens;
};

} // namespace moec::tokenizer

#endif // MOEC_RUNTIME_TOKENIZER_TOKENIZER_H
