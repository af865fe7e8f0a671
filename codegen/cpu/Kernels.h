//===- Kernels.h - The CPU backend's kernel generators ---------*- C++ -*-===//
//
// Every compute kernel of a compiled model, generated per model as a private
// func.func of scf + vector + arith + math on memrefs, specialised for its
// shapes, weight formats and the target's vector width. The schedule (the
// forward function) calls them on every thread at once: each kernel takes the
// thread's index and the thread count and does its share of the work.
//
// Buffers: activations are f32 (or i32) elements of the scratch arena,
// addressed by element offsets into a memref<?xf32> (memref<?xi32>) view of
// it; weights are bytes of the resident segment or the expert arena
// (memref<?xi8>), addressed by byte offsets and decoded with
// codegen/cpu/BlockDecode.h inside the kernels' inner loops.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_CODEGEN_CPU_KERNELS_H
#define MOEC_CODEGEN_CPU_KERNELS_H

#include "codegen/cpu/BlockDecode.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/StringMap.h"

namespace moec::codegen {

/// y[t, n] = sum_k W[n, k] x[t, k] (+ bias[n]) (+ acc[t, n]) for the tokens
/// of one call, or silu(Wg x) * (Wu x) for a gate/up pair.
struct MatmulSpec {
  WeightFormat format;
  int64_t n = 0, k = 0;     // weights [n, k]
  bool swiglu = false;      // two weights of one format: gate and up
  bool accumulate = false;  // adds another activation (a residual)
  bool bias = false;        // adds an f32 bias vector from the weight buffer
  /// Integer dot products against activations quantized to 8 bits (see
  /// KernelLibrary::quantizeActivations): x is then that i8 buffer.
  bool int8Activations = false;
  /// Rows per unit the threads claim (0: the default, about 1 MiB of
  /// weights, fewer where a call has few rows per thread; tests ask for
  /// smaller units). Rounded up to whole interleaved tiles and row tiles.
  int64_t claimRows = 0;
  /// Tokens per pass of prefill's AMX GEMM over the weights (0: as many as
  /// kAmxActivationBytes of transposed activations hold; tests ask for
  /// fewer to have several passes). Rounded up to whole groups of 16.
  int64_t amxPassTokens = 0;
};

struct RmsNormSpec {
  int64_t dim;
  WeightFormat weightFormat; // f32, f16 or bf16
  double epsilon;
};

struct RopeSpec {
  int64_t heads, headDim;
  bool neox;
  double theta;
};

struct AttentionSpec {
  int64_t heads, kvHeads, headDim;
  double scale;
  /// Rows (positions) of the KV cache. The kernels keep each KV head's
  /// rows together (head-major: head h's row p at (h x contextRows + p) x
  /// headDim), so that attending reads one sequential stream per head.
  int64_t contextRows;
  /// Keys and values stored as f16 (rounded to nearest even, widened to
  /// f32 when read): half the cache's memory and bytes read per step.
  bool f16Cache = false;
};

struct RouteSpec {
  int64_t experts, k;
  bool normalize;
};

/// How 8-bit integer dot products are computed: portable vector code, or
/// the target's instructions (selected by the compiler, per target).
enum class IntegerDot {
  Generic,       // extend, multiply, add: any target
  X86Avx2,       // vpmaddubsw + vpmaddwd
  X86AvxVnni,    // AVX2 and vpdpbusd on ymm/xmm (AVX-VNNI, or AVX512-VNNI
                 // with AVX512VL): u8 x s8 dots into i32, no saturation
  X86Avx512Vnni, // X86AvxVnni, and on zmm decode's GEMV of 8-row tiles of
                 // Q4_0 and Q8_0 and prefill's GEMM of 8-row broadcast
                 // tiles (AVX512-VNNI, BW and VL)
  X86Amx,        // X86Avx512Vnni, with prefill's GEMM of interleaved
                 // weights on AMX tiles (tdpbusd; AMX-TILE and AMX-INT8,
                 // whose state the OS must grant the process: the runtime
                 // asks at open, MOEC_INFO_CPU_STATE)
};

/// Generates kernels into a module, each once per specialisation.
class KernelLibrary {
public:
  /// `lanes`: f32 lanes of the target's vectors (8 for AVX2, 16 for
  /// AVX-512, 4 for NEON).
  KernelLibrary(mlir::ModuleOp module, unsigned lanes,
                IntegerDot integerDot = IntegerDot::Generic);

