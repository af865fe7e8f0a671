//===- Kernels.cpp - The CPU backend's kernel generators ------------------===//

#include "codegen/cpu/Kernels.h"

#include "mlir/Dialect/AMX/AMXDialect.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/xxhash.h"

#include <cmath>
#include <numeric>

using namespace mlir;
using namespace moec;
using namespace moec::codegen;

namespace {

/// Builder shorthands for kernel bodies. Index arithmetic, loops and the
/// f32 vector type of the target.
struct Emitter {
  OpBuilder &b;
  Location loc;
  unsigned lanes;
  IntegerDot integerDot = IntegerDot::Generic;

  Type f32() { return b.getF32Type(); }
  Type f64() { return b.getF64Type(); }
  Type i32() { return b.getI32Type(); }
  VectorType vec(unsigned n) { return VectorType::get({n}, f32()); }
  VectorType vecT() { return vec(lanes); }

  Value idx(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }
  Value cf(double v) {
    return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(float(v)));
  }
  Value cd(double v) {
    return arith::ConstantOp::create(b, loc, b.getF64FloatAttr(v));
  }
  Value add(Value a, Value c) { return arith::AddIOp::create(b, loc, a, c); }
  Value add(Value a, int64_t c) { return c == 0 ? a : add(a, idx(c)); }
  Value sub(Value a, Value c) { return arith::SubIOp::create(b, loc, a, c); }
  Value mul(Value a, Value c) { return arith::MulIOp::create(b, loc, a, c); }
  Value mul(Value a, int64_t c) { return c == 1 ? a : mul(a, idx(c)); }
  Value div(Value a, Value c) { return arith::DivUIOp::create(b, loc, a, c); }
  Value div(Value a, int64_t c) { return c == 1 ? a : div(a, idx(c)); }
  Value rem(Value a, Value c) { return arith::RemUIOp::create(b, loc, a, c); }
  Value rem(Value a, int64_t c) { return rem(a, idx(c)); }
  Value ceilDiv(Value a, Value c) { return div(add(a, sub(c, idx(1))), c); }
  Value fadd(Value a, Value c) { return arith::AddFOp::create(b, loc, a, c); }
  Value fsub(Value a, Value c) { return arith::SubFOp::create(b, loc, a, c); }
  Value fmul(Value a, Value c) { return arith::MulFOp::create(b, loc, a, c); }
  Value fdiv(Value a, Value c) { return arith::DivFOp::create(b, loc, a, c); }
  Value fmax(Value a, Value c) { return arith::MaximumFOp::create(b, loc, a, c); }
  Value exp(Value a) { return math::ExpOp::create(b, loc, a); }
  Value toIndex(Value i32v) {
    return arith::IndexCastOp::create(b, loc, b.getIndexType(), i32v);
  }
  Value toI32(Value indexV) {
    return arith::IndexCastOp::create(b, loc, i32(), indexV);
  }
  Value cmp(arith::CmpIPredicate p, Value a, Value c) {
    return arith::CmpIOp::create(b, loc, p, a, c);
  }
  Value select(Value c, Value t, Value f) {
    return arith::SelectOp::create(b, loc, c, t, f);
  }
  Value zeroVec(unsigned n) {
    return arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(vec(n), b.getF32FloatAttr(0.0f)));
  }
  Value splat(Value scalar, unsigned n) {
    return vector::BroadcastOp::create(b, loc, vec(n), scalar);
  }
  /// A constant integer vector of `type` with every element `v`.
  Value intSplat(VectorType type, int64_t v) {
    return arith::ConstantOp::create(
        b, loc,
        DenseElementsAttr::get(type,
                               b.getIntegerAttr(type.getElementType(), v)));
  }
  Value load(Value mem, Value i) { return memref::LoadOp::create(b, loc, mem, i); }
  void store(Value v, Value mem, Value i) {
    memref::StoreOp::create(b, loc, v, mem, i);
  }
  Value vload(unsigned n, Value mem, Value i) {
    return vector::LoadOp::create(b, loc, vec(n), mem, i);
  }
  void vstore(Value v, Value mem, Value i) {
    vector::StoreOp::create(b, loc, v, mem, i);
  }
  Value fma(Value a, Value x, Value acc) {
    return vector::FMAOp::create(b, loc, a, x, acc);
  }
  Value reduceAdd(Value v) {
    return vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD, v);
  }

  /// for (iv = lo; iv < hi; iv += step) with loop-carried values.
  SmallVector<Value>
  loop(Value lo, Value hi, int64_t step, ValueRange init,
       function_ref<SmallVector<Value>(Value, ValueRange)> body) {
    auto op = scf::ForOp::create(
        b, loc, lo, hi, idx(step), init,
        [&](OpBuilder &nested, Location, Value iv, ValueRange args) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPoint(nested.getInsertionBlock(),
                              nested.getInsertionPoint());
          SmallVector<Value> yields = body(iv, args);
          scf::YieldOp::create(b, loc, yields);
        });
    return SmallVector<Value>(op.getResults());
  }
  void loop(Value lo, Value hi, int64_t step, function_ref<void(Value)> body) {
    loop(lo, hi, step, {}, [&](Value iv, ValueRange) {
      body(iv);
      return SmallVector<Value>();
    });
  }
  void ifThen(Value cond, function_ref<void()> then) {
    auto op = scf::IfOp::create(b, loc, cond, /*withElseRegion=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&op.getThenRegion().front());
    then();
  }

  /// This thread's share [lo, hi) of `n` items.
  std::pair<Value, Value> split(Value n, Value thread, Value threads) {
    Value lo = div(mul(n, thread), threads);
    Value hi = div(mul(n, add(thread, 1)), threads);
    return {lo, hi};
  }

  Value silu(Value x) {
    // x / (1 + exp(-x)), as the reference defines it.
    Value e = exp(arith::NegFOp::create(b, loc, x));
    return fdiv(x, fadd(cf(1.0), e));
  }
  Value sigmoid(Value x) {
    Value e = exp(arith::NegFOp::create(b, loc, x));
    return fdiv(cf(1.0), fadd(cf(1.0), e));
  }
};

/// The widest of lanes, 8, 4 that divides `n`; 0 when none does.
unsigned chunkWidth(unsigned lanes, int64_t n) {
  for (unsigned w : {lanes, 8u, 4u})
    if (w <= lanes && n % w == 0)
      return w;
  return 0;
}

/// A double in a symbol name: shortest round-trip digits, '.' as 'p' and
/// '-' as 'm' (1e-06 -> 1em06), so that different values name different
/// kernels.
std::string nameOf(double v) {
  std::string s = llvm::formatv("{0}", llvm::format("%.17g", v)).str();
  for (char &c : s)
    c = c == '.' ? 'p' : c == '-' ? 'm' : c == '+' ? 'P' : c;
  return s;
}

int64_t storedElementBytes(const WeightFormat &f) {
  return f.kind == WeightFormat::Kind::F32 ? 4 : 2;
}

} // namespace

KernelLibrary::KernelLibrary(ModuleOp module, unsigned lanes,
                             IntegerDot integerDot)
    : module(module), lanes(lanes), integerDot(integerDot) {
  if (integerDot == IntegerDot::X86Amx)
    module.getContext()->getOrLoadDialect<amx::AMXDialect>();
}

func::FuncOp KernelLibrary::getOrCreate(
    StringRef name, ArrayRef<Type> argTypes,
    function_ref<void(OpBuilder &, ValueRange)> body) {
  auto it = kernels.find(name);
  if (it != kernels.end())
    return it->second;
  OpBuilder b(module.getContext());
  b.setInsertionPointToEnd(module.getBody());
  auto type = b.getFunctionType(argTypes, {});
  auto fn = func::FuncOp::create(b, module.getLoc(), name, type);
  fn.setPrivate();
  fn->setAttr("moec.kernel", b.getUnitAttr());
  Block *entry = fn.addEntryBlock();
  b.setInsertionPointToStart(entry);
  body(b, entry->getArguments());
  func::ReturnOp::create(b, module.getLoc());
  // Stack buffers of a fixed size (a GEMM's tile) are allocated once, on
  // entry: one inside a loop (over claimed units, over experts) would take
  // new stack on every iteration until the kernel returns. None is read
  // before the iteration that uses it writes it.
  SmallVector<memref::AllocaOp> nested;
  fn.walk([&](memref::AllocaOp alloca) {
    if (alloca->getBlock() != entry && alloca->getNumOperands() == 0)
      nested.push_back(alloca);
  });
  for (memref::AllocaOp alloca : nested)
    alloca->moveBefore(entry, entry->begin());
  kernels[name] = fn;
  return fn;
}

namespace {

MemRefType bytesType(MLIRContext *ctx) {
  return MemRefType::get({ShapedType::kDynamic}, IntegerType::get(ctx, 8));
}
MemRefType f32Type(MLIRContext *ctx) {
  return MemRefType::get({ShapedType::kDynamic}, Float32Type::get(ctx));
}
MemRefType f16Type(MLIRContext *ctx) {
  return MemRefType::get({ShapedType::kDynamic}, Float16Type::get(ctx));
}
MemRefType i32Type(MLIRContext *ctx) {
  return MemRefType::get({ShapedType::kDynamic}, IntegerType::get(ctx, 32));
}
MemRefType i64Type(MLIRContext *ctx) {
  return MemRefType::get({ShapedType::kDynamic}, IntegerType::get(ctx, 64));
}
/// The KV cache's buffer: f32, or f16 rows (AttentionSpec::f16Cache).
MemRefType kvCacheType(MLIRContext *ctx, const AttentionSpec &spec) {
  return spec.f16Cache ? f16Type(ctx) : f32Type(ctx);
}
/// `n` cache elements from `at` as f32.
Value loadCacheVector(Emitter &e, const AttentionSpec &spec, unsigned n,
                      Value cache, Value at) {
  if (!spec.f16Cache)
    return e.vload(n, cache, at);
  Value halves = vector::LoadOp::create(
      e.b, e.loc, VectorType::get({n}, e.b.getF16Type()), cache, at);
  return arith::ExtFOp::create(e.b, e.loc, e.vec(n), halves);
}
/// Stores f32 vector `v` at cache element `at` (rounded to nearest even
/// where the cache is f16).
void storeCacheVector(Emitter &e, const AttentionSpec &spec, Value v,
                      Value cache, Value at) {
  if (spec.f16Cache) {
    auto type = cast<VectorType>(v.getType());
    v = arith::TruncFOp::create(
        e.b, e.loc, VectorType::get(type.getShape(), e.b.getF16Type()), v);
  }
  e.vstore(v, cache, at);
}

/// The thread's next claim, taken before the current one ends so that the
/// current one's last prefetches can run into the next one's streams
/// (emitTiledGemv): its weights and rows; `valid` is false where none is
/// left (its place is then another claim's, only for addresses that hint).
struct NextClaim {
  Value valid;
  SmallVector<Value, 2> wOff; // byte offsets of the weight matrices
  Value nLo, nHi;
};

/// The matmul of tokens [0, tokens) of x (rows of k, starting at element
/// xOff) with weight rows [nLo, nHi), written to y (rows of n from yOff).
struct MatmulOperands {
  Value w;
  SmallVector<Value, 2> wOff; // byte offsets of the weight matrices
  Value x, xOff, y, yOff;
  Value acc, accOff;   // accumulate
  Value bias, biasOff; // bias
  Value tokens, nLo, nHi;
  /// Claims the thread's next unit now (at most once per claim; the
  /// claimed kernels' loop claims after the claim where it was not called).
  /// Null where the kernel does not claim.
  std::function<NextClaim()> claimNext;
};

/// A 4-byte scalar of `type` (f32, i32) at byte `at` of an i8 memref.
Value loadScalarBytes(Emitter &e, Value mem, Value at, Type type) {
  Value bytes = vector::LoadOp::create(
      e.b, e.loc, VectorType::get({4}, e.b.getI8Type()), mem, at);
  Value v = vector::BitCastOp::create(e.b, e.loc, VectorType::get({1}, type),
                                      bytes);
  return vector::ExtractOp::create(e.b, e.loc, v, 0);
}

/// An f32 at byte `at` of an i8 memref.
Value loadF32Bytes(Emitter &e, Value mem, Value at) {
  return loadScalarBytes(e, mem, at, e.f32());
}

/// Stores a 4-byte scalar (f32, i32) at byte `at` of an i8 memref.
void storeScalarBytes(Emitter &e, Value value, Value mem, Value at) {
  Value v = vector::BroadcastOp::create(
      e.b, e.loc, VectorType::get({1}, value.getType()), value);
  e.vstore(vector::BitCastOp::create(
               e.b, e.loc, VectorType::get({4}, e.b.getI8Type()), v),
           mem, at);
}

/// The epilogue of one output: SwiGLU of the gate/up pair, bias, residual,
/// store.
void emitMatmulEpilogue(Emitter &e, const MatmulSpec &spec,
                        const MatmulOperands &o, Value n, Value t,
                        ArrayRef<Value> sums) {
  Value v = sums[0];
  if (spec.swiglu)
    v = e.fmul(e.silu(v), sums[1]);
  if (spec.bias) {
    v = e.fadd(v, loadF32Bytes(e, o.bias, e.add(o.biasOff, e.mul(n, 4))));
  }
  Value yi = e.add(e.add(o.yOff, e.mul(t, spec.n)), n);
  if (spec.accumulate)
    v = e.fadd(v, e.load(o.acc, e.add(e.add(o.accOff, e.mul(t, spec.n)), n)));
  e.store(v, o.y, yi);
}

/// Rows [lo, hi) in steps of `step`, then the rest one by one.
void loopRowTiles(Emitter &e, Value lo, Value hi, int64_t step,
                  function_ref<void(Value, int64_t)> body) {
  Value count = e.sub(hi, lo);
  Value mainEnd = e.add(lo, e.mul(e.div(count, step), step));
  e.loop(lo, mainEnd, step, [&](Value n) { body(n, step); });
  if (step > 1)
    e.loop(mainEnd, hi, 1, [&](Value n) { body(n, 1); });
}

/// Bytes of one weight row of the matrix (row-major or interleaved alike).
int64_t weightRowBytes(const MatmulSpec &spec, unsigned lanes) {
  return spec.k / spec.format.blockElements(lanes) *
         spec.format.blockBytes(lanes);
}

/// Weight bytes per claimed unit: each unit is a new stream for the
/// hardware prefetchers to pick up and ends with a software prefetch past
/// its last row, so short units cost bandwidth. Measured on the benchmark
/// model's decode (2 threads, Sapphire Rapids guest, two variants in one
/// process, steps alternated): units of ~256 KiB read 4-5% faster than
/// units of 64 rows (36-147 KiB), 64 KiB units 8% slower; with the zmm
/// decode (WideVnniTiles), which waits less on its own instructions, 1 MiB
/// units read 3-5% faster than 256 KiB (two runs), 512 KiB 3%, 2 MiB no
/// faster than 1 MiB.
constexpr int64_t kClaimUnitBytes = 1 << 20;

/// How many matrices' streams a tiled GEMV reads at once (tiles of the
/// unit side by side, each matrix of a SwiGLU pair its own). A core's
/// prefetchers follow a few streams in parallel: two threads reading 1 GiB
/// as 4 interleaved sequential streams each read 19-22% faster than as one
/// stream each, 8 streams 23-26% (Sapphire Rapids guest, 2 threads, runs
/// alternated in one process); one stream is what a GEMV over a unit of
/// consecutive tiles is.
constexpr int64_t kGemvStreams = 4;

/// Rows of one pass of the decode's tiled GEMV (emitTiledGemv: a tile of
/// each stream) where it reads kGemvStreams tiles a pass, or 1 where a
/// matmul does not read tiles so. Bodies that read one tile a pass
/// (TileStreamBody::tilesPerPass) keep this granule: it is whole tiles.
int64_t gemvPassRows(const MatmulSpec &spec) {
  if (!spec.int8Activations || spec.format.interleave <= 1)
    return 1;
  return int64_t(spec.format.interleave) *
         std::max<int64_t>(1, kGemvStreams / (spec.swiglu ? 2 : 1));
}

/// Rows every unit is a multiple of: whole interleaved tiles and whole row
/// tiles of the GEMV and GEMM paths, so that where a unit starts never
/// changes how a row is computed (results stay bit-identical for any
/// thread count). Default units and their tail parts are also whole passes
/// of the tiled GEMV, so that claims do not end with tiles read one at a
/// time (a single stream); only a matrix's (or expert's) last unit, cut at
/// its last row, can. A unit size a test asks for keeps the finer granule.
int64_t claimGranule(const MatmulSpec &spec) {
  int64_t granule =
      std::lcm<int64_t>(std::max<int64_t>(1, spec.format.interleave), 8);
  if (spec.claimRows == 0)
    granule = std::lcm<int64_t>(granule, gemvPassRows(spec));
  return granule;
}

/// The most rows of a unit: about kClaimUnitBytes of weights (both
/// matrices of a SwiGLU pair), whole granules; or what a test asks for.
int64_t claimRows(const MatmulSpec &spec, unsigned lanes) {
  const int64_t granule = claimGranule(spec);
  if (spec.claimRows > 0)
    return (spec.claimRows + granule - 1) / granule * granule;
  const int64_t rowBytes =
      weightRowBytes(spec, lanes) * (spec.swiglu ? 2 : 1);
  return std::max(granule, kClaimUnitBytes / rowBytes / granule * granule);
}

/// Rows per unit at run time: claimRows, but small enough that `rows` (the
/// rows of a call) make about four units per thread, so a small matrix
/// still keeps every thread busy; at least one granule. A unit size a test
/// asks for is kept as it is.
Value emitUnitRows(Emitter &e, const MatmulSpec &spec, Value rows,
                   Value threads) {
  const int64_t most = claimRows(spec, e.lanes);
  if (spec.claimRows > 0)
    return e.idx(most);
  const int64_t granule = claimGranule(spec);
  Value share = e.mul(e.div(e.div(rows, e.mul(threads, 4)), granule), granule);
  Value fewer = arith::MinUIOp::create(e.b, e.loc, share, e.idx(most));
  return arith::MaxUIOp::create(e.b, e.loc, fewer, e.idx(granule));
}

/// Parts the last units of a claimed kernel are cut into (one unit per
/// thread at the end): the thread that finishes first waits at the next
/// barrier for about half of what the others have left, a quarter of a
/// unit instead of half of one.
constexpr int64_t kTailParts = 4;

/// The (unit, part, parts) of claim `claim` when the units from `whole` on
/// are claimed in kTailParts parts each (emitClaimedUnits).
std::tuple<Value, Value, Value> emitClaimUnit(Emitter &e, Value claim,
                                              Value whole) {
  Value inTail = e.cmp(arith::CmpIPredicate::uge, claim, whole);
  Value intoTail =
      e.sub(arith::MaxUIOp::create(e.b, e.loc, claim, whole), whole);
  Value unit =
      e.select(inTail, e.add(whole, e.div(intoTail, kTailParts)), claim);
  Value part = e.select(inTail, e.rem(intoTail, kTailParts), e.idx(0));
  Value parts = e.select(inTail, e.idx(kTailParts), e.idx(1));
  return {unit, part, parts};
}

/// Units [0, units) with their last min(threads, units) in kTailParts parts
/// each: `whole` units claimed whole, and the count of claims.
std::pair<Value, Value> emitClaimCounts(Emitter &e, Value threads,
                                        Value units) {
  Value tail = arith::MinUIOp::create(e.b, e.loc, threads, units);
  Value whole = e.sub(units, tail);
  return {whole, e.add(whole, e.mul(tail, kTailParts))};
}

/// Takes the thread's next claim now (emitClaimedUnits), returning its
/// (valid, unit, part, parts): valid is false where none is left.
using ClaimAhead = function_ref<std::tuple<Value, Value, Value, Value>()>;

/// Runs `body(unit, part, parts, ahead)` for units [0, units) handed out
/// to the threads as they come for them: thread t takes claim t first, then the
/// next unclaimed one (threads + the count of counters[at] before its atomic
/// increment), until none is left. A thread slowed down (by another
/// process, or on a smaller core of a big.LITTLE CPU) takes fewer units
/// instead of leaving the others waiting at the next barrier. The last
/// min(threads, units) units are claimed in kTailParts parts each (part
/// `part` of `parts`; 0 of 1 for the others), so that the threads' last
/// claims are short. Every part runs exactly once, on whichever thread, so
/// results do not depend on the split. counters[at] must be 0 when the
/// first thread arrives (the schedule zeroes its counters before its first
/// kernel). `body`'s last argument takes the thread's next claim before
/// the body ends (at most once; else the loop claims after the body).
void emitClaimedUnits(
    Emitter &e, Value thread, Value threads, Value counters, Value at,
    Value units, function_ref<void(Value, Value, Value, ClaimAhead)> body) {
  OpBuilder &b = e.b;
  Type index = b.getIndexType();
  Value whole, claims;
  std::tie(whole, claims) = emitClaimCounts(e, threads, units);
  // The next claim where the body took it ahead, else `unclaimed`.
  Value ahead = memref::AllocaOp::create(b, e.loc, MemRefType::get({1}, index));
  const int64_t unclaimed = -1;
  auto claim = [&]() {
    Value claimed = memref::AtomicRMWOp::create(
        b, e.loc, arith::AtomicRMWKind::addi,
        arith::ConstantIntOp::create(b, e.loc, 1, 32), counters,
        ValueRange{at});
    return e.add(e.toIndex(claimed), threads);
  };
  scf::WhileOp::create(
      b, e.loc, TypeRange{index}, ValueRange{thread},
      [&](OpBuilder &nb, Location loc, ValueRange args) {
        Value more = arith::CmpIOp::create(nb, loc, arith::CmpIPredicate::ult,
                                           args[0], claims);
        scf::ConditionOp::create(nb, loc, more, args);
      },
      [&](OpBuilder &nb, Location loc, ValueRange args) {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
        auto [unit, part, parts] = emitClaimUnit(e, args[0], whole);
        e.store(e.idx(unclaimed), ahead, e.idx(0));
        auto claimAhead = [&]() -> std::tuple<Value, Value, Value, Value> {
          Value next = claim();
          e.store(next, ahead, e.idx(0));
          Value valid = e.cmp(arith::CmpIPredicate::ult, next, claims);
          auto [u, p, ps] =
              emitClaimUnit(e, e.select(valid, next, e.idx(0)), whole);
          return {valid, u, p, ps};
        };
        body(unit, part, parts, claimAhead);
        Value taken = e.load(ahead, e.idx(0));
        auto ifOp = scf::IfOp::create(
            b, loc, TypeRange{index},
            e.cmp(arith::CmpIPredicate::eq, taken, e.idx(unclaimed)),
            /*withElseRegion=*/true);
        {
          OpBuilder::InsertionGuard g(b);
          b.setInsertionPointToStart(&ifOp.getThenRegion().front());
          scf::YieldOp::create(b, loc, claim());
          b.setInsertionPointToStart(&ifOp.getElseRegion().front());
          scf::YieldOp::create(b, loc, taken);
        }
        scf::YieldOp::create(b, loc, ifOp.getResult(0));
      });
}

/// The rows [lo, hi) of a claim: part `part` of `parts` of unit `unit`
/// (the rows [unit x chunk, min((unit + 1) x chunk, n)) of the matrix),
/// whole granules, the last part taking what is left.
std::pair<Value, Value> emitClaimRows(Emitter &e, const MatmulSpec &spec,
                                      Value unit, Value chunk, Value part,
                                      Value parts) {
  const int64_t granule = claimGranule(spec);
  Value lo = e.mul(unit, chunk);
  Value hi = arith::MinUIOp::create(e.b, e.loc, e.add(lo, chunk),
                                    e.idx(spec.n));
  Value granules = e.ceilDiv(e.sub(hi, lo), e.idx(granule));
  auto edge = [&](Value i) {
    Value at = e.add(lo, e.mul(e.div(e.mul(granules, i), parts), granule));
    return arith::MinUIOp::create(e.b, e.loc, at, hi).getResult();
  };
  return {edge(part), edge(e.add(part, 1))};
}

/// Where row `inTile` of a tile's run of blocks (the tile's blocks of one
/// index, from byte `run`) has its block: whole at inTile x blockBytes, or
/// with the format's split header apart (compiler/emit/Repack.h).
BlockAddress runBlockAddress(Emitter &e, const WeightFormat &f, Value run,
                             Value inTile) {
  const int64_t blockBytes = f.blockBytes(e.lanes);
  const int64_t header = f.splitHeaderBytes();
  if (header == 0)
    return BlockAddress(e.add(run, e.mul(inTile, blockBytes)));
  return BlockAddress(
      e.add(run, e.mul(inTile, header)),
      e.add(e.add(run, int64_t(f.interleave) * header),
            e.mul(inTile, blockBytes - header)),
      header);
}

/// The block `blk` of weight row `row` of the matrix at `wOff`: row-major,
/// or interleaved by tiles of `interleave` rows (compiler/emit/Repack.h; a
/// tile's base is then its first row's row-major offset).
BlockAddress blockAddress(Emitter &e, const MatmulSpec &spec, Value wOff,
                          Value row, Value blk) {
  const int64_t blockBytes = spec.format.blockBytes(e.lanes);
  const int64_t rowBytes = weightRowBytes(spec, e.lanes);
  const unsigned il = spec.format.interleave;
  if (il <= 1)
    return BlockAddress(
        e.add(e.add(wOff, e.mul(row, rowBytes)), e.mul(blk, blockBytes)));
  Value inTile = e.rem(row, il);
  Value tileStart = e.sub(row, inTile);
  Value run = e.add(e.add(wOff, e.mul(tileStart, rowBytes)),
                    e.mul(blk, il * blockBytes));
  return runBlockAddress(e, spec.format, run, inTile);
}

/// Decode (few tokens): each weight block is decoded once per token, in
/// registers, and fed straight to FMAs; `rows` rows at a time give the FMAs
/// independent accumulators and share every activation load.
void emitGemv(Emitter &e, const MatmulSpec &spec, const MatmulOperands &o,
              int64_t rowTile) {
  const unsigned L = e.lanes;
  const int64_t blockElems = spec.format.blockElements(L);
  const int64_t blocks = spec.k / blockElems;
  const unsigned nMats = spec.swiglu ? 2 : 1;
  loopRowTiles(e, o.nLo, o.nHi, rowTile, [&](Value n0, int64_t rows) {
    e.loop(e.idx(0), o.tokens, 1, [&](Value t) {
      Value xRow = e.add(o.xOff, e.mul(t, spec.k));
      SmallVector<Value> init(rows * nMats, e.zeroVec(L));
      SmallVector<Value> accs = e.loop(
          e.idx(0), e.idx(blocks), 1, init, [&](Value blk, ValueRange args) {
            SmallVector<Value> acc(args.begin(), args.end());
            Value xk = e.add(xRow, e.mul(blk, blockElems));
            for (int64_t r = 0; r < rows; ++r)
              for (unsigned m = 0; m < nMats; ++m) {
                BlockAddress wb = blockAddress(e, spec, o.wOff[m], e.add(n0, r), blk);
                emitBlockDecode(e.b, e.loc, spec.format, o.w, wb, L,
                                [&](int64_t first, Value wv) {
                                  Value xv = e.vload(L, o.x, e.add(xk, first));
                                  Value &a = acc[r * nMats + m];
                                  a = e.fma(wv, xv, a);
                                });
              }
            return acc;
          });
      for (int64_t r = 0; r < rows; ++r) {
        SmallVector<Value, 2> sums;
        for (unsigned m = 0; m < nMats; ++m)
          sums.push_back(e.reduceAdd(accs[r * nMats + m]));
        emitMatmulEpilogue(e, spec, o, e.add(n0, r), t, sums);
      }
    });
  });
}

