//===- EmitObject.h - Kernels and schedule to LLVM and object code -*- C++ -*-===//
//
// The end of the CPU backend: the `llvm` phase lowers the `codegen` phase's
// module (func + scf + vector + arith + math + memref) through upstream
// conversions to the LLVM dialect; object emission translates it to LLVM
// IR, optimises it at -O3 for the target's triple, CPU and features, and
// writes an ELF object with LLVM's TargetMachine.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_CODEGEN_CPU_EMITOBJECT_H
#define MOEC_CODEGEN_CPU_EMITOBJECT_H

#include "targets/TargetDescription.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/Error.h"

#include <string>

namespace moec::codegen {

/// Lowers every op of `module` to the LLVM dialect.
mlir::LogicalResult lowerToLLVMDialect(mlir::ModuleOp module);

/// The object code of an LLVM-dialect module for `target`.
llvm::Expected<std::string>
emitObject(mlir::ModuleOp module, const targets::TargetDescription &target);

/// The optimised LLVM IR (for --compile-to=llvm-ir and tests).
llvm::Expected<std::string>
emitOptimizedLLVMIR(mlir::ModuleOp module,
                    const targets::TargetDescription &target);

} // namespace moec::codegen

#endif // MOEC_CODEGEN_CPU_EMITOBJECT_H
