//===- JitMatmul.cpp - A generated matmul, JIT-compiled for the host -----===//

#include "test/codegen/cpu/JitMatmul.h"

#include "codegen/cpu/EmitObject.h"
#include "compiler/quant/Dequantize.h"
#include "dialects/qnt/IR/QntDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Index/IR/IndexDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/bit.h"
#include "llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/SubtargetFeature.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <mutex>

using namespace mlir;

namespace moec::test {

using codegen::KernelLibrary;
using qnt::QuantFormat;

bool hostHas(llvm::StringRef feature) {
  llvm::StringMap<bool> features = llvm::sys::getHostCPUFeatures();
  auto it = features.find(feature);
  return it != features.end() && it->second;
}

WeightFormat floatFormat(WeightFormat::Kind kind) {
  WeightFormat format;
  format.kind = kind;
  return format;
}

WeightFormat quantFormat(QuantFormat quant, unsigned group, bool asymmetric) {
  WeightFormat format;
  format.kind = WeightFormat::Kind::Quantized;
  format.quant = quant;
  format.group = group;
  format.asymmetric = asymmetric;
  return format;
}

bool isOwnFormat(const WeightFormat &format) {
  return format.kind == WeightFormat::Kind::Quantized &&
         !qnt::isGgufFormat(format.quant);
}

std::vector<int64_t> halfFields(const WeightFormat &format) {
  if (format.kind != WeightFormat::Kind::Quantized)
    return {};
  if (isOwnFormat(format))
    return format.asymmetric ? std::vector<int64_t>{0, 2}
                             : std::vector<int64_t>{0};
  switch (format.quant) {
  case QuantFormat::Q4_0:
  case QuantFormat::Q5_0:
  case QuantFormat::Q8_0:
    return {0};
  case QuantFormat::Q4_1:
  case QuantFormat::Q5_1:
  case QuantFormat::Q4_K:
  case QuantFormat::Q5_K:
    return {0, 2};
  case QuantFormat::Q2_K:
    return {80, 82};
  case QuantFormat::Q3_K:
    return {108};
  case QuantFormat::Q6_K:
    return {208};
  default: // MXFP4: every E8M0 byte is a finite scale.
    return {};
  }
}

std::vector<uint8_t> randomWeights(const WeightFormat &format, unsigned lanes,
                                   int64_t rows, int64_t k, std::mt19937 &rng) {
  int64_t blockBytes = format.blockBytes(lanes);
  int64_t numBlocks = rows * k / format.blockElements(lanes);
  std::vector<uint8_t> data(blockBytes * numBlocks);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-6, 6);
  auto randomFloat = [&] { return std::ldexp(normal(rng), exponent(rng)); };
  switch (format.kind) {
  case WeightFormat::Kind::F32:
    for (int64_t i = 0; i < rows * k; ++i) {
      float v = randomFloat();
      std::memcpy(&data[4 * i], &v, 4);
    }
    return data;
  case WeightFormat::Kind::F16:
    for (int64_t i = 0; i < rows * k; ++i) {
      uint16_t h = moec::quant::floatToHalf(randomFloat());
      std::memcpy(&data[2 * i], &h, 2);
    }
    return data;
  case WeightFormat::Kind::BF16:
    for (int64_t i = 0; i < rows * k; ++i) {
      uint16_t h =
          static_cast<uint16_t>(llvm::bit_cast<uint32_t>(randomFloat()) >> 16);
      std::memcpy(&data[2 * i], &h, 2);
    }
    return data;
  case WeightFormat::Kind::Quantized:
    break;
  }
  for (uint8_t &byte : data)
    byte = static_cast<uint8_t>(rng());
  for (int64_t block = 0; block < numBlocks; ++block) {
    uint8_t *b = &data[block * blockBytes];
    if (format.quant == QuantFormat::MXFP4) {
      b[0] = static_cast<uint8_t>(
          127 + std::uniform_int_distribution<int>(-20, 20)(rng));
      continue;
    }
    for (int64_t at : halfFields(format)) {
      uint16_t half;
      do
        half = static_cast<uint16_t>(rng());
      while ((half & 0x7c00) == 0x7c00);
      b[at] = static_cast<uint8_t>(half);
      b[at + 1] = static_cast<uint8_t>(half >> 8);
    }
  }
  return data;
}

void initializeNativeTarget() {
  static std::once_flag once;
  std::call_once(once, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
  });
}

