//===- LowerToKernels.cpp - @forward into kernels and a schedule ----------===//

#include "codegen/cpu/LowerToKernels.h"

#include "codegen/cpu/Kernels.h"
#include "dialects/moe/IR/MoeDialect.h"
#include "dialects/moe/IR/MoeOps.h"
#include "dialects/qnt/IR/QntDialect.h"
#include "dialects/qnt/IR/QntOps.h"
#include "runtime/abi/moec_abi.h"
#include "runtime/abi/moec_bundle.h"

#include "mlir/Dialect/AMX/AMXDialect.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Pass/Pass.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/Support/FormatVariadic.h"

#include <map>

using namespace mlir;
using namespace moec;
using namespace moec::codegen;

namespace {

/// The logical shape of a weight: a float tensor or a !qnt.tensor.
ArrayRef<int64_t> weightShape(Type type) {
  if (auto q = dyn_cast<qnt::QuantizedTensorType>(type))
    return q.getShape();
  return cast<ShapedType>(type).getShape();
}

enum Space { Scratch, KV, Logits, Tokens, Positions };

/// Where a tensor value lives: a range of 4-byte elements of one space.
struct Buffer {
  Space space = Scratch;
  int64_t offset = 0, size = 0;
};

struct ResidentWeight {
  int64_t offset;
  WeightFormat format;
  /// How the bundle stores it (moe.layout): rows interleaved, or 1.
  unsigned interleave = 1;
};

/// First-fit allocation of scratch elements, 64-byte aligned.
class ScratchAllocator {
public:
  int64_t allocate(int64_t size) {
    size = alignUp(size);
    for (auto it = free.begin(); it != free.end(); ++it)
      if (it->second >= size) {
        int64_t at = it->first;
        int64_t rest = it->second - size;
        free.erase(it);
        if (rest)
          free[at + size] = rest;
        return at;
      }
    int64_t at = top;
    top += size;
    return at;
  }
  void release(int64_t offset, int64_t size) {
    size = alignUp(size);
    free[offset] = size;
    // Merge with neighbours.
    auto it = free.find(offset);
    if (it != free.begin()) {
      auto prev = std::prev(it);
      if (prev->first + prev->second == it->first) {
        prev->second += it->second;
        free.erase(it);
        it = prev;
      }
    }
    auto next = std::next(it);
    if (next != free.end() && it->first + it->second == next->first) {
      it->second += next->second;
      free.erase(next);
    }
  }
  int64_t highWater() const { return top; }
  /// `size` elements above everything allocated so far, never reused.
  int64_t reserveTop(int64_t size) {
    int64_t at = top;
    top += alignUp(size);
    return at;
  }

private:
  static int64_t alignUp(int64_t n) { return (n + 15) / 16 * 16; }
  std::map<int64_t, int64_t> free;
  int64_t top = 0;
};

class ScheduleBuilder {
public:
  ScheduleBuilder(ModuleOp module, const CpuLoweringOptions &options)
      : module(module), options(options), lib(module, options.lanes, options.integerDot),
        b(module.getContext()), loc(module.getLoc()) {}

  LogicalResult run();

private:
  // --- Helpers -----------------------------------------------------------
  InFlightDiagnostic error(Operation *op) { return op->emitOpError(); }
  Value idx(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }
  Value addIdx(Value a, Value c) { return arith::AddIOp::create(b, loc, a, c); }
  Value mulIdx(Value a, int64_t c) {
    return arith::MulIOp::create(b, loc, a, idx(c));
  }
  Value root(Value v) const {
    while (Operation *def = v.getDefiningOp()) {
      if (auto e = dyn_cast<tensor::ExpandShapeOp>(def))
        v = e.getSrc();
      else if (auto c = dyn_cast<tensor::CollapseShapeOp>(def))
        v = c.getSrc();
      else
        break;
    }
    return v;
  }
  FailureOr<Buffer> bufferOf(Operation *user, Value v) {
    auto it = buffers.find(root(v));
    if (it == buffers.end()) {
      user->emitOpError("operand has no buffer (unsupported producer)");
      return failure();
    }
    return it->second;
  }
  Buffer allocate(Value v, int64_t size) {
    Buffer buf{Scratch, allocator.allocate(size), size};
    buffers[v] = buf;
    return buf;
  }
  Buffer temporary(int64_t size) {
    Buffer buf{Scratch, allocator.allocate(size), size};
    temporaries.push_back(buf);
    return buf;
  }
  Value viewOf(const Buffer &buf, bool asInt = false) {
    switch (buf.space) {
    case Scratch: return asInt ? scratchI32 : scratchF32;
    case KV: return kvCache;
    case Logits: return logitsArg;
    case Tokens: return tokensArg;
    case Positions: return positionsArg;
    }
    return {};
  }
  FailureOr<ResidentWeight> resident(Operation *user, StringRef name) {
    auto entry = tensors.getAs<ArrayAttr>(name);
    if (!entry || entry.size() < 2) {
      user->emitOpError("weight '") << name << "' is not in moe.layout";
      return failure();
    }
    unsigned interleave =
        entry.size() > 2 ? unsigned(cast<IntegerAttr>(entry[2]).getInt()) : 1;
    int64_t type = cast<IntegerAttr>(entry[1]).getInt();
    auto format = WeightFormat::fromGgmlTypeId(type);
    // -1 or an own format's id (moec_bundle.h): a format of our own, which
    // the IR type describes.
    if (!format && (type == -1 || (uint64_t(type) & ~uint64_t(0x1ffff)) ==
                                      MOEC_BUNDLE_OWN_TYPE_BASE))
      format = WeightFormat();
    if (!format) {
      user->emitOpError("weight '")
          << name << "' has ggml type " << type
          << ", which the CPU backend does not decode";
      return failure();
    }
    return ResidentWeight{cast<IntegerAttr>(entry[0]).getInt(), *format,
                          interleave};
  }
  FailureOr<ResidentWeight> residentOfValue(Operation *user, Value v) {
    auto w = v.getDefiningOp<qnt::WeightOp>();
    if (!w) {
      user->emitOpError("expects weights from qnt.weight");
      return failure();
    }
    return residentTyped(user, w.getName(), w.getType());
  }
  FailureOr<ResidentWeight> residentOfRef(Operation *user,
                                          qnt::WeightRefAttr ref) {
    return residentTyped(user, ref.getName(), ref.getType());
  }
  FailureOr<ResidentWeight> residentTyped(Operation *user, StringRef name,
                                          Type type) {
    FailureOr<ResidentWeight> r = resident(user, name);
    // Matrices are stored as their type says (the importer keeps the
    // store's type, compression names its own formats); vectors may be
    // stored narrower than the f32 they are used as.
    if (succeeded(r) && weightShape(type).size() >= 2) {
      std::optional<WeightFormat> f = WeightFormat::get(type);
      if (!f) {
        user->emitOpError("weights of type ")
            << type << " are not decoded by the CPU backend";
        return failure();
      }
      // The type must say how the bundle stores the rows.
      if (f->interleave != r->interleave) {
        user->emitOpError("weight '")
            << name << "' has interleave " << f->interleave
            << " in the IR but " << r->interleave << " in moe.layout";
        return failure();
      }
      r->format = *f;
    }
    return r;
  }
  LogicalResult checkWidth(Operation *op, int64_t n, StringRef what) {
    if (n % 4 != 0)
      return op->emitOpError() << what << " " << n
                               << " is not a multiple of 4, which the CPU "
                                  "backend's vector kernels need";
    return success();
  }
  LogicalResult checkBlocks(Operation *op, const WeightFormat &f, int64_t k) {
    if (k % f.blockElements(options.lanes) != 0)
      return op->emitOpError() << "reduction size " << k
                               << " is not a multiple of the " << f.name()
                               << " block of " << f.blockElements(options.lanes);
    return success();
  }

