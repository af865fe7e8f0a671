//===- Compiler.h - The compilation pipeline, phase by phase ----*- C++ -*-===//
//
// One MLIR module flows through named phases (design contract, "Pipeline"):
//
//   input    the model imported into moe + qnt + upstream IR
//   compress the weights re-encoded into the chosen formats (a GGUF file
//            the rest of the pipeline reads) and the model imported again
//   plan     + moe.plan (what stays resident) and moe.layout (where every
//            weight lies in the bundle, which compiled code addresses)
//   codegen  kernels (scf + vector on memrefs) and the forward schedule
//   llvm     everything in the LLVM dialect
//   emit     out/: model.moeb, libmodel.a, model.h, model-run
//
// Each phase ends by verifying the contract of the next, so that a broken
// phase fails where it broke rather than as a confusing error later.
// The size-budget allocator of compression and a separate fusion phase
// arrive with their issues; codegen fuses what this backend fuses.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_DRIVER_COMPILER_H
#define MOEC_COMPILER_DRIVER_COMPILER_H

#include "compiler/compress/Allocate.h"
#include "compiler/compress/Compress.h"
#include "compiler/compress/Prune.h"
#include "compiler/emit/BundleWriter.h"
#include "compiler/model/WeightStore.h"
#include "compiler/plan/Plan.h"
#include "targets/TargetDescription.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/Support/Error.h"

#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>

namespace moec::driver {

enum class Phase { Input, Compress, Plan, Codegen, LLVM, Emit };

std::optional<Phase> parsePhase(llvm::StringRef name);
llvm::StringRef getPhaseName(Phase phase);
/// "input, compress, plan, codegen, llvm, emit".
std::string phaseNames();

struct CompileOptions {
  std::string modelPath;
  targets::TargetDescription target;
  /// KV cache positions (0: the model's context length).
  int64_t contextLength = 0;
  /// Most tokens per forward call.
  int64_t maxBatch = 128;
  /// 8-bit activations for quantized matmuls: std::nullopt chooses per
  /// target (on where the target has fast integer dot products).
  std::optional<bool> int8Activations;
  /// KV caches in f16 (half the memory, a rounding of keys and values):
  /// std::nullopt chooses f16 where the matmuls take 8-bit activations
  /// (their error is far larger than f16's) and f32 with f32 activations.
  std::optional<bool> f16KvCache;
  /// The integer dot product of 8-bit activations: "" chooses the target's
  /// best; "portable", "avx2" or "avx-vnni" ask for one (an error where the
  /// target lacks it). For comparisons on one host.
  std::string integerDot;
  /// Experts the pre-gated prefetch predicts per token beyond the next
  /// layer's k (codegen::CpuLoweringOptions::prefetchExtra).
  int64_t prefetchExtra = 0;
  /// Memory budget for the plan (0: the target's memory).
  uint64_t memoryBudget = 0;
  std::string calibrationPath;
  /// Generated code reports each projection's input and the experts'
  /// outputs to the runtime (calibration; f32 activations).
  bool instrument = false;
  /// Progress lines on standard error (a terminal) or none.
  bool progress = false;
  /// Formats to re-encode the weights into; std::nullopt: as they are.
  std::optional<compress::CompressOptions> compress;
  /// Formats chosen under a size budget (with `compress`); the class
  /// flags of `compress` fix what they name.
  std::optional<compress::AllocationOptions> allocation;
  /// Routed experts removed (needs a calib.dat in `compress`). With
  /// quantization, in the order `prune->order` says: both built and the
  /// better kept by default (compress/Order.h).
  std::optional<compress::PruneOptions> prune;
  /// Where the compress phase writes its GGUF; empty: a temporary file in
  /// `scratchDirectory` (the system's when empty), removed at the end.
  std::string compressedPath;
  std::string scratchDirectory;
};

/// A model on its way through the pipeline.
class Compilation {
public:
  explicit Compilation(CompileOptions options);
  ~Compilation();

  /// Runs the phases up to and including `last`.
  llvm::Error runUntil(Phase last);

  mlir::ModuleOp getModule() { return *module; }
  const model::WeightStore &getStore() const { return *store; }
  const plan::Plan &getPlan() const { return *thePlan; }
  const CompileOptions &getOptions() const { return options; }
  /// Every file the compilation read (for -MF).
  const std::set<std::string> &getInputs() const { return inputs; }