/// Prefill (many tokens): a tile of rows is decoded once into an f32 buffer
/// on the stack (L1), then multiplied with every token, `tokenTile` tokens
/// by `rowTile` rows of accumulators at a time, so each decoded weight is
/// reused by all tokens and each load feeds several FMAs.
void emitGemm(Emitter &e, const MatmulSpec &spec, const MatmulOperands &o,
              int64_t rowTile, int64_t tokenTile) {
  const unsigned L = e.lanes;
  const int64_t blockElems = spec.format.blockElements(L);
  const int64_t blocks = spec.k / blockElems;
  const unsigned nMats = spec.swiglu ? 2 : 1;
  const int64_t bufRows = rowTile * nMats;
  auto bufType = MemRefType::get({bufRows * spec.k}, e.f32());
  Value buf = memref::AllocaOp::create(e.b, e.loc, bufType,
                                       e.b.getI64IntegerAttr(64));
  loopRowTiles(e, o.nLo, o.nHi, rowTile, [&](Value n0, int64_t rows) {
    // Decode: buffer row (r * nMats + m) holds weight row n0 + r of
    // matrix m.
    for (int64_t r = 0; r < rows; ++r)
      for (unsigned m = 0; m < nMats; ++m) {
        int64_t bufRow = (r * nMats + m) * spec.k;
        e.loop(e.idx(0), e.idx(blocks), 1, [&](Value blk) {
          Value out = e.add(e.mul(blk, blockElems), bufRow);
          emitBlockDecode(e.b, e.loc, spec.format, o.w,
                          blockAddress(e, spec, o.wOff[m], e.add(n0, r), blk),
                          L,
                          [&](int64_t first, Value wv) {
                            e.vstore(wv, buf, e.add(out, first));
                          });
        });
      }
    auto tile = [&](Value t0, int64_t count) {
      SmallVector<Value> init(rows * nMats * count, e.zeroVec(L));
      SmallVector<Value> accs = e.loop(
          e.idx(0), e.idx(spec.k), L, init, [&](Value k, ValueRange args) {
            SmallVector<Value> acc(args.begin(), args.end());
            SmallVector<Value> xs;
            for (int64_t i = 0; i < count; ++i)
              xs.push_back(e.vload(
                  L, o.x,
                  e.add(e.add(o.xOff, e.mul(e.add(t0, i), spec.k)), k)));
            for (int64_t r = 0; r < rows; ++r)
              for (unsigned m = 0; m < nMats; ++m) {
                Value wv = e.vload(
                    L, buf, e.add(k, (r * nMats + m) * spec.k));
                for (int64_t i = 0; i < count; ++i) {
                  Value &a = acc[(r * nMats + m) * count + i];
                  a = e.fma(wv, xs[i], a);
                }
              }
            return acc;
          });
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < count; ++i) {
          SmallVector<Value, 2> sums;
          for (unsigned m = 0; m < nMats; ++m)
            sums.push_back(e.reduceAdd(accs[(r * nMats + m) * count + i]));
          emitMatmulEpilogue(e, spec, o, e.add(n0, r), e.add(t0, i), sums);
        }
    };
    Value full = e.mul(e.div(o.tokens, tokenTile), tokenTile);
    e.loop(e.idx(0), full, tokenTile, [&](Value t0) { tile(t0, tokenTile); });
    e.loop(full, o.tokens, 1, [&](Value t) { tile(t, 1); });
  });
}

/// An x86 intrinsic call (the AVX2 and VNNI integer-dot sequences).
Value callX86(Emitter &e, StringRef name, Type result, ValueRange args) {
  return LLVM::CallIntrinsicOp::create(e.b, e.loc, result,
                                       e.b.getStringAttr(name), args)
      .getResult(0);
}

/// The target has AVX-512 VNNI's zmm dots (with or without AMX).
bool hasX86Avx512Vnni(const Emitter &e) {
  return e.integerDot == IntegerDot::X86Avx512Vnni ||
         e.integerDot == IntegerDot::X86Amx;
}

/// The target has AVX2's integer instructions (with or without VNNI).
bool hasX86Avx2(const Emitter &e) {
  return e.integerDot == IntegerDot::X86Avx2 ||
         e.integerDot == IntegerDot::X86AvxVnni || hasX86Avx512Vnni(e);
}

/// The target has vpdpbusd on ymm and xmm.
bool hasX86Vnni(const Emitter &e) {
  return e.integerDot == IntegerDot::X86AvxVnni || hasX86Avx512Vnni(e);
}

/// acc + the sums of each group of 4 lanes of u (unsigned) x x (signed),
/// one vpdpbusd (`u`, `x`: vector<32 x i8> or vector<16 x i8>; `acc`: the
/// matching vector of i32, or null for zero).
Value emitVnniDot(Emitter &e, Value acc, Value u, Value x) {
  int64_t n = cast<VectorType>(u.getType()).getNumElements();
  VectorType words = VectorType::get({n / 4}, e.b.getI32Type());
  if (!acc)
    acc = e.intSplat(words, 0);
  return callX86(e,
                 n == 64   ? "llvm.x86.avx512.vpdpbusd.512"
                 : n == 32 ? "llvm.x86.avx512.vpdpbusd.256"
                           : "llvm.x86.avx512.vpdpbusd.128",
                 words, {acc, u, x});
}

/// acc (or zero) + the sums of each group of 4 lanes of u (unsigned codes
/// 0..127, or |w| <= 128 from emitIntegerDot's sign trick) x x (signed):
/// one vpdpbusd where the target has it at u's width (64 bytes: AVX-512
/// VNNI only), else AVX2's vpmaddubsw, vpmaddwd by ones and an add (32 or
/// 16 bytes). Such codes keep vpmaddubsw's pair sums within i16 (2 x 128 x
/// 127), so every path gives the same integers.
Value emitCodeDot(Emitter &e, Value acc, Value u, Value x) {
  int64_t n = cast<VectorType>(u.getType()).getNumElements();
  if (n == 64 ? hasX86Avx512Vnni(e) : hasX86Vnni(e))
    return emitVnniDot(e, acc, u, x);
  assert((n == 32 || n == 16) && hasX86Avx2(e) && "AVX2 dots of 32 or 16");
  Type i16 = e.b.getI16Type(), i32 = e.b.getI32Type();
  bool wide = n == 32;
  VectorType halves = VectorType::get({n / 2}, i16);
  Value pairs = callX86(
      e, wide ? "llvm.x86.avx2.pmadd.ub.sw" : "llvm.x86.ssse3.pmadd.ub.sw.128",
      halves, {u, x});
  Value ones = arith::ConstantOp::create(
      e.b, e.loc, DenseElementsAttr::get(halves, e.b.getIntegerAttr(i16, 1)));
  Value dot =
      callX86(e, wide ? "llvm.x86.avx2.pmadd.wd" : "llvm.x86.sse2.pmadd.wd",
              VectorType::get({n / 4}, i32), {pairs, ones});
  return acc ? arith::AddIOp::create(e.b, e.loc, acc, dot).getResult() : dot;
}

/// The bias emitIntegerDot subtracts from `n` codes (see there): on AVX2,
/// the format's own where it prefers one, else 128 for codes above 127;
/// with VNNI none (vpdpbusd does not saturate).
int64_t integerDotBias(const Emitter &e, int64_t n, unsigned maxCode,
                       int64_t preferredBias) {
  if (e.integerDot != IntegerDot::X86Avx2 || (n != 32 && n != 16))
    return 0;
  return preferredBias > 0 ? preferredBias : maxCode > 127 ? 128 : 0;
}

/// sum_j (u[j] - bias) * x[j] over each group of 4 consecutive lanes of
/// unsigned codes u and signed activations x (vector<n x i8> each):
/// vector<n/4 x i32>. `bias` is what the dot actually subtracted: on AVX2,
/// `preferredBias` when the codes are a symmetric format's shifted signed
/// ones (then u - bias fits in i8 and |u - bias| * sign(x, u - bias) needs no
/// offset term), else 128 for codes above 127 (vpmaddubsw saturates pairs of
/// products above 127 x 127 x 2), else 0; VNNI (vpdpbusd, which does not
/// saturate) and the portable code always use 0.
Value emitIntegerDot(Emitter &e, Value u, Value x, unsigned maxCode,
                     int64_t preferredBias, int64_t &bias) {
  auto type = cast<VectorType>(u.getType());
  int64_t n = type.getNumElements();
  Type i8 = e.b.getI8Type(), i32 = e.b.getI32Type();
  bias = integerDotBias(e, n, maxCode, preferredBias);
  if (hasX86Vnni(e) && (n == 32 || n == 16))
    return emitVnniDot(e, Value(), u, x);
  if (e.integerDot == IntegerDot::X86Avx2 && (n == 32 || n == 16)) {
    bool wide = n == 32;
    auto call = [&](StringRef name, Type result, ValueRange args) {
      return callX86(e, name, result, args);
    };
    VectorType bytes = VectorType::get({n}, i8);
    if (bias > 0) {
      // w = u - bias (signed, wrapping for bias 128); |w| * sign(x, w) = w * x.
      Value b = arith::ConstantOp::create(
          e.b, e.loc,
          DenseElementsAttr::get(bytes, e.b.getIntegerAttr(i8, bias)));
      Value w = arith::SubIOp::create(e.b, e.loc, u, b);
      x = call(wide ? "llvm.x86.avx2.psign.b" : "llvm.x86.ssse3.psign.b.128",
               bytes, {x, w});
      u = math::AbsIOp::create(e.b, e.loc, w);
    }
    return emitCodeDot(e, Value(), u, x);
  }
  // Portable: widen, multiply, add groups of four (1-D shuffles only, which
  // every target lowers).
  VectorType wide = VectorType::get({n}, i32);
  Value p = arith::MulIOp::create(e.b, e.loc,
                                  arith::ExtUIOp::create(e.b, e.loc, wide, u),
                                  arith::ExtSIOp::create(e.b, e.loc, wide, x));
  Value sum;
  for (int64_t j = 0; j < 4; ++j) {
    SmallVector<int64_t> lanes;
    for (int64_t g = 0; g < n / 4; ++g)
      lanes.push_back(4 * g + j);
    Value part = vector::ShuffleOp::create(e.b, e.loc, p, p, lanes);
    sum = sum ? arith::AddIOp::create(e.b, e.loc, sum, part).getResult() : part;
  }
  return sum;
}

/// The bias b of formats whose runs are exactly `scale * (code - b)` (the
/// offset is -b * scale): symmetric formats, whose signed codes the integer
/// decoder shifts to unsigned ones. 0 for formats with a separate min.
int64_t symmetricBias(const WeightFormat &f) {
  if (f.kind != WeightFormat::Kind::Quantized)
    return 0;
  switch (f.quant) {
  case qnt::QuantFormat::Q4_0: return 8;
  case qnt::QuantFormat::Q5_0: return 16;
  case qnt::QuantFormat::Q8_0: return 128;
  case qnt::QuantFormat::Q3_K: return 4;
  case qnt::QuantFormat::Q6_K: return 32;
  case qnt::QuantFormat::MXFP4: return 12;
  case qnt::QuantFormat::Int2:
  case qnt::QuantFormat::Int3:
  case qnt::QuantFormat::Int4:
  case qnt::QuantFormat::Int8:
    return f.asymmetric ? 0 : int64_t(1) << (qnt::getOwnFormatBits(f.quant) - 1);
  default:
    return 0;
  }
}


/// d x (the sum of the codes) of the run [el, el + run) of a row of 8-bit
/// activations (quantizeActivations' layout, per-16 sums from byte
/// `sumsAt`): the precomputed sums where the run covers whole halves of a
/// block, else the codes `xq` summed and scaled by the block's `dx`.
Value emitActivationRunSum(Emitter &e, Value x, Value sumsAt, Value el,
                           int64_t run, Value xq, Value dx) {
  if (run >= 16) {
    Value at = e.add(sumsAt, e.mul(e.div(el, 16), 4));
    Value sum = loadF32Bytes(e, x, at);
    return run == 32 ? e.fadd(sum, loadF32Bytes(e, x, e.add(at, 4))) : sum;
  }
  VectorType wide = VectorType::get({run}, e.b.getI32Type());
  Value s32 = vector::ReductionOp::create(
      e.b, e.loc, vector::CombiningKind::ADD,
      arith::ExtSIOp::create(e.b, e.loc, wide, xq));
  return e.fmul(arith::SIToFPOp::create(e.b, e.loc, e.f32(), s32), dx);
}

/// How the row-tiled kernels multiply a run and pay its offset. Unsigned
/// codes go straight into vpmaddubsw where they fit; else the sign trick
/// around the format's own bias, whose offset then cancels. Symmetric
/// formats on unsigned codes owe -symBias x the run's scale (one vector
/// multiply of the tile's scales); the others store an offset per run.
struct TiledRunRule {
  int64_t symBias, preferredBias, bias;
  bool offsetCancels, offsetIsBiasedScale, offsetStored;

  TiledRunRule(const Emitter &e, const WeightFormat &format) {
    unsigned maxCode = getIntegerMaxCode(format);
    symBias = symmetricBias(format);
    preferredBias = maxCode <= 127 ? 0 : symBias;
    bias = integerDotBias(e, getIntegerRunLength(format), maxCode,
                          preferredBias);
    offsetCancels = bias != 0 && bias == symBias;
    offsetIsBiasedScale = !offsetCancels && symBias != 0 && bias == 0;
    offsetStored = !offsetCancels && !offsetIsBiasedScale;
  }
  /// The offset a run owes in the `offsetStored` case: its own plus what
  /// the dot's bias took from its codes.
  Value storedOffset(Emitter &e, const IntegerRun &ri) const {
    Value offset = ri.offset ? ri.offset : e.cf(0.0);
    return bias ? e.fadd(offset, e.fmul(ri.scale, e.cf(double(bias))))
                : offset;
  }
};

/// Decode with 8-bit activations: each run of a weight block is an integer
/// dot product of its codes with the token's quantized activations, scaled
/// by (run scale x activation scale) into f32 accumulators; the runs'
/// offsets meet the activations' precomputed sums.
void emitGemvInt8(Emitter &e, const MatmulSpec &spec, const MatmulOperands &o,
                  int64_t rowTile) {
  const int64_t blockElems = spec.format.blockElements(e.lanes);
  const int64_t blocks = spec.k / blockElems;
  const unsigned nMats = spec.swiglu ? 2 : 1;
  const int64_t run = getIntegerRunLength(spec.format);
  const unsigned maxCode = getIntegerMaxCode(spec.format);
  const int64_t symBias = symmetricBias(spec.format);
  const int64_t qRow = KernelLibrary::getQuantizedRowBytes(spec.k);
  const unsigned accLanes = unsigned(run / 4);
  loopRowTiles(e, o.nLo, o.nHi, rowTile, [&](Value n0, int64_t rows) {
    e.loop(e.idx(0), o.tokens, 1, [&](Value t) {
      Value xRow = e.add(o.xOff, e.mul(t, qRow));
      Value scales = e.add(xRow, spec.k);
      Value sums = e.add(scales, spec.k / 8);
      // Per (row, matrix): a vector accumulator of scaled dot products and
      // a scalar one of offset terms.
      SmallVector<Value> init;
      for (int64_t i = 0; i < rows * nMats; ++i) {
        init.push_back(e.zeroVec(accLanes));
        init.push_back(e.cf(0.0));
      }
      SmallVector<Value> accs = e.loop(
          e.idx(0), e.idx(blocks), 1, init, [&](Value blk, ValueRange args) {
            SmallVector<Value> acc(args.begin(), args.end());
            Value e0 = e.mul(blk, blockElems);
            for (int64_t r = 0; r < rows; ++r)
              for (unsigned m = 0; m < nMats; ++m) {
                BlockAddress wb = blockAddress(e, spec, o.wOff[m], e.add(n0, r), blk);
                emitBlockDecodeInteger(
                    e.b, e.loc, spec.format, o.w, wb,
                    [&](const IntegerRun &runInfo) {
                      Value el = e.add(e0, runInfo.first);
                      Value xq = vector::LoadOp::create(
                          e.b, e.loc, VectorType::get({run}, e.b.getI8Type()),
                          o.x, e.add(xRow, el));
                      Value dx = loadF32Bytes(
                          e, o.x, e.add(scales, e.mul(e.div(el, 32), 4)));
                      int64_t bias = 0;
                      Value dot = emitIntegerDot(e, runInfo.codes, xq, maxCode,
                                                 symBias, bias);
                      Value dotF = arith::SIToFPOp::create(
                          e.b, e.loc, e.vec(accLanes), dot);
                      Value scale = e.fmul(runInfo.scale, dx);
                      Value &av = acc[2 * (r * nMats + m)];
                      av = e.fma(dotF, e.splat(scale, accLanes), av);
                      // Offset terms: offset x (sum of the run's activations);
                      // a dot of biased codes owes bias x scale of it too,
                      // which cancels a symmetric format's offset exactly.
                      Value offset = runInfo.offset;
                      if (bias != 0 && bias == symBias)
                        return;
                      if (bias != 0) {
                        Value extra = e.fmul(runInfo.scale, e.cf(double(bias)));
                        offset = offset ? e.fadd(offset, extra) : extra;
                      }
                      if (!offset)
                        return;
                      Value xsum =
                          emitActivationRunSum(e, o.x, sums, el, run, xq, dx);
                      Value &as = acc[2 * (r * nMats + m) + 1];
                      as = arith::AddFOp::create(
                          e.b, e.loc, as, e.fmul(offset, xsum));
                    });
              }
            return acc;
          });
      for (int64_t r = 0; r < rows; ++r) {
        SmallVector<Value, 2> totals;
        for (unsigned m = 0; m < nMats; ++m) {
          unsigned i = 2 * (r * nMats + m);
          totals.push_back(e.fadd(e.reduceAdd(accs[i]), accs[i + 1]));
        }
        emitMatmulEpilogue(e, spec, o, e.add(n0, r), t, totals);
      }
    });
  });
}

/// The pairwise sums of the concatenation of x and y (vectors of i32 or
/// f32, `n` pairs): lane i holds lanes 2i and 2i + 1 added, x's pairs
/// first.
Value emitPairSums(Emitter &e, Value x, Value y, int64_t n) {
  SmallVector<int64_t> evens, odds;
  for (int64_t i = 0; i < n; ++i) {
    evens.push_back(2 * i);
    odds.push_back(2 * i + 1);
  }
  Value a = vector::ShuffleOp::create(e.b, e.loc, x, y, evens);
  Value c = vector::ShuffleOp::create(e.b, e.loc, x, y, odds);
  return isa<FloatType>(cast<VectorType>(x.getType()).getElementType())
             ? e.fadd(a, c)
             : e.add(a, c);
}

/// Sums groups of `partials` adjacent lanes of `vectors` (all of one width
/// W and `partials` powers of two; each vector holds W / partials rows'
/// partial sums, rows in order across the vectors) into one vector with a
/// lane per row, i32 or f32. Pairs of vectors become one holding both's
/// pairwise sums (in row order), until one partial per row is left; only
/// 1-D shuffles, which every target lowers.
Value emitSumLaneGroups(Emitter &e, ArrayRef<Value> vectors,
                        int64_t partials) {
  OpBuilder &b = e.b;
  auto width = [](Value v) {
    return cast<VectorType>(v.getType()).getNumElements();
  };
  auto shuffle = [&](Value x, Value y, ArrayRef<int64_t> mask) {
    return vector::ShuffleOp::create(b, e.loc, x, y, mask).getResult();
  };
  auto evensOdds = [&](Value x, Value y, int64_t n) {
    return emitPairSums(e, x, y, n);
  };
  SmallVector<Value> level(vectors.begin(), vectors.end());
  while (partials > 1 && level.size() > 1) {
    SmallVector<Value> next;
    for (size_t i = 0; i < level.size(); i += 2)
      next.push_back(evensOdds(level[i], level[i + 1], width(level[i])));
    level = std::move(next);
    partials /= 2;
  }
  // Fewer rows than lanes: one vector, `partials` per row, contiguous.
  while (partials > 1) {
    level[0] = evensOdds(level[0], level[0], width(level[0]) / 2);
    partials /= 2;
  }
  // More rows than lanes: vectors of W rows each, concatenated.
  while (level.size() > 1) {
    SmallVector<Value> next;
    for (size_t i = 0; i < level.size(); i += 2) {
      SmallVector<int64_t> all;
      for (int64_t j = 0; j < 2 * width(level[i]); ++j)
        all.push_back(j);
      next.push_back(shuffle(level[i], level[i + 1], all));
    }
    level = std::move(next);
  }
  return level[0];
}

/// Sums each of `rows` vectors of i32 or f32 partial sums (all of one width
/// W, a power of two) into one vector<rows x i32/f32>, row r in lane r: a
/// tree of pairwise adds, for i32 on AVX2 (W = rows = 8) vphaddd within
/// 128-bit halves and one exchange of halves (11 instructions for 8 rows).
Value emitReduceRows(Emitter &e, ArrayRef<Value> rows) {
  OpBuilder &b = e.b;
  auto width = [](Value v) {
    return cast<VectorType>(v.getType()).getNumElements();
  };
  const int64_t W = width(rows[0]);
  const int64_t R = int64_t(rows.size());
  auto shuffle = [&](Value x, Value y, ArrayRef<int64_t> mask) {
    return vector::ShuffleOp::create(b, e.loc, x, y, mask).getResult();
  };
  const bool isFloat =
      isa<FloatType>(cast<VectorType>(rows[0].getType()).getElementType());
  if (hasX86Avx2(e) && !isFloat && W == 8 && R == 8) {
    VectorType v8 = VectorType::get({8}, b.getI32Type());
    auto hadd = [&](Value x, Value y) {
      return callX86(e, "llvm.x86.avx2.phadd.d", v8, {x, y});
    };
    // hij = [i 2 pairs, j 2 pairs | i 2 pairs, j 2 pairs] (low | high half).
    Value h01 = hadd(rows[0], rows[1]), h23 = hadd(rows[2], rows[3]);
    Value h45 = hadd(rows[4], rows[5]), h67 = hadd(rows[6], rows[7]);
    // Halves exchanged and added: [r0 2, r1 2 | r4 2, r5 2] and [r2, r3 |
    // r6, r7]; one more hadd leaves [r0 r1 r2 r3 | r4 r5 r6 r7].
    auto fold = [&](Value x, Value y) {
      return e.add(shuffle(x, y, {0, 1, 2, 3, 8, 9, 10, 11}),
                   shuffle(x, y, {4, 5, 6, 7, 12, 13, 14, 15}));
    };
    return hadd(fold(h01, h45), fold(h23, h67));
  }
  return emitSumLaneGroups(e, rows, W);
}

/// The scales of a run of `rows` blocks of a tile (compiler/emit/Repack.h)
/// whose split header is the block's f16 scale alone (2 bytes: Q4_0, Q5_0,
/// Q8_0, symmetric own formats, whose runs are all scaled by it): one load
/// of the run's headers, vector<rows x f32>. Null for other formats.
Value emitTileRunScales(Emitter &e, const WeightFormat &f, Value w, Value run,
                        int64_t rows) {
  if (f.splitHeaderBytes() != 2)
    return Value();
  OpBuilder &b = e.b;
  Value raw = vector::LoadOp::create(
      b, e.loc, VectorType::get({2 * rows}, b.getI8Type()), w, run);
  Value halves = vector::BitCastOp::create(
      b, e.loc, VectorType::get({rows}, b.getF16Type()), raw);
  return arith::ExtFOp::create(b, e.loc, e.vec(unsigned(rows)), halves);
}

/// Whether the tiled GEMV computes two rows per register: on AVX2, 8-row
/// tiles of formats whose split-header payload is 16 bytes of split nibbles
/// (Q4_0, Q4_1: element j in the low nibble of byte j, element 16 + j in
/// its high nibble), so that one 32-byte load holds two rows' codes.
bool usesNibblePairs(const Emitter &e, const WeightFormat &f) {
  return hasX86Avx2(e) && f.interleave == 8 &&
         f.splitHeaderBytes() > 0 &&
         (f.quant == qnt::QuantFormat::Q4_0 ||
          f.quant == qnt::QuantFormat::Q4_1);
}

/// The low and high nibble of every byte of `raw` (vector<n x i8>): two
/// vectors of codes 0..15.
std::pair<Value, Value> emitSplitNibbles(Emitter &e, Value raw) {
  auto type = cast<VectorType>(raw.getType());
  Value mask = e.intSplat(type, 15);
  Value low = arith::AndIOp::create(e.b, e.loc, raw, mask);
  Value high = arith::AndIOp::create(
      e.b, e.loc, arith::ShRUIOp::create(e.b, e.loc, raw, e.intSplat(type, 4)),
      mask);
  return {low, high};
}

/// Q8_0's signed codes in `raw` (vector<n x i8>) as unsigned ones, code +
/// 128 (the integer decode's form, its bias folded through the activations'
/// sums).
Value emitUnsignedQ8Codes(Emitter &e, Value raw) {
  return arith::XOrIOp::create(
      e.b, e.loc, raw,
      e.intSplat(cast<VectorType>(raw.getType()), int8_t(-128)));
}

/// The codes of one run of an 8-row tile of split-nibble blocks
/// (usesNibblePairs), from its payload at `w[payload]`: four 32-byte loads,
/// each two rows' 16 code bytes (rows 2p and 2p + 1), unpacked into
/// `low[p]` (elements 0-15 of both rows: [row 2p | row 2p + 1]) and
/// `high[p]` (elements 16-31), vector<32 x i8> of codes 0..15.
struct NibblePairs {
  SmallVector<Value, 4> low, high;
};
NibblePairs loadNibblePairs(Emitter &e, Value w, Value payload) {
  VectorType bytes = VectorType::get({32}, e.b.getI8Type());
  NibblePairs pairs;
  for (int64_t p = 0; p < 4; ++p) {
    auto [low, high] =
        emitSplitNibbles(e, vector::LoadOp::create(e.b, e.loc, bytes, w,
                                                   e.add(payload, 32 * p)));
    pairs.low.push_back(low);
    pairs.high.push_back(high);
  }
  return pairs;
}

/// The 8 rows' integer dot products of one run of a tile of split-nibble
/// blocks (usesNibblePairs) with one block of activations `xq`
/// (vector<32 x i8>): vector<8 x i32>, row r in lane r. Per register of two
/// rows' codes (loadNibblePairs): two vpmaddubsw meet the activations'
/// halves duplicated to both 128-bit lanes, their i16 sum (at most
/// 2 x 2 x 15 x 127, no saturation) one vpmaddwd; three vphaddd and one
/// permutation leave a lane per row.
Value emitNibblePairDots(Emitter &e, Value w, Value payload, Value xq) {
  OpBuilder &b = e.b;
  VectorType halves = VectorType::get({16}, b.getI16Type());
  VectorType words = VectorType::get({8}, b.getI32Type());
  SmallVector<int64_t> lowTwice, highTwice;
  for (int64_t j = 0; j < 32; ++j) {
    lowTwice.push_back(j % 16);
    highTwice.push_back(16 + j % 16);
  }
  Value xLow = vector::ShuffleOp::create(b, e.loc, xq, xq, lowTwice);
  Value xHigh = vector::ShuffleOp::create(b, e.loc, xq, xq, highTwice);
  Value ones = e.intSplat(halves, 1);
  NibblePairs codes = loadNibblePairs(e, w, payload);
  SmallVector<Value, 4> pairs;
  for (int64_t p = 0; p < 4; ++p) {
    Value sum = arith::AddIOp::create(
        b, e.loc,
        callX86(e, "llvm.x86.avx2.pmadd.ub.sw", halves, {codes.low[p], xLow}),
        callX86(e, "llvm.x86.avx2.pmadd.ub.sw", halves, {codes.high[p], xHigh}));
    pairs.push_back(callX86(e, "llvm.x86.avx2.pmadd.wd", words, {sum, ones}));
  }
  // [r0 x2, r2 x2 | r1 x2, r3 x2], [r4, r6 | r5, r7], then [r0 r2 r4 r6 |
  // r1 r3 r5 r7].
  auto hadd = [&](Value x, Value y) {
    return callX86(e, "llvm.x86.avx2.phadd.d", words, {x, y});
  };
  Value h = hadd(hadd(pairs[0], pairs[1]), hadd(pairs[2], pairs[3]));
  return vector::ShuffleOp::create(b, e.loc, h, h,
                                   ArrayRef<int64_t>{0, 4, 1, 5, 2, 6, 3, 7});
}

