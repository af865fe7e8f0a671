// The example layer that the README's main command shows verifies and
// survives canonicalization with its sparse structure intact.
// RUN: moec-opt %moec_src_root/examples/sparse-moe-layer.mlir -canonicalize | FileCheck %s
// CHECK: moe.experts @blk0_experts
// CHECK-LABEL: func.func @blk0_moe
// CHECK: moe.route {{.*}} top 2 softmax normalize
// CHECK: moe.dispatch
// CHECK: moe.expert_ffn @blk0_experts
// CHECK: moe.combine
// CHECK: moe.shared_expert
