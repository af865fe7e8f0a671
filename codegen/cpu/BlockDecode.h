//===- BlockDecode.h - Weight formats decoded by generated code -*- C++ -*-===//
//
// The one generic dequantization path of the CPU backend: for every weight
// format the compiler supports, IR (arith + vector on an i8 memref) that
// decodes one storage block into f32 vectors. Kernels (matmul, embedding
// lookup) are written once against this interface and fuse the decode into
// their inner loop: the decoded vectors feed FMAs directly and never reach
// memory.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_CODEGEN_CPU_BLOCKDECODE_H
#define MOEC_CODEGEN_CPU_BLOCKDECODE_H

#include "dialects/qnt/IR/QntDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Value.h"
#include "llvm/ADT/STLFunctionalExtras.h"

#include <optional>

namespace moec::codegen {

/// How a weight tensor's rows are stored: a float element type (f32, f16,
/// bf16: a "block" is then `lanes` consecutive elements) or a `qnt` format.
struct WeightFormat {
  enum class Kind { F32, F16, BF16, Quantized };
  Kind kind = Kind::F32;
  qnt::QuantFormat quant = qnt::QuantFormat::Q4_0; // Kind::Quantized only
  unsigned group = 0;       // own int formats only
  bool asymmetric = false;  // own int formats only
  /// Storage layout of a matrix (quantized formats only): 1 is GGUF's
  /// row-major sequence of blocks; N > 1 stores the blocks of N consecutive
  /// rows interleaved block by block (`interleave` of !qnt.tensor), so that a
  /// GEMV over N rows reads one sequential stream. A block's bytes are the
  /// same either way: only the kernels' addressing of rows differs.
  unsigned interleave = 1;

  /// The format of a weight type: a ranked tensor of f32/f16/bf16, or a
  /// !qnt.tensor (any interleave). std::nullopt for anything else.
  static std::optional<WeightFormat> get(mlir::Type weightType);

  /// Elements per block. Float formats decode in blocks of `lanes`.
  int64_t blockElements(unsigned lanes) const;
  /// Bytes per block (float formats: for blocks of `lanes`).
  int64_t blockBytes(unsigned lanes) const;
  /// Bytes of each block's leading scale fields that this matrix's storage
  /// keeps apart from the block's other bytes: gguf::getSplitHeaderBytes of
  /// the format where rows are interleaved (compiler/emit/Repack.h), else 0.
  int64_t splitHeaderBytes() const;
  /// "f16", "q4_k", "int3_g32_asym", "q4_0_il8" ...: for kernel names and
  /// messages.
  std::string name() const;

  /// The format of a GGUF tensor type id (ggml's `enum ggml_type`: 0 f32,
  /// 1 f16, 2 q4_0, ...); std::nullopt for types kernels do not decode.
  static std::optional<WeightFormat> fromGgmlTypeId(int64_t id);
  /// The inverse; std::nullopt for the own int formats, which GGUF lacks.
  std::optional<uint32_t> getGgmlTypeId() const;
};

/// Where one block's bytes are in an i8 memref: contiguous from `offset`,
/// or, in row-interleaved storage of a format with a split header
/// (WeightFormat::splitHeaderBytes), its first `headerBytes` from `offset`
/// and the rest from `payload`.
struct BlockAddress {
  mlir::Value offset;
  mlir::Value payload; // null: contiguous
  int64_t headerBytes = 0;

