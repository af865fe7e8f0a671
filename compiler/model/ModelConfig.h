//===- ModelConfig.h - MoE model families and hyper-parameters --*- C++ -*-===//
//
// What moec knows about each supported model family, as data: the GGUF
// architecture name and metadata keys, the Hugging Face model type, which
// optional parts the family has (Q/K norms, a shared expert and its gate,
// attention biases), its RoPE style and routing defaults, and the names of
// its tensors in GGUF. Adding a family (DeepSeek-V2/V3, gpt-oss) is adding a
// row and the parts it introduces, not a new importer.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMPILER_MODEL_MODELCONFIG_H
#define MOEC_COMPILER_MODEL_MODELCONFIG_H

#include "compiler/gguf/GgufFile.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"

#include <string>
#include <vector>

namespace moec::gguf {
class GgufWriter;
}

namespace moec::model {

enum class Family { Qwen3Moe, Qwen2Moe, Mixtral, Olmoe };

/// How rotary embeddings pair the dimensions of a head.
enum class RopeStyle {
  /// Pairs (2i, 2i+1): ggml's default mode, which GGUF llama-family files
  /// are written for (the converter permutes Q and K rows to match).
  Interleaved,
  /// Pairs (i, i + d/2): Hugging Face's rotate_half, ggml's NeoX mode.
  NeoX,
};

/// How the Q/K norms of a family apply.
enum class QkNorm {
  None,
  /// RMSNorm over each head (Qwen3-MoE): weights [head_dim].
  PerHead,
  /// RMSNorm over all heads together (OLMoE): weights [heads * head_dim].
  Whole,
};

/// The static description of a family: one row of the family table.
struct FamilyInfo {
  Family family;
  /// Name used by moec (`moec synth --family=...`).
  llvm::StringRef name;
  /// `general.architecture` in GGUF.
  llvm::StringRef ggufArch;
  /// `model_type` in Hugging Face config.json.
  llvm::StringRef hfModelType;
  /// The transformers class that implements it.
  llvm::StringRef hfArchitecture;
  QkNorm qkNorm;
  /// Whether Q, K and V projections have biases.
  bool qkvBias;
  bool sharedExpert;
  /// Whether the shared expert is scaled by sigmoid(x . w) (Qwen2-MoE).
  bool sharedExpertGate;
  /// RoPE style of GGUF files (the converter may permute Q/K for it).
  RopeStyle ggufRope;
  /// RoPE style of Hugging Face checkpoints.
  RopeStyle hfRope;
  /// Renormalise the top-k router weights unless a GGUF file says otherwise
  /// (llama.cpp's behaviour for the architecture).
  bool defaultNormTopK;

  // Hugging Face checkpoint layout.
  /// config.json key of the routed expert count.
  llvm::StringRef hfExpertCountKey;
  /// config.json key of one expert's FFN size.
  llvm::StringRef hfExpertFfnKey;
  /// The MoE block of a layer: "mlp" or "block_sparse_moe".
  llvm::StringRef hfMoeBlock;
  /// Names of an expert's gate, up and down projections.
  llvm::StringRef hfExpertGate, hfExpertUp, hfExpertDown;
  /// transformers' defaults for keys a config.json may leave out.
  bool hfDefaultNormTopK;
  double hfDefaultRopeTheta, hfDefaultRmsEps;
  /// transformers always renormalises the top-k weights of this family,
  /// whatever norm_topk_prob says (Mixtral).
  bool hfAlwaysNormTopK;
  /// KV heads when config.json has no num_key_value_heads (0: one per
  /// attention head).
  int64_t hfDefaultKvHeads;
};

llvm::ArrayRef<FamilyInfo> getFamilies();
const FamilyInfo &getFamilyInfo(Family family);
/// The family moec calls `name`, or null.
const FamilyInfo *lookupFamilyByName(llvm::StringRef name);
/// "qwen3moe, qwen2moe, mixtral, olmoe".
std::string familyNames();

/// The hyper-parameters of one model, whatever file it came from.
struct ModelConfig {
  const FamilyInfo *family = nullptr;
  int64_t vocabSize = 0;
  int64_t hiddenSize = 0;
  int64_t numLayers = 0;
  int64_t numHeads = 0;
  int64_t numKvHeads = 0;
  int64_t headDim = 0;
  int64_t numExperts = 0;
  int64_t numExpertsUsed = 0;
  int64_t expertFfnSize = 0;
  /// 0 when the family has no shared expert.
  int64_t sharedExpertFfnSize = 0;
  int64_t contextLength = 0;
  double rmsNormEps = 1e-6;
  double ropeTheta = 10000.0;
  bool normTopK = true;
  RopeStyle rope = RopeStyle::NeoX;
  /// The output projection reuses the token embedding.
  bool tiedEmbeddings = false;

