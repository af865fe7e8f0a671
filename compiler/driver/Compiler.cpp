//===- Compiler.cpp - The compilation pipeline, phase by phase -----------===//

#include "compiler/driver/Compiler.h"
#include "compiler/driver/WeightLayout.h"

#include "codegen/cpu/EmitObject.h"
#include "codegen/cpu/LowerToKernels.h"
#include "compiler/compress/CalibrationFile.h"
#include "compiler/import/Importer.h"
#include "compiler/import/Vocabulary.h"
#include "compiler/support/FileUtil.h"
#include "runtime/tokenizer/Tokenizer.h"
#include "dialects/moe/IR/MoeDialect.h"
#include "dialects/moe/IR/MoeOps.h"
#include "dialects/qnt/IR/QntDialect.h"
#include "dialects/qnt/IR/QntOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"

#include "llvm/Object/Archive.h"
#include "llvm/Object/ArchiveWriter.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/Triple.h"

#include <chrono>
#include <thread>
#include <utility>

using namespace llvm;
using namespace moec;
using namespace moec::driver;

namespace {

Error makeError(const Twine &message) {
  return createStringError(inconvertibleErrorCode(), message);
}

struct PhaseName {
  Phase phase;
  const char *name;
};
constexpr PhaseName kPhases[] = {{Phase::Input, "input"},
                                 {Phase::Compress, "compress"},
                                 {Phase::Plan, "plan"},
                                 {Phase::Codegen, "codegen"},
                                 {Phase::LLVM, "llvm"},
                                 {Phase::Emit, "emit"}};

/// Collects the diagnostics of a phase into one error message.
class DiagnosticCollector {
public:
  explicit DiagnosticCollector(mlir::MLIRContext &context)
      : handler(&context, [this](mlir::Diagnostic &d) {
          if (d.getSeverity() == mlir::DiagnosticSeverity::Error) {
            if (!messages.empty())
              messages += "\n";
            messages += d.str();
            for (const mlir::Diagnostic &note : d.getNotes())
              messages += "\n  note: " + note.str();
          }
          return mlir::success();
        }) {}
  Error takeError(const Twine &phase) {
    return makeError(phase + ": " +
                     (messages.empty() ? std::string("failed") : messages));
  }

private:
  std::string messages;
  mlir::ScopedDiagnosticHandler handler;
};

/// x86 with AVX2: where 8-bit activations are the default and the integer
/// dot products start.
bool isX86WithAvx2(const targets::TargetDescription &target) {
  return llvm::Triple(target.triple).isX86() && target.hasFeature("avx2");
}

} // namespace

std::optional<Phase> moec::driver::parsePhase(StringRef name) {
  for (const PhaseName &p : kPhases)
    if (name == p.name)
      return p.phase;
  return std::nullopt;
}

StringRef moec::driver::getPhaseName(Phase phase) {
  for (const PhaseName &p : kPhases)
    if (p.phase == phase)
      return p.name;
  return "?";
}

std::string moec::driver::phaseNames() {
  std::string names;
  for (const PhaseName &p : kPhases)
    names += (names.empty() ? "" : ", ") + std::string(p.name);
  return names;
}

unsigned moec::driver::getVectorLanes(const targets::TargetDescription &t) {
  return std::max(4u, std::min(16u, t.vectorBits / 32));
}

Compilation::Compilation(CompileOptions options)
    : options(std::move(options)), context(new mlir::MLIRContext()) {
  context->loadDialect<moe::MoeDialect, qnt::QntDialect, mlir::func::FuncDialect,
                       mlir::arith::ArithDialect, mlir::tensor::TensorDialect,
                       mlir::scf::SCFDialect, mlir::vector::VectorDialect,
                       mlir::memref::MemRefDialect, mlir::math::MathDialect,
                       mlir::LLVM::LLVMDialect>();
}

Compilation::~Compilation() {
  store.reset();
  for (const std::string &f : scratchFiles)
    sys::fs::remove(f);
}

Expected<std::string> Compilation::makeScratchFile(StringRef stem) {
  SmallString<256> path;
  std::error_code ec =
      options.scratchDirectory.empty()
          ? sys::fs::createTemporaryFile(stem, "gguf", path)
          : sys::fs::createUniqueFile(options.scratchDirectory + "/" + stem +
                                          "-%%%%%%.gguf",
                                      path);
  if (ec)
    return makeError("compress: cannot create a temporary file: " +
                     ec.message());
  scratchFiles.push_back(path.str().str());
  return path.str().str();
}

Error Compilation::runUntil(Phase last) {
  using Step = Error (Compilation::*)();
  const Step steps[] = {&Compilation::runInput, &Compilation::runCompress,
                        &Compilation::runPlan,
                        &Compilation::runCodegen, &Compilation::runLLVM};
  int target = std::min(int(last), int(Phase::LLVM));
  for (int p = done + 1; p <= target; ++p) {
    if (Error e = (this->*steps[p])())
      return e;
    if (Error e = verifyContract(Phase(p)))
      return e;
    done = p;
  }
  return Error::success();
}

Error Compilation::runInput() {
  Expected<std::unique_ptr<model::WeightStore>> s =
      model::WeightStore::open(options.modelPath);
  if (!s)
    return s.takeError();
  store = std::move(*s);
  for (const std::string &f : store->getFiles())
    inputs.insert(f);
  return importStore();
}

Error Compilation::importStore() {
  DiagnosticCollector diagnostics(*context);
  Expected<mlir::OwningOpRef<mlir::ModuleOp>> m =
      importer::importModel(*context, *store, options.contextLength);
  if (!m)
    return m.takeError();
  module = std::move(*m);
  return Error::success();
}

//===----------------------------------------------------------------------===//
// compress
//===----------------------------------------------------------------------===//

