//===- TokenizerTest.cpp - UTF-8, Unicode classes, tokenizer edges --------===//
//
// The reference tokenizations of shared/testdata are checked end to end by
// test/compiler/tokenize; these are the pieces and the refusals.

#include "runtime/tokenizer/ChatTemplate.h"
#include "runtime/tokenizer/PreTokenizer.h"
#include "runtime/tokenizer/Regex.h"
#include "runtime/tokenizer/Tokenizer.h"
#include "runtime/tokenizer/Unicode.h"
#include "test/runtime/tokenizer/TestVocabularies.h"

#include <gtest/gtest.h>

#include <random>

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
  bpe.preTokenizer = "kimi-k2";
  bpe.tokens = {"a"};
  EXPECT_FALSE(Tokenizer::create(bpe, error));
  EXPECT_EQ(error.rfind("pre-tokenizer 'kimi-k2' is not supported "
                        "(supported: a.x-4.0 bailingmoe ",
                        0),
            0u)
      << error;

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

//===----------------------------------------------------------------------===//
// Regex
//===----------------------------------------------------------------------===//

/// The first match of `pattern` in `text` (code points = bytes here), as
/// the matched string, or "<none>".
std::string firstMatch(const char *pattern, const std::string &text,
                       size_t from = 0) {
  std::string error;
  auto re = Regex::compile(pattern, nullptr, error);
  EXPECT_TRUE(re) << error;
  if (!re)
    return "<error>";
  std::vector<uint32_t> subject(text.begin(), text.end());
  size_t b, e;
  if (!re->search(subject.data(), subject.size(), from, b, e))
    return "<none>";
  return text.substr(b, e - b);
}

TEST(Regex, AlternationIsOrderedAndQuantifiersBacktrack) {
  // ECMAScript: the first alternative that lets the whole match succeed.
  EXPECT_EQ(firstMatch("a|ab", "ab"), "a");
  EXPECT_EQ(firstMatch("ab|a", "ab"), "ab");
  // Greedy, giving back what the rest needs.
  EXPECT_EQ(firstMatch("a+ab", "aaab"), "aaab");
  EXPECT_EQ(firstMatch("\\s+(?!\\S)", "x   y"), "  ");
  EXPECT_EQ(firstMatch("\\s+(?!\\S)", "x   "), "   ");
  EXPECT_EQ(firstMatch("[0-9]{1,3}", "12345"), "123");
  EXPECT_EQ(firstMatch("[0-9]{1,3}", "12345", 3), "45");
  EXPECT_EQ(firstMatch("x{2}", "xxx"), "xx");
  EXPECT_EQ(firstMatch("(?:ab)+", "ababa"), "abab");
  EXPECT_EQ(firstMatch("((?=[a-z])([^b]))+", "acbd"), "ac");
  EXPECT_EQ(firstMatch("\\s+$", "a  b  "), "  ");
  EXPECT_EQ(firstMatch("^b", "ab"), "<none>");
  EXPECT_EQ(firstMatch("[^(\\s|.)]+", "ab|c.d"), "ab");
  EXPECT_EQ(firstMatch("[\\-a]+", "x-a-"), "-a-");
  EXPECT_EQ(firstMatch("\\x41\\u0042", "zAB"), "AB");
}

TEST(Regex, RefusesWhatItDoesNotImplement) {
  std::string error;
  for (const char *bad : {"(?i:a)", "a+?", "a++", "\\1", "(a", "a)", "[a",
                          "\\p{L}", "*a", "[b-a]", "a{3,2}"}) {
    EXPECT_FALSE(Regex::compile(bad, nullptr, error)) << bad;
    EXPECT_NE(error.find("at offset"), std::string::npos) << error;
  }
}

TEST(Regex, PropertiesComeFromTheResolver) {
  std::string error;
  auto digitsAsN = [](std::string_view name, std::vector<SymbolRange> &out) {
    if (name != "N")
      return false;
    out = {{'0', '9'}};
    return true;
  };
  auto re = Regex::compile("\\p{N}+|[^\\p{N}x]+", digitsAsN, error);
  ASSERT_TRUE(re) << error;
  std::vector<uint32_t> s = {'a', '1', '2', 'x'};
  size_t b, e;
  ASSERT_TRUE(re->search(s.data(), s.size(), 0, b, e));
  EXPECT_EQ(b, 0u);
  EXPECT_EQ(e, 1u);
  ASSERT_TRUE(re->search(s.data(), s.size(), 1, b, e));
  EXPECT_EQ(e, 3u);
  EXPECT_FALSE(re->search(s.data(), s.size(), 3, b, e));
}

TEST(Regex, LongRunsDoNotExhaustTheStack) {
  std::string error;
  auto re = Regex::compile("\\s+(?!\\S)|x", nullptr, error);
  ASSERT_TRUE(re) << error;
  std::vector<uint32_t> s(1 << 20, ' ');
  s.push_back('y');
  size_t b, e;
  ASSERT_TRUE(re->search(s.data(), s.size(), 0, b, e));
  EXPECT_EQ(e - b, s.size() - 2);
}

