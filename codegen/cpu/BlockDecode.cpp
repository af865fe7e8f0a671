//===- BlockDecode.cpp - Weight formats decoded by generated code ---------===//
//
// Every quantized format is described the same way, and one engine turns the
// description into straight-line IR:
//
//   * where the bits of each element's integer code lie in the block: one or
//     two bit fields (BitField), each some bits of the little-endian word at
//     some byte offset, ORed together (Q5_0: a nibble of `qs` and, as bit 4,
//     bit j of the 32-bit `qh`);
//   * an integer bias added to the code (Q4_0: -8) or the e2m1 table (MXFP4);
//   * one f32 scale, and optionally one min, per sub-block of elements,
//     computed once per block (for K-quants as one vector for all the
//     sub-blocks: `d * float(sc)`, exactly as compiler/quant does);
//   * how code, scale and min combine, in the f32 operation order of
//     compiler/quant/Dequantize.cpp, which makes the results bit-identical
//     with gguf-py. (Every product involved is exact in f32: f16 scales have
//     11 significant bits and codes and sub-block scales at most 8, so only
//     the final + min / - min rounds, and a consumer that contracts it into
//     an FMA still gets the same bits.)
//
// The fields of a run of `lanes` elements become one vector.shuffle that
// gathers each element's byte (or 2- or 4-byte word) from byte vectors of at
// most 16 bytes, each loaded once per block; a zero/sign extension to i32; a
// shift right by a constant vector and a mask. On AVX2 that is vpmovzxbd (the
// load folded in) or vpshufb, vpsrld/vpsrlvd, vpand, then vcvtdq2ps and the
// scale's vmulps: no scalar loads, no gathers. Alternating nibbles (own int4)
// are shifted and masked as bytes first and interleaved instead.
//
// The integer decode (emitBlockDecodeInteger, for 8-bit activation kernels)
// reads the same descriptions but never leaves the bytes: each run's codes
// are one vector<n x i8> of unsigned codes built with byte shifts, masks,
// bit tests and shuffles (16-bit words, narrowed, only for int3's fields
// that cross bytes); biases, Q8_0's sign and MXFP4's e2m1 table become
// unsigned codes and per-run offsets, computed once per block with the
// scales.
//
//===----------------------------------------------------------------------===//

#include "codegen/cpu/BlockDecode.h"

#include "compiler/gguf/GgmlType.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/Support/ErrorHandling.h"
#include "llvm/Support/MathExtras.h"

#include <algorithm>
#include <functional>
#include <numeric>

using namespace mlir;
using namespace moec;
using namespace moec::codegen;
using qnt::QuantFormat;

//===----------------------------------------------------------------------===//
// WeightFormat
//===----------------------------------------------------------------------===//

std::optional<WeightFormat> WeightFormat::get(Type weightType) {
  WeightFormat format;
  if (auto tensor = dyn_cast<RankedTensorType>(weightType)) {
    Type element = tensor.getElementType();
    if (element.isF32())
      format.kind = Kind::F32;
    else if (element.isF16())
      format.kind = Kind::F16;
    else if (element.isBF16())
      format.kind = Kind::BF16;
    else
      return std::nullopt;
    return format;
  }
  auto quantized = dyn_cast<qnt::QuantizedTensorType>(weightType);
  if (!quantized)
    return std::nullopt;
  format.kind = Kind::Quantized;
  format.interleave = quantized.getInterleave();
  format.quant = quantized.getFormat();
  if (!qnt::isGgufFormat(format.quant)) {
    format.group = quantized.getGroup();
    format.asymmetric = quantized.getAsymmetric();
  }
  return format;
}

int64_t WeightFormat::blockElements(unsigned lanes) const {
  if (kind != Kind::Quantized)
    return lanes;
  return qnt::isGgufFormat(quant) ? qnt::getGgufBlockSize(quant)
                                  : static_cast<int64_t>(group);
}

int64_t WeightFormat::blockBytes(unsigned lanes) const {
  switch (kind) {
  case Kind::F32:
    return 4 * int64_t(lanes);
  case Kind::F16:
  case Kind::BF16:
    return 2 * int64_t(lanes);
  case Kind::Quantized:
    break;
  }
  if (qnt::isGgufFormat(quant))
    return qnt::getGgufBlockBytes(quant);
  // f16 scale, f16 min when asymmetric, then the packed codes (the group is
  // a multiple of 8, so they fill whole bytes).
  return 2 + (asymmetric ? 2 : 0) +
         int64_t(group) * qnt::getOwnFormatBits(quant) / 8;
}

int64_t WeightFormat::splitHeaderBytes() const {
  if (kind != Kind::Quantized || interleave <= 1)
    return 0;
  std::optional<gguf::GgmlType> type;
  if (qnt::isGgufFormat(quant)) {
    if (std::optional<uint32_t> id = getGgmlTypeId())
      type = gguf::GgmlType(*id);
  } else {
    type = gguf::makeOwnGroupType(
        {qnt::getOwnFormatBits(quant), group, asymmetric});
  }
  return type ? gguf::getSplitHeaderBytes(*type) : 0;
}

std::string WeightFormat::name() const {
  switch (kind) {
  case Kind::F32:
    return "f32";
  case Kind::F16:
    return "f16";
  case Kind::BF16:
    return "bf16";
  case Kind::Quantized:
    break;
  }
  std::string result = qnt::stringifyQuantFormat(quant).str();
  if (!qnt::isGgufFormat(quant)) {
    result += "_g" + std::to_string(group);
    if (asymmetric)
      result += "_asym";
  }
  if (interleave != 1)
    result += "_il" + std::to_string(interleave);
  return result;
}

//===----------------------------------------------------------------------===//
// The decode engine
//===----------------------------------------------------------------------===//