  unsigned getLanes() const { return lanes; }

  /// (w: memref<?xi8>, wOff, [wOff2], x: memref<?xf32>, xOff, y, yOff,
  ///  [acc, accOff], [bias: memref<?xi8>, biasOff], T, thread, threads,
  ///  counters: memref<?xi32>, counterAt): rows [0, n), T tokens; the
  /// threads claim chunks of rows from counters[counterAt], which is 0
  /// before the first thread arrives.
  mlir::func::FuncOp matmul(const MatmulSpec &spec);

  /// The routed experts' projections: for each expert e with rows
  /// [offsets[e], offsets[e + 1]) of x, the matmul of its weights at
  /// arena[extents[e] + partOffset(s)] (arena: memref<?xi8>, extents:
  /// memref<?xi64>, offsets: memref<?xi32>). Args: (arena, extents,
  /// extentsOff, offsets, offsetsOff, x, xOff, y, yOff, thread, threads,
  /// counters, counterAt): the threads claim (expert, chunk of rows) units
  /// as matmul's do.
  /// `members`: the experts of one format group of a bank of mixed formats
  /// (ascending; a constant table in the object); empty: all `experts`.
  mlir::func::FuncOp expertMatmul(const MatmulSpec &spec, int64_t experts,
                                  int64_t partOffset, int64_t partOffset2,
                                  llvm::ArrayRef<int64_t> members = {});

  /// Quantizes activations to 8 bits for integer matmuls, as ggml's Q8_0
  /// with per-16 sums: each token's row of `k` (a multiple of 32) becomes,
  /// at qOff + t * getQuantizedRowBytes(k) of an i8 buffer, k codes, then
  /// k/32 f32 scales d, then k/16 f32 sums d * (sum of 16 codes), then the
  /// integer code sums: k/16 i32 per 16 codes and k/32 i32 per 32 (at
  /// getQuantizedCodeSumsOffset). Per block of 32: amax = max |x|, d =
  /// amax / 127, id = amax > 0 ? 127 / amax : 0, code = roundeven(x * id)
  /// (f32 arithmetic). Args: (x: memref<?xf32>, xOff, q: memref<?xi8>, qOff,
  /// T, thread, threads).
  mlir::func::FuncOp quantizeActivations(int64_t k);
  static int64_t getQuantizedRowBytes(int64_t k) {
    return k + k / 8 + k / 4 + k / 4 + k / 8;
  }
  /// Where a quantized row's i32 code sums over runs of `run` (16 or 32)
  /// begin, from the row's start.
  static int64_t getQuantizedCodeSumsOffset(int64_t k, int64_t run) {
    assert((run == 16 || run == 32) && "code sums are per 16 and per 32");
    return run == 16 ? k + k / 8 + k / 4 : k + k / 8 + k / 2;
  }

  /// RMSNorm fused into its consumers' activation quantization: the
  /// normalized rows go straight to their 8-bit form (as
  /// quantizeActivations lays it out), never to memory as f32. (x, xOff,
  /// q: memref<?xi8>, qOff, w: memref<?xi8>, wOff, rows, thread, threads).
  mlir::func::FuncOp rmsNormQuantize(const RmsNormSpec &spec);

  /// (x, xOff, y, yOff, w: memref<?xi8>, wOff, rows, thread, threads).
  mlir::func::FuncOp rmsNorm(const RmsNormSpec &spec);

