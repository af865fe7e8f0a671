//===- QntTypes.td - qnt types ---------------------------------*- tablegen -*-===//

#ifndef MOEC_DIALECTS_QNT_IR_QNTTYPES_TD
#define MOEC_DIALECTS_QNT_IR_QNTTYPES_TD

include "dialects/qnt/IR/QntAttrs.td"

def Qnt_QuantizedTensorType : TypeDef<Qnt_Dialect, "QuantizedTensor"> {
  let mnemonic = "tensor";
  let summary = "A tensor stored as quantized blocks";
  let description = [{
    A tensor whose innermost dimension is cut into blocks of a quantization
    format. The shape is the logical shape (what `qnt.dequantize` yields);
    the innermost dimension is the reduction dimension of the matmuls that
    read it (GGUF's `ne[0]`) and must be a multiple of the format's block
    size. Outer dimensions may be dynamic (quantized activations); the
    innermost one is always static.

    ```mlir
    !qnt.tensor<4096x1024, q4_k>                  // GGUF Q4_K, 256 per block
    !qnt.tensor<8x768x2048, mxfp4>                // 8 experts, MXFP4
    !qnt.tensor<?x2048, q8_0>                     // activations, Q8_0
    !qnt.tensor<1024x512, int4, group = 64>       // own int4, f16 scales
    !qnt.tensor<1024x512, int3, group = 32, asymmetric>  // scales and mins
    !qnt.tensor<1024x512, q4_0, interleave = 8>   // 8 rows' blocks interleaved
    ```

    Parameters:
    * `format`: one of `q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q5_k q6_k
      mxfp4` (GGUF, bit-exact, scales inside the blocks) or `int2 int3 int4
      int8` (own, group-wise).
    * `group`: for the own formats only, the number of consecutive elements
      sharing one f16 scale; a positive multiple of 8 (so that 3-bit codes
      pack into whole bytes).
    * `asymmetric`: for the own formats only; each group also has an f16 min
      (`x = code * scale + min`, codes unsigned) instead of symmetric signed
      codes (`x = code * scale`).
    * `interleave`: the storage layout; 1 (the default) is GGUF's row-major
      sequence of blocks, N > 1 stores the blocks of N consecutive rows
      interleaved block by block, as SIMD GEMV kernels read them.
      `qnt.repack` changes it.
  }];
  let parameters = (ins
    ArrayRefParameter<"int64_t", "logical shape">:$shape,
    "::moec::qnt::QuantFormat":$format,
    "unsigned":$group,
    "bool":$asymmetric,
    "unsigned":$interleave
  );
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let builders = [
    TypeBuilder<(ins "::llvm::ArrayRef<int64_t>":$shape,
                     "::moec::qnt::QuantFormat":$format), [{
      return $_get($_ctxt, shape, format, 0u, false, 1u);
    }]>
  ];
  let extraClassDeclaration = [{
    int64_t getRank() const { return getShape().size(); }
    bool hasStaticShape() const {
      return !::llvm::is_contained(getShape(), ::mlir::ShapedType::kDynamic);
    }
    /// The innermost (blocked, reduction) dimension.
    int64_t getRowLength() const { return getShape().back(); }
    /// Elements per block: the format's block size, or the group size.
    int64_t getBlockSize() const;
    /// Bytes one block takes in storage, scales and mins included.
    int64_t getBlockBytes() const;
    /// Bytes of one row of the innermost dimension.
    int64_t getRowBytes() const {
      return getRowLength() / getBlockSize() * getBlockBytes();
    }
    /// Bytes of the whole tensor; requires a static shape.
    int64_t getStorageBytes() const;
    /// The same type with another storage layout.
    QuantizedTensorType withInterleave(unsigned interleave) const;
    /// The same type with another logical shape.
    QuantizedTensorType withShape(::llvm::ArrayRef<int64_t> shape) const;
  }];
}

def Qnt_AnyQuantizedTensor : Type<
    CPred<"::llvm::isa<::moec::qnt::QuantizedTensorType>($_self)">,
    "quantized tensor", "::moec::qnt::QuantizedTensorType">;

#endif // MOEC_DIALECTS_QNT_IR_QNTTYPES_TD