  BlockAddress(mlir::Value offset) : offset(offset) {}
  BlockAddress(mlir::Value header, mlir::Value payload, int64_t headerBytes)
      : offset(header), payload(headerBytes ? payload : mlir::Value()),
        headerBytes(headerBytes) {}
};

/// Emits, at the builder's insertion point, the decode of the block whose
/// first byte is `bytes[offset]` (`bytes`: memref<?xi8>, `offset`: index).
/// For each run of `lanes` consecutive elements of the block, in element
/// order, calls `consume(firstElement, vector)` with a vector<lanes x f32>
/// holding their values, exactly as compiler/quant/Dequantize (GGUF formats)
/// and compiler/quant/GroupFormats (own formats) define them, in f32.
/// `lanes` is 4, 8 or 16 and divides the block's element count (every
/// format's blocks hold a multiple of 16 elements except own formats whose
/// group is not a multiple of 16, which need lanes <= 8).
///
/// The code is straight-line: loads of at most 16 bytes that never leave the
/// block, integer unpacking, conversion, and the scale's multiply (and
/// min's add or subtract). `consume` may emit IR at the builder's insertion
/// point; it must leave the insertion point after what it emitted, in the
/// same block, since later runs reuse values loaded for earlier ones. The
/// decoded values are exact products of the scale and the code, rounded
/// only by the min's add or subtract, so a consumer may contract that into
/// an FMA without changing a bit.
void emitBlockDecode(mlir::OpBuilder &builder, mlir::Location loc,
                     const WeightFormat &format, mlir::Value bytes,
                     BlockAddress offset, unsigned lanes,
                     llvm::function_ref<void(int64_t, mlir::Value)> consume);

/// One run of a block decoded for integer dot products (8-bit activation
/// kernels): `length` consecutive elements whose values are
/// `scale * codes[j] + offset` with unsigned 8-bit codes.
struct IntegerRun {
  /// The run's first element in the block.
  int64_t first;
  /// vector<length x i8>, to be read as unsigned.
  mlir::Value codes;
  /// f32 scalars; `offset` is null where the format has none.
  mlir::Value scale, offset;
};

/// Elements per run of emitBlockDecodeInteger: the largest sub-block whose
/// elements share one scale and offset and which divides 32 (the block of
/// the quantized activations): 32 or 16 for GGUF formats, gcd(group, 32)
/// for the own formats; 0 when the format has no integer form (f32, f16,
/// bf16).
int64_t getIntegerRunLength(const WeightFormat &format);

/// The largest code the format's runs hold (15 for 4-bit formats, 255 for
/// 8-bit ones): kernels whose integer dot product saturates above 127
/// (AVX2's vpmaddubsw) handle larger codes differently. Q2_K 3, Q3_K 7,
/// Q4_0/Q4_1/Q4_K 15, Q5_0/Q5_1/Q5_K 31, Q6_K 63, Q8_0 255, MXFP4 24, own
/// intB 2^B - 1; 0 for float formats.
unsigned getIntegerMaxCode(const WeightFormat &format);

/// Emits the decode of the block at `bytes[offset]` into integer runs, in
/// element order, calling `consume` for each: `scale * code + offset`
/// equals the value emitBlockDecode yields for that element up to the
/// rounding of that one multiply-add in f32 (formats with signed codes are
/// shifted to unsigned ones, the shift folded into `offset`). Same
/// straight-line and insertion-point rules as emitBlockDecode. Not for
/// float formats (getIntegerRunLength 0).
///
/// Per format (d, dmin: the block's f16 scales; sc, m: sub-block scale and
/// min; q: the stored code bits):
///   Q4_0, Q5_0    u = q, scale d, offset -8d / -16d
///   Q4_1, Q5_1    u = q, scale d, offset m (the f16 min)
///   Q8_0          u = q + 128 (the sign bit flipped), scale d, offset -128d
///   Q2_K, Q4_K,   u = q, scale d * sc, offset -(dmin * m), both computed
///   Q5_K          as compiler/quant does
///   Q3_K          u = q (the hmask bit as bit 2), scale d * (sc - 32),
///                 offset -4 scale
///   Q6_K          u = q, scale d * sc, offset -32 scale
///   MXFP4         u = 12 + the doubled e2m1 value, scale the halved E8M0
///                 scale, offset -12 scale
///   own intB      u = q, scale s, offset -2^(B-1) s (symmetric) or the
///                 f16 min (asymmetric)
/// Every product is exact in f32 (a scale and a code span at most 24
/// significant bits: Q6_K's 11 + 7 + 6), so `scale * code + offset` rounds
/// exactly as the reference does and equals its value (a zero may change
/// sign: 8d - 8d is +0 where d * 0 is -0 for a negative d). One exception:
/// MXFP4 blocks whose E8M0 exponent exceeds 251 (scales of 2^125 and up,
/// far beyond real weights), where 24 * scale overflows; the reference's
/// own values overflow from exponent 253.
void emitBlockDecodeInteger(mlir::OpBuilder &builder, mlir::Location loc,
                            const WeightFormat &format, mlir::Value bytes,
                            BlockAddress offset,
                            llvm::function_ref<void(const IntegerRun &)> consume);

} // namespace moec::codegen

#endif // MOEC_CODEGEN_CPU_BLOCKDECODE_H