  /// Emits a barrier first when the access conflicts with accesses of other
  /// threads since the last barrier.
  void access(ArrayRef<Buffer> reads, ArrayRef<Buffer> writes) {
    auto overlaps = [](const Buffer &a, const Buffer &c) {
      return a.space == c.space && a.offset < c.offset + c.size &&
             c.offset < a.offset + a.size;
    };
    bool conflict = false;
    for (const Buffer &r : reads)
      for (const Buffer &w : writtenSinceBarrier)
        conflict |= overlaps(r, w);
    for (const Buffer &w : writes) {
      for (const Buffer &x : writtenSinceBarrier)
        conflict |= overlaps(w, x);
      for (const Buffer &x : readSinceBarrier)
        conflict |= overlaps(w, x);
    }
    if (conflict)
      barrier();
    readSinceBarrier.append(reads.begin(), reads.end());
    writtenSinceBarrier.append(writes.begin(), writes.end());
  }
  void barrier() {
    func::CallOp::create(b, loc, barrierFn, ValueRange{ctxArg});
    readSinceBarrier.clear();
    writtenSinceBarrier.clear();
  }
  void call(func::FuncOp fn, ValueRange args) {
    func::CallOp::create(b, loc, fn, args);
  }
  /// Runs `body` on thread 0 only.
  void onThread0(function_ref<void()> body) {
    Value is0 = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                      threadIdx, idx(0));
    auto op = scf::IfOp::create(b, loc, is0, /*withElseRegion=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&op.getThenRegion().front());
    body();
  }
  Value off(const Buffer &buf) { return idx(buf.offset); }
  /// Whether the forward call's flags (moec_forward_flags_e) hold `flag`.
  Value hasForwardFlag(int64_t flag) {
    Value bit = arith::AndIOp::create(
        b, loc, forwardFlags, arith::ConstantIntOp::create(b, loc, flag, 64));
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, bit,
                                 arith::ConstantIntOp::create(b, loc, 0, 64));
  }

  /// The counters the matmul kernels' threads claim their chunks of rows
  /// from (emitClaimedUnits): one per call site, 64 bytes apart, in scratch
  /// above every buffer; thread 0 zeroes them before the first kernel.
  /// Their base is a constant set once the schedule is complete.
  arith::ConstantIndexOp claimsBase;
  int64_t claimSites = 0;
  Value claims() { return scratchI32; }
  Value nextClaim() { return addIdx(claimsBase, idx(16 * claimSites++)); }
  SmallVector<Value, 2> claimArgs() { return {claims(), nextClaim()}; }
  void placeClaimCounters();

  /// Rows [start, start + count) of the batch's tokens. Buffers indexed by
  /// token keep every row at its token's place, so that an op over some of
  /// the rows reads and writes them where an op over all of them would.
  struct RowRange {
    Value start, count;
    bool all;
  };
  /// The rows the op being lowered computes.
  RowRange opRows;
  RowRange allRows, lastRows;
  /// Ops that compute the last token's rows only unless every token's
  /// logits or routing are asked for: the last layer after its keys and
  /// values (findLastTokenOps).
  DenseSet<Operation *> lastTokenOps;
  void findLastTokenOps(Block &body);
  /// The rows `v` holds: those its producer computed.
  RowRange rowsOf(Value v) {
    Operation *def = root(v).getDefiningOp();
    return def && lastTokenOps.count(def) ? lastRows : allRows;
  }
  /// Element offset in `buf` (rows of `width`) of the op's first row.
  Value at(const Buffer &buf, int64_t width) {
    return at(buf, width, opRows);
  }
  Value at(const Buffer &buf, int64_t width, const RowRange &r) {
    return rowsAt(buf.offset, width, r);
  }
  /// `base` plus the rows before `r` (rows of `width` units).
  Value rowsAt(int64_t base, int64_t width, const RowRange &r) {
    if (r.all)
      return idx(base);
    return addIdx(idx(base), mulIdx(r.start, width));
  }

  /// Runs `body(expert)` for each expert whose row range in `offsets`
  /// (moe.dispatch's, E + 1 entries) is not empty.
  void forEachExpertWithRows(const Buffer &offsets, int64_t experts,
                             function_ref<void(Value)> body) {
    scf::ForOp::create(
        b, loc, idx(0), idx(experts), idx(1), ValueRange{},
        [&](OpBuilder &nb, Location, Value e, ValueRange) {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
          Value at = addIdx(off(offsets), e);
          Value r0 = memref::LoadOp::create(b, loc, scratchI32, at);
          Value r1 =
              memref::LoadOp::create(b, loc, scratchI32, addIdx(at, idx(1)));
          Value used =
              arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, r0, r1);
          auto ifOp = scf::IfOp::create(b, loc, used, false);
          b.setInsertionPointToStart(&ifOp.getThenRegion().front());
          body(e);
          b.setInsertionPointAfter(ifOp);
          scf::YieldOp::create(b, loc);
        });
  }

  /// Whether a matmul of `format` with reduction `k` runs on 8-bit
  /// activations.
  bool useInt8(const WeightFormat &format, int64_t k) const {
    return options.int8Activations && getIntegerRunLength(format) > 0 &&
           k % 32 == 0;
  }
  /// The 8-bit form of activations `x` (rows of `k`; the rows `r` of at
  /// most `maxRows`, each at its place), quantized once per value: the
  /// buffer lives as long as `x`.
  Buffer quantized(Value key, const Buffer &x, int64_t k, const RowRange &r,
                   int64_t maxRows) {
    auto it = key ? quantizedCache.find(key) : quantizedCache.end();
    if (it != quantizedCache.end())
      return it->second;
    int64_t elements =
        (maxRows * KernelLibrary::getQuantizedRowBytes(k) + 3) / 4;
    Buffer q{Scratch, allocator.allocate(elements), elements};
    if (key)
      quantizedCache[key] = q;
    else
      temporaries.push_back(q);
    quantizeInto(x, q, k, r);
    return q;
  }
  void quantizeInto(const Buffer &x, const Buffer &q, int64_t k,
                    const RowRange &r) {
    access({x}, {q});
    call(lib.quantizeActivations(k),
         {scratchF32, at(x, k, r), scratchArg, quantizedAt(q, k, r), r.count,
          threadIdx, threadCount});
  }
  /// Byte offset of the first row of `r` in the 8-bit activations `q`.
  Value quantizedAt(const Buffer &q, int64_t k, const RowRange &r) {
    return rowsAt(q.offset * 4, KernelLibrary::getQuantizedRowBytes(k), r);
  }

  /// A single arith.addf user whose other operand already has a buffer: the
  /// producer can add it in its epilogue.
  std::pair<arith::AddFOp, Value> fusableResidual(Value result) {
    if (!result.hasOneUse())
      return {};
    auto add = dyn_cast<arith::AddFOp>(*result.getUsers().begin());
    if (!add)
      return {};
    Value other = add.getLhs() == result ? add.getRhs() : add.getLhs();
    if (other == result || !buffers.count(root(other)))
      return {};
    return {add, other};
  }

  // --- Op lowerings ------------------------------------------------------
  LogicalResult lower(Operation *op);
  LogicalResult lowerEmbed(moe::EmbedOp op);
  LogicalResult lowerRmsNorm(moe::RmsNormOp op);
  LogicalResult lowerMatmul(qnt::MatmulOp op);
  LogicalResult lowerRope(moe::RopeOp op);
  LogicalResult lowerAttention(moe::AttentionOp op);
  LogicalResult lowerRoute(moe::RouteOp op);
  LogicalResult predictNextLayer(moe::RouteOp op, int64_t layer);
  /// The layer of the expert bank `op`'s ids are dispatched to.
  std::optional<int64_t> layerOfRoute(moe::RouteOp op);
  LogicalResult lowerDispatch(moe::DispatchOp op);
  /// Whether a dispatch gathers its rows' 8-bit form instead of f32 rows.
  bool gathersQuantizedRows(moe::DispatchOp op, int64_t hidden);
  LogicalResult lowerExpertFfn(moe::ExpertFfnOp op);
  LogicalResult lowerCombine(moe::CombineOp op);
  LogicalResult lowerSharedExpert(moe::SharedExpertOp op);
  LogicalResult lowerAdd(arith::AddFOp op);

  ModuleOp module;
  CpuLoweringOptions options;
  KernelLibrary lib;
  OpBuilder b;
  Location loc;

  DictionaryAttr modelAttr, layoutAttr, tensors;
  DenseMap<StringRef, DictionaryAttr> banks; // symbol -> layout entry
  func::FuncOp forward, schedule, barrierFn, acquireFn, tryAcquireFn,
      releaseFn, routingFn,
      predictFn, observeInputFn, observeExpertsFn;
  llvm::StringMap<LLVM::GlobalOp> siteNames;

  /// A pointer to a NUL-terminated constant holding `name`, one global per
  /// name.
  Value siteName(StringRef name) {
    LLVM::GlobalOp &global = siteNames[name];
    if (!global) {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToEnd(module.getBody());
      std::string text = name.str();
      text.push_back('\0');
      auto type = LLVM::LLVMArrayType::get(b.getI8Type(), text.size());
      global = LLVM::GlobalOp::create(
          b, loc, type, /*isConstant=*/true, LLVM::Linkage::Private,
          ("moec_site_" + Twine(siteNames.size())).str(),
          b.getStringAttr(text));
    }
    return LLVM::AddressOfOp::create(b, loc, global);
  }
  /// Instrumented code: thread 0 reports `x` (rows x cols f32) as the input
  /// of weight `name`; `expertOffsets` (i32) groups the rows by expert.
  void observeInput(StringRef name, const Buffer &x, Value rows, int64_t cols,
                    const Buffer *expertOffsets = nullptr) {
    if (!options.instrument)
      return;
    SmallVector<Buffer> reads = {x};
    if (expertOffsets)
      reads.push_back(*expertOffsets);
    access(reads, {});
    onThread0([&] {
      auto i64 = [&](Value v) {
        return arith::IndexCastOp::create(b, loc, b.getI64Type(), v);
      };
      Value offsets = expertOffsets
                          ? Value(i64(idx(expertOffsets->offset * 4)))
                          : Value(arith::ConstantIntOp::create(b, loc, -1, 64));
      func::CallOp::create(
          b, loc, observeInputFn,
          ValueRange{ctxArg, siteName(name), i64(rows),
                     arith::ConstantIntOp::create(b, loc, cols, 64),
                     i64(idx(x.offset * 4)), offsets});
    });
  }
  Value logitsResult;
  DenseSet<Operation *> fusedAway;

  Value ctxArg, threadIdx, threadCount, tokenCount, forwardFlags, tokensArg,
      positionsArg, logitsArg, residentArg, expertsArg, scratchArg, kvArg;
  /// The KV caches' buffer as their elements: f32 or f16
  /// (CpuLoweringOptions::f16KvCache).
  Value scratchF32, scratchI32, scratchI64, kvCache;

  DenseMap<Value, Buffer> buffers;
  DenseMap<Value, Buffer> quantizedCache; // activations -> their 8-bit form
  /// The rotation angles of RoPE: a table per positions, head size and
  /// base, freed with the positions.
  struct RopeAngles {
    Value positions;
    int64_t headDim;
    double theta;
    Buffer table;
  };
  SmallVector<RopeAngles, 1> ropeAngles;
  SmallVector<Buffer> temporaries;
  ScratchAllocator allocator;
  SmallVector<Buffer> readSinceBarrier, writtenSinceBarrier;
  int64_t kvElements = 0;
};

} // namespace

