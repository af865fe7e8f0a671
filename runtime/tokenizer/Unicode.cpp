//===- Unicode.cpp - UTF-8 and Unicode classes for the tokenizer ----------===//

#include "runtime/tokenizer/Unicode.h"

#include <algorithm>

namespace moec::tokenizer {
namespace {
struct CategoryRange {
  uint32_t first, last;
  uint8_t cls;
};
#include "runtime/tokenizer/UnicodeTables.inc"
} // namespace

CategoryClass getCategoryClass(uint32_t cp) {
  const CategoryRange *begin = std::begin(kCategoryRanges);
  const CategoryRange *end = std::end(kCategoryRanges);
  const CategoryRange *it = std::upper_bound(
      begin, end, cp,
      [](uint32_t v, const CategoryRange &r) { return v < r.first; });
  if (it == begin)
    return CategoryClass::Other;
  --it;
  return cp <= it->last ? static_cast<CategoryClass>(it->cls)
                        : CategoryClass::Other;
}

bool isWhitespace(uint32_t cp) {
  // The White_Space property (PropList.txt): short and stable.
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 ||
         cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

const char *getUnicodeVersion() { return kUnicodeVersion; }

size_t utf8Length(uint8_t lead) {
  if (lead < 0x80)
    return 1;
  if ((lead & 0xE0) == 0xC0)
    return 2;
  if ((lead & 0xF0) == 0xE0)
    return 3;
  if ((lead & 0xF8) == 0xF0)
    return 4;
  return 1;
}

uint32_t decodeUtf8(std::string_view text, size_t &pos) {
  auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  uint8_t lead = byte(pos);
  size_t n = utf8Length(lead);
  if (n == 1) {
    ++pos;
    return lead < 0x80 ? lead : 0xFFFD;
  }
  if (pos + n > text.size()) {
    ++pos;
    return 0xFFFD;
  }
  uint32_t cp = lead & (0x7F >> n);
  for (size_t i = 1; i < n; ++i) {
    uint8_t c = byte(pos + i);
    if ((c & 0xC0) != 0x80) {
      ++pos;
      return 0xFFFD;
    }
    cp = (cp << 6) | (c & 0x3F);
  }
  pos += n;
  return cp;
}

std::vector<uint32_t> decodeUtf8(std::string_view text) {
  std::vector<uint32_t> out;
  for (size_t pos = 0; pos < text.size();)
    out.push_back(decodeUtf8(text, pos));
  return out;
}

void appendUtf8(std::string &out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

} // namespace moec::tokenizer