namespace {

/// Bytes [start, start + size) of a block: the part that holds one kind of
/// field (the codes, the high bits, the packed scales). Loads never leave it,
/// so a decode never reads past its block (the last block of a buffer).
struct ByteRange {
  int64_t start = 0;
  int64_t size = 0;
  bool operator==(const ByteRange &other) const {
    return start == other.start && size == other.size;
  }
};

/// Bits [shift, shift + width) of the little-endian word at byte `byte` of
/// `range` (shift + width <= 32), placed at bit `at` of an element's integer
/// code. A field with width 0 is absent (the element's code has fewer
/// parts). `isSigned` fields are whole sign-extended bytes (Q8_0 codes, Q6_K
/// scales).
struct BitField {
  ByteRange range;
  int64_t byte = 0;
  unsigned shift = 0;
  unsigned width = 0;
  unsigned at = 0;
  bool isSigned = false;
};

/// Where the bits of one element's code are: its fields, ORed together.
using CodeBits = SmallVector<BitField, 2>;

/// What a byte-local field does to its byte: bits [shift, shift + width)
/// moved to bit `at` (the f32 decoder moves them in i32 lanes, so its
/// variants keep `at` 0). Width 0: the byte's contribution is zero.
struct Variant {
  unsigned shift = 0, width = 0, at = 0;
  bool operator==(const Variant &other) const {
    return shift == other.shift && width == other.width && at == other.at;
  }
};

/// The f32 operations that turn a converted code `q` into a value, in
/// compiler/quant's order: a different order rounds differently.
enum class Combine {
  ScaleTimesCode,         // s * q            (Q4_0, Q3_K, Q6_K, own sym)
  CodeTimesScale,         // q * s            (Q8_0)
  ScaleTimesCodePlusMin,  // s * q + m        (Q4_1, Q5_1, own asym)
  ScaleTimesCodeMinusMin, // s * q - m        (Q2_K, Q4_K, Q5_K)
};

/// A quantized block format, as the engine decodes it.
struct BlockLayout {
  int64_t elements = 0;
  /// The code bits of element `e` of the block.
  std::function<CodeBits(int64_t)> code;
  /// Added to every code before conversion (Q4_0: -8, Q6_K: -32).
  int32_t bias = 0;
  /// Codes are MXFP4's e2m1 indices rather than integers.
  bool e2m1 = false;
  /// Elements sharing one scale (and min).
  int64_t subBlock = 0;
  /// f32 scalar when one scale covers the block, else vector<elements /
  /// subBlock x f32>; `mins` likewise, null when the format has none.
  Value scales, mins;
  Combine combine = Combine::ScaleTimesCode;
};

/// Emits the decode of one block at `bytes[offset]`. Loads (and the shifted
/// copies of loaded bytes) are cached, so every byte is loaded once whatever
/// number of runs reads it.
class BlockDecoder {
public:
  BlockDecoder(OpBuilder &builder, Location loc, Value bytes,
               BlockAddress address)
      : b(builder), loc(loc), bytes(bytes), address(address) {}

  /// vector<n x i8> of the block's bytes [at, at + n). Every field lies on
  /// one side of a split header.
  Value loadBytes(int64_t at, int64_t n) {
    Value base = address.offset;
    if (address.payload && at >= address.headerBytes) {
      base = address.payload;
      at -= address.headerBytes;
    }
    assert((!address.payload || base == address.payload ||
            at + n <= address.headerBytes) &&
           "a load across a split header");
    Value index = base;
    if (at != 0)
      index = arith::AddIOp::create(b, loc, base,
                                    arith::ConstantIndexOp::create(b, loc, at));
    return vector::LoadOp::create(b, loc, VectorType::get({n}, b.getI8Type()),
                                  bytes, ValueRange{index});
  }

  /// The f16 at byte `at`, as f32 (exact). Loaded as bytes and bitcast: the
  /// memref is of i8 and the value need not be aligned.
  Value loadHalf(int64_t at) {
    Value raw = loadBytes(at, 2);
    Value half = vector::BitCastOp::create(
        b, loc, VectorType::get({1}, b.getF16Type()), raw);
    Value scalar = vector::ExtractOp::create(b, loc, half, 0);
    return arith::ExtFOp::create(b, loc, b.getF32Type(), scalar);
  }

  /// A vector<values.size() x i32> constant.
  Value i32Vector(ArrayRef<int32_t> values) {
    auto type = VectorType::get({int64_t(values.size())}, b.getI32Type());
    return arith::ConstantOp::create(
        b, loc, cast<TypedAttr>(DenseElementsAttr::get(type, values)));
  }
  /// A constant of the integer vector type `type` (values truncated to
  /// its element width).
  Value intVector(VectorType type, ArrayRef<int64_t> values) {
    unsigned width = type.getElementTypeBitWidth();
    SmallVector<APInt> elements;
    for (int64_t value : values)
      elements.push_back(APInt(width, uint64_t(value), /*isSigned=*/false,
                               /*implicitTrunc=*/true));
    return arith::ConstantOp::create(
        b, loc, cast<TypedAttr>(DenseElementsAttr::get(type, elements)));
  }
  Value i32Splat(int64_t n, int32_t value) {
    return i32Vector(SmallVector<int32_t>(n, value));
  }
  /// `codes + value`, elementwise.
  Value addConstant(Value codes, int32_t value) {
    int64_t n = cast<VectorType>(codes.getType()).getNumElements();
    return arith::AddIOp::create(b, loc, codes, i32Splat(n, value));
  }
  Value i32Scalar(int32_t value) {
    return arith::ConstantIntOp::create(b, loc, b.getI32Type(), value);
  }

  /// The integer codes of the elements whose bits `elements` describe, as a
  /// vector<elements.size() x i32>: each part (first field of every element,
  /// second field, ...) extracted on its own and ORed in.
  Value extractCodes(ArrayRef<CodeBits> elements) {
    size_t parts = 0;
    for (const CodeBits &bits : elements)
      parts = std::max(parts, bits.size());
    Value codes;
    for (size_t part = 0; part < parts; ++part) {
      SmallVector<BitField> fields;
      for (const CodeBits &bits : elements)
        fields.push_back(part < bits.size() ? bits[part] : BitField());
      Value value = extractField(fields);
      codes = codes ? arith::OrIOp::create(b, loc, codes, value) : value;
    }
    return codes;
  }

  /// The decoded runs of `layout`, handed to `consume` in element order.
  void emitRuns(const BlockLayout &layout, unsigned lanes,
                function_ref<void(int64_t, Value)> consume) {
    assert(layout.elements % lanes == 0 && layout.subBlock % lanes == 0 &&
           "a run must lie within one sub-block");
    auto f32Lanes = VectorType::get({int64_t(lanes)}, b.getF32Type());
    auto i32Lanes = VectorType::get({int64_t(lanes)}, b.getI32Type());
    for (int64_t first = 0; first < layout.elements; first += lanes) {
      SmallVector<CodeBits> elements;
      for (int64_t e = first; e < first + lanes; ++e)
        elements.push_back(layout.code(e));
      Value q = extractCodes(elements);
      if (layout.bias != 0)
        q = addConstant(q, layout.bias);
      if (layout.e2m1)
        q = e2m1ToInteger(q);
      assert(cast<VectorType>(q.getType()) == i32Lanes);
      (void)i32Lanes;
      Value x = arith::SIToFPOp::create(b, loc, f32Lanes, q);

      int64_t sub = first / layout.subBlock;
      Value scale = broadcastLane(layout.scales, sub, lanes);
      Value value;
      if (layout.combine == Combine::CodeTimesScale)
        value = arith::MulFOp::create(b, loc, x, scale);
      else
        value = arith::MulFOp::create(b, loc, scale, x);
      if (layout.combine == Combine::ScaleTimesCodePlusMin)
        value = arith::AddFOp::create(b, loc, value,
                                      broadcastLane(layout.mins, sub, lanes));
      else if (layout.combine == Combine::ScaleTimesCodeMinusMin)
        value = arith::SubFOp::create(b, loc, value,
                                      broadcastLane(layout.mins, sub, lanes));
      consume(first, value);
    }
  }

  /// The codes of the elements whose bits `elements` describe as unsigned
  /// bytes, vector<elements.size() x i8>: every part extracted on its own,
  /// without leaving the bytes, and ORed in.
  Value extractByteCodes(ArrayRef<CodeBits> elements) {
    size_t parts = 0;
    for (const CodeBits &bits : elements)
      parts = std::max(parts, bits.size());
    Value codes;
    for (size_t part = 0; part < parts; ++part) {
      SmallVector<BitField> fields;
      for (const CodeBits &bits : elements)
        fields.push_back(part < bits.size() ? bits[part] : BitField());
      Value value = extractFieldBytes(fields);
      codes = codes ? arith::OrIOp::create(b, loc, codes, value) : value;
    }
    return codes;
  }

