// Round trip: custom form -> custom form, generic form -> custom form, and a
// second print of the first print is byte-identical.
// RUN: moec-opt %s | moec-opt | FileCheck %s
// RUN: moec-opt %s --mlir-print-op-generic | moec-opt | FileCheck %s
// RUN: moec-opt %s -o %t.1.mlir && moec-opt %t.1.mlir -o %t.2.mlir && diff %t.1.mlir %t.2.mlir
// RUN: moec-opt %s --mlir-print-op-generic -o %t.g1.mlir && moec-opt %t.g1.mlir --mlir-print-op-generic -o %t.g2.mlir && diff %t.g1.mlir %t.g2.mlir

// A Mixtral-style bank: quantized experts, placement and prefetch decided.
// CHECK-LABEL: moe.experts @blk0_experts
// CHECK-SAME: activation = #moe.act<swiglu>
// CHECK-SAME: down = #qnt.ref<"blk.0.ffn_down_exps.weight" : !qnt.tensor<8x64x128, q8_0>>
// CHECK-SAME: gate = #qnt.ref<"blk.0.ffn_gate_exps.weight" : !qnt.tensor<8x128x64, q4_0>>
// CHECK-SAME: placement = #moe.placement<[resident, cached, streamed, streamed, streamed, streamed, streamed, streamed]>
// CHECK-SAME: prefetch = #moe.prefetch<distance = 1, predictor = next_router>
// CHECK-SAME: up = #qnt.ref<"blk.0.ffn_up_exps.weight" : !qnt.tensor<8x128x64, q4_0>>
moe.experts @blk0_experts {
  activation = #moe.act<swiglu>,
  gate = #qnt.ref<"blk.0.ffn_gate_exps.weight" : !qnt.tensor<8x128x64, q4_0>>,
  up = #qnt.ref<"blk.0.ffn_up_exps.weight" : !qnt.tensor<8x128x64, q4_0>>,
  down = #qnt.ref<"blk.0.ffn_down_exps.weight" : !qnt.tensor<8x64x128, q8_0>>,
  placement = #moe.placement<[resident, cached, streamed, streamed, streamed, streamed, streamed, streamed]>,
  prefetch = #moe.prefetch<distance = 1, predictor = next_router>
}

// A gpt-oss-style bank: MXFP4 experts with biases and clamped SwiGLU.
// Experts of one bank in different formats (per-expert mixed precision):
// the references carry expert 0's.
// CHECK-LABEL: moe.experts @mixed_experts
// CHECK-SAME: expert_types = {{\[}}[!qnt.tensor<32x64, q4_0>, !qnt.tensor<32x64, q4_0>, !qnt.tensor<64x32, q8_0>], [!qnt.tensor<32x64, q8_0>, !qnt.tensor<32x64, q8_0>, !qnt.tensor<64x32, q4_0>]]
moe.experts @mixed_experts {
  activation = #moe.act<swiglu>,
  gate = #qnt.ref<"g" : !qnt.tensor<2x32x64, q4_0>>,
  up = #qnt.ref<"u" : !qnt.tensor<2x32x64, q4_0>>,
  down = #qnt.ref<"d" : !qnt.tensor<2x64x32, q8_0>>,
  expert_types = [[!qnt.tensor<32x64, q4_0>, !qnt.tensor<32x64, q4_0>, !qnt.tensor<64x32, q8_0>],
                  [!qnt.tensor<32x64, q8_0>, !qnt.tensor<32x64, q8_0>, !qnt.tensor<64x32, q4_0>]]
}

