//===- TokenizerFuzzer.cpp - libFuzzer target for the tokenizer -----------===//
//
// The first byte picks a pre-tokenizer (by index) and the mode:
//   bit 7 clear: the rest is text; it must encode without fault under that
//     pre-tokenizer, and valid UTF-8 must decode back to itself; the pieces
//     of a Utf8Stream fed the token pieces must join to valid UTF-8.
//   bit 7 set: the rest is a serialized vocabulary (what a bundle carries);
//     it must be refused with a message or give a tokenizer that encodes.

#include "runtime/tokenizer/PreTokenizer.h"
#include "runtime/tokenizer/Tokenizer.h"
#include "runtime/tokenizer/Unicode.h"
#include "test/runtime/tokenizer/TestVocabularies.h"

#include <cstdlib>
#include <map>
#include <memory>

using namespace moec::tokenizer;

namespace {

/// Strict UTF-8: no overlong forms, surrogates or code points past
/// U+10FFFF (the decoder, like llama.cpp's, accepts overlong forms).
bool isValidUtf8(const std::string &s) {
  for (size_t pos = 0; pos < s.size();) {
    size_t before = pos;
    uint32_t cp = decodeUtf8(s, pos);
    size_t n = pos - before;
    if (cp == 0xFFFD && s.compare(before, n, "\xEF\xBF\xBD") != 0)
      return false;
    size_t shortest = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (n != shortest || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
      return false;
  }
  return true;
}

const Tokenizer &tokenizerFor(size_t index) {
  static const std::vector<std::string> names =
      PreTokenizer::getSupportedNames();
  static std::map<size_t, std::unique_ptr<Tokenizer>> cache;
  const std::string &name = names[index % names.size()];
  auto &slot = cache[index % names.size()];
  if (!slot) {
    std::string error;
    slot = Tokenizer::create(
        test_vocabularies::makeByteLevelVocabulary(name), error);
    if (!slot)
      std::abort();
  }
  return *slot;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  std::string_view rest(reinterpret_cast<const char *>(data + 1), size - 1);
  if (data[0] & 0x80) {
    Vocabulary v;
    std::string error;
    if (!Vocabulary::deserialize(rest, v, error)) {
      if (error.empty())
        std::abort();
      return 0;
    }
    auto tok = Tokenizer::create(std::move(v), error);
    if (tok) {
      std::vector<int32_t> ids = tok->encode("Hello, world! 123", true, true);
      (void)tok->decode(ids, true);
    }
    return 0;
  }
  const Tokenizer &tok = tokenizerFor(data[0] & 0x7F);
  std::string text(rest);
  std::vector<int32_t> ids = tok.encode(text, false, data[0] & 0x40);
  Utf8Stream stream;
  std::string streamed;
  for (int32_t id : ids) {
    if (id < 0 || size_t(id) >= tok.getVocabulary().tokens.size())
      std::abort();
    streamed += stream.push(tok.decodeToken(id, true));
  }
  streamed += stream.finish();
  if (!isValidUtf8(streamed))
    std::abort();
  if (isValidUtf8(text) && tok.decode(ids, true) != text)
    std::abort();
  return 0;
}