LogicalResult ScheduleBuilder::run() {
  MLIRContext *ctx = module.getContext();
  forward = module.lookupSymbol<func::FuncOp>("forward");
  if (!forward)
    return module.emitError("no @forward function to lower");
  modelAttr = module->getAttrOfType<DictionaryAttr>("moe.model");
  layoutAttr = module->getAttrOfType<DictionaryAttr>("moe.layout");
  if (!modelAttr || !layoutAttr)
    return module.emitError(
        "the CPU lowering needs the moe.model and moe.layout attributes "
        "(run the plan phase first)");
  tensors = layoutAttr.getAs<DictionaryAttr>("tensors");
  auto experts = layoutAttr.getAs<ArrayAttr>("experts");
  if (!tensors || !experts)
    return module.emitError("moe.layout lacks 'tensors' or 'experts'");
  for (Attribute a : experts) {
    auto d = cast<DictionaryAttr>(a);
    banks[d.getAs<FlatSymbolRefAttr>("bank").getValue()] = d;
  }
  auto modelInt = [&](StringRef key) -> int64_t {
    auto v = modelAttr.getAs<IntegerAttr>(key);
    return v ? v.getInt() : 0;
  };

  // Runtime functions (moec_abi.h).
  b.setInsertionPointToEnd(module.getBody());
  Type ptr = LLVM::LLVMPointerType::get(ctx);
  auto declare = [&](StringRef name, TypeRange args, TypeRange results) {
    auto fn = func::FuncOp::create(b, loc, name,
                                   b.getFunctionType(args, results));
    fn.setPrivate();
    return fn;
  };
  barrierFn = declare("moec_rt_barrier", {ptr}, {});
  acquireFn = declare("moec_rt_expert_acquire",
                      {ptr, b.getI32Type(), b.getI32Type()}, {b.getI64Type()});
  tryAcquireFn = declare("moec_rt_expert_try_acquire",
                         {ptr, b.getI32Type(), b.getI32Type()},
                         {b.getI64Type()});
  releaseFn = declare("moec_rt_expert_release",
                      {ptr, b.getI32Type(), b.getI32Type()}, {});
  routingFn = declare("moec_rt_routing",
                      {ptr, b.getI32Type(), b.getI64Type(), b.getI64Type(),
                       b.getI64Type(), b.getI64Type()},
                      {});
  predictFn = declare("moec_rt_predict",
                      {ptr, b.getI32Type(), b.getI64Type(), b.getI64Type(),
                       b.getI64Type()},
                      {});
  if (options.instrument) {
    if (options.int8Activations)
      return module.emitError("instrumented code needs f32 activations");
    observeInputFn = declare("moec_rt_observe_input",
                             {ptr, ptr, b.getI64Type(), b.getI64Type(),
                              b.getI64Type(), b.getI64Type()},
                             {});
    observeExpertsFn = declare("moec_rt_observe_experts",
                               {ptr, b.getI32Type(), b.getI64Type(),
                                b.getI64Type(), b.getI64Type(), b.getI64Type(),
                                b.getI64Type()},
                               {});
  }

  // The schedule.
  auto bytes = MemRefType::get({ShapedType::kDynamic}, b.getI8Type());
  auto i32s = MemRefType::get({ShapedType::kDynamic}, b.getI32Type());
  auto f32s = MemRefType::get({ShapedType::kDynamic}, b.getF32Type());
  Type i64 = b.getI64Type();
  schedule = func::FuncOp::create(
      b, loc, "moec_model_forward",
      b.getFunctionType({ptr, i64, i64, i64, i64, i32s, i32s, f32s, bytes,
                         bytes, bytes, bytes},
                        {}));
  schedule->setAttr("llvm.emit_c_interface", b.getUnitAttr());
  Block *entry = schedule.addEntryBlock();
  b.setInsertionPointToStart(entry);
  auto args = entry->getArguments();
  ctxArg = args[0];
  auto toIndex = [&](Value v) {
    return arith::IndexCastOp::create(b, loc, b.getIndexType(), v);
  };
  threadIdx = toIndex(args[1]);
  threadCount = toIndex(args[2]);
  tokenCount = toIndex(args[3]);
  forwardFlags = args[4];
  tokensArg = args[5];
  positionsArg = args[6];
  logitsArg = args[7];
  residentArg = args[8];
  expertsArg = args[9];
  scratchArg = args[10];
  kvArg = args[11];
  auto view = [&](Value bytesArg, Type elem, int64_t elemBytes) {
    Value n = memref::DimOp::create(b, loc, bytesArg, 0);
    Value count = arith::DivUIOp::create(b, loc, n, idx(elemBytes));
    return memref::ViewOp::create(
        b, loc, MemRefType::get({ShapedType::kDynamic}, elem), bytesArg,
        idx(0), ValueRange{count});
  };
  scratchF32 = view(scratchArg, b.getF32Type(), 4);
  scratchI32 = view(scratchArg, b.getI32Type(), 4);
  scratchI64 = view(scratchArg, b.getI64Type(), 8);
  kvCache = options.f16KvCache ? view(kvArg, b.getF16Type(), 2)
                               : view(kvArg, b.getF32Type(), 4);
  claimsBase = arith::ConstantIndexOp::create(b, loc, 0);

  // Arguments of @forward: tokens, positions, then the KV caches.
  Block &body = forward.getBody().front();
  buffers[body.getArgument(0)] = {Tokens, 0, options.maxBatch};
  buffers[body.getArgument(1)] = {Positions, 0, options.maxBatch};
  for (unsigned i = 2; i < body.getNumArguments(); ++i) {
    auto type = cast<RankedTensorType>(body.getArgument(i).getType());
    int64_t n = type.getNumElements();
    buffers[body.getArgument(i)] = {KV, kvElements, n};
    kvElements += n;
  }
  auto ret = cast<func::ReturnOp>(body.getTerminator());
  logitsResult = ret.getOperand(0);

  // Unless every token's logits or every token's routing are asked for
  // (any of moec_forward_flags_e), the last layer computes past its keys
  // and values for the last token only.
  allRows = {idx(0), tokenCount, /*all=*/true};
  lastRows = allRows;
  findLastTokenOps(body);
  if (!lastTokenOps.empty()) {
    Value every = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::ne, forwardFlags,
        arith::ConstantIntOp::create(b, loc, 0, 64));
    lastRows = {arith::SelectOp::create(
                    b, loc, every, idx(0),
                    arith::SubIOp::create(b, loc, tokenCount, idx(1))),
                arith::SelectOp::create(b, loc, every, tokenCount, idx(1)),
                /*all=*/false};
  }

  // Liveness: the last op that reads each buffer-owning value.
  DenseMap<Operation *, unsigned> position;
  DenseMap<Value, unsigned> lastUse;
  unsigned n = 0;
  for (Operation &op : body) {
    position[&op] = n;
    for (Value v : op.getOperands())
      lastUse[root(v)] = n;
    ++n;
  }

  for (Operation &op : body) {
    opRows = lastTokenOps.count(&op) ? lastRows : allRows;
    if (!fusedAway.count(&op) && failed(lower(&op)))
      return failure();
    // Free what died here (values whose last reader this was) and the
    // op's temporaries; the barrier logic keeps reuse safe.
    unsigned at = position[&op];
    for (Value v : op.getOperands()) {
      Value r = root(v);
      auto it = buffers.find(r);
      if (lastUse[r] != at)
        continue;
      if (it != buffers.end() && it->second.space == Scratch) {
        allocator.release(it->second.offset, it->second.size);
        buffers.erase(it);
      }
      auto q = quantizedCache.find(r);
      if (q != quantizedCache.end()) {
        allocator.release(q->second.offset, q->second.size);
        quantizedCache.erase(q);
      }
      llvm::erase_if(ropeAngles, [&](const RopeAngles &a) {
        if (a.positions != r)
          return false;
        allocator.release(a.table.offset, a.table.size);
        return true;
      });
    }
    for (Buffer &t : temporaries)
      allocator.release(t.offset, t.size);
    temporaries.clear();
  }
  func::ReturnOp::create(b, loc);
  placeClaimCounters();

  // The info table.
  b.setInsertionPointToEnd(module.getBody());
  int64_t vocab = modelInt("vocab_size");
  SmallVector<int64_t> info(MOEC_INFO_COUNT, 0);
  info[MOEC_INFO_ABI_MAJOR] = MOEC_ABI_VERSION_MAJOR;
  info[MOEC_INFO_ABI_MINOR] = MOEC_ABI_VERSION_MINOR;
  info[MOEC_INFO_LAYER_COUNT] = modelInt("layers");
  info[MOEC_INFO_EXPERT_COUNT] = modelInt("experts");
  info[MOEC_INFO_EXPERTS_USED] = modelInt("experts_used");
  info[MOEC_INFO_VOCAB_SIZE] = vocab;
  info[MOEC_INFO_HIDDEN_SIZE] = modelInt("hidden_size");
  info[MOEC_INFO_CONTEXT_LENGTH] = modelInt("context_length");
  info[MOEC_INFO_MAX_BATCH] = options.maxBatch;
  info[MOEC_INFO_SCRATCH_BYTES] = allocator.highWater() * 4;
  info[MOEC_INFO_KV_BYTES] = kvElements * (options.f16KvCache ? 2 : 4);
  info[MOEC_INFO_RESIDENT_BYTES] =
      layoutAttr.getAs<IntegerAttr>("resident_bytes").getInt();
  info[MOEC_INFO_LAYOUT_HASH] = layoutAttr.getAs<IntegerAttr>("hash").getInt();
  // Only code that holds tile instructions asks the OS for their state.
  bool usesTiles = false;
  module.walk([&](Operation *op) {
    if (isa_and_nonnull<amx::AMXDialect>(op->getDialect()))
      usesTiles = true;
  });
  if (usesTiles)
    info[MOEC_INFO_CPU_STATE] |= MOEC_CPU_STATE_AMX_TILE;
  auto infoType = RankedTensorType::get({MOEC_INFO_COUNT}, b.getI64Type());
  LLVM::GlobalOp::create(
      b, loc, LLVM::LLVMArrayType::get(b.getI64Type(), MOEC_INFO_COUNT),
      /*isConstant=*/true, LLVM::Linkage::External, "moec_model_info",
      DenseElementsAttr::get(infoType, ArrayRef(info)));

  // The tensor-level program is now the schedule.
  forward.erase();
  for (auto bank : llvm::make_early_inc_range(module.getOps<moe::ExpertsOp>()))
    bank.erase();
  return success();
}

