//===- BlockDecodeTest.cpp - Generated block decoders vs the references ---===//
//
// For every weight format and vector width, JIT-compiles a function that
// decodes a row block by block with emitBlockDecode, runs it on random blocks
// and compares the result bit for bit with the scalar references:
// compiler/quant (GGUF formats, float formats, own formats) and, for the own
// formats, the independent test/reference/GroupDequantReference as well.
// The row ends right before an inaccessible page, so a decoder that reads
// past its block crashes the test instead of passing by luck. Likewise for
// emitBlockDecodeInteger: its codes, scales and offsets, recombined in f32,
// against the same references.
//
//===----------------------------------------------------------------------===//

#include "codegen/cpu/BlockDecode.h"
#include "compiler/quant/Dequantize.h"
#include "compiler/quant/GroupFormats.h"
#include "dialects/qnt/IR/QntDialect.h"
#include "test/codegen/cpu/JitMatmul.h"
#include "test/reference/GroupDequantReference.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/ExecutionEngine/CRunnerUtils.h"
#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "llvm/ADT/bit.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace mlir;
using namespace moec;
using codegen::WeightFormat;
using qnt::QuantFormat;
using namespace moec::test;

namespace {

//===----------------------------------------------------------------------===//
// The formats under test
//===----------------------------------------------------------------------===//

struct Case {
  WeightFormat format;
  unsigned lanes;
};

// gtest prints a failing case's parameter with this rather than its bytes.
void PrintTo(const Case &c, std::ostream *os) {
  *os << c.format.name() << ", lanes " << c.lanes;
}
} // namespace

namespace moec::codegen {
// Found by argument-dependent lookup, like the one above.
void PrintTo(const WeightFormat &format, std::ostream *os) {
  *os << format.name();
}
} // namespace moec::codegen