//===----------------------------------------------------------------------===//
// Byte-level BPE, special tokens, decoding
//===----------------------------------------------------------------------===//

TEST(Tokenizer, ByteLevelBpeMergesByRank) {
  std::string error;
  auto tok = Tokenizer::create(test_vocabularies::makeByteLevelVocabulary("gpt-2"),
                               error);
  ASSERT_TRUE(tok) << error;
  int32_t the = tok->lookup(test_vocabularies::byteSpelling(' ') + "the");
  int32_t ing = tok->lookup("ing");
  ASSERT_GE(the, 256);
  ASSERT_GE(ing, 256);
  EXPECT_EQ(tok->encode(" the", false), (std::vector<int32_t>{the}));
  EXPECT_EQ(tok->encode("sing", false),
            (std::vector<int32_t>{int32_t('s'), ing}));
}

TEST(Tokenizer, SpecialTokensAreSplitOutAsLlamaCppDoes) {
  std::string error;
  auto tok = Tokenizer::create(test_vocabularies::makeByteLevelVocabulary("gpt-2"),
                               error);
  ASSERT_TRUE(tok) << error;
  int32_t end = tok->lookup("<|end|>"), tool = tok->lookup("<tool>");
  // User-defined tokens always; control tokens only when parsing specials.
  std::vector<int32_t> plain = tok->encode("a<tool>b<|end|>", false);
  EXPECT_EQ(plain[0], int32_t('a'));
  EXPECT_EQ(plain[1], tool);
  EXPECT_EQ(plain[2], int32_t('b'));
  EXPECT_GT(plain.size(), 4u); // <|end|> spelled in bytes
  EXPECT_EQ(tok->encode("a<tool>b<|end|>", false, /*parseSpecial=*/true),
            (std::vector<int32_t>{int32_t('a'), tool, int32_t('b'), end}));
  // Control tokens decode to nothing unless asked.
  EXPECT_EQ(tok->decode({int32_t('a'), end, tool}), "a<tool>");
  EXPECT_EQ(tok->decode({int32_t('a'), end}, /*special=*/true), "a<|end|>");
  EXPECT_TRUE(tok->isEndOfGeneration(end));
  EXPECT_FALSE(tok->isEndOfGeneration(int32_t('a')));
}

/// Random valid UTF-8: ASCII, whitespace of every kind, and code points
/// from every plane (no surrogates).
std::string randomUtf8(std::mt19937 &rng) {
  static const uint32_t kOdd[] = {' ', '\t', '\n', '\r', 0x0B, 0x85, 0xA0,
                                  0x3000, 0x2028, '\'', '0', '9', 0x301,
                                  0x1F600, 0x200D, 0xFE0F};
  std::string s;
  int n = std::uniform_int_distribution<int>(0, 40)(rng);
  for (int i = 0; i < n; ++i) {
    uint32_t cp;
    switch (rng() % 4) {
    case 0: cp = 0x20 + rng() % 0x5F; break;
    case 1: cp = kOdd[rng() % (sizeof(kOdd) / sizeof(kOdd[0]))]; break;
    case 2: cp = rng() % 0x10000; break;
    default: cp = rng() % 0x110000; break;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF)
      cp = 'x';
    appendUtf8(s, cp);
  }
  return s;
}

TEST(Tokenizer, ByteLevelBpeRoundTripsRandomUtf8UnderEveryPreTokenizer) {
  std::mt19937 rng(20261125);
  for (const std::string &pre : PreTokenizer::getSupportedNames()) {
    std::string error;
    auto tok = Tokenizer::create(test_vocabularies::makeByteLevelVocabulary(pre), error);
    ASSERT_TRUE(tok) << pre << ": " << error;
    for (int i = 0; i < 200; ++i) {
      std::string text = randomUtf8(rng);
      std::vector<int32_t> ids = tok->encode(text, false);
      ASSERT_EQ(tok->decode(ids), text) << pre << " text " << i;
    }
  }
}

TEST(Tokenizer, EveryPreTokenizerCoversTheTextInOrder) {
  std::mt19937 rng(7);
  for (const std::string &name : PreTokenizer::getSupportedNames()) {
    std::string error;
    auto pre = PreTokenizer::create(name, error);
    ASSERT_TRUE(pre) << error;
    for (int i = 0; i < 100; ++i) {
      std::vector<uint32_t> cpts = decodeUtf8(randomUtf8(rng));
      size_t next = 0;
      for (auto [b, e] : pre->split(cpts)) {
        ASSERT_EQ(b, next) << name;
        ASSERT_GT(e, b) << name;
        next = e;
      }
      ASSERT_EQ(next, cpts.size()) << name;
    }
  }
}

TEST(Tokenizer, SentencePieceDecodesSpacesAndBytes) {
  Vocabulary v;
  v.model = "llama";
  v.tokens = {"<unk>", "\xE2\x96\x81" "ab", "c", "<0x7A>", "<s>"};
  v.scores = {0, 0, 0, 0, 0};
  v.types = {TokenType::Unknown, TokenType::Normal, TokenType::Normal,
             TokenType::Byte, TokenType::Control};
  std::string error;
  auto tok = Tokenizer::create(v, error);
  ASSERT_TRUE(tok) << error;
  EXPECT_EQ(tok->decode({4, 1, 2, 3, 1}), "abcz ab");
  EXPECT_EQ(tok->decodeToken(1), " ab");
}