  /// (table: memref<?xi8>, tableOff, tokens: memref<?xi32>, y, yOff, T,
  ///  thread, threads).
  mlir::func::FuncOp embed(const WeightFormat &format, int64_t dim);

  /// The cos and sin of each token's rotation angles, once per forward
  /// call for every RoPE of that head size and base: (table, tableOff, pos
  /// i32, posOff, rows, thread, threads); row t's cosines at t x headDim,
  /// its sines half a row further.
  mlir::func::FuncOp ropeAngles(int64_t headDim, double theta);
  /// Rotates rows by the angles of a ropeAngles table: (x, xOff, y, yOff,
  /// table, tableOff, rows, thread, threads), the table's offset at the
  /// first row's angles.
  mlir::func::FuncOp rope(const RopeSpec &spec);

  /// Stores keys and values at their positions in the head-major caches
  /// of AttentionSpec: (k, kOff, v, vOff, cache: memref<?xf32>, kCacheOff,
  /// vCacheOff, positions, T, thread, threads).
  mlir::func::FuncOp kvStore(const AttentionSpec &spec);

  /// (q, qOff, cache, kCacheOff, vCacheOff, y, yOff, positions,
  ///  positionsOff, T, thread, threads): query t's position is
  ///  positions[positionsOff + t].
  mlir::func::FuncOp attention(const AttentionSpec &spec);

  /// Softmax routing: (logits, lOff, ids: memref<?xi32>, idsOff, weights,
  /// wOff, probs (T x E scratch), pOff, T, thread, threads).
  mlir::func::FuncOp route(const RouteSpec &spec);

  /// Thread 0's part of moe.dispatch: counting sort of the (token, slot)
  /// pairs by expert. (ids: memref<?xi32>, idsOff, offsets, offOff, slots,
  /// slotsOff, inverse, invOff, cursor, curOff, T).
  mlir::func::FuncOp dispatchPlan(int64_t experts, int64_t k);

  /// rows[r] = x[slots[r] / k]: (x, xOff, slots: memref<?xi32>, slotsOff,
  /// rows, rowsOff, T, thread, threads).
  mlir::func::FuncOp dispatchGather(int64_t dim, int64_t k);
  /// dispatchGather of quantized rows (quantizeActivations' layout of `dim`
  /// activations): rows[r] = x[slots[r] / k], getQuantizedRowBytes(dim)
  /// bytes each. (x: memref<?xi8>, xOff (bytes), slots, slotsOff,
  /// rows: memref<?xi8>, rowsOff (bytes), T, thread, threads).
  mlir::func::FuncOp dispatchGatherQuantized(int64_t dim, int64_t k);

  /// out[t] = [res[t] +] sum_j w[t, j] * y[inverse[t * k + j]]:
  /// (y, yOff, inverse: memref<?xi32>, invOff, w, wOff, out, outOff,
  ///  [res, resOff], T, thread, threads).
  mlir::func::FuncOp combine(int64_t dim, int64_t k, bool residual);

  /// y[t] = a[t] + b[t] over rows of `dim`: (a, aOff, b, bOff, y, yOff, T,
  /// thread, threads).
  mlir::func::FuncOp add(int64_t dim);

  /// y[t] = x[t] * sigmoid(g[t]) (one gate value per row): (x, xOff, g,
  /// gOff, y, yOff, T, thread, threads).
  mlir::func::FuncOp sigmoidScale(int64_t dim);

private:
  mlir::func::FuncOp getOrCreate(
      llvm::StringRef name, llvm::ArrayRef<mlir::Type> argTypes,
      llvm::function_ref<void(mlir::OpBuilder &, mlir::ValueRange)> body);

  mlir::ModuleOp module;
  unsigned lanes;
  IntegerDot integerDot;
  llvm::StringMap<mlir::func::FuncOp> kernels;
};

} // namespace moec::codegen

#endif // MOEC_CODEGEN_CPU_KERNELS_H