  /// The integer runs of `layout`, `length` elements each, handed to
  /// `consume` in element order: unsigned byte codes u with
  /// value = scale * u + offset. A code q with a bias (Q4_0: q - 8) keeps
  /// its bits and moves the bias into the offset (-8 d); Q8_0's signed
  /// bytes flip their sign bit (u = q + 128, offset -128 d); MXFP4's e2m1
  /// indices become 12 + the doubled value (offset -12 times the halved
  /// E8M0 scale). The offsets of a K-quant are computed once per block as
  /// one vector, like its scales.
  void emitIntegerRuns(const BlockLayout &layout, int64_t length,
                       function_ref<void(const IntegerRun &)> consume) {
    assert(layout.elements % length == 0 && layout.subBlock % length == 0 &&
           "a run must lie within one sub-block");
    bool isSigned = layout.code(0).front().isSigned;
    int32_t bias = layout.bias;
    if (isSigned)
      bias -= 128;
    if (layout.e2m1)
      bias -= 12;
    Value offsets;
    switch (layout.combine) {
    case Combine::ScaleTimesCodePlusMin:
      assert(bias == 0 && "a bias and a min");
      offsets = layout.mins;
      break;
    case Combine::ScaleTimesCodeMinusMin:
      assert(bias == 0 && "a bias and a min");
      offsets = arith::NegFOp::create(b, loc, layout.mins);
      break;
    case Combine::ScaleTimesCode:
    case Combine::CodeTimesScale:
      // scale * bias: exact (an f16 or `d * sc` times a power of two or a
      // small integer), and so is scale * u + scale * bias.
      if (bias != 0) {
        Type type = layout.scales.getType();
        TypedAttr factor = b.getF32FloatAttr(float(bias));
        if (auto vector = dyn_cast<VectorType>(type))
          factor = DenseElementsAttr::get(vector, float(bias));
        offsets = arith::MulFOp::create(
            b, loc, layout.scales, arith::ConstantOp::create(b, loc, factor));
      }
      break;
    }

    for (int64_t first = 0; first < layout.elements; first += length) {
      SmallVector<CodeBits> elements;
      for (int64_t e = first; e < first + length; ++e)
        elements.push_back(layout.code(e));
      Value u = extractByteCodes(elements);
      auto type = cast<VectorType>(u.getType());
      if (isSigned)
        u = arith::XOrIOp::create(
            b, loc, u, intVector(type, SmallVector<int64_t>(length, 0x80)));
      if (layout.e2m1)
        u = e2m1ToUnsigned(u);
      assert(type == VectorType::get({length}, b.getI8Type()));
      int64_t sub = first / layout.subBlock;
      IntegerRun run;
      run.first = first;
      run.codes = u;
      run.scale = laneScalar(layout.scales, sub);
      run.offset = offsets ? laneScalar(offsets, sub) : Value();
      consume(run);
    }
  }

  /// `scalar * float(codes)` as vector<n x f32>: the per-sub-block scales
  /// (or mins) of a K-quant, `d * float(sc)` in compiler/quant's order.
  Value scaleCodes(Value scalar, Value codes) {
    auto type = VectorType::get(cast<VectorType>(codes.getType()).getShape(),
                                b.getF32Type());
    Value lhs = vector::BroadcastOp::create(b, loc, type, scalar);
    Value rhs = arith::SIToFPOp::create(b, loc, type, codes);
    return arith::MulFOp::create(b, loc, lhs, rhs);
  }

  /// MXFP4's E8M0 scale byte at `at`, halved (the e2m1 codes are doubled to
  /// make them integers): 2^(e - 128) as f32 bits, subnormal below e = 2.
  Value loadE8M0Half(int64_t at) {
    Value raw = vector::ExtractOp::create(b, loc, loadBytes(at, 1), 0);
    Value e = arith::ExtUIOp::create(b, loc, b.getI32Type(), raw);
    Value small = arith::ShLIOp::create(b, loc, i32Scalar(0x00200000), e);
    Value normal = arith::ShLIOp::create(
        b, loc, arith::SubIOp::create(b, loc, e, i32Scalar(1)), i32Scalar(23));
    Value isSmall = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, e,
                                          i32Scalar(2));
    // The shift of the unselected arm may be out of range (poison); select
    // does not propagate the poison of the arm it does not choose.
    Value bits = arith::SelectOp::create(b, loc, isSmall, small, normal);
    return arith::BitcastOp::create(b, loc, b.getF32Type(), bits);
  }

private:
  /// One field of every element (width 0: none) as vector<n x i8>, its
  /// bits at their place in the code. Fields are first made byte-local
  /// (byte + shift / 8, shift % 8). Within single bytes: single bits at
  /// several positions (Q5_0's qh) are tested (pand, pcmpeqb); a few
  /// variants (at most four: int2's) shifted and masked as whole pieces
  /// and picked by a tree of interleaves (mergeShuffle). Else (int3's
  /// fields that cross bytes):
  /// 16-bit words gathered, shifted per lane, masked and narrowed.
  Value extractFieldBytes(ArrayRef<BitField> fields) {
    const BitField *present =
        llvm::find_if(fields, [](const BitField &f) { return f.width != 0; });
    assert(present != fields.end() && "a part without any field");
    assert(llvm::all_of(fields,
                        [&](const BitField &f) {
                          return !f.width || (f.range == present->range &&
                                              f.isSigned == present->isSigned);
                        }) &&
           "the fields of one part share a range and a signedness");
    (void)present;

    SmallVector<BitField> local(fields.begin(), fields.end());
    SmallVector<Variant, 4> variants;
    bool byteLocal = true, singleBits = true;
    for (BitField &f : local) {
      if (!f.width) {
        if (!llvm::is_contained(variants, Variant()))
          variants.push_back(Variant());
        continue;
      }
      f.byte += f.shift / 8;
      f.shift %= 8;
      assert(f.at + f.width <= 8 && "a code beyond 8 bits");
      byteLocal &= f.shift + f.width <= 8;
      singleBits &= f.width == 1;
      Variant variant{f.shift, f.width, f.at};
      if (!llvm::is_contained(variants, variant))
        variants.push_back(variant);
    }
    if (byteLocal && singleBits && variants.size() > 1)
      return extractBitTest(local);
    if (byteLocal && variants.size() <= 4)
      return extractBytewise(local, variants, /*toBytes=*/true);
    Value value = extractLanewise(local, /*toBytes=*/true);
    SmallVector<int64_t> ats;
    for (const BitField &f : local)
      ats.push_back(f.at);
    if (llvm::any_of(ats, [](int64_t at) { return at != 0; }))
      value = arith::ShLIOp::create(
          b, loc, value, intVector(cast<VectorType>(value.getType()), ats));
    return value;
  }