namespace {

/// A directory removed with this object.
struct ScratchDirectory {
  std::string path;
  explicit ScratchDirectory(std::string path) : path(std::move(path)) {}
  ScratchDirectory(ScratchDirectory &&other)
      : path(std::exchange(other.path, {})) {}
  ~ScratchDirectory() {
    if (!path.empty())
      sys::fs::remove_directories(path);
  }
};

/// A new directory `stem`-XXXXXX in `parent` (the system's temporary
/// directory when empty).
Expected<ScratchDirectory> makeScratchDirectory(StringRef parent,
                                                StringRef stem) {
  SmallString<256> dir;
  std::error_code ec =
      parent.empty() ? sys::fs::createUniqueDirectory(stem, dir)
                     : sys::fs::createUniqueDirectory(parent + "/" + stem, dir);
  if (ec)
    return makeError("compress: cannot create a scratch directory: " +
                     ec.message());
  sys::fs::make_absolute(dir);
  return ScratchDirectory(dir.str().str());
}

/// An error unless `calibration` names the text it was collected on
/// (calib.dat's "source"), for `flag` to run it again.
Error checkCalibrationText(const compress::CalibrationFile &calibration,
                           const Twine &flag) {
  const std::string &text = calibration.getSource().text;
  if (!text.empty() && sys::fs::exists(text))
    return Error::success();
  return makeError(flag + ": " + calibration.getPath() +
                   " does not name a readable calibration text (" +
                   (text.empty() ? std::string("none") : text) +
                   "); calibrate again with moec calibrate");
}

/// Runs `args` (the program first) with its output into `log`; an error
/// with the log's text when it fails.
Error runLogged(ArrayRef<std::string> args, StringRef log, const Twine &what) {
  std::vector<StringRef> argRefs(args.begin(), args.end());
  std::optional<StringRef> redirects[] = {std::nullopt, log, log};
  std::string message;
  int rc = sys::ExecuteAndWait(args.front(), argRefs, std::nullopt, redirects,
                               0, 0, &message);
  if (rc == 0)
    return Error::success();
  auto text = MemoryBuffer::getFile(log);
  return makeError(what + " failed" + (message.empty() ? "" : ": " + message) +
                   "\n" + (text ? (*text)->getBuffer() : "") +
                   "command: " + join(args, " "));
}

/// Renames `from` to `to`, copying where they are on different disks.
Error moveFile(StringRef from, StringRef to) {
  if (!sys::fs::rename(from, to))
    return Error::success();
  std::string temp = (to + ".moec-tmp").str();
  if (std::error_code ec = sys::fs::copy_file(from, temp))
    return makeError("cannot copy " + from + " to " + temp + ": " +
                     ec.message());
  if (std::error_code ec = sys::fs::rename(temp, to))
    return makeError("cannot rename " + temp + " to " + to + ": " +
                     ec.message());
  sys::fs::remove(from);
  return Error::success();
}

Error writeText(StringRef path, StringRef text) {
  std::error_code ec;
  raw_fd_ostream os(path, ec);
  if (!ec)
    os << text;
  if (ec || (os.close(), os.has_error()))
    return makeError("cannot write " + path + ": " +
                     (ec ? ec : os.error()).message());
  return Error::success();
}

std::string printed(const char *spec, double value) {
  std::string s;
  raw_string_ostream(s) << format(spec, value);
  return s;
}

double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                       start)
      .count();
}

json::Array keptJson(const compress::PruneChoice &choice) {
  json::Array kept;
  for (const std::vector<uint32_t> &k : choice.kept)
    kept.push_back(json::Array(k));
  return kept;
}

uint64_t weightBytes(const model::WeightStore &store) {
  uint64_t bytes = 0;
  for (const model::StoredTensor &t : store.getTensors())
    bytes += t.numBytes;
  return bytes;
}

} // namespace

struct Compilation::Compressed {
  /// The compression record (the bundle's "compression").
  json::Object record;
  /// Routing statistics numbered as the compressed model's experts (for
  /// the plan), when it was pruned.
  std::unique_ptr<compress::CalibrationFile> routing;
  double seconds = 0;
};

void Compilation::say(const Twine &what) const {
  if (options.progress)
    errs() << "moec: " << what << "\n";
}

std::function<void(uint64_t, uint64_t)>
Compilation::progressBar(StringRef what) {
  if (!options.progress || !sys::Process::StandardErrIsDisplayed())
    return {};
  return [what = what.str()](uint64_t doneBytes, uint64_t total) {
    errs() << format("\rmoec: %s %3.0f%%   ", what.c_str(),
                     100.0 * double(doneBytes) / double(total ? total : 1));
  };
}

void Compilation::endProgressBar() {
  if (options.progress && sys::Process::StandardErrIsDisplayed())
    errs() << "\r";
}

Error Compilation::runCompress() {
  if (!options.compress)
    return Error::success();
  compress::CompressOptions compressOptions = *options.compress;
  std::string path = options.compressedPath;
  if (path.empty()) {
    Expected<std::string> scratch = makeScratchFile("moec-compressed");
    if (!scratch)
      return scratch.takeError();
    path = *scratch;
  }
  std::optional<Compressed> result;
  if (!options.prune) {
    result.emplace();
    if (Error e = quantizeStep(*store, options.modelPath, compressOptions, path,
                               result->record))
      return e;
  } else {
    const compress::CalibrationFile *calibration = compressOptions.calibration;
    if (!calibration)
      return makeError("--prune-experts: needs a calib.dat from moec "
                       "calibrate (--calibration) to score the experts");
    // Whether anything is quantized at all: if not, the order is moot.
    bool quantizes = options.allocation.has_value();
    if (!quantizes) {
      Expected<compress::CompressionPlan> plan =
          compress::planCompression(*store, compressOptions);
      if (!plan)
        return plan.takeError();
      quantizes = plan->changesAnything();
    }
    // The quantization weighs errors by statistics (importance, Hessians,
    // the allocator's predicted errors): after pruning they are measured
    // again, on the pruned model.
    bool usesStatistics = options.allocation ||
                          compressOptions.rounding != compress::Rounding::Nearest;
    compress::PruneOrder order = options.prune->order;
    const compress::CalibrationFile::Source &source = calibration->getSource();
    if (quantizes && order != compress::PruneOrder::Auto &&
        (usesStatistics || order == compress::PruneOrder::QuantizeFirst))
      if (Error e = checkCalibrationText(
              *calibration, "--prune-order=" +
                                compress::getPruneOrderName(order) +
                                " (the second step calibrates again)"))
        return e;
    Expected<ScratchDirectory> scratch =
        makeScratchDirectory(options.scratchDirectory, "moec-compress");
    if (!scratch)
      return scratch.takeError();
    Expected<Compressed> built =
        !quantizes
            ? pruneThenQuantize(*calibration, std::nullopt, path, scratch->path)
        : order == compress::PruneOrder::Auto ? searchOrder(path)
        : order == compress::PruneOrder::PruneFirst
            ? pruneThenQuantize(*calibration,
                                usesStatistics
                                    ? std::optional(source)
                                    : std::nullopt,
                                path, scratch->path)
            : quantizeThenPrune(*calibration, source, path, scratch->path);
    if (!built)
      return built.takeError();
    result.emplace(std::move(*built));
    if (quantizes && order != compress::PruneOrder::Auto)
      result->record["order"] =
          json::Object{{"chosen", compress::getPruneOrderKey(order)},
                       {"searched", false}};
    prunedCalibration = std::move(result->routing);
  }
  result->record["rounding"] =
      compressOptions.rounding == compress::Rounding::Gptq ? "gptq"
      : compressOptions.rounding == compress::Rounding::Importance
          ? "importance"
          : "nearest";
  result->record["calibration"] =
      compressOptions.calibration
          ? json::Value(compressOptions.calibration->getPath())
          : json::Value(nullptr);
  compression = json::Value(std::move(result->record));
  // The rest of the pipeline reads the compressed model as any other.
  module = nullptr;
  store.reset();
  Expected<std::unique_ptr<model::WeightStore>> s =
      model::WeightStore::open(path);
  if (!s)
    return s.takeError();
  store = std::move(*s);
  return importStore();
}

