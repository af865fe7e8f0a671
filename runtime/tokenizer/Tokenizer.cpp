//===- Tokenizer.cpp - Text to token ids, as llama.cpp does it ------------===//

#include "runtime/tokenizer/Tokenizer.h"
#include "runtime/tokenizer/PreTokenizer.h"
#include "runtime/tokenizer/Unicode.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <queue>

namespace moec::tokenizer {

Tokenizer::Tokenizer(Vocabulary vocabulary) : vocab(std::move(vocabulary)) {
  ids.reserve(vocab.tokens.size());
  for (size_t i = 0; i < vocab.tokens.size(); ++i) {
    // The first of equal spellings wins, as in llama.cpp's map.
    ids.emplace(vocab.tokens[i], static_cast<int32_t>(i));
    TokenType type = getType(static_cast<int32_t>(i));
    if ((type == TokenType::Control || type == TokenType::UserDefined ||
         type == TokenType::Unknown) &&
        !vocab.tokens[i].empty())
      specialTokens.push_back(static_cast<int32_t>(i));
  }
  std::sort(specialTokens.begin(), specialTokens.end(),
            [&](int32_t a, int32_t b) {
              size_t na = vocab.tokens[a].size(), nb = vocab.tokens[b].size();
              return na > nb || (na == nb && a < b);
            });
}

TokenType Tokenizer::getType(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= vocab.tokens.size())
    return TokenType::Undefined;
  return vocab.types.empty() ? TokenType::Normal : vocab.types[id];
}

bool Tokenizer::isEndOfGeneration(int32_t id) const {
  return id >= 0 && (id == vocab.eos || id == vocab.eot);
}

int32_t Tokenizer::lookup(std::string_view text) const {
  auto it = ids.find(std::string(text));
  return it == ids.end() ? -1 : it->second;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool addBos,
                                       bool parseSpecial) const {
  // Split the text at special tokens, longest first (llama.cpp's
  // tokenizer_st_partition): fragments are a token (id >= 0) or raw text.
  struct Fragment {
    int32_t token;
    size_t offset, length;
  };
  std::vector<Fragment> fragments;
  if (!text.empty())
    fragments.push_back({-1, 0, text.size()});
  for (int32_t special : specialTokens) {
    TokenType type = getType(special);
    if (!parseSpecial &&
        (type == TokenType::Control || type == TokenType::Unknown))
      continue;
    const std::string &spelling = vocab.tokens[special];
    std::vector<Fragment> next;
    for (const Fragment &f : fragments) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      std::string_view raw = text.substr(f.offset, f.length);
      size_t done = 0;
      for (size_t at = raw.find(spelling); at != std::string_view::npos;
           at = raw.find(spelling, done)) {
        if (at > done)
          next.push_back({-1, f.offset + done, at - done});
        next.push_back({special, 0, 0});
        done = at + spelling.size();
      }
      if (done < raw.size())
        next.push_back({-1, f.offset + done, raw.size() - done});
    }
    fragments = std::move(next);
  }

  std::vector<int32_t> out;
  if (addBos && vocab.bos >= 0)
    out.push_back(vocab.bos);
  bool afterSpecial = true;
  for (const Fragment &f : fragments) {
    if (f.token >= 0) {
      out.push_back(f.token);
      afterSpecial = true;
      continue;
    }
    encodeText(text.substr(f.offset, f.length), afterSpecial, out);
    afterSpecial = false;
  }
  return out;
}

std::string Tokenizer::decodeToken(int32_t id, bool special) const {
  switch (getType(id)) {
  case TokenType::Undefined:
    return "";
  case TokenType::Control:
    return special ? vocab.tokens[id] : "";
  case TokenType::UserDefined:
    return vocab.tokens[id];
  case TokenType::Unknown:
    return vocab.model == "llama" ? "\xE2\x96\x85" : vocab.tokens[id];
  default:
    return decodeText(id);
  }
}

std::string Tokenizer::decode(const std::vector<int32_t> &tokens,
                              bool special) const {
  std::string out;
  for (int32_t id : tokens)
    out += decodeToken(id, special);
  if (vocab.model == "llama" && vocab.addSpacePrefix && !out.empty() &&
      out[0] == ' ')
    out.erase(0, 1);
  return out;
}

