//===- JitMatmul.h - A generated matmul, JIT-compiled -----------*- C++ -*-===//
//-*-===//
//
// What the generated-code tests (MatmulKernelTest, BlockDecodeTest) and the
// kernel benchmark (bench/gemv_from_cache.cpp) share: a KernelLibrary matmul
// compiled through codegen::lowerToLLVMDialect and LLVM's JIT for the host
// CPU, the buffers and offsets it is called with, and random weights of
// every format.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_TEST_CODEGEN_CPU_JITMATMUL_H
#define MOEC_TEST_CODEGEN_CPU_JITMATMUL_H

#include "codegen/cpu/Kernels.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/ExecutionEngine/CRunnerUtils.h"
#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Target/TargetMachine.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace moec::test {

using codegen::IntegerDot;
using codegen::MatmulSpec;
using codegen::WeightFormat;

//===----------------------------------------------------------------------===//
// Formats and weights
//===----------------------------------------------------------------------===//

/// Whether the host CPU has `feature` (as LLVM names it; the OS's enabling
/// of the register state included).
bool hostHas(llvm::StringRef feature);

WeightFormat floatFormat(WeightFormat::Kind kind);
WeightFormat quantFormat(qnt::QuantFormat quant, unsigned group = 0,
                         bool asymmetric = false);
/// Whether `format` is one of the qnt dialect's own int formats.
bool isOwnFormat(const WeightFormat &format);

/// Offsets in a block of the f16 scales and mins, which the test keeps
/// finite (as test/codegen/cpu/BlockDecodeTest does).
std::vector<int64_t> halfFields(const WeightFormat &format);

/// Random weight bytes of `rows` rows of `k` elements: random finite values
/// for the float formats; random codes with finite f16 scales and mins
/// (normal, subnormal, zero, either sign) for the block formats, and E8M0
/// scales of MXFP4 within 2^+-20 (a random byte could be 2^127, which no
/// f32 dot product survives).
std::vector<uint8_t> randomWeights(const WeightFormat &format, unsigned lanes,
                                   int64_t rows, int64_t k, std::mt19937 &rng);

//===----------------------------------------------------------------------===//
// Buffers
//===----------------------------------------------------------------------===//

/// `bytes` bytes that end right before an inaccessible page.
class GuardedBuffer {
public:
  explicit GuardedBuffer(size_t bytes) : size(bytes) {
    pageSize = sysconf(_SC_PAGESIZE);
    dataPages = (bytes + pageSize - 1) / pageSize;
    mappedBytes = (dataPages + 1) * pageSize;
    void *map = mmap(nullptr, mappedBytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
      std::abort();
    base = static_cast<uint8_t *>(map);
    if (mprotect(base + dataPages * pageSize, pageSize, PROT_NONE) != 0)
      std::abort();
    // Sizes are multiples of 4 where the buffer holds floats, so that their
    // views are aligned.
    data = base + dataPages * pageSize - bytes;
  }
  /// A copy of `contents`.
  explicit GuardedBuffer(const std::vector<uint8_t> &contents)
      : GuardedBuffer(contents.size()) {
    std::memcpy(data, contents.data(), contents.size());
  }
  ~GuardedBuffer() { munmap(base, mappedBytes); }
  GuardedBuffer(const GuardedBuffer &) = delete;
  GuardedBuffer &operator=(const GuardedBuffer &) = delete;

  uint8_t *data;
  size_t size;
  float *floats() { return reinterpret_cast<float *>(data); }

private:
  uint8_t *base;
  size_t pageSize, dataPages, mappedBytes;
};

template <typename T> StridedMemRefType<T, 1> view(T *data, int64_t elements) {
  return {data, data, 0, {elements}, {1}};
}

//===----------------------------------------------------------------------===//
// The generated kernels
//===----------------------------------------------------------------------===//

// Offsets the kernels are called with: bytes for the weights (and the
// 8-bit activations), elements for the f32 buffers.
constexpr int64_t kWeightOffset = 64;
constexpr int64_t kXOffset = 3;
constexpr int64_t kYOffset = 5;
constexpr int64_t kAccOffset = 7;
constexpr int64_t kQOffset = 48;
/// Slack after y's rows, checked to stay untouched.
constexpr int64_t kYSlack = 9;

void initializeNativeTarget();

/// Where the operands of one matmul lie in the weight buffer.
struct WeightLayout {
  int64_t matrixBytes; // one [n, k] matrix
  int64_t wOff, wOff2, biasOff, totalBytes;