Error Compilation::quantizeStep(const model::WeightStore &source,
                                StringRef sourcePath,
                                compress::CompressOptions compressOptions,
                                StringRef path, json::Object &record) {
  if (options.allocation) {
    say("allocating formats under the budget (measuring each tensor in " +
        Twine(options.allocation->menu.size()) + " formats)");
    Expected<compress::Allocation> allocation = compress::allocateFormats(
        source, compressOptions, *options.allocation);
    if (!allocation)
      return allocation.takeError();
    for (const auto &entry : allocation->types)
      compressOptions.tensorTypes[entry.getKey()] = entry.getValue();
    for (const auto &entry : allocation->expertTypes)
      compressOptions.expertTypes[entry.getKey()] = entry.getValue();
    for (const std::string &line : allocation->log)
      say("  " + line);
    record["budget_bytes"] = allocation->budgetBytes;
    record["allocated_bytes"] = allocation->allocatedBytes;
    record["predicted_error"] = allocation->predictedError;
    record["gap_bound"] = allocation->gapBound;
  }
  Expected<compress::CompressionPlan> plan =
      compress::planCompression(source, compressOptions);
  if (!plan)
    return plan.takeError();
  record["weight_bytes"] = plan->totalBytes();
  StringMap<std::vector<uint8_t>> gptqBytes;
  if (compressOptions.rounding == compress::Rounding::Gptq) {
    if (Error e =
            runGptq(source, sourcePath, *plan, compressOptions, gptqBytes))
      return e;
    compressOptions.precomputed = &gptqBytes;
  }
  for (const std::string &w : plan->warnings)
    WithColor::warning(errs(), "moec") << w << "\n";
  say("compressing " + Twine(source.getTensors().size()) + " tensors into " +
      path);
  for (const std::string &line : plan->summary())
    say("  " + line);
  if (Error e = compress::writeCompressedGguf(source, *plan, compressOptions,
                                              path, progressBar("compress")))
    return e;
  endProgressBar();
  return Error::success();
}

Expected<compress::PruneChoice>
Compilation::pruneStep(const model::WeightStore &source,
                       const compress::CalibrationFile &calibration,
                       StringRef path) {
  Expected<compress::PruneChoice> choice = compress::choosePrunedExperts(
      source.getConfig(), calibration, *options.prune);
  if (!choice)
    return choice.takeError();
  say("pruning " + Twine(int(options.prune->fraction * 100 + 0.5)) +
      "% of the routed experts by " +
      compress::getPruneScoringName(options.prune->scoring) + " score");
  for (const std::string &line : choice->log)
    say("  " + line);
  if (Error e = compress::writePrunedGguf(source, *choice, path,
                                          progressBar("prune")))
    return std::move(e);
  endProgressBar();
  return choice;
}

Expected<Compilation::Compressed> Compilation::pruneThenQuantize(
    const compress::CalibrationFile &calibration,
    const std::optional<compress::CalibrationFile::Source> &recalibrate,
    StringRef path, StringRef scratch) {
  auto start = std::chrono::steady_clock::now();
  SmallString<256> pruned(scratch);
  sys::path::append(pruned, "pruned.gguf");
  Expected<compress::PruneChoice> choice =
      pruneStep(*store, calibration, pruned);
  if (!choice)
    return choice.takeError();
  Compressed result;
  {
    Expected<std::unique_ptr<model::WeightStore>> prunedStore =
        model::WeightStore::open(pruned);
    if (!prunedStore)
      return prunedStore.takeError();
    if (recalibrate) {
      say("calibrating the pruned model");
      Expected<std::unique_ptr<compress::CalibrationFile>> again =
          calibrate(pruned, *recalibrate, scratch);
      if (!again)
        return again.takeError();
      result.routing = std::move(*again);
    } else {
      // The statistics follow the experts to their new numbers.
      result.routing = calibration.withExperts(choice->kept);
    }
    compress::CompressOptions compressOptions = *options.compress;
    compressOptions.calibration = result.routing.get();
    if (Error e = quantizeStep(**prunedStore, pruned, compressOptions, path,
                               result.record))
      return std::move(e);
  }
  sys::fs::remove(pruned);
  result.record["pruning"] = json::Object{
      {"fraction", options.prune->fraction},
      {"scoring", compress::getPruneScoringName(options.prune->scoring)},
      {"kept_experts", keptJson(*choice)}};
  result.seconds = secondsSince(start);
  return result;
}

Expected<Compilation::Compressed>
Compilation::quantizeThenPrune(const compress::CalibrationFile &calibration,
                               const compress::CalibrationFile::Source &recalibrate,
                               StringRef path, StringRef scratch) {
  auto start = std::chrono::steady_clock::now();
  SmallString<256> quantized(scratch);
  sys::path::append(quantized, "quantized.gguf");
  Compressed result;
  compress::CompressOptions compressOptions = *options.compress;
  compressOptions.calibration = &calibration;
  if (Error e = quantizeStep(*store, options.modelPath, compressOptions,
                             quantized, result.record))
    return std::move(e);
  say("calibrating the quantized model");
  Expected<std::unique_ptr<compress::CalibrationFile>> again =
      calibrate(quantized, recalibrate, scratch);
  if (!again)
    return again.takeError();
  {
    Expected<std::unique_ptr<model::WeightStore>> quantizedStore =
        model::WeightStore::open(quantized);
    if (!quantizedStore)
      return quantizedStore.takeError();
    Expected<compress::PruneChoice> choice =
        pruneStep(**quantizedStore, **again, path);
    if (!choice)
      return choice.takeError();
    result.routing = (*again)->withExperts(choice->kept);
    result.record["pruning"] = json::Object{
        {"fraction", options.prune->fraction},
        {"scoring", compress::getPruneScoringName(options.prune->scoring)},
        {"kept_experts", keptJson(*choice)}};
  }
  sys::fs::remove(quantized);
  Expected<std::unique_ptr<model::WeightStore>> out =
      model::WeightStore::open(path);
  if (!out)
    return out.takeError();
  result.record["weight_bytes"] = weightBytes(**out);
  result.seconds = secondsSince(start);
  return result;
}