  /// Writes the artifact into `outDir` (after the llvm phase).
  llvm::Error emit(llvm::StringRef outDir);

private:
  llvm::Error runInput();
  llvm::Error runCompress();
  /// A compressed model the compress phase built, and what it did.
  struct Compressed;
  /// The compress steps: `source` (the model at `sourcePath`) quantized
  /// into `path`; pruned into `path` by the scores of `calibration`.
  llvm::Error quantizeStep(const model::WeightStore &source,
                           llvm::StringRef sourcePath,
                           compress::CompressOptions compressOptions,
                           llvm::StringRef path, llvm::json::Object &record);
  llvm::Expected<compress::PruneChoice>
  pruneStep(const model::WeightStore &source,
            const compress::CalibrationFile &calibration, llvm::StringRef path);
  /// Pruning, then quantization with statistics of the pruned model: those
  /// of running it on `recalibrate`'s windows, or (std::nullopt, when the
  /// quantization uses none) `calibration` renumbered.
  llvm::Expected<Compressed> pruneThenQuantize(
      const compress::CalibrationFile &calibration,
      const std::optional<compress::CalibrationFile::Source> &recalibrate,
      llvm::StringRef path, llvm::StringRef scratch);
  /// Quantization with `calibration`, then pruning by the scores of the
  /// quantized model run on `recalibrate`'s windows.
  llvm::Expected<Compressed>
  quantizeThenPrune(const compress::CalibrationFile &calibration,
                    const compress::CalibrationFile::Source &recalibrate,
                    llvm::StringRef path, llvm::StringRef scratch);
  /// Both orders, measured by KL divergence to the original model on the
  /// last windows of the calibration text; the better moved to `path`.
  llvm::Expected<Compressed> searchOrder(llvm::StringRef path);
  /// The model at `modelPath` compiled for this machine into `outDir` (f32
  /// activations), with instrumentation for calibration or without: the
  /// path of its model-run.
  llvm::Expected<std::string> compileForHost(llvm::StringRef modelPath,
                                             llvm::StringRef outDir,
                                             int64_t contextLength,
                                             bool instrument);
  /// Statistics of the model at `modelPath` run on `windows` (what moec
  /// calibrate collects), through `scratch`.
  llvm::Expected<std::unique_ptr<compress::CalibrationFile>>
  calibrate(llvm::StringRef modelPath,
            const compress::CalibrationFile::Source &windows,
            llvm::StringRef scratch);
  /// GPTQ: the instrumented model of `modelPath` (`source`'s file) run
  /// once per layer for its Hessians, that layer's own-format tensors
  /// quantized into `out`.
  llvm::Error runGptq(const model::WeightStore &source,
                      llvm::StringRef modelPath,
                      const compress::CompressionPlan &plan,
                      const compress::CompressOptions &compressOptions,
                      llvm::StringMap<std::vector<uint8_t>> &out);
  /// A progress line on standard error (with options.progress).
  void say(const llvm::Twine &what) const;
  /// Progress of writing a file, where standard error is a terminal.
  std::function<void(uint64_t, uint64_t)> progressBar(llvm::StringRef what);
  void endProgressBar();
  llvm::Error importStore();
  llvm::Error runPlan();
  /// Whether the quantized matmuls take 8-bit activations: as asked, else
  /// where the target is x86 with AVX2; never in instrumented code.
  bool usesInt8Activations() const;
  /// Whether the KV caches hold f16 (CompileOptions::f16KvCache).
  bool usesF16KvCache() const;
  llvm::Error runCodegen();
  llvm::Error runLLVM();
  llvm::Error verifyContract(Phase after);

  CompileOptions options;
  std::unique_ptr<mlir::MLIRContext> context;
  std::unique_ptr<model::WeightStore> store;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  std::optional<plan::Plan> thePlan;
  std::optional<emit::BundleLayout> layout;
  std::optional<plan::RoutingCounts> calibration;
  std::set<std::string> inputs;
  /// What the compress phase did, for the bundle's metadata.
  llvm::json::Value compression = nullptr;
  /// The compress phase's temporary GGUFs, removed with the compilation.
  std::vector<std::string> scratchFiles;
  /// The routing statistics of the pruned model, numbered as its experts.
  std::unique_ptr<compress::CalibrationFile> prunedCalibration;
  /// A temporary file in the scratch directory.
  llvm::Expected<std::string> makeScratchFile(llvm::StringRef stem);
  int done = -1; // the last phase run
};

/// f32 lanes the CPU kernels use on `target`.
unsigned getVectorLanes(const targets::TargetDescription &target);

} // namespace moec::driver

#endif // MOEC_COMPILER_DRIVER_COMPILER_H