  /// One field of every element (width 0: none) as vector<n x i32>.
  Value extractField(ArrayRef<BitField> fields) {
    const BitField *present =
        llvm::find_if(fields, [](const BitField &f) { return f.width != 0; });
    assert(present != fields.end() && "a part without any field");
    assert(llvm::all_of(fields,
                        [&](const BitField &f) {
                          return !f.width || (f.range == present->range &&
                                              f.isSigned == present->isSigned);
                        }) &&
           "the fields of one part share a range and a signedness");
    (void)present;

    // Fields within single bytes in exactly two (shift, width) variants
    // (int4's alternating nibbles): shift and mask whole loaded pieces as
    // bytes, once per block, and interleave. Anything else: gather, widen,
    // shift per lane. (Measured with llvm-mca for skylake and znver3: a
    // uniform shift costs the same per lane, where pmovzx folds the load;
    // int2's four variants cost more as shuffles than as vpsrlvd.)
    SmallVector<Variant, 2> variants;
    bool bytewise = true;
    for (const BitField &f : fields) {
      if (f.width == 0 || f.shift + f.width > 8) {
        bytewise = false;
        break;
      }
      Variant variant{f.shift, f.width, 0};
      if (!llvm::is_contained(variants, variant))
        variants.push_back(variant);
    }
    bytewise &= variants.size() == 2;
    Value value = bytewise
                      ? extractBytewise(fields, variants, /*toBytes=*/false)
                      : extractLanewise(fields, /*toBytes=*/false);
    SmallVector<int32_t> ats;
    for (const BitField &f : fields)
      ats.push_back(f.at);
    if (llvm::any_of(ats, [](int32_t at) { return at != 0; }))
      value = arith::ShLIOp::create(b, loc, value, i32Vector(ats));
    return value;
  }

  /// Fields within single bytes, of a few variants: each piece of bytes
  /// they read is shifted and masked as bytes, once per variant (psrlw +
  /// pand on x86, 16 bytes at once), and one shuffle picks each element's
  /// byte from the variant it needs (for int4's alternating nibbles, an
  /// interleave: punpcklbw), before widening to i32 (or, `toBytes`, as the
  /// vector<n x i8> of the codes themselves: variants then include `at`,
  /// and absent fields pick from zeros).
  ///
  ///   %lo = arith.andi %piece, 15 : vector<16xi8>
  ///   %hi = arith.shrui %piece, 4 : vector<16xi8>
  ///   %q = vector.shuffle %lo, %hi [0, 16, 1, 17, ...]
  ///   %w = arith.extui %q : vector<8xi8> to vector<8xi32>
  Value extractBytewise(ArrayRef<BitField> fields, ArrayRef<Variant> variants,
                        bool toBytes) {
    const BitField &present =
        *llvm::find_if(fields, [](const BitField &f) { return f.width != 0; });
    ByteRange range = present.range;
    bool isSigned = present.isSigned;
    int64_t lo = present.byte, hi = present.byte;
    for (const BitField &f : fields)
      if (f.width) {
        lo = std::min(lo, f.byte);
        hi = std::max(hi, f.byte);
      }
    auto [pieces, base] = coveringPieces(range, lo, hi);
    int64_t span = 0;
    for (Value piece : pieces)
      span += cast<VectorType>(piece.getType()).getNumElements();

    SmallVector<Value> sources;
    for (const Variant &v : variants) {
      assert((!isSigned || (v.shift == 0 && v.width == 8 && v.at == 0)) &&
             "signed fields are whole bytes");
      for (Value piece : pieces)
        sources.push_back(shiftAndMask(piece, v.shift, v.width, v.at));
    }
    SmallVector<int64_t> indices;
    for (const BitField &f : fields) {
      Variant variant{f.shift, f.width, toBytes ? f.at : 0};
      if (!f.width)
        variant = Variant();
      const Variant *found = llvm::find(variants, variant);
      assert(found != variants.end() && "a field of no variant");
      int64_t byte = f.width ? f.byte : present.byte;
      indices.push_back((found - variants.begin()) * span + byte - base);
    }
    if (toBytes)
      return mergeShuffle(sources, indices);
    Value bytes = shuffle(sources, indices);
    auto i32Type = VectorType::get({int64_t(fields.size())}, b.getI32Type());
    if (isSigned)
      return arith::ExtSIOp::create(b, loc, i32Type, bytes);
    return arith::ExtUIOp::create(b, loc, i32Type, bytes);
  }

