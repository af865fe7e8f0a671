// One sparse layer of a small Qwen2-MoE-like model in moec's dialects, as the
// importer will produce it: 8 routed experts (top-2, softmax, renormalised)
// in Q4_K/Q6_K, and a shared expert with a sigmoid gate. Weights are named,
// never inlined. `moec-opt examples/sparse-moe-layer.mlir` verifies it.

moe.experts @blk0_experts {
  activation = #moe.act<swiglu>,
  gate = #qnt.ref<"blk.0.ffn_gate_exps.weight" : !qnt.tensor<8x512x256, q4_k>>,
  up = #qnt.ref<"blk.0.ffn_up_exps.weight" : !qnt.tensor<8x512x256, q4_k>>,
  down = #qnt.ref<"blk.0.ffn_down_exps.weight" : !qnt.tensor<8x256x512, q6_k>>
}

func.func @blk0_moe(%x: tensor<?x256xf32>) -> tensor<?x256xf32> {
  %router = qnt.weight "blk.0.ffn_gate_inp.weight" : tensor<8x256xf32>
  %rt = tensor.empty() : tensor<256x8xf32>
  %router_t = linalg.transpose ins(%router : tensor<8x256xf32>) outs(%rt : tensor<256x8xf32>) permutation = [1, 0]
  %c0 = arith.constant 0 : index
  %t = tensor.dim %x, %c0 : tensor<?x256xf32>
  %zero = arith.constant 0.0 : f32
  %init = tensor.empty(%t) : tensor<?x8xf32>
  %acc = linalg.fill ins(%zero : f32) outs(%init : tensor<?x8xf32>) -> tensor<?x8xf32>
  %logits = linalg.matmul ins(%x, %router_t : tensor<?x256xf32>, tensor<256x8xf32>) outs(%acc : tensor<?x8xf32>) -> tensor<?x8xf32>

  %ids, %weights = moe.route %logits top 2 softmax normalize
      : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  %rows, %slots, %offsets = moe.dispatch %x, %ids
      : tensor<?x256xf32>, tensor<?x2xi32> -> tensor<?x256xf32>, tensor<?xi32>, tensor<9xi32>
  %y = moe.expert_ffn @blk0_experts(%rows, %offsets)
      : (tensor<?x256xf32>, tensor<9xi32>) -> tensor<?x256xf32>
  %routed = moe.combine %y, %slots, %weights
      : tensor<?x256xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x256xf32>
  %shared = moe.shared_expert %x {
    activation = #moe.act<swiglu>,
    gate = #qnt.ref<"blk.0.ffn_gate_shexp.weight" : !qnt.tensor<512x256, q8_0>>,
    up = #qnt.ref<"blk.0.ffn_up_shexp.weight" : !qnt.tensor<512x256, q8_0>>,
    down = #qnt.ref<"blk.0.ffn_down_shexp.weight" : !qnt.tensor<256x512, q8_0>>,
    input_gate = #qnt.ref<"blk.0.ffn_gate_inp_shexp.weight" : tensor<256xf32>>
  } : tensor<?x256xf32> -> tensor<?x256xf32>
  %out = arith.addf %routed, %shared : tensor<?x256xf32>
  return %out : tensor<?x256xf32>
}