/// The cache line the kernels' software prefetches count in.
constexpr int64_t kCacheLineBytes = 64;

/// How far ahead of its reads a tiled GEMV prefetches its weight streams
/// into L1 (each also prefetches into L2 a tile ahead; emitTiledGemv says
/// why).
constexpr int64_t kGemvPrefetchBytes = 2048;

/// How a tiled GEMV (emitTiledGemv) computes one of its streams, a tile of
/// one matrix: the stream's accumulators, one block of the tile, and the
/// rows' sums at the end.
class TileStreamBody {
public:
  virtual ~TileStreamBody() = default;
  /// Starts a token, whose quantized activations start at byte `xRow`.
  virtual void beginToken(Value xRow) = 0;
  /// Zero accumulators for `streams` streams, each stream's together.
  virtual SmallVector<Value> zeroAccumulators(size_t streams) = 0;
  virtual size_t accumulatorsPerStream() const = 0;
  /// Starts block `blk` of every stream.
  virtual void beginBlock(Value blk) = 0;
  /// Adds the current block of the tile whose run of blocks (one block of
  /// each row) starts at byte `tileBlock` to the stream's accumulators.
  virtual void addBlock(Value tileBlock, MutableArrayRef<Value> acc) = 0;
  /// The tile's rows' sums: vector<interleave x f32>, row r in lane r.
  virtual Value rowSums(ArrayRef<Value> acc) = 0;
  /// Tiles a pass reads side by side (each a stream per matrix).
  virtual int64_t tilesPerPass(unsigned nMats) const {
    return std::max<int64_t>(1, kGemvStreams / nMats);
  }
};

