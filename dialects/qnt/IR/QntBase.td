//===- QntBase.td - The qnt (quantization) dialect ------------*- tablegen -*-===//
//
// Block-quantized weights and activations: GGUF's block formats bit-exact,
// MXFP4, and moec's own group-wise integer formats.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_DIALECTS_QNT_IR_QNTBASE_TD
#define MOEC_DIALECTS_QNT_IR_QNTBASE_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

def Qnt_Dialect : Dialect {
  let name = "qnt";
  let cppNamespace = "::moec::qnt";
  let summary = "Block-quantized tensors and the operations on them";
  let description = [{
    The `qnt` dialect describes quantized model weights (and, where a target
    quantizes them, activations) as they are stored, block by block:

    * GGUF's block formats `q4_0`, `q4_1`, `q5_0`, `q5_1`, `q8_0`, the
      k-quants `q2_k` to `q6_k` and `mxfp4`, whose blocks are bit-exact with
      GGUF's definition. Their scales (and mins, super-block scales) are data
      inside each block, exactly as GGUF stores them.
    * moec's own group-wise integer formats `int2`, `int3`, `int4` and `int8`:
      one integer code per element and, per group of `group` consecutive
      elements along the last dimension, an f16 scale (and an f16 min when
      the format is `asymmetric`). The scales and mins are tensors of their
      own: `qnt.pack` builds a quantized tensor from its codes, scales and
      mins and `qnt.unpack` takes it apart. Stored, each group is a block of
      its f16 scale, its f16 min (asymmetric only) and its codes packed
      little-endian at B bits each; symmetric codes decode as
      `scale * (u - 2^(B-1))`, asymmetric ones as `scale * u + min`
      (`compiler/quant/GroupFormats.h` is the reference).

    No format parameter that depends on the data (a scale, a zero point) is
    ever part of a type. Weights never enter the IR as literal data:
    `qnt.weight` and `#qnt.ref` name a tensor of the model's weight store.
  }];
  let useDefaultTypePrinterParser = 1;
  let useDefaultAttributePrinterParser = 1;
  let hasCanonicalizer = 0;
}

class Qnt_Op<string mnemonic, list<Trait> traits = []>
    : Op<Qnt_Dialect, mnemonic, traits>;

#endif // MOEC_DIALECTS_QNT_IR_QNTBASE_TD
