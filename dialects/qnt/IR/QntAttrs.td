//===- QntAttrs.td - qnt attributes ----------------------------*- tablegen -*-===//

#ifndef MOEC_DIALECTS_QNT_IR_QNTATTRS_TD
#define MOEC_DIALECTS_QNT_IR_QNTATTRS_TD

include "dialects/qnt/IR/QntBase.td"

def Qnt_QuantFormat : I32EnumAttr<"QuantFormat", "storage format of quantized blocks", [
    I32EnumAttrCase<"Q4_0", 0, "q4_0">,
    I32EnumAttrCase<"Q4_1", 1, "q4_1">,
    I32EnumAttrCase<"Q5_0", 2, "q5_0">,
    I32EnumAttrCase<"Q5_1", 3, "q5_1">,
    I32EnumAttrCase<"Q8_0", 4, "q8_0">,
    I32EnumAttrCase<"Q2_K", 5, "q2_k">,
    I32EnumAttrCase<"Q3_K", 6, "q3_k">,
    I32EnumAttrCase<"Q4_K", 7, "q4_k">,
    I32EnumAttrCase<"Q5_K", 8, "q5_k">,
    I32EnumAttrCase<"Q6_K", 9, "q6_k">,
    I32EnumAttrCase<"MXFP4", 10, "mxfp4">,
    I32EnumAttrCase<"Int2", 11, "int2">,
    I32EnumAttrCase<"Int3", 12, "int3">,
    I32EnumAttrCase<"Int4", 13, "int4">,
    I32EnumAttrCase<"Int8", 14, "int8">,
  ]> {
  let cppNamespace = "::moec::qnt";
  // The type parser and printer use the enum directly; no attribute wrapper.
  let genSpecializedAttr = 0;
}

def Qnt_WeightRefAttr : AttrDef<Qnt_Dialect, "WeightRef"> {
  let mnemonic = "ref";
  let summary = "A named tensor of the model's weight store";
  let description = [{
    Refers to one tensor of the model's weight store by its name, with the
    type it has there. It lets an operation name weights it reads only in
    part (one expert of a stacked expert tensor, say) without an SSA value
    that would stand for the whole tensor.

    ```mlir
    #qnt.ref<"blk.0.ffn_gate_exps.weight" : !qnt.tensor<8x128x64, q4_k>>
    ```

    The type is a statically shaped `tensor` of a float or integer element
    type, or a statically shaped `!qnt.tensor`.
  }];
  let parameters = (ins StringRefParameter<"name in the weight store">:$name,
                        "::mlir::Type":$type);
  let assemblyFormat = "`<` $name `:` $type `>`";
  let genVerifyDecl = 1;
  let builders = [
    AttrBuilderWithInferredContext<(ins "::llvm::StringRef":$name,
                                        "::mlir::Type":$type), [{
      return $_get(type.getContext(), name, type);
    }]>
  ];
}

#endif // MOEC_DIALECTS_QNT_IR_QNTATTRS_TD