/// Decode with 8-bit activations over row-interleaved weights (a tile of
/// `interleave` rows is one sequential stream), `body` computing each
/// tile. A unit's tiles are read as the body's tilesPerPass streams
/// (kGemvStreams, two tiles with SwiGLU, where memory is the limit; one
/// for the bodies that wait on their instructions): it is cut into that
/// many runs of tiles, and a pass takes one tile of each, block by block
/// (the rest, fewer tiles than runs, one at a time). With one tile a pass
/// there are no passes, and no prefetch into the next claim. Each row is
/// still computed alone, in the same order, wherever its tile falls.
void emitTiledGemv(Emitter &e, const MatmulSpec &spec, const MatmulOperands &o,
                   TileStreamBody &body) {
  OpBuilder &b = e.b;
  const unsigned R = spec.format.interleave;
  const int64_t blockElems = spec.format.blockElements(e.lanes);
  const int64_t blockBytes = spec.format.blockBytes(e.lanes);
  const int64_t blocks = spec.k / blockElems;
  const int64_t rowBytes = weightRowBytes(spec, e.lanes);
  const unsigned nMats = spec.swiglu ? 2 : 1;
  const int64_t qRow = KernelLibrary::getQuantizedRowBytes(spec.k);
  const size_t perStream = body.accumulatorsPerStream();
  const int64_t runBytes = R * blockBytes; // a tile's blocks of one index
  // Tiles starting at rows `n0s`, read side by side. With `next` (the next
  // claim, and where its streams start, a stream per tile and matrix), the
  // prefetches that would run past the tiles' ends run into the next
  // claim's streams instead (the claim's last pass).
  auto emitTiles = [&](ArrayRef<Value> n0s, const NextClaim *next,
                       ArrayRef<Value> nextStreams) {
    const size_t nTiles = n0s.size();
    // Each stream prefetches the block it reads of its next tile into L2,
    // and its lines only 2 KiB ahead into L1: an L1 prefetch holds one of
    // the core's few line-fill buffers until its line arrives, so that far
    // L1 prefetches would limit the lines in flight, where the L2 takes an
    // L2 prefetch's request off the buffer and keeps more misses in flight.
    // Decode of the benchmark model 1.07x, with K-quant weights 1.07x
    // against L1 prefetches 4 KiB ahead alone (docs/cpu-backend.md).
    const int64_t tileBytes = int64_t(R) * rowBytes;
    // From block `split` on, the L1 prefetches are past the tile.
    const int64_t split =
        std::max<int64_t>(0, blocks - kGemvPrefetchBytes / runBytes);
    e.loop(e.idx(0), o.tokens, 1, [&](Value t) {
      body.beginToken(e.add(o.xOff, e.mul(t, qRow)));
      SmallVector<Value> init = body.zeroAccumulators(nMats * nTiles);
      auto blockLoop = [&](int64_t from, int64_t to, bool intoNext,
                           ValueRange start) {
        return e.loop(
            e.idx(from), e.idx(to), 1, start, [&](Value blk, ValueRange args) {
              SmallVector<Value> acc(args.begin(), args.end());
              body.beginBlock(blk);
              // Each tile's matrices in turn, a stream each.
              for (size_t stream = 0; stream < nTiles * nMats; ++stream) {
                const size_t tile = stream / nMats;
                const unsigned m = stream % nMats;
                Value tileBlock =
                    e.add(e.add(o.wOff[m], e.mul(n0s[tile], rowBytes)),
                          e.mul(blk, runBytes));
                // The stream ahead, a cache line per 64 bytes read: the
                // hardware prefetcher alone left a thread's Q4_0 GEMV at 10
                // GB/s where prefetching 4 KiB ahead reads 13-14 (one AVX2
                // core, 512 MiB of weights).
                Value ahead = e.add(tileBlock, kGemvPrefetchBytes);
                if (intoNext)
                  ahead = e.select(
                      next->valid,
                      e.add(nextStreams[stream],
                            e.add(e.mul(blk, runBytes),
                                  kGemvPrefetchBytes - blocks * runBytes)),
                      ahead);
                for (int64_t line = 0; line < runBytes; line += kCacheLineBytes)
                  memref::PrefetchOp::create(
                      b, e.loc, o.w, ValueRange{e.add(ahead, line)},
                      /*isWrite=*/false, /*localityHint=*/3,
                      /*isDataCache=*/true);
                // The stream's next tile follows this one. On a claim's last
                // pass it is the next claim's first, and after the last
                // claim there is none (the L1 line again). A tile read alone
                // (one a pass, or the claim's rest) prefetches the tile
                // after it, past the claim's end other work's (a tile a
                // claim at most).
                Value nextTile = e.add(tileBlock, tileBytes);
                if (next)
                  nextTile = e.select(
                      next->valid,
                      e.add(nextStreams[stream], e.mul(blk, runBytes)), ahead);
                for (int64_t line = 0; line < runBytes; line += kCacheLineBytes)
                  memref::PrefetchOp::create(
                      b, e.loc, o.w, ValueRange{e.add(nextTile, line)},
                      /*isWrite=*/false, /*localityHint=*/2,
                      /*isDataCache=*/true);
                body.addBlock(tileBlock, MutableArrayRef<Value>(acc).slice(
                                             perStream * stream, perStream));
              }
              return acc;
            });
      };
      SmallVector<Value> accs = init;
      if (!next || split > 0)
        accs = blockLoop(0, next ? split : blocks, false, accs);
      if (next)
        accs = blockLoop(split, blocks, /*intoNext=*/true, accs);
      for (size_t tile = 0; tile < nTiles; ++tile) {
        SmallVector<Value, 2> totals;
        for (unsigned m = 0; m < nMats; ++m)
          totals.push_back(body.rowSums(ArrayRef<Value>(accs).slice(
              perStream * (tile * nMats + m), perStream)));
        for (unsigned r = 0; r < R; ++r) {
          SmallVector<Value, 2> sumsOfRow;
          for (Value v : totals)
            sumsOfRow.push_back(vector::ExtractOp::create(b, e.loc, v, r));
          emitMatmulEpilogue(e, spec, o, e.add(n0s[tile], int64_t(r)), t,
                             sumsOfRow);
        }
      }
    });
  };
  const int64_t streams = body.tilesPerPass(nMats);
  // Tiles per stream of the claim of rows [lo, hi); the first row of
  // stream s's tile i.
  auto perStreamOf = [&](Value lo, Value hi) {
    return e.div(e.div(e.sub(hi, lo), int64_t(R)), streams);
  };
  auto streamTile = [&](Value lo, Value perStream, int64_t s, Value i) {
    return e.add(lo, e.mul(e.add(e.mul(perStream, s), i), int64_t(R)));
  };
  Value tilesPerStream = perStreamOf(o.nLo, o.nHi);
  auto passTiles = [&](Value i) {
    SmallVector<Value> n0s;
    for (int64_t s = 0; s < streams; ++s)
      n0s.push_back(streamTile(o.nLo, tilesPerStream, s, i));
    return n0s;
  };
  if (streams > 1 && o.claimNext) {
    // Every pass but the last; then the next claim is taken, and the last
    // pass's prefetches run into its streams, so that a claim starts with
    // its first lines on their way instead of waiting for them.
    Value passes = e.sub(
        arith::MaxUIOp::create(b, e.loc, tilesPerStream, e.idx(1)), e.idx(1));
    e.loop(e.idx(0), passes, 1,
           [&](Value i) { emitTiles(passTiles(i), nullptr, {}); });
    auto last = scf::IfOp::create(
        b, e.loc, e.cmp(arith::CmpIPredicate::ugt, tilesPerStream, e.idx(0)),
        /*withElseRegion=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&last.getThenRegion().front());
    NextClaim next = o.claimNext();
    Value nextPerStream = perStreamOf(next.nLo, next.nHi);
    SmallVector<Value> nextStreams;
    for (int64_t s = 0; s < streams; ++s)
      for (unsigned m = 0; m < nMats; ++m)
        nextStreams.push_back(e.add(
            next.wOff[m],
            e.mul(streamTile(next.nLo, nextPerStream, s, e.idx(0)), rowBytes)));
    emitTiles(passTiles(passes), &next, nextStreams);
  } else if (streams > 1) {
    e.loop(e.idx(0), tilesPerStream, 1,
           [&](Value i) { emitTiles(passTiles(i), nullptr, {}); });
  }
  Value rest = streams > 1 ? e.add(o.nLo, e.mul(tilesPerStream, streams * R))
                           : o.nLo;
  e.loop(rest, o.nHi, R, [&](Value n0) { emitTiles({n0}, nullptr, {}); });
}

/// Any block format at any interleave: per run, the tile's integer dot
/// products are reduced to one vector with a lane per row, so that the
/// scales, the offsets and the accumulation are vector operations over the
/// rows instead of per-row scalar ones. Symmetric formats whose codes fit a
/// signed byte use their unsigned codes directly and pay the offset through
/// the activations' sums, once per tile and run. Accumulators: the scaled
/// dot products and the offsets owed, a lane per row each.
class RowLaneTiles : public TileStreamBody {
public:
  RowLaneTiles(Emitter &e, const MatmulSpec &spec, const MatmulOperands &o)
      : e(e), spec(spec), o(o), R(spec.format.interleave),
        blockElems(spec.format.blockElements(e.lanes)),
        run(getIntegerRunLength(spec.format)), runsPerBlock(blockElems / run),
        maxCode(getIntegerMaxCode(spec.format)), rule(e, spec.format),
        header(spec.format.splitHeaderBytes()),
        nibblePairs(usesNibblePairs(e, spec.format)) {}

  void beginToken(Value xRowAt) override {
    xRow = xRowAt;
    scales = e.add(xRow, spec.k);
    sums = e.add(scales, spec.k / 8);
  }
  SmallVector<Value> zeroAccumulators(size_t streams) override {
    return SmallVector<Value>(2 * streams, e.zeroVec(R));
  }
  size_t accumulatorsPerStream() const override { return 2; }
  void beginBlock(Value blk) override {
    e0 = e.mul(blk, blockElems);
    xq.assign(runsPerBlock, Value());
    dx.assign(runsPerBlock, Value());
    xsum.assign(runsPerBlock, Value());
  }

  void addBlock(Value tileBlock, MutableArrayRef<Value> acc) override {
    OpBuilder &b = e.b;
    VectorType rowsF32 = e.vec(R);
    // [run][row]: dot products, scales, offsets owed. Where the tile's
    // scales are one load and its codes come in pairs of rows, the rows'
    // blocks are decoded for their offsets alone, if any.
    Value tileScales = emitTileRunScales(e, spec.format, o.w, tileBlock, R);
    Value pairDots;
    if (nibblePairs) {
      activations(0);
      pairDots = emitNibblePairDots(
          e, o.w, e.add(tileBlock, int64_t(R) * header), xq[0]);
    }
    std::vector<SmallVector<Value>> dots(runsPerBlock),
        runScales(runsPerBlock), runOffsets(runsPerBlock);
    if (!pairDots || !tileScales || rule.offsetStored)
      for (unsigned r = 0; r < R; ++r)
        emitBlockDecodeInteger(
            b, e.loc, spec.format, o.w,
            runBlockAddress(e, spec.format, tileBlock, e.idx(r)),
            [&](const IntegerRun &ri) {
              int64_t j = ri.first / run;
              activations(j);
              if (!pairDots) {
                int64_t used = 0;
                dots[j].push_back(emitIntegerDot(e, ri.codes, xq[j], maxCode,
                                                 rule.preferredBias, used));
              }
              runScales[j].push_back(ri.scale);
              if (rule.offsetStored)
                runOffsets[j].push_back(rule.storedOffset(e, ri));
            });
    for (int64_t j = 0; j < runsPerBlock; ++j) {
      activations(j);
      Value dot = arith::SIToFPOp::create(
          b, e.loc, rowsF32, pairDots ? pairDots : emitReduceRows(e, dots[j]));
      Value scale = tileScales ? tileScales
                               : vector::FromElementsOp::create(
                                     b, e.loc, rowsF32, runScales[j])
                                     .getResult();
      Value &av = acc[0];
      av = e.fma(dot, e.fmul(scale, e.splat(dx[j], R)), av);
      Value &ov = acc[1];
      if (rule.offsetIsBiasedScale) {
        Value owed = e.fmul(activationSum(j), e.cf(-double(rule.symBias)));
        ov = e.fma(scale, e.splat(owed, R), ov);
      } else if (rule.offsetStored) {
        Value offsets =
            vector::FromElementsOp::create(b, e.loc, rowsF32, runOffsets[j]);
        ov = e.fma(offsets, e.splat(activationSum(j), R), ov);
      }
    }
  }

  Value rowSums(ArrayRef<Value> acc) override { return e.fadd(acc[0], acc[1]); }
  /// Formats whose runs' scales need each row's decode (K-quants where
  /// KQuantVnniTiles does not take them, Q4_1 and Q5_1 without nibble
  /// pairs, MXFP4, own formats with offsets) keep the core busy with
  /// instructions, and read one tile a pass; those whose tile scales are
  /// one load (Q4_0, Q5_0, Q8_0, symmetric own formats) or that take nibble
  /// pairs wait on memory and read kGemvStreams (two with SwiGLU). Paired
  /// on the benchmark model, when K-quants still took this body: one tile
  /// a pass decoded Q4_K/Q6_K 1.19x faster for x86_64-avx2, and Q5_K
  /// experts 1.11x for the host, where Q4_0/Q8_0 for x86_64-avx2 decoded
  /// 0.80x as fast.
  int64_t tilesPerPass(unsigned nMats) const override {
    if (!nibblePairs && header != 2)
      return 1;
    return TileStreamBody::tilesPerPass(nMats);
  }

private:
  /// The activations of run j of the block, loaded once for all streams.
  void activations(int64_t j) {
    if (xq[j])
      return;
    Value el = e.add(e0, j * run);
    xq[j] = vector::LoadOp::create(
        e.b, e.loc, VectorType::get({run}, e.b.getI8Type()), o.x,
        e.add(xRow, el));
    dx[j] = loadF32Bytes(e, o.x, e.add(scales, e.mul(e.div(el, 32), 4)));
  }
  Value activationSum(int64_t j) {
    if (!xsum[j])
      xsum[j] = emitActivationRunSum(e, o.x, sums, e.add(e0, j * run), run,
                                     xq[j], dx[j]);
    return xsum[j];
  }

  Emitter &e;
  const MatmulSpec &spec;
  const MatmulOperands &o;
  const unsigned R;
  const int64_t blockElems, run, runsPerBlock;
  const unsigned maxCode;
  const TiledRunRule rule;
  const int64_t header;
  const bool nibblePairs;
  Value xRow, scales, sums, e0;
  SmallVector<Value> xq, dx, xsum;
};

/// Whether decode's tiled GEMV takes WideVnniTiles: AVX-512 VNNI, tiles of
/// 8 rows, and blocks of a 2-byte f16 scale and 32 codes of a symmetric
/// format with one bias (Q4_0's split nibbles, Q8_0's signed bytes).
bool usesWideTiles(const Emitter &e, const WeightFormat &f) {
  return hasX86Avx512Vnni(e) && f.interleave == 8 &&
         f.kind == WeightFormat::Kind::Quantized &&
         (f.quant == qnt::QuantFormat::Q4_0 ||
          f.quant == qnt::QuantFormat::Q8_0) &&
         f.splitHeaderBytes() == 2;
}

/// Decode on AVX-512 VNNI for the formats of usesWideTiles, whose values
/// are d (u - B) for unsigned codes u (Q4_0: nibbles, B = 8; Q8_0: signed
/// bytes q read as u = q + 128, B = 128). One 64-byte load holds four
/// rows' 16 bytes of nibbles or two rows' 32 code bytes (the tile's
/// payloads are contiguous), and one vpdpbusd of it with the activations
/// repeated per row sums 4 codes per lane, starting from -B times the sum
/// of those lanes' activations so that the bias is paid inside the dot.
/// The i32 lanes then meet their row's scale (times the activations')
/// spread over the row's lanes, in f32, and the lanes of each row are
/// summed once per tile at the end instead of at every block. Per block of
/// a tile of Q4_0: 2 loads, 6 nibble operations, 4 vpdpbusd, 2
/// conversions, 2 FMAs and the scales' 4, where the lane-per-row reduction
/// of RowLaneTiles takes about 50 uops (vphaddd being 3 each); the
/// benchmark model decoded 4-6% faster (docs/cpu-backend.md). Blocks are
/// 32 codes, one activation block each. Accumulators: one vector<16 x f32>
/// per load of a block.
class WideVnniTiles : public TileStreamBody {
public:
  WideVnniTiles(Emitter &e, const MatmulSpec &spec, const MatmulOperands &o)
      : e(e), spec(spec), o(o),
        nibbles(spec.format.quant == qnt::QuantFormat::Q4_0),
        rowsPerVector(nibbles ? 4 : 2), vectors(kRows / rowsPerVector),
        bias(symmetricBias(spec.format)) {}

  void beginToken(Value xRowAt) override {
    xRow = xRowAt;
    scales = e.add(xRow, spec.k);
  }
  SmallVector<Value> zeroAccumulators(size_t streams) override {
    return SmallVector<Value>(vectors * streams, e.zeroVec(16));
  }
  size_t accumulatorsPerStream() const override { return size_t(vectors); }
  void beginBlock(Value blk) override {
    block = blk;
    xs.clear();
    start = dx = Value();
  }

  void addBlock(Value tileBlock, MutableArrayRef<Value> acc) override {
    OpBuilder &b = e.b;
    activations();
    VectorType bytes = VectorType::get({64}, b.getI8Type());
    // The rows' scales times the activations', then each spread over its
    // row's lanes.
    Value rowScales =
        e.fmul(emitTileRunScales(e, spec.format, o.w, tileBlock, kRows),
               e.splat(dx, kRows));
    Value payload = e.add(tileBlock, kRows * spec.format.splitHeaderBytes());
    const int64_t lanesPerRow = 16 / rowsPerVector;
    for (int64_t v = 0; v < vectors; ++v) {
      Value raw = vector::LoadOp::create(b, e.loc, bytes, o.w,
                                         e.add(payload, 64 * v));
      Value dot;
      if (nibbles) {
        auto [low, high] = emitSplitNibbles(e, raw);
        dot = vpdpbusd(vpdpbusd(start, low, xs[0]), high, xs[1]);
      } else {
        dot = vpdpbusd(start, emitUnsignedQ8Codes(e, raw), xs[0]);
      }
      SmallVector<int64_t> spread;
      for (int64_t lane = 0; lane < 16; ++lane)
        spread.push_back(v * rowsPerVector + lane / lanesPerRow);
      Value scale =
          vector::ShuffleOp::create(b, e.loc, rowScales, rowScales, spread);
      acc[v] = e.fma(arith::SIToFPOp::create(b, e.loc, e.vec(16), dot), scale,
                     acc[v]);
    }
  }

  Value rowSums(ArrayRef<Value> acc) override {
    return emitSumLaneGroups(e, acc, 16 / rowsPerVector);
  }

private:
  static constexpr int64_t kRows = 8;

  Value vpdpbusd(Value acc, Value u, Value x) {
    return callX86(e, "llvm.x86.avx512.vpdpbusd.512",
                   VectorType::get({16}, e.b.getI32Type()), {acc, u, x});
  }

  /// The block's activations as each vpdpbusd meets them (Q4_0: elements
  /// 0-15 and 16-31, each repeated in every 128-bit lane; Q8_0: the 32
  /// repeated in both halves), the dots' starting value and the scale;
  /// once per block for every stream.
  void activations() {
    if (start)
      return;
    OpBuilder &b = e.b;
    Type i8 = b.getI8Type();
    Value x = vector::LoadOp::create(b, e.loc, VectorType::get({32}, i8), o.x,
                                     e.add(xRow, e.mul(block, 32)));
    dx = loadF32Bytes(e, o.x, e.add(scales, e.mul(block, 4)));
    for (int64_t half = 0; half < (nibbles ? 2 : 1); ++half) {
      SmallVector<int64_t> repeat;
      for (int64_t j = 0; j < 64; ++j)
        repeat.push_back(nibbles ? 16 * half + j % 16 : j % 32);
      xs.push_back(vector::ShuffleOp::create(b, e.loc, x, x, repeat));
    }
    // -B x the activations each lane's codes meet.
    VectorType bytes = VectorType::get({64}, i8);
    VectorType words = VectorType::get({16}, b.getI32Type());
    Value biases = e.intSplat(bytes, static_cast<int8_t>(bias));
    Value owed = e.intSplat(words, 0);
    for (Value xv : xs)
      owed = vpdpbusd(owed, biases, xv);
    start = arith::SubIOp::create(b, e.loc, e.intSplat(words, 0), owed);
  }

  Emitter &e;
  const MatmulSpec &spec;
  const MatmulOperands &o;
  const bool nibbles;
  const int64_t rowsPerVector, vectors, bias;
  Value xRow, scales, block, start, dx;
  SmallVector<Value, 2> xs;
};

/// Whether decode's tiled GEMV takes KQuantVnniTiles: x86 with AVX2 (zmm
/// rows with AVX-512 VNNI, else ymm rows), tiles of 8 rows of Q2_K, Q3_K,
/// Q4_K, Q5_K or Q6_K (whole 84-, 110-, 144-, 176- and 210-byte blocks, no
/// split header).
bool usesKQuantTiles(const Emitter &e, const WeightFormat &f) {
  return hasX86Avx2(e) && f.interleave == 8 &&
         f.kind == WeightFormat::Kind::Quantized &&
         (f.quant == qnt::QuantFormat::Q2_K ||
          f.quant == qnt::QuantFormat::Q3_K ||
          f.quant == qnt::QuantFormat::Q4_K ||
          f.quant == qnt::QuantFormat::Q5_K ||
          f.quant == qnt::QuantFormat::Q6_K) &&
         f.splitHeaderBytes() == 0;
}

/// Decode on x86 for the K-quants (usesKQuantTiles), a row's
/// super-block (256 weights) at a time with 64-byte operations, where the
/// generic lane-per-row path decodes each run of each row on its own and
/// reduces every run's dots across lanes (K-quant decode ran 2-3x slower).
///
/// Q4_K (d, dmin, 12 bytes of 6-bit scales and mins, 128 bytes of
/// nibbles): one load holds 64 elements' codes of each of two 64-element
/// chunks, the low nibbles runs 4h and 4h + 2 and the high ones 4h + 1 and
/// 4h + 3, met by the activations of those runs (shuffled once per block
/// for every row and stream). The 16 six-bit values are unpacked with byte
/// shuffles and masks into one vector [sc0..7 | m0..7], times [d | dmin]
/// and the activations' [dx0..7 | -sum0..7]: lanes 0-7 scale run k's dots,
/// lanes 8-15 are the mins' terms. Q5_K (32 bytes of fifth bits between
/// the scales and the nibbles) is Q4_K with bit k of qh[l] as bit 4 of
/// run k's code l: per load one variable word shift of qh (repeated in
/// both halves) moves the four runs' bits to bit 4, a mask and an or add
/// them to the nibbles.
///
/// Q6_K (128 bytes of low nibbles, 64 of 2-bit high parts, 16 signed
/// sub-block scales, d): per half of the block one load of low nibbles
/// gives elements 0-63 (low) and 64-127 (high) in order, their high bits
/// shifted in from the half's 32 bytes of qh; the codes 0..63 meet the
/// activations in order, from a start of -32 x their sums (once per block),
/// so each lane holds a sub-block's exact (q - 32) x dot, scaled by d x
/// sc_j x dx.
///
/// Q2_K (16 bytes of 4-bit scales and mins per sub-block of 16, 64 bytes
/// of 2-bit codes, d, dmin): element 32j + l of each half of the block is
/// bits 2j-2j+1 of qs[l] of the half; a half's 32 bytes repeated in both
/// halves of a register and one variable word shift and a mask per 64
/// elements give the codes in order, met by the activations in order (as
/// Q6_K). Scales times d and dx, mins times dmin and the activations'
/// per-16 sums (negated), the mins' vector starting the row's sum. Q3_K
/// (32 bytes of high bits, Q2_K's 64 bytes of low bits, 12 bytes of 6-bit
/// scales, d): Q2_K's codes plus bits 2q and 2q + 1 of hmask[l] (64
/// elements q) moved to bit 2, from a start of -4 x the activations as
/// Q6_K; the 16 scales unpacked by byte shuffles, shifts and masks, minus
/// 32.
///
/// Each lane of a dot vector belongs to one run (sub-block), whose scale is
/// spread to the lanes (spreads); a row's four scaled dots add into one
/// vector, and the tile's 8 row vectors are summed pairwise once per block
/// into [r0 x2 | r1 x2 | ... | r7 x2]. Accumulators: that vector<16 x f32>
/// per stream, its pairs added at the end. Per row and block about 55
/// vector instructions, nearly all on zmm's two ports: still below the
/// memory's rate on 2 Sapphire Rapids cores (docs/cpu-backend.md).
///
/// Without AVX-512 VNNI (AVX2, AVX-VNNI) the rows take 32-byte operations
/// instead (q4RowYmm, q23RowYmm, q6RowYmm: each dot one run's or two
/// sub-blocks' codes met by the activations as they lie, a row vector of 8
/// lanes, the tile's rows summed pairwise to one lane each; biases and mins
/// through the activations' per-16 sums, once per row). The dots are
/// emitCodeDot's (vpmaddubsw and vpmaddwd on AVX2).
class KQuantVnniTiles : public TileStreamBody {
public:
  KQuantVnniTiles(Emitter &e, const MatmulSpec &spec, const MatmulOperands &o)
      : e(e), spec(spec), o(o), q6(spec.format.quant == qnt::QuantFormat::Q6_K),
        q5(spec.format.quant == qnt::QuantFormat::Q5_K),
        q2(spec.format.quant == qnt::QuantFormat::Q2_K),
        q3(spec.format.quant == qnt::QuantFormat::Q3_K), by16(q6 || q2 || q3),
        ymmRows(!hasX86Avx512Vnni(e)),
        blockBytes(spec.format.blockBytes(e.lanes)) {}

  void beginToken(Value xRowAt) override {
    xRow = xRowAt;
    scales = e.add(xRow, spec.k);
    sums = e.add(scales, spec.k / 8);
  }
  SmallVector<Value> zeroAccumulators(size_t streams) override {
    return SmallVector<Value>(streams, e.zeroVec(rowWidth()));
  }
  size_t accumulatorsPerStream() const override { return 1; }
  void beginBlock(Value blk) override {
    block = blk;
    xs.clear();
    starts.clear();
    xScale = Value();
    biasSums = Value();
  }

  void addBlock(Value tileBlock, MutableArrayRef<Value> acc) override {
    activations();
    // Pairs of rows are summed as soon as both are done (the tree of
    // emitSumLaneGroups, in the order the rows come), so that few row
    // vectors are live at once: [r0 x2 | r1 x2 | ... | r7 x2] at the end.
    SmallVector<std::pair<Value, int>, 4> pending;
    for (int64_t r = 0; r < kRows; ++r) {
      Value at = e.add(tileBlock, r * blockBytes);
      Value row = ymmRows ? (q6     ? q6RowYmm(at)
                             : by16 ? q23RowYmm(at)
                                    : q4RowYmm(at))
                  : q6    ? q6Row(at)
                  : by16  ? q23Row(at)
                          : q4Row(at);
      std::pair<Value, int> top{row, 0};
      while (!pending.empty() && pending.back().second == top.second) {
        top = {emitPairSums(e, pending.back().first, top.first, rowWidth()),
               top.second + 1};
        pending.pop_back();
      }
      pending.push_back(top);
    }
    acc[0] = e.fadd(acc[0], pending.front().first);
  }

  Value rowSums(ArrayRef<Value> acc) override {
    // [r0 x2 | ... | r7 x2] from the zmm rows, [r0 | ... | r7] from ymm.
    return ymmRows ? acc[0] : emitPairSums(e, acc[0], acc[0], kRows);
  }
  /// One tile per pass (gate and up of SwiGLU side by side): these bodies
  /// wait on their instructions, not on memory, and four tiles' code (12
  /// KiB of loop) and registers cost more than the streams gain. Paired on
  /// the benchmark model with Q4_K experts and Q6_K attention: decode 1.17x
  /// over four tiles a pass, 1.07x over two.
  int64_t tilesPerPass(unsigned) const override { return 1; }

private:
  static constexpr int64_t kRows = 8;

  VectorType bytes(int64_t n) const {
    return VectorType::get({n}, e.b.getI8Type());
  }
  Value loadBytes(int64_t n, Value at) {
    return vector::LoadOp::create(e.b, e.loc, bytes(n), o.w, at);
  }
  Value shuffle(Value x, Value y, ArrayRef<int64_t> mask) {
    return vector::ShuffleOp::create(e.b, e.loc, x, y, mask);
  }
  Value bitAnd(Value x, int64_t m) {
    return arith::AndIOp::create(e.b, e.loc, x,
                                 e.intSplat(cast<VectorType>(x.getType()), m));
  }
  Value bitOr(Value x, Value y) {
    return arith::OrIOp::create(e.b, e.loc, x, y);
  }
  Value shiftRight(Value x, int64_t n) {
    return arith::ShRUIOp::create(e.b, e.loc, x,
                                  e.intSplat(cast<VectorType>(x.getType()), n));
  }
  Value shiftLeft(Value x, int64_t n) {
    return arith::ShLIOp::create(e.b, e.loc, x,
                                 e.intSplat(cast<VectorType>(x.getType()), n));
  }
  /// The bytes of a register as 32 words shifted left (or right) by
  /// `low` in the words of bytes 0-31 and by `high` in those of 32-63:
  /// one vpsllvw or vpsrlvw; a later mask keeps each byte's own bits.
  Value shiftWords(Value v, bool left, int64_t low, int64_t high) {
    OpBuilder &b = e.b;
    VectorType words = VectorType::get({32}, b.getI16Type());
    SmallVector<int16_t> counts;
    for (int64_t w = 0; w < 32; ++w)
      counts.push_back(int16_t(w < 16 ? low : high));
    Value amounts = arith::ConstantOp::create(
        b, e.loc, DenseElementsAttr::get(words, ArrayRef<int16_t>(counts)));
    Value asWords = vector::BitCastOp::create(b, e.loc, words, v);
    Value moved =
        left ? arith::ShLIOp::create(b, e.loc, asWords, amounts).getResult()
             : arith::ShRUIOp::create(b, e.loc, asWords, amounts).getResult();
    return vector::BitCastOp::create(b, e.loc, bytes(64), moved);
  }
  /// Bytes [from, from + 32) of `v` repeated in both halves of 64.
  Value repeatHalf(Value v, int64_t from) {
    SmallVector<int64_t> twice;
    for (int64_t i = 0; i < 64; ++i)
      twice.push_back(from + i % 32);
    return shuffle(v, v, twice);
  }
  Value toF32(Value dot) {
    auto lanes = cast<VectorType>(dot.getType()).getNumElements();
    return arith::SIToFPOp::create(e.b, e.loc, e.vec(unsigned(lanes)), dot);
  }
  /// A row's vector: 16 lanes on zmm, 8 where rows are computed on ymm.
  int64_t rowWidth() const { return ymmRows ? 8 : 16; }
  /// Lanes [from, from + n) of `v`, or lane `from` n times (`splat`).
  Value lanes(Value v, int64_t from, int64_t n, bool splat = false) {
    SmallVector<int64_t> mask;
    for (int64_t i = 0; i < n; ++i)
      mask.push_back(splat ? from : from + i);
    return shuffle(v, v, mask);
  }
  /// `n` f16 values at byte `at` of the weights, widened to f32.
  Value loadHalves(int64_t n, Value at) {
    Value raw = loadBytes(2 * n, at);
    Value h = vector::BitCastOp::create(
        e.b, e.loc, VectorType::get({n}, e.b.getF16Type()), raw);
    return arith::ExtFOp::create(e.b, e.loc, e.vec(unsigned(n)), h);
  }
  /// The block's activations as the dots meet them, once per block for
  /// every row and stream. Q4_K and Q5_K: [run 4h | run 4h + 2] and [run
  /// 4h + 1 | run 4h + 3] for h = 0, 1, and [dx0..7 | -sum0..7]. Q2_K, Q3_K
  /// and Q6_K: the block's four 64-byte quarters in order and dx per
  /// sub-block of 16; Q3_K and Q6_K the dots' starts (-4 or -32 x each
  /// lane's activations), Q2_K the per-16 sums negated. Ymm rows: the
  /// block's eight 32-byte runs in order instead of the quarters and the
  /// starts, and Q3_K's and Q6_K's biases as the per-16 sums times -4 or
  /// -32 (biasSums).
  void activations() {
    if (xScale)
      return;
    OpBuilder &b = e.b;
    Value e0 = e.mul(block, 256);
    SmallVector<Value, 4> quarters;
    if (ymmRows) {
      // The block's eight 32-byte runs in order (Q4_K and Q5_K: a chunk's
      // low nibbles are run 2c, its high ones run 2c + 1; the others:
      // elements in order), no shuffles.
      for (int64_t r = 0; r < 8; ++r)
        xs.push_back(vector::LoadOp::create(b, e.loc, bytes(32), o.x,
                                            e.add(xRow, e.add(e0, 32 * r))));
    } else {
      for (int64_t q = 0; q < 4; ++q)
        quarters.push_back(vector::LoadOp::create(
            b, e.loc, bytes(64), o.x, e.add(xRow, e.add(e0, 64 * q))));
    }
    Value dx = loadFloats(8, e.add(scales, e.mul(block, 8 * 4)));
    // The activations' per-16 sums: the runs' sums (Q4_K, Q5_K), Q2_K's
    // mins, and on ymm the codes' biases.
    Value perSixteen = !by16 || q2 || ymmRows
                           ? loadFloats(16, e.add(sums, e.mul(block, 16 * 4)))
                           : Value();
    if (!by16) {
      // Runs 4h and 4h + 2 (the chunks' low nibbles), 4h + 1 and 4h + 3.
      SmallVector<int64_t> lowRuns, highRuns;
      for (int64_t i = 0; i < 64; ++i) {
        lowRuns.push_back(i < 32 ? i : 64 + i - 32);
        highRuns.push_back(lowRuns.back() + 32);
      }
      for (int64_t h = 0; h < 2 && !ymmRows; ++h) {
        xs.push_back(shuffle(quarters[2 * h], quarters[2 * h + 1], lowRuns));
        xs.push_back(shuffle(quarters[2 * h], quarters[2 * h + 1], highRuns));
      }
      // Each run's sum of dequantized activations: its two per-16 sums.
      Value halves = perSixteen;
      SmallVector<int64_t> evens, odds;
      for (int64_t i = 0; i < 8; ++i) {
        evens.push_back(2 * i);
        odds.push_back(2 * i + 1);
      }
      Value runSums =
          e.fadd(shuffle(halves, halves, evens), shuffle(halves, halves, odds));
      SmallVector<int64_t> concat;
      for (int64_t i = 0; i < 16; ++i)
        concat.push_back(i);
      xScale = shuffle(dx, arith::NegFOp::create(b, e.loc, runSums), concat);
      return;
    }
    // Q6_K and Q3_K: -32 or -4 x each lane's four activations, the codes'
    // bias paid inside the dots (on ymm: through the per-16 sums, once per
    // row). Q2_K: the per-16 sums, negated, for the mins.
    SmallVector<int64_t> perSubBlock;
    for (int64_t j = 0; j < 16; ++j)
      perSubBlock.push_back(j / 2);
    xScale = shuffle(dx, dx, perSubBlock);
    if (q2)
      negSums = arith::NegFOp::create(b, e.loc, perSixteen);
    else if (ymmRows)
      biasSums = e.fmul(perSixteen, e.splat(e.cf(q6 ? -32.0 : -4.0), 16));
    VectorType words = VectorType::get({16}, b.getI32Type());
    for (Value q : quarters) {
      xs.push_back(q);
      if (q2)
        continue;
      Value owed = emitCodeDot(e, e.intSplat(words, 0),
                               e.intSplat(bytes(64), q6 ? 32 : 4), q);
      starts.push_back(
          arith::SubIOp::create(b, e.loc, e.intSplat(words, 0), owed));
    }
  }

  /// vector<n x f32> at byte `at` of the activations.
  Value loadFloats(int64_t n, Value at) {
    Value raw = vector::LoadOp::create(e.b, e.loc, bytes(4 * n), o.x, at);
    return vector::BitCastOp::create(e.b, e.loc, e.vec(unsigned(n)), raw);
  }
  Value byteConstant(ArrayRef<int8_t> values) {
    return arith::ConstantOp::create(
        e.b, e.loc,
        DenseElementsAttr::get(bytes(int64_t(values.size())), values));
  }
  /// The four scale vectors of a row's dots from its 16 per-run values:
  /// Q4_K's dot (h, lo/hi) takes run 4h + hi in lanes 0-7 and 4h + 2 + hi
  /// in lanes 8-15, Q6_K's dot q takes sub-block 4q + l in lanes 4l..4l+3.
  /// One permute puts the values each 128-bit lane needs in it, then each
  /// vector is an in-lane broadcast (an immediate, where four permutes
  /// would each hold an index vector in a register).
  SmallVector<Value, 4> spreads(Value perRun) {
    SmallVector<int64_t> gather(16);
    for (int64_t lane = 0; lane < 4; ++lane)
      for (int64_t i = 0; i < 4; ++i)
        gather[4 * lane + i] =
            by16 ? 4 * i + lane
                 : (lane / 2) * 2 + (i / 2) * 4 +
                       i % 2; // [0 1 4 5 | 0 1 4 5 | 2 3 6 7 | 2 3 6 7]
    Value grouped = shuffle(perRun, perRun, gather);
    SmallVector<Value, 4> result;
    for (int64_t i = 0; i < 4; ++i) {
      SmallVector<int64_t> broadcast;
      for (int64_t l = 0; l < 16; ++l)
        broadcast.push_back((l / 4) * 4 + i);
      result.push_back(shuffle(grouped, grouped, broadcast));
    }
    return result;
  }

  /// A Q4_K or Q5_K row's block at byte `at`: its per-run factors [d x sc_j
  /// x dx_j | -dmin x m_j x (run j's activation sum)], j = 0..7.
  Value q4PerRun(Value at) {
    OpBuilder &b = e.b;
    // [sc0..7 | m0..7], 6 bits each (ggml's get_scale_min_k4): j < 4 from
    // the low 6 bits of q[j] and q[j + 4]; j >= 4 the low (sc) or high (m)
    // nibble of q[j + 4] and the top 2 bits of q[j - 4] (sc) or q[j] (m).
    // q = bytes 4-15 of the block.
    Value header = loadBytes(16, at);
    Value zero = e.intSplat(bytes(16), 0);
    Value low = arith::AndIOp::create(
        b, e.loc,
        shuffle(header, header,
                {4, 5, 6, 7, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15}),
        byteConstant(
            {63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0}));
    Value minNibbles = shuffle(
        shiftRight(header, 4), zero,
        {16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 12, 13, 14, 15});
    Value top = bitAnd(shiftRight(shuffle(header, zero,
                                          {16, 16, 16, 16, 4, 5, 6, 7, 16, 16,
                                           16, 16, 8, 9, 10, 11}),
                                  2),
                       0x30);
    Value six = bitOr(bitOr(low, minNibbles), top);
    Value dmin = loadHalves(2, at);
    SmallVector<int64_t> dThenMin;
    for (int64_t i = 0; i < 16; ++i)
      dThenMin.push_back(i / 8);
    return e.fmul(e.fmul(arith::UIToFPOp::create(b, e.loc, e.vec(16), six),
                         shuffle(dmin, dmin, dThenMin)),
                  xScale);
  }

  /// One Q4_K row's block at byte `at`: vector<16 x f32> whose lanes sum to
  /// the row's dot with the block's activations.
  Value q4Row(Value at) {
    OpBuilder &b = e.b;
    Value perRun = q4PerRun(at);
    SmallVector<int64_t> minsOnly;
    for (int64_t i = 0; i < 16; ++i)
      minsOnly.push_back(i < 8 ? 16 + i : i);
    Value row = shuffle(perRun, e.zeroVec(16), minsOnly);
    VectorType words = VectorType::get({16}, b.getI32Type());
    SmallVector<Value, 4> scale = spreads(perRun);
    // Q5_K's fifth bits, qh's 32 bytes in both halves of a register.
    Value qh = q5 ? repeatHalf(loadBytes(32, e.add(at, 16)), 0) : Value();
    // Bit k of each byte of qh moved to bit 4 for the runs of a load's
    // halves (run kLow in bytes 0-31, kHigh in 32-63): a variable shift of
    // 16-bit words (one way for both, staying within each byte) and a mask.
    auto fifthBits = [&](int64_t kLow, int64_t kHigh) {
      return bitAnd(kHigh < 4 ? shiftWords(qh, true, 4 - kLow, 4 - kHigh)
                              : shiftWords(qh, false, kLow - 4, kHigh - 4),
                    0x10);
    };
    const int64_t codesAt = q5 ? 48 : 16;
    for (int64_t h = 0; h < 2; ++h) {
      auto [lo, hi] =
          emitSplitNibbles(e, loadBytes(64, e.add(at, codesAt + 64 * h)));
      if (q5) {
        lo = bitOr(lo, fifthBits(4 * h, 4 * h + 2));
        hi = bitOr(hi, fifthBits(4 * h + 1, 4 * h + 3));
      }
      Value dLo = emitCodeDot(e, e.intSplat(words, 0), lo, xs[2 * h]);
      Value dHi = emitCodeDot(e, e.intSplat(words, 0), hi, xs[2 * h + 1]);
      row = e.fma(toF32(dLo), scale[2 * h], row);
      row = e.fma(toF32(dHi), scale[2 * h + 1], row);
    }
    return row;
  }

  /// One Q4_K or Q5_K row's block at byte `at` on ymm (AVX2, AVX-VNNI):
  /// vector<8 x f32> whose lanes sum to the row's dot. A 32-byte chunk c of
  /// nibbles holds runs 2c (low) and 2c + 1 (high) whole, so each dot meets
  /// one run's activations as they lie and takes one scale, splat; the
  /// mins' terms start the sum. Q5_K: bit j of qh[l] is bit 4 of run j's
  /// code l, moved there by one word shift and a mask.
  Value q4RowYmm(Value at) {
    Value perRun = q4PerRun(at);
    Value row = lanes(perRun, 8, 8);
    Value qh = q5 ? loadBytes(32, e.add(at, 16)) : Value();
    auto fifthBit = [&](int64_t j) {
      return bitAnd(shiftWordsBy(qh, 4 - j), 0x10);
    };
    const int64_t codesAt = q5 ? 48 : 16;
    for (int64_t c = 0; c < 4; ++c) {
      auto [lo, hi] =
          emitSplitNibbles(e, loadBytes(32, e.add(at, codesAt + 32 * c)));
      Value codes[2] = {lo, hi};
      for (int64_t half = 0; half < 2; ++half) {
        int64_t j = 2 * c + half;
        if (q5)
          codes[half] = bitOr(codes[half], fifthBit(j));
        Value dot = emitCodeDot(e, Value(), codes[half], xs[j]);
        row = e.fma(toF32(dot), lanes(perRun, j, 8, /*splat=*/true), row);
      }
    }
    return row;
  }

  /// The 32 bytes of `v` as 16 words shifted left by `n` (right by -n): one
  /// vpsllw or vpsrlw; a later mask keeps each byte's own bits.
  Value shiftWordsBy(Value v, int64_t n) {
    if (n == 0)
      return v;
    OpBuilder &b = e.b;
    VectorType words = VectorType::get({16}, b.getI16Type());
    Value w = vector::BitCastOp::create(b, e.loc, words, v);
    w = n > 0 ? arith::ShLIOp::create(b, e.loc, w, e.intSplat(words, n))
                    .getResult()
              : arith::ShRUIOp::create(b, e.loc, w, e.intSplat(words, -n))
                    .getResult();
    return vector::BitCastOp::create(b, e.loc, bytes(32), w);
  }

  /// Row factors [f_2m x4 | f_2m+1 x4] of 32-element run m (two sub-blocks
  /// of 16) from a row's 16 sub-block factors.
  Value subBlockPair(Value perSubBlock, int64_t m) {
    SmallVector<int64_t> subBlocks;
    for (int64_t l = 0; l < 8; ++l)
      subBlocks.push_back(2 * m + l / 4);
    return shuffle(perSubBlock, perSubBlock, subBlocks);
  }

  /// One Q2_K or Q3_K row's block at byte `at` on ymm, as q6RowYmm: run m
  /// (elements 32m .. 32m + 31) is bits 2j and 2j + 1 (j = m % 4) of the 32
  /// bytes of qs of half m / 4, in order, and for Q3_K bit m of hmask's
  /// bytes as bit 2; Q2_K's mins and Q3_K's bias 4 are paid once per row
  /// through the activations' per-16 sums.
  Value q23RowYmm(Value at) {
    auto [scaled, mins] = q23Factors(at);
    Value perSubBlock = e.fmul(scaled, xScale);
    Value owed = q2 ? mins : e.fmul(scaled, biasSums);
    Value row = e.fadd(lanes(owed, 0, 8), lanes(owed, 8, 8));
    Value highBits = q3 ? loadBytes(32, at) : Value();
    const int64_t qsAt = q2 ? 16 : 32;
    for (int64_t n = 0; n < 2; ++n) {
      Value half = loadBytes(32, e.add(at, qsAt + 32 * n));
      for (int64_t j = 0; j < 4; ++j) {
        int64_t m = 4 * n + j;
        Value codes = bitAnd(shiftWordsBy(half, -2 * j), 3);
        if (q3)
          codes = bitOr(codes, bitAnd(shiftWordsBy(highBits, 2 - m), 4));
        Value dot = emitCodeDot(e, Value(), codes, xs[m]);
        row = e.fma(toF32(dot), subBlockPair(perSubBlock, m), row);
      }
    }
    return row;
  }

  /// A Q6_K row's block at byte `at`: d x its 16 signed sub-block scales.
  Value q6Scaled(Value at) {
    Value subScales = arith::SIToFPOp::create(e.b, e.loc, e.vec(16),
                                              loadBytes(16, e.add(at, 192)));
    Value d = loadHalves(1, e.add(at, 208));
    return e.fmul(subScales, lanes(d, 0, 16, /*splat=*/true));
  }

  /// One Q6_K row's block at byte `at` on ymm, as q4RowYmm: per half of the
  /// block, ql's two 32-byte loads and qh's one give four 32-element runs
  /// of codes 0..63 in order (each two sub-blocks, lanes 0-3 and 4-7); the
  /// bias 32 is paid once per row through the activations' per-16 sums.
  Value q6RowYmm(Value at) {
    Value scaled = q6Scaled(at);
    Value perSubBlock = e.fmul(scaled, xScale);
    Value bias = e.fmul(scaled, biasSums);
    Value row = e.fadd(lanes(bias, 0, 8), lanes(bias, 8, 8));
    for (int64_t n = 0; n < 2; ++n) {
      auto [aLo, aHi] = emitSplitNibbles(e, loadBytes(32, e.add(at, 64 * n)));
      auto [bLo, bHi] =
          emitSplitNibbles(e, loadBytes(32, e.add(at, 64 * n + 32)));
      Value qh = loadBytes(32, e.add(at, 128 + 32 * n));
      // Elements 32i + l of the half: bits 2i, 2i + 1 of qh[l] to bits 4-5.
      Value codes[4] = {bitOr(aLo, bitAnd(shiftLeft(qh, 4), 0x30)),
                        bitOr(bLo, bitAnd(shiftLeft(qh, 2), 0x30)),
                        bitOr(aHi, bitAnd(qh, 0x30)),
                        bitOr(bHi, bitAnd(shiftRight(qh, 2), 0x30))};
      for (int64_t i = 0; i < 4; ++i) {
        int64_t q = 4 * n + i;
        Value dot = emitCodeDot(e, Value(), codes[i], xs[q]);
        row = e.fma(toF32(dot), subBlockPair(perSubBlock, q), row);
      }
    }
    return row;
  }

  /// A Q2_K or Q3_K row's block at byte `at`: d x its 16 sub-block scales
  /// (Q3_K's minus 32) and, for Q2_K, its mins' terms, dmin x m_j x the
  /// activations' per-16 sums, negated.
  std::pair<Value, Value> q23Factors(Value at) {
    OpBuilder &b = e.b;
    if (q2) {
      Value packed = loadBytes(16, at);
      Value scalesF =
          arith::UIToFPOp::create(b, e.loc, e.vec(16), bitAnd(packed, 15));
      Value minsF =
          arith::UIToFPOp::create(b, e.loc, e.vec(16), shiftRight(packed, 4));
      Value dmin = loadHalves(2, e.add(at, 80));
      return {e.fmul(scalesF, shuffle(dmin, dmin, SmallVector<int64_t>(16, 0))),
              e.fmul(e.fmul(minsF,
                            shuffle(dmin, dmin, SmallVector<int64_t>(16, 1))),
                     negSums)};
    }
    // Scale s: the low nibble of byte s (s < 8) or the high one of byte
    // s - 8, and as bits 4-5 bits 2 (s / 4)..+1 of byte 8 + s % 4; minus
    // 32. Bytes 96-107 of the block.
    Value raw = loadBytes(16, e.add(at, 96 - 4)); // bytes 92-107
    SmallVector<int64_t> lowBytes, highBytes;
    for (int64_t i = 0; i < 16; ++i) {
      lowBytes.push_back(4 + i % 8);
      highBytes.push_back(12 + i % 4);
    }
    Value low = shuffle(raw, raw, lowBytes);
    Value nibbles =
        shuffle(bitAnd(low, 15), shiftRight(low, 4),
                {0, 1, 2, 3, 4, 5, 6, 7, 24, 25, 26, 27, 28, 29, 30, 31});
    Value high = shuffle(raw, raw, highBytes);
    Value h01 =
        shuffle(high, shiftRight(high, 2),
                {0, 1, 2, 3, 20, 21, 22, 23, 8, 9, 10, 11, 12, 13, 14, 15});
    Value h23 = shuffle(shiftRight(high, 4), shiftRight(high, 6),
                        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 28, 29, 30, 31});
    Value tops = shuffle(
        h01, h23, {0, 1, 2, 3, 4, 5, 6, 7, 24, 25, 26, 27, 28, 29, 30, 31});
    Value six = bitOr(nibbles, shiftLeft(bitAnd(tops, 3), 4));
    Value signedScales =
        arith::SubIOp::create(b, e.loc, six, e.intSplat(bytes(16), 32));
    Value d = loadHalves(1, e.add(at, 108));
    return {e.fmul(arith::SIToFPOp::create(b, e.loc, e.vec(16), signedScales),
                   shuffle(d, d, SmallVector<int64_t>(16, 0))),
            Value()};
  }

  /// One Q2_K or Q3_K row's block at byte `at`, as q4Row.
  Value q23Row(Value at) {
    OpBuilder &b = e.b;
    auto [scaled, mins] = q23Factors(at);
    Value perSubBlock = e.fmul(scaled, xScale);
    Value row = q2 ? mins : e.zeroVec(16);
    Value highBits = q3 ? repeatHalf(loadBytes(32, at), 0) : Value();
    const int64_t qsAt = q2 ? 16 : 32;
    Value qs = loadBytes(64, e.add(at, qsAt));
    VectorType dots = VectorType::get({16}, b.getI32Type());
    SmallVector<Value, 4> scale = spreads(perSubBlock);
    for (int64_t n = 0; n < 2; ++n) {
      Value half = repeatHalf(qs, 32 * n);
      for (int64_t p = 0; p < 2; ++p) {
        // Elements 64p + [0, 32) at bits 4p, 64p + [32, 64) at 4p + 2.
        int64_t q = 2 * n + p;
        Value codes = bitAnd(shiftWords(half, false, 4 * p, 4 * p + 2), 3);
        Value start = e.intSplat(dots, 0);
        if (q3) {
          // Bits 2q and 2q + 1 of hmask to bit 2.
          Value h = q == 0 ? shiftWords(highBits, true, 2, 1)
                           : shiftWords(highBits, false, 2 * q - 2, 2 * q - 1);
          codes = bitOr(codes, bitAnd(h, 4));
          start = starts[q];
        }
        Value dot = emitCodeDot(e, start, codes, xs[q]);
        row = e.fma(toF32(dot), scale[q], row);
      }
    }
    return row;
  }

  /// One Q6_K row's block at byte `at`, as q4Row.
  Value q6Row(Value at) {
    // The high 2 bits of element l of each 32 of a half: qh[l] bits 0-1,
    // 2-3, 4-5 and 6-7 for elements l, l + 32, l + 64 and l + 96, moved to
    // bits 4-5.
    Value qh = loadBytes(64, e.add(at, 128));
    Value a = bitAnd(shiftLeft(qh, 4), 0x30);
    Value bb = bitAnd(shiftLeft(qh, 2), 0x30);
    Value c = bitAnd(qh, 0x30);
    Value dd = bitAnd(shiftRight(qh, 2), 0x30);
    auto halfOf = [&](Value x, Value y, int64_t n) {
      SmallVector<int64_t> mask;
      for (int64_t i = 0; i < 64; ++i)
        mask.push_back(i < 32 ? 32 * n + i : 64 + 32 * n + i - 32);
      return shuffle(x, y, mask);
    };
    Value perSubBlock = e.fmul(q6Scaled(at), xScale);
    Value row = e.zeroVec(16);
    SmallVector<Value, 4> scale = spreads(perSubBlock);
    for (int64_t n = 0; n < 2; ++n) {
      auto [lo, hi] = emitSplitNibbles(e, loadBytes(64, e.add(at, 64 * n)));
      Value uLo = bitOr(lo, halfOf(a, bb, n));
      Value uHi = bitOr(hi, halfOf(c, dd, n));
      Value dLo = emitCodeDot(e, starts[2 * n], uLo, xs[2 * n]);
      Value dHi = emitCodeDot(e, starts[2 * n + 1], uHi, xs[2 * n + 1]);
      row = e.fma(toF32(dLo), scale[2 * n], row);
      row = e.fma(toF32(dHi), scale[2 * n + 1], row);
    }
    return row;
  }

  Emitter &e;
  const MatmulSpec &spec;
  const MatmulOperands &o;
  const bool q6, q5, q2, q3, by16;
  /// Rows on ymm (targets without AVX-512 VNNI).
  const bool ymmRows;
  const int64_t blockBytes;
  Value xRow, scales, sums, block, xScale, negSums, biasSums;
  SmallVector<Value, 4> xs, starts;
};