void ScheduleBuilder::placeClaimCounters() {
  if (claimSites == 0)
    return;
  int64_t base = allocator.reserveTop(16 * claimSites);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(claimsBase);
  claimsBase->setAttr("value", b.getIndexAttr(base));
  // Zeroed before the first kernel of every forward call; the barrier
  // orders the stores before any thread's first claim.
  b.setInsertionPointAfter(claimsBase);
  onThread0([&] {
    Value zero = arith::ConstantIntOp::create(b, loc, 0, 32);
    scf::ForOp::create(
        b, loc, idx(0), idx(claimSites), idx(1), ValueRange{},
        [&](OpBuilder &nb, Location l, Value i, ValueRange) {
          Value at = arith::AddIOp::create(
              nb, l, claimsBase,
              arith::MulIOp::create(nb, l, i,
                                    arith::ConstantIndexOp::create(nb, l, 16)));
          memref::StoreOp::create(nb, l, zero, scratchI32, ValueRange{at});
          scf::YieldOp::create(nb, l);
        });
  });
  func::CallOp::create(b, loc, barrierFn, ValueRange{ctxArg});
}

void ScheduleBuilder::findLastTokenOps(Block &body) {
  // Instrumented code observes the inputs of every token.
  if (options.instrument)
    return;
  // Whether `use` reads the last token's rows of its value only: the
  // output head's input (the logits of one token), or an operand of an op
  // that computes the last token only, except the keys and values that
  // attention stores for every token.
  auto readsLastRows = [&](OpOperand &use) {
    Operation *user = use.getOwner();
    if (isa<tensor::DimOp>(user))
      return true;
    if (auto mm = dyn_cast<qnt::MatmulOp>(user);
        mm && mm.getResult() == logitsResult)
      return &use == &mm.getInputMutable();
    if (auto attention = dyn_cast<moe::AttentionOp>(user))
      return lastTokenOps.count(user) && &use == &attention.getQueryMutable();
    return lastTokenOps.count(user) > 0;
  };
  // Users come after their producers: a backward walk decides them first.
  for (Operation &op : llvm::reverse(body)) {
    if (!isa<moe::RmsNormOp, qnt::MatmulOp, moe::RopeOp, moe::AttentionOp,
             moe::RouteOp, moe::DispatchOp, moe::ExpertFfnOp, moe::CombineOp,
             moe::SharedExpertOp, arith::AddFOp, tensor::ExpandShapeOp,
             tensor::CollapseShapeOp>(op))
      continue;
    if (auto mm = dyn_cast<qnt::MatmulOp>(op);
        mm && mm.getResult() == logitsResult)
      continue;
    // Attention's caches are written for every token by its key/value
    // store, whatever rows its output has.
    SmallVector<Value> outputs(op.getResults());
    if (auto attention = dyn_cast<moe::AttentionOp>(op))
      outputs = {attention.getResult()};
    bool lastOnly = true, used = false;
    for (Value v : outputs)
      for (OpOperand &use : v.getUses()) {
        used = true;
        lastOnly &= readsLastRows(use);
      }
    if (used && lastOnly)
      lastTokenOps.insert(&op);
  }
}

LogicalResult ScheduleBuilder::lower(Operation *op) {
  if (auto o = dyn_cast<moe::EmbedOp>(op))
    return lowerEmbed(o);
  if (auto o = dyn_cast<moe::RmsNormOp>(op))
    return lowerRmsNorm(o);
  if (auto o = dyn_cast<qnt::MatmulOp>(op))
    return lowerMatmul(o);
  if (auto o = dyn_cast<moe::RopeOp>(op))
    return lowerRope(o);
  if (auto o = dyn_cast<moe::AttentionOp>(op))
    return lowerAttention(o);
  if (auto o = dyn_cast<moe::RouteOp>(op))
    return lowerRoute(o);
  if (auto o = dyn_cast<moe::DispatchOp>(op))
    return lowerDispatch(o);
  if (auto o = dyn_cast<moe::ExpertFfnOp>(op))
    return lowerExpertFfn(o);
  if (auto o = dyn_cast<moe::CombineOp>(op))
    return lowerCombine(o);
  if (auto o = dyn_cast<moe::SharedExpertOp>(op))
    return lowerSharedExpert(o);
  if (auto o = dyn_cast<arith::AddFOp>(op))
    return lowerAdd(o);
  // Views and shape bookkeeping: buffers follow their source (root()).
  if (isa<qnt::WeightOp, tensor::ExpandShapeOp, tensor::CollapseShapeOp,
          tensor::DimOp, arith::ConstantOp, func::ReturnOp>(op))
    return success();
  return op->emitOpError("is not supported by the CPU backend yet");
}

LogicalResult ScheduleBuilder::lowerEmbed(moe::EmbedOp op) {
  auto table = residentOfRef(op, op.getTable());
  if (failed(table))
    return failure();
  int64_t dim = cast<ShapedType>(op.getType()).getShape().back();
  if (failed(checkBlocks(op, table->format, dim)))
    return failure();
  if (table->format.interleave != 1)
    return op.emitOpError("the embedding lookup reads rows in GGUF's "
                          "row-major layout, not interleaved by ")
           << table->format.interleave;
  auto tokens = bufferOf(op, op.getTokens());
  if (failed(tokens))
    return failure();
  Buffer out = allocate(op.getResult(), options.maxBatch * dim);
  access({*tokens}, {out});
  call(lib.embed(table->format, dim),
       {residentArg, idx(table->offset), tokensArg, scratchF32, off(out),
        tokenCount, threadIdx, threadCount});
  return success();
}

LogicalResult ScheduleBuilder::lowerRmsNorm(moe::RmsNormOp op) {
  auto type = cast<RankedTensorType>(op.getType());
  int64_t dim = type.getShape().back();
  int64_t perToken = 1;
  for (int64_t d : type.getShape().drop_front())
    perToken *= d;
  auto weight = residentOfValue(op, op.getWeight());
  if (failed(weight) || failed(checkWidth(op, dim, "RMSNorm width")))
    return failure();
  if (weight->format.kind == WeightFormat::Kind::Quantized)
    return op.emitOpError("RMSNorm weights must be f32, f16 or bf16");
  auto in = bufferOf(op, op.getInput());
  if (failed(in))
    return failure();
  RmsNormSpec spec{dim, weight->format, op.getEpsilon().convertToDouble()};

  // Fused into its consumers: when every user is a matmul on 8-bit
  // activations, the norm writes their quantized input directly.
  bool allInt8 = perToken == dim && dim % 32 == 0 && !op->use_empty();
  for (Operation *user : op->getUsers()) {
    auto mm = dyn_cast<qnt::MatmulOp>(user);
    auto w = mm ? mm.getWeights().getDefiningOp<qnt::WeightOp>()
                : qnt::WeightOp();
    std::optional<WeightFormat> f =
        w ? WeightFormat::get(w.getType()) : std::nullopt;
    allInt8 &= mm && mm.getInput() == op.getResult() && f &&
               useInt8(*f, dim);
  }
  if (allInt8) {
    int64_t elements =
        (options.maxBatch * KernelLibrary::getQuantizedRowBytes(dim) + 3) / 4;
    Buffer q{Scratch, allocator.allocate(elements), elements};
    quantizedCache[op.getResult()] = q;
    access({*in}, {q});
    call(lib.rmsNormQuantize(spec),
         {scratchF32, at(*in, dim), scratchArg, quantizedAt(q, dim, opRows),
          residentArg, idx(weight->offset), opRows.count, threadIdx,
          threadCount});
    return success();
  }

  Buffer out = allocate(op.getResult(), options.maxBatch * perToken);
  access({*in}, {out});
  Value rows = mulIdx(opRows.count, perToken / dim);
  call(lib.rmsNorm(spec),
       {scratchF32, at(*in, perToken), scratchF32, at(out, perToken),
        residentArg, idx(weight->offset), rows, threadIdx, threadCount});
  return success();
}