namespace {

/// One piece of a word being merged: a byte range of the word, linked to its
/// neighbours (merged-away pieces have n == 0).
struct Symbol {
  int prev, next;
  const char *text;
  size_t n;
};

/// Splits `word` into one symbol per UTF-8 character.
std::vector<Symbol> splitSymbols(const std::string &word) {
  std::vector<Symbol> symbols;
  for (size_t offs = 0; offs < word.size();) {
    size_t n = std::min(utf8Length(static_cast<uint8_t>(word[offs])),
                        word.size() - offs);
    int index = static_cast<int>(symbols.size());
    symbols.push_back({index - 1, offs + n == word.size() ? -1 : index + 1,
                       word.data() + offs, n});
    offs += n;
  }
  return symbols;
}

/// The merge loop that SentencePiece and BPE share (llama.cpp's): pairs are
/// proposed by `propose(left, right, queue)`, the best one is merged first,
/// stale pairs (a side merged since) are skipped, and the new neighbours are
/// proposed. `Bigram` orders the queue and has left, right and size.
template <typename Bigram, typename Propose>
void mergeSymbols(std::vector<Symbol> &symbols, Propose propose) {
  std::priority_queue<Bigram> queue;
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i)
    propose(i - 1, i, queue);
  while (!queue.empty()) {
    Bigram b = queue.top();
    queue.pop();
    Symbol &left = symbols[b.left], &right = symbols[b.right];
    if (left.n == 0 || right.n == 0 || left.n + right.n != b.size)
      continue;
    left.n += right.n;
    right.n = 0;
    left.next = right.next;
    if (right.next >= 0)
      symbols[right.next].prev = b.left;
    propose(left.prev, b.left, queue);
    propose(b.left, left.next, queue);
  }
}

//===----------------------------------------------------------------------===//
// SentencePiece (llama.cpp's llm_tokenizer_spm)
//===----------------------------------------------------------------------===//

class SpmTokenizer : public Tokenizer {
public:
  explicit SpmTokenizer(Vocabulary v) : Tokenizer(std::move(v)) {}

protected:
  struct Bigram {
    int left, right;
    float score;
    size_t size;
    // The highest score first; among equals, the leftmost.
    bool operator<(const Bigram &o) const {
      return score < o.score || (score == o.score && left > o.left);
    }
  };

  void encodeText(std::string_view raw, bool afterSpecial,
                  std::vector<int32_t> &out) const override {
    std::string text;
    if (vocab.addSpacePrefix && afterSpecial)
      text = " ";
    text += raw;
    // Spaces become U+2581 ("▁").
    std::string escaped;
    for (char c : text) {
      if (c == ' ')
        escaped += "\xE2\x96\x81";
      else
        escaped += c;
    }

    std::vector<Symbol> symbols = splitSymbols(escaped);
    std::map<std::string, std::pair<int, int>> revMerge;
    mergeSymbols<Bigram>(symbols, [&](int left, int right, auto &queue) {
      if (left == -1 || right == -1)
        return;
      std::string merged(symbols[left].text,
                         symbols[left].n + symbols[right].n);
      int32_t id = lookup(merged);
      if (id < 0)
        return;
      queue.push({left, right, vocab.scores[id], merged.size()});
      revMerge[merged] = {left, right};
    });
    for (int i = 0; i != -1 && !symbols.empty(); i = symbols[i].next)
      resegment(symbols, revMerge, symbols[i], out);
  }

  std::string decodeText(int32_t id) const override {
    const std::string &t = vocab.tokens[id];
    unsigned byte;
    if (getType(id) == TokenType::Byte && t.size() == 6 &&
        std::sscanf(t.c_str(), "<0x%02X>", &byte) == 1)
      return std::string(1, static_cast<char>(byte));
    std::string out;
    for (size_t i = 0; i < t.size(); ++i) {
      if (t.compare(i, 3, "\xE2\x96\x81") == 0) {
        out += ' ';
        i += 2;
      } else {
        out += t[i];
      }
    }
    return out;
  }

  void resegment(const std::vector<Symbol> &symbols,
                 const std::map<std::string, std::pair<int, int>> &revMerge,
                 const Symbol &symbol, std::vector<int32_t> &out) const {
    std::string text(symbol.text, symbol.n);
    int32_t id = lookup(text);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
    auto it = revMerge.find(text);
    if (it == revMerge.end()) {
      // What forms no token is spelled in byte tokens.
      for (char c : text) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>",
                      static_cast<unsigned>(static_cast<uint8_t>(c)));
        int32_t byte = lookup(name);
        out.push_back(byte >= 0 ? byte : vocab.unknown);
      }
      return;
    }
    resegment(symbols, revMerge, symbols[it->second.first], out);
    resegment(symbols, revMerge, symbols[it->second.second], out);
  }
};