namespace {

std::vector<Case> allCases() {
  std::vector<WeightFormat> formats = {floatFormat(WeightFormat::Kind::F32),
                                       floatFormat(WeightFormat::Kind::F16),
                                       floatFormat(WeightFormat::Kind::BF16)};
  for (QuantFormat quant :
       {QuantFormat::Q4_0, QuantFormat::Q4_1, QuantFormat::Q5_0,
        QuantFormat::Q5_1, QuantFormat::Q8_0, QuantFormat::Q2_K,
        QuantFormat::Q3_K, QuantFormat::Q4_K, QuantFormat::Q5_K,
        QuantFormat::Q6_K, QuantFormat::MXFP4})
    formats.push_back(quantFormat(quant));
  // Group 8 allows only narrow vectors; 24 is a multiple of 8 that no
  // power of two above 8 divides; 128 is the common case.
  for (QuantFormat quant : {QuantFormat::Int2, QuantFormat::Int3,
                            QuantFormat::Int4, QuantFormat::Int8})
    for (unsigned group : {8u, 24u, 32u, 128u})
      for (bool asymmetric : {false, true})
        formats.push_back(quantFormat(quant, group, asymmetric));

  std::vector<Case> cases;
  for (const WeightFormat &format : formats)
    for (unsigned lanes : {4u, 8u, 16u})
      if (format.blockElements(lanes) % lanes == 0)
        cases.push_back({format, lanes});
  return cases;
}

gguf::GgmlType ggmlType(const WeightFormat &format) {
  return static_cast<gguf::GgmlType>(*format.getGgmlTypeId());
}

moec::quant::GroupFormat groupFormat(const WeightFormat &format) {
  return {qnt::getOwnFormatBits(format.quant), format.group, format.asymmetric};
}

/// Random blocks: random bytes, with random finite f16 scales and mins
/// (normal, subnormal and zero, of either sign).
std::vector<uint8_t> randomBlocks(const WeightFormat &format, unsigned lanes,
                                  int64_t numBlocks, std::mt19937 &rng) {
  int64_t blockBytes = format.blockBytes(lanes);
  std::vector<uint8_t> data(blockBytes * numBlocks);
  for (uint8_t &byte : data)
    byte = static_cast<uint8_t>(rng());
  for (int64_t block = 0; block < numBlocks; ++block)
    for (int64_t at : halfFields(format)) {
      uint16_t half;
      do
        half = static_cast<uint16_t>(rng());
      while ((half & 0x7c00) == 0x7c00);
      data[block * blockBytes + at] = static_cast<uint8_t>(half);
      data[block * blockBytes + at + 1] = static_cast<uint8_t>(half >> 8);
    }
  return data;
}

//===----------------------------------------------------------------------===//
// The generated decoder
//===----------------------------------------------------------------------===//

/// func @decode(%src: memref<?xi8>, %dst: memref<?xf32>, %blocks: index):
/// for each block, emitBlockDecode's runs stored to dst in order.
OwningOpRef<ModuleOp> buildDecodeModule(MLIRContext &context,
                                        const WeightFormat &format,
                                        unsigned lanes) {
  Location loc = UnknownLoc::get(&context);
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  OpBuilder b(&context);
  b.setInsertionPointToEnd(module->getBody());
  auto bytesType = MemRefType::get({ShapedType::kDynamic}, b.getI8Type());
  auto floatsType = MemRefType::get({ShapedType::kDynamic}, b.getF32Type());
  auto function = func::FuncOp::create(
      b, loc, "decode",
      b.getFunctionType({bytesType, floatsType, b.getIndexType()}, {}));
  function->setAttr(LLVM::LLVMDialect::getEmitCWrapperAttrName(),
                    b.getUnitAttr());
  Block *entry = function.addEntryBlock();
  b.setInsertionPointToStart(entry);
  Value src = entry->getArgument(0), dst = entry->getArgument(1);
  auto index = [&](int64_t value) -> Value {
    return arith::ConstantIndexOp::create(b, loc, value);
  };
  auto loop =
      scf::ForOp::create(b, loc, index(0), entry->getArgument(2), index(1));
  b.setInsertionPointToStart(loop.getBody());
  Value block = loop.getInductionVar();
  Value byteOffset =
      arith::MulIOp::create(b, loc, block, index(format.blockBytes(lanes)));
  Value elementOffset =
      arith::MulIOp::create(b, loc, block, index(format.blockElements(lanes)));
  codegen::emitBlockDecode(
      b, loc, format, src, byteOffset, lanes, [&](int64_t first, Value value) {
        Value at = arith::AddIOp::create(b, loc, elementOffset, index(first));
        vector::StoreOp::create(b, loc, value, dst, ValueRange{at});
      });
  b.setInsertionPointToEnd(entry);
  func::ReturnOp::create(b, loc);
  return module;
}

/// What emitBlockDecodeInteger handed the test's consumer while the module
/// was built: each run's first element, its codes' type, whether its scale
/// and offset are f32 scalars (the offset may be null).
struct RunsSeen {
  std::vector<int64_t> firsts;
  std::vector<Type> codeTypes;
  bool scalarsAreF32 = true;
  bool anyOffset = false;
};

/// func @decode_int(%src: memref<?xi8>, %values: memref<?xf32>,
///                  %codes: memref<?xi8>, %scales: memref<?xf32>,
///                  %blocks: index):
/// for each block, each run of emitBlockDecodeInteger stored as
/// scale * float(code) + offset (arith.mulf, then arith.addf), its raw
/// codes and its scale, element by element.
OwningOpRef<ModuleOp> buildIntegerDecodeModule(MLIRContext &context,
                                               const WeightFormat &format,
                                               RunsSeen &seen) {
  Location loc = UnknownLoc::get(&context);
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  OpBuilder b(&context);
  b.setInsertionPointToEnd(module->getBody());
  auto bytesType = MemRefType::get({ShapedType::kDynamic}, b.getI8Type());
  auto floatsType = MemRefType::get({ShapedType::kDynamic}, b.getF32Type());
  auto function =
      func::FuncOp::create(b, loc, "decode_int",
                           b.getFunctionType({bytesType, floatsType, bytesType,
                                              floatsType, b.getIndexType()},
                                             {}));
  function->setAttr(LLVM::LLVMDialect::getEmitCWrapperAttrName(),
                    b.getUnitAttr());
  Block *entry = function.addEntryBlock();
  b.setInsertionPointToStart(entry);
  Value src = entry->getArgument(0), values = entry->getArgument(1),
        codes = entry->getArgument(2), scales = entry->getArgument(3);
  auto index = [&](int64_t value) -> Value {
    return arith::ConstantIndexOp::create(b, loc, value);
  };
  auto loop =
      scf::ForOp::create(b, loc, index(0), entry->getArgument(4), index(1));
  b.setInsertionPointToStart(loop.getBody());
  Value block = loop.getInductionVar();
  Value byteOffset =
      arith::MulIOp::create(b, loc, block, index(format.blockBytes(16)));
  Value elementOffset =
      arith::MulIOp::create(b, loc, block, index(format.blockElements(16)));
  codegen::emitBlockDecodeInteger(
      b, loc, format, src, byteOffset, [&](const codegen::IntegerRun &run) {
        seen.firsts.push_back(run.first);
        seen.codeTypes.push_back(run.codes.getType());
        seen.scalarsAreF32 &= run.scale.getType().isF32() &&
                              (!run.offset || run.offset.getType().isF32());
        seen.anyOffset |= bool(run.offset);
        auto codesType = cast<VectorType>(run.codes.getType());
        auto floats = VectorType::get(codesType.getShape(), b.getF32Type());
        Value at =
            arith::AddIOp::create(b, loc, elementOffset, index(run.first));
        Value scale = vector::BroadcastOp::create(b, loc, floats, run.scale);
        Value value = arith::MulFOp::create(
            b, loc, scale, arith::UIToFPOp::create(b, loc, floats, run.codes));
        if (run.offset)
          value = arith::AddFOp::create(
              b, loc, value,
              vector::BroadcastOp::create(b, loc, floats, run.offset));
        vector::StoreOp::create(b, loc, value, values, ValueRange{at});
        vector::StoreOp::create(b, loc, run.codes, codes, ValueRange{at});
        vector::StoreOp::create(b, loc, scale, scales, ValueRange{at});
      });
  b.setInsertionPointToEnd(entry);
  func::ReturnOp::create(b, loc);
  return module;
}

/// The upstream lowering of scf + vector + arith + memref + func to LLVM.
LogicalResult lowerToLLVM(ModuleOp module) {
  PassManager pm(module->getContext());
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(createConvertVectorToLLVMPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  return pm.run(module);
}

/// A module of generated code compiled for this machine: the decoder of
/// `format` (buildDecodeModule), or whatever `build` makes.
class JitDecoder {
public:
  JitDecoder(const WeightFormat &format, unsigned lanes)
      : JitDecoder([&](MLIRContext &context) {
          return buildDecodeModule(context, format, lanes);
        }) {}

  explicit JitDecoder(
      llvm::function_ref<OwningOpRef<ModuleOp>(MLIRContext &)> build) {
    initializeNativeTarget();
    DialectRegistry registry;
    registry
        .insert<arith::ArithDialect, cf::ControlFlowDialect, func::FuncDialect,
                LLVM::LLVMDialect, math::MathDialect, memref::MemRefDialect,
                scf::SCFDialect, vector::VectorDialect>();
    registerBuiltinDialectTranslation(registry);
    registerLLVMDialectTranslation(registry);
    context.appendDialectRegistry(registry);
    context.loadAllAvailableDialects();

    OwningOpRef<ModuleOp> module = build(context);

    if (failed(verify(*module))) {
      error = "the generated decoder does not verify";
      return;
    }
    if (failed(lowerToLLVM(*module))) {
      error = "the generated decoder does not lower to LLVM";
      return;
    }
    // Optimized as kernels will be: bit-exactness must survive LLVM's
    // instruction selection, vectorized shuffles included.
    auto transformer = makeOptimizingTransformer(/*optLevel=*/2,
                                                 /*sizeLevel=*/0, nullptr);
    ExecutionEngineOptions options;
    options.transformer = transformer;
    auto created = ExecutionEngine::create(*module, options);
    if (!created) {
      error = llvm::toString(created.takeError());
      return;
    }
    engine = std::move(*created);
  }

  /// Empty when the decoder was built; else what went wrong.
  std::string error;

  /// Decodes `numBlocks` blocks at `src` into `dst`.
  std::string run(uint8_t *src, int64_t srcBytes, float *dst,
                  int64_t numElements, int64_t numBlocks) {
    StridedMemRefType<int8_t, 1> bytes{reinterpret_cast<int8_t *>(src),
                                       reinterpret_cast<int8_t *>(src),
                                       0,
                                       {srcBytes},
                                       {1}};
    StridedMemRefType<float, 1> floats{dst, dst, 0, {numElements}, {1}};
    auto *bytesArg = &bytes;
    auto *floatsArg = &floats;
    if (llvm::Error e =
            engine->invoke("decode", bytesArg, floatsArg, numBlocks))
      return llvm::toString(std::move(e));
    return "";
  }

  /// Calls `name` (a function with the C interface) with `args`; empty
  /// when it ran, else what went wrong.
  template <typename... Args>
  std::string invoke(llvm::StringRef name, Args... args) {
    if (llvm::Error e = engine->invoke(name, args...))
      return llvm::toString(std::move(e));
    return "";
  }

private:
  MLIRContext context;
  std::unique_ptr<ExecutionEngine> engine;
};

//===----------------------------------------------------------------------===//
// Comparison
//===----------------------------------------------------------------------===//

std::string hexBits(float value) {
  char text[16];
  std::snprintf(text, sizeof(text), "0x%08x", llvm::bit_cast<uint32_t>(value));
  return text;
}

/// Bit-exact equality, any NaN matching any NaN (conversion instructions
/// may quiet a signalling NaN of an f16 weight).
::testing::AssertionResult sameBits(const char *actualName,
                                    const char *expectedName,
                                    const std::vector<float> &actual,
                                    const std::vector<float> &expected) {
  if (actual.size() != expected.size())
    return ::testing::AssertionFailure() << "sizes differ";
  int64_t mismatches = 0, first = -1;
  for (size_t i = 0; i < actual.size(); ++i) {
    bool same = (std::isnan(actual[i]) && std::isnan(expected[i])) ||
                llvm::bit_cast<uint32_t>(actual[i]) ==
                    llvm::bit_cast<uint32_t>(expected[i]);
    if (!same && mismatches++ == 0)
      first = i;
  }
  if (mismatches == 0)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << actualName << " and " << expectedName << " differ in " << mismatches
         << " of " << actual.size() << " elements; first at element " << first
         << ": " << actual[first] << " (" << hexBits(actual[first]) << ") vs "
         << expected[first] << " (" << hexBits(expected[first]) << ")";
}

//===----------------------------------------------------------------------===//
// Tests
//===----------------------------------------------------------------------===//

class BlockDecode : public ::testing::TestWithParam<Case> {};

TEST_P(BlockDecode, MatchesReferenceBitForBit) {
  const WeightFormat &format = GetParam().format;
  unsigned lanes = GetParam().lanes;
  JitDecoder decoder(format, lanes);
  ASSERT_EQ(decoder.error, "");

  // Thousands of elements per seed; seeds fixed, so failures reproduce.
  int64_t blockElements = format.blockElements(lanes);
  int64_t numBlocks = std::max<int64_t>(4, 8192 / blockElements);
  int64_t numElements = numBlocks * blockElements;
  for (unsigned seed = 0; seed < 4; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed * 7919 + lanes);
    std::vector<uint8_t> blocks = randomBlocks(format, lanes, numBlocks, rng);
    GuardedBuffer src(blocks);

    std::vector<float> actual(numElements);
    ASSERT_EQ(decoder.run(src.data, blocks.size(), actual.data(), numElements,
                          numBlocks),
              "");

    std::vector<float> expected(numElements);
    if (isOwnFormat(format)) {
      moec::quant::dequantizeGroupRow(groupFormat(format), blocks.data(),
                                      expected.data(), numElements);
      std::vector<float> independent(numElements);
      reference::dequantizeGroup(qnt::getOwnFormatBits(format.quant),
                                 format.group, format.asymmetric, blocks.data(),
                                 independent.data(), numElements);
      EXPECT_PRED_FORMAT2(sameBits, independent, expected);
    } else {
      moec::quant::dequantizeRow(ggmlType(format), blocks.data(),
                                 expected.data(), numElements);
    }
    EXPECT_PRED_FORMAT2(sameBits, actual, expected);
  }
}

std::string caseName(const ::testing::TestParamInfo<Case> &info) {
  std::string name = info.param.format.name();
  for (char &c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)))
      c = '_';
  return name + "_lanes" + std::to_string(info.param.lanes);
}

