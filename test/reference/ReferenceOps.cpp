//===- ReferenceOps.cpp - Scalar building blocks of the reference model ---===//

#include "test/reference/ReferenceOps.h"

#include "llvm/Support/ErrorHandling.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <numeric>

using namespace llvm;
using namespace moec;
using namespace moec::reference;

void reference::fail(const Twine &message) {
  reportFatalUsageError("moec reference: " + message);
}

double ops::dot(ArrayRef<float> a, ArrayRef<float> b) {
  assert(a.size() == b.size() && "dot of vectors of different lengths");
  double sum = 0.0;
  for (size_t i = 0; i < a.size(); ++i)
    sum += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return sum;
}

void ops::matVec(ArrayRef<float> w, ArrayRef<float> x, MutableArrayRef<float> y,
                 ArrayRef<float> bias) {
  size_t cols = x.size();
  if (w.size() != cols * y.size())
    fail("matVec: weight of " + Twine(w.size()) + " elements is not " +
         Twine(y.size()) + " x " + Twine(cols));
  if (!bias.empty() && bias.size() != y.size())
    fail("matVec: bias of " + Twine(bias.size()) + " elements for " +
         Twine(y.size()) + " outputs");
  for (size_t o = 0; o < y.size(); ++o) {
    double sum = dot(w.slice(o * cols, cols), x);
    if (!bias.empty())
      sum += bias[o];
    y[o] = static_cast<float>(sum);
  }
}

void ops::rmsNorm(ArrayRef<float> x, ArrayRef<float> w, double eps,
                  MutableArrayRef<float> y) {
  assert(x.size() == w.size() && x.size() == y.size());
  double sumSquares = 0.0;
  for (float v : x)
    sumSquares += static_cast<double>(v) * static_cast<double>(v);
  double scale =
      1.0 / std::sqrt(sumSquares / static_cast<double>(x.size()) + eps);
  for (size_t i = 0; i < x.size(); ++i)
    y[i] = static_cast<float>(static_cast<double>(x[i]) * scale *
                              static_cast<double>(w[i]));
}

double ops::ropeInverseFrequency(double theta, int64_t i, int64_t d) {
  return std::pow(theta,
                  -2.0 * static_cast<double>(i) / static_cast<double>(d));
}

void ops::rope(MutableArrayRef<float> head, int64_t position, double theta,
               model::RopeStyle style) {
  int64_t d = static_cast<int64_t>(head.size());
  assert(d % 2 == 0 && "RoPE needs an even head size");
  int64_t half = d / 2;
  for (int64_t i = 0; i < half; ++i) {
    int64_t first = style == model::RopeStyle::NeoX ? i : 2 * i;
    int64_t second = style == model::RopeStyle::NeoX ? i + half : 2 * i + 1;
    double angle =
        static_cast<double>(position) * ropeInverseFrequency(theta, i, d);
    double c = std::cos(angle), s = std::sin(angle);
    double a = head[first], b = head[second];
    head[first] = static_cast<float>(a * c - b * s);
    head[second] = static_cast<float>(b * c + a * s);
  }
}

std::vector<double> ops::softmax(ArrayRef<double> x) {
  if (x.empty())
    return {};
  double max = *std::max_element(x.begin(), x.end());
  std::vector<double> out(x.size());
  double sum = 0.0;
  for (size_t i = 0; i < x.size(); ++i)
    sum += out[i] = std::exp(x[i] - max);
  for (double &v : out)
    v /= sum;
  return out;
}

double ops::silu(double x) { return x / (1.0 + std::exp(-x)); }

double ops::sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

std::vector<int64_t> ops::topK(ArrayRef<double> values, int64_t k) {
  assert(k >= 0 && k <= static_cast<int64_t>(values.size()));
  std::vector<int64_t> order(values.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    if (values[a] != values[b])
      return values[a] > values[b];
    return a < b; // ties: the lower index first
  });
  order.resize(k);
  return order;
}

ops::Routing ops::route(ArrayRef<float> routerLogits, int64_t k,
                        bool normalize) {
  std::vector<double> logits(routerLogits.begin(), routerLogits.end());
  std::vector<double> probs = softmax(logits);
  Routing r;
  r.experts = topK(probs, k);
  double sum = 0.0;
  for (int64_t e : r.experts) {
    r.weights.push_back(probs[e]);
    sum += probs[e];
  }
  if (normalize)
    for (double &w : r.weights)
      w /= sum;
  r.margin = std::numeric_limits<double>::infinity();
  if (k > 0 && k < static_cast<int64_t>(probs.size())) {
    double bestLeftOut = -1.0;
    for (size_t e = 0; e < probs.size(); ++e)
      if (std::find(r.experts.begin(), r.experts.end(),
                    static_cast<int64_t>(e)) == r.experts.end())
        bestLeftOut = std::max(bestLeftOut, probs[e]);
    r.margin = probs[r.experts.back()] - bestLeftOut;
  }
  return r;
}
