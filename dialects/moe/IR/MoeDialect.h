//===- MoeDialect.h - The moe dialect and its attributes --------*- C++ -*-===//

#ifndef MOEC_DIALECTS_MOE_IR_MOEDIALECT_H
#define MOEC_DIALECTS_MOE_IR_MOEDIALECT_H

#include "dialects/qnt/IR/QntDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Dialect.h"

#include "dialects/moe/IR/MoeOpsDialect.h.inc"
#include "dialects/moe/IR/MoeEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/moe/IR/MoeAttrs.h.inc"

#endif // MOEC_DIALECTS_MOE_IR_MOEDIALECT_H
