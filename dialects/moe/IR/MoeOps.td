//===- MoeOps.td - moe operations ------------------------------*- tablegen -*-===//

#ifndef MOEC_DIALECTS_MOE_IR_MOEOPS_TD
#define MOEC_DIALECTS_MOE_IR_MOEOPS_TD

include "dialects/moe/IR/MoeAttrs.td"
include "dialects/qnt/IR/QntAttrs.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Moe_FloatTensor : RankedTensorOf<[F32, F16, BF16]>;
def Moe_I32Tensor : RankedTensorOf<[I32]>;

//===----------------------------------------------------------------------===//
// moe.experts
//===----------------------------------------------------------------------===//

def Moe_ExpertsOp : Moe_Op<"experts", [Symbol]> {
  let summary = "A bank of routed experts and where they live";
  let description = [{
    Declares the routed experts of one MoE layer: their stacked gate, up and
    down projections in the weight store (named, never loaded as a whole),
    optional biases (gpt-oss), the gated activation, and, once the `plan`
    phase has decided it, where each expert lives and how it is prefetched.

    Shapes, with `E` experts, hidden size `H` and expert intermediate size
    `I` (each projection row-major with the reduction dimension innermost, as
    GGUF stores `ffn_{gate,up,down}_exps`):

    | weight                   | shape       |
    | ------------------------ | ----------- |
    | `gate`, `up`             | `[E, I, H]` |
    | `down`                   | `[E, H, I]` |
    | `gate_bias`, `up_bias`   | `[E, I]`    |
    | `down_bias`              | `[E, H]`    |

    The experts of a bank share their references' formats unless
    `expert_types` is given: then it lists, per expert, the types of its
    gate, up and down matrices (`[I, H]`, `[I, H]`, `[H, I]`), which may
    differ from expert to expert (per-expert mixed precision), and each
    reference's type is expert 0's. Where the bank is stored, expert `e`'s
    slice of a projection follows the slices of experts `0..e-1`, each in
    its own format.

    ```mlir
    moe.experts @blk0_experts {
      activation = #moe.act<swiglu>,
      gate = #qnt.ref<"blk.0.ffn_gate_exps.weight" : !qnt.tensor<8x128x64, q4_k>>,
      up = #qnt.ref<"blk.0.ffn_up_exps.weight" : !qnt.tensor<8x128x64, q4_k>>,
      down = #qnt.ref<"blk.0.ffn_down_exps.weight" : !qnt.tensor<8x64x128, q6_k>>,
      placement = #moe.placement<[cached, streamed, streamed, streamed,
                                  streamed, streamed, streamed, resident]>
    }
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                       Qnt_WeightRefAttr:$gate,
                       Qnt_WeightRefAttr:$up,
                       Qnt_WeightRefAttr:$down,
                       OptionalAttr<Qnt_WeightRefAttr>:$gate_bias,
                       OptionalAttr<Qnt_WeightRefAttr>:$up_bias,
                       OptionalAttr<Qnt_WeightRefAttr>:$down_bias,
                       Moe_ActivationAttr:$activation,
                       OptionalAttr<Moe_PlacementAttr>:$placement,
                       OptionalAttr<Moe_PrefetchAttr>:$prefetch,
                       OptionalAttr<ArrayAttr>:$expert_types);
  let assemblyFormat = "$sym_name attr-dict";
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The type of expert `expert`'s matrix of projection `part` (0 gate,
    /// 1 up, 2 down): its reference's type without the expert dimension,
    /// or the expert's entry of `expert_types`.
    ::mlir::Type getExpertType(unsigned part, int64_t expert);
    /// E, from the gate projection's shape [E, I, H].
    int64_t getNumExperts();
    /// H, the model's hidden size.
    int64_t getHiddenSize();
    /// I, one expert's intermediate size.
    int64_t getIntermediateSize();
  }];
}

//===----------------------------------------------------------------------===//
// moe.route / moe.score
//===----------------------------------------------------------------------===//

def Moe_RouteOp : Moe_Op<"route", [Pure]> {
  let summary = "Router logits to the top-k experts of every token";
  let description = [{
    For each token (row of `logits`, one column per expert):

    1. `s = scoring(logits)` (softmax over the experts, or an element-wise
       sigmoid);
    2. the selection score is `s + bias` when the optional `bias` (one value
       per expert, DeepSeek-V3's `e_score_correction_bias`) is given, else
       `s`; the bias steers selection only and never enters the weights;
    3. with `groups(n_group, topk_group)` (DeepSeek-V3), the experts are cut
       into `n_group` equal groups, each group is scored by the sum of its
       two highest selection scores, and only experts of the `topk_group`
       best groups remain selectable;
    4. the `k` selectable experts with the highest selection scores are
       chosen: `ids[t, j]`;
    5. `weights[t, j] = s[t, ids[t, j]]`, divided by their sum over `j` when
       `normalize` is set, then multiplied by `scale` (DeepSeek's routed
       scaling factor) when given.

    The order of the `k` choices of a token is unspecified; every consumer
    (`moe.dispatch`, `moe.combine`) is invariant under it.

    ```mlir
    %ids, %weights = moe.route %logits top 2 softmax normalize
        : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
    %ids, %weights = moe.route %logits bias(%b : tensor<256xf32>) top 8 sigmoid
        normalize groups(8, 4) scale(2.5)
        : tensor<?x256xf32> -> tensor<?x8xi32>, tensor<?x8xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$logits,
                       Optional<Moe_FloatTensor>:$bias,
                       ConfinedAttr<I64Attr, [IntPositive]>:$k,
                       Moe_ScoringFuncAttr:$scoring,
                       UnitAttr:$normalize,
                       OptionalAttr<I64Attr>:$n_group,
                       OptionalAttr<I64Attr>:$topk_group,
                       OptionalAttr<F32Attr>:$scale);
  let results = (outs Moe_I32Tensor:$ids, Moe_FloatTensor:$weights);
  let assemblyFormat = [{
    $logits (`bias` `(` $bias^ `:` type($bias) `)`)? `top` $k `` $scoring
    (`normalize` $normalize^)?
    (`groups` `(` $n_group^ `,` $topk_group `)`)?
    (`scale` `(` $scale^ `)`)?
    attr-dict `:` type($logits) `->` type($ids) `,` type($weights)
  }];
  let hasVerifier = 1;
  let hasCanonicalizer = 1;
  let extraClassDeclaration = [{
    /// The number of experts routed among: the last dimension of the logits.
    int64_t getNumExperts() {
      return getLogits().getType().getShape().back();
    }
  }];
}

def Moe_ScoreOp : Moe_Op<"score", [Pure, SameOperandsAndResultType]> {
  let summary = "Router scores of every expert for every token";
  let description = [{
    `scoring(logits)` over the last (expert) dimension, with no selection:
    what `moe.route` computes before its top-k, and what a route that keeps
    every expert canonicalizes to.

    ```mlir
    %probs = moe.score %logits softmax : tensor<?x8xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$logits, Moe_ScoringFuncAttr:$scoring);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = "$logits `` $scoring attr-dict `:` type($logits)";
}

//===----------------------------------------------------------------------===//
// moe.dispatch / moe.expert_ffn / moe.combine
//===----------------------------------------------------------------------===//

def Moe_DispatchOp : Moe_Op<"dispatch", [Pure]> {
  let summary = "Group routed tokens by expert into a ragged batch";
  let description = [{
    Sorts the `T * k` (token, choice) pairs of `ids` by expert, stably (in
    token order within an expert), and gathers each pair's token row of
    `input`:

    * `rows[r]` is the hidden state of the token of pair `r`;
    * `slots[r] = t * k + j`, the pair that row `r` came from;
    * `offsets` has `E + 1` entries: the rows of expert `e` are
      `[offsets[e], offsets[e + 1])`, `offsets[0] = 0`, `offsets[E] = T * k`.

    The number of experts `E` is the length of `offsets` minus one.

    ```mlir
    %rows, %slots, %offsets = moe.dispatch %x, %ids
        : tensor<?x64xf32>, tensor<?x2xi32>
       -> tensor<?x64xf32>, tensor<?xi32>, tensor<9xi32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$input, Moe_I32Tensor:$ids);
  let results = (outs Moe_FloatTensor:$rows, Moe_I32Tensor:$slots,
                      Moe_I32Tensor:$offsets);
  let assemblyFormat = [{
    $input `,` $ids attr-dict `:` type($input) `,` type($ids) `->`
    type($rows) `,` type($slots) `,` type($offsets)
  }];
  let hasVerifier = 1;
}

def Moe_ExpertFfnOp : Moe_Op<"expert_ffn", [
    Pure, DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "Apply each expert of a bank to its ragged group of rows";
  let description = [{
    For every expert `e` of the bank `experts`, applies its FFN,
    `down(act(gate(x), up(x)))`, to the rows `[offsets[e], offsets[e + 1])`
    of `rows` (as produced by `moe.dispatch`). Experts with no rows are not
    touched: an implementation reads only the weights of routed experts.

    ```mlir
    %y = moe.expert_ffn @blk0_experts(%rows, %offsets)
        : (tensor<?x64xf32>, tensor<9xi32>) -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$experts, Moe_FloatTensor:$rows,
                       Moe_I32Tensor:$offsets);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $experts `(` $rows `,` $offsets `)` attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_CombineOp : Moe_Op<"combine", [Pure]> {
  let summary = "Weighted sum of expert outputs back in token order";
  let description = [{
    `result[t] = sum_j weights[t, j] * expert_out[r]` where `r` is the row
    with `slots[r] = t * k + j` (see `moe.dispatch`).

    ```mlir
    %out = moe.combine %y, %slots, %weights
        : tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$expert_out, Moe_I32Tensor:$slots,
                       Moe_FloatTensor:$weights);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $expert_out `,` $slots `,` $weights attr-dict `:` type($expert_out) `,`
    type($slots) `,` type($weights) `->` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// moe.shared_expert
//===----------------------------------------------------------------------===//

def Moe_SharedExpertOp : Moe_Op<"shared_expert", [Pure]> {
  let summary = "The dense expert every token goes through";
  let description = [{
    `result = g * down(act(gate(x), up(x)))` for every token, where `g` is
    `sigmoid(x . input_gate)` when `input_gate` (Qwen2-MoE's
    `ffn_gate_inp_shexp`, shape `[H]` or `[1, H]`) is given, else 1.
    Weights: `gate` and `up` `[I, H]`, `down` `[H, I]` (DeepSeek's several
    shared experts are stored as one with a larger `I`).

    ```mlir
    %s = moe.shared_expert %x {
      activation = #moe.act<swiglu>,
      gate = #qnt.ref<"blk.0.ffn_gate_shexp.weight" : tensor<256x64xf16>>,
      up = #qnt.ref<"blk.0.ffn_up_shexp.weight" : tensor<256x64xf16>>,
      down = #qnt.ref<"blk.0.ffn_down_shexp.weight" : tensor<64x256xf16>>,
      input_gate = #qnt.ref<"blk.0.ffn_gate_inp_shexp.weight" : tensor<64xf32>>
    } : tensor<?x64xf32> -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$input,
                       Qnt_WeightRefAttr:$gate,
                       Qnt_WeightRefAttr:$up,
                       Qnt_WeightRefAttr:$down,
                       OptionalAttr<Qnt_WeightRefAttr>:$input_gate,
                       Moe_ActivationAttr:$activation);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// moe.prefetch
//===----------------------------------------------------------------------===//

def Moe_PrefetchOp : Moe_Op<"prefetch", [
    DeclareOpInterfaceMethods<SymbolUserOpInterface>,
    MemoryEffects<[MemWrite]>]> {
  let summary = "Read experts of a bank ahead of their use";
  let description = [{
    A hint that the experts `ids` of the bank `experts` will be needed soon:
    the runtime may start reading those that are not in the expert cache.
    It changes no value; it only moves I/O earlier. (It is modelled as
    writing memory, the expert cache, so that it is neither hoisted nor
    removed as dead.) Ids outside `[0, E)` are ignored.

    ```mlir
    moe.prefetch @blk1_experts(%predicted) : tensor<?x2xi32>
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$experts, Moe_I32Tensor:$ids);
  let assemblyFormat = "$experts `(` $ids `)` attr-dict `:` type($ids)";
}

//===----------------------------------------------------------------------===//
// Dense transformer operations
//===----------------------------------------------------------------------===//

def Moe_EmbedOp : Moe_Op<"embed", [Pure]> {
  let summary = "Token embedding lookup";
  let description = [{
    `result[t] = dequantize(table)[tokens[t]]`. The table (`[vocabulary,
    hidden]`, GGUF's `token_embd`) is named, not an SSA value, so that an
    implementation reads only the rows of the tokens it embeds. Token ids
    outside `[0, vocabulary)` are an error at run time.

    ```mlir
    %x = moe.embed %tokens {table = #qnt.ref<"token_embd.weight" : !qnt.tensor<32000x2048, q8_0>>}
        : tensor<?xi32> -> tensor<?x2048xf32>
    ```
  }];
  let arguments = (ins Moe_I32Tensor:$tokens, Qnt_WeightRefAttr:$table);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = "$tokens attr-dict `:` type($tokens) `->` type($result)";
  let hasVerifier = 1;
}

def Moe_RmsNormOp : Moe_Op<"rms_norm", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "RMSNorm over the innermost dimension";
  let description = [{
    `result = input / sqrt(mean(input^2) + epsilon) * weight`, the mean taken
    over the innermost dimension, whose size the (1-D) weight has. Applied to
    `[tokens, hidden]` it is a layer's norm; to `[tokens, heads, head_dim]`,
    Qwen3-MoE's per-head Q/K norm.

    ```mlir
    %y = moe.rms_norm %x, %w epsilon(1.0e-06) : tensor<?x2048xf32>, tensor<2048xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$input, Moe_FloatTensor:$weight,
                       F64Attr:$epsilon);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight `epsilon` `(` $epsilon `)` attr-dict `:` type($input)
    `,` type($weight)
  }];
  let hasVerifier = 1;
}

def Moe_RopeOp : Moe_Op<"rope", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "Rotary position embedding";
  let description = [{
    Rotates each pair of dimensions of every head of `input` (`[tokens,
    heads, head_dim]`) by the angle `positions[t] * theta^(-2i / head_dim)`
    of its pair index `i`. `neox` pairs dimension `i` with `i + head_dim/2`
    (Hugging Face's rotate_half); `interleaved` pairs `2i` with `2i + 1`
    (what GGUF llama-family files, whose Q and K rows the converter permuted,
    are written for).

    ```mlir
    %q2 = moe.rope %q, %positions neox theta(1.0e+04) : tensor<?x32x128xf32>, tensor<?xi32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$input, Moe_I32Tensor:$positions,
                       Moe_RopeStyleAttr:$style, F64Attr:$theta);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $positions `` $style `theta` `(` $theta `)` attr-dict `:`
    type($input) `,` type($positions)
  }];
  let hasVerifier = 1;
}

def Moe_AttentionOp : Moe_Op<"attention", [Pure,
    AllTypesMatch<["k_cache", "new_k_cache", "v_cache", "new_v_cache"]>,
    AllTypesMatch<["query", "result"]>]> {
  let summary = "Causal grouped-query attention over a KV cache";
  let description = [{
    Stores `key[t]` and `value[t]` at row `positions[t]` of the caches
    (`[context, kv_heads, head_dim]`), yielding the updated caches, then for
    every token `t` and head `h` attends over cache rows `0..positions[t]`
    of KV head `h / (heads / kv_heads)`:
    `result[t, h] = sum_p softmax_p(scale * query[t, h] . K[p]) * V[p]`.
    Positions must be below the context size.

    ```mlir
    %o, %kc, %vc = moe.attention %q, %k, %v, %k_cache, %v_cache, %positions
        scale(8.8388347648318433e-02)
        : tensor<?x32x128xf32>, tensor<?x4x128xf32>, tensor<?x4x128xf32>,
          tensor<4096x4x128xf32>, tensor<?xi32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$query, Moe_FloatTensor:$key,
                       Moe_FloatTensor:$value, Moe_FloatTensor:$k_cache,
                       Moe_FloatTensor:$v_cache, Moe_I32Tensor:$positions,
                       F64Attr:$scale);
  let results = (outs Moe_FloatTensor:$result, Moe_FloatTensor:$new_k_cache,
                      Moe_FloatTensor:$new_v_cache);
  let assemblyFormat = [{
    $query `,` $key `,` $value `,` $k_cache `,` $v_cache `,` $positions
    `scale` `(` $scale `)` attr-dict `:` type($query) `,` type($key) `,`
    type($value) `,` type($k_cache) `,` type($positions)
  }];
  let hasVerifier = 1;
}

#endif // MOEC_DIALECTS_MOE_IR_MOEOPS_TD
