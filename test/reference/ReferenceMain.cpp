//===- ReferenceMain.cpp - Run the reference executor on a model ----------===//
//
//   moec-reference MODEL --tokens=1,2,3 [-o logits.f32] [--routing-out=F]
//
// Prefills the tokens and writes the logits of every position, [T][V]
// little-endian f32, to -o, or prints them one position per line. For
// comparing with other implementations (check_against_transformers.py).
// --routing-out writes where each position went in each MoE layer, one
// line "position layer margin expert expert ...".
//
//===----------------------------------------------------------------------===//

#include "test/reference/ReferenceModel.h"

#include "compiler/model/WeightStore.h"

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

int main(int argc, char **argv) {
  cl::ParseCommandLineOptions(argc, argv, "moec reference executor\n");
  std::vector<int32_t> tokens;
  SmallVector<StringRef> parts;
  StringRef(tokenList).split(parts, ',', -1, /*KeepEmpty=*/false);
  for (StringRef part : parts) {
    int32_t token;
    if (part.trim().getAsInteger(10, token)) {
      errs() << "moec-reference: --tokens: '" << part
             << "' is not an integer\n";
      return 1;
    }
    tokens.push_back(token);
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
  reference::ReferenceModel model(**store);
  std::vector<float> logits = model.prefill(tokens);

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