// CHECK-LABEL: moe.experts @oss_experts
// CHECK-SAME: activation = #moe.act<swiglu_clamped, alpha = 1.702000e+00, limit = 7.000000e+00>
// CHECK-SAME: down_bias = #qnt.ref<"blk.0.ffn_down_exps.bias" : tensor<4x64xf32>>
// CHECK-SAME: gate_bias = #qnt.ref<"blk.0.ffn_gate_exps.bias" : tensor<4x32xf32>>
// CHECK-SAME: prefetch = #moe.prefetch<distance = 2, predictor = previous_token>
// CHECK-SAME: up_bias = #qnt.ref<"blk.0.ffn_up_exps.bias" : tensor<4x32xf32>>
moe.experts @oss_experts {
  activation = #moe.act<swiglu_clamped, alpha = 1.702, limit = 7.0>,
  gate = #qnt.ref<"blk.0.ffn_gate_exps.weight" : !qnt.tensor<4x32x64, mxfp4>>,
  up = #qnt.ref<"blk.0.ffn_up_exps.weight" : !qnt.tensor<4x32x64, mxfp4>>,
  down = #qnt.ref<"blk.0.ffn_down_exps.weight" : !qnt.tensor<4x64x32, mxfp4>>,
  gate_bias = #qnt.ref<"blk.0.ffn_gate_exps.bias" : tensor<4x32xf32>>,
  up_bias = #qnt.ref<"blk.0.ffn_up_exps.bias" : tensor<4x32xf32>>,
  down_bias = #qnt.ref<"blk.0.ffn_down_exps.bias" : tensor<4x64xf32>>,
  prefetch = #moe.prefetch<distance = 2, predictor = previous_token>
}

// Unquantized experts and GeGLU.
// CHECK-LABEL: moe.experts @f16_experts
// CHECK-SAME: activation = #moe.act<geglu>
moe.experts @f16_experts {
  activation = #moe.act<geglu>,
  gate = #qnt.ref<"g" : tensor<2x16x64xf16>>,
  up = #qnt.ref<"u" : tensor<2x16x64xbf16>>,
  down = #qnt.ref<"d" : tensor<2x64x16xf32>>
}

// One whole sparse layer: route, dispatch, expert FFNs, combine, shared
// expert, and a prefetch for the next layer.
// CHECK-LABEL: func.func @sparse_layer
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xf32>, %[[L:.*]]: tensor<?x8xf32>)
func.func @sparse_layer(%x: tensor<?x64xf32>, %logits: tensor<?x8xf32>) -> tensor<?x64xf32> {
  // CHECK: %[[IDS:.*]], %[[W:.*]] = moe.route %[[L]] top 2 softmax normalize : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  %ids, %weights = moe.route %logits top 2 softmax normalize : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  // CHECK: moe.prefetch @blk0_experts(%[[IDS]]) : tensor<?x2xi32>
  moe.prefetch @blk0_experts(%ids) : tensor<?x2xi32>
  // CHECK: %[[ROWS:.*]], %[[SLOTS:.*]], %[[OFF:.*]] = moe.dispatch %[[X]], %[[IDS]] : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<?xi32>, tensor<9xi32>
  %rows, %slots, %offsets = moe.dispatch %x, %ids : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<?xi32>, tensor<9xi32>
  // CHECK: %[[Y:.*]] = moe.expert_ffn @blk0_experts(%[[ROWS]], %[[OFF]]) : (tensor<?x64xf32>, tensor<9xi32>) -> tensor<?x64xf32>
  %y = moe.expert_ffn @blk0_experts(%rows, %offsets) : (tensor<?x64xf32>, tensor<9xi32>) -> tensor<?x64xf32>
  // CHECK: %[[C:.*]] = moe.combine %[[Y]], %[[SLOTS]], %[[W]] : tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x64xf32>
  %c = moe.combine %y, %slots, %weights : tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x64xf32>
  // CHECK: moe.shared_expert %[[X]] {activation = #moe.act<swiglu>, down = #qnt.ref<"blk.0.ffn_down_shexp.weight" : tensor<64x32xf16>>, gate = #qnt.ref<"blk.0.ffn_gate_shexp.weight" : tensor<32x64xf16>>, input_gate = #qnt.ref<"blk.0.ffn_gate_inp_shexp.weight" : tensor<64xf32>>, up = #qnt.ref<"blk.0.ffn_up_shexp.weight" : tensor<32x64xf16>>} : tensor<?x64xf32> -> tensor<?x64xf32>
  %s = moe.shared_expert %x {
    activation = #moe.act<swiglu>,
    gate = #qnt.ref<"blk.0.ffn_gate_shexp.weight" : tensor<32x64xf16>>,
    up = #qnt.ref<"blk.0.ffn_up_shexp.weight" : tensor<32x64xf16>>,
    down = #qnt.ref<"blk.0.ffn_down_shexp.weight" : tensor<64x32xf16>>,
    input_gate = #qnt.ref<"blk.0.ffn_gate_inp_shexp.weight" : tensor<64xf32>>
  } : tensor<?x64xf32> -> tensor<?x64xf32>
  %out = arith.addf %c, %s : tensor<?x64xf32>
  return %out : tensor<?x64xf32>
}

