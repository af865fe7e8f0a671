//===- QntOps.h - qnt operations --------------------------------*- C++ -*-===//

#ifndef MOEC_DIALECTS_QNT_IR_QNTOPS_H
#define MOEC_DIALECTS_QNT_IR_QNTOPS_H

#include "dialects/qnt/IR/QntDialect.h"

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#define GET_OP_CLASSES
#include "dialects/qnt/IR/QntOps.h.inc"

#endif // MOEC_DIALECTS_QNT_IR_QNTOPS_H