TEST(Utf8Stream, PrintsOnlyWholeCharacters) {
  Utf8Stream s;
  EXPECT_EQ(s.push("a\xE2"), "a");
  EXPECT_EQ(s.push("\x96"), "");
  EXPECT_EQ(s.push("\x81" "b"), "\xE2\x96\x81" "b");
  // A byte that continues nothing, a lead cut short by ASCII.
  EXPECT_EQ(s.push("\x80" "c\xC3" "d"), "\xEF\xBF\xBD" "c\xEF\xBF\xBD" "d");
  EXPECT_EQ(s.push("\xF0\x9F"), "");
  EXPECT_EQ(s.finish(), "\xEF\xBF\xBD");
  EXPECT_EQ(s.finish(), "");
}

TEST(Vocabulary, SerializesAndRefusesDamage) {
  Vocabulary v = test_vocabularies::makeByteLevelVocabulary("qwen2");
  v.scores.assign(v.tokens.size(), 0.5f);
  v.eot = 3;
  v.addBos = true;
  v.chatTemplate = "{{ messages }}";
  std::string bytes = v.serialize();
  Vocabulary back;
  std::string error;
  ASSERT_TRUE(Vocabulary::deserialize(bytes, back, error)) << error;
  EXPECT_EQ(back.serialize(), bytes);
  EXPECT_EQ(back.tokens, v.tokens);
  EXPECT_EQ(back.merges, v.merges);
  EXPECT_EQ(back.eot, 3);
  EXPECT_TRUE(back.addBos);
  EXPECT_FALSE(back.addEos);
  EXPECT_EQ(back.chatTemplate, v.chatTemplate);

  for (size_t cut : {size_t(0), size_t(7), bytes.size() / 2, bytes.size() - 1})
    EXPECT_FALSE(Vocabulary::deserialize(bytes.substr(0, cut), back, error))
        << cut;
  EXPECT_FALSE(Vocabulary::deserialize(bytes + "x", back, error));
  EXPECT_NE(error.find("bytes after its end"), std::string::npos) << error;
}

//===----------------------------------------------------------------------===//
// Chat formats
//===----------------------------------------------------------------------===//

TEST(ChatTemplate, DetectsTheSupportedFormatsAndNamesTheOthers) {
  ChatFormat f;
  std::string error;
  ASSERT_TRUE(detectChatFormat("{{'<|im_start|>' + message['role']}}", f,
                               error));
  EXPECT_EQ(f, ChatFormat::ChatML);
  ASSERT_TRUE(detectChatFormat("{{ '[INST] ' + message['content'] }}", f,
                               error));
  EXPECT_EQ(f, ChatFormat::Mistral);
  ASSERT_TRUE(detectChatFormat("{{ '<|user|>\\n' }}{{ '<|assistant|>' }}", f,
                               error));
  EXPECT_EQ(f, ChatFormat::Tulu);
  EXPECT_FALSE(detectChatFormat("", f, error));
  EXPECT_EQ(error,
            "the model has no chat template (GGUF tokenizer.chat_template)");
  EXPECT_FALSE(detectChatFormat("<start_of_turn>user", f, error));
  EXPECT_EQ(error.rfind("the model's chat template is not supported (it "
                        "begins '<start_of_turn>user'",
                        0),
            0u)
      << error;
}

TEST(ChatTemplate, FormatsAsTheTemplatesDo) {
  std::vector<ChatMessage> m = {
      {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."},
      {"user", "Bye"}};
  EXPECT_EQ(formatChat(ChatFormat::ChatML, m, true, "<s>", "</s>"),
            "<|im_start|>system\nBe brief.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello.<|im_end|>\n"
            "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(formatChat(ChatFormat::Mistral, m, true, "<s>", "</s>"),
            "<s>[INST] Be brief.\n\nHi [/INST]Hello.</s>[INST] Bye [/INST]");
  EXPECT_EQ(formatChat(ChatFormat::Tulu, m, true, "<|endoftext|>",
                       "<|endoftext|>"),
            "<|endoftext|><|system|>\nBe brief.\n<|user|>\nHi\n"
            "<|assistant|>\nHello.<|endoftext|>\n<|user|>\nBye\n"
            "<|assistant|>\n");
  // Each turn extends the previous text: what the chat loop relies on.
  for (ChatFormat f : {ChatFormat::ChatML, ChatFormat::Mistral,
                       ChatFormat::Tulu}) {
    std::vector<ChatMessage> first(m.begin(), m.begin() + 2);
    std::string before = formatChat(f, first, true, "<s>", "</s>");
    std::string after = formatChat(f, m, true, "<s>", "</s>");
    EXPECT_EQ(after.compare(0, before.size(), before), 0)
        << getChatFormatName(f);
    EXPECT_EQ(after.compare(before.size(), 6, "Hello."), 0)
        << getChatFormatName(f);
  }
}

} // namespace
