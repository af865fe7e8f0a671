// RUN: moec-opt %s -split-input-file -verify-diagnostics

//===----------------------------------------------------------------------===//
// !qnt.tensor: custom parser
//===----------------------------------------------------------------------===//

// expected-error @+1 {{unknown quantization format 'q7_0'}}
func.func @unknown_format(%arg0: !qnt.tensor<64x32, q7_0>) { return }

// -----

// expected-error @+1 {{expected 'group', 'asymmetric' or 'interleave', got 'groups'}}
func.func @unknown_key(%arg0: !qnt.tensor<64x64, int4, groups = 32>) { return }

// -----

// expected-error @+1 {{'group' given twice}}
func.func @duplicate_key(%arg0: !qnt.tensor<64x64, int4, group = 32, group = 64>) { return }

// -----

//===----------------------------------------------------------------------===//
// !qnt.tensor: type verifier
//===----------------------------------------------------------------------===//

// expected-error @+1 {{quantized tensor needs at least one dimension}}
func.func @no_dims(%arg0: !qnt.tensor<, q4_0>) { return }

// -----

// expected-error @+1 {{dimension sizes must be positive or dynamic, got 0}}
func.func @zero_outer_dim(%arg0: !qnt.tensor<0x32, q4_0>) { return }

// -----

// expected-error @+1 {{dimension sizes must be positive or dynamic, got 0}}
func.func @zero_inner_dim(%arg0: !qnt.tensor<4x0, q4_0>) { return }

// -----

// expected-error @+1 {{the innermost (blocked) dimension must be static}}
func.func @dynamic_inner_dim(%arg0: !qnt.tensor<4x?, q4_0>) { return }

// -----

// expected-error @+1 {{format q4_0 takes no group size: its blocks have 32 elements}}
func.func @gguf_with_group(%arg0: !qnt.tensor<4x64, q4_0, group = 32>) { return }

// -----

// expected-error @+1 {{format q4_k takes no group size: its blocks have 256 elements}}
func.func @kquant_with_group(%arg0: !qnt.tensor<4x256, q4_k, group = 64>) { return }

// -----

// expected-error @+1 {{format q4_1 has no asymmetric variant}}
func.func @gguf_asymmetric(%arg0: !qnt.tensor<4x64, q4_1, asymmetric>) { return }

// -----

// expected-error @+1 {{format int4 requires a group size}}
func.func @own_without_group(%arg0: !qnt.tensor<4x64, int4>) { return }

// -----

// expected-error @+1 {{format int8 requires a group size}}
func.func @own_with_group_zero(%arg0: !qnt.tensor<4x64, int8, group = 0>) { return }

// -----

// expected-error @+1 {{group size must be a positive multiple of 8, got 12}}
func.func @group_not_multiple_of_8(%arg0: !qnt.tensor<4x48, int3, group = 12>) { return }

// -----

// expected-error @+1 {{innermost dimension 48 is not a multiple of the block size 32 of format q8_0}}
func.func @gguf_partial_block(%arg0: !qnt.tensor<4x48, q8_0>) { return }

// -----

// expected-error @+1 {{innermost dimension 128 is not a multiple of the block size 256 of format q6_k}}
func.func @kquant_partial_block(%arg0: !qnt.tensor<4x128, q6_k>) { return }

// -----

// expected-error @+1 {{innermost dimension 40 is not a multiple of the block size 16 of format int2}}
func.func @own_partial_group(%arg0: !qnt.tensor<4x40, int2, group = 16>) { return }

// -----

// expected-error @+1 {{interleave must be a power of two, got 0}}
func.func @interleave_zero(%arg0: !qnt.tensor<8x64, q4_0, interleave = 0>) { return }

// -----

// expected-error @+1 {{interleave must be a power of two, got 6}}
func.func @interleave_not_pow2(%arg0: !qnt.tensor<12x64, q4_0, interleave = 6>) { return }

// -----

// expected-error @+1 {{interleave 4 needs a static row dimension that is a multiple of it}}
func.func @interleave_rank1(%arg0: !qnt.tensor<64, q4_0, interleave = 4>) { return }

// -----

// expected-error @+1 {{interleave 4 needs a static row dimension that is a multiple of it}}
func.func @interleave_dynamic_rows(%arg0: !qnt.tensor<?x64, q8_0, interleave = 4>) { return }

