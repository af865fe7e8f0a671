//===- Compiler.cpp - The compilation pipeline, phase by phase -----------===//

#include "compiler/driver/Compiler.h"

#include "codegen/cpu/EmitObject.h"
#include "codegen/cpu/LowerToKernels.h"
#include "compiler/compress/CalibrationFile.h"
#include "compiler/import/Importer.h"
#include "compiler/import/Vocabulary.h"
#include "compiler/support/FileUtil.h"
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

Error Compilation::runCompress() {
  if (!options.compress)
    return Error::success();
  auto say = [&](const Twine &what) {
    if (options.progress)
      errs() << "moec: " << what << "\n";
  };
  compress::CompressOptions compressOptions = *options.compress;
  bool terminal = options.progress && sys::Process::StandardErrIsDisplayed();
  auto progress = [&](uint64_t doneBytes, uint64_t total) {
    if (terminal)
      errs() << format("\rmoec: compress %3.0f%%   ",
                       100.0 * double(doneBytes) / double(total ? total : 1));
  };
  json::Object pruning;
  std::string currentModel = options.modelPath;
  if (options.prune) {
    if (!compressOptions.calibration)
      return makeError("--prune-experts: needs a calib.dat from moec "
                       "calibrate (--calibration) to score the experts");
    Expected<compress::PruneChoice> choice = compress::choosePrunedExperts(
        store->getConfig(), *compressOptions.calibration, *options.prune);
    if (!choice)
      return choice.takeError();
    say("pruning " + Twine(int(options.prune->fraction * 100 + 0.5)) +
        "% of the routed experts by " +
        compress::getPruneScoringName(options.prune->scoring) + " score");
    for (const std::string &line : choice->log)
      say("  " + line);
    Expected<std::string> pruned = makeScratchFile("moec-pruned");
    if (!pruned)
      return pruned.takeError();
    if (Error e = compress::writePrunedGguf(*store, *choice, *pruned, progress))
      return e;
    if (terminal)
      errs() << "\r";
    store.reset();
    Expected<std::unique_ptr<model::WeightStore>> s =
        model::WeightStore::open(*pruned);
    if (!s)
      return s.takeError();
    store = std::move(*s);
    currentModel = *pruned;
    // The statistics follow the experts to their new numbers.
    prunedCalibration = compressOptions.calibration->withExperts(choice->kept);
    compressOptions.calibration = prunedCalibration.get();
    json::Array kept;
    for (const std::vector<uint32_t> &k : choice->kept)
      kept.push_back(json::Array(k));
    pruning = json::Object{
        {"fraction", options.prune->fraction},
        {"scoring", compress::getPruneScoringName(options.prune->scoring)},
        {"kept_experts", std::move(kept)}};
  }
  json::Object record{
      {"rounding", compressOptions.rounding == compress::Rounding::Importance
                       ? "importance"
                       : "nearest"},
      {"calibration", compressOptions.calibration
                          ? json::Value(compressOptions.calibration->getPath())
                          : json::Value(nullptr)}};
  if (options.allocation) {
    say("allocating formats under the budget (measuring each tensor in " +
        Twine(options.allocation->menu.size()) + " formats)");
    Expected<compress::Allocation> allocation = compress::allocateFormats(
        *store, compressOptions, *options.allocation);
    if (!allocation)
      return allocation.takeError();
    for (const auto &entry : allocation->types)
      compressOptions.tensorTypes[entry.getKey()] = entry.getValue();
    for (const std::string &line : allocation->log)
      say("  " + line);
    record["budget_bytes"] = allocation->budgetBytes;
    record["allocated_bytes"] = allocation->allocatedBytes;
    record["predicted_error"] = allocation->predictedError;
    record["gap_bound"] = allocation->gapBound;
  }
  Expected<compress::CompressionPlan> plan =
      compress::planCompression(*store, compressOptions);
  if (!plan)
    return plan.takeError();
  record["weight_bytes"] = plan->totalBytes();
  StringMap<std::vector<uint8_t>> gptqBytes;
  if (compressOptions.rounding == compress::Rounding::Gptq) {
    record["rounding"] = "gptq";
    if (Error e = runGptq(currentModel, *plan, compressOptions, gptqBytes))
      return e;
    compressOptions.precomputed = &gptqBytes;
  }
  if (!pruning.empty())
    record["pruning"] = std::move(pruning);
  compression = json::Value(std::move(record));
  for (const std::string &w : plan->warnings)
    WithColor::warning(errs(), "moec") << w << "\n";
  std::string path = options.compressedPath;
  if (path.empty()) {
    Expected<std::string> scratch = makeScratchFile("moec-compressed");
    if (!scratch)
      return scratch.takeError();
    path = *scratch;
  }
  say("compressing " + Twine(store->getTensors().size()) + " tensors into " +
      path);
  for (const std::string &line : plan->summary())
    say("  " + line);
  if (Error e = compress::writeCompressedGguf(*store, *plan, compressOptions,
                                              path, progress))
    return e;
  if (terminal)
    errs() << "\r";
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

Error Compilation::runGptq(StringRef modelPath,
                           const compress::CompressionPlan &plan,
                           const compress::CompressOptions &compressOptions,
                           StringMap<std::vector<uint8_t>> &out) {
  auto say = [&](const Twine &what) {
    if (options.progress)
      errs() << "moec: " << what << "\n";
  };
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
  const compress::CalibrationFile::Source &source = calibration->getSource();
  if (source.text.empty() || !sys::fs::exists(source.text))
    return makeError("--rounding=gptq: " + calibration->getPath() +
                     " does not name a readable calibration text (" +
                     (source.text.empty() ? std::string("none")
                                          : source.text) +
                     "); calibrate again with moec calibrate");

  // The model as it is before quantization, instrumented.
  SmallString<256> dir;
  std::error_code ec =
      options.scratchDirectory.empty()
          ? sys::fs::createUniqueDirectory("moec-gptq", dir)
          : sys::fs::createUniqueDirectory(options.scratchDirectory +
                                               "/moec-gptq",
                                           dir);
  if (ec)
    return makeError("GPTQ: cannot create a scratch directory: " +
                     ec.message());
  struct RemoveDir {
    SmallString<256> &dir;
    ~RemoveDir() { sys::fs::remove_directories(dir); }
  } removeDir{dir};
  SmallString<256> out_dir(dir);
  sys::path::append(out_dir, "out");
  {
    CompileOptions instrumented;
    instrumented.modelPath = modelPath.str();
    instrumented.target = options.target;
    if (Expected<targets::TargetDescription> host =
            targets::lookupTarget("host"))
      instrumented.target = *host;
    else
      consumeError(host.takeError());
    instrumented.contextLength = source.context;
    instrumented.memoryBudget = options.memoryBudget;
    instrumented.instrument = true;
    instrumented.int8Activations = false;
    say("GPTQ: compiling the model with instrumentation for " +
        Twine(layers.size()) + " layers' Hessians");
    Compilation c(std::move(instrumented));
    if (Error e = c.emit(out_dir))
      return e;
  }
  SmallString<256> runner(out_dir), hessianPath(dir), log(dir);
  sys::path::append(runner, "model-run");
  sys::path::append(hessianPath, "hessians.bin");
  sys::path::append(log, "model-run.log");
  for (int layer : layers) {
    std::vector<std::string> args = {
        runner.str().str(), "--perplexity", "-f", source.text, "-c",
        std::to_string(source.context), "--hessian-layer",
        std::to_string(layer), "--hessian-out", hessianPath.str().str()};
    if (source.chunks)
      args.insert(args.end(), {"--chunks", std::to_string(source.chunks)});
    if (options.memoryBudget)
      args.insert(args.end(),
                  {"--memory-budget", std::to_string(options.memoryBudget)});
    std::vector<StringRef> argRefs(args.begin(), args.end());
    std::optional<StringRef> redirects[] = {std::nullopt, log.str(),
                                            log.str()};
    std::string message;
    int rc = sys::ExecuteAndWait(runner, argRefs, std::nullopt, redirects, 0,
                                 0, &message);
    if (rc != 0) {
      auto text = MemoryBuffer::getFile(log);
      return makeError("GPTQ: the instrumented model failed on layer " +
                       Twine(layer) + (message.empty() ? "" : ": " + message) +
                       "\n" + (text ? (*text)->getBuffer() : ""));
    }
    Expected<std::unique_ptr<compress::HessianFile>> hessians =
        compress::HessianFile::read(hessianPath);
    if (!hessians)
      return hessians.takeError();
    if (Error e = compress::gptqQuantizeLayer(*store, plan, compressOptions,
                                              layer, **hessians, out))
      return e;
    say("GPTQ: " + (layer < 0 ? Twine("the tensors outside the layers")
                              : "layer " + Twine(layer)) +
        " done");
  }
  return Error::success();
}

Error Compilation::runPlan() {
  plan::PlanOptions planOptions;
  planOptions.contextLength = options.contextLength;
  planOptions.budgetBytes = options.memoryBudget;
  planOptions.batchTokens = options.maxBatch;
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
  layout = emit::computeBundleLayout(*store);

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
        b.getArrayAttr({i64(r.offset), i64(int64_t(r.tensor->type))})));
  // Banks by the name of their gate tensor.
  StringMap<StringRef> bankOfGate;
  for (moe::ExpertsOp bank : m.getOps<moe::ExpertsOp>())
    bankOfGate[bank.getGate().getName()] = bank.getSymName();
  SmallVector<mlir::Attribute> experts;
  for (size_t l = 0; l < layout->expertParts.size(); ++l) {
    const auto &parts = layout->expertParts[l];
    auto it = bankOfGate.find(parts[0].tensor->name);
    if (it == bankOfGate.end())
      return makeError("plan: no expert bank reads '" + parts[0].tensor->name +
                       "'");
    experts.push_back(b.getDictionaryAttr({
        b.getNamedAttr("bank", mlir::FlatSymbolRefAttr::get(
                                   context.get(), it->second)),
        b.getNamedAttr("layer", i64(int64_t(l))),
        b.getNamedAttr("gate", i64(parts[0].offset)),
        b.getNamedAttr("up", i64(parts[1].offset)),
        b.getNamedAttr("down", i64(parts[2].offset)),
        b.getNamedAttr("extent_bytes", i64(layout->extentSize[l])),
    }));
  }
  m->setAttr("moe.layout",
             b.getDictionaryAttr({
                 b.getNamedAttr("hash", i64(layout->hash)),
                 b.getNamedAttr("resident_bytes", i64(layout->residentSize)),
                 b.getNamedAttr("tensors", b.getDictionaryAttr(tensors)),
                 b.getNamedAttr("experts", b.getArrayAttr(experts)),
             }));
  return Error::success();
}