void emitGemvInt8Tiles(Emitter &e, const MatmulSpec &spec,
                       const MatmulOperands &o) {
  if (usesWideTiles(e, spec.format)) {
    WideVnniTiles body(e, spec, o);
    emitTiledGemv(e, spec, o, body);
    return;
  }
  if (usesKQuantTiles(e, spec.format)) {
    KQuantVnniTiles body(e, spec, o);
    emitTiledGemv(e, spec, o, body);
    return;
  }
  RowLaneTiles body(e, spec, o);
  emitTiledGemv(e, spec, o, body);
}

/// Whether the tiled GEMM's buffer holds a run's codes as AVX2 broadcast
/// tiles (emitGemmInt8Tiles): 8-row tiles, runs of 16 or 32.
bool usesBroadcastTiles(const Emitter &e, const WeightFormat &f) {
  int64_t run = getIntegerRunLength(f);
  return hasX86Avx2(e) && f.interleave == 8 &&
         (run == 16 || run == 32);
}

/// The lane of row r (of 8) in a broadcast tile's sums: two vpmaddwd
/// results of rows 0-3 and 4-7 meet in one vphaddd as [0 1 4 5 | 2 3 6 7]
/// (the permutation is its own inverse).
int64_t broadcastLane(int64_t r) {
  static constexpr int64_t kLane[8] = {0, 1, 4, 5, 2, 3, 6, 7};
  return kLane[r];
}

/// Prefill with 8-bit activations over row-interleaved weights: a tile's
/// rows are decoded once into an L1 buffer laid out run by run, then every
/// token meets each run of the tile with integer dot products that leave a
/// vector with a lane per row, so that the per-run scaling and accumulation
/// are vector operations over the rows.
///
/// On AVX2 (usesBroadcastTiles) a run of the 8 rows is stored as broadcast
/// tiles: 32-byte registers of 4 rows x 8 codes (chunk c of the run, rows
/// 0-3 or 4-7), met by the token's 8 activations of chunk c broadcast to
/// all four quarters (one vpbroadcastq), so each vpmaddubsw yields 4 rows'
/// pairwise sums at once; the i16 sums of the chunks add up while they
/// cannot saturate, one vpmaddwd per 4 rows and one vphaddd per run leave
/// the 8 rows' dots (in broadcastLane order, the order the scales are
/// stored in). Elsewhere a run of a row is contiguous and each row's dot is
/// reduced on its own (emitReduceRows).
void emitGemmInt8Tiles(Emitter &e, const MatmulSpec &spec,
                       const MatmulOperands &o) {
  OpBuilder &b = e.b;
  const int64_t R = spec.format.interleave;
  const int64_t blockElems = spec.format.blockElements(e.lanes);
  const int64_t blockBytes = spec.format.blockBytes(e.lanes);
  const int64_t blocks = spec.k / blockElems;
  const int64_t rowBytes = weightRowBytes(spec, e.lanes);
  const unsigned nMats = spec.swiglu ? 2 : 1;
  const int64_t run = getIntegerRunLength(spec.format);
  const int64_t runs = spec.k / run;
  const int64_t runsPerBlock = blockElems / run;
  const unsigned maxCode = getIntegerMaxCode(spec.format);
  const TiledRunRule rule(e, spec.format);
  const int64_t qRow = KernelLibrary::getQuantizedRowBytes(spec.k);
  const int64_t slots = nMats * runs * R;
  const bool broadcast = usesBroadcastTiles(e, spec.format);
  // Split nibbles (usesNibblePairs) reach the broadcast tiles two rows per
  // load: unpacking the 64-bit chunks of rows (0,1) and (2,3) pairs rows 0
  // and 2 in a register's low half and 1 and 3 in its high half, so the
  // lanes hold rows 0 2 4 6 | 1 3 5 7.
  const bool pairDecode = broadcast && usesNibblePairs(e, spec.format);
  auto laneOf = [&](int64_t r) {
    if (pairDecode)
      return (r % 2) * 4 + r / 2;
    return broadcast ? broadcastLane(r) : r;
  };
  // laneOf of a row index known at run time (broadcastLane swaps bits 1
  // and 2 of r).
  auto laneOfRow = [&](Value r) -> Value {
    if (pairDecode)
      return e.add(e.mul(e.rem(r, 2), 4), e.div(r, 2));
    if (!broadcast)
      return r;
    return e.add(e.add(e.rem(r, 2), e.mul(e.rem(e.div(r, 2), 2), 4)),
                 e.mul(e.div(r, 4), 2));
  };
  const int64_t header = spec.format.splitHeaderBytes();
  VectorType codesType = VectorType::get({run}, b.getI8Type());
  VectorType rowsF32 = e.vec(unsigned(R));
  Value codes = memref::AllocaOp::create(
      b, e.loc, MemRefType::get({slots * run}, b.getI8Type()),
      b.getI64IntegerAttr(64));
  Value scales = memref::AllocaOp::create(
      b, e.loc, MemRefType::get({slots}, e.f32()), b.getI64IntegerAttr(64));
  Value offsets =
      rule.offsetStored ? memref::AllocaOp::create(b, e.loc,
                                              MemRefType::get({slots}, e.f32()),
                                              b.getI64IntegerAttr(64))
                         .getResult()
                   : Value();
  e.loop(o.nLo, o.nHi, R, [&](Value n0) {
    // Run s = m * runs + run index holds R rows' codes from byte s * R * run
    // (row r's at r * run, or, broadcast, its chunk c at (2c + r / 4) * 32 +
    // (r % 4) * 8), their scales and offsets from slot s * R (row r in lane
    // laneOf(r)).
    for (unsigned m = 0; m < nMats; ++m)
      e.loop(e.idx(0), e.idx(blocks), 1, [&](Value blk) {
        Value tileBlock = e.add(e.add(o.wOff[m], e.mul(n0, rowBytes)),
                                e.mul(blk, R * blockBytes));
        // The next tile's run into L2 while this one is decoded: the tokens'
        // pass over the buffer between two tiles' decodes is long enough
        // for it to arrive, where the hardware prefetcher, seeing a tile's
        // few KiB at a time, leaves each decode waiting on memory. (Past the
        // last tile the addresses lie outside the weights; a prefetch does
        // not fault.)
        for (int64_t line = 0; line < R * blockBytes; line += kCacheLineBytes)
          memref::PrefetchOp::create(
              b, e.loc, o.w, ValueRange{e.add(tileBlock, R * rowBytes + line)},
              /*isWrite=*/false, /*localityHint=*/2, /*isDataCache=*/true);
        Value firstRun = e.add(e.mul(blk, runsPerBlock), int64_t(m) * runs);
        Value pairScales;
        if (pairDecode) {
          // One run per block: four loads of two rows' 16 code bytes, masks
          // and a shift for the low and high nibbles (chunks 0-1 and 2-3 of
          // each row), and 64-bit unpacks of row pairs (0,1)+(2,3) and
          // (4,5)+(6,7) into the 8 broadcast registers.
          VectorType bytes32 = VectorType::get({32}, b.getI8Type());
          VectorType quads = VectorType::get({4}, b.getI64Type());
          NibblePairs pairs =
              loadNibblePairs(e, o.w, e.add(tileBlock, R * header));
          auto asQuads = [&](Value v) {
            return vector::BitCastOp::create(b, e.loc, quads, v);
          };
          Value base = e.mul(e.mul(firstRun, R), run);
          for (int64_t h = 0; h < 2; ++h)
            for (int64_t chunk = 0; chunk < 4; ++chunk) {
              ArrayRef<Value> src = chunk < 2 ? pairs.low : pairs.high;
              // punpcklqdq / punpckhqdq within 128-bit halves.
              int64_t q = chunk % 2;
              Value reg = vector::ShuffleOp::create(
                  b, e.loc, asQuads(src[2 * h]), asQuads(src[2 * h + 1]),
                  ArrayRef<int64_t>{q, 4 + q, 2 + q, 6 + q});
              vector::StoreOp::create(
                  b, e.loc, vector::BitCastOp::create(b, e.loc, bytes32, reg),
                  codes, e.add(base, (2 * chunk + h) * 32));
            }
          if (Value natural = emitTileRunScales(e, spec.format, o.w, tileBlock, R)) {
            SmallVector<int64_t> rowOfLane(R);
            for (int64_t r = 0; r < R; ++r)
              rowOfLane[laneOf(r)] = r;
            pairScales = vector::ShuffleOp::create(b, e.loc, natural, natural,
                                                   rowOfLane);
            vector::StoreOp::create(b, e.loc, pairScales, scales,
                                    e.mul(firstRun, R));
          }
        }
        if (!pairDecode || !pairScales || rule.offsetStored) {
          // A row at a time in a loop: the decode is once per tile and
          // amortized over every token; R inlined copies of a K-quant's
          // decode made much of a model's code generation time.
          e.loop(e.idx(0), e.idx(R), 1, [&](Value r) {
            emitBlockDecodeInteger(
                b, e.loc, spec.format, o.w,
                runBlockAddress(e, spec.format, tileBlock, r),
                [&](const IntegerRun &ri) {
                  Value runStart = e.mul(e.add(firstRun, ri.first / run), R);
                  Value slot = e.add(runStart, laneOfRow(r));
                  if (pairDecode) {
                    // Codes stored above; the scale and offset alone.
                  } else if (broadcast) {
                    // Stored as the dot's signed operand where it takes the
                    // sign trick (emitIntegerDot's bias).
                    Value c = ri.codes;
                    if (rule.bias)
                      c = arith::SubIOp::create(b, e.loc, c,
                                                e.intSplat(codesType, rule.bias));
                    Value base = e.add(
                        e.mul(runStart, run),
                        e.add(e.mul(e.div(r, 4), 32), e.mul(e.rem(r, 4), 8)));
                    for (int64_t chunk = 0; chunk < run / 8; ++chunk)
                      vector::StoreOp::create(
                          b, e.loc,
                          vector::ExtractStridedSliceOp::create(
                              b, e.loc, c, ArrayRef<int64_t>{8 * chunk},
                              ArrayRef<int64_t>{8}, ArrayRef<int64_t>{1}),
                          codes, e.add(base, 2 * chunk * 32));
                  } else {
                    vector::StoreOp::create(b, e.loc, ri.codes, codes,
                                            e.mul(slot, run));
                  }
                  if (!pairScales)
                    e.store(ri.scale, scales, slot);
                  if (rule.offsetStored)
                    e.store(rule.storedOffset(e, ri), offsets, slot);
                });
          });
        }
      });
    // Broadcast tiles: how many vpmaddubsw results an i16 sum takes before
    // it could saturate (|products| <= 2 x 127 x the largest |code|).
    const int64_t largestCode = rule.bias ? 128 : int64_t(maxCode);
    const int64_t i16Group =
        std::max<int64_t>(1, 32767 / (2 * 127 * std::max<int64_t>(1, largestCode)));
    VectorType bytes32 = VectorType::get({32}, b.getI8Type());
    VectorType halves16 = VectorType::get({16}, b.getI16Type());
    VectorType words8 = VectorType::get({8}, b.getI32Type());
    // The dots of `xRows.size()` tokens with one run of the tile: each code
    // register is loaded once for all of them. Chunk by chunk, so that only
    // one chunk's activations and codes are live beside the sums (16 AVX2
    // registers hold two tokens' without spilling).
    auto broadcastDots = [&](ArrayRef<Value> xRows, Value el, Value runBase) {
      const size_t T = xRows.size();
      auto broadcastActivations = [&](size_t t, int64_t chunk,
                                      VectorType type) -> Value {
        Value q = vector::BitCastOp::create(
            b, e.loc, VectorType::get({1}, b.getI64Type()),
            vector::LoadOp::create(b, e.loc,
                                   VectorType::get({8}, b.getI8Type()), o.x,
                                   e.add(e.add(xRows[t], el), 8 * chunk)));
        return vector::BitCastOp::create(
            b, e.loc, type,
            vector::BroadcastOp::create(
                b, e.loc,
                VectorType::get({type.getNumElements() / 8}, b.getI64Type()),
                vector::ExtractOp::create(b, e.loc, q, 0)));
      };
      if (hasX86Avx512Vnni(e)) {
        // A chunk's two broadcast tiles are one 64-byte register: row r's
        // 8 codes in qword r ((2c + r / 4) x 32 + (r % 4) x 8 = 64c + 8r),
        // met by the 8 activations in every qword. One zmm vpdpbusd per
        // chunk and token does what two ymm ones did; at the run's end each
        // row's two i32 sums (codes 0-3 and 4-7) are added into the lane
        // the ymm path's vphaddd leaves them in (broadcastLane). Integer
        // sums in another order: the dots are the same.
        VectorType bytes64 = VectorType::get({64}, b.getI8Type());
        SmallVector<Value, 2> sums(T);
        for (int64_t chunk = 0; chunk < run / 8; ++chunk) {
          Value w = vector::LoadOp::create(b, e.loc, bytes64, codes,
                                           e.add(runBase, 64 * chunk));
          Value u =
              rule.bias ? math::AbsIOp::create(b, e.loc, w).getResult() : w;
          for (size_t t = 0; t < T; ++t)
            sums[t] = emitVnniDot(e, sums[t], u,
                                  broadcastActivations(t, chunk, bytes64));
        }
        SmallVector<int64_t> first, second;
        for (int64_t lane = 0; lane < 8; ++lane) {
          first.push_back(2 * broadcastLane(lane));
          second.push_back(2 * broadcastLane(lane) + 1);
        }
        SmallVector<Value, 2> dots;
        for (size_t t = 0; t < T; ++t)
          dots.push_back(arith::AddIOp::create(
              b, e.loc,
              vector::ShuffleOp::create(b, e.loc, sums[t], sums[t], first),
              vector::ShuffleOp::create(b, e.loc, sums[t], sums[t], second)));
        return dots;
      }
      Value ones = e.intSplat(halves16, 1);
      // [token][half]: i32 sums, and i16 sums not yet widened.
      std::vector<std::array<Value, 2>> sum32(T), sum16(T);
      int64_t inGroup = 0;
      auto flush = [&]() {
        for (size_t t = 0; t < T; ++t)
          for (int64_t h = 0; h < 2; ++h) {
            Value w = callX86(e, "llvm.x86.avx2.pmadd.wd", words8,
                              {sum16[t][h], ones});
            sum32[t][h] =
                sum32[t][h]
                    ? arith::AddIOp::create(b, e.loc, sum32[t][h], w).getResult()
                    : w;
            sum16[t][h] = Value();
          }
        inGroup = 0;
      };
      for (int64_t chunk = 0; chunk < run / 8; ++chunk) {
        SmallVector<Value, 2> xb;
        for (size_t t = 0; t < T; ++t)
          xb.push_back(broadcastActivations(t, chunk, bytes32));
        for (int64_t h = 0; h < 2; ++h) {
          Value w = vector::LoadOp::create(b, e.loc, bytes32, codes,
                                           e.add(runBase, (2 * chunk + h) * 32));
          Value u = rule.bias ? math::AbsIOp::create(b, e.loc, w).getResult() : w;
          for (size_t t = 0; t < T; ++t) {
            Value x = xb[t];
            if (hasX86Vnni(e)) {
              // i32 sums straight away: no i16 stage, no sign trick (the
              // codes are unsigned, rule.bias is 0).
              sum32[t][h] = emitVnniDot(e, sum32[t][h], u, x);
              continue;
            }
            if (rule.bias)
              x = callX86(e, "llvm.x86.avx2.psign.b", bytes32, {x, w});
            Value p = callX86(e, "llvm.x86.avx2.pmadd.ub.sw", halves16, {u, x});
            sum16[t][h] =
                sum16[t][h]
                    ? arith::AddIOp::create(b, e.loc, sum16[t][h], p).getResult()
                    : p;
          }
        }
        if (!hasX86Vnni(e) && ++inGroup == i16Group)
          flush();
      }
      if (inGroup)
        flush();
      SmallVector<Value, 2> dots;
      for (size_t t = 0; t < T; ++t)
        dots.push_back(callX86(e, "llvm.x86.avx2.phadd.d", words8,
                               {sum32[t][0], sum32[t][1]}));
      return dots;
    };
    // Tokens t0 .. t0 + T - 1 against the tile: two at a time with broadcast
    // tiles (each code register loaded from L1 meets both), else one.
    auto emitTokens = [&](Value t0, int64_t T) {
      SmallVector<Value, 2> xRows, xScales, xSums;
      for (int64_t t = 0; t < T; ++t) {
        xRows.push_back(e.add(o.xOff, e.mul(e.add(t0, t), qRow)));
        xScales.push_back(e.add(xRows.back(), spec.k));
        xSums.push_back(e.add(xScales.back(), spec.k / 8));
      }
      // One pass over the runs per matrix (gate, up): its T accumulators
      // and one chunk's codes and activations stay in registers. In one
      // pass for both, the activations' broadcasts, shared by the two
      // matrices, and the 2T accumulators spilled to the stack.
      //
      // Software-pipelined: an iteration computes run i's integer dots
      // and scales run i - 1's into the accumulators, so the f32 work
      // never waits on the long integer chain of its own run (19 -> 16-17
      // cycles per run of two tokens on Zen 3, measured on the loop).
      //
      // Symmetric unsigned codes (offsetIsBiasedScale) owe symBias x the
      // run's activation sum: taken off the integer dot (the quantized
      // row's i32 code sums), one vector subtraction instead of a scalar
      // chain and a second FMA per token and run.
      const bool foldBias =
          rule.offsetIsBiasedScale && (run == 16 || run == 32);
      SmallVector<Value, 2> xCodeSums;
      if (foldBias)
        for (int64_t t = 0; t < T; ++t)
          xCodeSums.push_back(e.add(
              xRows[t], KernelLibrary::getQuantizedCodeSumsOffset(spec.k, run)));
      VectorType rowsI32 = VectorType::get({R}, b.getI32Type());
      auto loadActivationCodes = [&](int64_t t, Value el) {
        return vector::LoadOp::create(b, e.loc, codesType, o.x,
                                      e.add(xRows[t], el))
            .getResult();
      };
      SmallVector<Value> accs(nMats * T);
      for (unsigned m = 0; m < nMats; ++m) {
        // Run ri's T integer dots (vector<R x i32>, lanes laneOf(r)).
        auto runDots = [&](Value ri) {
          Value el = e.mul(ri, run);
          Value slot0 = e.mul(e.add(ri, int64_t(m) * runs), R);
          SmallVector<Value> dots;
          if (broadcast) {
            for (Value d : broadcastDots(xRows, el, e.mul(slot0, run)))
              dots.push_back(d);
          } else {
            Value xq = loadActivationCodes(0, el);
            SmallVector<Value> rowDots;
            for (int64_t r = 0; r < R; ++r) {
              Value w = vector::LoadOp::create(
                  b, e.loc, codesType, codes, e.mul(e.add(slot0, r), run));
              int64_t used = 0;
              rowDots.push_back(emitIntegerDot(e, w, xq, maxCode,
                                               rule.preferredBias, used));
            }
            dots.push_back(emitReduceRows(e, rowDots));
          }
          if (foldBias)
            for (int64_t t = 0; t < T; ++t) {
              Value sum = loadScalarBytes(
                  e, o.x, e.add(xCodeSums[t], e.mul(ri, 4)), b.getI32Type());
              Value owed = arith::MulIOp::create(
                  b, e.loc, vector::BroadcastOp::create(b, e.loc, rowsI32, sum),
                  e.intSplat(rowsI32, rule.symBias));
              dots[t] = arith::SubIOp::create(b, e.loc, dots[t], owed);
            }
          return dots;
        };
        // acc += run ri's dots x scales (and its offsets).
        auto accumulateRun = [&](MutableArrayRef<Value> acc,
                                 ArrayRef<Value> dotsI32, Value ri) {
          Value el = e.mul(ri, run);
          Value slot0 = e.mul(e.add(ri, int64_t(m) * runs), R);
          Value sc = vector::LoadOp::create(b, e.loc, rowsF32, scales, slot0);
          Value off = rule.offsetStored
                          ? vector::LoadOp::create(b, e.loc, rowsF32, offsets,
                                                   slot0)
                                .getResult()
                          : Value();
          for (int64_t t = 0; t < T; ++t) {
            Value dx = loadF32Bytes(
                e, o.x, e.add(xScales[t], e.mul(e.div(el, 32), 4)));
            Value dot = arith::SIToFPOp::create(b, e.loc, rowsF32, dotsI32[t]);
            Value dxv = e.splat(dx, unsigned(R));
            Value &av = acc[t];
            const bool biasInF32 = rule.offsetIsBiasedScale && !foldBias;
            Value xsum = biasInF32 || rule.offsetStored
                             ? emitActivationRunSum(
                                   e, o.x, xSums[t], el, run,
                                   run < 16 ? loadActivationCodes(t, el)
                                            : Value(),
                                   dx)
                             : Value();
            if (biasInF32) {
              // scale x (dot x dx - symBias x sum(x)): two FMAs.
              Value biased = e.splat(
                  e.fmul(xsum, e.cf(-double(rule.symBias))), unsigned(R));
              av = e.fma(sc, e.fma(dot, dxv, biased), av);
              continue;
            }
            av = e.fma(dot, e.fmul(sc, dxv), av);
            if (rule.offsetStored)
              av = e.fma(off, e.splat(xsum, unsigned(R)), av);
          }
        };
        SmallVector<Value> init(T, e.zeroVec(unsigned(R)));
        for (Value d : runDots(e.idx(0)))
          init.push_back(d);
        SmallVector<Value> carried = e.loop(
            e.idx(1), e.idx(runs), 1, init, [&](Value ri, ValueRange args) {
              SmallVector<Value> acc(args.begin(), args.begin() + T);
              SmallVector<Value> next = runDots(ri);
              SmallVector<Value> previous(args.begin() + T, args.end());
              accumulateRun(acc, previous,
                            arith::SubIOp::create(b, e.loc, ri, e.idx(1)));
              acc.append(next.begin(), next.end());
              return acc;
            });
        MutableArrayRef<Value> mAccs(carried.data(), T);
        SmallVector<Value> last(carried.begin() + T, carried.end());
        accumulateRun(mAccs, last, e.idx(runs - 1));
        for (int64_t t = 0; t < T; ++t)
          accs[m * T + t] = mAccs[t];
      }
      for (int64_t t = 0; t < T; ++t)
        for (int64_t r = 0; r < R; ++r) {
          SmallVector<Value, 2> sums;
          for (unsigned m = 0; m < nMats; ++m)
            sums.push_back(
                vector::ExtractOp::create(b, e.loc, accs[m * T + t], laneOf(r)));
          emitMatmulEpilogue(e, spec, o, e.add(n0, r), e.add(t0, t), sums);
        }
    };
    loopRowTiles(e, e.idx(0), o.tokens, broadcast ? 2 : 1,
                 [&](Value t0, int64_t T) { emitTokens(t0, T); });
  });
}

/// Whether prefill's GEMM of this format takes AMX tiles (emitGemmAmx):
/// X86Amx, 8-row interleaved weights whose integer runs are 16 or 32 codes
/// (a run is one tile product's depth: its scale and offset apply to the
/// product's sums).
bool usesAmxTiles(const Emitter &e, const WeightFormat &f) {
  int64_t run = getIntegerRunLength(f);
  return e.integerDot == IntegerDot::X86Amx && f.interleave == 8 &&
         (run == 16 || run == 32);
}

/// The 16 x 16 transpose of 16 vectors of 16 elements: four rounds, each
/// swapping the off-diagonal blocks of the 2 x 2 block matrices of a block
/// size (1, 2, 4, 8) with two-source shuffles (vpermt2d and kin on x86).
SmallVector<Value, 16> emitTranspose16(Emitter &e, ArrayRef<Value> rows) {
  assert(rows.size() == 16 && "16 rows");
  SmallVector<Value, 16> r(rows.begin(), rows.end());
  for (int64_t size = 1; size < 16; size *= 2) {
    SmallVector<int64_t> low, high;
    for (int64_t j = 0; j < 16; ++j) {
      // Row i keeps its left halves and takes row i + size's left halves
      // as its right ones; row i + size the same with the right halves.
      low.push_back((j & size) ? 16 + j - size : j);
      high.push_back((j & size) ? 16 + j : j + size);
    }
    for (int64_t i = 0; i < 16; ++i) {
      if (i & size)
        continue;
      Value a = r[i], c = r[i + size];
      r[i] = vector::ShuffleOp::create(e.b, e.loc, a, c, low);
      r[i + size] = vector::ShuffleOp::create(e.b, e.loc, a, c, high);
    }
  }
  return r;
}

/// Dwords [0, count) from byte `from` of 16 rows of `src` (i8, rows at
/// `rowStarts`) into `dst` (i8) from byte `to`, transposed: dword q of row
/// t at to + (16q + t) x 4. Whole 16 x 16 blocks through emitTranspose16,
/// the rest one dword at a time.
void emitTransposeDwords(Emitter &e, Value src, ArrayRef<Value> rowStarts,
                         int64_t from, int64_t count, Value dst, Value to) {
  OpBuilder &b = e.b;
  VectorType bytes64 = VectorType::get({64}, b.getI8Type());
  VectorType dwords16 = VectorType::get({16}, b.getI32Type());
  e.loop(e.idx(0), e.idx(count / 16), 1, [&](Value c) {
    SmallVector<Value, 16> rows;
    for (Value start : rowStarts)
      rows.push_back(vector::BitCastOp::create(
          b, e.loc, dwords16,
          vector::LoadOp::create(b, e.loc, bytes64, src,
                                 e.add(e.add(start, from), e.mul(c, 64)))));
    SmallVector<Value, 16> columns = emitTranspose16(e, rows);
    for (int64_t q = 0; q < 16; ++q)
      vector::StoreOp::create(
          b, e.loc, vector::BitCastOp::create(b, e.loc, bytes64, columns[q]),
          dst, e.add(to, e.add(e.mul(c, 16 * 64), q * 64)));
  });
  for (int64_t q = count / 16 * 16; q < count; ++q)
    for (size_t t = 0; t < rowStarts.size(); ++t)
      storeScalarBytes(e,
                       loadScalarBytes(e, src,
                                       e.add(rowStarts[t], from + 4 * q),
                                       b.getI32Type()),
                       dst, e.add(to, (16 * q + int64_t(t)) * 4));
}

/// Whether emitWholeTileCodes decodes the format: Q4_0 and Q8_0 blocks of
/// 32 codes after a 2-byte split header.
bool decodesWholeTiles(const WeightFormat &f) {
  return f.kind == WeightFormat::Kind::Quantized && f.splitHeaderBytes() == 2 &&
         getIntegerRunLength(f) == 32 &&
         (f.quant == qnt::QuantFormat::Q4_0 ||
          f.quant == qnt::QuantFormat::Q8_0);
}