LogicalResult ScheduleBuilder::lowerMatmul(qnt::MatmulOp op) {
  auto weight = residentOfValue(op, op.getWeights());
  if (failed(weight))
    return failure();
  auto wShape = weightShape(op.getWeights().getType());
  MatmulSpec spec;
  spec.format = weight->format;
  spec.k = wShape.back();
  spec.n = 1;
  for (int64_t d : wShape.drop_back())
    spec.n *= d;
  if (failed(checkBlocks(op, spec.format, spec.k)))
    return failure();
  // Activations already in 8-bit form (a fused RMSNorm wrote them) need no
  // f32 buffer.
  auto fusedQuantized = quantizedCache.find(root(op.getInput()));
  bool int8 = useInt8(spec.format, spec.k);
  FailureOr<Buffer> x = failure();
  if (int8 && fusedQuantized != quantizedCache.end())
    x = fusedQuantized->second;
  else
    x = bufferOf(op, op.getInput());
  if (failed(x))
    return failure();
  SmallVector<Value> biasArgs;
  if (Value bias = op.getBias()) {
    auto bw = residentOfValue(op, bias);
    if (failed(bw))
      return failure();
    if (bw->format.kind != WeightFormat::Kind::F32)
      return op.emitOpError("bias must be stored as f32");
    spec.bias = true;
    biasArgs = {residentArg, idx(bw->offset)};
  }

  if (!int8)
    observeInput(op.getWeights().getDefiningOp<qnt::WeightOp>().getName(), *x,
                 tokenCount, spec.k);

  // The activations the kernel reads: f32, or their 8-bit form.
  Buffer xIn = *x;
  Value xMem = scratchF32, xOff = at(*x, spec.k);
  int64_t xRow = spec.k;
  if (int8) {
    spec.int8Activations = true;
    xIn = quantized(root(op.getInput()), *x, spec.k, rowsOf(op.getInput()),
                    options.maxBatch);
    xMem = scratchArg;
    xOff = quantizedAt(xIn, spec.k, opRows);
    xRow = KernelLibrary::getQuantizedRowBytes(spec.k);
  }

  // The model's output: straight into the logits buffer, for every token or
  // only the last one.
  if (op.getResult() == logitsResult) {
    Buffer out{Logits, 0, options.maxBatch * spec.n};
    access({xIn}, {out});
    func::FuncOp fn = lib.matmul(spec);
    Value all = hasForwardFlag(MOEC_FORWARD_ALL_LOGITS);
    Value lastRow = mulIdx(arith::SubIOp::create(b, loc, tokenCount, idx(1)),
                           xRow);
    Value rowOff = arith::SelectOp::create(b, loc, all, xOff,
                                           addIdx(xOff, lastRow));
    Value rows = arith::SelectOp::create(b, loc, all, tokenCount, idx(1));
    SmallVector<Value> args = {residentArg, idx(weight->offset), xMem,
                               rowOff, logitsArg, idx(0)};
    args.append(biasArgs);
    args.append({rows, threadIdx, threadCount});
    args.append(claimArgs());
    call(fn, args);
    return success();
  }

  auto [add, residual] = fusableResidual(op.getResult());
  SmallVector<Value> accArgs;
  SmallVector<Buffer> reads = {xIn};
  Value resultValue = op.getResult();
  if (add) {
    auto r = bufferOf(op, residual);
    if (failed(r))
      return failure();
    spec.accumulate = true;
    accArgs = {scratchF32, at(*r, spec.n)};
    reads.push_back(*r);
    fusedAway.insert(add);
    resultValue = add.getResult();
  }
  Buffer out = allocate(resultValue, options.maxBatch * spec.n);
  access(reads, {out});
  SmallVector<Value> args = {residentArg, idx(weight->offset), xMem, xOff,
                             scratchF32, at(out, spec.n)};
  args.append(accArgs);
  args.append(biasArgs);
  args.append({opRows.count, threadIdx, threadCount});
  args.append(claimArgs());
  call(lib.matmul(spec), args);
  return success();
}

LogicalResult ScheduleBuilder::lowerRope(moe::RopeOp op) {
  auto shape = cast<ShapedType>(op.getType()).getShape();
  RopeSpec spec{shape[1], shape[2],
                op.getStyle() == moe::RopeStyle::NeoX,
                op.getTheta().convertToDouble()};
  auto in = bufferOf(op, op.getInput());
  auto pos = bufferOf(op, op.getPositions());
  if (failed(in) || failed(pos))
    return failure();
  // The positions' angles, computed by the first RoPE of the forward call
  // that needs them, for every row, and read by the others.
  Value positions = root(op.getPositions());
  auto found = llvm::find_if(ropeAngles, [&](const RopeAngles &a) {
    return a.positions == positions && a.headDim == spec.headDim &&
           a.theta == spec.theta;
  });
  if (found == ropeAngles.end()) {
    int64_t size = options.maxBatch * spec.headDim;
    Buffer table{Scratch, allocator.allocate(size), size};
    access({*pos}, {table});
    call(lib.ropeAngles(spec.headDim, spec.theta),
         {scratchF32, off(table), positionsArg, allRows.start, allRows.count,
          threadIdx, threadCount});
    ropeAngles.push_back({positions, spec.headDim, spec.theta, table});
    found = std::prev(ropeAngles.end());
  }
  Buffer table = found->table;
  Buffer out = allocate(op.getResult(), options.maxBatch * spec.heads * spec.headDim);
  access({*in, *pos, table}, {out});
  int64_t width = spec.heads * spec.headDim;
  call(lib.rope(spec),
       {scratchF32, at(*in, width), scratchF32, at(out, width), scratchF32,
        at(table, spec.headDim), opRows.count, threadIdx, threadCount});
  return success();
}

LogicalResult ScheduleBuilder::lowerAttention(moe::AttentionOp op) {
  auto qShape = cast<ShapedType>(op.getQuery().getType()).getShape();
  auto kShape = cast<ShapedType>(op.getKey().getType()).getShape();
  auto cacheShape = cast<ShapedType>(op.getKCache().getType()).getShape();
  if (ShapedType::isDynamic(cacheShape[0]))
    return op.emitOpError("the CPU backend needs a KV cache of a static "
                          "context size");
  AttentionSpec spec{qShape[1], kShape[1], qShape[2],
                     op.getScale().convertToDouble(), cacheShape[0],
                     options.f16KvCache};
  if (failed(checkWidth(op, spec.headDim, "head size")))
    return failure();
  auto q = bufferOf(op, op.getQuery());
  auto k = bufferOf(op, op.getKey());
  auto v = bufferOf(op, op.getValue());
  auto kc = bufferOf(op, op.getKCache());
  auto vc = bufferOf(op, op.getVCache());
  auto pos = bufferOf(op, op.getPositions());
  if (failed(q) || failed(k) || failed(v) || failed(kc) || failed(vc) ||
      failed(pos))
    return failure();
  buffers[op.getNewKCache()] = *kc;
  buffers[op.getNewVCache()] = *vc;
  access({*k, *v, *pos}, {*kc, *vc});
  call(lib.kvStore(spec),
       {scratchF32, off(*k), scratchF32, off(*v), kvCache, off(*kc), off(*vc),
        positionsArg, tokenCount, threadIdx, threadCount});
  Buffer out =
      allocate(op.getResult(), options.maxBatch * spec.heads * spec.headDim);
  access({*q, *kc, *vc, *pos}, {out});
  int64_t width = spec.heads * spec.headDim;
  call(lib.attention(spec),
       {scratchF32, at(*q, width), kvCache, off(*kc), off(*vc), scratchF32,
        at(out, width), positionsArg, opRows.start, opRows.count, threadIdx,
        threadCount});
  return success();
}

LogicalResult ScheduleBuilder::lowerRoute(moe::RouteOp op) {
  if (op.getScoring() != moe::ScoringFunc::Softmax || op.getBias() ||
      op.getNGroup() || op.getScale())
    return op.emitOpError(
        "the CPU backend routes with softmax scoring only so far (no "
        "selection bias, groups or scaling)");
  int64_t experts = cast<ShapedType>(op.getLogits().getType()).getShape().back();
  int64_t k = op.getK();
  auto logits = bufferOf(op, op.getLogits());
  if (failed(logits))
    return failure();
  Buffer ids = allocate(op.getIds(), options.maxBatch * k);
  Buffer weights = allocate(op.getWeights(), options.maxBatch * k);
  Buffer probs = temporary(options.maxBatch * experts);
  access({*logits}, {ids, weights, probs});
  call(lib.route({experts, k, op.getNormalize()}),
       {scratchF32, at(*logits, experts), scratchI32, at(ids, k), scratchF32,
        at(weights, k), scratchF32, at(probs, experts), opRows.count,
        threadIdx, threadCount});

  // Thread 0 tells the runtime where each token goes (moec_rt_routing),
  // naming the layer of the expert bank the ids are dispatched to.
  std::optional<int64_t> layer = layerOfRoute(op);
  if (!layer)
    return op.emitOpError("routes to no expert bank of moe.layout");
  access({ids, weights}, {});
  onThread0([&] {
    auto i64 = [&](Value v) {
      return arith::IndexCastOp::create(b, loc, b.getI64Type(), v);
    };
    Value l = arith::ConstantIntOp::create(b, loc, *layer, 32);
    Value kv = arith::ConstantIntOp::create(b, loc, k, 64);
    func::CallOp::create(b, loc, routingFn,
                         ValueRange{ctxArg, l, i64(opRows.count), kv,
                                    i64(rowsAt(ids.offset * 4, 4 * k, opRows)),
                                    i64(rowsAt(weights.offset * 4, 4 * k,
                                                opRows))});
  });
  return predictNextLayer(op, *layer);
}