Error Compilation::runCodegen() {
  if (options.target.backend != targets::BackendKind::Cpu)
    return makeError("codegen: target '" + options.target.name + "' uses the " +
                     targets::getBackendName(options.target.backend) +
                     " backend, which does not exist yet");
  codegen::CpuLoweringOptions lowering;
  lowering.lanes = getVectorLanes(options.target);
  lowering.maxBatch = options.maxBatch;
  bool x86Avx2 = llvm::Triple(options.target.triple).isX86() &&
                 options.target.hasFeature("avx2");
  lowering.integerDot =
      x86Avx2 ? codegen::IntegerDot::X86Avx2 : codegen::IntegerDot::Generic;
  lowering.int8Activations = options.int8Activations.value_or(x86Avx2);
  if (options.instrument) {
    if (options.int8Activations.value_or(false))
      return makeError("codegen: instrumented code (calibration) observes f32 "
                       "activations; it does not combine with "
                       "--activations=int8");
    lowering.int8Activations = false;
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
                               "math", "memref", "llvm"},
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
      unsigned pid = 0;
      if (name.drop_front(at + strlen(kTempMarker)).getAsInteger(10, pid))
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
  auto say = [&](const Twine &what) {
    if (options.progress)
      errs() << "moec: " << what << "\n";
  };

  OutputSet::removeStale(outDir);
  OutputSet outputs(outDir);
  say("generating code for " + options.target.name);
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
    say("libmodel.a holds the model's code only: link it with the moec "
        "runtime built for " + options.target.triple +
        " (this moec carries it for " + hostTriple.str() + ")");

  ErrorOr<std::unique_ptr<MemoryBuffer>> header =
      MemoryBuffer::getFile(MOEC_MODEL_HEADER);
  if (!header)
    return makeError(Twine("cannot read ") + MOEC_MODEL_HEADER + ": " +
                     header.getError().message());
  if (Error e = writeBytes(outputs.add("model.h"), (*header)->getBuffer()))
    return e;

  // model-run, where this machine can link for the target.
  if (hostArch) {
    say("linking model-run");
    std::string exe = outputs.add("model-run");
    ErrorOr<std::unique_ptr<MemoryBuffer>> flagsFile =
        MemoryBuffer::getFile(MOEC_RUNTIME_LINK_FILE);
    if (!flagsFile)
      return makeError(Twine("cannot read ") + MOEC_RUNTIME_LINK_FILE + ": " +
                       flagsFile.getError().message());
    SmallVector<StringRef> flags;
    (*flagsFile)->getBuffer().trim().split(flags, ' ', -1, false);
    std::vector<std::string> args = {MOEC_LINKER_DRIVER, "-fuse-ld=lld",
                                     "-o",               exe,
                                     MOEC_MODEL_RUN_MAIN, archive};
    for (StringRef f : flags)
      args.push_back(f.str());
    std::vector<StringRef> argRefs(args.begin(), args.end());
    std::string message;
    SmallString<128> log;
    sys::fs::createTemporaryFile("moec-link", "log", log);
    std::optional<StringRef> redirects[] = {std::nullopt, log.str(), log.str()};
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
    say("not linking model-run: this machine links for " +
        hostTriple.str() + ", not " + options.target.triple);
  }

  // The bundle last: it is the largest, and shows progress.
  say("writing model.moeb");
  emit::BundleOptions bundleOptions;
  bundleOptions.ioBlock = options.target.ioBlockBytes;
  bundleOptions.plan = thePlan->toJson();
  bundleOptions.compression = compression;
  std::string vocabularyNote;
  bundleOptions.vocabulary =
      importer::getBundleVocabulary(*store, vocabularyNote);
  if (!vocabularyNote.empty())
    WithColor::warning(errs(), "moec") << vocabularyNote << "\n";
  bool terminal = options.progress && sys::Process::StandardErrIsDisplayed();
  auto progress = [&](uint64_t doneBytes, uint64_t total) {
    if (terminal)
      errs() << format("\rmoec: model.moeb %3.0f%%   ",
                       100.0 * double(doneBytes) / double(total ? total : 1));
  };
  if (Error e = emit::writeBundle(*store, outputs.add("model.moeb"),
                                  bundleOptions, progress))
    return e;
  if (terminal)
    errs() << "\r";
  return outputs.commit();
}