Expected<Compilation::Compressed> Compilation::searchOrder(StringRef path) {
  const compress::CalibrationFile &calibration = *options.compress->calibration;
  const compress::CalibrationFile::Source &source = calibration.getSource();
  const int64_t evalChunks = options.prune->orderEvalChunks;
  auto refuse = [&](const Twine &why) {
    return makeError("--prune-experts with quantization tries both orders, "
                     "measured on the last " + Twine(evalChunks) +
                     " windows of the calibration text (--order-eval-chunks)"
                     ": " + why + "; or give --prune-order=prune-first or "
                     "quantize-first");
  };
  if (Error e = checkCalibrationText(calibration, "--prune-order=auto"))
    return refuse(toString(std::move(e)));
  ErrorOr<std::unique_ptr<MemoryBuffer>> text =
      MemoryBuffer::getFile(source.text);
  if (!text)
    return refuse("cannot read " + source.text + ": " +
                  text.getError().message());
  inputs.insert(source.text);

  // The text as model-run tokenizes it.
  std::string note, error;
  tokenizer::Vocabulary vocabulary;
  std::string serialized = importer::getBundleVocabulary(*store, note);
  if (serialized.empty() ||
      !tokenizer::Vocabulary::deserialize(serialized, vocabulary, error))
    return refuse("the model has no tokenizer moec can use: " +
                  (note.empty() ? error : note));
  bool addBos = vocabulary.addBos, addEos = vocabulary.addEos;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer =
      tokenizer::Tokenizer::create(std::move(vocabulary), error);
  if (!tokenizer)
    return refuse(error);
  auto countTokens = [&](StringRef t) {
    return int64_t(tokenizer->encode(std::string_view(t.data(), t.size()),
                                     addBos)
                       .size()) +
           (addEos ? 1 : 0);
  };
  const int64_t window = source.context;
  StringRef all = (*text)->getBuffer();
  int64_t windows = countTokens(all) / window;
  Expected<compress::TextSplit> split =
      compress::splitForEvaluation(all, evalChunks * window, countTokens);
  if (!split)
    return refuse(source.text + ": " + toString(split.takeError()));
  int64_t headWindows = split->headTokens / window;
  if (headWindows < 1)
    return refuse(source.text + " has " + Twine(windows) + " windows of " +
                  Twine(window) + " tokens, which leaves none to calibrate on");

  Expected<ScratchDirectory> scratch =
      makeScratchDirectory(options.scratchDirectory, "moec-order");
  if (!scratch)
    return scratch.takeError();
  SmallString<256> heldAside(scratch->path);
  sys::path::append(heldAside, "held-aside.txt");
  if (Error e = writeText(heldAside, all.drop_front(split->offset)))
    return std::move(e);

  // The calibration windows: calib.dat's own when they end before the cut
  // (a few tokens' margin: the cut may tokenize differently), else the
  // text before the cut, on which the original model is calibrated again.
  int64_t calibrated =
      source.chunks ? std::min(source.chunks, windows) : windows;
  compress::CalibrationFile::Source windowsUsed = source;
  const compress::CalibrationFile *first = &calibration;
  std::unique_ptr<compress::CalibrationFile> firstAgain;
  if (calibrated * window + 8 <= split->headTokens) {
    windowsUsed.chunks = calibrated;
    say("order: " + Twine(calibrated) + " calibration windows of " +
        Twine(window) + " tokens, the last " + Twine(evalChunks) + " of " +
        source.text + " (from byte " + Twine(split->offset) +
        ") held aside to measure both orders");
  } else {
    SmallString<256> head(scratch->path);
    sys::path::append(head, "calibration.txt");
    if (Error e = writeText(head, all.take_front(split->offset)))
      return std::move(e);
    windowsUsed.text = head.str().str();
    windowsUsed.chunks = std::min(calibrated, headWindows);
    say("order: " + calibration.getPath() + " saw the last " +
        Twine(evalChunks) + " windows of " + source.text +
        ", which are held aside to measure both orders: calibrating the "
        "model again on the " +
        Twine(windowsUsed.chunks) + " windows before byte " +
        Twine(split->offset));
    Expected<std::unique_ptr<compress::CalibrationFile>> again =
        calibrate(options.modelPath, windowsUsed, scratch->path);
    if (!again)
      return again.takeError();
    firstAgain = std::move(*again);
    first = firstAgain.get();
  }

  // The original model's log-probabilities on the held-aside windows.
  SmallString<256> base(scratch->path), log(scratch->path);
  sys::path::append(base, "base.kld");
  sys::path::append(log, "model-run.log");
  auto evaluate = [&](StringRef model, bool writeBase,
                      StringRef name) -> Expected<compress::KlFigures> {
    SmallString<256> out(scratch->path), stats(scratch->path);
    sys::path::append(out, "eval-" + name);
    sys::path::append(stats, "stats-" + name + ".json");
    ScratchDirectory removeOut(out.str().str());
    Expected<std::string> runner =
        compileForHost(model, out, window, /*instrument=*/false);
    if (!runner)
      return runner.takeError();
    std::vector<std::string> args = {
        *runner, "--perplexity", "-f", heldAside.str().str(), "-c",
        std::to_string(window), "--chunks", std::to_string(evalChunks),
        "--kl-divergence-base", base.str().str()};
    if (!writeBase)
      args.insert(args.end(),
                  {"--kl-divergence", "--stats", stats.str().str()});
    if (options.memoryBudget)
      args.insert(args.end(),
                  {"--memory-budget", std::to_string(options.memoryBudget)});
    if (Error e = runLogged(args, log, "order: running the " + name + " model"))
      return std::move(e);
    if (writeBase)
      return compress::KlFigures();
    ErrorOr<std::unique_ptr<MemoryBuffer>> json = MemoryBuffer::getFile(stats);
    if (!json)
      return makeError("order: cannot read " + stats + ": " +
                       json.getError().message());
    return compress::parseKlStats((*json)->getBuffer());
  };
  say("order: the original model's log-probabilities on the held-aside "
      "windows");
  if (Expected<compress::KlFigures> e =
          evaluate(options.modelPath, /*writeBase=*/true, "original");
      !e)
    return e.takeError();

  // Both orders, each into its own file.
  struct Candidate {
    compress::PruneOrder order;
    std::string path;
    std::optional<Compressed> built;
    compress::KlFigures kl;
  } candidates[] = {{compress::PruneOrder::PruneFirst, "", {}, {}},
                    {compress::PruneOrder::QuantizeFirst, "", {}, {}}};
  for (Candidate &c : candidates) {
    StringRef key = compress::getPruneOrderKey(c.order);
    SmallString<256> candidatePath(scratch->path);
    sys::path::append(candidatePath, key + ".gguf");
    c.path = candidatePath.str().str();
    say("order: " + key);
    Expected<Compressed> built =
        c.order == compress::PruneOrder::PruneFirst
            ? pruneThenQuantize(*first, windowsUsed, c.path, scratch->path)
            : quantizeThenPrune(*first, windowsUsed, c.path, scratch->path);
    if (!built)
      return built.takeError();
    c.built.emplace(std::move(*built));
    Expected<compress::KlFigures> kl = evaluate(c.path, false, key);
    if (!kl)
      return kl.takeError();
    c.kl = *kl;
    say("order: " + key + ": mean KL divergence " +
        printed("%.6g", c.kl.mean) + ", p99 " + printed("%.6g", c.kl.p99) +
        ", same top token " + printed("%.2f%%", 100 * c.kl.sameTop1) +
        " over " + Twine(c.kl.positions) + " held-aside positions (" +
        printed("%.1f", c.built->seconds) + " s to build)");
  }
  Candidate &best =
      candidates[candidates[1].kl.mean < candidates[0].kl.mean ? 1 : 0];
  say("order: keeping " + compress::getPruneOrderKey(best.order) +
      " (the lower mean KL divergence)");
  if (Error e = moveFile(best.path, path))
    return std::move(e);
  json::Object order{
      {"chosen", compress::getPruneOrderKey(best.order)},
      {"searched", true},
      {"held_aside", json::Object{{"text", source.text},
                                  {"from_byte", uint64_t(split->offset)},
                                  {"windows", evalChunks},
                                  {"context", window}}},
      {"calibration_windows",
       json::Object{{"text", windowsUsed.text},
                    {"windows", windowsUsed.chunks}}}};
  for (Candidate &c : candidates) {
    json::Object figures = compress::toJson(c.kl);
    figures["weight_bytes"] = *c.built->record.get("weight_bytes");
    figures["seconds"] = c.built->seconds;
    order[compress::getPruneOrderKey(c.order)] = std::move(figures);
  }
  Compressed result = std::move(*best.built);
  result.record["order"] = std::move(order);
  return result;
}

