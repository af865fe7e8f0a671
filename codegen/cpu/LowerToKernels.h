//===- LowerToKernels.h - @forward into kernels and a schedule --*- C++ -*-===//
//
// The CPU backend's `codegen` phase: replaces the tensor-level `@forward` of
// the `plan` phase (moe + qnt + tensor + arith ops) by
//
//   * kernels (codegen/cpu/Kernels.h): private functions of scf + vector +
//     arith + math on memrefs, each fused as far as this backend fuses:
//     dequantize into matmul (GEMV and GEMM alike), gate + up + SwiGLU,
//     a residual add into the matmul or combine that produces its operand;
//   * `@moec_model_forward`, the schedule that runtime/abi/moec_abi.h
//     specifies: on every pool thread, the layer loop unrolled into kernel
//     calls on buffers of the scratch arena (reused as their values die),
//     barriers where a kernel reads or overwrites what another thread may
//     still be writing or reading, expert extents acquired from and released
//     to the runtime by thread 0;
//   * `@moec_model_info`, the table the runtime reads the buffer sizes from.
//
// Needs the `moe.layout` module attribute of the plan phase (where each
// weight lies in the bundle).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_CODEGEN_CPU_LOWERTOKERNELS_H
#define MOEC_CODEGEN_CPU_LOWERTOKERNELS_H

#include "codegen/cpu/Kernels.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

#include <memory>

namespace moec::codegen {

struct CpuLoweringOptions {
  /// f32 lanes of the target's vectors.
  unsigned lanes = 8;
  /// Most tokens per forward call (prefill chunk).
  int64_t maxBatch = 64;
  /// Quantize activations to 8 bits for matmuls whose weights have an
  /// integer form (every quantized format), with these dot products.
  bool int8Activations = false;
  IntegerDot integerDot = IntegerDot::Generic;
  /// Report every projection's f32 input and the routed experts' outputs
  /// to the runtime (moec_rt_observe_input/_experts, ABI 0.5): calibration.
  /// Needs f32 activations.
  bool instrument = false;
  /// Experts predicted per token for the next layer beyond its k (the
  /// pre-gated prefetch): more recall for less precision.
  int64_t prefetchExtra = 0;
  /// Keys and values in the KV caches as f16 (AttentionSpec::f16Cache):
  /// half the cache's memory. The IR's caches stay f32 tensors; this is
  /// how the CPU backend stores them.
  bool f16KvCache = false;
};

mlir::LogicalResult lowerToKernels(mlir::ModuleOp module,
                                   const CpuLoweringOptions &options);

/// `moec-cpu-lower-to-kernels` for moec-opt and lit tests.
std::unique_ptr<mlir::Pass> createLowerToKernelsPass();
void registerLowerToKernelsPass();

} // namespace moec::codegen

#endif // MOEC_CODEGEN_CPU_LOWERTOKERNELS_H
