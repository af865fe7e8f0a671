//===- QntDialect.h - The qnt dialect, its types and attributes -*- C++ -*-===//

#ifndef MOEC_DIALECTS_QNT_IR_QNTDIALECT_H
#define MOEC_DIALECTS_QNT_IR_QNTDIALECT_H

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"

#include "dialects/qnt/IR/QntOpsDialect.h.inc"
#include "dialects/qnt/IR/QntEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/qnt/IR/QntAttrs.h.inc"

#define GET_TYPEDEF_CLASSES
#include "dialects/qnt/IR/QntTypes.h.inc"

namespace moec::qnt {

/// Whether `format` is one of GGUF's block formats (bit-exact with GGUF,
/// fixed block size, scales inside the blocks), as opposed to moec's own
/// group-wise integer formats.
bool isGgufFormat(QuantFormat format);

/// Bits per code of an own group-wise format (int2 -> 2, ...).
unsigned getOwnFormatBits(QuantFormat format);

/// Elements per block of a GGUF format (32 or 256).
int64_t getGgufBlockSize(QuantFormat format);

/// Bytes per block of a GGUF format, as GGUF stores it.
int64_t getGgufBlockBytes(QuantFormat format);

/// Checks that `type` can be the type of a tensor in the weight store:
/// statically shaped, and a float/integer tensor or a quantized tensor.
mlir::LogicalResult
verifyWeightStoreType(llvm::function_ref<mlir::InFlightDiagnostic()> emitError,
                      mlir::Type type);

} // namespace moec::qnt

#endif // MOEC_DIALECTS_QNT_IR_QNTDIALECT_H
