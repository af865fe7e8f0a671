// Round trip: custom form -> custom form, generic form -> custom form, and a
// second print of the first print is byte-identical.
// RUN: moec-opt %s | moec-opt | FileCheck %s
// RUN: moec-opt %s --mlir-print-op-generic | moec-opt | FileCheck %s
// RUN: moec-opt %s -o %t.1.mlir && moec-opt %t.1.mlir -o %t.2.mlir && diff %t.1.mlir %t.2.mlir
// RUN: moec-opt %s --mlir-print-op-generic -o %t.g1.mlir && moec-opt %t.g1.mlir --mlir-print-op-generic -o %t.g2.mlir && diff %t.g1.mlir %t.g2.mlir

// CHECK-LABEL: func.func @weights
func.func @weights() -> (!qnt.tensor<64x256, q4_k>, tensor<64xf32>, !qnt.tensor<8x64x64, mxfp4>) {
  // CHECK: qnt.weight "blk.0.attn_q.weight" : !qnt.tensor<64x256, q4_k>
  %0 = qnt.weight "blk.0.attn_q.weight" : !qnt.tensor<64x256, q4_k>
  // CHECK: qnt.weight "blk.0.attn_norm.weight" : tensor<64xf32>
  %1 = qnt.weight "blk.0.attn_norm.weight" : tensor<64xf32>
  // CHECK: qnt.weight "blk.0.ffn_gate_exps.weight" : !qnt.tensor<8x64x64, mxfp4>
  %2 = qnt.weight "blk.0.ffn_gate_exps.weight" : !qnt.tensor<8x64x64, mxfp4>
  return %0, %1, %2 : !qnt.tensor<64x256, q4_k>, tensor<64xf32>, !qnt.tensor<8x64x64, mxfp4>
}

// Every format, with its parameters.
// CHECK-LABEL: func.func @every_format
// CHECK-SAME: !qnt.tensor<4x32, q4_0>
// CHECK-SAME: !qnt.tensor<4x32, q4_1>
// CHECK-SAME: !qnt.tensor<4x32, q5_0>
// CHECK-SAME: !qnt.tensor<4x32, q5_1>
// CHECK-SAME: !qnt.tensor<4x32, q8_0>
// CHECK-SAME: !qnt.tensor<4x256, q2_k>
// CHECK-SAME: !qnt.tensor<4x256, q3_k>
// CHECK-SAME: !qnt.tensor<4x256, q4_k>
// CHECK-SAME: !qnt.tensor<4x256, q5_k>
// CHECK-SAME: !qnt.tensor<4x256, q6_k>
// CHECK-SAME: !qnt.tensor<4x32, mxfp4>
// CHECK-SAME: !qnt.tensor<4x64, int2, group = 32>
// CHECK-SAME: !qnt.tensor<4x64, int3, group = 32, asymmetric>
// CHECK-SAME: !qnt.tensor<4x64, int4, group = 64>
// CHECK-SAME: !qnt.tensor<4x64, int8, group = 8, asymmetric>
// CHECK-SAME: !qnt.tensor<8x64, q4_0, interleave = 8>
// CHECK-SAME: !qnt.tensor<8x64, int4, group = 32, asymmetric, interleave = 4>
// CHECK-SAME: !qnt.tensor<?x?x64, q8_0>
func.func @every_format(
    %a: !qnt.tensor<4x32, q4_0>, %b: !qnt.tensor<4x32, q4_1>,
    %c: !qnt.tensor<4x32, q5_0>, %d: !qnt.tensor<4x32, q5_1>,
    %e: !qnt.tensor<4x32, q8_0>, %f: !qnt.tensor<4x256, q2_k>,
    %g: !qnt.tensor<4x256, q3_k>, %h: !qnt.tensor<4x256, q4_k>,
    %i: !qnt.tensor<4x256, q5_k>, %j: !qnt.tensor<4x256, q6_k>,
    %k: !qnt.tensor<4x32, mxfp4>, %l: !qnt.tensor<4x64, int2, group = 32>,
    %m: !qnt.tensor<4x64, int3, group = 32, asymmetric>,
    %n: !qnt.tensor<4x64, int4, group = 64>,
    %o: !qnt.tensor<4x64, int8, group = 8, asymmetric>,
    %p: !qnt.tensor<8x64, q4_0, interleave = 8>,
    %q: !qnt.tensor<8x64, int4, group = 32, asymmetric, interleave = 4>,
    %r: !qnt.tensor<?x?x64, q8_0>) {
  return
}

