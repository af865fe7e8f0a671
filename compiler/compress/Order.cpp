//===- Order.cpp - Pruning and quantization: which goes first -------------===//

#include "compiler/compress/Order.h"

#include <algorithm>
#include <vector>

using namespace llvm;
using namespace moec;
using namespace moec::compress;

namespace {

struct OrderName {
  PruneOrder order;
  const char *flag, *key;
};
constexpr OrderName kOrders[] = {
    {PruneOrder::Auto, "auto", "auto"},
    {PruneOrder::PruneFirst, "prune-first", "prune_then_quantize"},
    {PruneOrder::QuantizeFirst, "quantize-first", "quantize_then_prune"}};

bool isBlank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/// The latest of `starts` (ascending) whose tail holds `want` tokens, or
/// std::nullopt when not even the first does. Tails only shrink as the
/// start moves on, so a binary search finds it.
std::optional<size_t>
latestStart(StringRef text, ArrayRef<size_t> starts, int64_t want,
            function_ref<int64_t(StringRef)> countTokens) {
  size_t lo = 0, hi = starts.size(); // the answer is below hi
  if (starts.empty() || countTokens(text.drop_front(starts[0])) < want)
    return std::nullopt;
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (countTokens(text.drop_front(starts[mid])) >= want)
      lo = mid;
    else
      hi = mid;
  }
  return starts[lo];
}

} // namespace

std::optional<PruneOrder> moec::compress::parsePruneOrder(StringRef name) {
  for (const OrderName &o : kOrders)
    if (name == o.flag)
      return o.order;
  return std::nullopt;
}

StringRef moec::compress::getPruneOrderName(PruneOrder order) {
  for (const OrderName &o : kOrders)
    if (o.order == order)
      return o.flag;
  return "?";
}

StringRef moec::compress::getPruneOrderKey(PruneOrder order) {
  for (const OrderName &o : kOrders)
    if (o.order == order)
      return o.key;
  return "?";
}

Expected<TextSplit>
moec::compress::splitForEvaluation(StringRef text, int64_t tailTokens,
                                   function_ref<int64_t(StringRef)> countTokens) {
  int64_t total = countTokens(text);
  if (total < tailTokens)
    return createStringError("the text has " + std::to_string(total) +
                             " tokens, fewer than the " +
                             std::to_string(tailTokens) + " to hold aside");
  // Only the end of the text is searched: the shortest suffix (doubling)
  // that holds the tokens, so that a long text is not tokenized again and
  // again.
  size_t from = 0;
  for (size_t span = size_t(std::max<int64_t>(tailTokens, 16)) * 8;
       span < text.size(); span *= 2)
    if (countTokens(text.take_back(span)) >= tailTokens) {
      // Twice that: a cut lies at a line start after `from`.
      from = text.size() > 2 * span ? text.size() - 2 * span : 0;
      break;
    }
  auto starts = [&](bool words) {
    std::vector<size_t> s;
    for (size_t i = std::max<size_t>(from, 1); i < text.size(); ++i)
      if (words ? isBlank(text[i - 1]) && !isBlank(text[i])
                : text[i - 1] == '\n')
        s.push_back(i);
    return s;
  };
  std::optional<size_t> cut =
      latestStart(text, starts(false), tailTokens, countTokens);
  // Lines too long for a cut near the wanted size: a word start instead.
  if (!cut || countTokens(text.drop_front(*cut)) > 2 * tailTokens)
    if (std::optional<size_t> word =
            latestStart(text, starts(true), tailTokens, countTokens))
      cut = word;
  if (!cut)
    return createStringError("the text cannot be cut to leave " +
                             std::to_string(tailTokens) +
                             " tokens after the cut and any before it");
  TextSplit split;
  split.offset = *cut;
  split.headTokens = countTokens(text.take_front(*cut));
  split.tailTokens = countTokens(text.drop_front(*cut));
  return split;
}

Expected<KlFigures> moec::compress::parseKlStats(StringRef json) {
  Expected<json::Value> value = json::parse(json);
  if (!value)
    return value.takeError();
  const json::Object *root = value->getAsObject();
  const json::Object *kl = root ? root->getObject("kl_divergence") : nullptr;
  if (!kl)
    return createStringError("no kl_divergence object in model-run's "
                             "statistics");
  KlFigures f;
  std::optional<double> mean = kl->getNumber("mean"),
                        p99 = kl->getNumber("p99"),
                        top1 = kl->getNumber("same_top1"),
                        ratio = kl->getNumber("ln_ppl_ratio");
  std::optional<int64_t> positions = kl->getInteger("positions");
  if (!mean || !p99 || !top1 || !ratio || !positions)
    return createStringError("model-run's kl_divergence statistics lack "
                             "mean, p99, same_top1, ln_ppl_ratio or "
                             "positions");
  f.mean = *mean;
  f.p99 = *p99;
  f.sameTop1 = *top1;
  f.lnPplRatio = *ratio;
  f.positions = *positions;
  return f;
}

json::Object moec::compress::toJson(const KlFigures &f) {
  return json::Object{{"kl_mean", f.mean},
                      {"kl_p99", f.p99},
                      {"same_top1", f.sameTop1},
                      {"ln_ppl_ratio", f.lnPplRatio},
                      {"positions", f.positions}};
}