INSTANTIATE_TEST_SUITE_P(AllFormats, BlockDecode,
                         ::testing::ValuesIn(allCases()), caseName);

//===----------------------------------------------------------------------===//
// The integer decode (8-bit activation kernels)
//===----------------------------------------------------------------------===//

std::vector<WeightFormat> integerFormats() {
  std::vector<WeightFormat> formats;
  for (QuantFormat quant :
       {QuantFormat::Q4_0, QuantFormat::Q4_1, QuantFormat::Q5_0,
        QuantFormat::Q5_1, QuantFormat::Q8_0, QuantFormat::Q2_K,
        QuantFormat::Q3_K, QuantFormat::Q4_K, QuantFormat::Q5_K,
        QuantFormat::Q6_K, QuantFormat::MXFP4})
    formats.push_back(quantFormat(quant));
  // Runs of gcd(group, 32): 8 (groups 8, 24), 16 (16, 48), 32 (32, 128).
  for (QuantFormat quant : {QuantFormat::Int2, QuantFormat::Int3,
                            QuantFormat::Int4, QuantFormat::Int8})
    for (unsigned group : {8u, 16u, 24u, 32u, 48u, 128u})
      for (bool asymmetric : {false, true})
        formats.push_back(quantFormat(quant, group, asymmetric));
  return formats;
}

