//===- MoeBase.td - The moe (sparse experts) dialect -----------*- tablegen -*-===//

#ifndef MOEC_DIALECTS_MOE_IR_MOEBASE_TD
#define MOEC_DIALECTS_MOE_IR_MOEBASE_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

def Moe_Dialect : Dialect {
  let name = "moe";
  let cppNamespace = "::moec::moe";
  let summary = "Sparse Mixture-of-Experts layers with first-class routing";
  let description = [{
    The `moe` dialect describes the sparse part of a Mixture-of-Experts
    transformer so that the compiler can plan, stream and fuse it:

    * routing: `moe.route` turns router logits into the top-k expert ids and
      weights of every token (softmax or sigmoid scoring, renormalisation,
      DeepSeek-V3's group-limited selection and selection bias, a routed
      scaling factor);
    * `moe.dispatch` groups the routed (token, slot) pairs by expert into a
      ragged batch, `moe.expert_ffn` applies each expert of a `moe.experts`
      bank to its own group, `moe.combine` sums the weighted expert outputs
      back into token order; `moe.shared_expert` is the dense expert that
      every token goes through (Qwen2-MoE, DeepSeek), with an optional
      sigmoid gate;
    * placement: where each expert lives (`resident`, `cached`, `streamed`)
      and prefetch hints, as attributes of the bank, and `moe.prefetch`, the
      point at which the experts a later layer is predicted to need may be
      read ahead.

    Routing is first-class: expert weights are named by `#qnt.ref` on a
    `moe.experts` symbol and never flow as SSA values, so no operation needs
    every expert's weights to be materialised; an implementation touches only
    the experts that tokens were routed to.

    Around the sparse part, the dialect has the few dense operations of an
    MoE transformer that upstream MLIR has no single operation for, kept
    whole so that code generation can fuse and specialise them: `moe.embed`
    (a row lookup that, like the experts, reads only the rows it needs),
    `moe.rms_norm`, `moe.rope` and `moe.attention` (causal, grouped-query,
    over a KV cache). Projections are `qnt.matmul`; everything else is
    upstream (tensor reshapes, arith).
  }];
  let dependentDialects = [
    "::moec::qnt::QntDialect",
    "::mlir::tensor::TensorDialect",
    "::mlir::arith::ArithDialect"
  ];
  let useDefaultAttributePrinterParser = 1;
  let hasCanonicalizer = 0;
}

class Moe_Op<string mnemonic, list<Trait> traits = []>
    : Op<Moe_Dialect, mnemonic, traits>;

#endif // MOEC_DIALECTS_MOE_IR_MOEBASE_TD