Expected<std::string> Compilation::compileForHost(StringRef modelPath,
                                                  StringRef outDir,
                                                  int64_t contextLength,
                                                  bool instrument) {
  CompileOptions host;
  host.modelPath = modelPath.str();
  host.target = options.target;
  if (Expected<targets::TargetDescription> t = targets::lookupTarget("host"))
    host.target = *t;
  else
    consumeError(t.takeError());
  host.contextLength = contextLength;
  host.memoryBudget = options.memoryBudget;
  host.instrument = instrument;
  host.int8Activations = false;
  {
    Compilation c(std::move(host));
    if (Error e = c.emit(outDir))
      return std::move(e);
  }
  SmallString<256> runner(outDir);
  sys::path::append(runner, "model-run");
  return runner.str().str();
}

Expected<std::unique_ptr<compress::CalibrationFile>>
Compilation::calibrate(StringRef modelPath,
                       const compress::CalibrationFile::Source &windows,
                       StringRef scratch) {
  SmallString<256> out(scratch), result(scratch), log(scratch);
  sys::path::append(out, "calibrate");
  ScratchDirectory removeOut(out.str().str());
  Expected<std::string> runner =
      compileForHost(modelPath, out, windows.context, /*instrument=*/true);
  if (!runner)
    return runner.takeError();
  // A name of its own: GPTQ reads the statistics' windows from it later.
  sys::path::append(result, "calib-" + sys::path::stem(modelPath) + ".dat");
  sys::path::append(log, "calibrate.log");
  std::vector<std::string> args = {*runner,
                                   "--perplexity",
                                   "-f",
                                   windows.text,
                                   "-c",
                                   std::to_string(windows.context),
                                   "--calibration-out",
                                   result.str().str()};
  if (windows.chunks)
    args.insert(args.end(), {"--chunks", std::to_string(windows.chunks)});
  if (options.memoryBudget)
    args.insert(args.end(),
                {"--memory-budget", std::to_string(options.memoryBudget)});
  if (Error e = runLogged(args, log, "calibrating " + modelPath))
    return std::move(e);
  return compress::CalibrationFile::read(result);
}

Error Compilation::runGptq(const model::WeightStore &source,
                           StringRef modelPath,
                           const compress::CompressionPlan &plan,
                           const compress::CompressOptions &compressOptions,
                           StringMap<std::vector<uint8_t>> &out) {
  std::vector<int> layers = compress::getGptqLayers(plan);
  if (layers.empty()) {
    say("GPTQ: no tensor is in moec's own formats; the others are rounded "
        "by importance");
    return Error::success();
  }
  const compress::CalibrationFile *calibration = compressOptions.calibration;
  if (!calibration)
    return makeError("--rounding=gptq: needs --calibration=calib.dat (moec "
                     "calibrate): GPTQ runs its text again for the Hessians");
  if (Error e = checkCalibrationText(*calibration, "--rounding=gptq"))
    return e;
  const compress::CalibrationFile::Source &windows = calibration->getSource();

  // The model as it is before quantization, instrumented.
  Expected<ScratchDirectory> dir =
      makeScratchDirectory(options.scratchDirectory, "moec-gptq");
  if (!dir)
    return dir.takeError();
  SmallString<256> outDir(dir->path), hessianPath(dir->path),
      log(dir->path);
  sys::path::append(outDir, "out");
  say("GPTQ: compiling the model with instrumentation for " +
      Twine(layers.size()) + " layers' Hessians");
  Expected<std::string> runner =
      compileForHost(modelPath, outDir, windows.context, /*instrument=*/true);
  if (!runner)
    return runner.takeError();
  sys::path::append(hessianPath, "hessians.bin");
  sys::path::append(log, "model-run.log");
  for (int layer : layers) {
    std::vector<std::string> args = {
        *runner, "--perplexity", "-f", windows.text, "-c",
        std::to_string(windows.context), "--hessian-layer",
        std::to_string(layer), "--hessian-out", hessianPath.str().str()};
    if (windows.chunks)
      args.insert(args.end(), {"--chunks", std::to_string(windows.chunks)});
    if (options.memoryBudget)
      args.insert(args.end(),
                  {"--memory-budget", std::to_string(options.memoryBudget)});
    if (Error e = runLogged(args, log,
                            "GPTQ: the instrumented model on layer " +
                                Twine(layer)))
      return e;
    Expected<std::unique_ptr<compress::HessianFile>> hessians =
        compress::HessianFile::read(hessianPath);
    if (!hessians)
      return hessians.takeError();
    if (Error e = compress::gptqQuantizeLayer(source, plan, compressOptions,
                                              layer, **hessians, out))
      return e;
    say("GPTQ: " + (layer < 0 ? Twine("the tensors outside the layers")
                              : "layer " + Twine(layer)) +
        " done");
  }
  return Error::success();
}

bool Compilation::usesInt8Activations() const {
  if (options.instrument)
    return false;
  return options.int8Activations.value_or(isX86WithAvx2(options.target));
}

bool Compilation::usesF16KvCache() const {
  return options.f16KvCache.value_or(usesInt8Activations());
}