  /// Single-bit fields at various bit positions (Q5_0's 32-bit qh, bit j
  /// for element j), as bytes: each element's byte gathered, its bit tested
  /// (pand + pcmpeqb) and the result selected as 2^at or 0.
  Value extractBitTest(ArrayRef<BitField> fields) {
    const BitField &present =
        *llvm::find_if(fields, [](const BitField &f) { return f.width != 0; });
    SmallVector<int64_t> gather;
    SmallVector<int64_t> bits, values;
    for (const BitField &f : fields) {
      assert((!f.width || (f.width == 1 && f.shift < 8)) && "a single bit");
      gather.push_back(f.width ? f.byte : present.byte);
      bits.push_back(f.width ? int64_t(1) << f.shift : 0);
      values.push_back(int64_t(1) << f.at);
    }
    auto [lo, hi] = std::minmax_element(gather.begin(), gather.end());
    auto [pieces, base] = coveringPieces(present.range, *lo, *hi);
    for (int64_t &index : gather)
      index -= base;
    Value bytes = shuffle(pieces, gather);
    auto type = cast<VectorType>(bytes.getType());
    Value zero = intVector(type, SmallVector<int64_t>(fields.size(), 0));
    Value set = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::ne,
        arith::AndIOp::create(b, loc, bytes, intVector(type, bits)), zero);
    return arith::SelectOp::create(b, loc, set, intVector(type, values), zero);
  }

  /// Any fields: each element's little-endian word of 1, 2 or 4 bytes (as
  /// wide as the widest field's last bit needs) gathered, widened to i32,
  /// shifted by its own amount (vpsrlvd) and masked. `toBytes`: shifted
  /// and masked at the word's own width instead (int3's 16-bit words:
  /// vpmulhuw or vpsrlvw), and truncated to vector<n x i8>.
  Value extractLanewise(ArrayRef<BitField> fields, bool toBytes) {
    int64_t n = fields.size();
    const BitField &present =
        *llvm::find_if(fields, [](const BitField &f) { return f.width != 0; });
    bool isSigned = present.isSigned;
    auto bytesOf = [](const BitField &f) {
      return int64_t(f.shift + f.width + 7) / 8;
    };
    int64_t wordBytes = 1;
    for (const BitField &f : fields)
      wordBytes = std::max(wordBytes, bytesOf(f));
    wordBytes = llvm::PowerOf2Ceil(wordBytes);
    assert(wordBytes <= 4 && "a field beyond 32 bits");

    SmallVector<int64_t> gather;
    SmallVector<int64_t> shifts, masks;
    bool anyShift = false, needMask = false;
    for (const BitField &f : fields) {
      // An absent field reads any byte of the range and masks it to zero.
      const BitField &source = f.width ? f : present;
      // Bytes past the field's last bit repeat its first byte: they are
      // masked off anyway, and the next bytes may lie past the range.
      for (int64_t k = 0; k < wordBytes; ++k)
        gather.push_back(k < bytesOf(source) ? source.byte + k : source.byte);
      shifts.push_back(f.shift);
      masks.push_back(f.width ? int64_t((uint64_t(1) << f.width) - 1) : 0);
      anyShift |= f.shift != 0;
      needMask |= f.shift + f.width != 8 * wordBytes;
    }
    assert((!isSigned || (!anyShift && !needMask)) &&
           "signed fields are whole words");

    auto [lo, hi] = std::minmax_element(gather.begin(), gather.end());
    auto [pieces, base] = coveringPieces(present.range, *lo, *hi);
    for (int64_t &index : gather)
      index -= base;
    Value word = shuffle(pieces, gather);
    auto i32Type = VectorType::get({n}, b.getI32Type());
    auto wordType = VectorType::get({n}, b.getIntegerType(8 * wordBytes));
    Value value;
    if (toBytes) {
      value = wordBytes == 1
                  ? word
                  : Value(vector::BitCastOp::create(b, loc, wordType, word));
    } else if (wordBytes == 4) {
      value = vector::BitCastOp::create(b, loc, i32Type, word);
    } else {
      if (wordBytes == 2)
        word = vector::BitCastOp::create(b, loc, wordType, word);
      value = isSigned ? Value(arith::ExtSIOp::create(b, loc, i32Type, word))
                       : Value(arith::ExtUIOp::create(b, loc, i32Type, word));
    }
    auto type = cast<VectorType>(value.getType());
    if (anyShift)
      value = arith::ShRUIOp::create(b, loc, value, intVector(type, shifts));
    if (needMask)
      value = arith::AndIOp::create(b, loc, value, intVector(type, masks));
    if (toBytes && wordBytes > 1)
      value = arith::TruncIOp::create(
          b, loc, VectorType::get({n}, b.getI8Type()), value);
    return value;
  }

  /// The loaded pieces of `range` that cover its bytes [lo, hi], in order,
  /// and the range offset of the first. The range is cut into power-of-two
  /// pieces of at most 16 bytes (one SSE/NEON register) from its start: loads
  /// stay inside it and are the same whichever run asks for them.
  std::pair<SmallVector<Value>, int64_t>
  coveringPieces(ByteRange range, int64_t lo, int64_t hi) {
    assert(0 <= lo && hi < range.size && "a field outside its range");
    SmallVector<Value> pieces;
    int64_t base = -1, position = 0;
    while (position <= hi) {
      int64_t size = std::min<int64_t>(
          16, llvm::bit_floor(uint64_t(range.size - position)));
      if (position + size > lo) {
        if (base < 0)
          base = position;
        pieces.push_back(piece(range.start + position, size));
      }
      position += size;
    }
    return {pieces, base};
  }

  /// The elements `indices` of the concatenation of `sources`: one shuffle
  /// (with the last source as its second operand), or none for an identity.
  Value shuffle(ArrayRef<Value> sources, ArrayRef<int64_t> indices) {
    Value source = sources.front();
    for (size_t i = 1; i + 1 < sources.size(); ++i)
      source = concat(source, sources[i]);
    Value other = sources.size() > 1 ? sources.back() : source;
    int64_t sourceSize = cast<VectorType>(source.getType()).getNumElements();
    if (sources.size() == 1 && int64_t(indices.size()) == sourceSize &&
        llvm::equal(indices, llvm::seq<int64_t>(0, sourceSize)))
      return source;
    return vector::ShuffleOp::create(b, loc, source, other, indices);
  }

  /// The elements `indices` of the concatenation of `sources` (vectors of
  /// one element type), by a tree of two-operand shuffles: the sources used
  /// are merged pairwise, each merge keeping the elements the result uses
  /// in the order it uses them, so that every shuffle is one an instruction
  /// does (int2's four variants: two byte interleaves, then one of 16-bit
  /// pairs) rather than one of many sources that LLVM lowers to blends.
  Value mergeShuffle(ArrayRef<Value> sources, ArrayRef<int64_t> indices) {
    // Each element: (source, position in it), as a flat index.
    SmallVector<int64_t> starts;
    int64_t total = 0;
    for (Value source : sources) {
      starts.push_back(total);
      total += cast<VectorType>(source.getType()).getNumElements();
    }
    struct Part {
      Value value;
      SmallVector<int64_t> holds; // the flat indices of its elements
    };
    SmallVector<Part> parts;
    for (size_t s = 0; s < sources.size(); ++s) {
      int64_t start = starts[s];
      int64_t size = cast<VectorType>(sources[s].getType()).getNumElements();
      if (llvm::none_of(indices, [&](int64_t i) {
            return i >= start && i < start + size;
          }))
        continue;
      parts.push_back(
          {sources[s], llvm::to_vector(llvm::seq(start, start + size))});
    }
    assert(!parts.empty() && "a shuffle of nothing");
    auto positionIn = [](const Part &part, int64_t index) -> int64_t {
      const int64_t *found = llvm::find(part.holds, index);
      return found == part.holds.end() ? -1 : found - part.holds.begin();
    };
    while (parts.size() > 1) {
      SmallVector<Part> next;
      for (size_t i = 0; i < parts.size(); i += 2) {
        if (i + 1 == parts.size()) {
          next.push_back(parts[i]);
          continue;
        }
        const Part &lhs = parts[i], &rhs = parts[i + 1];
        Part merged;
        SmallVector<int64_t> order;
        for (int64_t index : indices) {
          if (llvm::is_contained(merged.holds, index))
            continue;
          int64_t at = positionIn(lhs, index);
          if (at < 0) {
            at = positionIn(rhs, index);
            if (at < 0)
              continue;
            at += lhs.holds.size();
          }
          merged.holds.push_back(index);
          order.push_back(at);
        }
        merged.value =
            vector::ShuffleOp::create(b, loc, lhs.value, rhs.value, order);
        next.push_back(std::move(merged));
      }
      parts = std::move(next);
    }
    SmallVector<int64_t> order;
    for (int64_t index : indices)
      order.push_back(positionIn(parts.front(), index));
    return shuffle(parts.front().value, order);
  }

  Value concat(Value lhs, Value rhs) {
    int64_t total = cast<VectorType>(lhs.getType()).getNumElements() +
                    cast<VectorType>(rhs.getType()).getNumElements();
    return vector::ShuffleOp::create(
        b, loc, lhs, rhs, llvm::to_vector(llvm::seq<int64_t>(0, total)));
  }

  /// ((piece >> shift) & (2^width - 1)) << at as bytes, once per block:
  /// one shift (by shift - at, either way) and one mask, each left out
  /// where it changes nothing. Width 0: zeros.
  Value shiftAndMask(Value piece, unsigned shift, unsigned width,
                     unsigned at = 0) {
    assert(shift + width <= 8 && at + width <= 8 && "a field within a byte");
    Value &result = shiftCache[{piece, (shift * 16 + width) * 16 + at}];
    if (result)
      return result;
    auto type = cast<VectorType>(piece.getType());
    auto splat = [&](int64_t value) -> Value {
      return intVector(type,
                       SmallVector<int64_t>(type.getNumElements(), value));
    };
    if (width == 0)
      return result = splat(0);
    result = piece;
    // The bits of the byte that may be set after the shift.
    unsigned live = 0xff;
    if (shift > at) {
      result = arith::ShRUIOp::create(b, loc, result, splat(shift - at));
      live >>= shift - at;
    } else if (at > shift) {
      result = arith::ShLIOp::create(b, loc, result, splat(at - shift));
      live = (live << (at - shift)) & 0xff;
    }
    unsigned mask = ((1u << width) - 1) << at;
    if (live & ~mask)
      result = arith::AndIOp::create(b, loc, result, splat(mask));
    return result;
  }

  /// The block's bytes [at, at + size), loaded once per block.
  Value piece(int64_t at, int64_t size) {
    Value &loaded = pieceCache[{at, size}];
    if (!loaded)
      loaded = loadBytes(at, size);
    return loaded;
  }

  /// Lane `lane` of `values` (or the scalar `values`) splat to `lanes`.
  Value broadcastLane(Value values, int64_t lane, unsigned lanes) {
    Value &splat = broadcastCache[{values, lane}];
    if (!splat) {
      Value scalar = values;
      if (isa<VectorType>(values.getType()))
        scalar = vector::ExtractOp::create(b, loc, values, lane);
      splat = vector::BroadcastOp::create(
          b, loc, VectorType::get({int64_t(lanes)}, b.getF32Type()), scalar);
    }
    return splat;
  }

  /// Lane `lane` of `values` (or the scalar `values`) as a scalar, once
  /// per block.
  Value laneScalar(Value values, int64_t lane) {
    if (!isa<VectorType>(values.getType()))
      return values;
    Value &scalar = extractCache[{values, lane}];
    if (!scalar)
      scalar = vector::ExtractOp::create(b, loc, values, lane);
    return scalar;
  }

  /// MXFP4's e2m1 indices c (bytes 0..15) to 12 + the doubled value, 0..24,
  /// in the bytes: the magnitude m = c & 7 doubled is m up to 4, then 6, 8,
  /// 12: m + (max(m, 4) - 4) + (m == 7 ? 2 : 0); bit 3 is the sign.
  Value e2m1ToUnsigned(Value codes) {
    auto type = cast<VectorType>(codes.getType());
    auto splat = [&](int64_t value) {
      return intVector(type,
                       SmallVector<int64_t>(type.getNumElements(), value));
    };
    Value m = arith::AndIOp::create(b, loc, codes, splat(7));
    Value above4 = arith::SubIOp::create(
        b, loc, arith::MaxUIOp::create(b, loc, m, splat(4)), splat(4));
    Value magnitude = arith::AddIOp::create(b, loc, m, above4);
    Value isSeven =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, m, splat(7));
    magnitude = arith::AddIOp::create(
        b, loc, magnitude,
        arith::SelectOp::create(b, loc, isSeven, splat(2), splat(0)));
    Value isNegative = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::ne,
        arith::AndIOp::create(b, loc, codes, splat(8)), splat(0));
    return arith::SelectOp::create(
        b, loc, isNegative, arith::SubIOp::create(b, loc, splat(12), magnitude),
        arith::AddIOp::create(b, loc, magnitude, splat(12)));
  }

  /// MXFP4's e2m1 index (sign bit 3, magnitude bits 0-2) to the doubled
  /// value {0, 1, 2, 3, 4, 6, 8, 12}[magnitude] with its sign, as integers.
  /// The eight magnitudes are the nibbles of one 32-bit constant, selected
  /// with a per-lane shift (vpsrlvd): a table lookup without a gather.
  Value e2m1ToInteger(Value codes) {
    int64_t n = cast<VectorType>(codes.getType()).getNumElements();
    Value amount = arith::AndIOp::create(
        b, loc, arith::ShLIOp::create(b, loc, codes, i32Splat(n, 2)),
        i32Splat(n, 28));
    Value value = arith::AndIOp::create(
        b, loc,
        arith::ShRUIOp::create(b, loc, i32Splat(n, int32_t(0xC8643210u)),
                               amount),
        i32Splat(n, 15));
    // Negative codes negate in the integers: code 8 (-0) is the integer 0,
    // +0.0 once converted, as in the reference's table.
    Value isNegative = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge,
                                             codes, i32Splat(n, 8));
    Value negated = arith::SubIOp::create(b, loc, i32Splat(n, 0), value);
    return arith::SelectOp::create(b, loc, isNegative, negated, value);
  }

  OpBuilder &b;
  Location loc;
  Value bytes;
  BlockAddress address;
  llvm::DenseMap<std::pair<int64_t, int64_t>, Value> pieceCache;
  llvm::DenseMap<std::pair<Value, int64_t>, Value> broadcastCache;
  llvm::DenseMap<std::pair<Value, int64_t>, Value> extractCache;
  llvm::DenseMap<std::pair<Value, unsigned>, Value> shiftCache;
};