//===----------------------------------------------------------------------===//
// Byte-level BPE (llama.cpp's llm_tokenizer_bpe)
//===----------------------------------------------------------------------===//

/// GPT-2's map from bytes to printable code points.
std::string byteToUnicode(uint8_t byte) {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) ||
                       (b >= 0xAE && b <= 0xFF);
      std::string s;
      appendUtf8(s, printable ? b : 256 + n++);
      t[b] = s;
    }
    return t;
  }();
  return table[byte];
}

/// The inverse of byteToUnicode.
int byteOfCodepoint(uint32_t cp) {
  static const std::unordered_map<uint32_t, int> table = [] {
    std::unordered_map<uint32_t, int> t;
    for (int b = 0; b < 256; ++b) {
      std::string s = byteToUnicode(static_cast<uint8_t>(b));
      t[decodeUtf8(s)[0]] = b;
    }
    return t;
  }();
  auto it = table.find(cp);
  return it == table.end() ? -1 : it->second;
}

class BpeTokenizer : public Tokenizer {
public:
  BpeTokenizer(Vocabulary v, std::unique_ptr<PreTokenizer> pre)
      : Tokenizer(std::move(v)), pre(std::move(pre)) {
    for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
      const std::string &m = vocab.merges[rank];
      size_t space = m.find(' ', 1);
      if (space != std::string::npos)
        ranks.emplace(m.substr(0, space) + '\n' + m.substr(space + 1),
                      static_cast<int>(rank));
    }
  }

protected:
  struct Bigram {
    int left, right;
    int rank;
    size_t size;
    // The lowest rank first; among equals, the leftmost.
    bool operator<(const Bigram &o) const {
      return rank > o.rank || (rank == o.rank && left > o.left);
    }
  };

  int rankOf(const Symbol &a, const Symbol &b) const {
    auto it = ranks.find(std::string(a.text, a.n) + '\n' +
                         std::string(b.text, b.n));
    return it == ranks.end() ? -1 : it->second;
  }

  std::string decodeText(int32_t id) const override {
    std::string out;
    for (uint32_t cp : decodeUtf8(vocab.tokens[id])) {
      int byte = byteOfCodepoint(cp);
      if (byte >= 0)
        out += static_cast<char>(byte);
      else
        appendUtf8(out, cp); // not byte-level: the text as it is
    }
    return out;
  }

  void encodeText(std::string_view text, bool /*afterSpecial*/,
                  std::vector<int32_t> &out) const override {
    std::vector<uint32_t> cpts = decodeUtf8(text);
    for (auto [first, last] : pre->split(cpts)) {
      // The piece's bytes, in GPT-2's printable alphabet.
      std::string piece, word;
      for (size_t i = first; i < last; ++i)
        appendUtf8(piece, cpts[i]);
      for (char c : piece)
        word += byteToUnicode(static_cast<uint8_t>(c));
      encodeWord(word, out);
    }
  }

  void encodeWord(const std::string &word, std::vector<int32_t> &out) const {
    if (pre->ignoresMerges()) {
      int32_t whole = lookup(word);
      if (whole >= 0) {
        out.push_back(whole);
        return;
      }
    }
    std::vector<Symbol> symbols = splitSymbols(word);
    mergeSymbols<Bigram>(symbols, [&](int left, int right, auto &queue) {
      if (left == -1 || right == -1)
        return;
      int rank = rankOf(symbols[left], symbols[right]);
      if (rank < 0)
        return;
      queue.push({left, right, rank, symbols[left].n + symbols[right].n});
    });
    for (const Symbol &s : symbols) {
      if (s.n == 0)
        continue;
      std::string str(s.text, s.n);
      int32_t id = lookup(str);
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
      // As llama.cpp: a piece that is no token is spelled byte by byte.
      for (char c : str) {
        int32_t byte = lookup(std::string(1, c));
        if (byte >= 0)
          out.push_back(byte);
      }
    }
  }

  std::unordered_map<std::string, int> ranks;
  std::unique_ptr<PreTokenizer> pre;
};

} // namespace

