// RUN: moec-opt %s -canonicalize -split-input-file | FileCheck %s

// quantize(dequantize(%q)) back to %q's own type is %q.
// CHECK-LABEL: func.func @requantize_same_format
// CHECK-SAME: (%[[Q:.*]]: !qnt.tensor<4x256, q4_k>)
// CHECK-NEXT: return %[[Q]]
func.func @requantize_same_format(%q: !qnt.tensor<4x256, q4_k>) -> !qnt.tensor<4x256, q4_k> {
  %d = qnt.dequantize %q : !qnt.tensor<4x256, q4_k> -> tensor<4x256xf32>
  %r = qnt.quantize %d : tensor<4x256xf32> -> !qnt.tensor<4x256, q4_k>
  return %r : !qnt.tensor<4x256, q4_k>
}

// -----

// Also through a narrower float type: the values are still exact.
// CHECK-LABEL: func.func @requantize_through_f16
// CHECK-SAME: (%[[Q:.*]]: !qnt.tensor<4x64, int4, group = 32>)
// CHECK-NEXT: return %[[Q]]
func.func @requantize_through_f16(%q: !qnt.tensor<4x64, int4, group = 32>) -> !qnt.tensor<4x64, int4, group = 32> {
  %d = qnt.dequantize %q : !qnt.tensor<4x64, int4, group = 32> -> tensor<4x64xf32>
  %r = qnt.quantize %d : tensor<4x64xf32> -> !qnt.tensor<4x64, int4, group = 32>
  return %r : !qnt.tensor<4x64, int4, group = 32>
}

// -----

// A different format is a real conversion and stays.
// CHECK-LABEL: func.func @requantize_other_format
// CHECK: qnt.dequantize
// CHECK: qnt.quantize {{.*}} -> !qnt.tensor<4x256, q8_0>
func.func @requantize_other_format(%q: !qnt.tensor<4x256, q4_k>) -> !qnt.tensor<4x256, q8_0> {
  %d = qnt.dequantize %q : !qnt.tensor<4x256, q4_k> -> tensor<4x256xf32>
  %r = qnt.quantize %d : tensor<4x256xf32> -> !qnt.tensor<4x256, q8_0>
  return %r : !qnt.tensor<4x256, q8_0>
}

// -----

// So does a different layout of the same format (that is a repack).
// CHECK-LABEL: func.func @requantize_other_layout
// CHECK: qnt.dequantize
// CHECK: qnt.quantize
func.func @requantize_other_layout(%q: !qnt.tensor<8x32, q4_0>) -> !qnt.tensor<8x32, q4_0, interleave = 4> {
  %d = qnt.dequantize %q : !qnt.tensor<8x32, q4_0> -> tensor<8x32xf32>
  %r = qnt.quantize %d : tensor<8x32xf32> -> !qnt.tensor<8x32, q4_0, interleave = 4>
  return %r : !qnt.tensor<8x32, q4_0, interleave = 4>
}

// -----

// dequantize(quantize(%x)) loses precision: never folded.
// CHECK-LABEL: func.func @dequantize_of_quantize
// CHECK: qnt.quantize
// CHECK: qnt.dequantize
func.func @dequantize_of_quantize(%x: tensor<4x32xf32>) -> tensor<4x32xf32> {
  %q = qnt.quantize %x : tensor<4x32xf32> -> !qnt.tensor<4x32, q8_0>
  %d = qnt.dequantize %q : !qnt.tensor<4x32, q8_0> -> tensor<4x32xf32>
  return %d : tensor<4x32xf32>
}

// -----

// CHECK-LABEL: func.func @repack_to_same_layout
// CHECK-SAME: (%[[W:.*]]: !qnt.tensor<8x32, q4_0, interleave = 4>)
// CHECK-NEXT: return %[[W]]
func.func @repack_to_same_layout(%w: !qnt.tensor<8x32, q4_0, interleave = 4>) -> !qnt.tensor<8x32, q4_0, interleave = 4> {
  %r = qnt.repack %w : !qnt.tensor<8x32, q4_0, interleave = 4> -> !qnt.tensor<8x32, q4_0, interleave = 4>
  return %r : !qnt.tensor<8x32, q4_0, interleave = 4>
}

// -----