Error Compilation::runPlan() {
  plan::PlanOptions planOptions;
  planOptions.contextLength = options.contextLength;
  planOptions.budgetBytes = options.memoryBudget;
  planOptions.batchTokens = options.maxBatch;
  planOptions.kvElementBytes = usesF16KvCache() ? 2 : 4;
  if (prunedCalibration) {
    // Pruning renumbered the experts: the counts follow them.
    plan::RoutingCounts counts;
    for (const auto &layer : prunedCalibration->getLayers())
      counts.counts.push_back(layer.tokens);
    calibration = std::move(counts);
    planOptions.calibration = &*calibration;
    inputs.insert(options.calibrationPath);
  } else if (!options.calibrationPath.empty()) {
    Expected<plan::RoutingCounts> c =
        plan::readRoutingCounts(options.calibrationPath, store->getConfig());
    if (!c)
      return c.takeError();
    calibration = std::move(*c);
    planOptions.calibration = &*calibration;
    inputs.insert(options.calibrationPath);
  }
  Expected<plan::Plan> p = plan::makePlan(*store, options.target, planOptions);
  if (!p)
    return p.takeError();
  thePlan = std::move(*p);
  layout = emit::computeBundleLayout(*store, options.target.weightInterleave);

  mlir::ModuleOp m = *module;
  mlir::Builder b(context.get());
  auto i64 = [&](int64_t v) { return b.getI64IntegerAttr(v); };
  m->setAttr("moe.plan",
             b.getDictionaryAttr({
                 b.getNamedAttr("all_experts_resident",
                                b.getBoolAttr(thePlan->allExpertsResident)),
                 b.getNamedAttr("budget_bytes", i64(thePlan->budgetBytes)),
                 b.getNamedAttr("expert_cache_bytes",
                                i64(thePlan->expertCacheBytes)),
                 b.getNamedAttr("prefetch_depth", i64(thePlan->prefetchDepth)),
             }));
  SmallVector<mlir::NamedAttribute> tensors;
  for (const emit::BundleLayout::Resident &r : layout->resident)
    tensors.push_back(b.getNamedAttr(
        r.tensor->name,
        b.getArrayAttr({i64(r.offset), i64(int64_t(r.tensor->type)),
                        i64(r.interleave)})));
  // Banks by the name of their gate tensor.
  StringMap<StringRef> bankOfGate;
  for (moe::ExpertsOp bank : m.getOps<moe::ExpertsOp>())
    bankOfGate[bank.getGate().getName()] = bank.getSymName();
  SmallVector<mlir::Attribute> experts;
  for (size_t l = 0; l < layout->expertGroups.size(); ++l) {
    const auto &groups = layout->expertGroups[l];
    StringRef gateName = groups.front().parts[0].tensor->name;
    auto it = bankOfGate.find(gateName);
    if (it == bankOfGate.end())
      return makeError("plan: no expert bank reads '" + gateName + "'");
    // One entry per group of experts sharing formats: where each part lies
    // in their extents.
    SmallVector<mlir::Attribute> groupAttrs;
    for (const emit::BundleLayout::ExpertGroup &g : groups)
      groupAttrs.push_back(b.getDictionaryAttr({
          b.getNamedAttr("members", b.getDenseI64ArrayAttr(g.members)),
          b.getNamedAttr("gate", i64(g.parts[0].offset)),
          b.getNamedAttr("up", i64(g.parts[1].offset)),
          b.getNamedAttr("down", i64(g.parts[2].offset)),
          b.getNamedAttr("extent_bytes", i64(g.extentSize)),
      }));
    experts.push_back(b.getDictionaryAttr({
        b.getNamedAttr("bank", mlir::FlatSymbolRefAttr::get(
                                   context.get(), it->second)),
        b.getNamedAttr("layer", i64(int64_t(l))),
        b.getNamedAttr("groups", b.getArrayAttr(groupAttrs)),
    }));
  }
  m->setAttr("moe.layout",
             b.getDictionaryAttr({
                 b.getNamedAttr("hash", i64(layout->hash)),
                 b.getNamedAttr("resident_bytes", i64(layout->residentSize)),
                 b.getNamedAttr("tensors", b.getDictionaryAttr(tensors)),
                 b.getNamedAttr("experts", b.getArrayAttr(experts)),
             }));
  // Repacked weights say so in their types, for the kernels that read them.
  return applyWeightLayout(m, *layout);
}

Error Compilation::runCodegen() {
  if (options.target.backend != targets::BackendKind::Cpu)
    return makeError("codegen: target '" + options.target.name + "' uses the " +
                     targets::getBackendName(options.target.backend) +
                     " backend, which does not exist yet");
  codegen::CpuLoweringOptions lowering;
  lowering.lanes = getVectorLanes(options.target);
  lowering.maxBatch = options.maxBatch;
  bool x86Avx2 = isX86WithAvx2(options.target);
  // vpdpbusd on ymm: AVX-VNNI, or AVX512-VNNI with its 256-bit forms (VL).
  bool x86Vnni = x86Avx2 && (options.target.hasFeature("avxvnni") ||
                             (options.target.hasFeature("avx512vnni") &&
                              options.target.hasFeature("avx512vl")));
  // ... and on zmm, with AVX512BW's byte operations, where the target's
  // vectors are 512 bits.
  bool x86Vnni512 = x86Avx2 && lowering.lanes == 16 &&
                    options.target.hasFeature("avx512vnni") &&
                    options.target.hasFeature("avx512vl") &&
                    options.target.hasFeature("avx512bw");
  // ... and AMX tiles for prefill's GEMM where the target has them (the
  // host target lists them only where the kernel grants the tile state).
  bool x86Amx = x86Vnni512 && options.target.hasFeature("amx-tile") &&
                options.target.hasFeature("amx-int8");
  lowering.integerDot = x86Amx       ? codegen::IntegerDot::X86Amx
                        : x86Vnni512 ? codegen::IntegerDot::X86Avx512Vnni
                        : x86Vnni    ? codegen::IntegerDot::X86AvxVnni
                        : x86Avx2    ? codegen::IntegerDot::X86Avx2
                                     : codegen::IntegerDot::Generic;
  if (options.integerDot == "portable") {
    lowering.integerDot = codegen::IntegerDot::Generic;
  } else if (options.integerDot == "avx2" || options.integerDot == "avx-vnni" ||
             options.integerDot == "avx512-vnni" ||
             options.integerDot == "amx") {
    struct Choice {
      const char *name;
      bool available;
      codegen::IntegerDot dot;
      const char *lacks;
    } choices[] = {
        {"avx2", x86Avx2, codegen::IntegerDot::X86Avx2, "AVX2"},
        {"avx-vnni", x86Vnni, codegen::IntegerDot::X86AvxVnni,
         "AVX-VNNI (or AVX512-VNNI with AVX512VL)"},
        {"avx512-vnni", x86Vnni512, codegen::IntegerDot::X86Avx512Vnni,
         "AVX512-VNNI with AVX512BW and AVX512VL on 512-bit vectors"},
        {"amx", x86Amx, codegen::IntegerDot::X86Amx,
         "AMX-TILE and AMX-INT8 (with AVX512-VNNI, BW and VL on 512-bit "
         "vectors)"},
    };
    for (const Choice &c : choices) {
      if (options.integerDot != c.name)
        continue;
      if (!c.available)
        return makeError("codegen: --integer-dot=" + options.integerDot +
                         ": target '" + options.target.name + "' lacks " +
                         c.lacks);
      lowering.integerDot = c.dot;
    }
  } else if (!options.integerDot.empty()) {
    return makeError("codegen: --integer-dot: expected portable, avx2, "
                     "avx-vnni, avx512-vnni or amx, got '" +
                     options.integerDot + "'");
  }
  lowering.int8Activations = usesInt8Activations();
  lowering.f16KvCache = usesF16KvCache();
  lowering.prefetchExtra = options.prefetchExtra;
  if (options.instrument) {
    if (options.int8Activations.value_or(false))
      return makeError("codegen: instrumented code (calibration) observes f32 "
                       "activations; it does not combine with "
                       "--activations=int8");
    lowering.instrument = true;
  }
  DiagnosticCollector diagnostics(*context);
  if (mlir::failed(codegen::lowerToKernels(*module, lowering)))
    return diagnostics.takeError("codegen");
  // Constants folded and shared, so that the printed kernels read well.
  mlir::PassManager pm(context.get());
  pm.addPass(mlir::createCanonicalizerPass());
  pm.addPass(mlir::createCSEPass());
  if (mlir::failed(pm.run(*module)))
    return diagnostics.takeError("codegen");
  return Error::success();
}