/// The unsigned codes of one block of an 8-row interleaved Q4_0 or Q8_0
/// tile at `w[tileBlock]` (decodesWholeTiles), into `codes` from byte `at`
/// as 8 rows x 32 bytes (Q4_0: each row's low nibbles, then its high ones;
/// Q8_0: code + 128), with 64-byte operations rather than a row at a time.
void emitWholeTileCodes(Emitter &e, const WeightFormat &f, Value w,
                        Value tileBlock, Value codes, Value at) {
  OpBuilder &b = e.b;
  constexpr int64_t kRows = 8;
  VectorType bytes64 = VectorType::get({64}, b.getI8Type());
  Value payload = e.add(tileBlock, kRows * f.splitHeaderBytes());
  auto load = [&](int64_t i) {
    return vector::LoadOp::create(b, e.loc, bytes64, w, e.add(payload, 64 * i))
        .getResult();
  };
  if (f.quant == qnt::QuantFormat::Q8_0) {
    for (int64_t i = 0; i < kRows * 32 / 64; ++i)
      vector::StoreOp::create(b, e.loc, emitUnsignedQ8Codes(e, load(i)), codes,
                              e.add(at, 64 * i));
    return;
  }
  for (int64_t i = 0; i < kRows * 16 / 64; ++i) {
    // Rows 4i .. 4i + 3, one 16-byte lane each.
    auto [low, high] = emitSplitNibbles(e, load(i));
    for (int64_t pair = 0; pair < 2; ++pair) {
      SmallVector<int64_t> lanes;
      for (int64_t row = 2 * pair; row < 2 * pair + 2; ++row) {
        for (int64_t j = 0; j < 16; ++j)
          lanes.push_back(16 * row + j);
        for (int64_t j = 0; j < 16; ++j)
          lanes.push_back(64 + 16 * row + j);
      }
      vector::StoreOp::create(
          b, e.loc, vector::ShuffleOp::create(b, e.loc, low, high, lanes),
          codes, e.add(at, (4 * i + 2 * pair) * 32));
    }
  }
}

/// Weight rows per AMX strip and tokens per group: one tile product's
/// 16 x 16 sums.
constexpr int64_t kAmxTile = 16;
/// Bytes of the transposed activations a thread keeps on its stack: the
/// token groups of one pass over the weights (the strips are decoded once
/// per pass), at least one group (22k bytes at the most). With the strip's
/// decoded codes (16k per matrix) and the VNNI GEMM's buffer beside them
/// (8k per matrix), a kernel's frame stays under 0.5 MiB up to k = 4096
/// and about 1.3 MiB at k = 14336: pool threads have the OS's default
/// stack (8 MiB on Linux).
constexpr int64_t kAmxActivationBytes = 128 << 10;

/// Prefill on AMX: strips of 16 weight rows (two 8-row interleaved tiles)
/// are decoded once per pass into their unsigned codes, run by run (a run:
/// 16 rows x 16 or 32 codes, one tile), and groups of 16 tokens' 8-bit
/// activations are transposed once per pass into tdpbusd's VNNI layout
/// (a run: run/4 tile rows of 16 tokens x 4 codes). For each run one tile
/// product gives the 16 x 16 integer dots; the vector code then scales and
/// accumulates them exactly as emitGemmInt8Tiles does per (row, token) (the
/// same integers, the same f32 operations in the same order: the results
/// are bit-identical), a vector over the 16 tokens per row. Rows past the
/// last whole strip go to emitGemmInt8Tiles. Tile values never cross a
/// block (each run's tiles live inside one loop body), which the LLVM
/// lowering of the amx dialect needs.
void emitGemmAmx(Emitter &e, const MatmulSpec &spec, const MatmulOperands &o) {
  OpBuilder &b = e.b;
  const int64_t S = kAmxTile;
  const int64_t R = spec.format.interleave;
  const int64_t k = spec.k;
  const int64_t blockElems = spec.format.blockElements(e.lanes);
  const int64_t blockBytes = spec.format.blockBytes(e.lanes);
  const int64_t blocks = k / blockElems;
  const int64_t rowBytes = weightRowBytes(spec, e.lanes);
  const unsigned nMats = spec.swiglu ? 2 : 1;
  const int64_t run = getIntegerRunLength(spec.format);
  const int64_t runs = k / run;
  const int64_t runsPerBlock = blockElems / run;
  const TiledRunRule rule(e, spec.format);
  assert(rule.bias == 0 && "VNNI's rule: unsigned codes, no dot bias");
  const bool foldBias = rule.offsetIsBiasedScale;
  const bool offsetStored = rule.offsetStored;
  const int64_t qRow = KernelLibrary::getQuantizedRowBytes(k);
  Type i8 = b.getI8Type(), i32 = b.getI32Type();
  VectorType bytes64 = VectorType::get({64}, i8);
  VectorType dwords16 = VectorType::get({16}, i32);
  VectorType floats16 = e.vec(16);
  auto byteBuffer = [&](int64_t bytes) {
    return memref::AllocaOp::create(b, e.loc, MemRefType::get({bytes}, i8),
                                    b.getI64IntegerAttr(64))
        .getResult();
  };
  // A group's transposed activations: codes (k x 16 bytes), then the
  // per-32 scales (k/32 x 16 f32), then the runs' code sums (k/run x 16
  // i32, foldBias) or the per-16 f32 sums (k/16 x 16, offsetStored).
  const int64_t xScalesAt = k * S;
  const int64_t xSumsAt = xScalesAt + k / 32 * S * 4;
  const int64_t groupBytes = xSumsAt + (foldBias       ? k / run
                                        : offsetStored ? k / 16
                                                       : 0) *
                                           S * 4;
  const int64_t groupsPerPass =
      spec.amxPassTokens > 0
          ? (spec.amxPassTokens + S - 1) / S
          : std::max<int64_t>(1, kAmxActivationBytes / groupBytes);
  const int64_t passTokens = groupsPerPass * S;
  Value xT = byteBuffer(groupsPerPass * groupBytes);
  // A strip's decoded runs: slot (m x runs + run) x 16 + row.
  const int64_t slots = nMats * runs * S;
  Value wCodes = byteBuffer(slots * run);
  Value wScales = memref::AllocaOp::create(
      b, e.loc, MemRefType::get({slots}, e.f32()), b.getI64IntegerAttr(64));
  Value wOffsets =
      offsetStored ? memref::AllocaOp::create(b, e.loc,
                                              MemRefType::get({slots}, e.f32()),
                                              b.getI64IntegerAttr(64))
                         .getResult()
                   : Value();
  Value cTile = memref::AllocaOp::create(
      b, e.loc, MemRefType::get({2 * S * S}, i32), b.getI64IntegerAttr(64));
  Value gateSums =
      spec.swiglu ? memref::AllocaOp::create(b, e.loc,
                                             MemRefType::get({S * S}, e.f32()),
                                             b.getI64IntegerAttr(64))
                        .getResult()
                  : Value();
  const bool wholeTileDecode = decodesWholeTiles(spec.format);
  auto aTile = amx::TileType::get({S, run}, i8);
  auto bTile = amx::TileType::get({run / 4, 64}, i8);
  auto cTileType = amx::TileType::get({S, S}, i32);
  Value stripsEnd = e.add(o.nLo, e.mul(e.div(e.sub(o.nHi, o.nLo), S), S));

  // A unit of fewer than 16 rows has no strip: nothing to transpose for.
  e.ifThen(e.cmp(arith::CmpIPredicate::ult, o.nLo, stripsEnd), [&]() {
    e.loop(e.idx(0), o.tokens, passTokens, [&](Value p0) {
      Value passCount = arith::MinUIOp::create(b, e.loc, e.sub(o.tokens, p0),
                                               e.idx(passTokens));
      Value groups = e.ceilDiv(passCount, e.idx(S));
      Value lastToken = e.sub(o.tokens, e.idx(1));
      e.loop(e.idx(0), groups, 1, [&](Value g) {
        // Tokens past the last repeat it: their lanes are computed and never
        // stored.
        SmallVector<Value, 16> rowStarts;
        for (int64_t t = 0; t < S; ++t) {
          Value token = arith::MinUIOp::create(
              b, e.loc, e.add(e.add(p0, e.mul(g, S)), t), lastToken);
          rowStarts.push_back(e.add(o.xOff, e.mul(token, qRow)));
        }
        Value base = e.mul(g, groupBytes);
        emitTransposeDwords(e, o.x, rowStarts, 0, k / 4, xT, base);
        emitTransposeDwords(e, o.x, rowStarts, k, k / 32, xT,
                            e.add(base, xScalesAt));
        if (foldBias)
          emitTransposeDwords(e, o.x, rowStarts,
                              KernelLibrary::getQuantizedCodeSumsOffset(k, run),
                              k / run, xT, e.add(base, xSumsAt));
        else if (offsetStored)
          emitTransposeDwords(e, o.x, rowStarts, k + k / 8, k / 16, xT,
                              e.add(base, xSumsAt));
      });

      e.loop(o.nLo, stripsEnd, S, [&](Value n0) {
        // Decode the strip: rows 8h + r of tile h.
        for (unsigned m = 0; m < nMats; ++m)
          e.loop(e.idx(0), e.idx(blocks), 1, [&](Value blk) {
            for (int64_t h = 0; h < S / R; ++h) {
              Value tileBlock =
                  e.add(e.add(o.wOff[m], e.mul(e.add(n0, h * R), rowBytes)),
                        e.mul(blk, R * blockBytes));
              // The next strip's block into L2 while this one is decoded (past
              // the last strip the addresses lie outside the weights; a
              // prefetch does not fault).
              for (int64_t line = 0; line < R * blockBytes;
                   line += kCacheLineBytes)
                memref::PrefetchOp::create(
                    b, e.loc, o.w,
                    ValueRange{e.add(tileBlock, S * rowBytes + line)},
                    /*isWrite=*/false, /*localityHint=*/2,
                    /*isDataCache=*/true);
              if (wholeTileDecode) {
                Value rowsAt =
                    e.add(e.mul(e.add(blk, int64_t(m) * runs), S), h * R);
                e.vstore(emitTileRunScales(e, spec.format, o.w, tileBlock, R),
                         wScales, rowsAt);
                emitWholeTileCodes(e, spec.format, o.w, tileBlock, wCodes,
                                   e.mul(rowsAt, run));
              }
            }
            if (wholeTileDecode)
              return;
            // The other formats a row at a time through the generic decode,
            // in a loop: once per strip and pass, its cost is amortized over
            // the pass's tokens, and 16 inlined copies of a K-quant's decode
            // (32 with SwiGLU) doubled a model's code generation time.
            e.loop(e.idx(0), e.idx(S), 1, [&](Value row) {
              Value r = e.rem(row, R);
              Value tileBlock = e.add(
                  e.add(o.wOff[m], e.mul(e.add(n0, e.sub(row, r)), rowBytes)),
                  e.mul(blk, R * blockBytes));
              emitBlockDecodeInteger(
                  b, e.loc, spec.format, o.w,
                  runBlockAddress(e, spec.format, tileBlock, r),
                  [&](const IntegerRun &ri) {
                    Value runIdx = e.add(e.mul(blk, runsPerBlock),
                                         int64_t(m) * runs + ri.first / run);
                    Value slot = e.add(e.mul(runIdx, S), row);
                    vector::StoreOp::create(b, e.loc, ri.codes, wCodes,
                                            e.mul(slot, run));
                    e.store(ri.scale, wScales, slot);
                    if (offsetStored)
                      e.store(rule.storedOffset(e, ri), wOffsets, slot);
                  });
            });
          });

        e.loop(e.idx(0), groups, 1, [&](Value g) {
          Value t0 = e.add(p0, e.mul(g, S));
          Value count =
              arith::MinUIOp::create(b, e.loc, e.sub(o.tokens, t0), e.idx(S));
          Value base = e.mul(g, groupBytes);
          SmallVector<Value> sums;
          for (unsigned m = 0; m < nMats; ++m) {
            // Run j's 16 x 16 dots into half j % 2 of cTile.
            auto tileProduct = [&](Value j) {
              Value slot0 = e.mul(e.add(j, int64_t(m) * runs), S);
              Value zero = amx::TileZeroOp::create(b, e.loc, cTileType);
              Value a = amx::TileLoadOp::create(b, e.loc, aTile, wCodes,
                                                ValueRange{e.mul(slot0, run)},
                                                e.idx(run));
              Value x = amx::TileLoadOp::create(
                  b, e.loc, bTile, xT,
                  ValueRange{e.add(base, e.mul(j, run * S))}, e.idx(64));
              Value c = amx::TileMulIOp::create(b, e.loc, cTileType, a, x, zero,
                                                /*isZextLhs=*/true,
                                                /*isZextRhs=*/false);
              amx::TileStoreOp::create(b, e.loc, cTile,
                                       ValueRange{e.mul(e.rem(j, 2), S * S)}, c,
                                       e.idx(S));
            };
            // Software-pipelined: an iteration starts run j + 1's product
            // and scales run j's, so the vector code never waits on the tile
            // unit's load-multiply-store chain nor reads a tile store just
            // issued.
            tileProduct(e.idx(0));
            SmallVector<Value> init(S, e.zeroVec(16));
            sums = e.loop(
                e.idx(0), e.idx(runs), 1, init, [&](Value j, ValueRange args) {
                  SmallVector<Value> acc(args.begin(), args.end());
                  Value next = e.add(j, 1);
                  e.ifThen(e.cmp(arith::CmpIPredicate::ult, next, e.idx(runs)),
                           [&]() { tileProduct(next); });
                  Value slot0 = e.mul(e.add(j, int64_t(m) * runs), S);
                  Value half = e.mul(e.rem(j, 2), S * S);
                  auto groupVector = [&](VectorType type, int64_t at,
                                         Value index) {
                    return vector::BitCastOp::create(
                        b, e.loc, type,
                        vector::LoadOp::create(
                            b, e.loc, bytes64, xT,
                            e.add(e.add(base, at), e.mul(index, S * 4))));
                  };
                  Value dx = groupVector(floats16, xScalesAt,
                                         e.div(e.mul(j, run), 32));
                  Value owed, xsum;
                  if (foldBias)
                    owed = arith::MulIOp::create(
                        b, e.loc, groupVector(dwords16, xSumsAt, j),
                        e.intSplat(dwords16, rule.symBias));
                  if (offsetStored) {
                    if (run == 32)
                      xsum = e.fadd(groupVector(floats16, xSumsAt, e.mul(j, 2)),
                                    groupVector(floats16, xSumsAt,
                                                e.add(e.mul(j, 2), 1)));
                    else
                      xsum = groupVector(floats16, xSumsAt, j);
                  }
                  for (int64_t n = 0; n < S; ++n) {
                    Value dot = vector::LoadOp::create(
                        b, e.loc, dwords16, cTile, e.add(half, n * S));
                    if (owed)
                      dot = arith::SubIOp::create(b, e.loc, dot, owed);
                    Value dotF =
                        arith::SIToFPOp::create(b, e.loc, floats16, dot);
                    Value slot = e.add(slot0, n);
                    acc[n] = e.fma(
                        dotF, e.fmul(e.splat(e.load(wScales, slot), 16), dx),
                        acc[n]);
                    if (offsetStored)
                      acc[n] = e.fma(e.splat(e.load(wOffsets, slot), 16), xsum,
                                     acc[n]);
                  }
                  return acc;
                });
            if (spec.swiglu && m == 0)
              for (int64_t n = 0; n < S; ++n)
                e.vstore(sums[n], gateSums, e.idx(n * S));
          }
          if (spec.swiglu)
            for (int64_t n = 0; n < S; ++n) {
              // silu(gate) x up, as emitMatmulEpilogue (x / (1 + exp(-x))).
              Value gate = e.vload(16, gateSums, e.idx(n * S));
              Value ex = e.exp(arith::NegFOp::create(b, e.loc, gate));
              Value silu = e.fdiv(gate, e.fadd(e.splat(e.cf(1.0), 16), ex));
              sums[n] = e.fmul(silu, sums[n]);
            }
          // Rows x tokens to tokens x rows: each token's 16 outputs are
          // consecutive.
          SmallVector<Value, 16> perToken = emitTranspose16(e, sums);
          for (int64_t t = 0; t < S; ++t)
            e.ifThen(e.cmp(arith::CmpIPredicate::ult, e.idx(t), count), [&]() {
              Value v = perToken[t];
              if (spec.bias)
                v = e.fadd(v, vector::BitCastOp::create(
                                  b, e.loc, floats16,
                                  vector::LoadOp::create(
                                      b, e.loc, bytes64, o.bias,
                                      e.add(o.biasOff, e.mul(n0, 4)))));
              Value token = e.add(t0, t);
              if (spec.accumulate)
                v = e.fadd(
                    v,
                    e.vload(16, o.acc,
                            e.add(e.add(o.accOff, e.mul(token, spec.n)), n0)));
              e.vstore(v, o.y, e.add(e.add(o.yOff, e.mul(token, spec.n)), n0));
            });
        });
      });
    });
  });
  MatmulOperands rest = o;
  rest.nLo = stripsEnd;
  emitGemmInt8Tiles(e, spec, rest);
}

/// Prefill with 8-bit activations: a tile of weight rows is decoded once
/// into its integer form on the stack (codes, and per run a scale and an
/// offset), then every token meets it through integer dot products,
/// `tokenTile` tokens at a time.
void emitGemmInt8(Emitter &e, const MatmulSpec &spec, const MatmulOperands &o,
                  int64_t rowTile, int64_t tokenTile) {
  OpBuilder &b = e.b;
  const int64_t blockElems = spec.format.blockElements(e.lanes);
  const int64_t blocks = spec.k / blockElems;
  const unsigned nMats = spec.swiglu ? 2 : 1;
  const int64_t run = getIntegerRunLength(spec.format);
  const int64_t runs = spec.k / run;
  const unsigned maxCode = getIntegerMaxCode(spec.format);
  const int64_t symBias = symmetricBias(spec.format);
  const int64_t qRow = KernelLibrary::getQuantizedRowBytes(spec.k);
  const unsigned accLanes = unsigned(run / 4);
  const int64_t bufRows = rowTile * nMats;
  VectorType codesType = VectorType::get({run}, b.getI8Type());
  Value codes = memref::AllocaOp::create(
      b, e.loc, MemRefType::get({bufRows * spec.k}, b.getI8Type()),
      b.getI64IntegerAttr(64));
  Value scales = memref::AllocaOp::create(
      b, e.loc, MemRefType::get({bufRows * runs}, e.f32()),
      b.getI64IntegerAttr(64));
  Value offsets = memref::AllocaOp::create(
      b, e.loc, MemRefType::get({bufRows * runs}, e.f32()),
      b.getI64IntegerAttr(64));
  loopRowTiles(e, o.nLo, o.nHi, rowTile, [&](Value n0, int64_t rows) {
    for (int64_t r = 0; r < rows; ++r)
      for (unsigned m = 0; m < nMats; ++m) {
        int64_t bufRow = r * nMats + m;
        e.loop(e.idx(0), e.idx(blocks), 1, [&](Value blk) {
          Value e0 = e.mul(blk, blockElems);
          emitBlockDecodeInteger(
              b, e.loc, spec.format, o.w,
              blockAddress(e, spec, o.wOff[m], e.add(n0, r), blk),
              [&](const IntegerRun &ri) {
                Value el = e.add(e0, ri.first);
                vector::StoreOp::create(b, e.loc, ri.codes, codes,
                                        e.add(el, bufRow * spec.k));
                Value at = e.add(e.div(el, run), bufRow * runs);
                e.store(ri.scale, scales, at);
                e.store(ri.offset ? ri.offset : e.cf(0.0), offsets, at);
              });
        });
      }
    auto tile = [&](Value t0, int64_t count) {
      SmallVector<Value> init;
      for (int64_t i = 0; i < rows * nMats * count; ++i) {
        init.push_back(e.zeroVec(accLanes));
        init.push_back(e.cf(0.0));
      }
      SmallVector<Value> accs = e.loop(
          e.idx(0), e.idx(runs), 1, init, [&](Value ri, ValueRange args) {
            SmallVector<Value> acc(args.begin(), args.end());
            Value el = e.mul(ri, run);
            SmallVector<Value> xq, dx, xsum;
            for (int64_t i = 0; i < count; ++i) {
              Value xRow = e.add(o.xOff, e.mul(e.add(t0, i), qRow));
              xq.push_back(vector::LoadOp::create(b, e.loc, codesType, o.x,
                                                  e.add(xRow, el)));
              Value scalesAt = e.add(xRow, spec.k);
              dx.push_back(loadF32Bytes(
                  e, o.x, e.add(scalesAt, e.mul(e.div(el, 32), 4))));
              xsum.push_back(emitActivationRunSum(
                  e, o.x, e.add(scalesAt, spec.k / 8), el, run, xq.back(),
                  dx.back()));
            }
            for (int64_t bufRow = 0; bufRow < rows * nMats; ++bufRow) {
              Value w = vector::LoadOp::create(
                  b, e.loc, codesType, codes, e.add(el, bufRow * spec.k));
              Value at = e.add(ri, bufRow * runs);
              Value sc = e.load(scales, at);
              Value off = e.load(offsets, at);
              for (int64_t i = 0; i < count; ++i) {
                int64_t bias = 0;
                Value dot = emitIntegerDot(e, w, xq[i], maxCode, symBias, bias);
                Value dotF =
                    arith::SIToFPOp::create(b, e.loc, e.vec(accLanes), dot);
                unsigned a = 2 * (bufRow * count + i);
                acc[a] = e.fma(dotF, e.splat(e.fmul(sc, dx[i]), accLanes),
                               acc[a]);
                if (bias != 0 && bias == symBias)
                  continue;
                Value offset =
                    bias ? e.fadd(off, e.fmul(sc, e.cf(double(bias)))) : off;
                acc[a + 1] = e.fadd(acc[a + 1], e.fmul(offset, xsum[i]));
              }
            }
            return acc;
          });
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < count; ++i) {
          SmallVector<Value, 2> totals;
          for (unsigned m = 0; m < nMats; ++m) {
            unsigned a = 2 * ((r * nMats + m) * count + i);
            totals.push_back(e.fadd(e.reduceAdd(accs[a]), accs[a + 1]));
          }
          emitMatmulEpilogue(e, spec, o, e.add(n0, r), e.add(t0, i), totals);
        }
    };
    Value full = e.mul(e.div(o.tokens, tokenTile), tokenTile);
    e.loop(e.idx(0), full, tokenTile, [&](Value t0) { tile(t0, tokenTile); });
    e.loop(full, o.tokens, 1, [&](Value t) { tile(t, 1); });
  });
}

/// Few tokens: GEMV, decoding in registers; more: GEMM through a decoded
/// buffer. Both are generated; the token count picks at run time.
void emitMatmulCore(Emitter &e, const MatmulSpec &spec,
                    const MatmulOperands &o) {
  const int64_t gemvMaxTokens = 2;
  if (spec.int8Activations) {
    Value small = e.cmp(arith::CmpIPredicate::ule, o.tokens,
                        e.idx(gemvMaxTokens));
    auto ifOp = scf::IfOp::create(e.b, e.loc, small, /*withElseRegion=*/true);
    OpBuilder::InsertionGuard guard(e.b);
    e.b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    if (spec.format.interleave > 1)
      emitGemvInt8Tiles(e, spec, o);
    else
      emitGemvInt8(e, spec, o, /*rowTile=*/spec.swiglu ? 2 : 4);
    e.b.setInsertionPointToStart(&ifOp.getElseRegion().front());
    // Accumulators: rows x matrices x tokens = 8 vectors (and 8 scalars
    // where the format has offsets); 4 tokens measured faster than 2 or 6.
    if (usesAmxTiles(e, spec.format))
      emitGemmAmx(e, spec, o);
    else if (spec.format.interleave > 1)
      emitGemmInt8Tiles(e, spec, o);
    else
      emitGemmInt8(e, spec, o, /*rowTile=*/spec.swiglu ? 1 : 2,
                   /*tokenTile=*/4);
    return;
  }
  Value small = e.cmp(arith::CmpIPredicate::ule, o.tokens,
                      e.idx(gemvMaxTokens));
  auto ifOp = scf::IfOp::create(e.b, e.loc, small, /*withElseRegion=*/true);
  {
    OpBuilder::InsertionGuard guard(e.b);
    e.b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    emitGemv(e, spec, o, /*rowTile=*/spec.swiglu ? 2 : 4);
    e.b.setInsertionPointToStart(&ifOp.getElseRegion().front());
    // Accumulators: rowTile x matrices x tokenTile <= 12 of 16 registers.
    emitGemm(e, spec, o, /*rowTile=*/spec.swiglu ? 2 : 4, /*tokenTile=*/3);
  }
}

} // namespace

func::FuncOp KernelLibrary::matmul(const MatmulSpec &spec) {
  MLIRContext *ctx = module.getContext();
  Type index = IndexType::get(ctx);
  SmallVector<Type> args = {bytesType(ctx), index};
  if (spec.swiglu)
    args.push_back(index);
  args.append({spec.int8Activations ? Type(bytesType(ctx)) : f32Type(ctx),
               index, f32Type(ctx), index});
  if (spec.accumulate)
    args.append({f32Type(ctx), index});
  if (spec.bias)
    args.append({bytesType(ctx), index});
  args.append({index, index, index, i32Type(ctx), index});
  std::string name = llvm::formatv(
      "moec_matmul_{0}_{1}x{2}{3}{4}{5}{6}", spec.format.name(), spec.n,
      spec.k, spec.swiglu ? "_swiglu" : "", spec.accumulate ? "_acc" : "",
      spec.bias ? "_bias" : "", spec.int8Activations ? "_i8act" : "");
  if (spec.claimRows > 0)
    name += "_claim" + std::to_string(claimRows(spec, lanes));
  if (spec.amxPassTokens > 0)
    name += "_pass" + std::to_string(spec.amxPassTokens);
  return getOrCreate(name, args, [&](OpBuilder &b, ValueRange a) {
    Emitter e{b, module.getLoc(), lanes, integerDot};
    MatmulOperands o;
    unsigned i = 0;
    o.w = a[i++];
    o.wOff.push_back(a[i++]);
    if (spec.swiglu)
      o.wOff.push_back(a[i++]);
    o.x = a[i++];
    o.xOff = a[i++];
    o.y = a[i++];
    o.yOff = a[i++];
    if (spec.accumulate) {
      o.acc = a[i++];
      o.accOff = a[i++];
    }
    if (spec.bias) {
      o.bias = a[i++];
      o.biasOff = a[i++];
    }
    o.tokens = a[i++];
    Value thread = a[i++], threads = a[i++];
    Value counters = a[i++], counterAt = a[i++];
    Value chunk = emitUnitRows(e, spec, e.idx(spec.n), threads);
    Value units = e.ceilDiv(e.idx(spec.n), chunk);
    emitClaimedUnits(
        e, thread, threads, counters, counterAt, units,
        [&](Value unit, Value part, Value parts, ClaimAhead ahead) {
          std::tie(o.nLo, o.nHi) =
              emitClaimRows(e, spec, unit, chunk, part, parts);
          o.claimNext = [&]() {
            auto [valid, u, p, ps] = ahead();
            NextClaim next{valid, o.wOff, {}, {}};
            std::tie(next.nLo, next.nHi) =
                emitClaimRows(e, spec, u, chunk, p, ps);
            return next;
          };
          emitMatmulCore(e, spec, o);
        });
  });
}

