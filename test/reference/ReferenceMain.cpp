//===- ReferenceMain.cpp - Run the reference executor on a model ----------===//
//
//   moec-reference MODEL --tokens=1,2,3[;4,5,...] [-o logits.f32]
//                  [--routing-out=F] [--calibration-out=F] [--kv-cache=f16]
//
// Prefills the tokens and writes the logits of every position, [T][V]
// little-endian f32, to -o, or prints them one position per line. For
// comparing with other implementations (check_against_transformers.py).
// --routing-out writes where each position went in each MoE layer, one
// line "position layer margin expert expert ...". --calibration-out writes
// what an instrumented compiled model's calibration writes (calib.dat,
// runtime/exec/Calibration.h) for the same tokens: the oracle of
// `moec calibrate`.
//
//===----------------------------------------------------------------------===//

#include "test/reference/ReferenceModel.h"

#include "compiler/model/WeightStore.h"
#include "runtime/exec/Calibration.h"

#include <map>

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"

using namespace llvm;
using namespace moec;

static cl::opt<std::string>
    modelPath(cl::Positional, cl::Required,
              cl::desc("<model: GGUF file or checkpoint>"));
static cl::opt<std::string> tokenList("tokens", cl::Required,
                                      cl::desc("Comma-separated token ids"));
static cl::opt<std::string> outputPath("o", cl::desc("Write f32 logits here"),
                                       cl::value_desc("file"));
static cl::opt<std::string>
    routingPath("routing-out",
                cl::desc("Write each position's experts per layer here"),
                cl::value_desc("file"));

static cl::opt<std::string> calibrationPath(
    "calibration-out",
    cl::desc("Write the calibration statistics of the run here (calib.dat)"),
    cl::value_desc("file"));

static cl::opt<std::string> kvCache(
    "kv-cache", cl::init("f32"),
    cl::desc("Keys and values in the KV cache: f32, or f16 (rounded as "
             "they are stored, as moec --kv-cache=f16 keeps them)"));

static cl::opt<int> hessianLayer(
    "hessian-layer", cl::init(-2),
    cl::desc("With --hessian-out: the layer whose weights' input Hessians "
             "(X^T X) are written (-1: the weights outside the layers)"));
static cl::opt<std::string> hessianPath(
    "hessian-out", cl::desc("Write GPTQ's Hessians of --hessian-layer here"),
    cl::value_desc("file"));

namespace {

/// Feeds the reference's observations, one token at a time, to the
/// runtime's recorder.
class Recorder : public reference::ReferenceObserver {
public:
  Recorder(const model::ModelConfig &c)
      : recorder(uint32_t(c.numLayers), uint32_t(c.numExperts)),
        expertCount(uint32_t(c.numExperts)) {}
  void input(StringRef tensor, int expert, ArrayRef<float> x) override {
    // The recorder identifies tensors by the address of their name.
    const char *name = names.try_emplace(tensor.str()).first->first.c_str();
    std::vector<int32_t> offsets;
    if (expert >= 0)
      for (uint32_t e = 0; e <= expertCount; ++e)
        offsets.push_back(e > uint32_t(expert) ? 1 : 0);
    std::string error;
    if (!recorder.observeInput(name, x.data(), 1, int64_t(x.size()),
                               expert >= 0 ? offsets.data() : nullptr, error))
      fail(error);
  }
  void experts(int layer, const reference::ops::Routing &r,
               ArrayRef<std::vector<float>> outputs) override {
    std::vector<int32_t> ids(r.experts.begin(), r.experts.end()), inverse;
    std::vector<float> weights(r.weights.begin(), r.weights.end()), rows;
    for (size_t j = 0; j < outputs.size(); ++j) {
      inverse.push_back(int32_t(j));
      rows.insert(rows.end(), outputs[j].begin(), outputs[j].end());
    }
    int64_t k = int64_t(ids.size());
    recorder.recordRouting(layer, ids.data(), weights.data(), 1, k);
    std::string error;
    if (!outputs.empty() &&
        !recorder.observeExperts(layer, 1, k, int64_t(outputs[0].size()),
                                 rows.data(), inverse.data(), k, error))
      fail(error);
  }
  void tokens(int64_t count) override { recorder.addTokens(count); }

  exec::CalibrationRecorder recorder;

private:
  [[noreturn]] void fail(const std::string &error) {
    errs() << "moec-reference: calibration: " << error << "\n";
    std::exit(1);
  }
  uint32_t expertCount;
  std::map<std::string, int> names;
};

} // namespace