Error Compilation::runLLVM() {
  DiagnosticCollector diagnostics(*context);
  if (mlir::failed(codegen::lowerToLLVMDialect(*module)))
    return diagnostics.takeError("llvm");
  return Error::success();
}

Error Compilation::verifyContract(Phase after) {
  mlir::ModuleOp m = *module;
  {
    DiagnosticCollector diagnostics(*context);
    if (mlir::failed(mlir::verify(m)))
      return diagnostics.takeError(Twine("the IR after phase '") +
                                   getPhaseName(after) + "' does not verify");
  }
  auto broken = [&](const Twine &what) {
    return makeError("internal error: after phase '" + getPhaseName(after) +
                     "', " + what);
  };
  switch (after) {
  case Phase::Input:
  case Phase::Compress:
    if (!m.lookupSymbol<mlir::func::FuncOp>("forward"))
      return broken("the module has no @forward");
    return Error::success();
  case Phase::Plan: {
    auto layoutAttr = m->getAttrOfType<mlir::DictionaryAttr>("moe.layout");
    if (!layoutAttr || !m->getAttr("moe.plan"))
      return broken("moe.plan or moe.layout is missing");
    auto tensors = layoutAttr.getAs<mlir::DictionaryAttr>("tensors");
    std::string missing;
    m.walk([&](qnt::WeightOp w) {
      if (!tensors.get(w.getName()))
        missing = w.getName().str();
    });
    if (!missing.empty())
      return broken("weight '" + missing + "' has no place in moe.layout");
    return Error::success();
  }
  case Phase::Codegen: {
    // Only the dialects the LLVM lowering handles; no tensor left: every
    // value lives in a buffer, every dequantize is fused into a kernel.
    std::string stray;
    m.walk([&](mlir::Operation *op) {
      StringRef ns = op->getDialect() ? op->getDialect()->getNamespace() : "";
      if (!llvm::is_contained({"builtin", "func", "scf", "vector", "arith",
                               "math", "memref", "llvm", "amx"},
                              ns) &&
          stray.empty())
        stray = op->getName().getStringRef().str();
    });
    if (!stray.empty())
      return broken("'" + stray + "' is left for the LLVM lowering");
    if (!m.lookupSymbol<mlir::func::FuncOp>("moec_model_forward"))
      return broken("the module has no @moec_model_forward");
    return Error::success();
  }
  case Phase::LLVM: {
    std::string stray;
    m.walk([&](mlir::Operation *op) {
      if (!isa<mlir::ModuleOp>(op) && op->getDialect() &&
          op->getDialect()->getNamespace() != "llvm" && stray.empty())
        stray = op->getName().getStringRef().str();
    });
    if (!stray.empty())
      return broken("'" + stray + "' is not in the LLVM dialect");
    return Error::success();
  }
  case Phase::Emit:
    return Error::success();
  }
  return Error::success();
}

//===----------------------------------------------------------------------===//
// emit
//===----------------------------------------------------------------------===//

namespace {

/// Output files are written under temporary names and renamed together at
/// the end, so that an interrupted run never leaves a partial file under a
/// final name.
class OutputSet {
public:
  explicit OutputSet(StringRef dir) : dir(dir.str()) {}
  ~OutputSet() {
    for (auto &[temp, final] : files)
      sys::fs::remove(temp);
  }
  std::string add(StringRef name) {
    SmallString<256> final(dir), temp(dir);
    sys::path::append(final, name);
    sys::path::append(temp, "." + name + kTempMarker +
                                Twine(sys::Process::getProcessId()));
    files.push_back({std::string(temp), std::string(final)});
    return std::string(temp);
  }
  /// Removes what an interrupted earlier run left (hidden temporaries of
  /// processes that no longer exist).
  static void removeStale(StringRef dir) {
    std::error_code ec;
    for (sys::fs::directory_iterator it(dir, ec), end; !ec && it != end;
         it.increment(ec)) {
      StringRef name = sys::path::filename(it->path());
      size_t at = name.find(kTempMarker);
      if (!name.starts_with(".") || at == StringRef::npos)
        continue;
      // ".NAME.moec-tmp.PID", or ".NAME.moec-tmp.PID.tmp-XXXXXX" (the
      // bundle writer's own temporary inside it).
      StringRef digits = name.drop_front(at + strlen(kTempMarker));
      digits = digits.take_while([](char c) { return c >= '0' && c <= '9'; });
      unsigned pid = 0;
      if (digits.empty() || digits.getAsInteger(10, pid))
        continue;
      SmallString<64> proc("/proc/");
      proc += std::to_string(pid);
      if (!sys::fs::exists(proc))
        sys::fs::remove(it->path());
    }
  }
  static constexpr const char *kTempMarker = ".moec-tmp.";
  Error commit() {
    for (auto &[temp, final] : files)
      if (std::error_code ec = sys::fs::rename(temp, final))
        return makeError("cannot rename " + temp + " to " + final + ": " +
                         ec.message());
    files.clear();
    return Error::success();
  }

private:
  std::string dir;
  std::vector<std::pair<std::string, std::string>> files;
};

Error writeBytes(StringRef path, StringRef bytes, bool executable = false) {
  std::error_code ec;
  raw_fd_ostream os(path, ec);
  if (ec)
    return makeError("cannot write " + path + ": " + ec.message());
  os << bytes;
  os.close();
  if (os.has_error())
    return makeError("cannot write " + path + ": " + os.error().message());
  if (executable)
    sys::fs::setPermissions(path, sys::fs::perms(0755));
  return Error::success();
}

/// libmodel.a: the model's object and, with `withRuntime`, every member of
/// the runtime archive.
Error writeModelArchive(StringRef path, StringRef object, bool withRuntime) {
  std::vector<NewArchiveMember> members;
  members.emplace_back(MemoryBufferRef(object, "moec_model.o"));
  if (!withRuntime)
    return writeArchive(path, members, SymtabWritingMode::NormalSymtab,
                        object::Archive::K_GNU, /*Deterministic=*/true,
                        /*Thin=*/false);
  ErrorOr<std::unique_ptr<MemoryBuffer>> runtime =
      MemoryBuffer::getFile(MOEC_RUNTIME_ARCHIVE);
  if (!runtime)
    return makeError(Twine("cannot read the runtime archive ") +
                     MOEC_RUNTIME_ARCHIVE + ": " + runtime.getError().message());
  Expected<std::unique_ptr<object::Archive>> archive =
      object::Archive::create((*runtime)->getMemBufferRef());
  if (!archive)
    return archive.takeError();
  Error err = Error::success();
  for (const object::Archive::Child &child : (*archive)->children(err)) {
    Expected<NewArchiveMember> member =
        NewArchiveMember::getOldMember(child, /*Deterministic=*/true);
    if (!member)
      return member.takeError();
    members.push_back(std::move(*member));
  }
  if (err)
    return err;
  return writeArchive(path, members, SymtabWritingMode::NormalSymtab,
                      object::Archive::K_GNU, /*Deterministic=*/true,
                      /*Thin=*/false);
}

} // namespace

