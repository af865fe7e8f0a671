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

  /// The format of a weight type: a ranked tensor of f32/f16/bf16, or a
  /// !qnt.tensor with interleave 1. std::nullopt for anything else.
  static std::optional<WeightFormat> get(mlir::Type weightType);

  /// Elements per block. Float formats decode in blocks of `lanes`.
  int64_t blockElements(unsigned lanes) const;
  /// Bytes per block (float formats: for blocks of `lanes`).
  int64_t blockBytes(unsigned lanes) const;
  /// "f16", "q4_k", "int3_g32_asym", ...: for kernel names and messages.
  std::string name() const;
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
                     mlir::Value offset, unsigned lanes,
                     llvm::function_ref<void(int64_t, mlir::Value)> consume);

} // namespace moec::codegen

#endif // MOEC_CODEGEN_CPU_BLOCKDECODE_H
