//===- moec.cpp - The moec compiler driver --------------------------------===//
//
//   moec inspect MODEL            describe a model: architecture,
//                                 hyper-parameters, tensors, bytes per
//                                 expert and per token
//   moec synth --family=F ...     write a random-weight model
//   moec MODEL -o OUT_DIR         compile for a target (default host):
//                                 out/model.moeb, libmodel.a, model.h,
//                                 model-run
//   moec MODEL --compile-to=PHASE print the IR after a phase
//
//===----------------------------------------------------------------------===//

#include "compiler/compress/CalibrationFile.h"
#include "compiler/compress/Compress.h"
#include "compiler/driver/Compiler.h"
#include "compiler/gguf/GgufFile.h"
#include "compiler/import/Importer.h"
#include "compiler/import/Vocabulary.h"
#include "compiler/model/ModelConfig.h"
#include "compiler/model/Synth.h"
#include "compiler/model/WeightStore.h"
#include "compiler/support/FileUtil.h"
#include "compiler/emit/BundleWriter.h"
#include "compiler/plan/Plan.h"
#include "runtime/bundle/Bundle.h"
#include "runtime/tokenizer/PreTokenizer.h"
#include "runtime/tokenizer/Tokenizer.h"
#include "targets/TargetDescription.h"

#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <map>
#include <set>

using namespace llvm;
using namespace moec;