std::optional<int64_t> ScheduleBuilder::layerOfRoute(moe::RouteOp op) {
  for (Operation *user : op.getIds().getUsers())
    if (auto dispatch = dyn_cast<moe::DispatchOp>(user))
      for (Operation *consumer : dispatch.getOffsets().getUsers())
        if (auto ffn = dyn_cast<moe::ExpertFfnOp>(consumer))
          if (DictionaryAttr entry = banks.lookup(ffn.getExperts()))
            return entry.getAs<IntegerAttr>("layer").getInt();
  return std::nullopt;
}

/// Pre-gating: the next MoE layer's router applied to this layer's router
/// input predicts which experts the next layer will want (the hidden state
/// changes little from one layer to the next), reported to the runtime
/// (moec_rt_predict) so that it reads them while this layer computes. The
/// prediction never changes results: only what is read early.
LogicalResult ScheduleBuilder::predictNextLayer(moe::RouteOp op,
                                                int64_t /*layer*/) {
  auto here = op.getLogits().getDefiningOp<qnt::MatmulOp>();
  if (!here)
    return success();
  moe::RouteOp next;
  for (Operation *o = op->getNextNode(); o && !next; o = o->getNextNode())
    next = dyn_cast<moe::RouteOp>(o);
  std::optional<int64_t> nextLayer = next ? layerOfRoute(next) : std::nullopt;
  if (!next || next.getK() <= 0 || !nextLayer)
    return success();
  auto router = next.getLogits().getDefiningOp<qnt::MatmulOp>();
  if (!router || router.getBias())
    return success();
  auto weight = residentOfValue(router, router.getWeights());
  auto x = bufferOf(here, here.getInput());
  if (failed(weight) || failed(x))
    return failure();
  auto wShape = weightShape(router.getWeights().getType());
  int64_t experts = wShape.front();
  // The rows the next layer routes: its last token's alone when it
  // computes only that one.
  RowRange r = lastTokenOps.count(next) ? lastRows : opRows;
  // The next layer's k, plus the extra experts asked for (recall bought
  // with precision), at most every expert.
  int64_t k = std::min<int64_t>(experts, next.getK() + options.prefetchExtra);
  MatmulSpec spec;
  spec.format = weight->format;
  spec.n = experts;
  spec.k = wShape.back();
  if (spec.k != cast<ShapedType>(here.getInput().getType()).getShape().back() ||
      useInt8(spec.format, spec.k) ||
      failed(checkBlocks(router, spec.format, spec.k)))
    return success(); // no prediction rather than a wrong one
  // Only a runtime that streams experts reads predictions ahead
  // (MOEC_FORWARD_PREDICT); others skip the router's second pass. All
  // threads take the same branch. What the branch reads and writes stays
  // pending after it, as if it ran, with what was pending before it, as if
  // it did not: later barriers cover both.
  auto branch = scf::IfOp::create(b, loc,
                                  hasForwardFlag(MOEC_FORWARD_PREDICT),
                                  /*withElseRegion=*/false);
  SmallVector<Buffer> readBefore = readSinceBarrier,
                      writtenBefore = writtenSinceBarrier;
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&branch.getThenRegion().front());
  Buffer logits = temporary(options.maxBatch * experts);
  access({*x}, {logits});
  call(lib.matmul(spec), {residentArg, idx(weight->offset), scratchF32,
                          at(*x, spec.k, r), scratchF32,
                          at(logits, experts, r), r.count, threadIdx,
                          threadCount, claims(), nextClaim()});
  Buffer ids = temporary(options.maxBatch * k);
  Buffer weights = temporary(options.maxBatch * k);
  Buffer probs = temporary(options.maxBatch * experts);
  access({logits}, {ids, weights, probs});
  call(lib.route({experts, k, next.getNormalize()}),
       {scratchF32, at(logits, experts, r), scratchI32, at(ids, k, r),
        scratchF32, at(weights, k, r), scratchF32, at(probs, experts, r),
        r.count, threadIdx, threadCount});
  access({ids}, {});
  onThread0([&] {
    Value l = arith::ConstantIntOp::create(b, loc, *nextLayer, 32);
    Value kv = arith::ConstantIntOp::create(b, loc, k, 64);
    func::CallOp::create(
        b, loc, predictFn,
        ValueRange{ctxArg, l,
                   arith::IndexCastOp::create(b, loc, b.getI64Type(),
                                              r.count),
                   kv,
                   arith::IndexCastOp::create(
                       b, loc, b.getI64Type(),
                       rowsAt(ids.offset * 4, 4 * k, r))});
  });
  readSinceBarrier.append(readBefore.begin(), readBefore.end());
  writtenSinceBarrier.append(writtenBefore.begin(), writtenBefore.end());
  return success();
}

LogicalResult ScheduleBuilder::lowerDispatch(moe::DispatchOp op) {
  int64_t dim = cast<ShapedType>(op.getInput().getType()).getShape().back();
  int64_t k = cast<ShapedType>(op.getIds().getType()).getShape().back();
  int64_t experts =
      cast<ShapedType>(op.getOffsets().getType()).getShape().front() - 1;
  if (failed(checkWidth(op, dim, "hidden size")))
    return failure();
  auto x = bufferOf(op, op.getInput());
  auto ids = bufferOf(op, op.getIds());
  if (failed(x) || failed(ids))
    return failure();
  int64_t pairs = options.maxBatch * k;
  // slots | inverse (pair -> row, what combine reads) | per-expert cursor.
  Buffer slots = allocate(op.getSlots(), 2 * pairs + experts);
  Buffer offsets = allocate(op.getOffsets(), experts + 1);
  Buffer rows = allocate(op.getRows(), pairs * dim);
  access({*ids}, {slots, offsets});
  onThread0([&] {
    call(lib.dispatchPlan(experts, k),
         {scratchI32, at(*ids, k), scratchI32, off(offsets), scratchI32,
          off(slots), scratchI32, idx(slots.offset + pairs), scratchI32,
          idx(slots.offset + 2 * pairs), opRows.count});
  });
  if (gathersQuantizedRows(op, dim)) {
    // Each token's row quantized once and its bytes gathered, rather than
    // f32 rows gathered and each of their k copies quantized (a decode
    // step quantized 8 copies of one row). The expert kernels find the
    // gathered bytes as the rows' 8-bit form; the f32 rows stay unwritten.
    Buffer xQ = quantized(root(op.getInput()), *x, dim, opRows,
                          options.maxBatch);
    int64_t elements =
        (pairs * KernelLibrary::getQuantizedRowBytes(dim) + 3) / 4;
    Buffer rowsQ{Scratch, allocator.allocate(elements), elements};
    quantizedCache[root(op.getRows())] = rowsQ;
    access({xQ, slots}, {rowsQ});
    call(lib.dispatchGatherQuantized(dim, k),
         {scratchArg, quantizedAt(xQ, dim, opRows), scratchI32, off(slots),
          scratchArg, idx(rowsQ.offset * 4), opRows.count, threadIdx,
          threadCount});
    return success();
  }
  access({*x, slots}, {rows});
  call(lib.dispatchGather(dim, k),
       {scratchF32, at(*x, dim), scratchI32, off(slots), scratchF32, off(rows),
        opRows.count, threadIdx, threadCount});
  return success();
}

bool ScheduleBuilder::gathersQuantizedRows(moe::DispatchOp op,
                                           int64_t hidden) {
  // Only where the rows' one reader is an expert FFN whose every group runs
  // gate/up on 8-bit activations (instrumented code observes the f32 rows).
  if (options.instrument || !op.getRows().hasOneUse())
    return false;
  auto ffn = dyn_cast<moe::ExpertFfnOp>(*op.getRows().getUsers().begin());
  if (!ffn || ffn.getRows() != op.getRows())
    return false;
  auto bank = module.lookupSymbol<moe::ExpertsOp>(ffn.getExperts());
  DictionaryAttr entry = banks.lookup(ffn.getExperts());
  if (!bank || !entry)
    return false;
  auto groupsAttr = entry.getAs<ArrayAttr>("groups");
  if (!groupsAttr || groupsAttr.empty())
    return false;
  for (Attribute a : groupsAttr) {
    auto g = dyn_cast<DictionaryAttr>(a);
    auto members = g ? g.getAs<DenseI64ArrayAttr>("members") : nullptr;
    if (!members || members.empty())
      return false;
    std::optional<WeightFormat> format =
        WeightFormat::get(bank.getExpertType(0, members.asArrayRef().front()));
    if (!format || !useInt8(*format, hidden))
      return false;
  }
  return true;
}