//===----------------------------------------------------------------------===//
// The formats
//===----------------------------------------------------------------------===//

/// A field of `width` bits at bit `shift` of byte `byte` of `range`.
BitField field(ByteRange range, int64_t byte, unsigned shift, unsigned width,
               unsigned at = 0) {
  BitField f;
  f.range = range;
  f.byte = byte;
  f.shift = shift;
  f.width = width;
  f.at = at;
  return f;
}

/// The 32-element blocks with 16 bytes of nibbles: element j < 16 is the low
/// nibble of qs[j], element j >= 16 the high nibble of qs[j - 16].
BitField splitNibble(ByteRange qs, int64_t j) {
  return field(qs, j % 16, 4 * unsigned(j / 16), 4);
}

/// The 2 low bits of element e of a Q2_K/Q3_K block: bits at shift
/// 2 * ((e % 128) / 32) of qs[32 * (e / 128) + e % 32].
BitField kQuantLow2(ByteRange qs, int64_t e) {
  return field(qs, 32 * (e / 128) + e % 32, 2 * unsigned((e % 128) / 32), 2);
}

/// The 4 low bits of element e of a Q4_K/Q5_K block: sub-block s = e / 32
/// takes nibble s % 2 of qs[32 * (s / 2) + e % 32].
BitField kQuantNibble(ByteRange qs, int64_t e) {
  int64_t s = e / 32;
  return field(qs, 32 * (s / 2) + e % 32, 4 * unsigned(s % 2), 4);
}

/// The sub-block scales (`mins` false) or mins of Q4_K/Q5_K, 6 bits each,
/// packed in 12 bytes (compiler/quant's unpackScaleMin): for j < 4 the low 6
/// bits of byte j (mins: 4 + j); for 4 + j a nibble of byte 8 + j (mins: the
/// high one) and, as bits 4-5, the top 2 bits of byte j (mins: 4 + j).
SmallVector<CodeBits> kQuantScaleMinBits(ByteRange scales, bool mins) {
  SmallVector<CodeBits> result;
  int64_t first = mins ? 4 : 0;
  for (int64_t j = 0; j < 4; ++j)
    result.push_back({field(scales, first + j, 0, 6)});
  for (int64_t j = 0; j < 4; ++j)
    result.push_back({field(scales, 8 + j, mins ? 4 : 0, 4),
                      field(scales, first + j, 6, 2, /*at=*/4)});
  return result;
}