// CHECK-LABEL: func.func @quantize_dequantize
func.func @quantize_dequantize(%x: tensor<?x64xf32>, %h: tensor<4x64xbf16>) -> (tensor<?x64xf32>, tensor<4x64xf16>) {
  // CHECK: %[[Q:.*]] = qnt.quantize %{{.*}} : tensor<?x64xf32> -> !qnt.tensor<?x64, q8_0>
  %q = qnt.quantize %x : tensor<?x64xf32> -> !qnt.tensor<?x64, q8_0>
  // CHECK: qnt.dequantize %[[Q]] : !qnt.tensor<?x64, q8_0> -> tensor<?x64xf32>
  %d = qnt.dequantize %q : !qnt.tensor<?x64, q8_0> -> tensor<?x64xf32>
  // CHECK: qnt.quantize %{{.*}} : tensor<4x64xbf16> -> !qnt.tensor<4x64, int4, group = 32>
  %q4 = qnt.quantize %h : tensor<4x64xbf16> -> !qnt.tensor<4x64, int4, group = 32>
  // CHECK: qnt.dequantize %{{.*}} : !qnt.tensor<4x64, int4, group = 32> -> tensor<4x64xf16>
  %d4 = qnt.dequantize %q4 : !qnt.tensor<4x64, int4, group = 32> -> tensor<4x64xf16>
  return %d, %d4 : tensor<?x64xf32>, tensor<4x64xf16>
}

// CHECK-LABEL: func.func @matmul
func.func @matmul(%w: !qnt.tensor<128x256, q4_k>, %x: tensor<?x256xf32>, %xq: !qnt.tensor<3x256, q8_0>) -> (tensor<?x128xf32>, tensor<3x128xf32>) {
  // CHECK: qnt.matmul %{{.*}}, %{{.*}} : !qnt.tensor<128x256, q4_k>, tensor<?x256xf32> -> tensor<?x128xf32>
  %y = qnt.matmul %w, %x : !qnt.tensor<128x256, q4_k>, tensor<?x256xf32> -> tensor<?x128xf32>
  // CHECK: qnt.matmul %{{.*}}, %{{.*}} : !qnt.tensor<128x256, q4_k>, !qnt.tensor<3x256, q8_0> -> tensor<3x128xf32>
  %yq = qnt.matmul %w, %xq : !qnt.tensor<128x256, q4_k>, !qnt.tensor<3x256, q8_0> -> tensor<3x128xf32>
  return %y, %yq : tensor<?x128xf32>, tensor<3x128xf32>
}

// CHECK-LABEL: func.func @repack
func.func @repack(%w: !qnt.tensor<128x256, q4_0>) -> !qnt.tensor<128x256, q4_0, interleave = 8> {
  // CHECK: qnt.repack %{{.*}} : !qnt.tensor<128x256, q4_0> -> !qnt.tensor<128x256, q4_0, interleave = 8>
  %r = qnt.repack %w : !qnt.tensor<128x256, q4_0> -> !qnt.tensor<128x256, q4_0, interleave = 8>
  return %r : !qnt.tensor<128x256, q4_0, interleave = 8>
}