LogicalResult ScheduleBuilder::lowerExpertFfn(moe::ExpertFfnOp op) {
  auto bank = module.lookupSymbol<moe::ExpertsOp>(op.getExperts());
  DictionaryAttr entry = banks.lookup(op.getExperts());
  if (!bank || !entry)
    return op.emitOpError("expert bank ")
           << op.getExperts() << " is not in moe.layout";
  if (bank.getActivation().getKind() != moe::ActivationKind::SwiGLU ||
      bank.getGateBias() || bank.getUpBias() || bank.getDownBias())
    return op.emitOpError(
        "the CPU backend runs SwiGLU experts without biases only so far");
  auto gShape = weightShape(bank.getGate().getType());
  int64_t experts = gShape[0], ffn = gShape[1], hidden = gShape[2];
  int64_t layer = entry.getAs<IntegerAttr>("layer").getInt();
  // The bank's format groups (one unless its experts mix formats): each
  // runs its own gate/up and down kernels over its members, on the one
  // dispatch of rows.
  struct Group {
    MatmulSpec gateUp, down;
    SmallVector<int64_t> members; // empty: every expert
    int64_t gate, up, downAt;
  };
  SmallVector<Group> groups;
  auto groupsAttr = entry.getAs<ArrayAttr>("groups");
  if (!groupsAttr || groupsAttr.empty())
    return op.emitOpError("moe.layout has no expert groups for ") << bank;
  for (Attribute a : groupsAttr) {
    auto g = cast<DictionaryAttr>(a);
    auto membersAttr = g.getAs<DenseI64ArrayAttr>("members");
    if (!membersAttr || membersAttr.empty())
      return op.emitOpError("an expert group of moe.layout lists no experts");
    ArrayRef<int64_t> members = membersAttr.asArrayRef();
    std::optional<WeightFormat> formats[3];
    for (unsigned p = 0; p < 3; ++p) {
      Type type = bank.getExpertType(p, members.front());
      formats[p] = WeightFormat::get(type);
      if (!formats[p])
        return op.emitOpError("expert weights of a format the CPU backend "
                              "does not decode: ")
               << type;
      for (int64_t x : members)
        if (x < 0 || x >= experts || bank.getExpertType(p, x) != type)
          return op.emitOpError("moe.layout groups expert ")
                 << x << " with expert " << members.front()
                 << ", but their types differ";
    }
    if (formats[0]->name() != formats[1]->name())
      return op.emitOpError("gate and up projections of different formats (")
             << formats[0]->name() << ", " << formats[1]->name()
             << ") are not fused yet";
    if (failed(checkBlocks(op, *formats[0], hidden)) ||
        failed(checkBlocks(op, *formats[2], ffn)))
      return failure();
    Group group{MatmulSpec{*formats[0], ffn, hidden, /*swiglu=*/true},
                MatmulSpec{*formats[2], hidden, ffn},
                {},
                g.getAs<IntegerAttr>("gate").getInt(),
                g.getAs<IntegerAttr>("up").getInt(),
                g.getAs<IntegerAttr>("down").getInt()};
    if (groupsAttr.size() > 1)
      group.members.assign(members.begin(), members.end());
    groups.push_back(std::move(group));
  }
  auto rows = bufferOf(op, op.getRows());
  auto offsets = bufferOf(op, op.getOffsets());
  if (failed(rows) || failed(offsets))
    return failure();
  int64_t maxRows = rows->size / hidden;

  // Thread 0 takes the extents of the experts with rows that are in memory
  // now (try-acquire) and counts the others, whose reads are in flight
  // (streaming); every thread computes on the ones taken, then thread 0
  // waits for the rest and the threads compute those. An expert's rows
  // depend on it alone, so the split does not change results. Instrumented
  // code waits for all at once: its observations take each input whole.
  // extents: i64 per expert (-1: not in this pass), then the i32 count of
  // experts left for the second pass.
  Buffer extents = temporary(2 * experts + 2);
  Value pendingAt = idx(extents.offset + 2 * experts);
  auto i64c = [&](int64_t v) {
    return arith::ConstantIntOp::create(b, loc, v, 64).getResult();
  };
  auto extentAt = [&](Value e) {
    return addIdx(idx(extents.offset / 2), e);
  };
  access({*offsets}, {extents});
  onThread0([&] {
    memref::StoreOp::create(b, loc,
                            arith::ConstantIntOp::create(b, loc, 0, 32),
                            scratchI32, pendingAt);
    forEachExpertWithRows(*offsets, experts, [&](Value e) {
      Value l = arith::ConstantIntOp::create(b, loc, layer, 32);
      Value x = arith::IndexCastOp::create(b, loc, b.getI32Type(), e);
      Value extent =
          func::CallOp::create(b, loc,
                               options.instrument ? acquireFn : tryAcquireFn,
                               ValueRange{ctxArg, l, x})
              .getResult(0);
      memref::StoreOp::create(b, loc, extent, scratchI64, extentAt(e));
      Value missing = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                            extent, i64c(0));
      Value pending = memref::LoadOp::create(b, loc, scratchI32, pendingAt);
      Value more = arith::AddIOp::create(
          b, loc, pending,
          arith::ExtUIOp::create(b, loc, b.getI32Type(), missing));
      memref::StoreOp::create(b, loc, more, scratchI32, pendingAt);
    });
  });

  // Every routed row (tokens x k of them) is quantized once for the
  // groups' gate/up kernels on 8-bit activations, the SwiGLU output once
  // per pass for their down kernels.
  Value routedRows = mulIdx(opRows.count, maxRows / options.maxBatch);
  RowRange routed{idx(0), routedRows, /*all=*/true};
  bool int8GateUp = false, int8Down = false;
  for (Group &g : groups) {
    g.gateUp.int8Activations = useInt8(g.gateUp.format, hidden);
    g.down.int8Activations = useInt8(g.down.format, ffn);
    int8GateUp |= g.gateUp.int8Activations;
    int8Down |= g.down.int8Activations;
  }
  Buffer xQ = *rows;
  if (int8GateUp)
    xQ = quantized(root(op.getRows()), *rows, hidden, routed, maxRows);
  observeInput(bank.getGate().getName(), *rows, routedRows, hidden,
               &*offsets);
  observeInput(bank.getUp().getName(), *rows, routedRows, hidden, &*offsets);
  Buffer h = temporary(maxRows * ffn);
  Buffer hQ = h;
  if (int8Down) {
    int64_t elements =
        (maxRows * KernelLibrary::getQuantizedRowBytes(ffn) + 3) / 4;
    hQ = temporary(elements);
  }
  Buffer out = allocate(op.getResult(), maxRows * hidden);
  // The groups' kernels write the rows of their own members only: one
  // access covers them all, with no barrier between groups.
  auto computePass = [&](bool first) {
    access({xQ, *rows, *offsets, extents}, {h});
    for (const Group &g : groups) {
      bool q = g.gateUp.int8Activations;
      call(lib.expertMatmul(g.gateUp, experts, g.gate, g.up, g.members),
           {expertsArg, scratchI64, idx(extents.offset / 2), scratchI32,
            off(*offsets), q ? scratchArg : scratchF32,
            q ? idx(xQ.offset * 4) : off(*rows), scratchF32, off(h),
            threadIdx, threadCount, claims(), nextClaim()});
    }
    if (int8Down)
      quantizeInto(h, hQ, ffn, routed);
    else if (first)
      observeInput(bank.getDown().getName(), h, routedRows, ffn, &*offsets);
    access({hQ, h, *offsets, extents}, {out});
    for (const Group &g : groups) {
      bool q = g.down.int8Activations;
      call(lib.expertMatmul(g.down, experts, g.downAt, 0, g.members),
           {expertsArg, scratchI64, idx(extents.offset / 2), scratchI32,
            off(*offsets), q ? scratchArg : scratchF32,
            q ? idx(hQ.offset * 4) : off(h), scratchF32, off(out), threadIdx,
            threadCount, claims(), nextClaim()});
    }
  };
  computePass(/*first=*/true);
  if (options.instrument) {
    // The outputs by (token, choice): dispatch's inverse map.
    auto dispatch = op.getRows().getDefiningOp<moe::DispatchOp>();
    if (!dispatch)
      return op.emitOpError("instrumented code needs the rows of a "
                            "moe.dispatch");
    auto slots = bufferOf(op, dispatch.getSlots());
    if (failed(slots))
      return failure();
    int64_t k = cast<ShapedType>(dispatch.getIds().getType()).getShape().back();
    Buffer inverse{Scratch, slots->offset + options.maxBatch * k,
                   options.maxBatch * k};
    access({out, inverse}, {});
    onThread0([&] {
      auto i64 = [&](Value v) {
        return arith::IndexCastOp::create(b, loc, b.getI64Type(), v);
      };
      auto c64 = [&](int64_t v) {
        return arith::ConstantIntOp::create(b, loc, v, 64);
      };
      func::CallOp::create(
          b, loc, observeExpertsFn,
          ValueRange{ctxArg, arith::ConstantIntOp::create(b, loc, layer, 32),
                     i64(tokenCount), c64(k), c64(hidden),
                     i64(idx(out.offset * 4)), i64(idx(inverse.offset * 4))});
    });
  }


  // The second pass, when some reads were in flight: thread 0 waits for
  // them (acquire) and marks the first pass's experts done; every thread
  // reads the count after the barrier, so all take the same branch.
  barrier();
  access({extents}, {});
  Value pending = memref::LoadOp::create(b, loc, scratchI32, pendingAt);
  Value anyPending =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, pending,
                            arith::ConstantIntOp::create(b, loc, 0, 32));
  auto second = scf::IfOp::create(b, loc, anyPending, false);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&second.getThenRegion().front());
    onThread0([&] {
      forEachExpertWithRows(*offsets, experts, [&](Value e) {
        Value l = arith::ConstantIntOp::create(b, loc, layer, 32);
        Value x = arith::IndexCastOp::create(b, loc, b.getI32Type(), e);
        Value first = memref::LoadOp::create(b, loc, scratchI64, extentAt(e));
        Value missed = arith::CmpIOp::create(
            b, loc, arith::CmpIPredicate::slt, first, i64c(0));
        auto wait = scf::IfOp::create(b, loc, b.getI64Type(), missed, true);
        {
          OpBuilder::InsertionGuard g(b);
          b.setInsertionPointToStart(&wait.getThenRegion().front());
          Value extent =
              func::CallOp::create(b, loc, acquireFn, ValueRange{ctxArg, l, x})
                  .getResult(0);
          scf::YieldOp::create(b, loc, extent);
          b.setInsertionPointToStart(&wait.getElseRegion().front());
          scf::YieldOp::create(b, loc, i64c(-1));
        }
        memref::StoreOp::create(b, loc, wait.getResult(0), scratchI64,
                                extentAt(e));
      });
    });
    barrier();
    computePass(/*first=*/false);
    barrier();
  }
  // Both branches end at a barrier, the one that skips the second pass
  // with the count read since.
  readSinceBarrier.assign({extents});
  writtenSinceBarrier.clear();

  // Every thread is done with the extents: thread 0 gives them back.
  onThread0([&] {
    forEachExpertWithRows(*offsets, experts, [&](Value e) {
      Value l = arith::ConstantIntOp::create(b, loc, layer, 32);
      Value x = arith::IndexCastOp::create(b, loc, b.getI32Type(), e);
      func::CallOp::create(b, loc, releaseFn, ValueRange{ctxArg, l, x});
    });
  });
  return success();
}