std::unique_ptr<Tokenizer> Tokenizer::create(Vocabulary vocabulary,
                                             std::string &error) {
  if (vocabulary.tokens.empty()) {
    error = "the vocabulary has no tokens";
    return nullptr;
  }
  if (vocabulary.model == "llama") {
    if (vocabulary.scores.size() != vocabulary.tokens.size()) {
      error = "a SentencePiece vocabulary needs one score per token";
      return nullptr;
    }
    return std::unique_ptr<Tokenizer>(new SpmTokenizer(std::move(vocabulary)));
  }
  if (vocabulary.model == "gpt2") {
    std::unique_ptr<PreTokenizer> pre =
        PreTokenizer::create(vocabulary.preTokenizer, error);
    if (!pre)
      return nullptr;
    return std::unique_ptr<Tokenizer>(
        new BpeTokenizer(std::move(vocabulary), std::move(pre)));
  }
  error = "tokenizer model '" + vocabulary.model +
          "' is not supported (supported: llama, gpt2)";
  return nullptr;
}

//===----------------------------------------------------------------------===//
// The vocabulary's binary form
//===----------------------------------------------------------------------===//
//
//   "MOECVOC1", then little-endian fields in this order: model, pre (u32
//   length + bytes); tokens (u32 count, then each u32 length + bytes);
//   scores (u32 count + f32 each); types (u32 count + i32 each); merges
//   (as tokens); bos, eos, eot, unknown, padding (i32); flags (u32: bit 0
//   add BOS, 1 add EOS, 2 add space prefix); chat template (u32 length +
//   bytes). Nothing may follow.

namespace {
constexpr char kVocabularyMagic[8] = {'M', 'O', 'E', 'C', 'V', 'O', 'C', '1'};

void putU32(std::string &out, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    out += static_cast<char>((v >> (8 * i)) & 0xFF);
}
void putString(std::string &out, const std::string &s) {
  putU32(out, static_cast<uint32_t>(s.size()));
  out += s;
}

class Reader {
public:
  explicit Reader(std::string_view bytes) : bytes(bytes) {}
  bool u32(uint32_t &v) {
    if (bytes.size() - pos < 4)
      return fail("ends inside a number");
    v = 0;
    for (int i = 0; i < 4; ++i)
      v |= uint32_t(static_cast<uint8_t>(bytes[pos + i])) << (8 * i);
    pos += 4;
    return true;
  }
  bool i32(int32_t &v) {
    uint32_t u;
    if (!u32(u))
      return false;
    std::memcpy(&v, &u, 4);
    return true;
  }
  bool string(std::string &s) {
    uint32_t n;
    if (!u32(n))
      return false;
    if (bytes.size() - pos < n)
      return fail("ends inside a string");
    s.assign(bytes.substr(pos, n));
    pos += n;
    return true;
  }
  /// A count of items that each take at least `minBytes`.
  bool count(uint32_t &n, size_t minBytes) {
    if (!u32(n))
      return false;
    if ((bytes.size() - pos) / minBytes < n)
      return fail("a count runs past the end");
    return true;
  }
  bool fail(const char *what) {
    if (error.empty())
      error = std::string("the vocabulary ") + what + " (at byte " +
              std::to_string(pos) + ")";
    return false;
  }
  std::string_view bytes;
  size_t pos = 0;
  std::string error;
};
} // namespace

std::string Vocabulary::serialize() const {
  std::string out(kVocabularyMagic, sizeof(kVocabularyMagic));
  putString(out, model);
  putString(out, preTokenizer);
  putU32(out, static_cast<uint32_t>(tokens.size()));
  for (const std::string &t : tokens)
    putString(out, t);
  putU32(out, static_cast<uint32_t>(scores.size()));
  for (float f : scores) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    putU32(out, u);
  }
  putU32(out, static_cast<uint32_t>(types.size()));
  for (TokenType t : types)
    putU32(out, static_cast<uint32_t>(t));
  putU32(out, static_cast<uint32_t>(merges.size()));
  for (const std::string &m : merges)
    putString(out, m);
  for (int32_t id : {bos, eos, eot, unknown, padding})
    putU32(out, static_cast<uint32_t>(id));
  putU32(out, (addBos ? 1u : 0u) | (addEos ? 2u : 0u) |
                  (addSpacePrefix ? 4u : 0u));
  putString(out, chatTemplate);
  return out;
}