/// The distance from `x` to the next f32 away from zero.
float ulp(float x) {
  x = std::fabs(x);
  return std::nextafter(x, INFINITY) - x;
}

class BlockDecodeInteger : public ::testing::TestWithParam<WeightFormat> {};

TEST_P(BlockDecodeInteger, MatchesReference) {
  const WeightFormat &format = GetParam();
  const int64_t length = codegen::getIntegerRunLength(format);
  const unsigned maxCode = codegen::getIntegerMaxCode(format);
  ASSERT_GT(length, 0);
  ASSERT_EQ(32 % length, 0) << "a run must divide the activations' blocks";
  ASSERT_LE(maxCode, 255u);

  RunsSeen seen;
  JitDecoder decoder([&](MLIRContext &context) {
    return buildIntegerDecodeModule(context, format, seen);
  });
  ASSERT_EQ(decoder.error, "");

  // The runs: consecutive, in element order, of `length` i8 codes each,
  // with f32 scalar scales and offsets.
  int64_t blockElements = format.blockElements(16);
  ASSERT_EQ(int64_t(seen.firsts.size()), blockElements / length);
  for (size_t i = 0; i < seen.firsts.size(); ++i) {
    EXPECT_EQ(seen.firsts[i], int64_t(i) * length);
    EXPECT_EQ(
        seen.codeTypes[i],
        VectorType::get({length},
                        IntegerType::get(seen.codeTypes[i].getContext(), 8)));
  }
  EXPECT_TRUE(seen.scalarsAreF32);

  int64_t numBlocks = std::max<int64_t>(4, 8192 / blockElements);
  int64_t numElements = numBlocks * blockElements;
  unsigned largest = 0;
  for (unsigned seed = 0; seed < 4; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed * 7919 + 17);
    std::vector<uint8_t> blocks = randomBlocks(format, 16, numBlocks, rng);
    // MXFP4: E8M0 scales up to 2^124 (e <= 251), as the integer form
    // requires: 24 (and 12) times the halved scale overflow beyond.
    if (format.quant == QuantFormat::MXFP4)
      for (int64_t block = 0; block < numBlocks; ++block)
        blocks[block * format.blockBytes(16)] =
            static_cast<uint8_t>(rng() % 252);
    GuardedBuffer src(blocks);

    std::vector<float> values(numElements, NAN), scales(numElements, NAN);
    std::vector<uint8_t> codes(numElements, 0xff);
    StridedMemRefType<int8_t, 1> srcArg{reinterpret_cast<int8_t *>(src.data),
                                        reinterpret_cast<int8_t *>(src.data),
                                        0,
                                        {int64_t(blocks.size())},
                                        {1}};
    StridedMemRefType<float, 1> valuesArg{
        values.data(), values.data(), 0, {numElements}, {1}};
    StridedMemRefType<int8_t, 1> codesArg{
        reinterpret_cast<int8_t *>(codes.data()),
        reinterpret_cast<int8_t *>(codes.data()),
        0,
        {numElements},
        {1}};
    StridedMemRefType<float, 1> scalesArg{
        scales.data(), scales.data(), 0, {numElements}, {1}};
    auto *a0 = &srcArg;
    auto *a1 = &valuesArg;
    auto *a2 = &codesArg;
    auto *a3 = &scalesArg;
    ASSERT_EQ(decoder.invoke("decode_int", a0, a1, a2, a3, numBlocks), "");

    std::vector<float> expected(numElements);
    if (isOwnFormat(format))
      moec::quant::dequantizeGroupRow(groupFormat(format), blocks.data(),
                                      expected.data(), numElements);
    else
      moec::quant::dequantizeRow(ggmlType(format), blocks.data(),
                                 expected.data(), numElements);

    // (a) codes within [0, maxCode]; (b) scale * code + offset within one
    // ulp of the larger of |value| and |scale| (the rounding of one f32
    // multiply-add) of the reference's value. Every format's products are
    // exact (f16 scales of 11 bits, sub-block scales and codes of at most
    // 8), so the representation costs nothing at all here: equal values
    // (+0 and -0 alike: d * 0 is -0 for a negative d, 8d - 8d is +0).
    int64_t outOfRange = 0, tooFar = 0, inexact = 0, first = -1;
    for (int64_t i = 0; i < numElements; ++i) {
      largest = std::max<unsigned>(largest, codes[i]);
      bool bad = false;
      if (codes[i] > maxCode) {
        ++outOfRange;
        bad = true;
      }
      float tolerance =
          ulp(std::max(std::fabs(expected[i]), std::fabs(scales[i])));
      if (!(std::fabs(values[i] - expected[i]) <= tolerance)) {
        ++tooFar;
        bad = true;
      }
      if (!(values[i] == expected[i])) {
        ++inexact;
        bad = true;
      }
      if (bad && first < 0)
        first = i;
    }
    EXPECT_EQ(outOfRange, 0) << "codes above " << maxCode;
    EXPECT_EQ(tooFar, 0) << "values further than the tolerance";
    EXPECT_EQ(inexact, 0) << "values not equal to the reference's";
    if (first >= 0)
      ADD_FAILURE() << "first bad element " << first << " (element "
                    << first % blockElements << " of block "
                    << first / blockElements << "): code "
                    << unsigned(codes[first]) << ", scale " << scales[first]
                    << ", scale * code + offset " << values[first] << " ("
                    << hexBits(values[first]) << "), reference "
                    << expected[first] << " (" << hexBits(expected[first])
                    << ")";
  }
  // The largest code does occur: getIntegerMaxCode is not loose.
  EXPECT_EQ(largest, maxCode);
}

