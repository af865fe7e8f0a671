// RUN: moec-opt %s -split-input-file -verify-diagnostics

//===----------------------------------------------------------------------===//
// #moe.act: custom parser
//===----------------------------------------------------------------------===//

// expected-error @+1 {{unknown activation 'relu', expected swiglu, geglu or swiglu_clamped}}
func.func @act_unknown() attributes {act = #moe.act<relu>} { return }

// -----

// expected-error @+1 {{expected 'alpha' or 'limit', got 'beta'}}
func.func @act_unknown_key() attributes {act = #moe.act<swiglu_clamped, alpha = 1.702, beta = 7.0>} { return }

// -----

//===----------------------------------------------------------------------===//
// #moe.act: verifier
//===----------------------------------------------------------------------===//

// expected-error @+1 {{activation swiglu takes no alpha or limit}}
func.func @act_swiglu_alpha() attributes {act = #moe.act<swiglu, alpha = 1.702>} { return }

// -----

// expected-error @+1 {{activation geglu takes no alpha or limit}}
func.func @act_geglu_limit() attributes {act = #moe.act<geglu, limit = 7.0>} { return }

// -----

// expected-error @+1 {{activation swiglu_clamped requires alpha and limit}}
func.func @act_clamped_bare() attributes {act = #moe.act<swiglu_clamped>} { return }

// -----

// expected-error @+1 {{activation swiglu_clamped requires alpha and limit}}
func.func @act_clamped_no_limit() attributes {act = #moe.act<swiglu_clamped, alpha = 1.702>} { return }

// -----

// expected-error @+1 {{activation swiglu_clamped requires alpha and limit}}
func.func @act_clamped_no_alpha() attributes {act = #moe.act<swiglu_clamped, limit = 7.0>} { return }

// -----

// expected-error @+1 {{'limit' given twice}}
func.func @act_duplicate_key() attributes {act = #moe.act<swiglu_clamped, alpha = 1.702, limit = 2.0, limit = 3.0>} { return }

// -----

// expected-error @+1 {{swiglu_clamped limit must be positive and finite, got INF}}
func.func @act_clamped_inf_limit() attributes {act = #moe.act<swiglu_clamped, alpha = 1.702, limit = 0x7FF0000000000000>} { return }

// -----

// expected-error @+1 {{swiglu_clamped alpha must be positive and finite, got -1.000000e+00}}
func.func @act_clamped_negative_alpha() attributes {act = #moe.act<swiglu_clamped, alpha = -1.0, limit = 7.0>} { return }

// -----

// expected-error @+1 {{swiglu_clamped alpha must be positive and finite, got nan}}
func.func @act_clamped_nan_alpha() attributes {act = #moe.act<swiglu_clamped, alpha = 0x7FF8000000000000, limit = 7.0>} { return }

// -----

// expected-error @+1 {{swiglu_clamped limit must be positive and finite, got 0.000000e+00}}
func.func @act_clamped_zero_limit() attributes {act = #moe.act<swiglu_clamped, alpha = 1.702, limit = 0.0>} { return }

// -----

// expected-error @+1 {{swiglu_clamped limit must be positive and finite, got -7.000000e+00}}
func.func @act_clamped_negative_limit() attributes {act = #moe.act<swiglu_clamped, alpha = 1.702, limit = -7.0>} { return }

// -----

// expected-error @+1 {{swiglu_clamped limit must be positive and finite, got nan}}
func.func @act_clamped_nan_limit() attributes {act = #moe.act<swiglu_clamped, alpha = 1.702, limit = 0x7FF8000000000000>} { return }

// -----

//===----------------------------------------------------------------------===//
// #moe.prefetch
//===----------------------------------------------------------------------===//

// expected-error @+1 {{prefetch distance must be at least one layer}}
func.func @prefetch_distance_zero() attributes {p = #moe.prefetch<distance = 0, predictor = next_router>} { return }

// -----

//===----------------------------------------------------------------------===//
// moe.experts
//===----------------------------------------------------------------------===//

// expected-error @+1 {{'moe.experts' op gate weight 'g' must have shape [experts, intermediate, hidden], got [32, 16]}}
moe.experts @gate_rank {
  activation = #moe.act<swiglu>,
  gate = #qnt.ref<"g" : tensor<32x16xf16>>,
  up = #qnt.ref<"u" : tensor<32x16xf16>>,
  down = #qnt.ref<"d" : tensor<16x32xf16>>
}

// -----

// expected-error @+1 {{'moe.experts' op up weight 'u' has shape [32, 16], expected [experts, intermediate, hidden] = [4, 32, 16]}}
moe.experts @up_rank {
  activation = #moe.act<swiglu>,
  gate = #qnt.ref<"g" : tensor<4x32x16xf16>>,
  up = #qnt.ref<"u" : tensor<32x16xf16>>,
  down = #qnt.ref<"d" : tensor<4x16x32xf16>>
}

// -----

// expected-error @+1 {{'moe.experts' op up weight 'u' has shape [4, 32, 8], expected [experts, intermediate, hidden] = [4, 32, 16]}}
moe.experts @up_hidden {
  activation = #moe.act<swiglu>,
  gate = #qnt.ref<"g" : tensor<4x32x16xf16>>,
  up = #qnt.ref<"u" : tensor<4x32x8xf16>>,
  down = #qnt.ref<"d" : tensor<4x16x32xf16>>
}

// -----

// expected-error @+1 {{'moe.experts' op up weight 'u' has shape [2, 512], expected [experts, intermediate, hidden] = [2, 256, 512]}}
moe.experts @up_quantized_rank {
  activation = #moe.act<swiglu>,
  gate = #qnt.ref<"g" : !qnt.tensor<2x256x512, q4_k>>,
  up = #qnt.ref<"u" : !qnt.tensor<2x512, q4_k>>,
  down = #qnt.ref<"d" : !qnt.tensor<2x512x256, q6_k>>
}

// -----

// The down projection is [experts, hidden, intermediate], not the shape of
// gate and up.
// expected-error @+1 {{'moe.experts' op down weight 'd' has shape [4, 32, 16], expected [experts, hidden, intermediate] = [4, 16, 32]}}
moe.experts @down_transposed {
  activation = #moe.act<swiglu>,
  gate = #qnt.ref<"g" : tensor<4x32x16xf16>>,
  up = #qnt.ref<"u" : tensor<4x32x16xf16>>,
  down = #qnt.ref<"d" : tensor<4x32x16xf16>>
}

// -----

// expected-error @+1 {{'moe.experts' op down weight 'd' has shape [64, 32], expected [experts, hidden, intermediate] = [4, 16, 32]}}
moe.experts @down_rank {
  activation = #moe.act<swiglu>,
  gate = #qnt.ref<"g" : tensor<4x32x16xf16>>,
  up = #qnt.ref<"u" : tensor<4x32x16xf16>>,
  down = #qnt.ref<"d" : tensor<64x32xf16>>
}

// -----

// expected-error @+1 {{'moe.experts' op gate_bias weight 'gb' has shape [4, 16], expected [experts, intermediate] = [4, 32]}}
moe.experts @gate_bias {
  activation = #moe.act<swiglu_clamped, alpha = 1.702, limit = 7.0>,
  gate = #qnt.ref<"g" : tensor<4x32x16xf16>>,
  up = #qnt.ref<"u" : tensor<4x32x16xf16>>,
  down = #qnt.ref<"d" : tensor<4x16x32xf16>>,
  gate_bias = #qnt.ref<"gb" : tensor<4x16xf32>>
}

// -----

// expected-error @+1 {{'moe.experts' op up_bias weight 'ub' has shape [32], expected [experts, intermediate] = [4, 32]}}
moe.experts @up_bias {
  activation = #moe.act<swiglu_clamped, alpha = 1.702, limit = 7.0>,
  gate = #qnt.ref<"g" : tensor<4x32x16xf16>>,
  up = #qnt.ref<"u" : tensor<4x32x16xf16>>,
  down = #qnt.ref<"d" : tensor<4x16x32xf16>>,
  up_bias = #qnt.ref<"ub" : tensor<32xf32>>
}

// -----

// expected-error @+1 {{'moe.experts' op down_bias weight 'db' has shape [4, 32], expected [experts, hidden] = [4, 16]}}
moe.experts @down_bias {
  activation = #moe.act<swiglu_clamped, alpha = 1.702, limit = 7.0>,
  gate = #qnt.ref<"g" : tensor<4x32x16xf16>>,
  up = #qnt.ref<"u" : tensor<4x32x16xf16>>,
  down = #qnt.ref<"d" : tensor<4x16x32xf16>>,
  down_bias = #qnt.ref<"db" : tensor<4x32xf32>>
}

// -----

// expected-error @+1 {{'moe.experts' op placement lists 3 experts but the bank has 4}}
moe.experts @placement_count {
  activation = #moe.act<swiglu>,
  gate = #qnt.ref<"g" : tensor<4x32x16xf16>>,
  up = #qnt.ref<"u" : tensor<4x32x16xf16>>,
  down = #qnt.ref<"d" : tensor<4x16x32xf16>>,
  placement = #moe.placement<[resident, cached, streamed]>
}

// -----

// expected-error @+1 {{'moe.experts' op expert_types lists 1 experts but the bank has 2}}
moe.experts @expert_types_count {
  activation = #moe.act<swiglu>,
  gate = #qnt.ref<"g" : !qnt.tensor<2x32x64, q4_0>>,
  up = #qnt.ref<"u" : !qnt.tensor<2x32x64, q4_0>>,
  down = #qnt.ref<"d" : !qnt.tensor<2x64x32, q8_0>>,
  expert_types = [[!qnt.tensor<32x64, q4_0>, !qnt.tensor<32x64, q4_0>, !qnt.tensor<64x32, q8_0>]]
}

// -----

// expected-error @+1 {{'moe.experts' op expert 1's down type must be a [64, 32] matrix}}
moe.experts @expert_types_shape {
  activation = #moe.act<swiglu>,
  gate = #qnt.ref<"g" : !qnt.tensor<2x32x64, q4_0>>,
  up = #qnt.ref<"u" : !qnt.tensor<2x32x64, q4_0>>,
  down = #qnt.ref<"d" : !qnt.tensor<2x64x32, q8_0>>,
  expert_types = [[!qnt.tensor<32x64, q4_0>, !qnt.tensor<32x64, q4_0>, !qnt.tensor<64x32, q8_0>],
                  [!qnt.tensor<32x64, q8_0>, !qnt.tensor<32x64, q8_0>, !qnt.tensor<32x64, q8_0>]]
}

// -----

// expected-error @+1 {{'moe.experts' op gate reference has type '!qnt.tensor<2x32x64, q4_0>' but expert 0's is '!qnt.tensor<32x64, q8_0>'}}
moe.experts @expert_types_reference {
  activation = #moe.act<swiglu>,
  gate = #qnt.ref<"g" : !qnt.tensor<2x32x64, q4_0>>,
  up = #qnt.ref<"u" : !qnt.tensor<2x32x64, q4_0>>,
  down = #qnt.ref<"d" : !qnt.tensor<2x64x32, q8_0>>,
  expert_types = [[!qnt.tensor<32x64, q8_0>, !qnt.tensor<32x64, q4_0>, !qnt.tensor<64x32, q8_0>],
                  [!qnt.tensor<32x64, q8_0>, !qnt.tensor<32x64, q8_0>, !qnt.tensor<64x32, q4_0>]]
}

// -----

// Attribute verifiers report at the attribute.
moe.experts @bad_prefetch {
  activation = #moe.act<swiglu>,
  gate = #qnt.ref<"g" : tensor<4x32x16xf16>>,
  up = #qnt.ref<"u" : tensor<4x32x16xf16>>,
  down = #qnt.ref<"d" : tensor<4x16x32xf16>>,
  // expected-error @+1 {{prefetch distance must be at least one layer}}
  prefetch = #moe.prefetch<distance = 0, predictor = previous_token>
}

// -----

moe.experts @bad_ref {
  activation = #moe.act<swiglu>,
  // expected-error @+1 {{weights must have a static shape, got '!qnt.tensor<?x32x256, q4_k>'}}
  gate = #qnt.ref<"g" : !qnt.tensor<?x32x256, q4_k>>,
  up = #qnt.ref<"u" : tensor<4x32x256xf16>>,
  down = #qnt.ref<"d" : tensor<4x256x32xf16>>
}

// -----

// ODS: the activation is required.
// expected-error @+1 {{'moe.experts' op requires attribute 'activation'}}
moe.experts @no_activation {
  gate = #qnt.ref<"g" : tensor<4x32x16xf16>>,
  up = #qnt.ref<"u" : tensor<4x32x16xf16>>,
  down = #qnt.ref<"d" : tensor<4x16x32xf16>>
}

// -----

//===----------------------------------------------------------------------===//
// moe.route
//===----------------------------------------------------------------------===//

func.func @route_logits_rank(%l: tensor<8xf32>) {
  // expected-error @+1 {{'moe.route' op expects logits of shape [tokens, experts], got rank 1}}
  %0:2 = moe.route %l top 2 softmax : tensor<8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @route_dynamic_experts(%l: tensor<?x?xf32>) {
  // expected-error @+1 {{'moe.route' op the number of experts must be static}}
  %0:2 = moe.route %l top 2 softmax : tensor<?x?xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @route_k_exceeds_experts(%l: tensor<?x2xf32>) {
  // expected-error @+1 {{'moe.route' op k = 3 exceeds the number of experts (2)}}
  %0:2 = moe.route %l top 3 softmax : tensor<?x2xf32> -> tensor<?x3xi32>, tensor<?x3xf32>
  return
}

// -----

// ODS: k must be positive.
func.func @route_k_zero(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.route' op attribute 'k' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %0:2 = moe.route %l top 0 softmax : tensor<?x8xf32> -> tensor<?x0xi32>, tensor<?x0xf32>
  return
}

// -----

func.func @route_ids_rank(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.route' op ids have shape [2], expected [tokens, k] = [?, 2]}}
  %0:2 = moe.route %l top 2 softmax : tensor<?x8xf32> -> tensor<2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @route_ids_k(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.route' op ids have shape [?, 3], expected [tokens, k] = [?, 2]}}
  %0:2 = moe.route %l top 2 softmax : tensor<?x8xf32> -> tensor<?x3xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @route_ids_tokens(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{'moe.route' op ids have shape [5, 2], expected [tokens, k] = [4, 2]}}
  %0:2 = moe.route %l top 2 softmax : tensor<4x8xf32> -> tensor<5x2xi32>, tensor<4x2xf32>
  return
}

// -----

func.func @route_weights_rank(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.route' op weights have shape [1, ?, 2], expected [tokens, k] = [?, 2]}}
  %0:2 = moe.route %l top 2 softmax : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<1x?x2xf32>
  return
}

// -----

func.func @route_weights_k(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.route' op weights have shape [?, 8], expected [tokens, k] = [?, 2]}}
  %0:2 = moe.route %l top 2 softmax : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x8xf32>
  return
}

// -----

func.func @route_weights_tokens(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{'moe.route' op weights have shape [3, 2], expected [tokens, k] = [4, 2]}}
  %0:2 = moe.route %l top 2 softmax : tensor<4x8xf32> -> tensor<?x2xi32>, tensor<3x2xf32>
  return
}

// -----

func.func @route_weights_element_type(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.route' op weights have element type 'f16' but the logits have 'f32'}}
  %0:2 = moe.route %l top 2 softmax : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf16>
  return
}

// -----

func.func @route_bias_rank(%l: tensor<?x8xf32>, %b: tensor<1x8xf32>) {
  // expected-error @+1 {{'moe.route' op bias has shape [1, 8], expected [experts] = [8]}}
  %0:2 = moe.route %l bias(%b : tensor<1x8xf32>) top 2 sigmoid : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @route_bias_size(%l: tensor<?x8xf32>, %b: tensor<4xf32>) {
  // expected-error @+1 {{'moe.route' op bias has shape [4], expected [experts] = [8]}}
  %0:2 = moe.route %l bias(%b : tensor<4xf32>) top 2 sigmoid : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

// The custom syntax always gives both; the generic one may give one only.
func.func @route_n_group_only(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.route' op group-limited routing needs both n_group and topk_group}}
  %0:2 = "moe.route"(%l) <{k = 2 : i64, n_group = 4 : i64, scoring = #moe<scoring sigmoid>}> : (tensor<?x8xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

func.func @route_topk_group_only(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.route' op group-limited routing needs both n_group and topk_group}}
  %0:2 = "moe.route"(%l) <{k = 2 : i64, topk_group = 2 : i64, scoring = #moe<scoring sigmoid>}> : (tensor<?x8xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

func.func @route_n_group_not_divisor(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.route' op n_group = 3 does not divide the 8 experts into equal groups}}
  %0:2 = moe.route %l top 2 sigmoid groups(3, 1) : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @route_n_group_zero(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.route' op n_group = 0 does not divide the 8 experts into equal groups}}
  %0:2 = moe.route %l top 2 sigmoid groups(0, 1) : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @route_n_group_negative(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.route' op n_group = -2 does not divide the 8 experts into equal groups}}
  %0:2 = moe.route %l top 2 sigmoid groups(-2, 1) : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @route_topk_group_zero(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.route' op topk_group = 0 must be in [1, n_group = 4]}}
  %0:2 = moe.route %l top 2 sigmoid groups(4, 0) : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @route_topk_group_too_large(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.route' op topk_group = 5 must be in [1, n_group = 4]}}
  %0:2 = moe.route %l top 2 sigmoid groups(4, 5) : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @route_k_exceeds_selectable(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.route' op k = 3 exceeds the 2 experts that topk_group = 1 groups of 2 leave selectable}}
  %0:2 = moe.route %l top 3 sigmoid groups(4, 1) : tensor<?x8xf32> -> tensor<?x3xi32>, tensor<?x3xf32>
  return
}

// -----

func.func @route_scale_zero(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.route' op scale must be positive and finite, got 0.000000e+00}}
  %0:2 = moe.route %l top 2 softmax scale(0.0) : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @route_scale_negative(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.route' op scale must be positive and finite, got -2.500000e+00}}
  %0:2 = moe.route %l top 2 softmax scale(-2.5) : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @route_scale_inf(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.route' op scale must be positive and finite, got INF}}
  %0:2 = moe.route %l top 2 softmax scale(0x7F800000) : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @route_scale_nan(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.route' op scale must be positive and finite, got nan}}
  %0:2 = moe.route %l top 2 softmax scale(0x7FC00000) : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

// ODS: ids are i32.
func.func @route_i64_ids(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.route' op result #0 must be ranked tensor of 32-bit signless integer values, but got 'tensor<?x2xi64>'}}
  %0:2 = moe.route %l top 2 softmax : tensor<?x8xf32> -> tensor<?x2xi64>, tensor<?x2xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.score (ODS only)
//===----------------------------------------------------------------------===//

func.func @score_result_type(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.score' op requires the same type for all operands and results}}
  %0 = "moe.score"(%l) <{scoring = #moe<scoring softmax>}> : (tensor<?x8xf32>) -> tensor<?x8xf16>
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.dispatch
//===----------------------------------------------------------------------===//

func.func @dispatch_input_rank(%x: tensor<64xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{'moe.dispatch' op expects input of shape [tokens, hidden], got rank 1}}
  %0:3 = moe.dispatch %x, %ids : tensor<64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<?xi32>, tensor<9xi32>
  return
}

// -----

func.func @dispatch_ids_rank(%x: tensor<?x64xf32>, %ids: tensor<?xi32>) {
  // expected-error @+1 {{'moe.dispatch' op expects ids of shape [tokens, k], got rank 1}}
  %0:3 = moe.dispatch %x, %ids : tensor<?x64xf32>, tensor<?xi32> -> tensor<?x64xf32>, tensor<?xi32>, tensor<9xi32>
  return
}

// -----

func.func @dispatch_tokens(%x: tensor<4x64xf32>, %ids: tensor<5x2xi32>) {
  // expected-error @+1 {{'moe.dispatch' op input has 4 tokens but ids have 5}}
  %0:3 = moe.dispatch %x, %ids : tensor<4x64xf32>, tensor<5x2xi32> -> tensor<?x64xf32>, tensor<?xi32>, tensor<9xi32>
  return
}

// -----

func.func @dispatch_rows_rank(%x: tensor<4x64xf32>, %ids: tensor<4x2xi32>) {
  // expected-error @+1 {{'moe.dispatch' op rows have shape [512], expected [tokens * k, hidden] = [8, 64]}}
  %0:3 = moe.dispatch %x, %ids : tensor<4x64xf32>, tensor<4x2xi32> -> tensor<512xf32>, tensor<?xi32>, tensor<9xi32>
  return
}

// -----

// Pairs from the input's tokens times k.
func.func @dispatch_rows_pairs(%x: tensor<4x64xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{'moe.dispatch' op rows have shape [6, 64], expected [tokens * k, hidden] = [8, 64]}}
  %0:3 = moe.dispatch %x, %ids : tensor<4x64xf32>, tensor<?x2xi32> -> tensor<6x64xf32>, tensor<?xi32>, tensor<9xi32>
  return
}

// -----

// Pairs from the ids' shape when the input's tokens are dynamic.
func.func @dispatch_rows_pairs_from_ids(%x: tensor<?x64xf32>, %ids: tensor<3x2xi32>) {
  // expected-error @+1 {{'moe.dispatch' op rows have shape [8, 64], expected [tokens * k, hidden] = [6, 64]}}
  %0:3 = moe.dispatch %x, %ids : tensor<?x64xf32>, tensor<3x2xi32> -> tensor<8x64xf32>, tensor<?xi32>, tensor<9xi32>
  return
}

// -----

func.func @dispatch_rows_hidden(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{'moe.dispatch' op rows have shape [?, 32], expected [tokens * k, hidden] = [?, 64]}}
  %0:3 = moe.dispatch %x, %ids : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x32xf32>, tensor<?xi32>, tensor<9xi32>
  return
}

// -----

func.func @dispatch_rows_element_type(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{'moe.dispatch' op rows have element type 'bf16' but the input has 'f32'}}
  %0:3 = moe.dispatch %x, %ids : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xbf16>, tensor<?xi32>, tensor<9xi32>
  return
}

// -----

func.func @dispatch_slots_rank(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{'moe.dispatch' op slots have shape [?, 2], expected one entry per row}}
  %0:3 = moe.dispatch %x, %ids : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<?x2xi32>, tensor<9xi32>
  return
}

// -----

func.func @dispatch_slots_pairs(%x: tensor<4x64xf32>, %ids: tensor<4x2xi32>) {
  // expected-error @+1 {{'moe.dispatch' op slots have shape [4], expected one entry per row}}
  %0:3 = moe.dispatch %x, %ids : tensor<4x64xf32>, tensor<4x2xi32> -> tensor<?x64xf32>, tensor<4xi32>, tensor<9xi32>
  return
}

// -----

// Unknown number of pairs, but the rows are static.
func.func @dispatch_slots_rows(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{'moe.dispatch' op slots have shape [6], expected one entry per row}}
  %0:3 = moe.dispatch %x, %ids : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<8x64xf32>, tensor<6xi32>, tensor<9xi32>
  return
}

// -----

func.func @dispatch_offsets_rank(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{'moe.dispatch' op offsets must have a static shape [experts + 1] with at least one expert, got [3, 3]}}
  %0:3 = moe.dispatch %x, %ids : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<?xi32>, tensor<3x3xi32>
  return
}

// -----

func.func @dispatch_offsets_dynamic(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{'moe.dispatch' op offsets must have a static shape [experts + 1] with at least one expert, got [?]}}
  %0:3 = moe.dispatch %x, %ids : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>
  return
}

// -----

func.func @dispatch_offsets_no_expert(%x: tensor<?x64xf32>, %ids: tensor<?x1xi32>) {
  // expected-error @+1 {{'moe.dispatch' op offsets must have a static shape [experts + 1] with at least one expert, got [1]}}
  %0:3 = moe.dispatch %x, %ids : tensor<?x64xf32>, tensor<?x1xi32> -> tensor<?x64xf32>, tensor<?xi32>, tensor<1xi32>
  return
}

// -----

func.func @dispatch_k_exceeds_experts(%x: tensor<?x64xf32>, %ids: tensor<?x4xi32>) {
  // expected-error @+1 {{'moe.dispatch' op k = 4 exceeds the number of experts (2)}}
  %0:3 = moe.dispatch %x, %ids : tensor<?x64xf32>, tensor<?x4xi32> -> tensor<?x64xf32>, tensor<?xi32>, tensor<3xi32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.expert_ffn
//===----------------------------------------------------------------------===//

func.func @expert_ffn_rows_rank(%r: tensor<16xf32>, %o: tensor<5xi32>) {
  // expected-error @+1 {{'moe.expert_ffn' op expects rows of shape [rows, hidden], got rank 1}}
  %0 = moe.expert_ffn @bank(%r, %o) : (tensor<16xf32>, tensor<5xi32>) -> tensor<16xf32>
  return
}

// -----

func.func @expert_ffn_result_type(%r: tensor<?x16xf32>, %o: tensor<5xi32>) {
  // expected-error @+1 {{'moe.expert_ffn' op result type 'tensor<8x16xf32>' differs from the rows' type 'tensor<?x16xf32>'}}
  %0 = moe.expert_ffn @bank(%r, %o) : (tensor<?x16xf32>, tensor<5xi32>) -> tensor<8x16xf32>
  return
}

// -----

func.func @expert_ffn_result_element_type(%r: tensor<?x16xf32>, %o: tensor<5xi32>) {
  // expected-error @+1 {{'moe.expert_ffn' op result type 'tensor<?x16xf16>' differs from the rows' type 'tensor<?x16xf32>'}}
  %0 = moe.expert_ffn @bank(%r, %o) : (tensor<?x16xf32>, tensor<5xi32>) -> tensor<?x16xf16>
  return
}

// -----

func.func @expert_ffn_offsets_rank(%r: tensor<?x16xf32>, %o: tensor<1x5xi32>) {
  // expected-error @+1 {{'moe.expert_ffn' op offsets must have a static shape [experts + 1], got [1, 5]}}
  %0 = moe.expert_ffn @bank(%r, %o) : (tensor<?x16xf32>, tensor<1x5xi32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @expert_ffn_offsets_dynamic(%r: tensor<?x16xf32>, %o: tensor<?xi32>) {
  // expected-error @+1 {{'moe.expert_ffn' op offsets must have a static shape [experts + 1], got [?]}}
  %0 = moe.expert_ffn @bank(%r, %o) : (tensor<?x16xf32>, tensor<?xi32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @expert_ffn_no_symbol(%r: tensor<?x16xf32>, %o: tensor<5xi32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'missing' does not name a moe.experts bank}}
  %0 = moe.expert_ffn @missing(%r, %o) : (tensor<?x16xf32>, tensor<5xi32>) -> tensor<?x16xf32>
  return
}

// -----

func.func private @not_a_bank()

func.func @expert_ffn_names_function(%r: tensor<?x16xf32>, %o: tensor<5xi32>) {
  // expected-error @+1 {{'moe.expert_ffn' op 'not_a_bank' does not name a moe.experts bank}}
  %0 = moe.expert_ffn @not_a_bank(%r, %o) : (tensor<?x16xf32>, tensor<5xi32>) -> tensor<?x16xf32>
  return
}

// -----

moe.experts @bank {
  activation = #moe.act<swiglu>,
  gate = #qnt.ref<"g" : tensor<4x32x16xf16>>,
  up = #qnt.ref<"u" : tensor<4x32x16xf16>>,
  down = #qnt.ref<"d" : tensor<4x16x32xf16>>
}

func.func @expert_ffn_offsets_count(%r: tensor<?x16xf32>, %o: tensor<9xi32>) {
  // expected-error @+1 {{'moe.expert_ffn' op offsets have 9 entries but bank 'bank' has 4 experts (expected 5)}}
  %0 = moe.expert_ffn @bank(%r, %o) : (tensor<?x16xf32>, tensor<9xi32>) -> tensor<?x16xf32>
  return
}

// -----

moe.experts @bank {
  activation = #moe.act<swiglu>,
  gate = #qnt.ref<"g" : tensor<4x32x16xf16>>,
  up = #qnt.ref<"u" : tensor<4x32x16xf16>>,
  down = #qnt.ref<"d" : tensor<4x16x32xf16>>
}

func.func @expert_ffn_hidden(%r: tensor<?x32xf32>, %o: tensor<5xi32>) {
  // expected-error @+1 {{'moe.expert_ffn' op rows have hidden size 32 but bank 'bank' has 16}}
  %0 = moe.expert_ffn @bank(%r, %o) : (tensor<?x32xf32>, tensor<5xi32>) -> tensor<?x32xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.combine
//===----------------------------------------------------------------------===//

func.func @combine_out_rank(%y: tensor<64xf32>, %s: tensor<?xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'moe.combine' op expects expert outputs of shape [rows, hidden], got rank 1}}
  %0 = moe.combine %y, %s, %w : tensor<64xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @combine_slots_rank(%y: tensor<?x64xf32>, %s: tensor<?x1xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'moe.combine' op slots have shape [?, 1], expected one entry per expert output row}}
  %0 = moe.combine %y, %s, %w : tensor<?x64xf32>, tensor<?x1xi32>, tensor<?x2xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @combine_slots_rows(%y: tensor<8x64xf32>, %s: tensor<6xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'moe.combine' op slots have shape [6], expected one entry per expert output row}}
  %0 = moe.combine %y, %s, %w : tensor<8x64xf32>, tensor<6xi32>, tensor<?x2xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @combine_weights_rank(%y: tensor<?x64xf32>, %s: tensor<?xi32>, %w: tensor<?xf32>) {
  // expected-error @+1 {{'moe.combine' op expects weights of shape [tokens, k], got rank 1}}
  %0 = moe.combine %y, %s, %w : tensor<?x64xf32>, tensor<?xi32>, tensor<?xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @combine_pairs(%y: tensor<8x64xf32>, %s: tensor<?xi32>, %w: tensor<3x2xf32>) {
  // expected-error @+1 {{'moe.combine' op weights have 6 (token, choice) pairs but there are 8 expert output rows}}
  %0 = moe.combine %y, %s, %w : tensor<8x64xf32>, tensor<?xi32>, tensor<3x2xf32> -> tensor<3x64xf32>
  return
}

// -----

func.func @combine_result_rank(%y: tensor<?x64xf32>, %s: tensor<?xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'moe.combine' op result has shape [64], expected [tokens, hidden] = [?, 64]}}
  %0 = moe.combine %y, %s, %w : tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<64xf32>
  return
}

// -----

func.func @combine_result_tokens(%y: tensor<?x64xf32>, %s: tensor<?xi32>, %w: tensor<4x2xf32>) {
  // expected-error @+1 {{'moe.combine' op result has shape [3, 64], expected [tokens, hidden] = [4, 64]}}
  %0 = moe.combine %y, %s, %w : tensor<?x64xf32>, tensor<?xi32>, tensor<4x2xf32> -> tensor<3x64xf32>
  return
}

// -----

func.func @combine_result_hidden(%y: tensor<?x64xf32>, %s: tensor<?xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'moe.combine' op result has shape [?, 32], expected [tokens, hidden] = [?, 64]}}
  %0 = moe.combine %y, %s, %w : tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x32xf32>
  return
}

// -----

func.func @combine_result_element_type(%y: tensor<?x64xf32>, %s: tensor<?xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'moe.combine' op expert outputs, weights and result must share one element type}}
  %0 = moe.combine %y, %s, %w : tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x64xf16>
  return
}

// -----

func.func @combine_weights_element_type(%y: tensor<?x64xf32>, %s: tensor<?xi32>, %w: tensor<?x2xbf16>) {
  // expected-error @+1 {{'moe.combine' op expert outputs, weights and result must share one element type}}
  %0 = moe.combine %y, %s, %w : tensor<?x64xf32>, tensor<?xi32>, tensor<?x2xbf16> -> tensor<?x64xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.shared_expert
//===----------------------------------------------------------------------===//

func.func @shared_input_rank(%x: tensor<16xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op expects input of shape [tokens, hidden], got rank 1}}
  %0 = moe.shared_expert %x {
    activation = #moe.act<swiglu>,
    gate = #qnt.ref<"g" : tensor<32x16xf16>>,
    up = #qnt.ref<"u" : tensor<32x16xf16>>,
    down = #qnt.ref<"d" : tensor<16x32xf16>>
  } : tensor<16xf32> -> tensor<16xf32>
  return
}

// -----

func.func @shared_result_type(%x: tensor<?x16xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op result type 'tensor<?x16xf16>' differs from the input type 'tensor<?x16xf32>'}}
  %0 = moe.shared_expert %x {
    activation = #moe.act<swiglu>,
    gate = #qnt.ref<"g" : tensor<32x16xf16>>,
    up = #qnt.ref<"u" : tensor<32x16xf16>>,
    down = #qnt.ref<"d" : tensor<16x32xf16>>
  } : tensor<?x16xf32> -> tensor<?x16xf16>
  return
}

// -----

func.func @shared_gate_rank(%x: tensor<?x16xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op gate weight 'g' must have shape [intermediate, hidden], got [1, 32, 16]}}
  %0 = moe.shared_expert %x {
    activation = #moe.act<swiglu>,
    gate = #qnt.ref<"g" : tensor<1x32x16xf16>>,
    up = #qnt.ref<"u" : tensor<32x16xf16>>,
    down = #qnt.ref<"d" : tensor<16x32xf16>>
  } : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @shared_hidden(%x: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op input has hidden size 8 but the gate weight has 16}}
  %0 = moe.shared_expert %x {
    activation = #moe.act<swiglu>,
    gate = #qnt.ref<"g" : tensor<32x16xf16>>,
    up = #qnt.ref<"u" : tensor<32x16xf16>>,
    down = #qnt.ref<"d" : tensor<16x32xf16>>
  } : tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @shared_up_rank(%x: tensor<?x16xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op up weight 'u' has shape [512], expected [intermediate, hidden] = [32, 16]}}
  %0 = moe.shared_expert %x {
    activation = #moe.act<swiglu>,
    gate = #qnt.ref<"g" : tensor<32x16xf16>>,
    up = #qnt.ref<"u" : tensor<512xf16>>,
    down = #qnt.ref<"d" : tensor<16x32xf16>>
  } : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @shared_up_shape(%x: tensor<?x16xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op up weight 'u' has shape [64, 16], expected [intermediate, hidden] = [32, 16]}}
  %0 = moe.shared_expert %x {
    activation = #moe.act<swiglu>,
    gate = #qnt.ref<"g" : tensor<32x16xf16>>,
    up = #qnt.ref<"u" : tensor<64x16xf16>>,
    down = #qnt.ref<"d" : tensor<16x32xf16>>
  } : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @shared_down_transposed(%x: tensor<?x16xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op down weight 'd' has shape [32, 16], expected [hidden, intermediate] = [16, 32]}}
  %0 = moe.shared_expert %x {
    activation = #moe.act<swiglu>,
    gate = #qnt.ref<"g" : tensor<32x16xf16>>,
    up = #qnt.ref<"u" : tensor<32x16xf16>>,
    down = #qnt.ref<"d" : tensor<32x16xf16>>
  } : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @shared_down_rank(%x: tensor<?x16xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op down weight 'd' has shape [1, 16, 32], expected [hidden, intermediate] = [16, 32]}}
  %0 = moe.shared_expert %x {
    activation = #moe.act<swiglu>,
    gate = #qnt.ref<"g" : tensor<32x16xf16>>,
    up = #qnt.ref<"u" : tensor<32x16xf16>>,
    down = #qnt.ref<"d" : tensor<1x16x32xf16>>
  } : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @shared_input_gate_size(%x: tensor<?x16xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op input_gate weight 'ig' has shape [8], expected [hidden] or [1, hidden] with hidden = 16}}
  %0 = moe.shared_expert %x {
    activation = #moe.act<swiglu>,
    gate = #qnt.ref<"g" : tensor<32x16xf16>>,
    up = #qnt.ref<"u" : tensor<32x16xf16>>,
    down = #qnt.ref<"d" : tensor<16x32xf16>>,
    input_gate = #qnt.ref<"ig" : tensor<8xf32>>
  } : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @shared_input_gate_rows(%x: tensor<?x16xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op input_gate weight 'ig' has shape [2, 16], expected [hidden] or [1, hidden] with hidden = 16}}
  %0 = moe.shared_expert %x {
    activation = #moe.act<swiglu>,
    gate = #qnt.ref<"g" : tensor<32x16xf16>>,
    up = #qnt.ref<"u" : tensor<32x16xf16>>,
    down = #qnt.ref<"d" : tensor<16x32xf16>>,
    input_gate = #qnt.ref<"ig" : tensor<2x16xf32>>
  } : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @shared_input_gate_row_size(%x: tensor<?x16xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op input_gate weight 'ig' has shape [1, 32], expected [hidden] or [1, hidden] with hidden = 16}}
  %0 = moe.shared_expert %x {
    activation = #moe.act<swiglu>,
    gate = #qnt.ref<"g" : tensor<32x16xf16>>,
    up = #qnt.ref<"u" : tensor<32x16xf16>>,
    down = #qnt.ref<"d" : tensor<16x32xf16>>,
    input_gate = #qnt.ref<"ig" : tensor<1x32xf32>>
  } : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @shared_input_gate_rank(%x: tensor<?x16xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op input_gate weight 'ig' has shape [1, 1, 16], expected [hidden] or [1, hidden] with hidden = 16}}
  %0 = moe.shared_expert %x {
    activation = #moe.act<swiglu>,
    gate = #qnt.ref<"g" : tensor<32x16xf16>>,
    up = #qnt.ref<"u" : tensor<32x16xf16>>,
    down = #qnt.ref<"d" : tensor<16x32xf16>>,
    input_gate = #qnt.ref<"ig" : tensor<1x1x16xf32>>
  } : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @shared_bad_activation(%x: tensor<?x16xf32>) {
  %0 = moe.shared_expert %x {
    // expected-error @+1 {{activation swiglu_clamped requires alpha and limit}}
    activation = #moe.act<swiglu_clamped>,
    gate = #qnt.ref<"g" : tensor<32x16xf16>>,
    up = #qnt.ref<"u" : tensor<32x16xf16>>,
    down = #qnt.ref<"d" : tensor<16x32xf16>>
  } : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

// ODS: the weights are #qnt.ref attributes.
func.func @shared_gate_not_a_ref(%x: tensor<?x16xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op attribute 'gate' failed to satisfy constraint}}
  %0 = moe.shared_expert %x {
    activation = #moe.act<swiglu>,
    gate = "blk.0.ffn_gate_shexp.weight",
    up = #qnt.ref<"u" : tensor<32x16xf16>>,
    down = #qnt.ref<"d" : tensor<16x32xf16>>
  } : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.prefetch
//===----------------------------------------------------------------------===//

func.func @prefetch_no_symbol(%ids: tensor<?x2xi32>) {
  // expected-error @+1 {{'moe.prefetch' op 'missing' does not name a moe.experts bank}}
  moe.prefetch @missing(%ids) : tensor<?x2xi32>
  return
}

// -----

func.func private @not_a_bank()

func.func @prefetch_names_function(%ids: tensor<?x2xi32>) {
  // expected-error @+1 {{'moe.prefetch' op 'not_a_bank' does not name a moe.experts bank}}
  moe.prefetch @not_a_bank(%ids) : tensor<?x2xi32>
  return
}

// -----

// ODS: expert ids are i32.
func.func @prefetch_i64_ids(%ids: tensor<?x2xi64>) {
  // expected-error @+1 {{'moe.prefetch' op operand #0 must be ranked tensor of 32-bit signless integer values, but got 'tensor<?x2xi64>'}}
  moe.prefetch @bank(%ids) : tensor<?x2xi64>
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.embed, moe.rms_norm, moe.rope, moe.attention
//===----------------------------------------------------------------------===//

func.func @embed_table_rank(%t: tensor<?xi32>) -> tensor<?x64xf32> {
  // expected-error @+1 {{'moe.embed' op table 'e' must have shape [vocabulary, hidden], got [256]}}
  %x = moe.embed %t {table = #qnt.ref<"e" : tensor<256xf32>>} : tensor<?xi32> -> tensor<?x64xf32>
  return %x : tensor<?x64xf32>
}

// -----

func.func @embed_tokens_rank(%t: tensor<?x2xi32>) -> tensor<?x64xf32> {
  // expected-error @+1 {{'moe.embed' op expects tokens of shape [tokens], got rank 2}}
  %x = moe.embed %t {table = #qnt.ref<"e" : tensor<256x64xf32>>} : tensor<?x2xi32> -> tensor<?x64xf32>
  return %x : tensor<?x64xf32>
}

// -----

func.func @embed_result(%t: tensor<?xi32>) -> tensor<?x32xf32> {
  // expected-error @+1 {{'moe.embed' op result has shape [?, 32], expected [tokens, hidden] = [?, 64]}}
  %x = moe.embed %t {table = #qnt.ref<"e" : tensor<256x64xf32>>} : tensor<?xi32> -> tensor<?x32xf32>
  return %x : tensor<?x32xf32>
}

// -----

func.func @rms_norm_weight(%x: tensor<?x64xf32>, %w: tensor<32xf32>) -> tensor<?x64xf32> {
  // expected-error @+1 {{'moe.rms_norm' op weight has shape [32], expected the input's innermost dimension [64]}}
  %y = moe.rms_norm %x, %w epsilon(1.0e-6) : tensor<?x64xf32>, tensor<32xf32>
  return %y : tensor<?x64xf32>
}

// -----

func.func @rms_norm_epsilon(%x: tensor<?x64xf32>, %w: tensor<64xf32>) -> tensor<?x64xf32> {
  // expected-error @+1 {{'moe.rms_norm' op epsilon must be positive and finite, got 0.000000e+00}}
  %y = moe.rms_norm %x, %w epsilon(0.0) : tensor<?x64xf32>, tensor<64xf32>
  return %y : tensor<?x64xf32>
}

// -----

func.func @rms_norm_scalar(%x: tensor<f32>, %w: tensor<1xf32>) -> tensor<f32> {
  // expected-error @+1 {{'moe.rms_norm' op expects an input of rank 1 or more}}
  %y = "moe.rms_norm"(%x, %w) <{epsilon = 1.0e-6 : f64}> : (tensor<f32>, tensor<1xf32>) -> tensor<f32>
  return %y : tensor<f32>
}

// -----

func.func @rope_rank(%x: tensor<?x64xf32>, %p: tensor<?xi32>) -> tensor<?x64xf32> {
  // expected-error @+1 {{'moe.rope' op expects input of shape [tokens, heads, head_dim], got rank 2}}
  %y = moe.rope %x, %p neox theta(1.0e4) : tensor<?x64xf32>, tensor<?xi32>
  return %y : tensor<?x64xf32>
}

// -----

func.func @rope_odd(%x: tensor<?x4x15xf32>, %p: tensor<?xi32>) -> tensor<?x4x15xf32> {
  // expected-error @+1 {{'moe.rope' op head_dim must be static and even, got [?, 4, 15]}}
  %y = moe.rope %x, %p neox theta(1.0e4) : tensor<?x4x15xf32>, tensor<?xi32>
  return %y : tensor<?x4x15xf32>
}

// -----

func.func @rope_positions(%x: tensor<3x4x16xf32>, %p: tensor<2xi32>) -> tensor<3x4x16xf32> {
  // expected-error @+1 {{'moe.rope' op positions have shape [2], expected one per token}}
  %y = moe.rope %x, %p neox theta(1.0e4) : tensor<3x4x16xf32>, tensor<2xi32>
  return %y : tensor<3x4x16xf32>
}

// -----

func.func @rope_theta(%x: tensor<?x4x16xf32>, %p: tensor<?xi32>) -> tensor<?x4x16xf32> {
  // expected-error @+1 {{'moe.rope' op theta must be positive and finite, got -1.000000e+00}}
  %y = moe.rope %x, %p neox theta(-1.0) : tensor<?x4x16xf32>, tensor<?xi32>
  return %y : tensor<?x4x16xf32>
}

// -----

func.func @attention_rank(%q: tensor<?x64xf32>, %k: tensor<?x2x16xf32>, %c: tensor<8x2x16xf32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{'moe.attention' op expects query of rank 3, got [?, 64]}}
  %o, %kc, %vc = "moe.attention"(%q, %k, %k, %c, %c, %p) <{scale = 1.0 : f64}> : (tensor<?x64xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf32>, tensor<8x2x16xf32>, tensor<8x2x16xf32>, tensor<?xi32>) -> (tensor<?x64xf32>, tensor<8x2x16xf32>, tensor<8x2x16xf32>)
  return
}

// -----

func.func @attention_kv_types(%q: tensor<?x4x16xf32>, %k: tensor<?x2x16xf32>, %v: tensor<?x2x16xf16>, %c: tensor<8x2x16xf32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{'moe.attention' op key and value types differ}}
  %o, %kc, %vc = moe.attention %q, %k, %v, %c, %c, %p scale(1.0) : tensor<?x4x16xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf16>, tensor<8x2x16xf32>, tensor<?xi32>
  return
}

// -----

func.func @attention_heads(%q: tensor<?x4x16xf32>, %k: tensor<?x3x16xf32>, %c: tensor<8x3x16xf32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{'moe.attention' op 4 query heads are not a static multiple of 3 KV heads}}
  %o, %kc, %vc = moe.attention %q, %k, %k, %c, %c, %p scale(1.0) : tensor<?x4x16xf32>, tensor<?x3x16xf32>, tensor<?x3x16xf32>, tensor<8x3x16xf32>, tensor<?xi32>
  return
}

// -----

func.func @attention_head_dim(%q: tensor<?x4x16xf32>, %k: tensor<?x2x8xf32>, %c: tensor<8x2x8xf32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{'moe.attention' op key [?, 2, 8] does not match query [?, 4, 16] in tokens or head_dim}}
  %o, %kc, %vc = moe.attention %q, %k, %k, %c, %c, %p scale(1.0) : tensor<?x4x16xf32>, tensor<?x2x8xf32>, tensor<?x2x8xf32>, tensor<8x2x8xf32>, tensor<?xi32>
  return
}

// -----

func.func @attention_cache(%q: tensor<?x4x16xf32>, %k: tensor<?x2x16xf32>, %c: tensor<?x2x16xf32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{'moe.attention' op caches must have static shape [context, 2, 16], got [?, 2, 16]}}
  %o, %kc, %vc = moe.attention %q, %k, %k, %c, %c, %p scale(1.0) : tensor<?x4x16xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf32>, tensor<?xi32>
  return
}

// -----

func.func @attention_positions(%q: tensor<3x4x16xf32>, %k: tensor<3x2x16xf32>, %c: tensor<8x2x16xf32>, %p: tensor<4xi32>) {
  // expected-error @+1 {{'moe.attention' op positions have shape [4], expected one per token}}
  %o, %kc, %vc = moe.attention %q, %k, %k, %c, %c, %p scale(1.0) : tensor<3x4x16xf32>, tensor<3x2x16xf32>, tensor<3x2x16xf32>, tensor<8x2x16xf32>, tensor<4xi32>
  return
}

// -----

func.func @attention_scale(%q: tensor<?x4x16xf32>, %k: tensor<?x2x16xf32>, %c: tensor<8x2x16xf32>, %p: tensor<?xi32>) {
  // expected-error @+1 {{'moe.attention' op scale must be positive and finite, got 0.000000e+00}}
  %o, %kc, %vc = moe.attention %q, %k, %k, %c, %c, %p scale(0.0) : tensor<?x4x16xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf32>, tensor<8x2x16xf32>, tensor<?xi32>
  return
}