// CHECK-LABEL: func.func @repack_of_repack
// CHECK-SAME: (%[[W:.*]]: !qnt.tensor<8x32, q4_0>)
// CHECK-NEXT: %[[R:.*]] = qnt.repack %[[W]] : !qnt.tensor<8x32, q4_0> -> !qnt.tensor<8x32, q4_0, interleave = 8>
// CHECK-NEXT: return %[[R]]
func.func @repack_of_repack(%w: !qnt.tensor<8x32, q4_0>) -> !qnt.tensor<8x32, q4_0, interleave = 8> {
  %a = qnt.repack %w : !qnt.tensor<8x32, q4_0> -> !qnt.tensor<8x32, q4_0, interleave = 4>
  %b = qnt.repack %a : !qnt.tensor<8x32, q4_0, interleave = 4> -> !qnt.tensor<8x32, q4_0, interleave = 8>
  return %b : !qnt.tensor<8x32, q4_0, interleave = 8>
}

// -----

// Repacking there and back is no repack at all.
// CHECK-LABEL: func.func @repack_round_trip
// CHECK-SAME: (%[[W:.*]]: !qnt.tensor<8x32, q4_0>)
// CHECK-NEXT: return %[[W]]
func.func @repack_round_trip(%w: !qnt.tensor<8x32, q4_0>) -> !qnt.tensor<8x32, q4_0> {
  %a = qnt.repack %w : !qnt.tensor<8x32, q4_0> -> !qnt.tensor<8x32, q4_0, interleave = 4>
  %b = qnt.repack %a : !qnt.tensor<8x32, q4_0, interleave = 4> -> !qnt.tensor<8x32, q4_0>
  return %b : !qnt.tensor<8x32, q4_0>
}

// -----

// CHECK-LABEL: func.func @pack_of_unpack
// CHECK-SAME: (%[[Q:.*]]: !qnt.tensor<4x64, int3, group = 32, asymmetric>)
// CHECK-NEXT: return %[[Q]]
func.func @pack_of_unpack(%q: !qnt.tensor<4x64, int3, group = 32, asymmetric>) -> !qnt.tensor<4x64, int3, group = 32, asymmetric> {
  %c, %s, %m = qnt.unpack %q : !qnt.tensor<4x64, int3, group = 32, asymmetric> -> tensor<4x64xui8>, tensor<4x2xf16>, tensor<4x2xf16>
  %p = qnt.pack %c, %s, %m : tensor<4x64xui8>, tensor<4x2xf16>, tensor<4x2xf16> -> !qnt.tensor<4x64, int3, group = 32, asymmetric>
  return %p : !qnt.tensor<4x64, int3, group = 32, asymmetric>
}

// -----

// Scales from another tensor make another tensor.
// CHECK-LABEL: func.func @pack_of_unpack_other_scales
// CHECK: qnt.unpack
// CHECK: qnt.pack
func.func @pack_of_unpack_other_scales(%q: !qnt.tensor<4x64, int4, group = 32>, %s2: tensor<4x2xf16>) -> !qnt.tensor<4x64, int4, group = 32> {
  %c, %s = qnt.unpack %q : !qnt.tensor<4x64, int4, group = 32> -> tensor<4x64xi8>, tensor<4x2xf16>
  %p = qnt.pack %c, %s2 : tensor<4x64xi8>, tensor<4x2xf16> -> !qnt.tensor<4x64, int4, group = 32>
  return %p : !qnt.tensor<4x64, int4, group = 32>
}

// -----

// CHECK-LABEL: func.func @unpack_of_pack
// CHECK-SAME: (%[[C:.*]]: tensor<4x64xi8>, %[[S:.*]]: tensor<4x2xf16>)
// CHECK-NEXT: return %[[C]], %[[S]]
func.func @unpack_of_pack(%c: tensor<4x64xi8>, %s: tensor<4x2xf16>) -> (tensor<4x64xi8>, tensor<4x2xf16>) {
  %q = qnt.pack %c, %s : tensor<4x64xi8>, tensor<4x2xf16> -> !qnt.tensor<4x64, int4, group = 32>
  %c2, %s2 = qnt.unpack %q : !qnt.tensor<4x64, int4, group = 32> -> tensor<4x64xi8>, tensor<4x2xf16>
  return %c2, %s2 : tensor<4x64xi8>, tensor<4x2xf16>
}

// -----

// Unused weights are dead.
// CHECK-LABEL: func.func @dead_weight
// CHECK-NOT: qnt.weight
func.func @dead_weight() {
  %w = qnt.weight "blk.0.attn_q.weight" : !qnt.tensor<64x256, q4_k>
  return
}