LogicalResult ScheduleBuilder::lowerCombine(moe::CombineOp op) {
  int64_t dim = cast<ShapedType>(op.getType()).getShape().back();
  int64_t k = cast<ShapedType>(op.getWeights().getType()).getShape().back();
  auto y = bufferOf(op, op.getExpertOut());
  auto slots = bufferOf(op, op.getSlots());
  auto weights = bufferOf(op, op.getWeights());
  if (failed(y) || failed(slots) || failed(weights))
    return failure();
  int64_t pairs = options.maxBatch * k;
  Buffer inverse{Scratch, slots->offset + pairs, pairs};
  auto [add, residual] = fusableResidual(op.getResult());
  SmallVector<Value> resArgs;
  SmallVector<Buffer> reads = {*y, inverse, *weights};
  Value resultValue = op.getResult();
  if (add) {
    auto r = bufferOf(op, residual);
    if (failed(r))
      return failure();
    resArgs = {scratchF32, at(*r, dim)};
    reads.push_back(*r);
    fusedAway.insert(add);
    resultValue = add.getResult();
  }
  Buffer out = allocate(resultValue, options.maxBatch * dim);
  access(reads, {out});
  // Expert outputs and the inverse map are by (routed) pair, from 0.
  SmallVector<Value> args = {scratchF32, off(*y),         scratchI32,
                             off(inverse), scratchF32,    at(*weights, k),
                             scratchF32,   at(out, dim)};
  args.append(resArgs);
  args.append({opRows.count, threadIdx, threadCount});
  call(lib.combine(dim, k, bool(add)), args);
  return success();
}

LogicalResult ScheduleBuilder::lowerSharedExpert(moe::SharedExpertOp op) {
  if (op.getActivation().getKind() != moe::ActivationKind::SwiGLU)
    return op.emitOpError("the CPU backend runs SwiGLU shared experts only");
  auto gate = residentOfRef(op, op.getGate());
  auto up = residentOfRef(op, op.getUp());
  auto downW = residentOfRef(op, op.getDown());
  if (failed(gate) || failed(up) || failed(downW))
    return failure();
  if (gate->format.name() != up->format.name())
    return op.emitOpError("shared gate and up of different formats");
  auto gShape = weightShape(op.getGate().getType());
  int64_t ffn = gShape[0], hidden = gShape[1];
  if (failed(checkBlocks(op, gate->format, hidden)) ||
      failed(checkBlocks(op, downW->format, ffn)))
    return failure();
  auto x = bufferOf(op, op.getInput());
  if (failed(x))
    return failure();
  MatmulSpec gateUp{gate->format, ffn, hidden, /*swiglu=*/true};
  MatmulSpec down{downW->format, hidden, ffn};
  Buffer xIn = *x;
  Value xMem = scratchF32, xOff = at(*x, hidden);
  if (useInt8(gateUp.format, hidden)) {
    gateUp.int8Activations = true;
    xIn = quantized(root(op.getInput()), *x, hidden, rowsOf(op.getInput()),
                    options.maxBatch);
    xMem = scratchArg;
    xOff = quantizedAt(xIn, hidden, opRows);
  }
  observeInput(op.getGate().getName(), *x, tokenCount, hidden);
  observeInput(op.getUp().getName(), *x, tokenCount, hidden);
  Buffer h = temporary(options.maxBatch * ffn);
  access({xIn}, {h});
  call(lib.matmul(gateUp),
       {residentArg, idx(gate->offset), idx(up->offset), xMem, xOff,
        scratchF32, at(h, ffn), opRows.count, threadIdx, threadCount, claims(), nextClaim()});
  Buffer hIn = h;
  Value hMem = scratchF32, hOff = at(h, ffn);
  if (useInt8(down.format, ffn)) {
    down.int8Activations = true;
    hIn = quantized(Value(), h, ffn, opRows, options.maxBatch);
    hMem = scratchArg;
    hOff = quantizedAt(hIn, ffn, opRows);
  }
  if (!down.int8Activations)
    observeInput(op.getDown().getName(), h, tokenCount, ffn);
  Buffer out = allocate(op.getResult(), options.maxBatch * hidden);
  access({hIn}, {out});
  call(lib.matmul(down),
       {residentArg, idx(downW->offset), hMem, hOff, scratchF32,
        at(out, hidden), opRows.count, threadIdx, threadCount, claims(), nextClaim()});
  if (auto inputGate = op.getInputGateAttr()) {
    auto g = residentOfRef(op, inputGate);
    if (failed(g) || failed(checkBlocks(op, g->format, hidden)))
      return failure();
    Buffer gl = temporary(options.maxBatch);
    access({*x}, {gl});
    call(lib.matmul({g->format, 1, hidden}),
         {residentArg, idx(g->offset), scratchF32, at(*x, hidden), scratchF32,
          at(gl, 1), opRows.count, threadIdx, threadCount, claims(), nextClaim()});
    access({out, gl}, {out});
    call(lib.sigmoidScale(hidden),
         {scratchF32, at(out, hidden), scratchF32, at(gl, 1), scratchF32,
          at(out, hidden), opRows.count, threadIdx, threadCount});
  }
  return success();
}

LogicalResult ScheduleBuilder::lowerAdd(arith::AddFOp op) {
  auto type = dyn_cast<RankedTensorType>(op.getType());
  if (!type || type.getRank() != 2)
    return op.emitOpError("the CPU backend adds [tokens, n] tensors only");
  int64_t dim = type.getShape().back();
  if (failed(checkWidth(op, dim, "row size")))
    return failure();
  auto lhs = bufferOf(op, op.getLhs());
  auto rhs = bufferOf(op, op.getRhs());
  if (failed(lhs) || failed(rhs))
    return failure();
  Buffer out = allocate(op.getResult(), options.maxBatch * dim);
  access({*lhs, *rhs}, {out});
  call(lib.add(dim),
       {scratchF32, at(*lhs, dim), scratchF32, at(*rhs, dim), scratchF32,
        at(out, dim), opRows.count, threadIdx, threadCount});
  return success();
}

LogicalResult moec::codegen::lowerToKernels(ModuleOp module,
                                            const CpuLoweringOptions &options) {
  ScheduleBuilder builder(module, options);
  return builder.run();
}

namespace {
struct LowerToKernelsPass
    : public PassWrapper<LowerToKernelsPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(LowerToKernelsPass)

  LowerToKernelsPass() = default;
  LowerToKernelsPass(const LowerToKernelsPass &other) : PassWrapper(other) {}

  StringRef getArgument() const override { return "moec-cpu-lower-to-kernels"; }
  StringRef getDescription() const override {
    return "Replace @forward by CPU kernels (scf + vector on memrefs) and the "
           "moec_model_forward schedule";
  }
  void getDependentDialects(DialectRegistry &registry) const override {
    registry.insert<amx::AMXDialect, arith::ArithDialect, func::FuncDialect,
                    math::MathDialect, memref::MemRefDialect, scf::SCFDialect,
                    vector::VectorDialect, LLVM::LLVMDialect>();
  }
  void runOnOperation() override {
    CpuLoweringOptions options;
    options.lanes = lanes;
    options.maxBatch = maxBatch;
    options.f16KvCache = f16KvCache;
    if (lanes != 4 && lanes != 8 && lanes != 16) {
      getOperation().emitError("lanes must be 4, 8 or 16");
      return signalPassFailure();
    }
    if (failed(lowerToKernels(getOperation(), options)))
      signalPassFailure();
  }

  Option<unsigned> lanes{*this, "lanes",
                         llvm::cl::desc("f32 lanes of the target's vectors"),
                         llvm::cl::init(8)};
  Option<int64_t> maxBatch{*this, "max-batch",
                           llvm::cl::desc("most tokens per forward call"),
                           llvm::cl::init(64)};
  Option<bool> f16KvCache{*this, "f16-kv-cache",
                          llvm::cl::desc("keep the KV caches in f16"),
                          llvm::cl::init(false)};
};
} // namespace

std::unique_ptr<Pass> moec::codegen::createLowerToKernelsPass() {
  return std::make_unique<LowerToKernelsPass>();
}

void moec::codegen::registerLowerToKernelsPass() {
  PassRegistration<LowerToKernelsPass>();
}