  /// Checks the values against each other (heads divide, k <= experts, ...).
  llvm::Error validate(llvm::StringRef source) const;
};

/// Reads a model's configuration from GGUF metadata and checks it against the
/// shapes of its tensors (messages name the file and the key or tensor).
llvm::Expected<ModelConfig> readGgufConfig(const gguf::GgufFile &file);

/// The inverse of readGgufConfig: sets general.architecture, general.name
/// and the family's hyper-parameter keys on `writer`.
void writeGgufConfig(const ModelConfig &config, llvm::StringRef name,
                     gguf::GgufWriter &writer);

/// A tensor of a model in its role, with the name GGUF gives it.
struct TensorRole {
  enum Kind {
    TokenEmbedding,
    OutputNorm,
    Output,
    AttnNorm,
    AttnQ,
    AttnK,
    AttnV,
    AttnQBias,
    AttnKBias,
    AttnVBias,
    AttnOutput,
    AttnQNorm,
    AttnKNorm,
    FfnNorm,
    Router,
    ExpertGate,
    ExpertUp,
    ExpertDown,
    SharedGate,
    SharedUp,
    SharedDown,
    SharedInputGate,
  } kind;
  /// Layer index, or -1 for the model-wide tensors.
  int layer;
  /// The GGUF name: "blk.3.ffn_gate_exps.weight".
  std::string ggufName;
  /// GGML dims (innermost first) the tensor must have.
  std::vector<int64_t> dims;
  /// Which class the tensor belongs to for choosing its type in synth:
  /// "experts", "attention", "embeddings" or "small" (norms, biases and
  /// routers, always F32).
  llvm::StringRef tensorClass;
};

/// Whether `kind` is a routed-expert weight (gate, up or down bank).
bool isExpertBank(TensorRole::Kind kind);

/// The GGUF name moec writes expert `expert` of a bank under when the
/// bank's experts have different formats (one GGUF tensor has one type):
/// "blk.3.ffn_gate_exps.5.weight" for "blk.3.ffn_gate_exps.weight". Such a
/// model is moec's own; llama.cpp does not read it.
std::string getExpertSliceName(llvm::StringRef bankName, int64_t expert);

/// "[64, 8]": dims as messages print them.
std::string formatDims(llvm::ArrayRef<int64_t> dims);

/// Every tensor of a model of `config`, in file order (model-wide tensors
/// first, then layer by layer).
std::vector<TensorRole> getTensorRoles(const ModelConfig &config);

/// The Hugging Face name of `role` ("model.layers.3.mlp.gate.weight"); for
/// routed expert tensors, of expert `expert` ("...mlp.experts.5.up_proj...").
std::string getHfTensorName(const ModelConfig &config, const TensorRole &role,
                            int64_t expert = -1);

/// Reads a model's configuration from a Hugging Face config.json (already
/// parsed); `source` names the file in messages.
llvm::Expected<ModelConfig> readHfConfig(const llvm::json::Object &json,
                                         llvm::StringRef source);

} // namespace moec::model

#endif // MOEC_COMPILER_MODEL_MODELCONFIG_H
