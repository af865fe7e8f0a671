//===- QntOps.td - qnt operations ------------------------------*- tablegen -*-===//

#ifndef MOEC_DIALECTS_QNT_IR_QNTOPS_TD
#define MOEC_DIALECTS_QNT_IR_QNTOPS_TD

include "dialects/qnt/IR/QntTypes.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

// A float tensor (what quantization starts from and dequantization yields).
def Qnt_FloatTensor : RankedTensorOf<[F32, F16, BF16]>;

//===----------------------------------------------------------------------===//
// qnt.weight
//===----------------------------------------------------------------------===//

def Qnt_WeightOp : Qnt_Op<"weight", [Pure]> {
  let summary = "A named tensor of the model's weight store";
  let description = [{
    Yields the tensor that the model's weight store holds under `name`. The
    data stays in the store (a GGUF or safetensors file, later the bundle):
    the IR of a 4 GB model is kilobytes. The type is the tensor's type in the
    store, statically shaped: a float or integer `tensor`, or a
    `!qnt.tensor` whose blocks are the stored bytes.

    ```mlir
    %wq = qnt.weight "blk.0.attn_q.weight" : !qnt.tensor<2048x2048, q4_k>
    %norm = qnt.weight "blk.0.attn_norm.weight" : tensor<2048xf32>
    ```

    Weights that an operation reads only in part, such as the experts of a
    `moe.experts` bank, are named with `#qnt.ref` instead, so that no SSA
    value stands for all of them.
  }];
  let arguments = (ins StrAttr:$name);
  let results = (outs AnyTypeOf<[AnyRankedTensor, Qnt_AnyQuantizedTensor]>:$result);
  let assemblyFormat = "$name attr-dict `:` qualified(type($result))";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// qnt.quantize / qnt.dequantize
//===----------------------------------------------------------------------===//

def Qnt_QuantizeOp : Qnt_Op<"quantize", [Pure]> {
  let summary = "Quantize a float tensor into blocks";
  let description = [{
    Quantizes `input` into the format of the result type. Which quantizer
    is used (round-to-nearest, an importance-weighted search, GPTQ) is the
    compiler's choice; every one of them reproduces exactly any input that
    the format represents exactly. That is what makes
    `quantize(dequantize(%q))` with the type of `%q` fold to `%q`.

    ```mlir
    %q = qnt.quantize %x : tensor<?x2048xf32> -> !qnt.tensor<?x2048, q8_0>
    ```
  }];
  let arguments = (ins Qnt_FloatTensor:$input);
  let results = (outs Qnt_AnyQuantizedTensor:$result);
  let assemblyFormat = "$input attr-dict `:` qualified(type($input)) `->` qualified(type($result))";
  let hasVerifier = 1;
  let hasFolder = 1;
}

def Qnt_DequantizeOp : Qnt_Op<"dequantize", [Pure]> {
  let summary = "Dequantize blocks into a float tensor";
  let description = [{
    Expands every block of `input` by the format's reference definition
    (GGUF's for the GGUF formats: bit-exact).

    ```mlir
    %x = qnt.dequantize %q : !qnt.tensor<64x256, q4_k> -> tensor<64x256xf32>
    ```
  }];
  let arguments = (ins Qnt_AnyQuantizedTensor:$input);
  let results = (outs Qnt_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` qualified(type($input)) `->` qualified(type($result))";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// qnt.matmul
//===----------------------------------------------------------------------===//

def Qnt_MatmulOp : Qnt_Op<"matmul", [Pure]> {
  let summary = "Quantized weights times activations";
  let description = [{
    `result[t, n] = sum_k input[t, k] * dequantize(weights)[n, k]`, the
    orientation of GGUF's (and ggml's) `mul_mat`: each row of the weights is
    one output feature and the (blocked) innermost dimension is the
    reduction. Weights are quantized or, for unquantized models, plain
    f32/f16/bf16 tensors. An optional `bias` (`[out]`) is added to every
    row of the result.
    The activations are floats or, where a target computes integer dot
    products, quantized (for example `q8_0`). With one token this is a GEMV
    (decode), with many a GEMM (prefill); the op does not care.

    ```mlir
    %y = qnt.matmul %w, %x : !qnt.tensor<768x2048, q4_k>, tensor<?x2048xf32>
                          -> tensor<?x768xf32>
    ```
  }];
  let arguments = (ins AnyTypeOf<[Qnt_AnyQuantizedTensor, Qnt_FloatTensor]>:$weights,
                       AnyTypeOf<[Qnt_FloatTensor, Qnt_AnyQuantizedTensor]>:$input,
                       Optional<Qnt_FloatTensor>:$bias);
  let results = (outs Qnt_FloatTensor:$result);
  let assemblyFormat = [{
    $weights `,` $input (`bias` `(` $bias^ `:` qualified(type($bias)) `)`)?
    attr-dict `:` qualified(type($weights)) `,` qualified(type($input))
    `->` qualified(type($result))
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// qnt.repack
//===----------------------------------------------------------------------===//

def Qnt_RepackOp : Qnt_Op<"repack", [Pure]> {
  let summary = "Change the storage layout of quantized blocks";
  let description = [{
    Re-lays out the blocks of `input` into the layout of the result type
    (see `interleave` of `!qnt.tensor`) without changing a single value:
    shape, format, group and asymmetry stay the same. Repacking to the
    input's own layout folds away, and so does a repack of a repack.

    ```mlir
    %r = qnt.repack %w : !qnt.tensor<768x2048, q4_0>
                      -> !qnt.tensor<768x2048, q4_0, interleave = 8>
    ```
  }];
  let arguments = (ins Qnt_AnyQuantizedTensor:$input);
  let results = (outs Qnt_AnyQuantizedTensor:$result);
  let assemblyFormat = "$input attr-dict `:` qualified(type($input)) `->` qualified(type($result))";
  let hasVerifier = 1;
  let hasFolder = 1;
}

//===----------------------------------------------------------------------===//
// qnt.pack / qnt.unpack
//===----------------------------------------------------------------------===//

def Qnt_PackOp : Qnt_Op<"pack", [Pure]> {
  let summary = "Build a group-wise quantized tensor from codes and scales";
  let description = [{
    For the own formats (`int2`, `int3`, `int4`, `int8`): combines one
    integer code per element with one f16 scale (and, when asymmetric, one
    f16 min) per group of `group` elements along the innermost dimension.
    Symmetric codes are signed `i8` (`x = code * scale`); asymmetric codes
    are unsigned `ui8` (`x = code * scale + min`). Scales and mins have the
    shape of the codes with the innermost dimension divided by `group`.

    ```mlir
    %q = qnt.pack %codes, %scales : tensor<128x256xi8>, tensor<128x4xf16>
                                  -> !qnt.tensor<128x256, int4, group = 64>
    ```
  }];
  let arguments = (ins RankedTensorOf<[I8, UI8]>:$codes,
                       RankedTensorOf<[F16]>:$scales,
                       Optional<RankedTensorOf<[F16]>>:$mins);
  let results = (outs Qnt_AnyQuantizedTensor:$result);
  let assemblyFormat = [{
    $codes `,` $scales (`,` $mins^)? attr-dict `:` qualified(type($codes)) `,`
    qualified(type($scales)) (`,` qualified(type($mins))^)? `->` qualified(type($result))
  }];
  let hasVerifier = 1;
  let hasFolder = 1;
}

def Qnt_UnpackOp : Qnt_Op<"unpack", [Pure]> {
  let summary = "Take a group-wise quantized tensor apart";
  let description = [{
    The inverse of `qnt.pack`: the codes, the scales and (when asymmetric)
    the mins of an own-format quantized tensor, as tensors.

    ```mlir
    %codes, %scales, %mins = qnt.unpack %q
        : !qnt.tensor<128x256, int3, group = 32, asymmetric>
       -> tensor<128x256xui8>, tensor<128x8xf16>, tensor<128x8xf16>
    ```
  }];
  let arguments = (ins Qnt_AnyQuantizedTensor:$input);
  let results = (outs RankedTensorOf<[I8, UI8]>:$codes,
                      RankedTensorOf<[F16]>:$scales,
                      Optional<RankedTensorOf<[F16]>>:$mins);
  let assemblyFormat = [{
    $input attr-dict `:` qualified(type($input)) `->` qualified(type($codes)) `,` qualified(type($scales))
    (`,` qualified(type($mins))^)?
  }];
  let hasVerifier = 1;
  let hasFolder = 1;
}

#endif // MOEC_DIALECTS_QNT_IR_QNTOPS_TD
