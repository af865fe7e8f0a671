//===- ReferenceModel.h - The reference executor ----------------*- C++ -*-===//
//
// A plain C++ executor of every supported MoE family, written for clarity
// and exactness, not speed: it dequantizes every weight once into f32 and
// computes with f64 accumulation, following Hugging Face transformers'
// definition of each family (see README.md beside this file). Compiled code
// is checked against its logits. Tiny models only: it holds the whole model
// in f32.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_TEST_REFERENCE_REFERENCEMODEL_H
#define MOEC_TEST_REFERENCE_REFERENCEMODEL_H

#include "compiler/model/ModelConfig.h"
#include "test/reference/ReferenceOps.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringRef.h"

#include <cassert>
#include <cstdint>
#include <map>
#include <vector>

namespace moec::model {
class WeightStore;
}

namespace moec::reference {

/// What calibration sees (runtime/exec/Calibration.h): every projection's
/// input and each routed expert's output, one token at a time.
class ReferenceObserver {
public:
  virtual ~ReferenceObserver() = default;
  /// `x` is the input of weight `tensor` (routed experts: of expert
  /// `expert`'s slice; -1 for other weights).
  virtual void input(llvm::StringRef tensor, int expert,
                     llvm::ArrayRef<float> x) = 0;
  /// A token's routing in MoE layer `layer` and its experts' outputs, one
  /// per routed expert, in the routing's order.
  virtual void experts(int layer, const ops::Routing &routing,
                       llvm::ArrayRef<std::vector<float>> outputs) = 0;
  /// A forward call of `count` tokens begins.
  virtual void tokens(int64_t count) = 0;
};

class ReferenceModel {
public:
  /// Dequantizes every tensor of `store` (whatever its source format) into
  /// f32. The store is not referenced afterwards.
  explicit ReferenceModel(const model::WeightStore &store);

  const model::ModelConfig &getConfig() const { return config; }

  /// Runs `tokens` at the next positions, appending their keys and values to
  /// the cache, and returns the logits of every one: [T][V], row-major.
  std::vector<float> prefill(llvm::ArrayRef<int32_t> tokens);

  /// Runs one token at the next position: logits [V].
  std::vector<float> decode(int32_t token);

  /// Forgets every position (empties the KV cache and the routing record).
  void reset();

  /// Positions run since the last reset.
  int64_t getNumPositions() const { return numPositions; }

  /// The routing of position `position` in layer `layer` (for explaining a
  /// mismatch with compiled code: see ops::Routing::margin).
  const ops::Routing &getRouting(int64_t position, int64_t layer) const {
    assert(position >= 0 && position < numPositions && layer >= 0 &&
           layer < config.numLayers && "no such position or layer");
    return routing[position][layer];
  }

  /// The dequantized tensor with GGUF name `name` (row-major, ggml dims
  /// reversed), or an empty array if the model has none. Tests may edit it
  /// to build models with known behaviour.
  llvm::MutableArrayRef<float> getWeight(llvm::StringRef name);

  /// Keys and values rounded to f16 (to nearest even) as they enter the
  /// KV cache, from the next position on: the storage a compiled model
  /// with `moec --kv-cache=f16` has, so that its logits can be checked as
  /// tightly as an f32 cache's.
  void setF16KvCache(bool on) { f16KvCache = on; }

  /// Reports to `observer` (null: none) from the next call on.
  void setObserver(ReferenceObserver *o) { observer = o; }

private:
  using Kind = model::TensorRole::Kind;
  /// A layer's tensor of role `kind` (-1: the model-wide tensors).
  const std::vector<float> &weight(int layer, Kind kind) const;
  bool hasWeight(int layer, Kind kind) const;
  /// The tensor, or an empty array when the model has none (biases).
  llvm::ArrayRef<float> weightOrNone(int layer, Kind kind) const;

  /// One layer over positions [start, start + x.size()/H): x += Attn(x);
  /// x += MoE(x). Appends the keys and values to the layer's cache.
  void runLayer(int layer, std::vector<float> &x, int64_t start);
  /// One token's MoE block output (input already normalized).
  std::vector<float> moe(int layer, llvm::ArrayRef<float> x,
                         ops::Routing &routingOut) const;
  /// A SwiGLU FFN: down(silu(gate x) * up x) with gate/up of `ffn` rows.
  static std::vector<float> swiglu(llvm::ArrayRef<float> gate,
                                   llvm::ArrayRef<float> up,
                                   llvm::ArrayRef<float> down, int64_t ffn,
                                   llvm::ArrayRef<float> x,
                                   llvm::function_ref<void(llvm::ArrayRef<float>)>
                                       observeDownInput = {});

  bool f16KvCache = false;
  model::ModelConfig config;
  /// Dequantized tensors, per layer (-1 at index 0: model-wide) and role.
  std::vector<std::map<Kind, std::vector<float>>> weights;
  llvm::StringMap<std::vector<float> *> byName;

  /// Per layer: post-norm, post-RoPE keys and the values of every position,
  /// [position][kvHeads * headDim].
  std::vector<std::vector<float>> keys, values;
  /// [position][layer].
  std::vector<std::vector<ops::Routing>> routing;
  int64_t numPositions = 0;
  ReferenceObserver *observer = nullptr;
  /// Names of the tensors by layer (-1 at index 0) and role.
  std::vector<std::map<Kind, std::string>> names;
  /// Tells the observer `x` is the input of the layer's tensor of `kind`.
  void observe(int layer, Kind kind, llvm::ArrayRef<float> x,
               int expert = -1) const;
};

} // namespace moec::reference

#endif // MOEC_TEST_REFERENCE_REFERENCEMODEL_H