// DeepSeek-V3 routing: sigmoid, selection bias, group limit, scaling.
// CHECK-LABEL: func.func @deepseek_route
// CHECK: moe.route %{{.*}} bias(%{{.*}} : tensor<256xf32>) top 8 sigmoid normalize groups(8, 4) scale(2.500000e+00) : tensor<?x256xf32> -> tensor<?x8xi32>, tensor<?x8xf32>
func.func @deepseek_route(%logits: tensor<?x256xf32>, %bias: tensor<256xf32>) -> (tensor<?x8xi32>, tensor<?x8xf32>) {
  %ids, %weights = moe.route %logits bias(%bias : tensor<256xf32>) top 8 sigmoid normalize groups(8, 4) scale(2.5) : tensor<?x256xf32> -> tensor<?x8xi32>, tensor<?x8xf32>
  return %ids, %weights : tensor<?x8xi32>, tensor<?x8xf32>
}

// Static shapes, f16 activations, a shared expert without a gate and with a
// [1, H] gate.
// CHECK-LABEL: func.func @static_f16
func.func @static_f16(%x: tensor<3x64xf16>, %logits: tensor<3x2xf16>) -> (tensor<3x64xf16>, tensor<3x64xf16>, tensor<3x64xf16>) {
  // CHECK: moe.route %{{.*}} top 1 sigmoid : tensor<3x2xf16> -> tensor<3x1xi32>, tensor<3x1xf16>
  %ids, %weights = moe.route %logits top 1 sigmoid : tensor<3x2xf16> -> tensor<3x1xi32>, tensor<3x1xf16>
  // CHECK: moe.dispatch {{.*}} -> tensor<3x64xf16>, tensor<3xi32>, tensor<3xi32>
  %rows, %slots, %offsets = moe.dispatch %x, %ids : tensor<3x64xf16>, tensor<3x1xi32> -> tensor<3x64xf16>, tensor<3xi32>, tensor<3xi32>
  // CHECK: moe.expert_ffn @f16_experts
  %y = moe.expert_ffn @f16_experts(%rows, %offsets) : (tensor<3x64xf16>, tensor<3xi32>) -> tensor<3x64xf16>
  // CHECK: moe.combine {{.*}} -> tensor<3x64xf16>
  %c = moe.combine %y, %slots, %weights : tensor<3x64xf16>, tensor<3xi32>, tensor<3x1xf16> -> tensor<3x64xf16>
  // CHECK: moe.shared_expert
  // CHECK-NOT: input_gate
  %s = moe.shared_expert %x {
    activation = #moe.act<geglu>,
    gate = #qnt.ref<"g" : !qnt.tensor<32x64, q8_0>>,
    up = #qnt.ref<"u" : !qnt.tensor<32x64, q8_0>>,
    down = #qnt.ref<"d" : !qnt.tensor<64x32, q8_0>>
  } : tensor<3x64xf16> -> tensor<3x64xf16>
  // CHECK: input_gate = #qnt.ref<"gi" : tensor<1x64xf32>>
  %t = moe.shared_expert %x {
    activation = #moe.act<swiglu>,
    gate = #qnt.ref<"g" : !qnt.tensor<32x64, q8_0>>,
    up = #qnt.ref<"u" : !qnt.tensor<32x64, q8_0>>,
    down = #qnt.ref<"d" : !qnt.tensor<64x32, q8_0>>,
    input_gate = #qnt.ref<"gi" : tensor<1x64xf32>>
  } : tensor<3x64xf16> -> tensor<3x64xf16>
  return %c, %s, %t : tensor<3x64xf16>, tensor<3x64xf16>, tensor<3x64xf16>
}

