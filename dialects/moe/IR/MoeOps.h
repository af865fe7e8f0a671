//===- MoeOps.h - moe operations --------------------------------*- C++ -*-===//

#ifndef MOEC_DIALECTS_MOE_IR_MOEOPS_H
#define MOEC_DIALECTS_MOE_IR_MOEOPS_H

#include "dialects/moe/IR/MoeDialect.h"

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#define GET_OP_CLASSES
#include "dialects/moe/IR/MoeOps.h.inc"

#endif // MOEC_DIALECTS_MOE_IR_MOEOPS_H
