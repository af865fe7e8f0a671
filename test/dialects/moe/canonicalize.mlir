// RUN: moec-opt %s -canonicalize -split-input-file | FileCheck %s

// Keeping every one of n_group groups is no group limit.
// CHECK-LABEL: func.func @trivial_group_limit
// CHECK: moe.route %{{.*}} top 4 sigmoid normalize :
// CHECK-NOT: groups
func.func @trivial_group_limit(%l: tensor<?x16xf32>) -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids, %w = moe.route %l top 4 sigmoid normalize groups(4, 4) : tensor<?x16xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids, %w : tensor<?x4xi32>, tensor<?x4xf32>
}

// -----

// A real group limit stays.
// CHECK-LABEL: func.func @real_group_limit
// CHECK: groups(4, 2)
func.func @real_group_limit(%l: tensor<?x16xf32>) -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids, %w = moe.route %l top 4 sigmoid normalize groups(4, 2) : tensor<?x16xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids, %w : tensor<?x4xi32>, tensor<?x4xf32>
}

// -----

// Top-k over all experts without renormalisation is dense: the weights are
// the scores and the ids are 0..E-1 on every row.
// CHECK-LABEL: func.func @dense_route
// CHECK-SAME: (%[[L:.*]]: tensor<?x4xf32>)
// CHECK-DAG: %[[C0:.*]] = arith.constant 0 : index
// CHECK-DAG: %[[T:.*]] = tensor.dim %[[L]], %[[C0]] : tensor<?x4xf32>
// CHECK-DAG: %[[W:.*]] = moe.score %[[L]] softmax : tensor<?x4xf32>
// CHECK: %[[IDS:.*]] = tensor.generate %[[T]] {
// CHECK-NEXT: ^bb0(%{{.*}}: index, %[[J:.*]]: index):
// CHECK-NEXT: %[[E:.*]] = arith.index_cast %[[J]] : index to i32
// CHECK-NEXT: tensor.yield %[[E]] : i32
// CHECK-NEXT: } : tensor<?x4xi32>
// CHECK-NEXT: return %[[IDS]], %[[W]]
// CHECK-NOT: moe.route
func.func @dense_route(%l: tensor<?x4xf32>) -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids, %w = moe.route %l top 4 softmax : tensor<?x4xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids, %w : tensor<?x4xi32>, tensor<?x4xf32>
}

// -----

// Renormalising all softmax weights divides by one: dropped, and the route is
// then dense. A selection bias cannot change a selection of everything.
// CHECK-LABEL: func.func @dense_softmax_normalized
// CHECK-NOT: moe.route
// CHECK: moe.score %{{.*}} softmax : tensor<3x4xf32>
// CHECK: tensor.generate
// CHECK: } : tensor<3x4xi32>
func.func @dense_softmax_normalized(%l: tensor<3x4xf32>, %b: tensor<4xf32>) -> (tensor<3x4xi32>, tensor<3x4xf32>) {
  %ids, %w = moe.route %l bias(%b : tensor<4xf32>) top 4 softmax normalize : tensor<3x4xf32> -> tensor<3x4xi32>, tensor<3x4xf32>
  return %ids, %w : tensor<3x4xi32>, tensor<3x4xf32>
}

// -----

// Sigmoid scores do not sum to one: renormalisation is real and stays.
// CHECK-LABEL: func.func @dense_sigmoid_normalized
// CHECK: moe.route %{{.*}} top 4 sigmoid normalize
func.func @dense_sigmoid_normalized(%l: tensor<?x4xf32>) -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids, %w = moe.route %l top 4 sigmoid normalize : tensor<?x4xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids, %w : tensor<?x4xi32>, tensor<?x4xf32>
}

// -----

// A scale other than one is not folded into the scores.
// CHECK-LABEL: func.func @dense_scaled
// CHECK: moe.route %{{.*}} top 4 sigmoid scale(2.000000e+00)
func.func @dense_scaled(%l: tensor<?x4xf32>) -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids, %w = moe.route %l top 4 sigmoid scale(2.0) : tensor<?x4xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids, %w : tensor<?x4xi32>, tensor<?x4xf32>
}

// -----

// A scale of exactly one is none.
// CHECK-LABEL: func.func @dense_unit_scale
// CHECK-NOT: moe.route
// CHECK: moe.score %{{.*}} sigmoid
func.func @dense_unit_scale(%l: tensor<?x4xf32>) -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids, %w = moe.route %l top 4 sigmoid scale(1.0) : tensor<?x4xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids, %w : tensor<?x4xi32>, tensor<?x4xf32>
}

// -----

// Sparse routing is left alone.
// CHECK-LABEL: func.func @sparse_route
// CHECK: moe.route %{{.*}} top 2 softmax normalize
func.func @sparse_route(%l: tensor<?x4xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %ids, %w = moe.route %l top 2 softmax normalize : tensor<?x4xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return %ids, %w : tensor<?x2xi32>, tensor<?x2xf32>
}

// -----

// Prefetch is a side effect: canonicalization keeps it even though nothing
// uses a result.
// CHECK-LABEL: func.func @prefetch_is_kept
// CHECK: moe.prefetch @bank
moe.experts @bank {
  activation = #moe.act<swiglu>,
  gate = #qnt.ref<"g" : !qnt.tensor<2x32x32, q8_0>>,
  up = #qnt.ref<"u" : !qnt.tensor<2x32x32, q8_0>>,
  down = #qnt.ref<"d" : !qnt.tensor<2x32x32, q8_0>>
}
func.func @prefetch_is_kept(%ids: tensor<?x1xi32>) {
  moe.prefetch @bank(%ids) : tensor<?x1xi32>
  return
}