// CHECK-LABEL: func.func @score
// CHECK: moe.score %{{.*}} sigmoid : tensor<?x8xbf16>
func.func @score(%logits: tensor<?x8xbf16>) -> tensor<?x8xbf16> {
  %p = moe.score %logits sigmoid : tensor<?x8xbf16>
  return %p : tensor<?x8xbf16>
}

// The dense operations of a transformer layer.
// CHECK-LABEL: func.func @dense_layer
func.func @dense_layer(%tokens: tensor<?xi32>, %pos: tensor<?xi32>, %w: tensor<64xf32>, %wh: tensor<16xf32>,
                       %q: tensor<?x4x16xf32>, %k: tensor<?x2x16xf32>, %v: tensor<?x2x16xf32>,
                       %kc: tensor<128x2x16xf32>, %vc: tensor<128x2x16xf32>)
    -> (tensor<?x64xf32>, tensor<?x4x16xf32>, tensor<?x4x16xf32>, tensor<128x2x16xf32>, tensor<128x2x16xf32>) {
  // CHECK: moe.embed %{{.*}} {table = #qnt.ref<"token_embd.weight" : !qnt.tensor<256x64, q8_0>>} : tensor<?xi32> -> tensor<?x64xf32>
  %x = moe.embed %tokens {table = #qnt.ref<"token_embd.weight" : !qnt.tensor<256x64, q8_0>>} : tensor<?xi32> -> tensor<?x64xf32>
  // CHECK: moe.rms_norm %{{.*}}, %{{.*}} epsilon(9.9999999999999995E-7) : tensor<?x64xf32>, tensor<64xf32>
  %n = moe.rms_norm %x, %w epsilon(1.0e-6) : tensor<?x64xf32>, tensor<64xf32>
  // CHECK: moe.rms_norm %{{.*}}, %{{.*}} epsilon(1.000000e-05) : tensor<?x4x16xf32>, tensor<16xf32>
  %qn = moe.rms_norm %q, %wh epsilon(1.0e-5) : tensor<?x4x16xf32>, tensor<16xf32>
  // CHECK: moe.rope %{{.*}}, %{{.*}} neox theta(1.000000e+06) : tensor<?x4x16xf32>, tensor<?xi32>
  %qr = moe.rope %qn, %pos neox theta(1.0e6) : tensor<?x4x16xf32>, tensor<?xi32>
  // CHECK: moe.rope %{{.*}}, %{{.*}} interleaved theta(1.000000e+04) : tensor<?x2x16xf32>, tensor<?xi32>
  %kr = moe.rope %k, %pos interleaved theta(1.0e4) : tensor<?x2x16xf32>, tensor<?xi32>
  // CHECK: moe.attention %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} scale(2.500000e-01) : tensor<?x4x16xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf32>, tensor<128x2x16xf32>, tensor<?xi32>
  %o, %kc2, %vc2 = moe.attention %qr, %kr, %v, %kc, %vc, %pos scale(0.25) : tensor<?x4x16xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf32>, tensor<128x2x16xf32>, tensor<?xi32>
  return %n, %qr, %o, %kc2, %vc2 : tensor<?x64xf32>, tensor<?x4x16xf32>, tensor<?x4x16xf32>, tensor<128x2x16xf32>, tensor<128x2x16xf32>
}