Error Compilation::emit(StringRef outDir) {
  if (done < int(Phase::LLVM))
    if (Error e = runUntil(Phase::LLVM))
      return e;
  if (std::error_code ec = sys::fs::create_directories(outDir))
    return makeError("cannot create " + outDir + ": " + ec.message());

  OutputSet::removeStale(outDir);
  OutputSet outputs(outDir);

  // The bundle, the largest output and bound by I/O, is written on a thread
  // of its own while the code is generated and linked, which is bound by
  // LLVM on one core: on the benchmark model (3.8 GB, 2 cores) code
  // generation was ~9 s of a 20 s compile, one after the other. The writer
  // reads the model store and its own options only; messages from the code
  // side wait until it is done, so that they do not break its progress bar.
  emit::BundleOptions bundleOptions;
  bundleOptions.ioBlock = options.target.ioBlockBytes;
  bundleOptions.weightInterleave = options.target.weightInterleave;
  bundleOptions.plan = thePlan->toJson();
  bundleOptions.compression = compression;
  std::string vocabularyNote;
  bundleOptions.vocabulary =
      importer::getBundleVocabulary(*store, vocabularyNote);
  if (!vocabularyNote.empty())
    WithColor::warning(errs(), "moec") << vocabularyNote << "\n";
  // Object code, libmodel.a, model.h and model-run.
  std::vector<std::string> notes;
  auto emitCode = [&]() -> Error {
    Expected<std::string> object = codegen::emitObject(*module, options.target);
    if (!object)
      return object.takeError();

    // The runtime this moec carries is built for the build machine; a target
    // of another architecture gets the model's object alone, to link with a
    // runtime built for it.
    Triple targetTriple(options.target.triple);
    Triple hostTriple(sys::getProcessTriple());
    bool hostArch = targetTriple.getArch() == hostTriple.getArch() &&
                    targetTriple.getOS() == hostTriple.getOS();
    std::string archive = outputs.add("libmodel.a");
    if (Error e = writeModelArchive(archive, *object, hostArch))
      return e;
    if (!hostArch)
      notes.push_back("libmodel.a holds the model's code only: link it with "
                      "the moec runtime built for " +
                      options.target.triple + " (this moec carries it for " +
                      hostTriple.str() + ")");

    ErrorOr<std::unique_ptr<MemoryBuffer>> header =
        MemoryBuffer::getFile(MOEC_MODEL_HEADER);
    if (!header)
      return makeError(Twine("cannot read ") + MOEC_MODEL_HEADER + ": " +
                       header.getError().message());
    if (Error e = writeBytes(outputs.add("model.h"), (*header)->getBuffer()))
      return e;

    // model-run, where this machine can link for the target.
    if (hostArch) {
      notes.push_back("linked model-run");
      std::string exe = outputs.add("model-run");
      ErrorOr<std::unique_ptr<MemoryBuffer>> flagsFile =
          MemoryBuffer::getFile(MOEC_RUNTIME_LINK_FILE);
      if (!flagsFile)
        return makeError(Twine("cannot read ") + MOEC_RUNTIME_LINK_FILE + ": " +
                         flagsFile.getError().message());
      SmallVector<StringRef> flags;
      (*flagsFile)->getBuffer().trim().split(flags, ' ', -1, false);
      std::vector<std::string> args = {
          MOEC_LINKER_DRIVER,  "-fuse-ld=lld", "-o", exe,
          MOEC_MODEL_RUN_MAIN, archive};
      for (StringRef f : flags)
        args.push_back(f.str());
      std::vector<StringRef> argRefs(args.begin(), args.end());
      std::string message;
      SmallString<128> log;
      sys::fs::createTemporaryFile("moec-link", "log", log);
      std::optional<StringRef> redirects[] = {std::nullopt, log.str(),
                                              log.str()};
      int rc = sys::ExecuteAndWait(MOEC_LINKER_DRIVER, argRefs, std::nullopt,
                                   redirects, 0, 0, &message);
      auto logText = MemoryBuffer::getFile(log);
      sys::fs::remove(log);
      if (rc != 0)
        return makeError("linking model-run failed" +
                         (message.empty() ? "" : ": " + message) + "\n" +
                         (logText ? (*logText)->getBuffer() : "") +
                         "command: " + join(args, " "));
    } else {
      notes.push_back("not linking model-run: this machine links for " +
                      hostTriple.str() + ", not " + options.target.triple);
    }

    return Error::success();
  };
  std::string bundlePath = outputs.add("model.moeb");
  say("writing model.moeb while generating code for " + options.target.name);
  std::string bundleError;
  auto emitStart = std::chrono::steady_clock::now();
  double bundleSeconds = 0;
  std::thread bundleWriter([&, progress = progressBar("model.moeb")] {
    if (Error e =
            emit::writeBundle(*store, bundlePath, bundleOptions, progress))
      bundleError = toString(std::move(e));
    bundleSeconds = secondsSince(emitStart);
  });
  Error codeError = emitCode();
  double codeSeconds = secondsSince(emitStart);
  bundleWriter.join();
  endProgressBar();
  // The two sides' own times: repacking the weights is bound by the
  // storage, generating code by one core, and which one the whole waits
  // for differs between machines.
  say("wrote model.moeb in " + printed("%.1f", bundleSeconds) +
      " s; generated and linked the code in " + printed("%.1f", codeSeconds) +
      " s");
  if (!bundleError.empty()) {
    consumeError(std::move(codeError));
    return makeError(bundleError);
  }
  if (codeError)
    return codeError;
  for (const std::string &n : notes)
    say(n);
  return outputs.commit();
}