// -----

// expected-error @+1 {{interleave 8 needs a static row dimension that is a multiple of it}}
func.func @interleave_rows_not_multiple(%arg0: !qnt.tensor<12x64, q4_0, interleave = 8>) { return }

// -----

//===----------------------------------------------------------------------===//
// #qnt.ref
//===----------------------------------------------------------------------===//

// expected-error @+1 {{weight name must not be empty}}
func.func @ref_empty_name() attributes {w = #qnt.ref<"" : tensor<4x4xf32>>} { return }

// -----

// expected-error @+1 {{weights must be a ranked tensor or a quantized tensor, got 'f32'}}
func.func @ref_not_a_tensor() attributes {w = #qnt.ref<"w" : f32>} { return }

// -----

// expected-error @+1 {{weights must be a ranked tensor or a quantized tensor, got 'tensor<*xf32>'}}
func.func @ref_unranked() attributes {w = #qnt.ref<"w" : tensor<*xf32>>} { return }

// -----

// expected-error @+1 {{weights must have a static shape, got 'tensor<?x4xf32>'}}
func.func @ref_dynamic_tensor() attributes {w = #qnt.ref<"w" : tensor<?x4xf32>>} { return }

// -----

// expected-error @+1 {{weights must have a static shape, got '!qnt.tensor<?x32, q4_0>'}}
func.func @ref_dynamic_quantized() attributes {w = #qnt.ref<"w" : !qnt.tensor<?x32, q4_0>>} { return }

// -----

// expected-error @+1 {{weights must have a float or integer element type, got 'tensor<4xindex>'}}
func.func @ref_index_elements() attributes {w = #qnt.ref<"w" : tensor<4xindex>>} { return }

// -----

// expected-error @+1 {{weights must not have a zero-sized dimension, got 'tensor<0x32x16xf16>'}}
func.func @ref_zero_sized() attributes {w = #qnt.ref<"g" : tensor<0x32x16xf16>>} { return }

// -----

// Codes know the rows that the quantized type leaves dynamic; scales must
// agree with them.
func.func @pack_scales_vs_codes(%codes: tensor<4x64xi8>, %scales: tensor<8x2xf16>) -> !qnt.tensor<?x64, int4, group = 32> {
  // expected-error @+1 {{'qnt.pack' op scales of shape 8x2 do not match the group shape ?x2 of codes 4x64}}
  %q = qnt.pack %codes, %scales : tensor<4x64xi8>, tensor<8x2xf16> -> !qnt.tensor<?x64, int4, group = 32>
  return %q : !qnt.tensor<?x64, int4, group = 32>
}

// -----

//===----------------------------------------------------------------------===//
// qnt.weight
//===----------------------------------------------------------------------===//

func.func @weight_empty_name() {
  // expected-error @+1 {{'qnt.weight' op weight name must not be empty}}
  %0 = qnt.weight "" : tensor<4x4xf32>
  return
}

// -----

func.func @weight_dynamic_tensor() {
  // expected-error @+1 {{'qnt.weight' op weights must have a static shape, got 'tensor<?x4xf32>'}}
  %0 = qnt.weight "w" : tensor<?x4xf32>
  return
}

// -----

func.func @weight_dynamic_quantized() {
  // expected-error @+1 {{'qnt.weight' op weights must have a static shape, got '!qnt.tensor<?x32, q4_0>'}}
  %0 = qnt.weight "w" : !qnt.tensor<?x32, q4_0>
  return
}

// -----

func.func @weight_complex_elements() {
  // expected-error @+1 {{'qnt.weight' op weights must have a float or integer element type, got 'tensor<4xcomplex<f32>>'}}
  %0 = qnt.weight "w" : tensor<4xcomplex<f32>>
  return
}

// -----

// ODS: an unranked tensor is rejected by the result's type constraint before
// the verifier runs.
func.func @weight_unranked() {
  // expected-error @+1 {{'qnt.weight' op result #0 must be ranked tensor of any type values or quantized tensor, but got 'tensor<*xf32>'}}
  %0 = qnt.weight "w" : tensor<*xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// qnt.quantize / qnt.dequantize
//===----------------------------------------------------------------------===//

func.func @quantize_shape(%arg0: tensor<4x64xf32>) {
  // expected-error @+1 {{'qnt.quantize' op input shape 4x64 does not match the quantized shape 8x64}}
  %0 = qnt.quantize %arg0 : tensor<4x64xf32> -> !qnt.tensor<8x64, q8_0>
  return
}

// -----

func.func @quantize_rank(%arg0: tensor<64xf32>) {
  // expected-error @+1 {{'qnt.quantize' op input shape 64 does not match the quantized shape 1x64}}
  %0 = qnt.quantize %arg0 : tensor<64xf32> -> !qnt.tensor<1x64, q8_0>
  return
}

// -----

// ODS: only f32, f16 and bf16 tensors are quantized.
func.func @quantize_int_input(%arg0: tensor<4x64xi32>) {
  // expected-error @+1 {{'qnt.quantize' op operand #0 must be ranked tensor of 32-bit float or 16-bit float or bfloat16 type values}}
  %0 = qnt.quantize %arg0 : tensor<4x64xi32> -> !qnt.tensor<4x64, q8_0>
  return
}

// -----

func.func @dequantize_shape(%arg0: !qnt.tensor<4x256, q4_k>) {
  // expected-error @+1 {{'qnt.dequantize' op result shape 4x128 does not match the quantized shape 4x256}}
  %0 = qnt.dequantize %arg0 : !qnt.tensor<4x256, q4_k> -> tensor<4x128xf32>
  return
}

// -----

func.func @dequantize_rank(%arg0: !qnt.tensor<?x32, q4_0>) {
  // expected-error @+1 {{'qnt.dequantize' op result shape 2x?x32 does not match the quantized shape ?x32}}
  %0 = qnt.dequantize %arg0 : !qnt.tensor<?x32, q4_0> -> tensor<2x?x32xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// qnt.matmul
//===----------------------------------------------------------------------===//

func.func @matmul_weights_rank(%w: !qnt.tensor<2x8x64, q4_0>, %x: tensor<?x64xf32>) {
  // expected-error @+1 {{'qnt.matmul' op expects 2-D weights [out, in], got rank 3}}
  %0 = qnt.matmul %w, %x : !qnt.tensor<2x8x64, q4_0>, tensor<?x64xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @matmul_float_input_rank(%w: !qnt.tensor<8x64, q4_0>, %x: tensor<64xf32>) {
  // expected-error @+1 {{'qnt.matmul' op expects 2-D activations [tokens, in], got rank 1}}
  %0 = qnt.matmul %w, %x : !qnt.tensor<8x64, q4_0>, tensor<64xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @matmul_quantized_input_rank(%w: !qnt.tensor<8x64, q4_0>, %x: !qnt.tensor<1x?x64, q8_0>) {
  // expected-error @+1 {{'qnt.matmul' op expects 2-D activations [tokens, in], got rank 3}}
  %0 = qnt.matmul %w, %x : !qnt.tensor<8x64, q4_0>, !qnt.tensor<1x?x64, q8_0> -> tensor<?x8xf32>
  return
}

// -----

func.func @matmul_in_features(%w: !qnt.tensor<8x64, q4_0>, %x: tensor<?x32xf32>) {
  // expected-error @+1 {{'qnt.matmul' op activations have 32 input features but the weights have 64}}
  %0 = qnt.matmul %w, %x : !qnt.tensor<8x64, q4_0>, tensor<?x32xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @matmul_quantized_in_features(%w: !qnt.tensor<8x64, q4_0>, %x: !qnt.tensor<?x96, q8_0>) {
  // expected-error @+1 {{'qnt.matmul' op activations have 96 input features but the weights have 64}}
  %0 = qnt.matmul %w, %x : !qnt.tensor<8x64, q4_0>, !qnt.tensor<?x96, q8_0> -> tensor<?x8xf32>
  return
}

// -----

func.func @matmul_result_out(%w: !qnt.tensor<8x64, q4_0>, %x: tensor<?x64xf32>) {
  // expected-error @+1 {{'qnt.matmul' op result shape ?x16 does not match [tokens, out] = ?x8}}
  %0 = qnt.matmul %w, %x : !qnt.tensor<8x64, q4_0>, tensor<?x64xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @matmul_result_tokens(%w: !qnt.tensor<8x64, q4_0>, %x: tensor<3x64xf32>) {
  // expected-error @+1 {{'qnt.matmul' op result shape 4x8 does not match [tokens, out] = 3x8}}
  %0 = qnt.matmul %w, %x : !qnt.tensor<8x64, q4_0>, tensor<3x64xf32> -> tensor<4x8xf32>
  return
}

// -----

func.func @matmul_result_rank(%w: !qnt.tensor<8x64, q4_0>, %x: tensor<?x64xf32>) {
  // expected-error @+1 {{'qnt.matmul' op result shape 8 does not match [tokens, out] = ?x8}}
  %0 = qnt.matmul %w, %x : !qnt.tensor<8x64, q4_0>, tensor<?x64xf32> -> tensor<8xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// qnt.repack
//===----------------------------------------------------------------------===//

func.func @repack_shape(%arg0: !qnt.tensor<8x64, q4_0>) {
  // expected-error @+1 {{'qnt.repack' op may change only the storage layout, but '!qnt.tensor<8x64, q4_0>' and '!qnt.tensor<16x64, q4_0, interleave = 8>' differ in shape, format, group or asymmetry}}
  %0 = qnt.repack %arg0 : !qnt.tensor<8x64, q4_0> -> !qnt.tensor<16x64, q4_0, interleave = 8>
  return
}

// -----

func.func @repack_format(%arg0: !qnt.tensor<8x64, q4_0>) {
  // expected-error @+1 {{'qnt.repack' op may change only the storage layout, but '!qnt.tensor<8x64, q4_0>' and '!qnt.tensor<8x64, q8_0, interleave = 8>' differ in shape, format, group or asymmetry}}
  %0 = qnt.repack %arg0 : !qnt.tensor<8x64, q4_0> -> !qnt.tensor<8x64, q8_0, interleave = 8>
  return
}

// -----

func.func @repack_group(%arg0: !qnt.tensor<8x64, int4, group = 32>) {
  // expected-error @+1 {{'qnt.repack' op may change only the storage layout, but '!qnt.tensor<8x64, int4, group = 32>' and '!qnt.tensor<8x64, int4, group = 64, interleave = 4>' differ in shape, format, group or asymmetry}}
  %0 = qnt.repack %arg0 : !qnt.tensor<8x64, int4, group = 32> -> !qnt.tensor<8x64, int4, group = 64, interleave = 4>
  return
}

// -----

func.func @repack_asymmetry(%arg0: !qnt.tensor<8x64, int4, group = 32>) {
  // expected-error @+1 {{'qnt.repack' op may change only the storage layout, but '!qnt.tensor<8x64, int4, group = 32>' and '!qnt.tensor<8x64, int4, group = 32, asymmetric, interleave = 2>' differ in shape, format, group or asymmetry}}
  %0 = qnt.repack %arg0 : !qnt.tensor<8x64, int4, group = 32> -> !qnt.tensor<8x64, int4, group = 32, asymmetric, interleave = 2>
  return
}

// -----

// ODS: repack works on quantized tensors only.
func.func @repack_float(%arg0: tensor<8x64xf32>) {
  // expected-error @+1 {{'qnt.repack' op operand #0 must be quantized tensor, but got 'tensor<8x64xf32>'}}
  %0 = qnt.repack %arg0 : tensor<8x64xf32> -> !qnt.tensor<8x64, q4_0, interleave = 8>
  return
}

// -----

//===----------------------------------------------------------------------===//
// qnt.pack
//===----------------------------------------------------------------------===//

func.func @pack_gguf(%c: tensor<4x64xi8>, %s: tensor<4x2xf16>) {
  // expected-error @+1 {{'qnt.pack' op expects an own group-wise format (int2, int3, int4, int8), got q4_0, whose scales live inside its blocks}}
  %0 = qnt.pack %c, %s : tensor<4x64xi8>, tensor<4x2xf16> -> !qnt.tensor<4x64, q4_0>
  return
}

// -----

func.func @pack_codes_shape(%c: tensor<4x32xi8>, %s: tensor<4x2xf16>) {
  // expected-error @+1 {{'qnt.pack' op codes of shape 4x32 do not match the quantized shape 4x64}}
  %0 = qnt.pack %c, %s : tensor<4x32xi8>, tensor<4x2xf16> -> !qnt.tensor<4x64, int4, group = 32>
  return
}

// -----

func.func @pack_codes_rank(%c: tensor<256xi8>, %s: tensor<4x2xf16>) {
  // expected-error @+1 {{'qnt.pack' op codes of shape 256 do not match the quantized shape 4x64}}
  %0 = qnt.pack %c, %s : tensor<256xi8>, tensor<4x2xf16> -> !qnt.tensor<4x64, int4, group = 32>
  return
}

// -----

func.func @pack_symmetric_unsigned_codes(%c: tensor<4x64xui8>, %s: tensor<4x2xf16>) {
  // expected-error @+1 {{'qnt.pack' op expects codes of element type 'i8' for a symmetric format, got 'ui8'}}
  %0 = qnt.pack %c, %s : tensor<4x64xui8>, tensor<4x2xf16> -> !qnt.tensor<4x64, int4, group = 32>
  return
}

// -----

func.func @pack_asymmetric_signless_codes(%c: tensor<4x64xi8>, %s: tensor<4x2xf16>, %m: tensor<4x2xf16>) {
  // expected-error @+1 {{'qnt.pack' op expects codes of element type 'ui8' for an asymmetric format, got 'i8'}}
  %0 = qnt.pack %c, %s, %m : tensor<4x64xi8>, tensor<4x2xf16>, tensor<4x2xf16> -> !qnt.tensor<4x64, int4, group = 32, asymmetric>
  return
}

// -----

func.func @pack_scales_shape(%c: tensor<4x64xi8>, %s: tensor<4x4xf16>) {
  // expected-error @+1 {{'qnt.pack' op scales of shape 4x4 do not match the group shape 4x2}}
  %0 = qnt.pack %c, %s : tensor<4x64xi8>, tensor<4x4xf16> -> !qnt.tensor<4x64, int4, group = 32>
  return
}

// -----

func.func @pack_scales_rank(%c: tensor<4x64xi8>, %s: tensor<8xf16>) {
  // expected-error @+1 {{'qnt.pack' op scales of shape 8 do not match the group shape 4x2}}
  %0 = qnt.pack %c, %s : tensor<4x64xi8>, tensor<8xf16> -> !qnt.tensor<4x64, int4, group = 32>
  return
}

// -----

func.func @pack_asymmetric_without_mins(%c: tensor<4x64xui8>, %s: tensor<4x2xf16>) {
  // expected-error @+1 {{'qnt.pack' op an asymmetric format needs mins}}
  %0 = qnt.pack %c, %s : tensor<4x64xui8>, tensor<4x2xf16> -> !qnt.tensor<4x64, int4, group = 32, asymmetric>
  return
}

// -----

func.func @pack_symmetric_with_mins(%c: tensor<4x64xi8>, %s: tensor<4x2xf16>, %m: tensor<4x2xf16>) {
  // expected-error @+1 {{'qnt.pack' op a symmetric format has no mins}}
  %0 = qnt.pack %c, %s, %m : tensor<4x64xi8>, tensor<4x2xf16>, tensor<4x2xf16> -> !qnt.tensor<4x64, int4, group = 32>
  return
}

// -----

func.func @pack_mins_shape(%c: tensor<4x64xui8>, %s: tensor<4x2xf16>, %m: tensor<4x1xf16>) {
  // expected-error @+1 {{'qnt.pack' op mins of shape 4x1 do not match the scales' shape 4x2}}
  %0 = qnt.pack %c, %s, %m : tensor<4x64xui8>, tensor<4x2xf16>, tensor<4x1xf16> -> !qnt.tensor<4x64, int4, group = 32, asymmetric>
  return
}

// -----

// ODS: scales are f16.
func.func @pack_f32_scales(%c: tensor<4x64xi8>, %s: tensor<4x2xf32>) {
  // expected-error @+1 {{'qnt.pack' op operand #1 must be ranked tensor of 16-bit float values, but got 'tensor<4x2xf32>'}}
  %0 = qnt.pack %c, %s : tensor<4x64xi8>, tensor<4x2xf32> -> !qnt.tensor<4x64, int4, group = 32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// qnt.unpack
//===----------------------------------------------------------------------===//

func.func @unpack_gguf(%q: !qnt.tensor<4x256, q4_k>) {
  // expected-error @+1 {{'qnt.unpack' op expects an own group-wise format (int2, int3, int4, int8), got q4_k, whose scales live inside its blocks}}
  %0:2 = qnt.unpack %q : !qnt.tensor<4x256, q4_k> -> tensor<4x256xi8>, tensor<4x1xf16>
  return
}

// -----

func.func @unpack_codes_shape(%q: !qnt.tensor<4x64, int8, group = 64>) {
  // expected-error @+1 {{'qnt.unpack' op codes of shape 8x64 do not match the quantized shape 4x64}}
  %0:2 = qnt.unpack %q : !qnt.tensor<4x64, int8, group = 64> -> tensor<8x64xi8>, tensor<4x1xf16>
  return
}

// -----

func.func @unpack_symmetric_unsigned_codes(%q: !qnt.tensor<4x64, int8, group = 64>) {
  // expected-error @+1 {{'qnt.unpack' op expects codes of element type 'i8' for a symmetric format, got 'ui8'}}
  %0:2 = qnt.unpack %q : !qnt.tensor<4x64, int8, group = 64> -> tensor<4x64xui8>, tensor<4x1xf16>
  return
}

// -----

func.func @unpack_asymmetric_signless_codes(%q: !qnt.tensor<4x64, int2, group = 16, asymmetric>) {
  // expected-error @+1 {{'qnt.unpack' op expects codes of element type 'ui8' for an asymmetric format, got 'i8'}}
  %0:3 = qnt.unpack %q : !qnt.tensor<4x64, int2, group = 16, asymmetric> -> tensor<4x64xi8>, tensor<4x4xf16>, tensor<4x4xf16>
  return
}

// -----

func.func @unpack_scales_shape(%q: !qnt.tensor<4x64, int3, group = 32>) {
  // expected-error @+1 {{'qnt.unpack' op scales of shape 4x1 do not match the group shape 4x2}}
  %0:2 = qnt.unpack %q : !qnt.tensor<4x64, int3, group = 32> -> tensor<4x64xi8>, tensor<4x1xf16>
  return
}

// -----

func.func @unpack_asymmetric_without_mins(%q: !qnt.tensor<4x64, int3, group = 32, asymmetric>) {
  // expected-error @+1 {{'qnt.unpack' op an asymmetric format needs mins}}
  %0:2 = qnt.unpack %q : !qnt.tensor<4x64, int3, group = 32, asymmetric> -> tensor<4x64xui8>, tensor<4x2xf16>
  return
}

// -----

func.func @unpack_symmetric_with_mins(%q: !qnt.tensor<4x64, int3, group = 32>) {
  // expected-error @+1 {{'qnt.unpack' op a symmetric format has no mins}}
  %0:3 = qnt.unpack %q : !qnt.tensor<4x64, int3, group = 32> -> tensor<4x64xi8>, tensor<4x2xf16>, tensor<4x2xf16>
  return
}

// -----

func.func @unpack_mins_shape(%q: !qnt.tensor<4x64, int3, group = 32, asymmetric>) {
  // expected-error @+1 {{'qnt.unpack' op mins of shape 2x4 do not match the scales' shape 4x2}}
  %0:3 = qnt.unpack %q : !qnt.tensor<4x64, int3, group = 32, asymmetric> -> tensor<4x64xui8>, tensor<4x2xf16>, tensor<2x4xf16>
  return
}

// -----

func.func @matmul_bias_shape(%w: !qnt.tensor<32x64, q8_0>, %x: tensor<?x64xf32>, %b: tensor<64xf32>) -> tensor<?x32xf32> {
  // expected-error @+1 {{'qnt.matmul' op bias of shape 64 does not match [out] = [32]}}
  %y = qnt.matmul %w, %x bias(%b : tensor<64xf32>) : !qnt.tensor<32x64, q8_0>, tensor<?x64xf32> -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}

// -----

func.func @matmul_dynamic_float_weights(%w: tensor<32x?xf32>, %x: tensor<?x64xf32>) -> tensor<?x32xf32> {
  // expected-error @+1 {{'qnt.matmul' op weights must have a static shape}}
  %y = qnt.matmul %w, %x : tensor<32x?xf32>, tensor<?x64xf32> -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}
