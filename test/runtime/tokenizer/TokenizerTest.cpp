//===- TokenizerTest.cpp - UTF-8, Unicode classes, tokenizer edges --------===//
//
// The reference tokenizations of shared/testdata are checked end to end by
// test/compiler/tokenize; these are the pieces and the refusals.

#include "runtime/tokenizer/Tokenizer.h"
#include "runtime/tokenizer/Unicode.h"

#include <gtest/gtest.h>

using namespace moec::tokenizer;

namespace {

TEST(Unicode, DecodesAndReencodesEveryLength) {
  std::string text = "a\xC3\xA9\xE2\x96\x81\xF0\x9F\xA6\x99"; // a é ▁ 🦙
  std::vector<uint32_t> cpts = decodeUtf8(text);
  ASSERT_EQ(cpts, (std::vector<uint32_t>{'a', 0xE9, 0x2581, 0x1F999}));
  std::string back;
  for (uint32_t c : cpts)
    appendUtf8(back, c);
  EXPECT_EQ(back, text);
}

TEST(Unicode, InvalidBytesDecodeOneByOneAsReplacement) {
  // A stray continuation byte, a truncated 3-byte sequence, a bad lead.
  std::vector<uint32_t> cpts = decodeUtf8("\x80" "a\xE2\x96" "\xFF");
  EXPECT_EQ(cpts, (std::vector<uint32_t>{0xFFFD, 'a', 0xFFFD, 0xFFFD, 0xFFFD}));
}

TEST(Unicode, CategoryClassesAndWhitespace) {
  EXPECT_EQ(getCategoryClass('A'), CategoryClass::Letter);
  EXPECT_EQ(getCategoryClass(0x0411), CategoryClass::Letter); // Cyrillic Б
  EXPECT_EQ(getCategoryClass(0x4E2D), CategoryClass::Letter); // 中
  EXPECT_EQ(getCategoryClass('7'), CategoryClass::Number);
  EXPECT_EQ(getCategoryClass(0x00BD), CategoryClass::Number); // ½
  EXPECT_EQ(getCategoryClass('!'), CategoryClass::Punctuation);
  EXPECT_EQ(getCategoryClass(0x1F999), CategoryClass::Symbol); // 🦙
  EXPECT_EQ(getCategoryClass(0x0301), CategoryClass::Mark);
  EXPECT_EQ(getCategoryClass(0x10FFFF), CategoryClass::Other);
  EXPECT_TRUE(isWhitespace(' '));
  EXPECT_TRUE(isWhitespace('\n'));
  EXPECT_TRUE(isWhitespace(0x3000));
  EXPECT_FALSE(isWhitespace(0x200B)); // zero width space is not White_Space
}

TEST(Tokenizer, RefusesWhatItDoesNotImplement) {
  std::string error;
  Vocabulary empty;
  EXPECT_FALSE(Tokenizer::create(empty, error));
  EXPECT_EQ(error, "the vocabulary has no tokens");

  Vocabulary bpe;
  bpe.model = "gpt2";
  bpe.preTokenizer = "qwen2";
  bpe.tokens = {"a"};
  EXPECT_FALSE(Tokenizer::create(bpe, error));
  EXPECT_EQ(error, "pre-tokenizer 'qwen2' is not implemented yet "
                   "(implemented: gpt-2)");

  Vocabulary other = bpe;
  other.model = "rwkv";
  EXPECT_FALSE(Tokenizer::create(other, error));
  EXPECT_EQ(error, "tokenizer model 'rwkv' is not supported (supported: "
                   "llama, gpt2)");

  Vocabulary spm;
  spm.model = "llama";
  spm.tokens = {"a", "b"};
  spm.scores = {0.0f};
  EXPECT_FALSE(Tokenizer::create(spm, error));
  EXPECT_EQ(error, "a SentencePiece vocabulary needs one score per token");
}

// A hand-made SentencePiece vocabulary: merges follow scores, unknown
// characters fall back to byte tokens.
TEST(Tokenizer, SentencePieceMergesByScoreAndFallsBackToBytes) {
  Vocabulary v;
  v.model = "llama";
  v.tokens = {"<unk>", "\xE2\x96\x81", "a", "b", "ab", "\xE2\x96\x81" "ab",
              "<0x7A>"};
  v.scores = {0, -1, -2, -2, -0.5f, -0.1f, 0};
  v.bos = 0;
  std::string error;
  auto tok = Tokenizer::create(v, error);
  ASSERT_TRUE(tok) << error;
  EXPECT_EQ(tok->encode("ab", false), (std::vector<int32_t>{5}));
  EXPECT_EQ(tok->encode("abz", true), (std::vector<int32_t>{0, 5, 6}));
  EXPECT_EQ(tok->encode("", false), (std::vector<int32_t>{}));
}

} // namespace