/// The description of a GGUF or own quantized format, its scales emitted.
BlockLayout describeQuantized(BlockDecoder &d, const WeightFormat &format) {
  BlockLayout layout;
  QuantFormat quant = format.quant;
  if (!qnt::isGgufFormat(quant)) {
    // Own formats: f16 scale | f16 min (asymmetric) | codes of B bits,
    // code j at bits [j*B, (j+1)*B) of the code bytes, little-endian.
    unsigned bits = qnt::getOwnFormatBits(quant);
    int64_t header = format.asymmetric ? 4 : 2;
    ByteRange codes{header, int64_t(format.group) * bits / 8};
    layout.elements = layout.subBlock = format.group;
    layout.code = [codes, bits](int64_t j) -> CodeBits {
      int64_t bit = j * bits;
      return {field(codes, bit / 8, unsigned(bit % 8), bits)};
    };
    layout.scales = d.loadHalf(0);
    if (format.asymmetric) {
      layout.mins = d.loadHalf(2);
      layout.combine = Combine::ScaleTimesCodePlusMin;
    } else {
      layout.bias = -(1 << (bits - 1));
      layout.combine = Combine::ScaleTimesCode;
    }
    return layout;
  }

  layout.elements = qnt::getGgufBlockSize(quant);
  layout.subBlock = layout.elements;
  switch (quant) {
  case QuantFormat::Q4_0: // { half d; u8 qs[16]; }: d * (q - 8)
  case QuantFormat::Q4_1: // { half d, m; u8 qs[16]; }: d * q + m
  {
    bool hasMin = quant == QuantFormat::Q4_1;
    ByteRange qs{hasMin ? 4 : 2, 16};
    layout.code = [qs](int64_t j) -> CodeBits { return {splitNibble(qs, j)}; };
    layout.scales = d.loadHalf(0);
    if (hasMin) {
      layout.mins = d.loadHalf(2);
      layout.combine = Combine::ScaleTimesCodePlusMin;
    } else {
      layout.bias = -8;
    }
    return layout;
  }
  case QuantFormat::Q5_0: // { half d; u32 qh; u8 qs[16]; }: d * (q - 16)
  case QuantFormat::Q5_1: // { half d, m; u32 qh; u8 qs[16]; }: d * q + m
  {
    bool hasMin = quant == QuantFormat::Q5_1;
    int64_t header = hasMin ? 4 : 2;
    ByteRange qh{header, 4}, qs{header + 4, 16};
    // Bit j of the 32-bit qh is bit 4 of element j.
    layout.code = [qs, qh](int64_t j) -> CodeBits {
      return {splitNibble(qs, j), field(qh, 0, unsigned(j), 1, 4)};
    };
    layout.scales = d.loadHalf(0);
    if (hasMin) {
      layout.mins = d.loadHalf(2);
      layout.combine = Combine::ScaleTimesCodePlusMin;
    } else {
      layout.bias = -16;
    }
    return layout;
  }
  case QuantFormat::Q8_0: { // { half d; i8 qs[32]; }: q * d
    ByteRange qs{2, 32};
    layout.code = [qs](int64_t j) -> CodeBits {
      BitField f = field(qs, j, 0, 8);
      f.isSigned = true;
      return {f};
    };
    layout.scales = d.loadHalf(0);
    layout.combine = Combine::CodeTimesScale;
    return layout;
  }
  case QuantFormat::Q2_K: {
    // { u8 scales[16]; u8 qs[64]; half d, dmin; }: per sub-block of 16 a
    // 4-bit scale (low nibble) and min (high); (d * sc) * q - (dmin * m).
    ByteRange scales{0, 16}, qs{16, 64};
    layout.subBlock = 16;
    layout.code = [qs](int64_t e) -> CodeBits { return {kQuantLow2(qs, e)}; };
    SmallVector<CodeBits> sc, m;
    for (int64_t i = 0; i < 16; ++i) {
      sc.push_back({field(scales, i, 0, 4)});
      m.push_back({field(scales, i, 4, 4)});
    }
    layout.scales = d.scaleCodes(d.loadHalf(80), d.extractCodes(sc));
    layout.mins = d.scaleCodes(d.loadHalf(82), d.extractCodes(m));
    layout.combine = Combine::ScaleTimesCodeMinusMin;
    return layout;
  }
  case QuantFormat::Q3_K: {
    // { u8 hmask[32]; u8 qs[64]; u8 scales[12]; half d; }: 6-bit scales
    // minus 32 (low nibble from bytes 0-7, high 2 bits from bytes 8-11);
    // the code is the 2 low bits of Q2_K plus, as bit 2, bit e / 32 of
    // hmask[e % 32], minus 4 (the reference subtracts 4 when that bit is
    // clear: the same integer); (d * sc) * q.
    ByteRange hmask{0, 32}, qs{32, 64}, packed{96, 12};
    layout.subBlock = 16;
    layout.code = [qs, hmask](int64_t e) -> CodeBits {
      return {kQuantLow2(qs, e),
              field(hmask, e % 32, unsigned(e / 32), 1, /*at=*/2)};
    };
    layout.bias = -4;
    SmallVector<CodeBits> sc;
    for (int64_t i = 0; i < 16; ++i)
      sc.push_back({field(packed, i % 8, 4 * unsigned(i / 8), 4),
                    field(packed, 8 + i % 4, 2 * unsigned(i / 4), 2, 4)});
    Value codes = d.extractCodes(sc);
    codes = d.addConstant(codes, -32);
    layout.scales = d.scaleCodes(d.loadHalf(108), codes);
    return layout;
  }
  case QuantFormat::Q4_K:
  case QuantFormat::Q5_K: {
    // { half d, dmin; u8 scales[12]; [u8 qh[32];] u8 qs[128]; }: per
    // sub-block of 32 a 6-bit scale and min; Q5_K's bit 4 of element e is
    // bit e / 32 of qh[e % 32]; (d * sc) * q - (dmin * m).
    bool high = quant == QuantFormat::Q5_K;
    ByteRange scales{4, 12}, qh{16, 32}, qs{high ? 48 : 16, 128};
    layout.subBlock = 32;
    layout.code = [qs, qh, high](int64_t e) -> CodeBits {
      CodeBits bits{kQuantNibble(qs, e)};
      if (high)
        bits.push_back(field(qh, e % 32, unsigned(e / 32), 1, /*at=*/4));
      return bits;
    };
    layout.scales = d.scaleCodes(
        d.loadHalf(0), d.extractCodes(kQuantScaleMinBits(scales, false)));
    layout.mins = d.scaleCodes(
        d.loadHalf(2), d.extractCodes(kQuantScaleMinBits(scales, true)));
    layout.combine = Combine::ScaleTimesCodeMinusMin;
    return layout;
  }
  case QuantFormat::Q6_K: {
    // { u8 ql[128]; u8 qh[64]; i8 scales[16]; half d; }: element
    // e = 128 h + r takes nibble r / 64 of ql[64 h + r % 64] and, as bits
    // 4-5, the bits at shift 2 (r / 32) of qh[32 h + r % 32];
    // (d * sc) * (q - 32).
    ByteRange ql{0, 128}, qh{128, 64}, scales{192, 16};
    layout.subBlock = 16;
    layout.code = [ql, qh](int64_t e) -> CodeBits {
      int64_t h = e / 128, r = e % 128;
      return {field(ql, 64 * h + r % 64, 4 * unsigned(r / 64), 4),
              field(qh, 32 * h + r % 32, 2 * unsigned(r / 32), 2, 4)};
    };
    layout.bias = -32;
    SmallVector<CodeBits> sc;
    for (int64_t i = 0; i < 16; ++i) {
      BitField f = field(scales, i, 0, 8);
      f.isSigned = true;
      sc.push_back({f});
    }
    layout.scales = d.scaleCodes(d.loadHalf(208), d.extractCodes(sc));
    return layout;
  }
  case QuantFormat::MXFP4: { // { u8 e; u8 qs[16]; }: d * e2m1[q]
    ByteRange qs{1, 16};
    layout.code = [qs](int64_t j) -> CodeBits { return {splitNibble(qs, j)}; };
    layout.e2m1 = true;
    layout.scales = d.loadE8M0Half(0);
    return layout;
  }
  default:
    llvm_unreachable("not a GGUF format");
  }
}

} // namespace