bool Vocabulary::deserialize(std::string_view bytes, Vocabulary &out,
                             std::string &error) {
  Vocabulary v;
  Reader r(bytes);
  if (bytes.size() < sizeof(kVocabularyMagic) ||
      std::memcmp(bytes.data(), kVocabularyMagic, sizeof(kVocabularyMagic))) {
    error = "the vocabulary does not start with MOECVOC1";
    return false;
  }
  r.pos = sizeof(kVocabularyMagic);
  uint32_t n, flags;
  bool ok = r.string(v.model) && r.string(v.preTokenizer) && r.count(n, 4);
  for (uint32_t i = 0; ok && i < n; ++i)
    ok = r.string(v.tokens.emplace_back());
  ok = ok && r.count(n, 4);
  for (uint32_t i = 0; ok && i < n; ++i) {
    uint32_t u;
    ok = r.u32(u);
    std::memcpy(&v.scores.emplace_back(), &u, 4);
  }
  ok = ok && r.count(n, 4);
  for (uint32_t i = 0; ok && i < n; ++i) {
    int32_t t;
    ok = r.i32(t);
    v.types.push_back(static_cast<TokenType>(t));
  }
  ok = ok && r.count(n, 4);
  for (uint32_t i = 0; ok && i < n; ++i)
    ok = r.string(v.merges.emplace_back());
  for (int32_t *id : {&v.bos, &v.eos, &v.eot, &v.unknown, &v.padding})
    ok = ok && r.i32(*id);
  ok = ok && r.u32(flags) && r.string(v.chatTemplate);
  if (ok && r.pos != bytes.size())
    ok = r.fail("has bytes after its end");
  if (ok && ((!v.scores.empty() && v.scores.size() != v.tokens.size()) ||
             (!v.types.empty() && v.types.size() != v.tokens.size())))
    ok = r.fail("has scores or types for another number of tokens");
  for (int32_t id : {v.bos, v.eos, v.eot, v.unknown, v.padding})
    if (ok && (id < -1 || id >= static_cast<int64_t>(v.tokens.size())))
      ok = r.fail("names a special token outside it");
  if (!ok) {
    error = r.error;
    return false;
  }
  v.addBos = flags & 1;
  v.addEos = flags & 2;
  v.addSpacePrefix = flags & 4;
  out = std::move(v);
  return true;
}

//===----------------------------------------------------------------------===//
// Utf8Stream
//===----------------------------------------------------------------------===//

namespace {
/// Well-formed UTF-8 (Unicode table 3-7): the length of the sequence a lead
/// byte starts (0: not a lead) and the range its second byte must be in.
size_t sequenceLength(uint8_t lead, uint8_t &lo, uint8_t &hi) {
  lo = 0x80, hi = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF)
    return 2;
  if (lead >= 0xE0 && lead <= 0xEF) {
    if (lead == 0xE0)
      lo = 0xA0;
    if (lead == 0xED)
      hi = 0x9F;
    return 3;
  }
  if (lead >= 0xF0 && lead <= 0xF4) {
    if (lead == 0xF0)
      lo = 0x90;
    if (lead == 0xF4)
      hi = 0x8F;
    return 4;
  }
  return 0;
}
} // namespace

std::string Utf8Stream::push(std::string_view piece) {
  // Whole well-formed characters pass; a byte that cannot start or continue
  // one becomes U+FFFD; an incomplete character at the end waits.
  static const char kReplacement[] = "\xEF\xBF\xBD";
  pending += piece;
  std::string out;
  size_t i = 0;
  while (i < pending.size()) {
    uint8_t lead = static_cast<uint8_t>(pending[i]);
    if (lead < 0x80) {
      out += static_cast<char>(lead);
      ++i;
      continue;
    }
    uint8_t lo, hi;
    size_t n = sequenceLength(lead, lo, hi);
    size_t have = std::min(n, pending.size() - i), valid = n ? 1 : 0;
    while (valid && valid < have) {
      uint8_t c = static_cast<uint8_t>(pending[i + valid]);
      bool ok = valid == 1 ? (c >= lo && c <= hi) : (c & 0xC0) == 0x80;
      if (!ok)
        break;
      ++valid;
    }
    if (n == 0 || valid < have) {
      out += kReplacement;
      ++i;
      continue;
    }
    if (have < n)
      break; // the rest of the character is still to come
    out.append(pending, i, n);
    i += n;
  }
  pending.erase(0, i);
  return out;
}

std::string Utf8Stream::finish() {
  std::string out;
  if (!pending.empty())
    out = "\xEF\xBF\xBD";
  pending.clear();
  return out;
}

} // namespace moec::tokenizer