  WeightLayout(const MatmulSpec &spec, unsigned lanes) {
    matrixBytes = spec.n * spec.k / spec.format.blockElements(lanes) *
                  spec.format.blockBytes(lanes);
    wOff = kWeightOffset;
    wOff2 = wOff + matrixBytes;
    biasOff = wOff + (spec.swiglu ? 2 : 1) * matrixBytes;
    totalBytes = biasOff + (spec.bias ? 4 * spec.n : 0);
  }
};

/// One matmul compiled for this machine, with two public entry points:
///
///   @run(w: memref<?xi8>, x: memref<?xf32>, q: memref<?xi8>,
///        y: memref<?xf32>, acc: memref<?xf32>, T, thread, threads,
///        counter: memref<?xi32>)
///     calls the kernel with the offsets above (x for f32 activations, q at
///     kQOffset for 8-bit ones; acc and the bias only where the spec has
///     them, the bias from w);
///   @quantize(x: memref<?xf32>, q: memref<?xi8>, T, thread, threads)
///     (8-bit activations only) calls quantizeActivations(k).
///
/// Compiled for the host CPU, or with `cpu` and `features` (LLVM's names,
/// "+avx2" style) for another ISA the host runs, as the backend compiles a
/// target's kernels.
class JitMatmul {
public:
  JitMatmul(const MatmulSpec &spec, unsigned lanes, IntegerDot integerDot,
            std::string cpu = "", std::vector<std::string> features = {});

  /// Empty when the kernel was built; else what went wrong.
  std::string error;

  std::string run(GuardedBuffer &w, GuardedBuffer &x, GuardedBuffer *q,
                  std::vector<float> &y, std::vector<float> *acc, int64_t T,
                  int64_t thread, int64_t threads, int32_t &counter);
  std::string quantize(GuardedBuffer &x, GuardedBuffer &q, int64_t T,
                       int64_t thread, int64_t threads);

  /// @run with its arguments bound once and its entry looked up once, for
  /// timing loops (run() looks the entry up on every call). The buffers
  /// must outlive it.
  class BoundRun {
  public:
    void operator()() { entry(args.data()); }

  private:
    friend class JitMatmul;
    void (*entry)(void **) = nullptr;
    StridedMemRefType<int8_t, 1> w, q;
    StridedMemRefType<float, 1> x, y, acc;
    StridedMemRefType<int32_t, 1> counter;
    void *pointers[6];
    int64_t T, thread, threads;
    std::vector<void *> args;
  };
  /// Sets `error` (and returns nothing to call) where the entry is missing.
  std::unique_ptr<BoundRun> bindRun(GuardedBuffer &w, GuardedBuffer &x,
                                    GuardedBuffer &q, std::vector<float> &y,
                                    int64_t T, int64_t thread, int64_t threads,
                                    int32_t &counter);

private:
  /// Whether `kernel` takes `operands` as Kernels.h documents its
  /// arguments; sets `error` if not.
  bool checkArguments(mlir::func::FuncOp kernel, mlir::ValueRange operands);
  mlir::OwningOpRef<mlir::ModuleOp> buildModule(unsigned lanes,
                                                IntegerDot integerDot);

  MatmulSpec spec;
  mlir::MLIRContext context;
  std::unique_ptr<llvm::TargetMachine> targetMachine;
  std::unique_ptr<mlir::ExecutionEngine> engine;
};

} // namespace moec::test

#endif // MOEC_TEST_CODEGEN_CPU_JITMATMUL_H
