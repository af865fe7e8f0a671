//===- Tokenizer.cpp - Text to token ids, as llama.cpp does it ------------===//

#include "runtime/tokenizer/Tokenizer.h"
#include "runtime/tokenizer/Unicode.h"

#include <cstdio>
#include <map>
#include <queue>

namespace moec::tokenizer {

Tokenizer::Tokenizer(Vocabulary vocabulary) : vocab(std::move(vocabulary)) {
  ids.reserve(vocab.tokens.size());
  for (size_t i = 0; i < vocab.tokens.size(); ++i)
    ids.emplace(vocab.tokens[i], static_cast<int32_t>(i));
}

int32_t Tokenizer::lookup(std::string_view text) const {
  auto it = ids.find(std::string(text));
  return it == ids.end() ? -1 : it->second;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text,
                                       bool addBos) const {
  std::vector<int32_t> out;
  if (addBos && vocab.bos >= 0)
    out.push_back(vocab.bos);
  if (!text.empty())
    encodeText(text, out);
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

  void encodeText(std::string_view raw, std::vector<int32_t> &out) const override {
    std::string text;
    if (vocab.addSpacePrefix)
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

/// llama.cpp's unicode_regex_split_custom_gpt2: GPT-2's pattern
///   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
/// as code. Returns the pieces' code point ranges.
std::vector<std::pair<size_t, size_t>>
splitGpt2(const std::vector<uint32_t> &cpts) {
  std::vector<std::pair<size_t, size_t>> pieces;
  const size_t end = cpts.size();
  constexpr uint32_t kOutOfRange = 0xFFFFFFFF;
  auto cpt = [&](size_t pos) { return pos < end ? cpts[pos] : kOutOfRange; };
  struct Flags {
    bool valid = false, letter = false, number = false, space = false;
  };
  auto flags = [&](size_t pos) {
    Flags f;
    if (pos >= end)
      return f;
    f.valid = true;
    CategoryClass c = getCategoryClass(cpts[pos]);
    f.letter = c == CategoryClass::Letter;
    f.number = c == CategoryClass::Number;
    f.space = isWhitespace(cpts[pos]);
    return f;
  };
  size_t prevEnd = 0;
  auto add = [&](size_t pieceEnd) {
    pieces.emplace_back(prevEnd, pieceEnd);
    size_t n = pieceEnd - prevEnd;
    prevEnd = pieceEnd;
    return n;
  };
  for (size_t pos = 0; pos < end;) {
    uint32_t c = cpt(pos);
    Flags f = flags(pos);
    if (c == '\'' && pos + 1 < end) {
      uint32_t n1 = cpt(pos + 1);
      if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
        pos += add(pos + 2);
        continue;
      }
      if (pos + 2 < end) {
        uint32_t n2 = cpt(pos + 2);
        if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') ||
            (n1 == 'l' && n2 == 'l')) {
          pos += add(pos + 3);
          continue;
        }
      }
    }
    Flags f2 = c == ' ' ? flags(pos + 1) : f;
    if (f2.letter) { // ' ?\p{L}+'
      pos += c == ' ';
      while (flags(pos).letter)
        ++pos;
      add(pos);
      continue;
    }
    if (f2.number) { // ' ?\p{N}+'
      pos += c == ' ';
      while (flags(pos).number)
        ++pos;
      add(pos);
      continue;
    }
    if (f2.valid && !f2.space && !f2.letter && !f2.number) {
      // ' ?[^\s\p{L}\p{N}]+'
      pos += c == ' ';
      while (f2.valid && !f2.space && !f2.letter && !f2.number)
        f2 = flags(++pos);
      add(pos);
      continue;
    }
    size_t spaces = 0;
    while (flags(pos + spaces).space)
      ++spaces;
    if (spaces > 1 && cpt(pos + spaces) != kOutOfRange) { // '\s+(?!\S)'
      pos += spaces - 1;
      add(pos);
      continue;
    }
    if (spaces > 0) { // '\s+'
      pos += spaces;
      add(pos);
      continue;
    }
    add(++pos); // no match
  }
  return pieces;
}

class BpeTokenizer : public Tokenizer {
public:
  explicit BpeTokenizer(Vocabulary v) : Tokenizer(std::move(v)) {
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

  void encodeText(std::string_view text, std::vector<int32_t> &out) const override {
    std::vector<uint32_t> cpts = decodeUtf8(text);
    for (auto [first, last] : splitGpt2(cpts)) {
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
    if (vocabulary.preTokenizer != "gpt-2") {
      error = "pre-tokenizer '" + vocabulary.preTokenizer +
              "' is not implemented yet (implemented: gpt-2)";
      return nullptr;
    }
    return std::unique_ptr<Tokenizer>(new BpeTokenizer(std::move(vocabulary)));
  }
  error = "tokenizer model '" + vocabulary.model +
          "' is not supported (supported: llama, gpt2)";
  return nullptr;
}

} // namespace moec::tokenizer
