//===- EmitObject.cpp - Kernels and schedule to LLVM and object code ------===//

#include "codegen/cpu/EmitObject.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "mlir/Transforms/Passes.h"

#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/TargetSelect.h"
#include "mlir/Dialect/Math/Transforms/Approximation.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/TargetParser/Triple.h"

#include <mutex>

using namespace mlir;
using namespace moec;
using namespace moec::codegen;

LogicalResult moec::codegen::lowerToLLVMDialect(ModuleOp module) {
  // Attributes of the earlier phases mean nothing to LLVM.
  for (NamedAttribute a : llvm::to_vector(module->getAttrs()))
    if (a.getName().strref().starts_with("moe.") ||
        a.getName().strref().starts_with("moec."))
      module->removeAttr(a.getName());
  module.walk([](func::FuncOp fn) { fn->removeAttr("moec.kernel"); });

  // exp (SiLU, softmax, attention) as a vector polynomial (Cody-Waite range
  // reduction, within a few ulp of libm) rather than one libm call per lane,
  // which LLVM makes of a vector exp: the calls took 4% of decode and 8% of
  // prefill on the benchmark model.
  {
    RewritePatternSet patterns(module.getContext());
    populateMathPolynomialApproximationPatterns(
        patterns, [](StringRef name) { return name == "math.exp"; });
    if (failed(applyPatternsGreedily(module, std::move(patterns))))
      return failure();
  }

  PassManager pm(module.getContext());
  pm.addPass(createSCFToControlFlowPass());
  // AMX ops (prefill's GEMM on X86Amx) lower with the vector dialect; a
  // module without them is unchanged by the option.
  ConvertVectorToLLVMPassOptions vectorOptions;
  vectorOptions.amx = true;
  pm.addPass(createConvertVectorToLLVMPass(vectorOptions));
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertIndexToLLVMPass());
  pm.addPass(createUBToLLVMConversionPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  pm.addPass(createCanonicalizerPass());
  return pm.run(module);
}

namespace {

llvm::Error makeError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

/// The target machine for a target description, at -O3.
llvm::Expected<std::unique_ptr<llvm::TargetMachine>>
createTargetMachine(const targets::TargetDescription &target) {
  static std::once_flag initialized;
  std::call_once(initialized, [] {
    llvm::InitializeAllTargetInfos();
    llvm::InitializeAllTargets();
    llvm::InitializeAllTargetMCs();
    llvm::InitializeAllAsmPrinters();
  });
  llvm::Triple triple(target.triple);
  std::string error;
  const llvm::Target *llvmTarget =
      llvm::TargetRegistry::lookupTarget(triple, error);
  if (!llvmTarget)
    return makeError("target '" + target.name + "' (" + target.triple +
                     "): " + error);
  std::string features = llvm::join(target.features, ",");
  llvm::TargetOptions options;
  std::unique_ptr<llvm::TargetMachine> machine(llvmTarget->createTargetMachine(
      triple, target.cpu, features, options, llvm::Reloc::PIC_, std::nullopt,
      llvm::CodeGenOptLevel::Aggressive));
  if (!machine)
    return makeError("cannot create an LLVM target machine for " +
                     target.triple);
  return std::move(machine);
}

/// Translates and optimises; the module keeps the target's data layout.
llvm::Expected<std::unique_ptr<llvm::Module>>
translateAndOptimize(ModuleOp module, llvm::LLVMContext &context,
                     llvm::TargetMachine &machine) {
  registerBuiltinDialectTranslation(*module.getContext());
  registerLLVMDialectTranslation(*module.getContext());
  std::unique_ptr<llvm::Module> llvmModule =
      translateModuleToLLVMIR(module, context, "moec_model");
  if (!llvmModule)
    return makeError("translation to LLVM IR failed");
  llvmModule->setTargetTriple(machine.getTargetTriple());
  llvmModule->setDataLayout(machine.createDataLayout());
  // Every function gets the target's CPU and features, so that inlining and
  // the vectorizers see the ISA.
  for (llvm::Function &fn : *llvmModule) {
    if (fn.isDeclaration())
      continue;
    fn.addFnAttr("target-cpu", machine.getTargetCPU());
    fn.addFnAttr("target-features", machine.getTargetFeatureString());
  }

  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PipelineTuningOptions tuning;
  tuning.LoopUnrolling = true;
  tuning.LoopVectorization = true;
  tuning.SLPVectorization = true;
  llvm::PassBuilder passBuilder(&machine, tuning);
  passBuilder.registerModuleAnalyses(mam);
  passBuilder.registerCGSCCAnalyses(cgam);
  passBuilder.registerFunctionAnalyses(fam);
  passBuilder.registerLoopAnalyses(lam);
  passBuilder.crossRegisterProxies(lam, fam, cgam, mam);
  llvm::ModulePassManager mpm =
      passBuilder.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3);
  mpm.run(*llvmModule, mam);
  return std::move(llvmModule);
}

} // namespace

llvm::Expected<std::string>
moec::codegen::emitObject(ModuleOp module,
                          const targets::TargetDescription &target) {
  auto machine = createTargetMachine(target);
  if (!machine)
    return machine.takeError();
  llvm::LLVMContext context;
  auto llvmModule = translateAndOptimize(module, context, **machine);
  if (!llvmModule)
    return llvmModule.takeError();
  llvm::SmallString<0> object;
  llvm::raw_svector_ostream os(object);
  llvm::legacy::PassManager codegen;
  if ((*machine)->addPassesToEmitFile(codegen, os, nullptr,
                                      llvm::CodeGenFileType::ObjectFile))
    return makeError("LLVM cannot emit object code for " + target.triple);
  codegen.run(**llvmModule);
  return std::string(object.str());
}

llvm::Expected<std::string>
moec::codegen::emitOptimizedLLVMIR(ModuleOp module,
                                   const targets::TargetDescription &target) {
  auto machine = createTargetMachine(target);
  if (!machine)
    return machine.takeError();
  llvm::LLVMContext context;
  auto llvmModule = translateAndOptimize(module, context, **machine);
  if (!llvmModule)
    return llvmModule.takeError();
  std::string ir;
  llvm::raw_string_ostream os(ir);
  (*llvmModule)->print(os, nullptr);
  return ir;
}