JitMatmul::JitMatmul(const MatmulSpec &spec, unsigned lanes,
                     IntegerDot integerDot, std::string cpu,
                     std::vector<std::string> features)
    : spec(spec) {
  initializeNativeTarget();
  DialectRegistry registry;
  registry
      .insert<arith::ArithDialect, cf::ControlFlowDialect, func::FuncDialect,
              index::IndexDialect, LLVM::LLVMDialect, math::MathDialect,
              memref::MemRefDialect, scf::SCFDialect, vector::VectorDialect>();
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  context.appendDialectRegistry(registry);
  context.loadAllAvailableDialects();

  OwningOpRef<ModuleOp> module = buildModule(lanes, integerDot);
  if (!error.empty())
    return;
  if (failed(verify(*module))) {
    error = "the generated module does not verify";
    return;
  }
  if (failed(codegen::lowerToLLVMDialect(*module))) {
    error = "the generated module does not lower to LLVM";
    return;
  }
  // Optimized for this CPU, or the one asked for, as the backend optimizes
  // kernels (-O3).
  auto builder = llvm::orc::JITTargetMachineBuilder::detectHost();
  if (!builder) {
    error = llvm::toString(builder.takeError());
    return;
  }
  std::string featureList = llvm::join(features, ",");
  if (!cpu.empty()) {
    builder->setCPU(cpu);
    builder->getFeatures() = llvm::SubtargetFeatures(featureList);
  }
  auto machine = builder->createTargetMachine();
  if (!machine) {
    error = llvm::toString(machine.takeError());
    return;
  }
  targetMachine = std::move(*machine);
  std::function<llvm::Error(llvm::Module *)> optimize =
      makeOptimizingTransformer(/*optLevel=*/3, /*sizeLevel=*/0,
                                targetMachine.get());
  // The JIT's own code generator is the host's: the functions' attributes
  // hold it to the CPU asked for.
  auto transformer = [cpu, featureList, optimize](llvm::Module *m) {
    if (!cpu.empty())
      for (llvm::Function &f : *m)
        if (!f.isDeclaration()) {
          f.addFnAttr("target-cpu", cpu);
          f.addFnAttr("target-features", featureList);
        }
    return optimize(m);
  };
  ExecutionEngineOptions options;
  options.transformer = transformer;
  auto created = ExecutionEngine::create(*module, options);
  if (!created) {
    error = llvm::toString(created.takeError());
    return;
  }
  engine = std::move(*created);
}

std::string JitMatmul::run(GuardedBuffer &w, GuardedBuffer &x, GuardedBuffer *q,
                           std::vector<float> &y, std::vector<float> *acc,
                           int64_t T, int64_t thread, int64_t threads,
                           int32_t &counter) {
  float dummy = 0;
  int8_t dummyByte = 0;
  auto wView = view(reinterpret_cast<int8_t *>(w.data), w.size);
  auto xView = view(x.floats(), x.size / 4);
  auto qView = q ? view(reinterpret_cast<int8_t *>(q->data), q->size)
                 : view(&dummyByte, 1);
  auto yView = view(y.data(), y.size());
  auto accView = acc ? view(acc->data(), acc->size()) : view(&dummy, 1);
  auto *wArg = &wView;
  auto *xArg = &xView;
  auto *qArg = &qView;
  auto *yArg = &yView;
  auto *accArg = &accView;
  auto counterView = view(&counter, 1);
  auto *counterArg = &counterView;
  if (llvm::Error e = engine->invoke("run", wArg, xArg, qArg, yArg, accArg, T,
                                     thread, threads, counterArg))
    return llvm::toString(std::move(e));
  return "";
}

std::string JitMatmul::quantize(GuardedBuffer &x, GuardedBuffer &q, int64_t T,
                                int64_t thread, int64_t threads) {
  auto xView = view(x.floats(), x.size / 4);
  auto qView = view(reinterpret_cast<int8_t *>(q.data), q.size);
  auto *xArg = &xView;
  auto *qArg = &qView;
  if (llvm::Error e =
          engine->invoke("quantize", xArg, qArg, T, thread, threads))
    return llvm::toString(std::move(e));
  return "";
}

std::unique_ptr<JitMatmul::BoundRun>
JitMatmul::bindRun(GuardedBuffer &w, GuardedBuffer &x, GuardedBuffer &q,
                   std::vector<float> &y, int64_t T, int64_t thread,
                   int64_t threads, int32_t &counter) {
  auto entry = engine->lookupPacked("_mlir_ciface_run");
  if (!entry) {
    error = llvm::toString(entry.takeError());
    return nullptr;
  }
  auto bound = std::make_unique<BoundRun>();
  bound->entry = *entry;
  bound->w = view(reinterpret_cast<int8_t *>(w.data), w.size);
  bound->x = view(x.floats(), x.size / 4);
  bound->q = view(reinterpret_cast<int8_t *>(q.data), q.size);
  bound->y = view(y.data(), y.size());
  bound->acc = view(y.data(), 1); // no residual: never read
  bound->counter = view(&counter, 1);
  bound->pointers[0] = &bound->w;
  bound->pointers[1] = &bound->x;
  bound->pointers[2] = &bound->q;
  bound->pointers[3] = &bound->y;
  bound->pointers[4] = &bound->acc;
  bound->pointers[5] = &bound->counter;
  bound->T = T;
  bound->thread = thread;
  bound->threads = threads;
  // The packed calling convention (ExecutionEngine::invoke): a pointer to
  // each argument, here pointers to the memref descriptors' pointers.
  bound->args = {&bound->pointers[0], &bound->pointers[1], &bound->pointers[2],
                 &bound->pointers[3], &bound->pointers[4], &bound->T,
                 &bound->thread,      &bound->threads,     &bound->pointers[5]};
  return bound;
}

