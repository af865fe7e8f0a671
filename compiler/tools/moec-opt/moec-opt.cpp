//===- moec-opt.cpp - mlir-opt for moec's dialects and passes -------------===//
//
// The mlir-opt of this project: parses, verifies, transforms and prints IR
// of the moe and qnt dialects together with the upstream dialects that the
// moec pipeline imports into and lowers through. lit tests drive it.
//
//===----------------------------------------------------------------------===//

#include "codegen/cpu/LowerToKernels.h"
#include "dialects/moe/IR/MoeOps.h"
#include "dialects/qnt/IR/QntOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Quant/IR/Quant.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  // Ours.
  registry.insert<moec::moe::MoeDialect, moec::qnt::QntDialect>();
  // Upstream: what import produces (func, arith, math, tensor, linalg; quant
  // at import boundaries only) and what CPU lowering goes through.
  registry.insert<mlir::func::FuncDialect, mlir::arith::ArithDialect,
                  mlir::math::MathDialect, mlir::tensor::TensorDialect,
                  mlir::linalg::LinalgDialect, mlir::quant::QuantDialect,
                  mlir::scf::SCFDialect, mlir::memref::MemRefDialect,
                  mlir::vector::VectorDialect,
                  mlir::bufferization::BufferizationDialect,
                  mlir::LLVM::LLVMDialect>();

  // Upstream's generic passes (canonicalize, cse, inline, symbol-dce, ...).
  mlir::registerTransformsPasses();
  // Ours: one lit test file per flag (test/codegen/...).
  moec::codegen::registerLowerToKernelsPass();

  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "moec optimizer driver\n", registry));
}