func::FuncOp KernelLibrary::expertMatmul(const MatmulSpec &spec,
                                         int64_t experts, int64_t partOffset,
                                         int64_t partOffset2,
                                         ArrayRef<int64_t> members) {
  MLIRContext *ctx = module.getContext();
  Type index = IndexType::get(ctx);
  Type xType = spec.int8Activations ? Type(bytesType(ctx)) : f32Type(ctx);
  SmallVector<Type> args = {bytesType(ctx), i64Type(ctx), index,
                            i32Type(ctx),   index,        xType,
                            index,          f32Type(ctx), index,
                            index,          index,        i32Type(ctx),
                            index};
  std::string name = llvm::formatv(
      "moec_expert_matmul_{0}_{1}x{2}{3}{4}_e{5}_at{6}_{7}",
      spec.format.name(), spec.n, spec.k, spec.swiglu ? "_swiglu" : "",
      spec.int8Activations ? "_i8act" : "", experts, partOffset, partOffset2);
  // A group's members: a constant table the kernel walks, named by content.
  std::string table;
  if (!members.empty()) {
    std::string key;
    for (int64_t m : members)
      key += std::to_string(m) + ",";
    table = llvm::formatv("moec_expert_group_{0}_{1:x}", members.size(),
                          llvm::xxh3_64bits(key));
    name += "_" + table.substr(std::string("moec_expert_").size());
    if (!module.lookupSymbol(table)) {
      OpBuilder gb(module.getContext());
      gb.setInsertionPointToStart(module.getBody());
      auto type = MemRefType::get({int64_t(members.size())}, gb.getI32Type());
      SmallVector<int32_t> ids(members.begin(), members.end());
      memref::GlobalOp::create(
          gb, module.getLoc(), table, gb.getStringAttr("private"), type,
          DenseElementsAttr::get(
              RankedTensorType::get(type.getShape(), gb.getI32Type()),
              ArrayRef<int32_t>(ids)),
          /*constant=*/true, /*alignment=*/nullptr);
    }
  }
  return getOrCreate(name, args, [&](OpBuilder &b, ValueRange a) {
    Emitter e{b, module.getLoc(), lanes, integerDot};
    Value arena = a[0], extents = a[1], extentsOff = a[2], offsets = a[3],
          offsetsOff = a[4];
    Value thread = a[9], threads = a[10], counters = a[11], counterAt = a[12];
    Value memberIds;
    if (!table.empty())
      memberIds = memref::GetGlobalOp::create(
          b, e.loc,
          MemRefType::get({int64_t(members.size())}, b.getI32Type()), table);
    int64_t count = members.empty() ? experts : int64_t(members.size());
    auto expertOf = [&](Value i) {
      return memberIds ? e.toIndex(memref::LoadOp::create(
                             b, e.loc, memberIds, ValueRange{i}))
                       : i;
    };
    // The experts with rows whose extent is in this pass (-1: not this
    // pass's: its read was in flight, or it is done), listed by every
    // thread alike; the units are their chunks of rows, expert by expert.
    Value active = memref::AllocaOp::create(
        b, e.loc, MemRefType::get({count}, b.getIndexType()));
    Value activeCount =
        e.loop(e.idx(0), e.idx(count), 1, {e.idx(0)},
               [&](Value i, ValueRange acc) {
                 Value x = expertOf(i);
                 Value r0 = e.toIndex(e.load(offsets, e.add(offsetsOff, x)));
                 Value r1 = e.toIndex(
                     e.load(offsets, e.add(e.add(offsetsOff, x), 1)));
                 Value extent = e.load(extents, e.add(extentsOff, x));
                 Value present = arith::CmpIOp::create(
                     e.b, e.loc, arith::CmpIPredicate::sge, extent,
                     arith::ConstantIntOp::create(e.b, e.loc, 0, 64));
                 Value rowsThere = e.cmp(arith::CmpIPredicate::ult, r0, r1);
                 Value take = arith::AndIOp::create(e.b, e.loc, rowsThere,
                                                    present);
                 // Written at the next free place; kept when taken.
                 memref::StoreOp::create(b, e.loc, x, active, acc[0]);
                 Value next = e.add(acc[0], e.select(take, e.idx(1),
                                                     e.idx(0)));
                 return SmallVector<Value>{next};
               })[0];
    Value chunk =
        emitUnitRows(e, spec, e.mul(activeCount, spec.n), threads);
    Value chunksPerExpert = e.ceilDiv(e.idx(spec.n), chunk);
    Value units = e.mul(activeCount, chunksPerExpert);
    // A unit's expert (as an index of `active`'s list) and its weights.
    auto expertOfUnit = [&](Value unit) {
      return memref::LoadOp::create(b, e.loc, active,
                                    ValueRange{e.div(unit, chunksPerExpert)})
          .getResult();
    };
    auto weightsOf = [&](Value x) {
      Value extent = e.load(extents, e.add(extentsOff, x));
      Value base =
          arith::IndexCastOp::create(e.b, e.loc, e.b.getIndexType(), extent);
      SmallVector<Value, 2> wOff = {e.add(base, partOffset)};
      if (spec.swiglu)
        wOff.push_back(e.add(base, partOffset2));
      return wOff;
    };
    emitClaimedUnits(
        e, thread, threads, counters, counterAt, units,
        [&](Value unit, Value part, Value parts, ClaimAhead ahead) {
          Value x = expertOfUnit(unit);
          Value piece = e.rem(unit, chunksPerExpert);
          Value r0 = e.toIndex(e.load(offsets, e.add(offsetsOff, x)));
          Value r1 = e.toIndex(e.load(offsets, e.add(e.add(offsetsOff, x), 1)));
          MatmulOperands o;
          o.w = arena;
          o.wOff = weightsOf(x);
          o.claimNext = [&]() {
            auto [valid, u, p, ps] = ahead();
            NextClaim next{valid, weightsOf(expertOfUnit(u)), {}, {}};
            std::tie(next.nLo, next.nHi) =
                emitClaimRows(e, spec, e.rem(u, chunksPerExpert), chunk, p, ps);
            return next;
          };
          o.x = a[5];
          o.xOff = e.add(a[6], e.mul(r0, spec.int8Activations
                                             ? getQuantizedRowBytes(spec.k)
                                             : spec.k));
          o.y = a[7];
          o.yOff = e.add(a[8], e.mul(r0, spec.n));
          o.tokens = e.sub(r1, r0);
          std::tie(o.nLo, o.nHi) =
              emitClaimRows(e, spec, piece, chunk, part, parts);
          emitMatmulCore(e, spec, o);
        });
  });
}

namespace {

/// Quantizes one block of 32 activations (four vector<8xf32>) into the
/// row at byte `out` of `q` (see KernelLibrary::quantizeActivations): codes,
/// the block's scale, the sums of its two halves.
void emitQuantizeBlock(Emitter &e, ArrayRef<Value> v, Value q, Value out,
                       Value blk, int64_t k) {
  OpBuilder &b = e.b;
  const unsigned w = 8;
  VectorType i32v = VectorType::get({w}, b.getI32Type());
  VectorType i8v = VectorType::get({w}, b.getI8Type());
  Value amax = e.zeroVec(w);
  for (Value x : v)
    amax = e.fmax(amax, math::AbsFOp::create(b, e.loc, x));
  Value m = vector::ReductionOp::create(b, e.loc,
                                        vector::CombiningKind::MAXIMUMF, amax);
  Value d = e.fdiv(m, e.cf(127.0));
  Value positive = arith::CmpFOp::create(b, e.loc, arith::CmpFPredicate::OGT,
                                         m, e.cf(0.0));
  Value id = e.select(positive, e.fdiv(e.cf(127.0), m), e.cf(0.0));
  Value idV = e.splat(id, w);
  Value codesAt = e.add(out, e.mul(blk, 32));
  SmallVector<Value, 2> halfSums;
  for (int i = 0; i < 4; ++i) {
    Value r = math::RoundEvenOp::create(b, e.loc, e.fmul(v[i], idV));
    Value c32 = arith::FPToSIOp::create(b, e.loc, i32v, r);
    Value c8 = arith::TruncIOp::create(b, e.loc, i8v, c32);
    e.vstore(c8, q, e.add(codesAt, i * w));
    Value sum = vector::ReductionOp::create(b, e.loc,
                                            vector::CombiningKind::ADD, c32);
    if (i % 2 == 0)
      halfSums.push_back(sum);
    else
      halfSums.back() = arith::AddIOp::create(b, e.loc, halfSums.back(), sum);
  }
  storeScalarBytes(e, d, q, e.add(e.add(out, k), e.mul(blk, 4)));
  for (int h = 0; h < 2; ++h) {
    Value sumF = arith::SIToFPOp::create(b, e.loc, e.f32(), halfSums[h]);
    storeScalarBytes(e, e.fmul(d, sumF), q,
                     e.add(e.add(out, k + k / 8 + 4 * h), e.mul(blk, 8)));
  }
  // The integer sums, for kernels that take a symmetric format's bias off
  // the integer dot before it becomes f32 (emitGemmInt8Tiles).
  const int64_t sums16 = KernelLibrary::getQuantizedCodeSumsOffset(k, 16);
  const int64_t sums32 = KernelLibrary::getQuantizedCodeSumsOffset(k, 32);
  for (int h = 0; h < 2; ++h)
    storeScalarBytes(e, halfSums[h], q,
                     e.add(e.add(out, sums16 + 4 * h), e.mul(blk, 8)));
  storeScalarBytes(e, arith::AddIOp::create(b, e.loc, halfSums[0], halfSums[1]),
                   q, e.add(e.add(out, sums32), e.mul(blk, 4)));
}

/// 1 / sqrt(mean(x^2) + eps) of the `dim` activations at x[at].
Value emitInverseRms(Emitter &e, Value x, Value at, int64_t dim,
                     double epsilon) {
  unsigned w = chunkWidth(e.lanes, dim);
  Value sum = e.loop(e.idx(0), e.idx(dim), w, {e.zeroVec(w)},
                     [&](Value i, ValueRange acc) {
                       Value v = e.vload(w, x, e.add(at, i));
                       return SmallVector<Value>{e.fma(v, v, acc[0])};
                     })[0];
  Value mean = e.fdiv(e.reduceAdd(sum), e.cf(double(dim)));
  return e.fdiv(e.cf(1.0), math::SqrtOp::create(e.b, e.loc,
                                                 e.fadd(mean, e.cf(epsilon))));
}

} // namespace

func::FuncOp KernelLibrary::quantizeActivations(int64_t k) {
  MLIRContext *ctx = module.getContext();
  Type index = IndexType::get(ctx);
  assert(k % 32 == 0 && "activations are quantized in blocks of 32");
  SmallVector<Type> args = {f32Type(ctx), index, bytesType(ctx), index,
                            index,        index, index};
  std::string name = llvm::formatv("moec_quantize_activations_{0}", k);
  return getOrCreate(name, args, [&](OpBuilder &b, ValueRange a) {
    Emitter e{b, module.getLoc(), lanes, integerDot};
    Value x = a[0], xOff = a[1], q = a[2], qOff = a[3];
    // The threads split the (row, block) pairs, not the rows: a decode
    // step's one row is then quantized by every thread, not by one while
    // the others wait at the next barrier (blocks are independent).
    const int64_t blocks = k / 32;
    Value lo, hi;
    std::tie(lo, hi) = e.split(e.mul(a[4], blocks), a[5], a[6]);
    e.loop(lo, hi, 1, [&](Value item) {
      Value t = e.div(item, blocks), blk = e.rem(item, blocks);
      Value in = e.add(xOff, e.mul(t, k));
      Value out = e.add(qOff, e.mul(t, getQuantizedRowBytes(k)));
      Value first = e.add(in, e.mul(blk, 32));
      SmallVector<Value, 4> v;
      for (int i = 0; i < 4; ++i)
        v.push_back(e.vload(8, x, e.add(first, i * 8)));
      emitQuantizeBlock(e, v, q, out, blk, k);
    });
  });
}

func::FuncOp KernelLibrary::rmsNormQuantize(const RmsNormSpec &spec) {
  MLIRContext *ctx = module.getContext();
  Type index = IndexType::get(ctx);
  assert(spec.dim % 32 == 0 && "activations are quantized in blocks of 32");
  SmallVector<Type> args = {f32Type(ctx),   index, bytesType(ctx), index,
                            bytesType(ctx), index, index,          index,
                            index};
  std::string name =
      llvm::formatv("moec_rms_norm_quantize_{0}_{1}_eps{2}", spec.dim,
                    spec.weightFormat.name(), nameOf(spec.epsilon));
  return getOrCreate(name, args, [&](OpBuilder &b, ValueRange a) {
    Emitter e{b, module.getLoc(), lanes, integerDot};
    Value x = a[0], xOff = a[1], q = a[2], qOff = a[3], wt = a[4],
          wOff = a[5];
    Value lo, hi;
    std::tie(lo, hi) = e.split(a[6], a[7], a[8]);
    int64_t wBytes = storedElementBytes(spec.weightFormat);
    e.loop(lo, hi, 1, [&](Value r) {
      Value xr = e.add(xOff, e.mul(r, spec.dim));
      Value out = e.add(qOff, e.mul(r, getQuantizedRowBytes(spec.dim)));
      Value inv = e.splat(emitInverseRms(e, x, xr, spec.dim, spec.epsilon), 8);
      e.loop(e.idx(0), e.idx(spec.dim / 32), 1, [&](Value blk) {
        Value first = e.mul(blk, 32);
        SmallVector<Value, 4> v;
        for (int i = 0; i < 4; ++i) {
          Value at = e.add(first, i * 8);
          Value xv = e.fmul(e.vload(8, x, e.add(xr, at)), inv);
          emitBlockDecode(b, e.loc, spec.weightFormat, wt,
                          e.add(wOff, e.mul(at, wBytes)), 8,
                          [&](int64_t, Value wv) {
                            v.push_back(e.fmul(xv, wv));
                          });
        }
        emitQuantizeBlock(e, v, q, out, blk, spec.dim);
      });
    });
  });
}

func::FuncOp KernelLibrary::rmsNorm(const RmsNormSpec &spec) {
  MLIRContext *ctx = module.getContext();
  Type index = IndexType::get(ctx);
  unsigned w = chunkWidth(lanes, spec.dim);
  assert(w && "rms_norm width checked by the caller");
  SmallVector<Type> args = {f32Type(ctx),   index, f32Type(ctx), index,
                            bytesType(ctx), index, index,        index,
                            index};
  std::string name =
      llvm::formatv("moec_rms_norm_{0}_{1}_eps{2}", spec.dim,
                    spec.weightFormat.name(), nameOf(spec.epsilon));
  return getOrCreate(name, args, [&](OpBuilder &b, ValueRange a) {
    Emitter e{b, module.getLoc(), lanes, integerDot};
    Value x = a[0], xOff = a[1], y = a[2], yOff = a[3], wt = a[4],
          wOff = a[5], rows = a[6];
    Value lo, hi;
    std::tie(lo, hi) = e.split(rows, a[7], a[8]);
    int64_t wBytes = storedElementBytes(spec.weightFormat);
    e.loop(lo, hi, 1, [&](Value r) {
      Value xr = e.add(xOff, e.mul(r, spec.dim));
      Value yr = e.add(yOff, e.mul(r, spec.dim));
      Value invV =
          e.splat(emitInverseRms(e, x, xr, spec.dim, spec.epsilon), w);
      e.loop(e.idx(0), e.idx(spec.dim), w, [&](Value i) {
        Value v = e.fmul(e.vload(w, x, e.add(xr, i)), invV);
        emitBlockDecode(b, e.loc, spec.weightFormat, wt,
                        e.add(wOff, e.mul(i, wBytes)), w,
                        [&](int64_t, Value wv) {
                          e.vstore(e.fmul(v, wv), y, e.add(yr, i));
                        });
      });
    });
  });
}

func::FuncOp KernelLibrary::embed(const WeightFormat &format, int64_t dim) {
  MLIRContext *ctx = module.getContext();
  Type index = IndexType::get(ctx);
  SmallVector<Type> args = {bytesType(ctx), index, i32Type(ctx), f32Type(ctx),
                            index,          index, index,        index};
  std::string name = llvm::formatv("moec_embed_{0}_{1}", format.name(), dim);
  return getOrCreate(name, args, [&](OpBuilder &b, ValueRange a) {
    Emitter e{b, module.getLoc(), lanes, integerDot};
    const int64_t blockElems = format.blockElements(lanes);
    const int64_t blockBytes = format.blockBytes(lanes);
    const int64_t blocks = dim / blockElems;
    Value table = a[0], tableOff = a[1], tokens = a[2], y = a[3], yOff = a[4];
    Value lo, hi;
    std::tie(lo, hi) = e.split(a[5], a[6], a[7]);
    e.loop(lo, hi, 1, [&](Value t) {
      Value id = e.toIndex(e.load(tokens, t));
      Value row = e.add(tableOff, e.mul(id, blocks * blockBytes));
      Value yr = e.add(yOff, e.mul(t, dim));
      e.loop(e.idx(0), e.idx(blocks), 1, [&](Value blk) {
        Value out = e.add(yr, e.mul(blk, blockElems));
        emitBlockDecode(b, e.loc, format, table,
                        e.add(row, e.mul(blk, blockBytes)), lanes,
                        [&](int64_t first, Value v) {
                          e.vstore(v, y, e.add(out, first));
                        });
      });
    });
  });
}

func::FuncOp KernelLibrary::ropeAngles(int64_t headDim, double theta) {
  MLIRContext *ctx = module.getContext();
  Type index = IndexType::get(ctx);
  SmallVector<Type> args = {f32Type(ctx), index, i32Type(ctx), index,
                            index,        index, index};
  std::string name = llvm::formatv("moec_rope_angles_{0}_theta{1}", headDim,
                                   nameOf(theta));
  // The rotation frequencies theta^(-2i/d), computed here in f64 exactly as
  // the reference does, as a constant table.
  int64_t half = headDim / 2;
  std::string table = name + "_frequencies";
  {
    OpBuilder gb(ctx);
    gb.setInsertionPointToStart(module.getBody());
    if (!module.lookupSymbol(table)) {
      SmallVector<double> freqs;
      for (int64_t i = 0; i < half; ++i)
        freqs.push_back(
            std::pow(theta, -2.0 * double(i) / double(headDim)));
      auto type = MemRefType::get({half}, gb.getF64Type());
      auto init = DenseElementsAttr::get(
          RankedTensorType::get({half}, gb.getF64Type()), ArrayRef(freqs));
      memref::GlobalOp::create(gb, module.getLoc(), table,
                               gb.getStringAttr("private"), type, init,
                               /*constant=*/true, /*alignment=*/nullptr);
    }
  }
  return getOrCreate(name, args, [&](OpBuilder &b, ValueRange a) {
    Emitter e{b, module.getLoc(), lanes, integerDot};
    Value angles = a[0], anglesOff = a[1], pos = a[2], posOff = a[3];
    Value freqs = memref::GetGlobalOp::create(
        b, e.loc, MemRefType::get({half}, b.getF64Type()), table);
    // The threads split the (row, frequency) pairs: a decode step's one row
    // is shared too.
    Value lo, hi;
    std::tie(lo, hi) = e.split(e.mul(a[4], half), a[5], a[6]);
    // Row t: the cosines at t x headDim + i, the sines at + half + i, f64
    // as the reference computes them, rounded to f32.
    e.loop(lo, hi, 1, [&](Value j) {
      Value t = e.div(j, half), i = e.rem(j, half);
      Value p = arith::SIToFPOp::create(b, e.loc, e.f64(),
                                        e.load(pos, e.add(posOff, t)));
      Value cosAt = e.add(e.add(anglesOff, e.mul(t, headDim)), i);
      Value angle = e.fmul(p, e.load(freqs, i));
      e.store(arith::TruncFOp::create(b, e.loc, e.f32(),
                                      math::CosOp::create(b, e.loc, angle)),
              angles, cosAt);
      e.store(arith::TruncFOp::create(b, e.loc, e.f32(),
                                      math::SinOp::create(b, e.loc, angle)),
              angles, e.add(cosAt, half));
    });
  });
}

func::FuncOp KernelLibrary::rope(const RopeSpec &spec) {
  MLIRContext *ctx = module.getContext();
  Type index = IndexType::get(ctx);
  SmallVector<Type> args = {f32Type(ctx), index, f32Type(ctx), index,
                            f32Type(ctx), index, index,        index,
                            index};
  std::string name =
      llvm::formatv("moec_rope_{0}_{1}x{2}", spec.neox ? "neox" : "interleaved",
                    spec.heads, spec.headDim);
  int64_t half = spec.headDim / 2;
  return getOrCreate(name, args, [&](OpBuilder &b, ValueRange a) {
    Emitter e{b, module.getLoc(), lanes, integerDot};
    Value x = a[0], xOff = a[1], y = a[2], yOff = a[3], angles = a[4],
          anglesOff = a[5];
    int64_t rowElems = spec.heads * spec.headDim;
    // The threads split the (token, head) pairs: a decode step's heads are
    // rotated by every thread. Each token's cos and sin come from the
    // forward call's angle table (ropeAngles: computed once for every
    // layer; computing them in each rope call took ~0.3% of a decode
    // step on the benchmark model, 64 f64 sincos per call and thread).
    Value lo, hi;
    std::tie(lo, hi) = e.split(e.mul(a[6], spec.heads), a[7], a[8]);
    Value firstToken = e.div(lo, spec.heads);
    Value endToken = e.ceilDiv(hi, e.idx(spec.heads));
    // Neox pairs (i, half + i) are contiguous runs: vectors of w pairs.
    const unsigned w = spec.neox ? chunkWidth(e.lanes, half) : 0;
    e.loop(firstToken, endToken, 1, [&](Value t) {
      Value cosAt = e.add(anglesOff, e.mul(t, spec.headDim));
      Value sinAt = e.add(cosAt, half);
      Value tHeads = e.mul(t, spec.heads);
      Value hLo = e.sub(arith::MaxUIOp::create(b, e.loc, lo, tHeads), tHeads);
      Value hHi = e.sub(
          arith::MinUIOp::create(b, e.loc, hi, e.add(tHeads, spec.heads)),
          tHeads);
      e.loop(hLo, hHi, 1, [&](Value h) {
        Value base = e.add(e.mul(t, rowElems), e.mul(h, spec.headDim));
        Value xBase = e.add(xOff, base), yBase = e.add(yOff, base);
        if (w) {
          e.loop(e.idx(0), e.idx(half), w, [&](Value i) {
            Value c = e.vload(w, angles, e.add(cosAt, i));
            Value s = e.vload(w, angles, e.add(sinAt, i));
            Value va = e.vload(w, x, e.add(xBase, i));
            Value vb = e.vload(w, x, e.add(e.add(xBase, i), half));
            e.vstore(e.fsub(e.fmul(va, c), e.fmul(vb, s)), y,
                     e.add(yBase, i));
            e.vstore(e.fadd(e.fmul(vb, c), e.fmul(va, s)), y,
                     e.add(e.add(yBase, i), half));
          });
          return;
        }
        e.loop(e.idx(0), e.idx(half), 1, [&](Value i) {
          Value c = e.load(angles, e.add(cosAt, i));
          Value s = e.load(angles, e.add(sinAt, i));
          Value i0 = spec.neox ? i : e.mul(i, 2);
          Value i1 = spec.neox ? e.add(i, half) : e.add(e.mul(i, 2), 1);
          Value va = e.load(x, e.add(xBase, i0));
          Value vb = e.load(x, e.add(xBase, i1));
          e.store(e.fsub(e.fmul(va, c), e.fmul(vb, s)), y, e.add(yBase, i0));
          e.store(e.fadd(e.fmul(vb, c), e.fmul(va, s)), y, e.add(yBase, i1));
        });
      });
    });
  });
}

func::FuncOp KernelLibrary::kvStore(const AttentionSpec &spec) {
  MLIRContext *ctx = module.getContext();
  Type index = IndexType::get(ctx);
  const int64_t hd = spec.headDim, rowElements = spec.kvHeads * hd;
  unsigned w = chunkWidth(lanes, hd);
  SmallVector<Type> args = {f32Type(ctx),
                            index,
                            f32Type(ctx),
                            index,
                            kvCacheType(ctx, spec),
                            index,
                            index,
                            i32Type(ctx),
                            index,
                            index,
                            index};
  std::string name =
      llvm::formatv("moec_kv_store_{0}x{1}_ctx{2}{3}", spec.kvHeads, hd,
                    spec.contextRows, spec.f16Cache ? "_f16" : "");
  return getOrCreate(name, args, [&](OpBuilder &b, ValueRange a) {
    Emitter e{b, module.getLoc(), lanes, integerDot};
    Value k = a[0], kOff = a[1], v = a[2], vOff = a[3], cache = a[4],
          kc = a[5], vc = a[6], pos = a[7];
    Value lo, hi;
    std::tie(lo, hi) = e.split(a[8], a[9], a[10]);
    e.loop(lo, hi, 1, [&](Value t) {
      Value row = e.mul(e.toIndex(e.load(pos, t)), hd);
      Value src = e.mul(t, rowElements);
      for (int64_t h = 0; h < spec.kvHeads; ++h) {
        // Head h's rows start at h x contextRows x headDim.
        Value dst = e.add(row, h * spec.contextRows * hd);
        Value from = e.add(src, h * hd);
        e.loop(e.idx(0), e.idx(hd), w, [&](Value i) {
          storeCacheVector(e, spec, e.vload(w, k, e.add(e.add(kOff, from), i)),
                           cache, e.add(e.add(kc, dst), i));
          storeCacheVector(e, spec, e.vload(w, v, e.add(e.add(vOff, from), i)),
                           cache, e.add(e.add(vc, dst), i));
        });
      }
    });
  });
}

/// Cache rows per softmax block of the attention kernel: its scores for up
/// to 8 heads (2 KiB) stay in L1, and the block's scalar chain (maximum,
/// rescale) is paid once per this many rows.
constexpr int64_t kAttentionBlockRows = 64;

/// Output vectors the attention kernel's V pass keeps in registers (heads
/// of the item x vectors of a head's row), with the V row's vectors and a
/// broadcast weight beside them: 16 of AVX-512's (and NEON's) 32 vector
/// registers, 8 of AVX2's 16.
int64_t attentionAccumulators(unsigned lanes) { return lanes == 8 ? 8 : 16; }

/// Heads per tile of the attention kernel's scores (a tile is H heads x
/// w / H rows, w accumulators): the largest divisor of the item's heads
/// `hb` up to 4 that divides w. Four heads read each K vector a quarter as
/// often as one, and keep four q vectors and w / 4 K vectors beside the
/// accumulators.
int64_t scoreTileHeads(int64_t hb, unsigned w) {
  int64_t heads = 1;
  for (int64_t d = 1; d <= std::min<int64_t>(hb, 4); ++d)
    if (hb % d == 0 && int64_t(w) % d == 0)
      heads = d;
  return heads;
}

