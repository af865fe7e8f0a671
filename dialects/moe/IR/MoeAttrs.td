//===- MoeAttrs.td - moe attributes ----------------------------*- tablegen -*-===//

#ifndef MOEC_DIALECTS_MOE_IR_MOEATTRS_TD
#define MOEC_DIALECTS_MOE_IR_MOEATTRS_TD

include "dialects/moe/IR/MoeBase.td"

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def Moe_ScoringFunc : I32EnumAttr<"ScoringFunc", "router scoring function", [
    I32EnumAttrCase<"Softmax", 0, "softmax">,
    I32EnumAttrCase<"Sigmoid", 1, "sigmoid">,
  ]> {
  let cppNamespace = "::moec::moe";
  let genSpecializedAttr = 0;
}
def Moe_ScoringFuncAttr : EnumAttr<Moe_Dialect, Moe_ScoringFunc, "scoring">;

def Moe_ActivationKind : I32EnumAttr<"ActivationKind", "expert FFN activation", [
    I32EnumAttrCase<"SwiGLU", 0, "swiglu">,
    I32EnumAttrCase<"GeGLU", 1, "geglu">,
    I32EnumAttrCase<"SwiGLUClamped", 2, "swiglu_clamped">,
  ]> {
  let cppNamespace = "::moec::moe";
  let genSpecializedAttr = 0;
}

def Moe_Residency : I32EnumAttr<"Residency", "where an expert lives", [
    I32EnumAttrCase<"Resident", 0, "resident">,
    I32EnumAttrCase<"Cached", 1, "cached">,
    I32EnumAttrCase<"Streamed", 2, "streamed">,
  ]> {
  let cppNamespace = "::moec::moe";
  let genSpecializedAttr = 0;
}

def Moe_Predictor : I32EnumAttr<"Predictor", "how prefetched experts are predicted", [
    I32EnumAttrCase<"NextRouter", 0, "next_router">,
    I32EnumAttrCase<"PreviousToken", 1, "previous_token">,
  ]> {
  let cppNamespace = "::moec::moe";
  let genSpecializedAttr = 0;
}

def Moe_RopeStyle : I32EnumAttr<"RopeStyle", "how rotary embeddings pair dimensions", [
    I32EnumAttrCase<"NeoX", 0, "neox">,
    I32EnumAttrCase<"Interleaved", 1, "interleaved">,
  ]> {
  let cppNamespace = "::moec::moe";
  let genSpecializedAttr = 0;
}
def Moe_RopeStyleAttr : EnumAttr<Moe_Dialect, Moe_RopeStyle, "rope_style">;

//===----------------------------------------------------------------------===//
// Attributes
//===----------------------------------------------------------------------===//

def Moe_ActivationAttr : AttrDef<Moe_Dialect, "Activation"> {
  let mnemonic = "act";
  let summary = "The gated activation of an expert FFN";
  let description = [{
    How an expert combines its gate and up projections, `g = x W_gate^T` and
    `u = x W_up^T`, before the down projection:

    * `swiglu`: `silu(g) * u` (Mixtral, Qwen, OLMoE, DeepSeek);
    * `geglu`: `gelu(g) * u` (tanh approximation of GELU);
    * `swiglu_clamped`: gpt-oss's variant, with `g' = min(g, limit)`,
      `u' = clamp(u, -limit, limit)`:
      `g' * sigmoid(alpha * g') * (u' + 1)`; both parameters are required.

    ```mlir
    #moe.act<swiglu>
    #moe.act<swiglu_clamped, alpha = 1.702, limit = 7.0>
    ```
  }];
  let parameters = (ins "::moec::moe::ActivationKind":$kind,
                        OptionalParameter<"::mlir::FloatAttr">:$alpha,
                        OptionalParameter<"::mlir::FloatAttr">:$limit);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
}

def Moe_PlacementAttr : AttrDef<Moe_Dialect, "Placement"> {
  let mnemonic = "placement";
  let summary = "Where each expert of a bank lives";
  let description = [{
    One entry per expert of a `moe.experts` bank:

    * `resident`: loaded once with the model and never evicted;
    * `cached`: pinned in the expert cache once first read (hot experts);
    * `streamed`: read from storage on demand into the expert cache, and
      evicted by its policy.

    ```mlir
    #moe.placement<[resident, streamed, streamed, cached]>
    ```
  }];
  let parameters = (ins ArrayRefParameter<"::moec::moe::Residency">:$experts);
  let assemblyFormat = "`<` `[` $experts `]` `>`";
}

def Moe_PrefetchAttr : AttrDef<Moe_Dialect, "Prefetch"> {
  let mnemonic = "prefetch";
  let summary = "How far ahead, and by what prediction, to read experts";
  let description = [{
    A hint on a `moe.experts` bank: read the experts this bank is predicted
    to need `distance` layers before it runs. `next_router` applies this
    bank's router to the hidden state of an earlier layer (as Pre-gated MoE
    and HOBBIT do); `previous_token` predicts the experts the previous token
    used in this layer.

    ```mlir
    #moe.prefetch<distance = 1, predictor = next_router>
    ```
  }];
  let parameters = (ins "unsigned":$distance,
                        "::moec::moe::Predictor":$predictor);
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

#endif // MOEC_DIALECTS_MOE_IR_MOEATTRS_TD