std::string
integerCaseName(const ::testing::TestParamInfo<WeightFormat> &info) {
  std::string name = info.param.name();
  for (char &c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)))
      c = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(AllFormats, BlockDecodeInteger,
                         ::testing::ValuesIn(integerFormats()),
                         integerCaseName);

TEST(BlockDecodeInteger, RunLengthsAndMaxCodes) {
  for (WeightFormat::Kind kind :
       {WeightFormat::Kind::F32, WeightFormat::Kind::F16,
        WeightFormat::Kind::BF16})
    EXPECT_EQ(codegen::getIntegerRunLength(floatFormat(kind)), 0);
  struct Expected {
    QuantFormat quant;
    int64_t length;
    unsigned maxCode;
  };
  for (Expected e :
       {Expected{QuantFormat::Q4_0, 32, 15},
        Expected{QuantFormat::Q4_1, 32, 15},
        Expected{QuantFormat::Q5_0, 32, 31},
        Expected{QuantFormat::Q5_1, 32, 31},
        Expected{QuantFormat::Q8_0, 32, 255},
        Expected{QuantFormat::Q2_K, 16, 3}, Expected{QuantFormat::Q3_K, 16, 7},
        Expected{QuantFormat::Q4_K, 32, 15},
        Expected{QuantFormat::Q5_K, 32, 31},
        Expected{QuantFormat::Q6_K, 16, 63},
        Expected{QuantFormat::MXFP4, 32, 24}}) {
    SCOPED_TRACE(quantFormat(e.quant).name());
    EXPECT_EQ(codegen::getIntegerRunLength(quantFormat(e.quant)), e.length);
    EXPECT_EQ(codegen::getIntegerMaxCode(quantFormat(e.quant)), e.maxCode);
  }
  for (QuantFormat quant : {QuantFormat::Int2, QuantFormat::Int3,
                            QuantFormat::Int4, QuantFormat::Int8})
    for (bool asymmetric : {false, true})
      for (auto [group, length] : {std::pair<unsigned, int64_t>{8, 8},
                                   {16, 16},
                                   {24, 8},
                                   {32, 32},
                                   {40, 8},
                                   {48, 16},
                                   {64, 32},
                                   {96, 32},
                                   {128, 32}}) {
        WeightFormat format = quantFormat(quant, group, asymmetric);
        SCOPED_TRACE(format.name());
        EXPECT_EQ(codegen::getIntegerRunLength(format), length);
        EXPECT_EQ(codegen::getIntegerMaxCode(format),
                  (1u << qnt::getOwnFormatBits(quant)) - 1);
      }
}