bool JitMatmul::checkArguments(func::FuncOp kernel, ValueRange operands) {
  if (operands.size() != kernel.getNumArguments()) {
    error = "@" + kernel.getName().str() + " takes " +
            std::to_string(kernel.getNumArguments()) +
            " arguments, Kernels.h documents " +
            std::to_string(operands.size());
    return false;
  }
  for (unsigned i = 0; i < operands.size(); ++i)
    if (operands[i].getType() != kernel.getArgumentTypes()[i]) {
      error = "@" + kernel.getName().str() + "'s argument " +
              std::to_string(i) +
              " has another type than Kernels.h "
              "documents";
      return false;
    }
  return true;
}

OwningOpRef<ModuleOp> JitMatmul::buildModule(unsigned lanes,
                                             IntegerDot integerDot) {
  Location loc = UnknownLoc::get(&context);
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  KernelLibrary library(*module, lanes, integerDot);
  func::FuncOp kernel = library.matmul(spec);
  func::FuncOp quantizeKernel;
  if (spec.int8Activations)
    quantizeKernel = library.quantizeActivations(spec.k);
  if (!kernel || (spec.int8Activations && !quantizeKernel)) {
    error = "the kernel library generated no kernel";
    return module;
  }

  OpBuilder b(&context);
  b.setInsertionPointToEnd(module->getBody());
  Type index = b.getIndexType();
  auto bytes = MemRefType::get({ShapedType::kDynamic}, b.getI8Type());
  auto floats = MemRefType::get({ShapedType::kDynamic}, b.getF32Type());
  auto constant = [&](int64_t v) -> Value {
    return arith::ConstantIndexOp::create(b, loc, v);
  };

  WeightLayout layout(spec, lanes);
  {
    auto run = func::FuncOp::create(
        b, loc, "run",
        b.getFunctionType(
            {bytes, floats, bytes, floats, floats, index, index, index,
             MemRefType::get({ShapedType::kDynamic}, b.getI32Type())},
            {}));
    run->setAttr(LLVM::LLVMDialect::getEmitCWrapperAttrName(), b.getUnitAttr());
    Block *entry = run.addEntryBlock();
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(entry);
    auto arg = [&](unsigned i) { return entry->getArgument(i); };
    SmallVector<Value> operands = {arg(0), constant(layout.wOff)};
    if (spec.swiglu)
      operands.push_back(constant(layout.wOff2));
    if (spec.int8Activations)
      operands.append({arg(2), constant(kQOffset)});
    else
      operands.append({arg(1), constant(kXOffset)});
    operands.append({arg(3), constant(kYOffset)});
    if (spec.accumulate)
      operands.append({arg(4), constant(kAccOffset)});
    if (spec.bias)
      operands.append({arg(0), constant(layout.biasOff)});
    operands.append({arg(5), arg(6), arg(7), arg(8), constant(0)});
    if (!checkArguments(kernel, operands))
      return module;
    func::CallOp::create(b, loc, kernel, operands);
    func::ReturnOp::create(b, loc);
  }
  if (spec.int8Activations) {
    auto quantize = func::FuncOp::create(
        b, loc, "quantize",
        b.getFunctionType({floats, bytes, index, index, index}, {}));
    quantize->setAttr(LLVM::LLVMDialect::getEmitCWrapperAttrName(),
                      b.getUnitAttr());
    Block *entry = quantize.addEntryBlock();
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(entry);
    auto arg = [&](unsigned i) { return entry->getArgument(i); };
    SmallVector<Value> operands = {
        arg(0), constant(kXOffset), arg(1), constant(kQOffset), arg(2), arg(3),
        arg(4)};
    if (!checkArguments(quantizeKernel, operands))
      return module;
    func::CallOp::create(b, loc, quantizeKernel, operands);
    func::ReturnOp::create(b, loc);
  }
  return module;
}

} // namespace moec::test