namespace {

cl::SubCommand inspectCommand("inspect",
                              "Describe a model (GGUF, or a safetensors "
                              "checkpoint): architecture, "
                              "hyper-parameters, tensors, bytes per expert "
                              "and per token");
cl::SubCommand synthCommand("synth", "Write a random-weight model");
cl::SubCommand bundleCommand(
    "bundle", "Plan a model under a memory budget and write its weight bundle "
              "(model.moeb) for a target");
cl::SubCommand tokenizeCommand("tokenize",
                               "Print the token ids of standard input's text");

cl::SubCommand calibrateCommand(
    "calibrate",
    "Run the model on text and collect what compression weighs errors by "
    "(calib.dat: per-column mean squared inputs, routing, expert scores)");

cl::OptionCategory synthCategory("moec synth options");

// calibrate
cl::opt<std::string> calibrateInput(cl::Positional, cl::Required,
                                    cl::desc("<model>"),
                                    cl::sub(calibrateCommand));
cl::opt<std::string> calibrateText("f", cl::Required,
                                   cl::desc("Calibration text (UTF-8)"),
                                   cl::value_desc("file"),
                                   cl::sub(calibrateCommand));
cl::opt<std::string> calibrateOutput("o", cl::Required,
                                     cl::desc("Output (calib.dat)"),
                                     cl::value_desc("file"),
                                     cl::sub(calibrateCommand));
cl::opt<int64_t> calibrateContext(
    "c", cl::init(512),
    cl::desc("Tokens per window (llama.cpp's imatrix -c; default 512)"),
    cl::sub(calibrateCommand));
cl::opt<int64_t> calibrateChunks(
    "chunks", cl::init(0),
    cl::desc("Evaluate at most this many windows (default: all the text)"),
    cl::sub(calibrateCommand));
cl::opt<unsigned> calibrateThreads("t", cl::init(0),
                                   cl::desc("Threads (default: all cores)"),
                                   cl::sub(calibrateCommand));
cl::opt<std::string> calibrateBudget(
    "memory-budget",
    cl::desc("Memory the instrumented model may use: experts stream from "
             "storage beyond it (e.g. 4G)"),
    cl::value_desc("size"), cl::sub(calibrateCommand));

// inspect
cl::opt<std::string> inspectInput(cl::Positional, cl::Required,
                                  cl::desc("<model.gguf | checkpoint "
                                           "directory>"),
                                  cl::sub(inspectCommand));

// bundle
cl::opt<std::string> bundleInput(cl::Positional, cl::Required,
                                 cl::desc("<model>"), cl::sub(bundleCommand));
cl::opt<std::string> bundleOutput("o", cl::Required,
                                  cl::desc("Output bundle (.moeb)"),
                                  cl::value_desc("file"),
                                  cl::sub(bundleCommand));
cl::opt<std::string> bundleTarget("target", cl::init("host"),
                                  cl::desc("Target (default host)"),
                                  cl::sub(bundleCommand));
cl::opt<std::string> bundleBudget(
    "memory-budget",
    cl::desc("Memory the model may use on the target (default: its memory)"),
    cl::value_desc("size"), cl::sub(bundleCommand));
cl::opt<std::string> bundleCalibration(
    "calibration", cl::desc("Routing counts (JSON routing.counts) to pin "
                            "the hottest experts"),
    cl::value_desc("file"), cl::sub(bundleCommand));
cl::opt<int64_t> bundleContext("context-length", cl::init(0),
                               cl::desc("KV cache positions (default: the "
                                        "model's)"),
                               cl::sub(bundleCommand));

// tokenize
cl::opt<std::string> tokenizeModel("model",
                                   cl::desc("GGUF file with the vocabulary "
                                            "(a vocabulary-only GGUF will do)"),
                                   cl::value_desc("file.gguf"),
                                   cl::sub(tokenizeCommand));
cl::opt<bool> tokenizeBos("bos", cl::desc("Start with the BOS token"),
                          cl::sub(tokenizeCommand));
cl::opt<bool> tokenizeParseSpecial(
    "parse-special",
    cl::desc("Control tokens spelled in the text are tokens (as llama.cpp's "
             "parse_special)"),
    cl::sub(tokenizeCommand));
cl::opt<std::string> tokenizePre(
    "pre-tokenizer",
    cl::desc("Use this pre-tokenizer instead of the file's tokenizer.ggml.pre"),
    cl::value_desc("name"), cl::sub(tokenizeCommand));
cl::opt<std::string> tokenizeSeparator(
    "separator",
    cl::desc("Standard input holds several texts separated by this string; "
             "print one line of ids per text"),
    cl::value_desc("string"), cl::sub(tokenizeCommand));
cl::opt<bool> tokenizeListPre("list-pre-tokenizers",
                              cl::desc("Print the supported pre-tokenizer "
                                       "names and exit"),
                              cl::sub(tokenizeCommand));

// synth
cl::opt<std::string> synthFamily("family", cl::Required,
                                 cl::desc("Model family: qwen3moe, qwen2moe, "
                                          "mixtral or olmoe"),
                                 cl::sub(synthCommand), cl::cat(synthCategory));
cl::opt<std::string> synthPreset("preset", cl::init("tiny"),
                                 cl::desc("Size preset: tiny or bench "
                                          "(default tiny)"),
                                 cl::sub(synthCommand), cl::cat(synthCategory));
cl::opt<std::string> synthOutput("o", cl::Required,
                                 cl::desc("Output file (.gguf)"),
                                 cl::value_desc("file"), cl::sub(synthCommand),
                                 cl::cat(synthCategory));
cl::opt<uint64_t> synthSeed("seed", cl::init(0), cl::desc("Random seed"),
                            cl::sub(synthCommand), cl::cat(synthCategory));
cl::opt<std::string> synthVocab("vocab",
                                cl::desc("Copy the tokenizer from this "
                                         "(vocabulary) GGUF"),
                                cl::value_desc("file.gguf"),
                                cl::sub(synthCommand), cl::cat(synthCategory));
cl::opt<std::string> synthExpertsType("experts-type",
                                      cl::desc("Type of routed expert tensors; a comma-separated "
                                               "list cycles through the layers"),
                                      cl::sub(synthCommand),
                                      cl::cat(synthCategory));
cl::opt<std::string> synthAttentionType(
    "attention-type",
    cl::desc("Type of attention and shared-expert projections"),
    cl::sub(synthCommand), cl::cat(synthCategory));
cl::opt<std::string> synthEmbeddingsType(
    "embeddings-type", cl::desc("Type of the token embedding and output"),
    cl::sub(synthCommand), cl::cat(synthCategory));
cl::opt<int64_t> synthLayers("layers", cl::init(0), cl::desc("Layer count"),
                             cl::sub(synthCommand), cl::cat(synthCategory));
cl::opt<int64_t> synthHidden("hidden", cl::init(0), cl::desc("Hidden size"),
                             cl::sub(synthCommand), cl::cat(synthCategory));
cl::opt<int64_t> synthHeads("heads", cl::init(0),
                            cl::desc("Attention head count"),
                            cl::sub(synthCommand), cl::cat(synthCategory));
cl::opt<int64_t> synthKvHeads("kv-heads", cl::init(0),
                              cl::desc("KV head count"), cl::sub(synthCommand),
                              cl::cat(synthCategory));
cl::opt<int64_t> synthHeadDim("head-dim", cl::init(0), cl::desc("Head size"),
                              cl::sub(synthCommand), cl::cat(synthCategory));
cl::opt<int64_t> synthExperts("experts", cl::init(0),
                              cl::desc("Routed expert count"),
                              cl::sub(synthCommand), cl::cat(synthCategory));
cl::opt<int64_t> synthExpertsUsed("experts-used", cl::init(0),
                                  cl::desc("Experts per token (top-k)"),
                                  cl::sub(synthCommand),
                                  cl::cat(synthCategory));
cl::opt<int64_t> synthExpertFfn("expert-ffn", cl::init(0),
                                cl::desc("Expert FFN size"),
                                cl::sub(synthCommand), cl::cat(synthCategory));
cl::opt<int64_t> synthSharedFfn("shared-ffn", cl::init(0),
                                cl::desc("Shared expert FFN size (qwen2moe)"),
                                cl::sub(synthCommand), cl::cat(synthCategory));
cl::opt<int64_t> synthVocabSize("vocab-size", cl::init(0),
                                cl::desc("Vocabulary size (without --vocab)"),
                                cl::sub(synthCommand), cl::cat(synthCategory));
cl::opt<float> synthRouterScale(
    "router-scale", cl::init(1.0f),
    cl::desc("Multiply the spread of router weights (sharper routing, as in "
             "trained models)"),
    cl::sub(synthCommand), cl::cat(synthCategory));
cl::opt<std::string> synthFormat("format", cl::init("gguf"),
                                 cl::desc("Output format: gguf (a file) or "
                                          "safetensors (a checkpoint "
                                          "directory with config.json)"),
                                 cl::sub(synthCommand), cl::cat(synthCategory));
cl::opt<unsigned> synthShards("shards", cl::init(1),
                              cl::desc("Safetensors shards (with "
                                       "model.safetensors.index.json when > 1)"),
                              cl::sub(synthCommand), cl::cat(synthCategory));
cl::opt<unsigned> synthThreads("t", cl::init(0),
                               cl::desc("Threads (default: all cores)"),
                               cl::sub(synthCommand), cl::cat(synthCategory));

// The top level: compiling.
cl::opt<std::string> compileInput(cl::Positional, cl::desc("<model>"),
                                  cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<std::string> compileTo("compile-to",
                               cl::desc("Stop after this phase and print its "
                                        "IR (input, plan, codegen, llvm)"),
                               cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<std::string> compileTarget("target",
                                   cl::desc("Target to compile for (see "
                                            "--list-targets)"),
                                   cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<int64_t> compileContextLength(
    "context-length", cl::init(0),
    cl::desc("Positions the KV cache holds (default: the model's)"),
    cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<unsigned> weightInterleave(
    "weight-interleave", cl::init(0),
    cl::desc("Rows of each quantized matrix stored interleaved block by "
             "block for the GEMV kernels (a power of two; 1: GGUF's "
             "row-major layout; default: the target's)"),
    cl::value_desc("rows"), cl::sub(cl::SubCommand::getTopLevel()),
    cl::sub(bundleCommand));
/// Applies --weight-interleave to `target`; an error message or "".
std::string applyWeightInterleave(targets::TargetDescription &target) {
  if (weightInterleave == 0)
    return "";
  if (weightInterleave > 64 || !isPowerOf2_32(weightInterleave))
    return "--weight-interleave must be a power of two up to 64, got " +
           std::to_string(weightInterleave);
  target.weightInterleave = weightInterleave;
  return "";
}
cl::opt<int64_t> compilePrefetchExtra(
    "prefetch-extra", cl::init(0),
    cl::desc("Experts the streamed model's prefetch predicts per token "
             "beyond the next layer's k (more recall, less precision)"),
    cl::value_desc("n"), cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<int64_t> compileMaxBatch(
    "max-batch", cl::init(128),
    cl::desc("Most tokens one forward call computes (prefill chunk; more "
             "tokens per expert in each grouped matmul, more scratch memory)"),
    cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<std::string> compileBudget(
    "memory-budget", cl::desc("Memory the plan may use (e.g. 6G)"),
    cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<std::string> compileCalibration(
    "calibration",
    cl::desc("calib.dat from moec calibrate (column importance, routing), or "
             "routing statistics (model-run --stats JSON)"),
    cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<std::string> compileDepfile(
    "MF", cl::desc("Write a Makefile depfile naming every input read"),
    cl::value_desc("file"), cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<std::string> compileActivations(
    "activations", cl::init("auto"),
    cl::desc("Activations of quantized matmuls: f32, int8 (8-bit, integer "
             "dot products) or auto (int8 where the target has fast integer "
             "dot products)"),
    cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<std::string> compileKvCache(
    "kv-cache", cl::init("auto"),
    cl::desc("Keys and values in the KV cache: f32, f16 (half the memory) "
             "or auto (f16 with 8-bit activations, f32 with f32 ones)"),
    cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<std::string> compileIntegerDot(
    "integer-dot", cl::Hidden,
    cl::desc("The integer dot product of 8-bit activations: portable, "
             "avx2, avx-vnni, avx512-vnni or amx (default: the target's "
             "best; for comparing them on one host)"),
    cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<bool> compileInstrument(
    "instrument",
    cl::desc("Generated code reports every projection's input and the routed "
             "experts' outputs to the runtime (what moec calibrate compiles; "
             "f32 activations)"),
    cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<bool> compileQuiet("quiet", cl::desc("No progress messages"),
                           cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<bool> listTargets("list-targets",
                          cl::desc("Describe the targets and exit"),
                          cl::sub(cl::SubCommand::getTopLevel()));
cl::OptionCategory compressCategory(
    "moec compression options (the compress phase)");
cl::opt<std::string> compressAll(
    "quantize",
    cl::desc("Format of every matrix (experts, attention, shared experts, "
             "embedding, output): q8_0, q6_k, q4_k, ..."),
    cl::value_desc("format"), cl::sub(cl::SubCommand::getTopLevel()),
    cl::cat(compressCategory));
cl::opt<std::string> compressExperts(
    "quantize-experts", cl::desc("Format of the routed experts"),
    cl::value_desc("format"), cl::sub(cl::SubCommand::getTopLevel()),
    cl::cat(compressCategory));
cl::opt<std::string> compressDense(
    "quantize-attention",
    cl::desc("Format of the attention and shared-expert projections"),
    cl::value_desc("format"), cl::sub(cl::SubCommand::getTopLevel()),
    cl::cat(compressCategory));
cl::opt<std::string> compressEmbedding(
    "quantize-embedding", cl::desc("Format of the token embedding"),
    cl::value_desc("format"), cl::sub(cl::SubCommand::getTopLevel()),
    cl::cat(compressCategory));
cl::opt<std::string> compressOutput(
    "quantize-output", cl::desc("Format of the output projection"),
    cl::value_desc("format"), cl::sub(cl::SubCommand::getTopLevel()),
    cl::cat(compressCategory));
cl::opt<std::string> compressFormatsFrom(
    "formats-from",
    cl::desc("Give each tensor the type it has in this GGUF (a llama.cpp "
             "preset of the same model, say); over the --quantize flags"),
    cl::value_desc("file.gguf"), cl::sub(cl::SubCommand::getTopLevel()),
    cl::cat(compressCategory));
cl::opt<std::string> compressRounding(
    "rounding", cl::init("nearest"),
    cl::desc("How values are rounded: nearest, importance or gptq (moec's "
             "own formats; the others by importance)"),
    cl::sub(cl::SubCommand::getTopLevel()), cl::cat(compressCategory));
cl::opt<bool> compressAllowRequantize(
    "allow-requantize",
    cl::desc("Re-quantize tensors that are already quantized in another "
             "format"),
    cl::sub(cl::SubCommand::getTopLevel()), cl::cat(compressCategory));
cl::opt<unsigned> compressThreads(
    "compress-threads", cl::init(0),
    cl::desc("Compression threads (default: all cores)"),
    cl::sub(cl::SubCommand::getTopLevel()), cl::cat(compressCategory));
cl::opt<std::string> compressSizeBudget(
    "size-budget",
    cl::desc("Choose each tensor's format from --formats so that all weights "
             "take at most SIZE bytes (e.g. 2.5G), least predicted error "
             "first; class flags (--quantize-attention ...) fix theirs"),
    cl::value_desc("size"), cl::sub(cl::SubCommand::getTopLevel()),
    cl::cat(compressCategory));
cl::opt<double> compressBitsPerWeight(
    "bits-per-weight", cl::init(0),
    cl::desc("Choose the routed experts' formats from --formats for this "
             "many bits per expert weight on average"),
    cl::sub(cl::SubCommand::getTopLevel()), cl::cat(compressCategory));
cl::opt<std::string> compressMenu(
    "formats", cl::init("q2_k,q3_k,q4_k,q5_k,q6_k,q8_0"),
    cl::desc("The formats --size-budget and --bits-per-weight choose from"),
    cl::sub(cl::SubCommand::getTopLevel()), cl::cat(compressCategory));
cl::opt<std::string> compressAllocatePer(
    "allocate-per", cl::init("auto"),
    cl::desc("What --size-budget and --bits-per-weight choose a format for: "
             "expert (each routed expert's gate+up and down apart; a layer's "
             "experts may then differ, which only moec runs), tensor (one "
             "per tensor, what GGUF can hold), or auto (expert, but tensor "
             "for --emit=gguf and --rounding=gptq)"),
    cl::value_desc("expert|tensor|auto"),
    cl::sub(cl::SubCommand::getTopLevel()), cl::cat(compressCategory));
cl::opt<double> compressPrune(
    "prune-experts", cl::init(0),
    cl::desc("Remove this share of every layer's routed experts, the least "
             "useful by --prune-scoring (needs --calibration=calib.dat)"),
    cl::sub(cl::SubCommand::getTopLevel()), cl::cat(compressCategory));
cl::opt<std::string> compressPruneScoring(
    "prune-scoring", cl::init("reap"),
    cl::desc("How experts are scored for pruning: reap (router weight x "
             "output norm) or frequency (tokens routed)"),
    cl::sub(cl::SubCommand::getTopLevel()), cl::cat(compressCategory));
cl::opt<std::string> compressPruneOrder(
    "prune-order", cl::init("auto"),
    cl::desc("With --prune-experts and quantization, which goes first: auto "
             "(both built, each second step calibrated again on the first's "
             "output; the lower KL divergence to the model on held-aside "
             "calibration windows kept), prune-first or quantize-first"),
    cl::sub(cl::SubCommand::getTopLevel()), cl::cat(compressCategory));
cl::opt<int64_t> compressOrderEvalChunks(
    "order-eval-chunks", cl::init(4),
    cl::desc("--prune-order=auto: windows at the end of the calibration text "
             "that no calibration sees, on which both orders are measured"),
    cl::sub(cl::SubCommand::getTopLevel()), cl::cat(compressCategory));
cl::opt<std::string> compileEmit(
    "emit", cl::init("bundle"),
    cl::desc("What -o gets: bundle (a directory: model.moeb, libmodel.a, "
             "model.h, model-run), gguf (the compressed model as one GGUF "
             "file for llama.cpp) or moec-gguf (the same, allowed to hold "
             "moec's own formats, which only moec reads)"),
    cl::sub(cl::SubCommand::getTopLevel()));
cl::opt<std::string> compileOutput("o", cl::desc("Output"),
                                   cl::value_desc("path"),
                                   cl::sub(cl::SubCommand::getTopLevel()));

int fail(const Twine &message) {
  WithColor::error(errs(), "moec") << message << "\n";
  return 1;
}
int fail(Error error) { return fail(toString(std::move(error))); }

/// An option that is `off`, `on` or `auto` (left unset: the compiler
/// chooses). False with `message` set for any other value.
bool parseChoice(StringRef flag, StringRef value, StringRef off, StringRef on,
                 std::optional<bool> &out, std::string &message) {
  if (value == off)
    out = false;
  else if (value == on)
    out = true;
  else if (value != "auto") {
    message = ("--" + flag + ": expected " + off + ", " + on +
               " or auto, got '" + value + "'")
                  .str();
    return false;
  }
  return true;
}

std::string humanBytes(uint64_t bytes) {
  const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = bytes;
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  std::string s;
  raw_string_ostream(s) << format(unit ? "%.2f %s" : "%.0f %s", value,
                                  units[unit]);
  return s;
}

//===----------------------------------------------------------------------===//
// inspect
//===----------------------------------------------------------------------===//

int inspectBundle(StringRef path);

int runInspect() {
  // Bundles are described by the runtime's own reader.
  if (auto head = MemoryBuffer::getFileSlice(inspectInput, 8, 0))
    if ((*head)->getBuffer() == MOEC_BUNDLE_MAGIC)
      return inspectBundle(inspectInput);
  Expected<std::unique_ptr<model::WeightStore>> opened =
      model::WeightStore::open(inspectInput);
  if (!opened)
    return fail(opened.takeError());
  const model::WeightStore &store = **opened;
  const model::ModelConfig &c = store.getConfig();

  uint64_t fileBytes = 0;
  for (const std::string &f : store.getFiles()) {
    uint64_t size = 0;
    sys::fs::file_size(f, size);
    fileBytes += size;
  }
  if (const gguf::GgufFile *file = store.getGguf())
    outs() << file->getPath() << ": GGUF v" << file->getVersion() << ", "
           << humanBytes(file->getFileSize()) << " (" << file->getFileSize()
           << " bytes), " << file->getTensors().size() << " tensors, "
           << file->getMetadata().size() << " metadata keys, alignment "
           << file->getAlignment() << "\n\n";
  else
    outs() << inspectInput << ": safetensors checkpoint, "
           << store.getFiles().size() << " shard"
           << (store.getFiles().size() == 1 ? "" : "s") << ", "
           << humanBytes(fileBytes) << " (" << fileBytes << " bytes)\n\n";
  outs() << "architecture      " << c.family->name << " (GGUF '"
         << c.family->ggufArch << "', transformers "
         << c.family->hfArchitecture << ")\n";
  outs() << "vocabulary        " << c.vocabSize << "\n";
  outs() << "hidden size       " << c.hiddenSize << "\n";
  outs() << "layers            " << c.numLayers << "\n";
  outs() << "attention         " << c.numHeads << " heads, " << c.numKvHeads
         << " KV heads, head size " << c.headDim << ", RoPE "
         << (c.rope == model::RopeStyle::NeoX ? "neox" : "interleaved")
         << " base " << format("%g", c.ropeTheta) << ", context "
         << c.contextLength << "\n";
  outs() << "experts           " << c.numExperts << " routed, top "
         << c.numExpertsUsed << (c.normTopK ? ", renormalised" : "")
         << ", expert FFN " << c.expertFfnSize << "\n";
  if (c.family->sharedExpert)
    outs() << "shared expert     FFN " << c.sharedExpertFfnSize
           << (c.family->sharedExpertGate ? ", sigmoid-gated" : "") << "\n";
  outs() << "RMSNorm epsilon   " << format("%g", c.rmsNormEps) << "\n";
  outs() << "tied embeddings   " << (c.tiedEmbeddings ? "yes" : "no") << "\n";
  if (const gguf::GgufFile *file = store.getGguf())
    if (const gguf::Value *tok = file->lookup("tokenizer.ggml.model"))
      if (std::optional<StringRef> name = tok->getAsString())
        outs() << "tokenizer         " << *name << "\n";

  outs() << "\ntensors:\n";
  outs() << format("  %-36s %-7s %-18s %12s\n", "name", "type", "shape",
                   "bytes");
  std::map<std::string, uint64_t> bytesByType;
  uint64_t expertBytesTotal = 0, embeddingBytes = 0, otherBytes = 0;
  uint64_t embeddingRowBytes = 0;
  for (const model::StoredTensor &t : store.getTensors()) {
    std::string shape;
    raw_string_ostream os(shape);
    interleave(llvm::reverse(t.dims), os, "x");
    StringRef type = gguf::getGgmlTypeInfo(t.type).name;
    outs() << format("  %-36s %-7s %-18s %12llu", t.name.c_str(),
                     type.str().c_str(), shape.c_str(),
                     static_cast<unsigned long long>(t.numBytes));
    if (t.extents.size() > 1)
      outs() << "  (" << t.extents.size() << " tensors, one per expert)";
    outs() << "\n";
    bytesByType[type.str()] += t.numBytes;
    // Bytes per expert, and the bytes one decoded token touches:
    // everything but the routed experts and the embedding table, one
    // embedding row, and k experts in every layer.
    if (t.role->tensorClass == "experts")
      expertBytesTotal += t.numBytes;
    else if (t.role->kind == model::TensorRole::TokenEmbedding) {
      embeddingBytes = t.numBytes;
      embeddingRowBytes = t.numBytes / c.vocabSize;
    } else
      otherBytes += t.numBytes;
  }
  outs() << "\nbytes by type:";
  for (const auto &[type, bytes] : bytesByType)
    outs() << " " << type << " " << humanBytes(bytes) << ";";
  outs() << "\n";

  uint64_t perExpert = expertBytesTotal / (c.numLayers * c.numExperts);
  uint64_t perToken = otherBytes + embeddingRowBytes +
                      perExpert * c.numExpertsUsed * c.numLayers;
  if (c.tiedEmbeddings)
    perToken += embeddingBytes; // the output projection reads all of it
  outs() << "\nbytes per expert  " << humanBytes(perExpert) << " (" << perExpert
         << ": gate + up + down of one expert in one layer)\n";
  outs() << "all experts       " << humanBytes(expertBytesTotal) << " ("
         << format("%.1f%%", 100.0 * expertBytesTotal / store.getTotalBytes())
         << " of the weights)\n";
  outs() << "bytes per token   " << humanBytes(perToken) << " (" << perToken
         << ": dense weights " << otherBytes << " + one embedding row "
         << embeddingRowBytes << " + " << c.numExpertsUsed << " experts x "
         << c.numLayers << " layers"
         << (c.tiedEmbeddings ? " + tied output projection" : "") << ")\n";
  return 0;
}

//===----------------------------------------------------------------------===//
// bundle
//===----------------------------------------------------------------------===//

int runBundle() {
  Expected<targets::TargetDescription> target =
      targets::lookupTarget(bundleTarget);
  if (!target)
    return fail("--target: " + toString(target.takeError()));
  Expected<std::unique_ptr<model::WeightStore>> store =
      model::WeightStore::open(bundleInput);
  if (!store)
    return fail(store.takeError());
  plan::PlanOptions options;
  options.contextLength = bundleContext;
  if (!bundleBudget.empty()) {
    Expected<uint64_t> budget = plan::parseSize(bundleBudget);
    if (!budget)
      return fail("--memory-budget: " + toString(budget.takeError()));
    options.budgetBytes = *budget;
  }
  std::optional<plan::RoutingCounts> counts;
  if (!bundleCalibration.empty()) {
    Expected<plan::RoutingCounts> c =
        plan::readRoutingCounts(bundleCalibration, (*store)->getConfig());
    if (!c)
      return fail(c.takeError());
    counts = std::move(*c);
    options.calibration = &*counts;
  }
  Expected<plan::Plan> p = plan::makePlan(**store, *target, options);
  if (!p)
    return fail(p.takeError());
  emit::BundleOptions bundleOptions;
  if (std::string e = applyWeightInterleave(*target); !e.empty())
    return fail(e);
  bundleOptions.ioBlock = target->ioBlockBytes;
  bundleOptions.weightInterleave = target->weightInterleave;
  bundleOptions.plan = p->toJson();
  std::string vocabularyNote;
  bundleOptions.vocabulary =
      importer::getBundleVocabulary(**store, vocabularyNote);
  if (!vocabularyNote.empty())
    WithColor::warning(errs(), "moec bundle") << vocabularyNote << "\n";
  bool terminal = sys::Process::StandardErrIsDisplayed();
  auto progress = [&](uint64_t done, uint64_t total) {
    if (terminal)
      errs() << format("\rmoec bundle: %s of %s   ", humanBytes(done).c_str(),
                       humanBytes(total).c_str());
  };
  if (Error e = emit::writeBundle(**store, bundleOutput, bundleOptions,
                                  progress))
    return fail(std::move(e));
  if (terminal)
    errs() << "\r";
  errs() << "moec bundle: wrote " << bundleOutput << ": "
         << (p->allExpertsResident
                 ? std::string("every expert resident")
                 : "expert cache " + humanBytes(p->expertCacheBytes) + ", " +
                       std::to_string(p->pinned.size()) + " pinned, prefetch " +
                       std::to_string(p->prefetchDepth) + " layer(s) ahead")
         << "\n";
  return 0;
}

/// The weights' formats: bytes of all weight tensors (what --size-budget
/// counts), then the routed experts' formats: a histogram, bits per weight
/// per layer, and per expert where a layer mixes formats.
void describeWeights(const bundle::Bundle &b) {
  auto elementsOf = [](uint32_t type, uint64_t bytes) -> uint64_t {
    std::optional<gguf::GgmlTypeInfo> info = gguf::lookupGgmlType(type);
    return info ? bytes / uint64_t(info->blockBytes) * uint64_t(info->blockSize)
                : 0;
  };
  auto typeName = [](uint32_t type) -> std::string {
    std::optional<gguf::GgmlTypeInfo> info = gguf::lookupGgmlType(type);
    return info ? info->name.str() : "type " + std::to_string(type);
  };
  uint64_t weightBytes = 0, expertBytes = 0, expertElements = 0;
  for (const moec_bundle_tensor &t : b.getTensors())
    weightBytes += t.size;
  std::map<std::string, std::pair<uint64_t, uint64_t>> histogram; // parts, bytes
  std::map<uint32_t, std::pair<uint64_t, uint64_t>> perLayer; // bytes, elements
  std::map<uint32_t, std::set<std::string>> layerFormats;
  for (const moec_bundle_expert &e : b.getExperts()) {
    std::string formats;
    for (int p = 0; p < 3; ++p) {
      weightBytes += e.part_size[p];
      expertBytes += e.part_size[p];
      uint64_t n = elementsOf(e.type[p], e.part_size[p]);
      expertElements += n;
      perLayer[e.layer].first += e.part_size[p];
      perLayer[e.layer].second += n;
      auto &h = histogram[typeName(e.type[p])];
      ++h.first;
      h.second += e.part_size[p];
      formats += (p ? "/" : "") + typeName(e.type[p]);
    }
    layerFormats[e.layer].insert(formats);
  }
  outs() << "weights: " << weightBytes << " bytes (" << humanBytes(weightBytes)
         << "); routed experts " << expertBytes << " bytes, "
         << format("%.3f", expertElements ? 8.0 * double(expertBytes) /
                                                double(expertElements)
                                          : 0.0)
         << " bits per weight\n";
  // Storage layouts: how many matrices the GEMV kernels read as tiles of
  // interleaved rows (runtime/abi/moec_bundle.h, `layout`).
  std::map<uint32_t, uint64_t> layouts; // layout -> tensors or expert parts
  for (const moec_bundle_tensor &t : b.getTensors())
    ++layouts[t.layout];
  for (const moec_bundle_expert &e : b.getExperts())
    for (int p = 0; p < 3; ++p)
      ++layouts[e.layout[p]];
  outs() << "storage (tensors and expert parts):";
  const char *separator = " ";
  for (const auto &[layout, count] : layouts) {
    outs() << separator << count
           << (layout ? " with rows interleaved by " + std::to_string(layout)
                      : std::string(" row-major"));
    separator = ", ";
  }
  outs() << "\n";
  outs() << "expert formats:";
  for (const auto &[name, h] : histogram)
    outs() << " " << name << " x" << h.first << " (" << humanBytes(h.second)
           << ")";
  outs() << "\n";
  for (const auto &[layer, sums] : perLayer) {
    outs() << format("  layer %-3u %6.3f bits  ", layer,
                     sums.second ? 8.0 * double(sums.first) / double(sums.second)
                                 : 0.0);
    const std::set<std::string> &f = layerFormats[layer];
    if (f.size() == 1) {
      outs() << "gate/up/down " << *f.begin() << "\n";
      continue;
    }
    outs() << "mixed:";
    for (const moec_bundle_expert &e : b.getExperts())
      if (e.layer == layer)
        outs() << " " << e.expert << "=" << typeName(e.type[0]) << "/"
               << typeName(e.type[1]) << "/" << typeName(e.type[2]);
    outs() << "\n";
  }
}

/// The order of pruning and quantization a compression record chose.
void describeOrder(const json::Value &compression) {
  const json::Object *record = compression.getAsObject();
  const json::Object *order = record ? record->getObject("order") : nullptr;
  if (!order)
    return;
  StringRef chosen = order->getString("chosen").value_or("?");
  outs() << "compression order: " << chosen;
  if (!order->getBoolean("searched").value_or(false)) {
    outs() << " (as --prune-order said)\n";
    return;
  }
  auto kl = [&](StringRef key) {
    const json::Object *o = order->getObject(key);
    return o ? o->getNumber("kl_mean").value_or(-1) : -1;
  };
  StringRef other = chosen == "prune_then_quantize" ? "quantize_then_prune"
                                                    : "prune_then_quantize";
  outs() << format(" (mean KL divergence %.6g; ", kl(chosen)) << other
         << format(" %.6g; on held-aside calibration windows)\n", kl(other));
}

int inspectBundle(StringRef path) {
  std::string error;
  std::unique_ptr<bundle::Bundle> b = bundle::Bundle::open(path.str(), error);
  if (!b)
    return fail(error);
  const moec_bundle_header &h = b->getHeader();
  outs() << path << ": moec bundle " << h.version_major << "."
         << h.version_minor << ", " << humanBytes(h.file_size) << " ("
         << h.file_size << " bytes), I/O block " << h.io_block << "\n";
  Expected<json::Value> meta = json::parse(b->getMetadata());
  if (meta) {
    if (const json::Object *o = meta->getAsObject()) {
      if (const json::Value *m = o->get("model"))
        outs() << "model   " << *m << "\n";
      if (const json::Value *p = o->get("plan"))
        outs() << "plan    " << *p << "\n";
    }
  } else {
    consumeError(meta.takeError());
  }
  outs() << "resident tensors: " << b->getTensors().size() << ", "
         << humanBytes(h.resident_size) << " at offset " << h.resident_offset
         << "\n";
  uint64_t extentBytes = 0, largest = 0;
  for (const moec_bundle_expert &e : b->getExperts()) {
    extentBytes += e.size;
    largest = std::max<uint64_t>(largest, e.size);
  }
  outs() << "expert extents: " << b->getExperts().size() << ", "
         << humanBytes(extentBytes) << ", largest " << largest << " bytes\n";
  if (meta)
    if (const json::Object *o = meta->getAsObject())
      if (const json::Value *c = o->get("compression")) {
        outs() << "compression " << *c << "\n";
        describeOrder(*c);
      }
  describeWeights(*b);
  if (b->getVocabulary().empty()) {
    outs() << "tokenizer: none (model-run takes token ids only)\n";
  } else {
    tokenizer::Vocabulary v;
    std::string error;
    if (!tokenizer::Vocabulary::deserialize(b->getVocabulary(), v, error))
      return fail(path.str() + ": " + error);
    outs() << "tokenizer: " << v.model;
    if (v.model == "gpt2")
      outs() << " (pre-tokenizer " << v.preTokenizer << ")";
    outs() << ", " << v.tokens.size() << " tokens, " << v.merges.size()
           << " merges, chat template "
           << (v.chatTemplate.empty() ? "none" : "present") << "\n";
  }
  return 0;
}

//===----------------------------------------------------------------------===//
// tokenize
//===----------------------------------------------------------------------===//

int runTokenize() {
  if (tokenizeListPre) {
    for (const std::string &name : tokenizer::PreTokenizer::getSupportedNames())
      outs() << name << "\n";
    return 0;
  }
  if (tokenizeModel.empty())
    return fail("tokenize: --model is required");
  Expected<std::unique_ptr<gguf::GgufFile>> file =
      gguf::GgufFile::open(tokenizeModel);
  if (!file)
    return fail(file.takeError());
  Expected<tokenizer::Vocabulary> vocabulary =
      importer::readVocabulary(**file);
  if (!vocabulary)
    return fail(vocabulary.takeError());
  if (tokenizePre.getNumOccurrences())
    vocabulary->preTokenizer = tokenizePre;
  std::string error;
  std::unique_ptr<tokenizer::Tokenizer> tok =
      tokenizer::Tokenizer::create(std::move(*vocabulary), error);
  if (!tok)
    return fail(tokenizeModel + ": " + error);
  ErrorOr<std::unique_ptr<MemoryBuffer>> input = MemoryBuffer::getSTDIN();
  if (!input)
    return fail("cannot read standard input: " + input.getError().message());
  SmallVector<StringRef> texts;
  if (tokenizeSeparator.empty())
    texts.push_back((*input)->getBuffer());
  else
    (*input)->getBuffer().split(texts, StringRef(tokenizeSeparator));
  for (StringRef text : texts) {
    std::vector<int32_t> ids =
        tok->encode(text, tokenizeBos, tokenizeParseSpecial);
    for (size_t i = 0; i < ids.size(); ++i)
      outs() << (i ? " " : "") << ids[i];
    outs() << "\n";
  }
  return 0;
}

//===----------------------------------------------------------------------===//
// synth
//===----------------------------------------------------------------------===//

int runSynth() {
  const model::FamilyInfo *family = model::lookupFamilyByName(synthFamily);
  if (!family)
    return fail("unknown family '" + synthFamily + "' (supported: " +
                model::familyNames() + ")");
  model::SynthOptions options;
  if (!model::applyPreset(synthPreset, *family, options))
    return fail("unknown preset '" + synthPreset + "' (tiny, bench)");
  model::ModelConfig &c = options.config;
  struct {
    cl::opt<int64_t> &flag;
    int64_t &field;
  } sizes[] = {{synthLayers, c.numLayers},
               {synthHidden, c.hiddenSize},
               {synthHeads, c.numHeads},
               {synthKvHeads, c.numKvHeads},
               {synthHeadDim, c.headDim},
               {synthExperts, c.numExperts},
               {synthExpertsUsed, c.numExpertsUsed},
               {synthExpertFfn, c.expertFfnSize},
               {synthSharedFfn, c.sharedExpertFfnSize},
               {synthVocabSize, c.vocabSize}};
  for (auto &s : sizes) {
    if (s.flag.getNumOccurrences() == 0)
      continue;
    if (s.flag <= 0)
      return fail("--" + s.flag.ArgStr + " must be positive, got " +
                  Twine(static_cast<int64_t>(s.flag)));
    s.field = s.flag;
  }
  if (synthSharedFfn.getNumOccurrences() && !family->sharedExpert)
    return fail("--shared-ffn: family " + family->name +
                " has no shared expert");
  struct {
    cl::opt<std::string> &flag;
    gguf::GgmlType &field;
  } types[] = {{synthExpertsType, options.expertsType},
               {synthAttentionType, options.attentionType},
               {synthEmbeddingsType, options.embeddingsType}};
  for (auto &t : types) {
    if (t.flag.getNumOccurrences() == 0)
      continue;
    // Routed experts may cycle through a list of types, layer by layer.
    if (&t.field == &options.expertsType && StringRef(t.flag).contains(',')) {
      SmallVector<StringRef> names;
      StringRef(t.flag).split(names, ',');
      for (StringRef name : names) {
        std::optional<gguf::GgmlType> type = gguf::parseGgmlTypeName(name);
        if (!type)
          return fail("--experts-type: unknown type '" + name +
                      "' (supported: " + gguf::computeSupportedGgmlTypeNames() +
                      ")");
        options.expertsTypesPerLayer.push_back(*type);
      }
      continue;
    }
    std::optional<gguf::GgmlType> type = gguf::parseGgmlTypeName(t.flag);
    if (!type)
      return fail("--" + t.flag.ArgStr + ": unknown type '" + t.flag +
                  "' (supported: " + gguf::computeSupportedGgmlTypeNames() +
                  ")");
    t.field = *type;
  }
  options.seed = synthSeed;
  if (!(synthRouterScale > 0.0f) || synthRouterScale > 1000.0f)
    return fail("--router-scale must be in (0, 1000], got " +
                std::to_string(synthRouterScale));
  options.routerScale = synthRouterScale;
  options.vocabularyFile = synthVocab;
  options.threads = synthThreads;

  bool terminal = sys::Process::StandardErrIsDisplayed();
  auto start = std::chrono::steady_clock::now();
  auto lastReport = start;
  auto progress = [&](uint64_t done, uint64_t total) {
    auto now = std::chrono::steady_clock::now();
    if (!terminal || now - lastReport < std::chrono::milliseconds(200))
      return;
    lastReport = now;
    errs() << format("\rmoec synth: %s of %s (%.0f%%)   ",
                     humanBytes(done).c_str(), humanBytes(total).c_str(),
                     100.0 * done / total);
  };
  if (synthFormat == "safetensors") {
    if (Error e = model::writeSynthSafetensors(options, synthOutput, synthShards))
      return fail(std::move(e));
  } else if (synthFormat == "gguf") {
    if (synthShards.getNumOccurrences())
      return fail("--shards: GGUF output is one file");
    if (Error e = model::writeSynthGguf(options, synthOutput, progress))
      return fail(std::move(e));
  } else {
    return fail("--format: unknown format '" + synthFormat +
                "' (gguf, safetensors)");
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  uint64_t size = 0;
  if (synthFormat == "safetensors") {
    std::error_code ec;
    for (sys::fs::directory_iterator it(synthOutput, ec), end; it != end && !ec;
         it.increment(ec)) {
      uint64_t fileSize = 0;
      sys::fs::file_size(it->path(), fileSize);
      size += fileSize;
    }
  } else {
    sys::fs::file_size(synthOutput, size);
  }
  if (terminal)
    errs() << "\r";
  errs() << "moec synth: wrote " << synthOutput << " (" << family->name << ", "
         << humanBytes(size) << ") in " << format("%.1f", seconds) << " s\n";
  return 0;
}

//===----------------------------------------------------------------------===//
// calibrate
//===----------------------------------------------------------------------===//

/// Compiles the model with instrumentation into a scratch directory beside
/// the output and runs it over the text (model-run's perplexity windows),
/// which writes calib.dat.
int runCalibrate() {
  if (calibrateContext < 8)
    return fail("-c must be at least 8, got " +
                Twine(static_cast<int64_t>(calibrateContext)));
  if (calibrateChunks < 0)
    return fail("--chunks must not be negative");
  if (!sys::fs::exists(calibrateText))
    return fail("-f: cannot read " + calibrateText);
  SmallString<256> parent(calibrateOutput);
  sys::fs::make_absolute(parent);
  sys::path::remove_filename(parent);
  SmallString<256> scratch;
  if (std::error_code ec = sys::fs::createUniqueDirectory(
          parent + "/moec-calibrate", scratch))
    return fail("cannot create a scratch directory in " + parent + ": " +
                ec.message());
  struct RemoveScratch {
    SmallString<256> &dir;
    ~RemoveScratch() { sys::fs::remove_directories(dir); }
  } removeScratch{scratch};

  driver::CompileOptions options;
  options.modelPath = calibrateInput;
  Expected<targets::TargetDescription> host = targets::lookupTarget("host");
  if (!host)
    return fail(host.takeError());
  options.target = *host;
  options.contextLength = calibrateContext;
  options.instrument = true;
  options.int8Activations = false;
  options.progress = true;
  if (!calibrateBudget.empty()) {
    Expected<uint64_t> budget = plan::parseSize(calibrateBudget);
    if (!budget)
      return fail("--memory-budget: " + toString(budget.takeError()));
    options.memoryBudget = *budget;
  }
  SmallString<256> out(scratch);
  sys::path::append(out, "out");
  {
    driver::Compilation compilation(std::move(options));
    errs() << "moec calibrate: compiling " << calibrateInput
           << " with instrumentation\n";
    if (Error e = compilation.emit(out))
      return fail(std::move(e));
  }
  SmallString<256> runner(out);
  sys::path::append(runner, "model-run");
  // The text by its absolute path: calib.dat records it, for GPTQ to run it
  // again from wherever the compiler runs.
  SmallString<256> text(calibrateText);
  sys::fs::make_absolute(text);
  std::vector<std::string> args = {
      runner.str().str(), "--perplexity", "-f", text.str().str(), "-c",
      std::to_string(calibrateContext), "--calibration-out", calibrateOutput};
  if (calibrateThreads)
    args.insert(args.end(), {"-t", std::to_string(calibrateThreads)});
  if (calibrateChunks)
    args.insert(args.end(), {"--chunks", std::to_string(calibrateChunks)});
  if (!calibrateBudget.empty())
    args.insert(args.end(), {"--memory-budget", calibrateBudget});
  std::vector<StringRef> argRefs(args.begin(), args.end());
  errs() << "moec calibrate: running it on " << calibrateText << "\n";
  std::string message;
  int rc = sys::ExecuteAndWait(runner, argRefs, std::nullopt, {}, 0, 0,
                               &message);
  if (rc != 0)
    return fail("the instrumented model failed" +
                (message.empty() ? "" : ": " + message) +
                " (its messages are above)");
  errs() << "moec calibrate: wrote " << calibrateOutput << "\n";
  return 0;
}

//===----------------------------------------------------------------------===//
// compile
//===----------------------------------------------------------------------===//

int runListTargets() {
  for (const targets::TargetDescription &t : targets::getTargets()) {
    outs() << t.name << ": " << t.summary << "\n";
    outs() << "  triple " << t.triple << ", cpu " << t.cpu << ", backend "
           << targets::getBackendName(t.backend)
           << (targets::isBackendImplemented(t.backend) ? ""
                                                        : " (not implemented yet)")
           << ", vectors " << t.vectorBits << " bits\n";
    outs() << "  features";
    for (const std::string &f : t.features)
      outs() << " " << f;
    outs() << "\n  caches L1d " << humanBytes(t.l1dBytes) << ", L2 "
           << humanBytes(t.l2Bytes) << ", L3 " << humanBytes(t.l3Bytes)
           << "; memory " << humanBytes(t.memoryBytes);
    if (t.memoryGBps > 0)
      outs() << " at " << format("%.0f", t.memoryGBps) << " GB/s";
    if (t.storageGBps > 0)
      outs() << "; storage " << format("%.2f", t.storageGBps) << " GB/s";
    outs() << "; I/O block " << t.ioBlockBytes << " bytes\n";
  }
  return 0;
}

int runCompile() {
  std::optional<driver::Phase> phase =
      compileTo.empty() ? driver::Phase::Emit : driver::parsePhase(compileTo);
  if (!phase)
    return fail("--compile-to: unknown phase '" + compileTo +
                "' (phases: " + driver::phaseNames() + ")");
  driver::CompileOptions options;
  options.modelPath = compileInput;
  Expected<targets::TargetDescription> target =
      targets::lookupTarget(compileTarget.empty() ? StringRef("host")
                                                  : StringRef(compileTarget));
  if (!target)
    return fail("--target: " + toString(target.takeError()));
  if (*phase > driver::Phase::Plan &&
      !targets::isBackendImplemented(target->backend))
    return fail("target '" + target->name + "' uses the " +
                targets::getBackendName(target->backend) +
                " backend, which does not exist yet (implemented: the CPU "
                "backend; see --list-targets)");
  options.target = *target;
  if (std::string e = applyWeightInterleave(options.target); !e.empty())
    return fail(e);
  if (compileContextLength < 0)
    return fail("--context-length must be positive, got " +
                Twine(static_cast<int64_t>(compileContextLength)));
  options.contextLength = compileContextLength;
  if (compileMaxBatch < 1 || compileMaxBatch > 4096)
    return fail("--max-batch must be in [1, 4096], got " +
                Twine(static_cast<int64_t>(compileMaxBatch)));
  options.maxBatch = compileMaxBatch;
  if (compilePrefetchExtra < 0 || compilePrefetchExtra > 1024)
    return fail("--prefetch-extra must be in [0, 1024], got " +
                Twine(static_cast<int64_t>(compilePrefetchExtra)));
  options.prefetchExtra = compilePrefetchExtra;
  if (!compileBudget.empty()) {
    Expected<uint64_t> budget = plan::parseSize(compileBudget);
    if (!budget)
      return fail("--memory-budget: " + toString(budget.takeError()));
    options.memoryBudget = *budget;
  }
  options.calibrationPath = compileCalibration;
  options.integerDot = compileIntegerDot;
  std::string badChoice;
  if (!parseChoice("activations", compileActivations, "f32", "int8",
                   options.int8Activations, badChoice) ||
      !parseChoice("kv-cache", compileKvCache, "f32", "f16",
                   options.f16KvCache, badChoice))
    return fail(badChoice);
  options.progress = !compileQuiet;
  options.instrument = compileInstrument;

  // Compression.
  if (compileEmit != "bundle" && compileEmit != "gguf" &&
      compileEmit != "moec-gguf")
    return fail("--emit: expected bundle, gguf or moec-gguf, got '" +
                compileEmit + "'");
  bool emitGguf = compileEmit != "bundle";
  compress::CompressOptions compression;
  bool compressing = emitGguf;
  auto formatFlag = [&](cl::opt<std::string> &flag,
                        std::optional<gguf::GgmlType> &into) -> bool {
    if (flag.empty())
      return true;
    std::optional<gguf::GgmlType> type = gguf::parseGgmlTypeName(flag);
    if (!type || !gguf::getGgmlTypeInfo(*type).computeSupported) {
      fail("--" + flag.ArgStr + ": unknown format '" + flag +
           "' (supported: " + gguf::computeSupportedGgmlTypeNames() + ")");
      return false;
    }
    into = *type;
    compressing = true;
    return true;
  };
  std::optional<gguf::GgmlType> all;
  if (!formatFlag(compressAll, all))
    return 1;
  compression.expertsType = compression.denseType = compression.embeddingType =
      compression.outputType = all;
  if (!formatFlag(compressExperts, compression.expertsType) ||
      !formatFlag(compressDense, compression.denseType) ||
      !formatFlag(compressEmbedding, compression.embeddingType) ||
      !formatFlag(compressOutput, compression.outputType))
    return 1;
  if (!compressFormatsFrom.empty()) {
    Expected<std::unique_ptr<gguf::GgufFile>> preset =
        gguf::GgufFile::open(compressFormatsFrom);
    if (!preset)
      return fail("--formats-from: " + toString(preset.takeError()));
    for (const gguf::TensorInfo &t : (*preset)->getTensors())
      compression.tensorTypes[t.name] = t.type.type;
    compressing = true;
  }
  std::optional<compress::Rounding> rounding =
      compress::parseRounding(compressRounding);
  if (!rounding)
    return fail("--rounding: expected nearest, importance or gptq, got '" +
                compressRounding + "'");
  compression.rounding = *rounding;
  // The importance of each column: a calib.dat (moec calibrate) given to
  // --calibration; a --stats file carries routing only.
  std::unique_ptr<compress::CalibrationFile> calibrationFile;
  if (!compileCalibration.empty()) {
    auto head = MemoryBuffer::getFileSlice(compileCalibration, 8, 0);
    if (head && compress::CalibrationFile::hasMagic((*head)->getBuffer())) {
      Expected<std::unique_ptr<compress::CalibrationFile>> c =
          compress::CalibrationFile::read(compileCalibration);
      if (!c)
        return fail("--calibration: " + toString(c.takeError()));
      calibrationFile = std::move(*c);
      compression.calibration = calibrationFile.get();
    } else if (emitGguf) {
      return fail("--calibration: " + compileCalibration +
                  " is not a calib.dat (moec calibrate); routing statistics "
                  "alone do not change --emit=gguf");
    }
  }
  if (compression.rounding != compress::Rounding::Nearest &&
      !compression.calibration && !compileQuiet)
    WithColor::note(errs(), "moec")
        << "--rounding=importance without a calib.dat (--calibration): "
           "every column weighs the same\n";
  compression.allowRequantize = compressAllowRequantize;
  compression.forLlamaCpp = compileEmit == "gguf";
  compression.threads = compressThreads;
  if (!compressSizeBudget.empty() || compressBitsPerWeight != 0) {
    if (!compressSizeBudget.empty() && compressBitsPerWeight != 0)
      return fail("--size-budget and --bits-per-weight: give one budget");
    compress::AllocationOptions allocation;
    if (!compressSizeBudget.empty()) {
      Expected<uint64_t> size = plan::parseSize(compressSizeBudget);
      if (!size)
        return fail("--size-budget: " + toString(size.takeError()));
      allocation.sizeBudget = *size;
    } else {
      if (!(compressBitsPerWeight > 0 && compressBitsPerWeight <= 32))
        return fail("--bits-per-weight must be in (0, 32], got " +
                    std::to_string(double(compressBitsPerWeight)));
      allocation.bitsPerWeight = compressBitsPerWeight;
    }
    SmallVector<StringRef> names;
    StringRef(compressMenu).split(names, ',', -1, false);
    for (StringRef name : names) {
      std::optional<gguf::GgmlType> type = gguf::parseGgmlTypeName(name.trim());
      if (!type || !gguf::getGgmlTypeInfo(*type).computeSupported)
        return fail("--formats: unknown format '" + name + "' (supported: " +
                    gguf::computeSupportedGgmlTypeNames() + ")");
      allocation.menu.push_back(*type);
    }
    if (compressAllocatePer == "expert")
      allocation.perExpert = true;
    else if (compressAllocatePer == "auto")
      allocation.perExpert = !compression.forLlamaCpp &&
                             compression.rounding != compress::Rounding::Gptq;
    else if (compressAllocatePer != "tensor")
      return fail("--allocate-per: expected expert, tensor or auto, got '" +
                  compressAllocatePer + "'");
    options.allocation = allocation;
    compressing = true;
  }
  if (compressPrune != 0) {
    std::optional<compress::PruneScoring> scoring =
        compress::parsePruneScoring(compressPruneScoring);
    if (!scoring)
      return fail("--prune-scoring: expected reap or frequency, got '" +
                  compressPruneScoring + "'");
    if (!(compressPrune > 0 && compressPrune < 1))
      return fail("--prune-experts must be in (0, 1), got " +
                  std::to_string(double(compressPrune)));
    if (!compression.calibration)
      return fail("--prune-experts: needs --calibration=calib.dat (moec "
                  "calibrate) to score the experts");
    std::optional<compress::PruneOrder> order =
        compress::parsePruneOrder(compressPruneOrder);
    if (!order)
      return fail("--prune-order: expected auto, prune-first or "
                  "quantize-first, got '" + compressPruneOrder + "'");
    if (compressOrderEvalChunks < 1)
      return fail("--order-eval-chunks must be at least 1, got " +
                  Twine(int64_t(compressOrderEvalChunks)));
    options.prune = compress::PruneOptions{compressPrune, *scoring, *order,
                                           compressOrderEvalChunks};
    compressing = true;
  } else if (compressPruneOrder.getNumOccurrences() ||
             compressOrderEvalChunks.getNumOccurrences()) {
    return fail("--prune-order and --order-eval-chunks: need "
                "--prune-experts");
  }
  if (compressing)
    options.compress = compression;
  if (emitGguf) {
    if (*phase != driver::Phase::Emit)
      return fail("--emit=" + compileEmit + " writes the compressed model; "
                  "it does not combine with --compile-to");
    if (compileOutput.empty())
      return fail("-o: the output file (.gguf) is required");
    options.compressedPath = compileOutput;
  } else if (!compileOutput.empty() && *phase == driver::Phase::Emit) {
    // The compressed model's temporary GGUF goes beside the output, on the
    // disk that holds the bundle, not in a RAM-backed /tmp.
    SmallString<256> parent(compileOutput);
    sys::fs::make_absolute(parent);
    sys::path::remove_filename(parent);
    // -o a/b/out with a/b not there yet: the output's directories are made
    // anyway, the scratch file needs its parent first.
    if (std::error_code ec = sys::fs::create_directories(parent))
      return fail("-o: cannot create " + parent + ": " + ec.message());
    options.scratchDirectory = parent.str().str();
  }

  driver::Compilation compilation(std::move(options));
  if (emitGguf) {
    if (Error e = compilation.runUntil(driver::Phase::Compress))
      return fail(std::move(e));
    if (!compileDepfile.empty())
      if (Error e = writeFileAtomically(compileDepfile, [&](raw_ostream &os) {
            os << compileOutput << ":";
            for (const std::string &input : compilation.getInputs())
              os << " \\\n  " << input;
            os << "\n";
          }))
        return fail(std::move(e));
    return 0;
  }
  if (*phase != driver::Phase::Emit) {
    if (Error e = compilation.runUntil(*phase))
      return fail(std::move(e));
    if (compileOutput.empty() || compileOutput == "-") {
      compilation.getModule()->print(outs());
      return 0;
    }
    // A failed or killed run leaves no half-written output.
    if (Error e = writeFileAtomically(compileOutput, [&](raw_ostream &os) {
          compilation.getModule()->print(os);
        }))
      return fail(std::move(e));
    return 0;
  }
  if (compileOutput.empty())
    return fail("-o: the output directory is required");
  if (Error e = compilation.emit(compileOutput))
    return fail(std::move(e));
  if (!compileDepfile.empty()) {
    SmallString<256> bundlePath(compileOutput);
    sys::path::append(bundlePath, "model.moeb");
    if (Error e = writeFileAtomically(compileDepfile, [&](raw_ostream &os) {
          os << bundlePath << ":";
          for (const std::string &input : compilation.getInputs())
            os << " \\\n  " << input;
          os << "\n";
        }))
      return fail(std::move(e));
  }
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions({&synthCategory, &compressCategory});
  cl::ParseCommandLineOptions(
      argc, argv,
      "moec: compile Mixture-of-Experts models for small devices\n\n"
      "  moec inspect MODEL\n"
      "  moec synth --family=F [--preset=tiny|bench] [sizes] [types] -o FILE\n"
      "  moec tokenize --model FILE.gguf [--bos] < text\n"
      "  moec calibrate MODEL -f TEXT -o calib.dat [-c N]\n"
      "  moec bundle MODEL [--target=T] [--memory-budget=SIZE] -o model.moeb\n"
      "  moec MODEL [--target=T] [--quantize=FORMAT ...] -o OUT_DIR\n"
      "  moec MODEL --quantize=FORMAT ... --emit=gguf -o FILE.gguf\n"
      "  moec MODEL --compile-to=PHASE [-o FILE]\n");
  if (inspectCommand)
    return runInspect();
  if (synthCommand)
    return runSynth();
  if (calibrateCommand)
    return runCalibrate();
  if (tokenizeCommand)
    return runTokenize();
  if (bundleCommand)
    return runBundle();
  if (listTargets)
    return runListTargets();
  if (compileInput.empty())
    return fail("no model given; see 'moec --help'");
  return runCompile();
}