void moec::codegen::emitBlockDecode(
    OpBuilder &builder, Location loc, const WeightFormat &format, Value bytes,
    BlockAddress offset, unsigned lanes,
    function_ref<void(int64_t, Value)> consume) {
  assert((lanes == 4 || lanes == 8 || lanes == 16) && "lanes is 4, 8 or 16");
  BlockDecoder decoder(builder, loc, bytes, offset);
  auto lanesOf = [&](Type element) {
    return VectorType::get({int64_t(lanes)}, element);
  };
  switch (format.kind) {
  case WeightFormat::Kind::F32:
    consume(0, vector::BitCastOp::create(builder, loc,
                                         lanesOf(builder.getF32Type()),
                                         decoder.loadBytes(0, 4 * lanes)));
    return;
  case WeightFormat::Kind::F16: {
    // vcvtph2ps with F16C; exact (NaNs stay NaNs, possibly quieted).
    Value halves =
        vector::BitCastOp::create(builder, loc, lanesOf(builder.getF16Type()),
                                  decoder.loadBytes(0, 2 * lanes));
    consume(0, arith::ExtFOp::create(builder, loc,
                                     lanesOf(builder.getF32Type()), halves));
    return;
  }
  case WeightFormat::Kind::BF16: {
    // bf16 is the top half of an f32: widen and shift, exact to the bit
    // (NaN payloads included), and as fast as any conversion instruction.
    Value words =
        vector::BitCastOp::create(builder, loc, lanesOf(builder.getI16Type()),
                                  decoder.loadBytes(0, 2 * lanes));
    Value wide = arith::ExtUIOp::create(builder, loc,
                                        lanesOf(builder.getI32Type()), words);
    Value bits =
        arith::ShLIOp::create(builder, loc, wide, decoder.i32Splat(lanes, 16));
    consume(0, vector::BitCastOp::create(builder, loc,
                                         lanesOf(builder.getF32Type()), bits));
    return;
  }
  case WeightFormat::Kind::Quantized:
    break;
  }
  BlockLayout layout = describeQuantized(decoder, format);
  decoder.emitRuns(layout, lanes, consume);
}

int64_t moec::codegen::getIntegerRunLength(const WeightFormat &format) {
  if (format.kind != WeightFormat::Kind::Quantized)
    return 0;
  if (!qnt::isGgufFormat(format.quant))
    return std::gcd(int64_t(format.group), int64_t(32));
  switch (format.quant) {
  case QuantFormat::Q2_K: // Sub-blocks of 16 with their own scales.
  case QuantFormat::Q3_K:
  case QuantFormat::Q6_K:
    return 16;
  default: // 32-element blocks, Q4_K and Q5_K's sub-blocks of 32.
    return 32;
  }
}

unsigned moec::codegen::getIntegerMaxCode(const WeightFormat &format) {
  if (format.kind != WeightFormat::Kind::Quantized)
    return 0;
  if (!qnt::isGgufFormat(format.quant))
    return (1u << qnt::getOwnFormatBits(format.quant)) - 1;
  switch (format.quant) {
  case QuantFormat::Q2_K:
    return 3;
  case QuantFormat::Q3_K:
    return 7;
  case QuantFormat::Q4_0:
  case QuantFormat::Q4_1:
  case QuantFormat::Q4_K:
    return 15;
  case QuantFormat::Q5_0:
  case QuantFormat::Q5_1:
  case QuantFormat::Q5_K:
    return 31;
  case QuantFormat::Q6_K:
    return 63;
  case QuantFormat::Q8_0:
    return 255;
  case QuantFormat::MXFP4: // 12 + the doubled e2m1 value, -12..12.
    return 24;
  default:
    llvm_unreachable("not a GGUF format");
  }
}

void moec::codegen::emitBlockDecodeInteger(
    OpBuilder &builder, Location loc, const WeightFormat &format, Value bytes,
    BlockAddress offset, function_ref<void(const IntegerRun &)> consume) {
  int64_t length = getIntegerRunLength(format);
  assert(length > 0 && "a float format has no integer form");
  BlockDecoder decoder(builder, loc, bytes, offset);
  BlockLayout layout = describeQuantized(decoder, format);
  decoder.emitIntegerRuns(layout, length, consume);
}

namespace {
/// ggml's type ids of the block formats, in QuantFormat order up to MXFP4.
constexpr std::pair<qnt::QuantFormat, uint32_t> kGgmlIds[] = {
    {qnt::QuantFormat::Q4_0, 2},  {qnt::QuantFormat::Q4_1, 3},
    {qnt::QuantFormat::Q5_0, 6},  {qnt::QuantFormat::Q5_1, 7},
    {qnt::QuantFormat::Q8_0, 8},  {qnt::QuantFormat::Q2_K, 10},
    {qnt::QuantFormat::Q3_K, 11}, {qnt::QuantFormat::Q4_K, 12},
    {qnt::QuantFormat::Q5_K, 13}, {qnt::QuantFormat::Q6_K, 14},
    {qnt::QuantFormat::MXFP4, 39}};
} // namespace

std::optional<WeightFormat> WeightFormat::fromGgmlTypeId(int64_t id) {
  WeightFormat f;
  switch (id) {
  case 0: f.kind = Kind::F32; return f;
  case 1: f.kind = Kind::F16; return f;
  case 30: f.kind = Kind::BF16; return f;
  default: break;
  }
  for (auto [quant, ggml] : kGgmlIds)
    if (int64_t(ggml) == id) {
      f.kind = Kind::Quantized;
      f.quant = quant;
      return f;
    }
  return std::nullopt;
}

std::optional<uint32_t> WeightFormat::getGgmlTypeId() const {
  switch (kind) {
  case Kind::F32: return 0;
  case Kind::F16: return 1;
  case Kind::BF16: return 30;
  case Kind::Quantized: break;
  }
  for (auto [q, ggml] : kGgmlIds)
    if (q == quant)
      return ggml;
  return std::nullopt;
}
