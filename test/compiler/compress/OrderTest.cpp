//===- OrderTest.cpp - Where the order search cuts its text ---------------===//
//
// splitForEvaluation against a brute-force search over every cut, with a
// token count the test can compute by hand (words, BOS counted).
//
//===----------------------------------------------------------------------===//

#include "compiler/compress/Order.h"

#include "llvm/ADT/StringExtras.h"

#include <gtest/gtest.h>

#include <cctype>
#include <random>
#include <string>

using namespace moec::compress;

namespace {

/// Words, plus one for BOS, as model-run counts a file it tokenizes.
int64_t countWords(llvm::StringRef text) {
  llvm::SmallVector<llvm::StringRef> words;
  llvm::SplitString(text, words, " \t\n\r");
  return int64_t(words.size()) + 1;
}

/// A text of `lines` lines of 1-12 words each.
std::string makeText(unsigned lines, unsigned seed) {
  std::mt19937 rng(seed);
  std::string text;
  for (unsigned l = 0; l < lines; ++l) {
    unsigned words = 1 + rng() % 12;
    for (unsigned w = 0; w < words; ++w)
      text += (w ? " w" : "w") + std::to_string(rng() % 100);
    text += "\n";
  }
  return text;
}

TEST(SplitForEvaluation, LatestLineStartThatHoldsTheTokens) {
  for (unsigned seed = 0; seed < 20; ++seed) {
    std::string text = makeText(200, seed);
    for (int64_t want : {1, 7, 64, 300}) {
      llvm::Expected<TextSplit> split =
          splitForEvaluation(text, want, countWords);
      ASSERT_TRUE(bool(split)) << llvm::toString(split.takeError());
      // Brute force: the last line start whose tail has `want` tokens; the
      // last word start when that tail has more than twice as many.
      auto tail = [&](size_t i) {
        return countWords(llvm::StringRef(text).drop_front(i));
      };
      size_t line = 0, word = 0;
      for (size_t i = 1; i < text.size(); ++i) {
        if (text[i - 1] == '\n' && tail(i) >= want)
          line = i;
        if (isspace(text[i - 1]) && !isspace(text[i]) && tail(i) >= want)
          word = i;
      }
      size_t expected = line && tail(line) <= 2 * want ? line : word;
      EXPECT_EQ(split->offset, expected) << "seed " << seed << " want " << want;
      EXPECT_GE(split->tailTokens, want);
      EXPECT_EQ(split->tailTokens,
                countWords(llvm::StringRef(text).drop_front(split->offset)));
      EXPECT_EQ(split->headTokens,
                countWords(llvm::StringRef(text).take_front(split->offset)));
    }
  }
}

TEST(SplitForEvaluation, OneLongLineIsCutAtAWord) {
  std::string text;
  for (int w = 0; w < 500; ++w)
    text += "word" + std::to_string(w) + " ";
  llvm::Expected<TextSplit> split = splitForEvaluation(text, 100, countWords);
  ASSERT_TRUE(bool(split)) << llvm::toString(split.takeError());
  // 99 words and BOS: the tail starts at word 401.
  EXPECT_EQ(llvm::StringRef(text).drop_front(split->offset).substr(0, 8),
            "word401 ");
  EXPECT_EQ(split->tailTokens, 100);
  EXPECT_EQ(split->headTokens, 402);
}

TEST(SplitForEvaluation, TooShortATextIsRefused) {
  std::string text = makeText(3, 1);
  int64_t total = countWords(text);
  llvm::Expected<TextSplit> split =
      splitForEvaluation(text, total + 1, countWords);
  ASSERT_FALSE(bool(split));
  EXPECT_NE(llvm::toString(split.takeError()).find("fewer than"),
            std::string::npos);
}

TEST(PruneOrder, NamesRoundTrip) {
  for (PruneOrder o :
       {PruneOrder::Auto, PruneOrder::PruneFirst, PruneOrder::QuantizeFirst})
    EXPECT_EQ(parsePruneOrder(getPruneOrderName(o)), o);
  EXPECT_FALSE(parsePruneOrder("both"));
  EXPECT_EQ(getPruneOrderKey(PruneOrder::PruneFirst), "prune_then_quantize");
  EXPECT_EQ(getPruneOrderKey(PruneOrder::QuantizeFirst), "quantize_then_prune");
}

TEST(KlStats, ReadsModelRunStatistics) {
  llvm::Expected<KlFigures> f = parseKlStats(
      R"({"perplexity": {"ppl": 3}, "kl_divergence": {"mean": 0.25,
          "p99": 1.5, "same_top1": 0.875, "ln_ppl_ratio": -0.01,
          "positions": 62}, "run": {}})");
  ASSERT_TRUE(bool(f)) << llvm::toString(f.takeError());
  EXPECT_EQ(f->mean, 0.25);
  EXPECT_EQ(f->p99, 1.5);
  EXPECT_EQ(f->sameTop1, 0.875);
  EXPECT_EQ(f->lnPplRatio, -0.01);
  EXPECT_EQ(f->positions, 62);
  llvm::Expected<KlFigures> none = parseKlStats(R"({"perplexity": {}})");
  ASSERT_FALSE(bool(none));
  llvm::consumeError(none.takeError());
}

} // namespace
