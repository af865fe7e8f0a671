//===- Regex.cpp - The regular expressions of pre-tokenizers --------------===//

#include "runtime/tokenizer/Regex.h"
#include "runtime/tokenizer/Unicode.h"

#include <algorithm>
#include <type_traits>

namespace moec::tokenizer {

// Symbols above every code point, so that complements of classes also
// contain the category symbols that pre-tokenizers map text to.
static constexpr uint32_t kMaxSymbol = 0x11FFFF;

struct Regex::Node {
  enum Kind { Set, Sequence, Alternation, Repeat, LookAhead, Begin, End };
  Kind kind = Set;
  /// Set: sorted, disjoint, inclusive ranges.
  std::vector<SymbolRange> ranges;
  std::vector<int> children;
  /// Repeat: bounds (max -1: unbounded). LookAhead: negative.
  int min = 0, max = 0;
  bool negative = false;

  bool contains(uint32_t symbol) const {
    auto it = std::upper_bound(
        ranges.begin(), ranges.end(), symbol,
        [](uint32_t s, const SymbolRange &r) { return s < r.first; });
    return it != ranges.begin() && symbol <= std::prev(it)->second;
  }
};

namespace {

/// Sorts and merges `ranges` in place.
void normalize(std::vector<SymbolRange> &ranges) {
  std::sort(ranges.begin(), ranges.end());
  std::vector<SymbolRange> merged;
  for (const SymbolRange &r : ranges) {
    if (!merged.empty() && r.first <= merged.back().second + 1)
      merged.back().second = std::max(merged.back().second, r.second);
    else
      merged.push_back(r);
  }
  ranges = std::move(merged);
}

std::vector<SymbolRange> complement(std::vector<SymbolRange> ranges) {
  normalize(ranges);
  std::vector<SymbolRange> out;
  uint32_t next = 0;
  for (const SymbolRange &r : ranges) {
    if (r.first > next)
      out.push_back({next, r.first - 1});
    next = r.second + 1;
  }
  if (next <= kMaxSymbol)
    out.push_back({next, kMaxSymbol});
  return out;
}

// std::regex's classes in the C locale: ASCII only.
const std::vector<SymbolRange> kSpace = {{'\t', '\r'}, {' ', ' '}};
const std::vector<SymbolRange> kDigit = {{'0', '9'}};
const std::vector<SymbolRange> kWord = {
    {'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};

} // namespace

class RegexParser {
public:
  RegexParser(Regex &re, std::string_view pattern,
              const PropertyResolver &properties)
      : re(re), properties(properties) {
    for (size_t pos = 0; pos < pattern.size();)
      text.push_back(decodeUtf8(pattern, pos));
  }

  bool parse(std::string &error) {
    re.root = parseAlternation();
    if (failed.empty() && pos != text.size())
      fail("unbalanced ')'");
    if (!failed.empty()) {
      error = failed;
      return false;
    }
    return true;
  }

private:
  using Node = Regex::Node;

  static Node makeNode(Node::Kind kind) {
    Node n;
    n.kind = kind;
    return n;
  }

  bool atEnd() const { return pos >= text.size(); }
  uint32_t peek(size_t ahead = 0) const {
    return pos + ahead < text.size() ? text[pos + ahead] : 0xFFFFFFFF;
  }
  void fail(const std::string &what) {
    if (failed.empty())
      failed = "at offset " + std::to_string(pos) + ": " + what;
  }
  int add(Node node) {
    re.nodes.push_back(std::move(node));
    return static_cast<int>(re.nodes.size() - 1);
  }
  int addSet(std::vector<SymbolRange> ranges) {
    normalize(ranges);
    Node n = makeNode(Node::Set);
    n.ranges = std::move(ranges);
    return add(std::move(n));
  }

  int parseAlternation() {
    Node alt = makeNode(Node::Alternation);
    alt.children.push_back(parseSequence());
    while (failed.empty() && peek() == '|') {
      ++pos;
      alt.children.push_back(parseSequence());
    }
    if (alt.children.size() == 1)
      return alt.children.front();
    return add(std::move(alt));
  }

  int parseSequence() {
    Node seq = makeNode(Node::Sequence);
    while (failed.empty() && !atEnd() && peek() != '|' && peek() != ')') {
      int atom = parseAtom();
      if (!failed.empty())
        break;
      seq.children.push_back(parseQuantifier(atom));
    }
    return add(std::move(seq));
  }

  int parseQuantifier(int atom) {
    int min, max;
    uint32_t c = peek();
    if (c == '*') {
      min = 0, max = -1;
      ++pos;
    } else if (c == '+') {
      min = 1, max = -1;
      ++pos;
    } else if (c == '?') {
      min = 0, max = 1;
      ++pos;
    } else if (c == '{' && isDigit(peek(1))) {
      ++pos;
      min = max = parseNumber();
      if (peek() == ',') {
        ++pos;
        max = peek() == '}' ? -1 : parseNumber();
      }
      if (peek() != '}') {
        fail("expected '}' in a quantifier");
        return atom;
      }
      ++pos;
      if (max >= 0 && max < min) {
        fail("quantifier bounds out of order");
        return atom;
      }
    } else {
      return atom;
    }
    if (peek() == '?' || peek() == '+') {
      fail("lazy and possessive quantifiers are not supported");
      return atom;
    }
    Node rep = makeNode(Node::Repeat);
    rep.children = {atom};
    rep.min = min;
    rep.max = max;
    return add(std::move(rep));
  }

  static bool isDigit(uint32_t c) { return c >= '0' && c <= '9'; }
  int parseNumber() {
    int n = 0;
    while (isDigit(peek()) && n < 100000)
      n = n * 10 + int(text[pos++] - '0');
    return n;
  }

  int parseAtom() {
    uint32_t c = text[pos++];
    switch (c) {
    case '(': {
      bool lookahead = false, negative = false;
      if (peek() == '?') {
        if (peek(1) == ':') {
          pos += 2;
        } else if (peek(1) == '=' || peek(1) == '!') {
          lookahead = true;
          negative = peek(1) == '!';
          pos += 2;
        } else {
          fail("only (?:...), (?=...) and (?!...) groups are supported");
          return -1;
        }
      }
      int inner = parseAlternation();
      if (peek() != ')') {
        fail("missing ')'");
        return -1;
      }
      ++pos;
      if (!lookahead)
        return inner;
      Node look = makeNode(Node::LookAhead);
      look.children = {inner};
      look.negative = negative;
      return add(std::move(look));
    }
    case '[':
      return parseClass();
    case '.':
      // ECMAScript: anything but a line terminator.
      return addSet(complement({{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}}));
    case '^':
      return add(makeNode(Node::Begin));
    case '$':
      return add(makeNode(Node::End));
    case '\\': {
      std::vector<SymbolRange> ranges;
      if (!parseEscape(ranges))
        return -1;
      return addSet(std::move(ranges));
    }
    case '*':
    case '+':
    case '?':
      fail("nothing to repeat");
      return -1;
    default:
      return addSet({{c, c}});
    }
  }

  /// After '\': appends what the escape matches.
  bool parseEscape(std::vector<SymbolRange> &out) {
    if (atEnd()) {
      fail("pattern ends in '\\'");
      return false;
    }
    uint32_t c = text[pos++];
    auto append = [&](const std::vector<SymbolRange> &r) {
      out.insert(out.end(), r.begin(), r.end());
    };
    switch (c) {
    case 's': append(kSpace); return true;
    case 'S': append(complement(kSpace)); return true;
    case 'd': append(kDigit); return true;
    case 'D': append(complement(kDigit)); return true;
    case 'w': append(kWord); return true;
    case 'W': append(complement(kWord)); return true;
    case 'r': out.push_back({'\r', '\r'}); return true;
    case 'n': out.push_back({'\n', '\n'}); return true;
    case 't': out.push_back({'\t', '\t'}); return true;
    case 'f': out.push_back({'\f', '\f'}); return true;
    case 'v': out.push_back({'\v', '\v'}); return true;
    case 'x':
    case 'u': {
      int digits = c == 'x' ? 2 : 4;
      uint32_t v = 0;
      for (int i = 0; i < digits; ++i) {
        uint32_t h = peek();
        int d = isDigit(h) ? int(h - '0')
                : (h >= 'a' && h <= 'f') ? int(h - 'a' + 10)
                : (h >= 'A' && h <= 'F') ? int(h - 'A' + 10)
                                         : -1;
        if (d < 0) {
          fail("bad hexadecimal escape");
          return false;
        }
        v = v * 16 + uint32_t(d);
        ++pos;
      }
      out.push_back({v, v});
      return true;
    }
    case 'p':
    case 'P': {
      if (peek() != '{') {
        fail("expected '{' after \\p");
        return false;
      }
      size_t close = pos;
      while (close < text.size() && text[close] != '}')
        ++close;
      if (close == text.size()) {
        fail("missing '}' after \\p{");
        return false;
      }
      std::string name;
      for (size_t i = pos + 1; i < close; ++i)
        appendUtf8(name, text[i]);
      std::vector<SymbolRange> ranges;
      if (!properties || !properties(name, ranges)) {
        fail("unknown property \\p{" + name + "}");
        return false;
      }
      pos = close + 1;
      append(c == 'p' ? ranges : complement(ranges));
      return true;
    }
    default:
      if ((c >= '0' && c <= '9') || c == 'b' || c == 'B' || c == 'k') {
        fail("backreferences and word boundaries are not supported");
        return false;
      }
      out.push_back({c, c}); // identity escape
      return true;
    }
  }

  /// One character of a class, or an escape (which may stand for a class).
  bool parseClassAtom(std::vector<SymbolRange> &out) {
    if (peek() != '\\') {
      out.push_back({text[pos], text[pos]});
      ++pos;
      return true;
    }
    ++pos;
    return parseEscape(out);
  }

  int parseClass() {
    bool negate = peek() == '^';
    if (negate)
      ++pos;
    std::vector<SymbolRange> ranges;
    // ECMAScript: ']' always closes ("[]" is the empty class).
    auto single = [](const std::vector<SymbolRange> &item) {
      return item.size() == 1 && item[0].first == item[0].second;
    };
    while (!atEnd() && peek() != ']') {
      // One item: a class escape, or a character possibly starting a range.
      std::vector<SymbolRange> item;
      if (!parseClassAtom(item))
        return -1;
      if (!single(item)) {
        ranges.insert(ranges.end(), item.begin(), item.end());
        continue;
      }
      uint32_t lo = item[0].first, hi = lo;
      if (peek() == '-' && peek(1) != ']' && pos + 1 < text.size()) {
        ++pos;
        std::vector<SymbolRange> end;
        if (!parseClassAtom(end))
          return -1;
        if (!single(end)) {
          fail("a class escape cannot end a range");
          return -1;
        }
        hi = end[0].first;
        if (hi < lo) {
          fail("range out of order in a class");
          return -1;
        }
      }
      ranges.push_back({lo, hi});
    }
    if (atEnd()) {
      fail("missing ']'");
      return -1;
    }
    ++pos; // ']'
    return addSet(negate ? complement(std::move(ranges)) : std::move(ranges));
  }

  Regex &re;
  const PropertyResolver &properties;
  std::vector<uint32_t> text;
  size_t pos = 0;
  std::string failed;
};

/// A non-owning reference to a callable, so that continuations cost no
/// allocation.
template <typename Fn> class FunctionRef;
template <typename R, typename... Args> class FunctionRef<R(Args...)> {
public:
  template <typename F, typename = std::enable_if_t<!std::is_same_v<
                            std::decay_t<F>, FunctionRef>>>
  FunctionRef(F &&f) // NOLINT: implicit by design
      : object(reinterpret_cast<void *>(&f)),
        call([](void *o, Args... a) -> R {
          return (*reinterpret_cast<std::remove_reference_t<F> *>(o))(a...);
        }) {}
  R operator()(Args... a) const { return call(object, a...); }

private:
  void *object;
  R (*call)(void *, Args...);
};

class RegexMatcher {
public:
  using Node = Regex::Node;
  using Continuation = FunctionRef<bool(size_t)>;

  RegexMatcher(const Regex &re, const uint32_t *subject, size_t size)
      : nodes(re.nodes), subject(subject), size(size) {}

  bool match(int id, size_t pos, Continuation k) const {
    const Node &n = nodes[id];
    switch (n.kind) {
    case Node::Set:
      return pos < size && n.contains(subject[pos]) && k(pos + 1);
    case Node::Sequence:
      return matchSequence(n, 0, pos, k);
    case Node::Alternation:
      for (int child : n.children)
        if (match(child, pos, k))
          return true;
      return false;
    case Node::Repeat: {
      const Node &child = nodes[n.children[0]];
      if (child.kind == Node::Set) {
        // One symbol per iteration: count the run, then back off from the
        // longest, without recursion (runs can be long).
        size_t limit = n.max < 0 ? size - pos
                                 : std::min(size - pos, size_t(n.max));
        size_t run = 0;
        while (run < limit && child.contains(subject[pos + run]))
          ++run;
        for (size_t i = run + 1; i-- > size_t(n.min);)
          if (k(pos + i))
            return true;
        return false;
      }
      return matchRepeat(n, 0, pos, k);
    }
    case Node::LookAhead: {
      bool found = match(n.children[0], pos, [](size_t) { return true; });
      return found != n.negative && k(pos);
    }
    case Node::Begin:
      return pos == 0 && k(pos);
    case Node::End:
      return pos == size && k(pos);
    }
    return false;
  }

private:
  bool matchSequence(const Node &n, size_t i, size_t pos,
                     Continuation k) const {
    if (i == n.children.size())
      return k(pos);
    return match(n.children[i], pos, [&](size_t next) {
      return matchSequence(n, i + 1, next, k);
    });
  }

  bool matchRepeat(const Node &n, int count, size_t pos,
                   Continuation k) const {
    // Greedy: one more iteration first; an iteration that matches nothing
    // ends the loop (ECMAScript).
    if (n.max < 0 || count < n.max) {
      bool more = match(n.children[0], pos, [&](size_t next) {
        return next != pos && matchRepeat(n, count + 1, next, k);
      });
      if (more)
        return true;
    }
    return count >= n.min && k(pos);
  }

  const std::vector<Node> &nodes;
  const uint32_t *subject;
  size_t size;
};

Regex::~Regex() = default;

std::unique_ptr<Regex> Regex::compile(std::string_view pattern,
                                      const PropertyResolver &properties,
                                      std::string &error) {
  std::unique_ptr<Regex> re(new Regex());
  RegexParser parser(*re, pattern, properties);
  if (!parser.parse(error))
    return nullptr;
  return re;
}

bool Regex::search(const uint32_t *subject, size_t size, size_t from,
                   size_t &begin, size_t &end) const {
  RegexMatcher matcher(*this, subject, size);
  for (size_t start = from; start <= size; ++start) {
    size_t matchEnd = 0;
    if (matcher.match(root, start, [&](size_t e) {
          matchEnd = e;
          return true;
        })) {
      begin = start;
      end = matchEnd;
      return true;
    }
  }
  return false;
}

} // namespace moec::tokenizer
