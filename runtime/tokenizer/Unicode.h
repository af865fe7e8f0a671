//===- Unicode.h - UTF-8 and Unicode classes for the tokenizer --*- C++ -*-===//
//
// The little of Unicode that tokenizers need: UTF-8 decoding that never
// fails (invalid bytes decode as U+FFFD, one byte each, as llama.cpp's
// tokenizer treats them), encoding, the general category class of a code
// point (from tables generated at build time) and White_Space.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_TOKENIZER_UNICODE_H
#define MOEC_RUNTIME_TOKENIZER_UNICODE_H

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moec::tokenizer {

/// The first letter of a general category.
enum class CategoryClass : uint8_t {
  Letter,
  Mark,
  Number,
  Punctuation,
  Symbol,
  Separator,
  Other,
};

CategoryClass getCategoryClass(uint32_t codepoint);

/// The White_Space property.
bool isWhitespace(uint32_t codepoint);

/// The Unicode version the tables come from.
const char *getUnicodeVersion();

/// Decodes one code point at `text[pos]`, advancing `pos`; invalid or
/// truncated sequences give U+FFFD and advance by one byte.
uint32_t decodeUtf8(std::string_view text, size_t &pos);

/// All code points of `text`.
std::vector<uint32_t> decodeUtf8(std::string_view text);

/// Appends the UTF-8 encoding of `codepoint`.
void appendUtf8(std::string &out, uint32_t codepoint);

/// Bytes of the UTF-8 sequence that starts with `lead` (1 for invalid).
size_t utf8Length(uint8_t lead);

} // namespace moec::tokenizer

#endif // MOEC_RUNTIME_TOKENIZER_UNICODE_H