// The two references of the own formats agree on every block, whatever
// the scales hold (infinities and NaNs included).
TEST(GroupDequantReference, AgreesWithGroupFormats) {
  std::mt19937 rng(1);
  for (unsigned bits : {2u, 3u, 4u, 8u})
    for (unsigned group : {8u, 16u, 24u, 64u, 256u})
      for (bool asymmetric : {false, true}) {
        moec::quant::GroupFormat format{bits, group, asymmetric};
        SCOPED_TRACE("int" + std::to_string(bits) + " group " +
                     std::to_string(group) +
                     (asymmetric ? " asymmetric" : " symmetric"));
        int64_t numBlocks = 64, numElements = numBlocks * group;
        std::vector<uint8_t> blocks(numBlocks * format.blockBytes());
        for (uint8_t &byte : blocks)
          byte = static_cast<uint8_t>(rng());
        std::vector<float> expected(numElements), actual(numElements);
        moec::quant::dequantizeGroupRow(format, blocks.data(), expected.data(),
                                        numElements);
        reference::dequantizeGroup(bits, group, asymmetric, blocks.data(),
                                   actual.data(), numElements);
        EXPECT_PRED_FORMAT2(sameBits, actual, expected);
      }
}

// The format of a weight type, and its block geometry, as the dialect and
// compiler/quant define them.
TEST(WeightFormat, FromTypes) {
  MLIRContext context;
  context.loadDialect<qnt::QntDialect>();
  Builder b(&context);

  auto f16 = WeightFormat::get(RankedTensorType::get({4, 64}, b.getF16Type()));
  ASSERT_TRUE(f16);
  EXPECT_EQ(f16->kind, WeightFormat::Kind::F16);
  EXPECT_EQ(f16->blockElements(8), 8);
  EXPECT_EQ(f16->blockBytes(8), 16);
  EXPECT_EQ(f16->name(), "f16");
  auto bf16 = WeightFormat::get(RankedTensorType::get({64}, b.getBF16Type()));
  ASSERT_TRUE(bf16);
  EXPECT_EQ(bf16->kind, WeightFormat::Kind::BF16);
  auto f32 = WeightFormat::get(RankedTensorType::get({64}, b.getF32Type()));
  ASSERT_TRUE(f32);
  EXPECT_EQ(f32->blockBytes(16), 64);
  EXPECT_FALSE(WeightFormat::get(RankedTensorType::get({64}, b.getI8Type())));
  EXPECT_FALSE(WeightFormat::get(b.getF32Type()));

  auto q4k =
      qnt::QuantizedTensorType::get(&context, {8, 512}, QuantFormat::Q4_K);
  auto format = WeightFormat::get(q4k);
  ASSERT_TRUE(format);
  EXPECT_EQ(format->kind, WeightFormat::Kind::Quantized);
  EXPECT_EQ(format->quant, QuantFormat::Q4_K);
  EXPECT_EQ(format->blockElements(16), q4k.getBlockSize());
  EXPECT_EQ(format->blockBytes(16), q4k.getBlockBytes());
  EXPECT_EQ(format->name(), "q4_k");
  EXPECT_EQ(format->interleave, 1u);
  // Interleaved rows: the same blocks, read by tiles of rows.
  auto interleaved = WeightFormat::get(q4k.withInterleave(8));
  ASSERT_TRUE(interleaved);
  EXPECT_EQ(interleaved->interleave, 8u);
  EXPECT_EQ(interleaved->quant, QuantFormat::Q4_K);
  EXPECT_EQ(interleaved->blockBytes(16), q4k.getBlockBytes());
  EXPECT_EQ(interleaved->name(), "q4_k_il8");

  for (QuantFormat quant : {QuantFormat::Int2, QuantFormat::Int3,
                            QuantFormat::Int4, QuantFormat::Int8})
    for (bool asymmetric : {false, true}) {
      auto type = qnt::QuantizedTensorType::get(&context, {4, 96}, quant, 32u,
                                                asymmetric, 1u);
      auto own = WeightFormat::get(type);
      ASSERT_TRUE(own);
      EXPECT_EQ(own->group, 32u);
      EXPECT_EQ(own->asymmetric, asymmetric);
      EXPECT_EQ(own->blockElements(8), 32);
      EXPECT_EQ(own->blockBytes(8), type.getBlockBytes());
      EXPECT_EQ(own->blockBytes(8), groupFormat(*own).blockBytes());
    }
  auto int3 = qnt::QuantizedTensorType::get(&context, {96}, QuantFormat::Int3,
                                            32u, true, 1u);
  EXPECT_EQ(WeightFormat::get(int3)->name(), "int3_g32_asym");
}

} // namespace
