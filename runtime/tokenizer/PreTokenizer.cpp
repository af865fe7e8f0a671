//===- PreTokenizer.cpp - Splitting text before byte-level BPE ------------===//

#include "runtime/tokenizer/PreTokenizer.h"
#include "runtime/tokenizer/Regex.h"
#include "runtime/tokenizer/Unicode.h"

#include <algorithm>
#include <cassert>

namespace moec::tokenizer {

namespace {

using Pieces = std::vector<std::pair<size_t, size_t>>;

// The two patterns llama.cpp runs as hand-written code.
const char *const kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
const char *const kLlama3 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char *const kQwen2 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char *const kPoro = " ?[^(\\s|.,!?\U00002026\U00003002\U0000FF0C\U00003001\U00000964\U000006D4\U0000060C)]+";
const char *const kTekken =
    R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char *const kGpt4o =
    R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

/// One family of names and what they run (llama.cpp's llm_tokenizer_bpe).
struct Spec {
  std::vector<const char *> names;
  std::vector<const char *> patterns;
  bool ignoreMerges = false;
};

const std::vector<Spec> &getSpecs() {
  static const std::vector<Spec> specs = {
      {{"default"},
       {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", "[0-9][0-9][0-9]"}},
      {{"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
        "midm-2.0", "lfm2"},
       {kLlama3},
       /*ignoreMerges=*/true},
      {{"dbrx", "smaug-bpe", "glm4", "chatglm-bpe"}, {kLlama3}},
      {{"deepseek-llm"},
       {"[\r\n]", "\\s?[A-Za-z\U000000B5\U000000C0-\U000000D6\U000000D8-\U000000F6\U000000F8-\U000001BA\U000001BC-\U000001BF\U000001C4-\U00000293\U00000295-\U000002AF\U00000370-\U00000373\U00000376\U00000377\U0000037B-\U0000037D\U0000037F\U00000386\U00000388-\U0000038A\U0000038C\U0000038E-\U000003A1\U000003A3-\U000003F5\U000003F7-\U00000481\U0000048A-\U0000052F\U00000531-\U00000556\U000010A0-\U000010C5\U000013A0-\U000013F5\U000013F8-\U000013FD\U00001C90-\U00001CBA\U00001CBD-\U00001CBF\U00001D00-\U00001D2B\U00001D6B-\U00001D77\U00001D79-\U00001D9A\U00001E00-\U00001F15\U00001F18-\U00001F1D\U00001F20-\U00001F45\U00001F48-\U00001F4D\U00001F50-\U00001F57\U00001F59\U00001F5B\U00001F5D\U00001F5F-\U00001F7D\U00001F80-\U00001FB4\U00001FB6-\U00001FBC\U00001FBE\U00001FC2-\U00001FC4\U00001FC6-\U00001FCC\U00001FD0-\U00001FD3\U00001FD6-\U00001FDB\U00001FE0-\U00001FEC\U00001FF2-\U00001FF4\U00001FF6-\U00001FFC\U00002102\U00002107\U0000210A-\U00002113\U00002115\U00002119-\U0000211D\U00002124\U00002126\U00002128\U0000212A-\U0000212D\U0000212F-\U00002134\U00002139\U0000213C-\U0000213F\U00002145-\U00002149\U0000214E\U00002183\U00002184\U00002C00-\U00002C7B\U00002C7E-\U00002CE4\U00002CEB-\U00002CEE\U00002CF2\U00002CF3\U0000A640-\U0000A66D\U0000A680-\U0000A69B\U0000A722-\U0000A76F\U0000A771-\U0000A787\U0000A78B-\U0000A78E\U0000AB70-\U0000ABBF\U0000FB00-\U0000FB06\U0000FB13-\U0000FB17\U0000FF21-\U0000FF3A\U0000FF41-\U0000FF5A\U00010400-\U0001044F\U000104B0-\U000104D3\U000104D8-\U000104FB\U00010C80-\U00010CB2\U00010CC0-\U00010CF2\U000118A0-\U000118DF\U0001E900-\U0001E943]+", "\\s?[!-/:-~\U0000FF01-\U0000FF0F\U0000FF1A-\U0000FF5E\U00002018-\U0000201F\U00003000-\U00003002]+", R"(\s+$)",
        "[\U00004E00-\U00009FA5\U00000800-\U00004E00\U0000AC00-\U0000D7FF]+", R"(\p{N}+)"}},
      {{"deepseek-coder"},
       {"[\r\n]", R"(\s?\p{L}+)", R"(\s?\p{P}+)", "[\U00004E00-\U00009FA5\U00000800-\U00004E00\U0000AC00-\U0000D7FF]+",
        R"(\p{N})"}},
      {{"deepseek-v3", "hunyuan-dense"},
       {R"(\p{N}{1,3})", "[\U00004E00-\U00009FA5\U00003040-\U0000309F\U000030A0-\U000030FF]+", "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}},
      {{"falcon"}, {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2, "[0-9][0-9][0-9]"}},
      {{"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone",
        "minerva-7b"},
       {R"(\p{N})", kGpt2}},
      {{"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es",
        "jina-v2-de", "a.x-4.0", "mellum", "jina-v1-en", "jina-v2-code",
        "roberta-bpe", "mpt", "olmo", "jais", "trillion", "granite-docling",
        "exaone4"},
       {kGpt2}},
      {{"qwen2", "deepseek-r1-qwen", "kormo", "megrez", "stablelm2",
        "hunyuan", "grok-2"},
       {kQwen2}},
      {{"poro-chat", "bloom", "gpt3-finnish"}, {kPoro}},
      {{"viking"}, {kPoro, R"(\p{N})"}},
      {{"tekken"}, {kTekken}, /*ignoreMerges=*/true},
      {{"gpt-4o", "llama4", "minimax-m2"}, {kGpt4o}},
      {{"seed-coder"},
       {R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+)"}},
      {{"bailingmoe", "bailingmoe2", "llada-moe"},
       {R"('(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+)"}},
  };
  return specs;
}

// The symbols a collapsed text uses for non-ASCII code points, above every
// code point (llama.cpp uses the bytes 0xD0..0xD5).
enum : uint32_t {
  kOtherSymbol = 0x110000,
  kNumberSymbol,
  kLetterSymbol,
  kPunctuationSymbol,
  kMarkSymbol,
  kSymbolSymbol,
};

/// The category names llama.cpp collapses; a pattern naming any of them
/// runs on the collapsed text.
const char *const kCollapsedCategories[] = {
    "\\p{N}", "\\p{L}", "\\p{P}", "\\p{M}", "\\p{S}",
    "\\p{Lu}", "\\p{Ll}", "\\p{Lt}", "\\p{Lm}", "\\p{Lo}"};

bool resolveCollapsed(std::string_view name, std::vector<SymbolRange> &out) {
  if (name == "N") {
    out = {{'0', '9'}, {kNumberSymbol, kNumberSymbol}};
  } else if (name == "L" || name == "Lu" || name == "Ll" || name == "Lt" ||
             name == "Lm" || name == "Lo") {
    out = {{'A', 'Z'}, {'a', 'z'}, {kLetterSymbol, kLetterSymbol}};
  } else if (name == "P") {
    out = {{0x21, 0x23}, {0x25, 0x2A}, {0x2C, 0x2F}, {0x3A, 0x3B},
           {0x3F, 0x40}, {0x5B, 0x5D}, {0x5F, 0x5F}, {0x7B, 0x7B},
           {0x7D, 0x7D}, {kPunctuationSymbol, kPunctuationSymbol}};
  } else if (name == "M") {
    out = {{kMarkSymbol, kMarkSymbol}};
  } else if (name == "S") {
    out = {{0x24, 0x24}, {0x2B, 0x2B}, {0x3C, 0x3E}, {0x5E, 0x5E},
           {0x60, 0x60}, {0x7C, 0x7C}, {kSymbolSymbol, kSymbolSymbol}};
  } else {
    return false;
  }
  return true;
}

uint32_t collapse(uint32_t cp) {
  if (cp < 0x80)
    return cp;
  if (isWhitespace(cp))
    return 0x0B;
  switch (getCategoryClass(cp)) {
  case CategoryClass::Number: return kNumberSymbol;
  case CategoryClass::Letter: return kLetterSymbol;
  case CategoryClass::Punctuation: return kPunctuationSymbol;
  case CategoryClass::Mark: return kMarkSymbol;
  case CategoryClass::Symbol: return kSymbolSymbol;
  default: return kOtherSymbol;
  }
}

/// What llama.cpp's hand-written splitters ask of a code point; `valid` is
/// false past the end of the piece.
struct Flags {
  bool valid = false, letter = false, number = false, space = false;
};

class PieceCursor {
public:
  PieceCursor(const std::vector<uint32_t> &cpts, size_t begin, size_t end,
              Pieces &out)
      : cpts(cpts), begin(begin), end(end), prevEnd(begin), out(out) {}

  static constexpr uint32_t kOutOfRange = 0xFFFFFFFF;
  uint32_t cpt(size_t pos) const {
    return pos >= begin && pos < end ? cpts[pos] : kOutOfRange;
  }
  Flags flags(size_t pos) const {
    Flags f;
    if (pos < begin || pos >= end)
      return f;
    f.valid = true;
    CategoryClass c = getCategoryClass(cpts[pos]);
    f.letter = c == CategoryClass::Letter;
    f.number = c == CategoryClass::Number;
    f.space = isWhitespace(cpts[pos]);
    return f;
  }
  /// Ends a piece at `pieceEnd`; returns its length.
  size_t add(size_t pieceEnd) {
    size_t n = pieceEnd - prevEnd;
    if (n)
      out.emplace_back(prevEnd, pieceEnd);
    prevEnd = pieceEnd;
    return n;
  }

  const std::vector<uint32_t> &cpts;
  const size_t begin, end;

private:
  size_t prevEnd;
  Pieces &out;
};

uint32_t asciiLower(uint32_t c) {
  return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/// Matches 's 't 're 've 'm 'll 'd at `pos` (case-folded when `fold`);
/// returns the length or 0.
size_t contraction(const PieceCursor &p, size_t pos, bool fold) {
  if (p.cpt(pos) != '\'' || pos + 1 >= p.end)
    return 0;
  auto at = [&](size_t i) {
    return fold ? asciiLower(p.cpt(pos + i)) : p.cpt(pos + i);
  };
  uint32_t a = at(1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd')
    return 2;
  if (pos + 2 >= p.end)
    return 0;
  uint32_t b = at(2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') ||
      (a == 'l' && b == 'l'))
    return 3;
  return 0;
}

/// Both splitters' last alternatives at `pos`, where `spaces` white-space
/// code points start: '\s+(?!\S)' (all but the last, when more follows),
/// '\s+', or one code point nothing matched.
void splitSpaces(PieceCursor &p, size_t &pos, size_t spaces) {
  if (spaces > 1 && p.cpt(pos + spaces) != PieceCursor::kOutOfRange)
    pos += spaces - 1;
  else
    pos += spaces > 0 ? spaces : 1;
  p.add(pos);
}

/// GPT-2's pattern (kGpt2, with a final \s+) as llama.cpp's code runs it.
void splitGpt2(const std::vector<uint32_t> &cpts, size_t begin, size_t end,
               Pieces &out) {
  PieceCursor p(cpts, begin, end, out);
  for (size_t pos = begin; pos < end;) {
    if (size_t n = contraction(p, pos, /*fold=*/false)) {
      pos += p.add(pos + n);
      continue;
    }
    uint32_t c = p.cpt(pos);
    Flags f2 = c == ' ' ? p.flags(pos + 1) : p.flags(pos);
    if (f2.letter || f2.number) { // ' ?\p{L}+' and ' ?\p{N}+'
      bool letter = f2.letter;
      pos += c == ' ';
      while (letter ? p.flags(pos).letter : p.flags(pos).number)
        ++pos;
      p.add(pos);
      continue;
    }
    if (f2.valid && !f2.space) { // ' ?[^\s\p{L}\p{N}]+'
      pos += c == ' ';
      for (Flags f = f2; f.valid && !f.space && !f.letter && !f.number;)
        f = p.flags(++pos);
      p.add(pos);
      continue;
    }
    size_t spaces = 0;
    while (p.flags(pos + spaces).space)
      ++spaces;
    splitSpaces(p, pos, spaces);
  }
}

/// Llama 3's pattern (kLlama3) as llama.cpp's code runs it.
void splitLlama3(const std::vector<uint32_t> &cpts, size_t begin, size_t end,
                 Pieces &out) {
  PieceCursor p(cpts, begin, end, out);
  for (size_t pos = begin; pos < end;) {
    if (size_t n = contraction(p, pos, /*fold=*/true)) {
      pos += p.add(pos + n);
      continue;
    }
    uint32_t c = p.cpt(pos);
    Flags f = p.flags(pos);
    // '[^\r\n\p{L}\p{N}]?\p{L}+'
    if (c != '\r' && c != '\n' && !f.number &&
        (f.letter || p.flags(pos + 1).letter)) {
      ++pos;
      while (p.flags(pos).letter)
        ++pos;
      p.add(pos);
      continue;
    }
    if (f.number) { // '\p{N}{1,3}'
      size_t first = pos;
      while (p.flags(pos).number) {
        if (++pos - first >= 3) {
          p.add(pos);
          first = pos;
        }
      }
      p.add(pos);
      continue;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*' (a space at the piece's end is a piece
    // of its own here, as in llama.cpp)
    Flags f2 = c == ' ' ? p.flags(pos + 1) : f;
    if (!f2.space && !f2.letter && !f2.number) {
      pos += c == ' ';
      while (f2.valid && !f2.space && !f2.letter && !f2.number)
        f2 = p.flags(++pos);
      while (p.cpt(pos) == '\r' || p.cpt(pos) == '\n')
        ++pos;
      p.add(pos);
      continue;
    }
    size_t spaces = 0, lastNewlineEnd = 0;
    while (p.flags(pos + spaces).space) {
      uint32_t s = p.cpt(pos + spaces);
      if (s == '\r' || s == '\n')
        lastNewlineEnd = pos + spaces + 1;
      ++spaces;
    }
    if (lastNewlineEnd > 0) { // '\s*[\r\n]+'
      pos = lastNewlineEnd;
      p.add(pos);
      continue;
    }
    splitSpaces(p, pos, spaces);
  }
}

} // namespace

struct PreTokenizer::Step {
  enum Kind { Gpt2, Llama3, Pattern } kind;
  std::unique_ptr<Regex> regex;
  bool collapsed = false;
};

PreTokenizer::~PreTokenizer() = default;

std::vector<std::string> PreTokenizer::getSupportedNames() {
  std::vector<std::string> names;
  for (const Spec &spec : getSpecs())
    names.insert(names.end(), spec.names.begin(), spec.names.end());
  std::sort(names.begin(), names.end());
  return names;
}

std::unique_ptr<PreTokenizer> PreTokenizer::create(std::string_view name,
                                                   std::string &error) {
  const Spec *found = nullptr;
  for (const Spec &spec : getSpecs())
    for (const char *n : spec.names)
      if (name == n)
        found = &spec;
  if (!found) {
    error = "pre-tokenizer '" + std::string(name) +
            "' is not supported (supported:";
    for (const std::string &n : getSupportedNames())
      error += " " + n;
    error += ")";
    return nullptr;
  }
  std::unique_ptr<PreTokenizer> pre(new PreTokenizer());
  pre->ignoreMerges = found->ignoreMerges;
  for (const char *pattern : found->patterns) {
    Step step;
    if (pattern == kGpt2) {
      step.kind = Step::Gpt2;
    } else if (pattern == kLlama3) {
      step.kind = Step::Llama3;
    } else {
      step.kind = Step::Pattern;
      std::string_view p(pattern);
      for (const char *category : kCollapsedCategories)
        step.collapsed |= p.find(category) != std::string_view::npos;
      std::string regexError;
      step.regex = Regex::compile(
          p, step.collapsed ? PropertyResolver(resolveCollapsed) : nullptr,
          regexError);
      if (!step.regex) {
        error = "pre-tokenizer '" + std::string(name) + "': pattern " +
                std::string(p) + ": " + regexError;
        return nullptr;
      }
    }
    pre->steps.push_back(std::move(step));
  }
  return pre;
}

Pieces PreTokenizer::split(const std::vector<uint32_t> &cpts) const {
  Pieces pieces;
  if (cpts.empty())
    return pieces;
  pieces.emplace_back(0, cpts.size());
  std::vector<uint32_t> collapsedText, plainText;
  for (const Step &step : steps) {
    Pieces next;
    next.reserve(pieces.size());
    const uint32_t *subject = nullptr;
    if (step.kind == Step::Pattern) {
      std::vector<uint32_t> &mapped = step.collapsed ? collapsedText
                                                     : plainText;
      if (mapped.empty()) {
        mapped.resize(cpts.size());
        for (size_t i = 0; i < cpts.size(); ++i)
          mapped[i] = step.collapsed ? collapse(cpts[i])
                      : cpts[i] > 0x7F && isWhitespace(cpts[i]) ? 0x0B
                                                                : cpts[i];
      }
      subject = mapped.data();
    }
    for (auto [begin, end] : pieces) {
      if (step.kind == Step::Gpt2) {
        splitGpt2(cpts, begin, end, next);
        continue;
      }
      if (step.kind == Step::Llama3) {
        splitLlama3(cpts, begin, end, next);
        continue;
      }
      // The matches and the text between them, each a piece.
      size_t size = end - begin, done = 0, from = 0, mb, me;
      while (from <= size &&
             step.regex->search(subject + begin, size, from, mb, me)) {
        if (me == mb) { // an empty match splits nothing
          from = mb + 1;
          continue;
        }
        if (mb > done)
          next.emplace_back(begin + done, begin + mb);
        next.emplace_back(begin + mb, begin + me);
        done = from = me;
      }
      if (done < size)
        next.emplace_back(begin + done, end);
    }
    pieces = std::move(next);
  }
  return pieces;
}

} // namespace moec::tokenizer