int main(int argc, char **argv) {
  cl::ParseCommandLineOptions(argc, argv, "moec reference executor\n");
  // Sequences separated by ';' run one after another, each from an empty
  // context (perplexity windows); their logits are concatenated.
  std::vector<std::vector<int32_t>> sequences;
  std::vector<int32_t> tokens;
  SmallVector<StringRef> seqParts;
  StringRef(tokenList).split(seqParts, ';', -1, /*KeepEmpty=*/false);
  for (StringRef seq : seqParts) {
    SmallVector<StringRef> parts;
    seq.split(parts, ',', -1, /*KeepEmpty=*/false);
    std::vector<int32_t> one;
    for (StringRef part : parts) {
      int32_t token;
      if (part.trim().getAsInteger(10, token)) {
        errs() << "moec-reference: --tokens: '" << part
               << "' is not an integer\n";
        return 1;
      }
      one.push_back(token);
      tokens.push_back(token);
    }
    if (!one.empty())
      sequences.push_back(std::move(one));
  }
  if (tokens.empty()) {
    errs() << "moec-reference: --tokens is empty\n";
    return 1;
  }
  Expected<std::unique_ptr<model::WeightStore>> store =
      model::WeightStore::open(modelPath);
  if (!store) {
    errs() << "moec-reference: " << toString(store.takeError()) << "\n";
    return 1;
  }
  for (int32_t token : tokens)
    if (token < 0 || token >= (*store)->getConfig().vocabSize) {
      errs() << "moec-reference: token " << token
             << " is outside the vocabulary of "
             << (*store)->getConfig().vocabSize << "\n";
      return 1;
    }
  if (kvCache != "f32" && kvCache != "f16") {
    errs() << "moec-reference: --kv-cache: expected f32 or f16, got '"
           << kvCache << "'\n";
    return 1;
  }
  reference::ReferenceModel model(**store);
  model.setF16KvCache(kvCache == "f16");
  std::unique_ptr<Recorder> recorder;
  if (!calibrationPath.empty() || !hessianPath.empty()) {
    recorder = std::make_unique<Recorder>((*store)->getConfig());
    model.setObserver(recorder.get());
    if (!hessianPath.empty())
      recorder->recorder.collectHessians(hessianLayer);
  }
  std::vector<float> logits;
  for (size_t i = 0; i < sequences.size(); ++i) {
    // --routing-out describes the last sequence only.
    if (i)
      model.reset();
    std::vector<float> part = model.prefill(sequences[i]);
    logits.insert(logits.end(), part.begin(), part.end());
  }
  if (recorder && !hessianPath.empty()) {
    std::string error;
    if (!recorder->recorder.writeHessians(hessianPath, error)) {
      errs() << "moec-reference: " << error << "\n";
      return 1;
    }
  }
  if (recorder && !calibrationPath.empty()) {
    std::string error;
    if (!recorder->recorder.write(calibrationPath, error)) {
      errs() << "moec-reference: " << error << "\n";
      return 1;
    }
  }

  if (!routingPath.empty()) {
    std::error_code ec;
    raw_fd_ostream os(routingPath, ec);
    if (ec) {
      errs() << "moec-reference: " << routingPath << ": " << ec.message()
             << "\n";
      return 1;
    }
    for (int64_t p = 0; p < model.getNumPositions(); ++p)
      for (int64_t l = 0; l < model.getConfig().numLayers; ++l) {
        const reference::ops::Routing &r = model.getRouting(p, l);
        if (r.experts.empty())
          continue; // a dense layer
        os << p << " " << l << " " << format("%.9g", r.margin);
        for (int64_t e : r.experts)
          os << " " << e;
        os << "\n";
      }
  }

  if (outputPath.empty()) {
    int64_t v = model.getConfig().vocabSize;
    for (size_t t = 0; t < tokens.size(); ++t) {
      for (int64_t i = 0; i < v; ++i)
        outs() << (i ? " " : "") << format("%.9g", logits[t * v + i]);
      outs() << "\n";
    }
    return 0;
  }
  std::error_code ec;
  raw_fd_ostream os(outputPath, ec);
  if (ec) {
    errs() << "moec-reference: " << outputPath << ": " << ec.message() << "\n";
    return 1;
  }
  for (float f : logits) {
    char bytes[4];
    support::endian::write32le(bytes, llvm::bit_cast<uint32_t>(f));
    os.write(bytes, 4);
  }
  return 0;
}