// CHECK-LABEL: func.func @pack_unpack
func.func @pack_unpack(%codes: tensor<16x128xi8>, %scales: tensor<16x4xf16>,
                       %ucodes: tensor<16x128xui8>, %mins: tensor<16x4xf16>)
    -> (!qnt.tensor<16x128, int4, group = 32>, tensor<16x128xui8>, tensor<16x4xf16>, tensor<16x4xf16>) {
  // CHECK: qnt.pack %{{.*}}, %{{.*}} : tensor<16x128xi8>, tensor<16x4xf16> -> !qnt.tensor<16x128, int4, group = 32>
  %q = qnt.pack %codes, %scales : tensor<16x128xi8>, tensor<16x4xf16> -> !qnt.tensor<16x128, int4, group = 32>
  // CHECK: qnt.pack %{{.*}}, %{{.*}}, %{{.*}} : tensor<16x128xui8>, tensor<16x4xf16>, tensor<16x4xf16> -> !qnt.tensor<16x128, int3, group = 32, asymmetric>
  %a = qnt.pack %ucodes, %scales, %mins : tensor<16x128xui8>, tensor<16x4xf16>, tensor<16x4xf16> -> !qnt.tensor<16x128, int3, group = 32, asymmetric>
  // CHECK: qnt.unpack %{{.*}} : !qnt.tensor<16x128, int3, group = 32, asymmetric> -> tensor<16x128xui8>, tensor<16x4xf16>, tensor<16x4xf16>
  %c, %s, %m = qnt.unpack %a : !qnt.tensor<16x128, int3, group = 32, asymmetric> -> tensor<16x128xui8>, tensor<16x4xf16>, tensor<16x4xf16>
  return %q, %c, %s, %m : !qnt.tensor<16x128, int4, group = 32>, tensor<16x128xui8>, tensor<16x4xf16>, tensor<16x4xf16>
}

// CHECK-LABEL: func.func @unpack_symmetric
func.func @unpack_symmetric(%q: !qnt.tensor<2x64, int8, group = 64>) -> (tensor<2x64xi8>, tensor<2x1xf16>) {
  // CHECK: qnt.unpack %{{.*}} : !qnt.tensor<2x64, int8, group = 64> -> tensor<2x64xi8>, tensor<2x1xf16>
  %c, %s = qnt.unpack %q : !qnt.tensor<2x64, int8, group = 64> -> tensor<2x64xi8>, tensor<2x1xf16>
  return %c, %s : tensor<2x64xi8>, tensor<2x1xf16>
}

// Weight references are attributes; any op may carry them.
// CHECK-LABEL: func.func @weight_ref
// CHECK: test.ref = #qnt.ref<"token_embd.weight" : !qnt.tensor<1000x256, q6_k, interleave = 4>>
func.func @weight_ref() attributes {test.ref = #qnt.ref<"token_embd.weight" : !qnt.tensor<1000x256, q6_k, interleave = 4>>} {
  return
}

// Mins and scales need only compatible shapes.
// CHECK-LABEL: func.func @pack_dynamic_scales
func.func @pack_dynamic_scales(%codes: tensor<4x64xui8>, %scales: tensor<?x2xf16>, %mins: tensor<4x2xf16>) -> !qnt.tensor<4x64, int4, group = 32, asymmetric> {
  // CHECK: qnt.pack {{.*}} : tensor<4x64xui8>, tensor<?x2xf16>, tensor<4x2xf16> -> !qnt.tensor<4x64, int4, group = 32, asymmetric>
  %q = qnt.pack %codes, %scales, %mins : tensor<4x64xui8>, tensor<?x2xf16>, tensor<4x2xf16> -> !qnt.tensor<4x64, int4, group = 32, asymmetric>
  return %q : !qnt.tensor<4x64, int4, group = 32, asymmetric>
}

// Unquantized weights and a bias.
// CHECK-LABEL: func.func @matmul_float_bias
func.func @matmul_float_bias(%w: tensor<32x64xbf16>, %x: tensor<?x64xf32>, %b: tensor<32xf32>) -> tensor<?x32xf32> {
  // CHECK: qnt.matmul %{{.*}}, %{{.*}} bias(%{{.*}} : tensor<32xf32>) : tensor<32x64xbf16>, tensor<?x64xf32> -> tensor<?x32xf32>
  %y = qnt.matmul %w, %x bias(%b : tensor<32xf32>) : tensor<32x64xbf16>, tensor<?x64xf32> -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}
