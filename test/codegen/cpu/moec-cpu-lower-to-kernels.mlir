// The codegen phase's lowering of @forward into kernels and a schedule.
// One case per weight format: every format goes through the one generic
// dequantize-and-fuse path, and each case shows the fused matmul kernel as
// vector-dialect code: weight bytes loaded as i8 vectors, decoded in
// registers, fed to FMAs, reduced once per output.

// RUN: moec-opt %s -split-input-file -moec-cpu-lower-to-kernels | FileCheck %s

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : tensor<32x256xf32>
    %y = qnt.matmul %w, %x : tensor<32x256xf32>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_f32_32x256(
// CHECK-LABEL: func.func private @moec_matmul_f32_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>

// -----

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : tensor<32x256xf16>
    %y = qnt.matmul %w, %x : tensor<32x256xf16>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_f16_32x256(
// CHECK-LABEL: func.func private @moec_matmul_f16_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>

// -----

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : tensor<32x256xbf16>
    %y = qnt.matmul %w, %x : tensor<32x256xbf16>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_bf16_32x256(
// CHECK-LABEL: func.func private @moec_matmul_bf16_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>

// -----

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : !qnt.tensor<32x256, q4_0>
    %y = qnt.matmul %w, %x : !qnt.tensor<32x256, q4_0>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_q4_0_32x256(
// CHECK-LABEL: func.func private @moec_matmul_q4_0_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>

// -----

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : !qnt.tensor<32x256, q4_1>
    %y = qnt.matmul %w, %x : !qnt.tensor<32x256, q4_1>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_q4_1_32x256(
// CHECK-LABEL: func.func private @moec_matmul_q4_1_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>

// -----

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : !qnt.tensor<32x256, q5_0>
    %y = qnt.matmul %w, %x : !qnt.tensor<32x256, q5_0>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_q5_0_32x256(
// CHECK-LABEL: func.func private @moec_matmul_q5_0_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>

// -----

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : !qnt.tensor<32x256, q5_1>
    %y = qnt.matmul %w, %x : !qnt.tensor<32x256, q5_1>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_q5_1_32x256(
// CHECK-LABEL: func.func private @moec_matmul_q5_1_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>

// -----

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : !qnt.tensor<32x256, q8_0>
    %y = qnt.matmul %w, %x : !qnt.tensor<32x256, q8_0>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_q8_0_32x256(
// CHECK-LABEL: func.func private @moec_matmul_q8_0_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>

// -----

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : !qnt.tensor<32x256, q2_k>
    %y = qnt.matmul %w, %x : !qnt.tensor<32x256, q2_k>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_q2_k_32x256(
// CHECK-LABEL: func.func private @moec_matmul_q2_k_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>

// -----

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : !qnt.tensor<32x256, q3_k>
    %y = qnt.matmul %w, %x : !qnt.tensor<32x256, q3_k>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_q3_k_32x256(
// CHECK-LABEL: func.func private @moec_matmul_q3_k_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>

// -----

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : !qnt.tensor<32x256, q4_k>
    %y = qnt.matmul %w, %x : !qnt.tensor<32x256, q4_k>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_q4_k_32x256(
// CHECK-LABEL: func.func private @moec_matmul_q4_k_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>

// -----

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : !qnt.tensor<32x256, q5_k>
    %y = qnt.matmul %w, %x : !qnt.tensor<32x256, q5_k>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_q5_k_32x256(
// CHECK-LABEL: func.func private @moec_matmul_q5_k_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>

// -----

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : !qnt.tensor<32x256, q6_k>
    %y = qnt.matmul %w, %x : !qnt.tensor<32x256, q6_k>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_q6_k_32x256(
// CHECK-LABEL: func.func private @moec_matmul_q6_k_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>

// -----

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : !qnt.tensor<32x256, mxfp4>
    %y = qnt.matmul %w, %x : !qnt.tensor<32x256, mxfp4>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_mxfp4_32x256(
// CHECK-LABEL: func.func private @moec_matmul_mxfp4_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>

// -----

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : !qnt.tensor<32x256, int2, group = 32>
    %y = qnt.matmul %w, %x : !qnt.tensor<32x256, int2, group = 32>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_int2_g32_32x256(
// CHECK-LABEL: func.func private @moec_matmul_int2_g32_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>

// -----

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : !qnt.tensor<32x256, int2, group = 64, asymmetric>
    %y = qnt.matmul %w, %x : !qnt.tensor<32x256, int2, group = 64, asymmetric>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_int2_g64_asym_32x256(
// CHECK-LABEL: func.func private @moec_matmul_int2_g64_asym_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>

// -----

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : !qnt.tensor<32x256, int3, group = 32>
    %y = qnt.matmul %w, %x : !qnt.tensor<32x256, int3, group = 32>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_int3_g32_32x256(
// CHECK-LABEL: func.func private @moec_matmul_int3_g32_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>

// -----

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : !qnt.tensor<32x256, int3, group = 64, asymmetric>
    %y = qnt.matmul %w, %x : !qnt.tensor<32x256, int3, group = 64, asymmetric>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_int3_g64_asym_32x256(
// CHECK-LABEL: func.func private @moec_matmul_int3_g64_asym_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>

// -----

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : !qnt.tensor<32x256, int4, group = 32>
    %y = qnt.matmul %w, %x : !qnt.tensor<32x256, int4, group = 32>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_int4_g32_32x256(
// CHECK-LABEL: func.func private @moec_matmul_int4_g32_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>

// -----

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : !qnt.tensor<32x256, int4, group = 64, asymmetric>
    %y = qnt.matmul %w, %x : !qnt.tensor<32x256, int4, group = 64, asymmetric>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_int4_g64_asym_32x256(
// CHECK-LABEL: func.func private @moec_matmul_int4_g64_asym_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>

// -----

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : !qnt.tensor<32x256, int8, group = 32>
    %y = qnt.matmul %w, %x : !qnt.tensor<32x256, int8, group = 32>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_int8_g32_32x256(
// CHECK-LABEL: func.func private @moec_matmul_int8_g32_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>

// -----

module attributes {moe.model = {vocab_size = 32 : i64, hidden_size = 256 : i64, layers = 0 : i64, experts = 0 : i64, experts_used = 0 : i64, context_length = 16 : i64}, moe.layout = {hash = 1 : i64, resident_bytes = 65536 : i64, tensors = {emb = [0, 0], w = [32768, -1]}, experts = []}} {
  func.func @forward(%tokens: tensor<?xi32>, %positions: tensor<?xi32>) -> tensor<?x32xf32> {
    %x = moe.embed %tokens {table = #qnt.ref<"emb" : tensor<32x256xf32>>} : tensor<?xi32> -> tensor<?x256xf32>
    %w = qnt.weight "w" : !qnt.tensor<32x256, int8, group = 64, asymmetric>
    %y = qnt.matmul %w, %x : !qnt.tensor<32x256, int8, group = 64, asymmetric>, tensor<?x256xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
// CHECK-LABEL: func.func @moec_model_forward(
// CHECK:         call @moec_embed_f32_256(
// CHECK:         call @moec_rt_barrier(
// CHECK:         call @moec_matmul_int8_g64_asym_32x256(
// CHECK-LABEL: func.func private @moec_matmul_int8_g64_asym_32x256(
// CHECK:         scf.for
// CHECK:         vector.load %{{.*}} : memref<?xi8>, vector<{{[0-9]+}}xi8>
// CHECK:         vector.fma
// CHECK:         vector.reduction <add>