func::FuncOp KernelLibrary::attention(const AttentionSpec &spec) {
  MLIRContext *ctx = module.getContext();
  Type index = IndexType::get(ctx);
  unsigned w = chunkWidth(lanes, spec.headDim);
  SmallVector<Type> args = {f32Type(ctx), index, kvCacheType(ctx, spec),
                            index,        index, f32Type(ctx),
                            index,        i32Type(ctx), index,
                            index,        index, index};
  std::string name = llvm::formatv(
      "moec_attention_{0}h{1}kv{2}_ctx{3}{4}_scale{5}", spec.heads,
      spec.kvHeads, spec.headDim, spec.contextRows,
      spec.f16Cache ? "_f16" : "", nameOf(spec.scale));
  return getOrCreate(name, args, [&](OpBuilder &b, ValueRange a) {
    Emitter e{b, module.getLoc(), lanes, integerDot};
    Value q = a[0], qOff = a[1], cache = a[2], kc = a[3], vc = a[4], y = a[5],
          yOff = a[6], pos = a[7], posOff = a[8];
    const int64_t hd = spec.headDim, group = spec.heads / spec.kvHeads;
    // An item is a token and `hb` query heads of one KV group: each block's
    // K and V rows (of one KV head) are read from the cache once and stay in
    // L1 while the item's heads use them. hb: the largest divisor of the
    // group up to 8, a whole group where it can, so that a KV head's rows
    // come from memory once per token (at 1000 positions, 4 heads per item
    // instead of 8 made decode 6% slower on the benchmark model). A decode
    // step then has as many items as KV heads: more threads than that wait.
    int64_t hb = 1;
    for (int64_t d = 1; d <= std::min<int64_t>(group, 8); ++d)
      if (group % d == 0)
        hb = d;
    const int64_t chunks = spec.heads / hb;
    // Softmax by blocks of cache rows: a block's scores for every head of
    // the item first, then per head one maximum, one vector pass of
    // exponentials and one pass over the block's V rows. The running
    // maximum, the rescale of the output and their scalar chain come once
    // per block instead of once per w rows, where they were a serial chain
    // for every w rows and head.
    const int64_t blockRows = kAttentionBlockRows;
    assert(blockRows % w == 0 && "a block is whole steps");
    Value state = memref::AllocaOp::create(
        b, e.loc, MemRefType::get({2 * hb}, e.f32()), b.getI64IntegerAttr(64));
    // probs[hh x blockRows + r]: head h0 + hh's score of the block's row r,
    // then its weight exp(score - m).
    Value probs = memref::AllocaOp::create(
        b, e.loc, MemRefType::get({hb * blockRows}, e.f32()),
        b.getI64IntegerAttr(64));
    // rescale[hh]: exp(m_old - m_new) of head h0 + hh for the current block.
    Value rescale = memref::AllocaOp::create(
        b, e.loc, MemRefType::get({hb}, e.f32()), b.getI64IntegerAttr(64));
    Value lo, hi;
    std::tie(lo, hi) = e.split(e.mul(a[9], chunks), a[10], a[11]);
    // A score tile's heads and rows (scoreTileHeads); its lane l holds row
    // l % tileRows of the tile.
    const int64_t tileHeads = scoreTileHeads(hb, w);
    const int64_t tileRows = int64_t(w) / tileHeads;
    SmallVector<int64_t> laneIds, tileLaneRows;
    for (unsigned j = 0; j < w; ++j) {
      laneIds.push_back(j);
      tileLaneRows.push_back(int64_t(j) % tileRows);
    }
    VectorType lanesI64 = VectorType::get({int64_t(w)}, b.getI64Type());
    e.loop(lo, hi, 1, [&](Value item) {
      Value t = e.div(item, chunks);
      Value h0 = e.mul(e.rem(item, chunks), hb);
      // The item's KV head's rows (head-major caches, AttentionSpec).
      Value kvHead = e.mul(e.div(h0, group), spec.contextRows * hd);
      auto rowOf = [&](Value base, Value h) {
        return e.add(base, e.add(e.mul(t, spec.heads * hd), e.mul(h, hd)));
      };
      Value negInf = e.cf(-std::numeric_limits<float>::infinity());
      // state[hh]: the running maximum m of head h0 + hh; state[hb + hh]:
      // its running sum l.
      e.loop(e.idx(0), e.idx(hb), 1, [&](Value hh) {
        Value yRow = rowOf(yOff, e.add(h0, hh));
        e.loop(e.idx(0), e.idx(hd), w, [&](Value i) {
          e.vstore(e.zeroVec(w), y, e.add(yRow, i));
        });
        e.store(negInf, state, hh);
        e.store(e.cf(0.0), state, e.add(hh, hb));
      });
      Value last = e.toIndex(e.load(pos, e.add(posOff, t)));
      Value lanesIndex = arith::ConstantOp::create(
          b, e.loc,
          DenseElementsAttr::get(lanesI64, ArrayRef<int64_t>(laneIds)));
      auto broadcastIndex = [&](Value v) {
        return vector::BroadcastOp::create(
            b, e.loc, lanesI64,
            arith::IndexCastOp::create(b, e.loc, b.getI64Type(), v));
      };
      Value tileLanesIndex = arith::ConstantOp::create(
          b, e.loc,
          DenseElementsAttr::get(lanesI64, ArrayRef<int64_t>(tileLaneRows)));
      // Lanes of rows r + offsets[lane] that are cache rows 0..last.
      auto validAt = [&](Value r, Value offsets) -> Value {
        return arith::CmpIOp::create(
            b, e.loc, arith::CmpIPredicate::ule,
            arith::AddIOp::create(b, e.loc, broadcastIndex(r), offsets),
            broadcastIndex(last));
      };
      // Rows r..r+w-1; a score tile's rows from r.
      auto validFrom = [&](Value r) { return validAt(r, lanesIndex); };
      auto validInTile = [&](Value r) { return validAt(r, tileLanesIndex); };
      // One block of rows from p0: whole ones have blockRows rows at fixed
      // distances from one base; the last, partial one clamps its rows to
      // `last` and masks them out.
      auto block = [&](Value p0, bool partial) {
        Value n = partial ? e.sub(e.add(last, 1), p0) : e.idx(blockRows);
        Value stepsEnd = partial ? e.mul(e.ceilDiv(n, e.idx(w)), int64_t(w))
                                 : e.idx(blockRows);
        // 1. Scores, by tiles of H heads x R rows (H x R = w dot products,
        // one accumulator each): each K vector is read (and widened, for f16
        // caches) once per tile for its H heads. One head at a time read and
        // widened every K vector once for each of the item's heads: the
        // widening took most of the kernel's samples. The block's K rows come
        // from L2 or memory for the first tile's heads and from L1 for the
        // others. Each tile also prefetches its share of the next block's K
        // and V rows into L2, so that memory works while the heads compute
        // from L1 (paired at 1000 positions on the benchmark model: decode
        // +0.5% and +1.3%, the prompt +2% in two runs).
        const int64_t tilesPerBlock = blockRows / tileRows;
        const int64_t lineElements = kCacheLineBytes / (spec.f16Cache ? 2 : 4);
        const int64_t halfLines = blockRows * hd / lineElements; // K's, V's
        const int64_t tiles = hb / tileHeads * tilesPerBlock;
        const int64_t linesPerStep = (2 * halfLines + tiles - 1) / tiles;
        Value kNext = e.add(kc, e.add(e.mul(e.add(p0, blockRows), hd), kvHead));
        Value vNext = e.add(vc, e.add(e.mul(e.add(p0, blockRows), hd), kvHead));
        auto scoresOf = [&](Value hg) {
          Value hFirst = e.mul(hg, tileHeads); // of the item's heads
          SmallVector<Value> qRows;
          for (int64_t h = 0; h < tileHeads; ++h)
            qRows.push_back(rowOf(qOff, e.add(h0, e.add(hFirst, h))));
          e.loop(e.idx(0), stepsEnd, tileRows, [&](Value s) {
            Value p = e.add(p0, s);
            SmallVector<Value> kRows;
            Value kBase = e.add(kc, e.add(e.mul(p, hd), kvHead));
            // Past the cache's last row the addresses only hint.
            Value first = e.mul(
                e.add(e.mul(hg, tilesPerBlock), e.div(s, tileRows)),
                linesPerStep);
            auto lineAt = [&](Value line) {
              Value inK = e.cmp(arith::CmpIPredicate::ult, line,
                                e.idx(halfLines));
              return e.select(
                  inK, e.add(kNext, e.mul(line, lineElements)),
                  e.add(vNext,
                        e.mul(e.sub(line, e.idx(halfLines)), lineElements)));
            };
            // Where K's lines are whole steps' worth, a step's lines are all
            // K's or all V's: one address, then constant offsets (a select
            // per line cost ~15% of the kernel's samples, its addresses
            // spilled to the stack).
            const bool wholeSteps = halfLines % linesPerStep == 0;
            Value base = wholeSteps ? lineAt(first) : Value();
            for (int64_t x = 0; x < linesPerStep; ++x) {
              Value at = wholeSteps ? e.add(base, x * lineElements)
                                    : lineAt(e.add(first, x));
              memref::PrefetchOp::create(b, e.loc, cache, ValueRange{at},
                                         /*isWrite=*/false, /*localityHint=*/2,
                                         /*isDataCache=*/true);
            }
            for (int64_t j = 0; j < tileRows; ++j) {
              if (!partial) {
                kRows.push_back(e.add(kBase, j * hd));
                continue;
              }
              Value row = arith::MinUIOp::create(b, e.loc, e.add(p, j), last);
              kRows.push_back(e.add(kc, e.add(e.mul(row, hd), kvHead)));
            }
            // Accumulator h x tileRows + j: head hFirst + h, row p + j.
            SmallVector<Value> init(w, e.zeroVec(w));
            SmallVector<Value> dots = e.loop(
                e.idx(0), e.idx(hd), w, init, [&](Value i, ValueRange acc) {
                  SmallVector<Value> ks, next;
                  for (int64_t j = 0; j < tileRows; ++j)
                    ks.push_back(loadCacheVector(e, spec, w, cache,
                                                 e.add(kRows[j], i)));
                  for (int64_t h = 0; h < tileHeads; ++h) {
                    Value qv = e.vload(w, q, e.add(qRows[h], i));
                    for (int64_t j = 0; j < tileRows; ++j)
                      next.push_back(e.fma(qv, ks[j], acc[h * tileRows + j]));
                  }
                  return next;
                });
            // Lane h x tileRows + j: head hFirst + h's score of row p + j.
            Value scores = e.fmul(emitReduceRows(e, dots),
                                  e.splat(e.cf(spec.scale), w));
            if (partial)
              scores = e.select(validInTile(p), scores, e.splat(negInf, w));
            for (int64_t h = 0; h < tileHeads; ++h) {
              Value run = tileHeads == 1
                              ? scores
                              : vector::ExtractStridedSliceOp::create(
                                    b, e.loc, scores,
                                    ArrayRef<int64_t>{h * tileRows},
                                    ArrayRef<int64_t>{tileRows},
                                    ArrayRef<int64_t>{1})
                                    .getResult();
              e.vstore(run, probs,
                       e.add(e.mul(e.add(hFirst, h), blockRows), s));
            }
          });
        };
        e.loop(e.idx(0), e.idx(hb / tileHeads), 1,
               [&](Value hg) { scoresOf(hg); });
        // 2. Per head: the block's maximum, its weights and their sum; the
        // factor that rescales the head's output goes to `rescale`.
        e.loop(e.idx(0), e.idx(hb), 1, [&](Value hh) {
          Value at = e.mul(hh, blockRows);
          Value mxv = e.loop(e.idx(0), stepsEnd, w, {e.splat(negInf, w)},
                             [&](Value s, ValueRange acc) {
                               return SmallVector<Value>{e.fmax(
                                   acc[0], e.vload(w, probs, e.add(at, s)))};
                             })[0];
          Value mOld = e.load(state, hh), lOld = e.load(state, e.add(hh, hb));
          Value m = e.fmax(
              mOld, vector::ReductionOp::create(
                        b, e.loc, vector::CombiningKind::MAXIMUMF, mxv));
          Value c = e.exp(e.fsub(mOld, m));
          Value mV = e.splat(m, w);
          Value sumv = e.loop(
              e.idx(0), stepsEnd, w, {e.zeroVec(w)},
              [&](Value s, ValueRange acc) {
                Value pv = e.exp(e.fsub(e.vload(w, probs, e.add(at, s)), mV));
                if (partial)
                  pv = e.select(validFrom(e.add(p0, s)), pv, e.zeroVec(w));
                e.vstore(pv, probs, e.add(at, s));
                return SmallVector<Value>{e.fadd(acc[0], pv)};
              })[0];
          e.store(m, state, hh);
          e.store(e.fadd(e.fmul(lOld, c), e.reduceAdd(sumv)), state,
                  e.add(hh, hb));
          e.store(c, rescale, hh);
        });
        // 3. The block's V rows into every head's output: each V row is
        // read once for all the item's heads, a few of its vectors at a
        // time, so that heads x vectors accumulators (independent FMA
        // chains) stay in registers. One pass per head, reading the block's
        // rows again for each, took ~15 cycles a row and head at 1100
        // positions where its FMAs need 4; this way the prompt is 9% faster
        // on the benchmark model (decode unchanged: it waits for memory).
        Value vBase = e.add(vc, e.add(e.mul(p0, hd), kvHead));
        // The outputs rescaled first, in a pass of their own: folded into
        // the groups' first loads, the heads' factors stayed live in
        // registers across all the groups and LLVM spilled an accumulator
        // of each group's loop to the stack, its FMA chain then waiting on
        // a store and a load every row.
        e.loop(e.idx(0), e.idx(hb), 1, [&](Value hh) {
          Value yRow = rowOf(yOff, e.add(h0, hh));
          Value cV = e.splat(e.load(rescale, hh), w);
          e.loop(e.idx(0), e.idx(hd), w, [&](Value i) {
            e.vstore(e.fmul(e.vload(w, y, e.add(yRow, i)), cV), y,
                     e.add(yRow, i));
          });
        });
        const int64_t vectors = hd / w;
        const int64_t span = std::max<int64_t>(
            1, std::min<int64_t>(vectors, attentionAccumulators(e.lanes) / hb));
        for (int64_t g0 = 0; g0 < vectors; g0 += span) {
          const int64_t g1 = std::min<int64_t>(vectors, g0 + span);
          const int64_t width = g1 - g0;
          SmallVector<Value> init;
          for (int64_t hh = 0; hh < hb; ++hh) {
            Value yRow = rowOf(yOff, e.add(h0, hh));
            for (int64_t g = g0; g < g1; ++g)
              init.push_back(e.vload(w, y, e.add(yRow, g * int64_t(w))));
          }
          SmallVector<Value> out = e.loop(
              e.idx(0), n, 1, init, [&](Value r, ValueRange acc) {
                Value vRow = e.add(vBase, e.mul(r, hd));
                SmallVector<Value> vs;
                for (int64_t g = g0; g < g1; ++g)
                  vs.push_back(loadCacheVector(e, spec, w, cache,
                                               e.add(vRow, g * int64_t(w))));
                SmallVector<Value> next;
                for (int64_t hh = 0; hh < hb; ++hh) {
                  Value pr = e.splat(
                      e.load(probs, e.add(e.idx(hh * blockRows), r)), w);
                  for (int64_t gi = 0; gi < width; ++gi)
                    next.push_back(
                        e.fma(pr, vs[gi], acc[hh * width + gi]));
                }
                return next;
              });
          for (int64_t hh = 0; hh < hb; ++hh) {
            Value yRow = rowOf(yOff, e.add(h0, hh));
            for (int64_t g = g0; g < g1; ++g)
              e.vstore(out[hh * width + (g - g0)], y,
                       e.add(yRow, g * int64_t(w)));
          }
        }
      };
      Value rows = e.add(last, 1);
      Value whole = e.mul(e.div(rows, blockRows), blockRows);
      e.loop(e.idx(0), whole, blockRows,
             [&](Value p0) { block(p0, /*partial=*/false); });
      e.ifThen(e.cmp(arith::CmpIPredicate::ult, whole, rows),
               [&] { block(whole, /*partial=*/true); });
      e.loop(e.idx(0), e.idx(hb), 1, [&](Value hh) {
        Value yRow = rowOf(yOff, e.add(h0, hh));
        Value invL = e.splat(e.fdiv(e.cf(1.0), e.load(state, e.add(hh, hb))), w);
        e.loop(e.idx(0), e.idx(hd), w, [&](Value i) {
          e.vstore(e.fmul(e.vload(w, y, e.add(yRow, i)), invL), y,
                   e.add(yRow, i));
        });
      });
    });
  });
}

func::FuncOp KernelLibrary::route(const RouteSpec &spec) {
  MLIRContext *ctx = module.getContext();
  Type index = IndexType::get(ctx);
  SmallVector<Type> args = {f32Type(ctx), index, i32Type(ctx), index,
                            f32Type(ctx), index, f32Type(ctx), index,
                            index,        index, index};
  std::string name = llvm::formatv("moec_route_softmax_e{0}_top{1}{2}",
                                   spec.experts, spec.k,
                                   spec.normalize ? "_norm" : "");
  return getOrCreate(name, args, [&](OpBuilder &b, ValueRange a) {
    Emitter e{b, module.getLoc(), lanes, integerDot};
    Value logits = a[0], lOff = a[1], ids = a[2], idsOff = a[3], wts = a[4],
          wOff = a[5], probs = a[6], pOff = a[7];
    const int64_t E = spec.experts, K = spec.k;
    Value lo, hi;
    std::tie(lo, hi) = e.split(a[8], a[9], a[10]);
    e.loop(lo, hi, 1, [&](Value t) {
      Value lr = e.add(lOff, e.mul(t, E));
      Value pr = e.add(pOff, e.mul(t, E));
      Value negInf = e.cf(-std::numeric_limits<float>::infinity());
      Value mx = e.loop(e.idx(0), e.idx(E), 1, {negInf},
                        [&](Value i, ValueRange m) {
                          return SmallVector<Value>{
                              e.fmax(m[0], e.load(logits, e.add(lr, i)))};
                        })[0];
      Value sum = e.loop(e.idx(0), e.idx(E), 1, {e.cf(0.0)},
                         [&](Value i, ValueRange s) {
                           Value p = e.exp(
                               e.fsub(e.load(logits, e.add(lr, i)), mx));
                           e.store(p, probs, e.add(pr, i));
                           return SmallVector<Value>{e.fadd(s[0], p)};
                         })[0];
      Value inv = e.fdiv(e.cf(1.0), sum);
      // Top-k by repeated selection: the largest probability, the lowest
      // index among equals; chosen ones are marked -1.
      Value chosenSum = e.loop(
          e.idx(0), e.idx(K), 1, {e.cf(0.0)}, [&](Value j, ValueRange cs) {
            SmallVector<Value> best = e.loop(
                e.idx(0), e.idx(E), 1, {e.cf(-2.0), e.idx(0)},
                [&](Value i, ValueRange st) {
                  Value p = e.load(probs, e.add(pr, i));
                  Value better = arith::CmpFOp::create(
                      b, e.loc, arith::CmpFPredicate::OGT, p, st[0]);
                  return SmallVector<Value>{e.select(better, p, st[0]),
                                            e.select(better, i, st[1])};
                });
            e.store(e.cf(-1.0), probs, e.add(pr, best[1]));
            Value slot = e.add(e.mul(t, K), j);
            e.store(e.toI32(best[1]), ids, e.add(idsOff, slot));
            Value wgt = e.fmul(best[0], inv);
            e.store(wgt, wts, e.add(wOff, slot));
            return SmallVector<Value>{e.fadd(cs[0], wgt)};
          })[0];
      if (spec.normalize) {
        Value invSum = e.fdiv(e.cf(1.0), chosenSum);
        e.loop(e.idx(0), e.idx(K), 1, [&](Value j) {
          Value slot = e.add(wOff, e.add(e.mul(t, K), j));
          e.store(e.fmul(e.load(wts, slot), invSum), wts, slot);
        });
      }
    });
  });
}

func::FuncOp KernelLibrary::dispatchPlan(int64_t experts, int64_t k) {
  MLIRContext *ctx = module.getContext();
  Type index = IndexType::get(ctx);
  SmallVector<Type> args = {i32Type(ctx), index, i32Type(ctx), index,
                            i32Type(ctx), index, i32Type(ctx), index,
                            i32Type(ctx), index, index};
  std::string name = llvm::formatv("moec_dispatch_plan_e{0}_top{1}", experts, k);
  return getOrCreate(name, args, [&](OpBuilder &b, ValueRange a) {
    Emitter e{b, module.getLoc(), lanes, integerDot};
    Value ids = a[0], idsOff = a[1], offs = a[2], offOff = a[3],
          slots = a[4], slotsOff = a[5], inv = a[6], invOff = a[7],
          cursor = a[8], curOff = a[9], T = a[10];
    Value zero = arith::ConstantIntOp::create(b, e.loc, 0, 32);
    Value one = arith::ConstantIntOp::create(b, e.loc, 1, 32);
    e.loop(e.idx(0), e.idx(experts + 1), 1, [&](Value i) {
      e.store(zero, offs, e.add(offOff, i));
    });
    e.loop(e.idx(0), e.idx(experts), 1, [&](Value i) {
      e.store(zero, cursor, e.add(curOff, i));
    });
    Value pairs = e.mul(T, k);
    e.loop(e.idx(0), pairs, 1, [&](Value s) {
      Value x = e.toIndex(e.load(ids, e.add(idsOff, s)));
      Value at = e.add(e.add(offOff, x), 1);
      e.store(arith::AddIOp::create(b, e.loc, e.load(offs, at), one), offs, at);
    });
    e.loop(e.idx(0), e.idx(experts), 1, [&](Value i) {
      Value at = e.add(e.add(offOff, i), 1);
      Value prev = e.load(offs, e.add(offOff, i));
      e.store(arith::AddIOp::create(b, e.loc, e.load(offs, at), prev), offs, at);
    });
    e.loop(e.idx(0), pairs, 1, [&](Value s) {
      Value x = e.toIndex(e.load(ids, e.add(idsOff, s)));
      Value c = e.load(cursor, e.add(curOff, x));
      Value r = arith::AddIOp::create(b, e.loc, e.load(offs, e.add(offOff, x)), c);
      e.store(arith::AddIOp::create(b, e.loc, c, one), cursor, e.add(curOff, x));
      e.store(e.toI32(s), slots, e.add(slotsOff, e.toIndex(r)));
      e.store(r, inv, e.add(invOff, s));
    });
  });
}

namespace {
/// rows[r] = x[slots[r] / k], rows of `rowElems` elements copied as
/// `chunk`-element vectors, the (token, choice) pairs split over the
/// threads: the body of dispatchGather and dispatchGatherQuantized.
void emitGatherRows(Emitter &e, ValueRange a, int64_t k, int64_t rowElems,
                    VectorType chunk) {
  Value x = a[0], xOff = a[1], slots = a[2], slotsOff = a[3], rows = a[4],
        rowsOff = a[5];
  const int64_t w = chunk.getNumElements();
  Value lo, hi;
  std::tie(lo, hi) = e.split(e.mul(a[6], k), a[7], a[8]);
  e.loop(lo, hi, 1, [&](Value r) {
    Value t = e.div(e.toIndex(e.load(slots, e.add(slotsOff, r))), k);
    Value src = e.add(xOff, e.mul(t, rowElems));
    Value dst = e.add(rowsOff, e.mul(r, rowElems));
    e.loop(e.idx(0), e.idx(rowElems), w, [&](Value i) {
      e.vstore(vector::LoadOp::create(e.b, e.loc, chunk, x, e.add(src, i)),
               rows, e.add(dst, i));
    });
  });
}
} // namespace

func::FuncOp KernelLibrary::dispatchGather(int64_t dim, int64_t k) {
  MLIRContext *ctx = module.getContext();
  Type index = IndexType::get(ctx);
  unsigned w = chunkWidth(lanes, dim);
  SmallVector<Type> args = {f32Type(ctx), index, i32Type(ctx), index,
                            f32Type(ctx), index, index,        index,
                            index};
  std::string name = llvm::formatv("moec_dispatch_gather_{0}_top{1}", dim, k);
  return getOrCreate(name, args, [&](OpBuilder &b, ValueRange a) {
    Emitter e{b, module.getLoc(), lanes, integerDot};
    emitGatherRows(e, a, k, dim, e.vec(w));
  });
}

func::FuncOp KernelLibrary::dispatchGatherQuantized(int64_t dim, int64_t k) {
  MLIRContext *ctx = module.getContext();
  Type index = IndexType::get(ctx);
  const int64_t rowBytes = getQuantizedRowBytes(dim);
  int64_t w = 64;
  while (rowBytes % w != 0)
    w /= 2;
  SmallVector<Type> args = {bytesType(ctx), index, i32Type(ctx), index,
                            bytesType(ctx), index, index,        index,
                            index};
  std::string name =
      llvm::formatv("moec_dispatch_gather_quantized_{0}_top{1}", dim, k);
  return getOrCreate(name, args, [&](OpBuilder &b, ValueRange a) {
    Emitter e{b, module.getLoc(), lanes, integerDot};
    emitGatherRows(e, a, k, rowBytes, VectorType::get({w}, b.getI8Type()));
  });
}

func::FuncOp KernelLibrary::combine(int64_t dim, int64_t k, bool residual) {
  MLIRContext *ctx = module.getContext();
  Type index = IndexType::get(ctx);
  unsigned w = chunkWidth(lanes, dim);
  SmallVector<Type> args = {f32Type(ctx), index, i32Type(ctx), index,
                            f32Type(ctx), index, f32Type(ctx), index};
  if (residual)
    args.append({f32Type(ctx), index});
  args.append({index, index, index});
  std::string name = llvm::formatv("moec_combine_{0}_top{1}{2}", dim, k,
                                   residual ? "_residual" : "");
  return getOrCreate(name, args, [&](OpBuilder &b, ValueRange a) {
    Emitter e{b, module.getLoc(), lanes, integerDot};
    Value y = a[0], yOff = a[1], inv = a[2], invOff = a[3], wts = a[4],
          wOff = a[5], out = a[6], outOff = a[7];
    unsigned i = 8;
    Value res, resOff;
    if (residual) {
      res = a[i++];
      resOff = a[i++];
    }
    Value lo, hi;
    std::tie(lo, hi) = e.split(a[i], a[i + 1], a[i + 2]);
    e.loop(lo, hi, 1, [&](Value t) {
      SmallVector<Value> rowAt, weight;
      for (int64_t j = 0; j < k; ++j) {
        Value s = e.add(e.mul(t, k), j);
        rowAt.push_back(e.add(
            yOff, e.mul(e.toIndex(e.load(inv, e.add(invOff, s))), dim)));
        weight.push_back(e.splat(e.load(wts, e.add(wOff, s)), w));
      }
      Value o = e.add(outOff, e.mul(t, dim));
      e.loop(e.idx(0), e.idx(dim), w, [&](Value c) {
        Value acc = residual ? e.vload(w, res, e.add(e.add(resOff, e.mul(t, dim)), c))
                             : e.zeroVec(w);
        for (int64_t j = 0; j < k; ++j)
          acc = e.fma(weight[j], e.vload(w, y, e.add(rowAt[j], c)), acc);
        e.vstore(acc, out, e.add(o, c));
      });
    });
  });
}

func::FuncOp KernelLibrary::add(int64_t dim) {
  MLIRContext *ctx = module.getContext();
  Type index = IndexType::get(ctx);
  unsigned w = chunkWidth(lanes, dim);
  SmallVector<Type> args = {f32Type(ctx), index, f32Type(ctx), index,
                            f32Type(ctx), index, index,        index,
                            index};
  std::string name = llvm::formatv("moec_add_{0}", dim);
  return getOrCreate(name, args, [&](OpBuilder &b, ValueRange a) {
    Emitter e{b, module.getLoc(), lanes, integerDot};
    Value lo, hi;
    std::tie(lo, hi) = e.split(a[6], a[7], a[8]);
    e.loop(lo, hi, 1, [&](Value t) {
      Value row = e.mul(t, dim);
      e.loop(e.idx(0), e.idx(dim), w, [&](Value i) {
        Value at = e.add(row, i);
        Value s = e.fadd(e.vload(w, a[0], e.add(a[1], at)),
                         e.vload(w, a[2], e.add(a[3], at)));
        e.vstore(s, a[4], e.add(a[5], at));
      });
    });
  });
}

func::FuncOp KernelLibrary::sigmoidScale(int64_t dim) {
  MLIRContext *ctx = module.getContext();
  Type index = IndexType::get(ctx);
  unsigned w = chunkWidth(lanes, dim);
  SmallVector<Type> args = {f32Type(ctx), index, f32Type(ctx), index,
                            f32Type(ctx), index, index,        index,
                            index};
  std::string name = llvm::formatv("moec_sigmoid_scale_{0}", dim);
  return getOrCreate(name, args, [&](OpBuilder &b, ValueRange a) {
    Emitter e{b, module.getLoc(), lanes, integerDot};
    Value lo, hi;
    std::tie(lo, hi) = e.split(a[6], a[7], a[8]);
    e.loop(lo, hi, 1, [&](Value t) {
      Value g = e.splat(e.sigmoid(e.load(a[2], e.add(a[3], t))), w);
      Value row = e.mul(t, dim);
      e.loop(e.idx(0), e.idx(dim), w, [&](Value i) {
        Value at = e.add(row, i);
        e.vstore(e.fmul(e.vload(w, a[0], e.add(a[1], at)), g), a[4],
                 e.add(a[5], at));
      });
    });
  });
}
