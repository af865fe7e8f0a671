//===- ModelConfig.cpp - MoE model families and hyper-parameters ----------===//

#include "compiler/model/ModelConfig.h"
#include "compiler/gguf/GgufWriter.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>

using namespace llvm;
using namespace moec;
using namespace moec::model;

namespace {

// clang-format off
const FamilyInfo kFamilies[] = {
  // family           name        gguf arch   HF model_type  HF class
  //   qk norm           qkv bias shared gate  GGUF rope             HF rope           norm top-k
  //   HF expert count key   HF expert FFN key         HF MoE block  gate / up / down
  //   transformers defaults: norm top-k, RoPE theta, RMSNorm eps; always norm
  //   top-k; KV heads when the key is missing (0: as many as heads)
  {Family::Qwen3Moe, "qwen3moe", "qwen3moe", "qwen3_moe", "Qwen3MoeForCausalLM",
     QkNorm::PerHead, false, false, false, RopeStyle::NeoX,        RopeStyle::NeoX, true,
     "num_experts",       "moe_intermediate_size", "mlp", "gate_proj", "up_proj", "down_proj",
     false, 10000.0, 1e-6, false, 4},
  {Family::Qwen2Moe, "qwen2moe", "qwen2moe", "qwen2_moe", "Qwen2MoeForCausalLM",
     QkNorm::None,    true,  true,  true,  RopeStyle::NeoX,        RopeStyle::NeoX, false,
     "num_experts",       "moe_intermediate_size", "mlp", "gate_proj", "up_proj", "down_proj",
     false, 10000.0, 1e-6, false, 16},
  {Family::Mixtral,  "mixtral",  "llama",    "mixtral",   "MixtralForCausalLM",
     QkNorm::None,    false, false, false, RopeStyle::Interleaved, RopeStyle::NeoX, true,
     "num_local_experts", "intermediate_size",     "block_sparse_moe", "w1", "w3", "w2",
     true, 1e6, 1e-5, true, 8},
  {Family::Olmoe,    "olmoe",    "olmoe",    "olmoe",     "OlmoeForCausalLM",
     QkNorm::Whole,   false, false, false, RopeStyle::NeoX,        RopeStyle::NeoX, false,
     "num_experts",       "intermediate_size",     "mlp", "gate_proj", "up_proj", "down_proj",
     false, 10000.0, 1e-5, false, 0},
};
// clang-format on

} // namespace

ArrayRef<FamilyInfo> moec::model::getFamilies() { return kFamilies; }

const FamilyInfo &moec::model::getFamilyInfo(Family family) {
  for (const FamilyInfo &info : kFamilies)
    if (info.family == family)
      return info;
  llvm_unreachable("every family has a row");
}

const FamilyInfo *moec::model::lookupFamilyByName(StringRef name) {
  for (const FamilyInfo &info : kFamilies)
    if (info.name == name)
      return &info;
  return nullptr;
}

std::string moec::model::familyNames() {
  std::string names;
  for (const FamilyInfo &info : kFamilies)
    names += (names.empty() ? "" : ", ") + info.name.str();
  return names;
}

Error ModelConfig::validate(StringRef source) const {
  auto fail = [&](const Twine &message) {
    return createStringError(inconvertibleErrorCode(),
                             source + ": " + message);
  };
  struct {
    const char *name;
    int64_t value;
  } positive[] = {{"vocabulary size", vocabSize},
                  {"hidden size", hiddenSize},
                  {"layer count", numLayers},
                  {"attention head count", numHeads},
                  {"KV head count", numKvHeads},
                  {"head size", headDim},
                  {"expert count", numExperts},
                  {"experts used per token", numExpertsUsed},
                  {"expert FFN size", expertFfnSize}};
  for (const auto &p : positive)
    if (p.value <= 0)
      return fail(Twine(p.name) + " is " + Twine(p.value) +
                  ", expected a positive number");
  if (numHeads % numKvHeads != 0)
    return fail(Twine(numHeads) + " attention heads are not a multiple of " +
                Twine(numKvHeads) + " KV heads");
  if (numExpertsUsed > numExperts)
    return fail(Twine(numExpertsUsed) + " experts used per token exceeds the " +
                Twine(numExperts) + " experts");
  if (headDim % 2 != 0)
    return fail("head size " + Twine(headDim) + " is odd: RoPE needs pairs");
  if (family->sharedExpert && sharedExpertFfnSize <= 0)
    return fail(family->name + " needs a shared expert FFN size");
  for (const auto &p : positive)
    if (p.value > INT32_MAX)
      return fail(Twine(p.name) + " is " + Twine(p.value) +
                  ", larger than any model moec supports");
  if (!(rmsNormEps > 0.0) || !std::isfinite(rmsNormEps))
    return fail("RMSNorm epsilon " + std::to_string(rmsNormEps) +
                " is not positive and finite");
  if (!(ropeTheta > 0.0) || !std::isfinite(ropeTheta))
    return fail("RoPE base " + std::to_string(ropeTheta) +
                " is not positive and finite");
  return Error::success();
}

std::vector<TensorRole> moec::model::getTensorRoles(const ModelConfig &c) {
  using K = TensorRole::Kind;
  const FamilyInfo &f = *c.family;
  int64_t h = c.hiddenSize, q = c.numHeads * c.headDim,
          kv = c.numKvHeads * c.headDim, e = c.numExperts,
          i = c.expertFfnSize, s = c.sharedExpertFfnSize;
  std::vector<TensorRole> roles;
  auto add = [&](K kind, int layer, StringRef suffix,
                 std::vector<int64_t> dims, StringRef tensorClass) {
    std::string name = layer < 0 ? suffix.str()
                                 : ("blk." + Twine(layer) + "." + suffix).str();
    roles.push_back({kind, layer, name, std::move(dims), tensorClass});
  };
  add(K::TokenEmbedding, -1, "token_embd.weight", {h, c.vocabSize},
      "embeddings");
  add(K::OutputNorm, -1, "output_norm.weight", {h}, "small");
  if (!c.tiedEmbeddings)
    add(K::Output, -1, "output.weight", {h, c.vocabSize}, "embeddings");
  for (int l = 0; l < c.numLayers; ++l) {
    add(K::AttnNorm, l, "attn_norm.weight", {h}, "small");
    add(K::AttnQ, l, "attn_q.weight", {h, q}, "attention");
    add(K::AttnK, l, "attn_k.weight", {h, kv}, "attention");
    add(K::AttnV, l, "attn_v.weight", {h, kv}, "attention");
    if (f.qkvBias) {
      add(K::AttnQBias, l, "attn_q.bias", {q}, "small");
      add(K::AttnKBias, l, "attn_k.bias", {kv}, "small");
      add(K::AttnVBias, l, "attn_v.bias", {kv}, "small");
    }
    if (f.qkNorm == QkNorm::PerHead) {
      add(K::AttnQNorm, l, "attn_q_norm.weight", {c.headDim}, "small");
      add(K::AttnKNorm, l, "attn_k_norm.weight", {c.headDim}, "small");
    } else if (f.qkNorm == QkNorm::Whole) {
      add(K::AttnQNorm, l, "attn_q_norm.weight", {q}, "small");
      add(K::AttnKNorm, l, "attn_k_norm.weight", {kv}, "small");
    }
    add(K::AttnOutput, l, "attn_output.weight", {q, h}, "attention");
    add(K::FfnNorm, l, "ffn_norm.weight", {h}, "small");
    add(K::Router, l, "ffn_gate_inp.weight", {h, e}, "small");
    add(K::ExpertGate, l, "ffn_gate_exps.weight", {h, i, e}, "experts");
    add(K::ExpertUp, l, "ffn_up_exps.weight", {h, i, e}, "experts");
    add(K::ExpertDown, l, "ffn_down_exps.weight", {i, h, e}, "experts");
    if (f.sharedExpert) {
      if (f.sharedExpertGate)
        add(K::SharedInputGate, l, "ffn_gate_inp_shexp.weight", {h}, "small");
      add(K::SharedGate, l, "ffn_gate_shexp.weight", {h, s}, "attention");
      add(K::SharedUp, l, "ffn_up_shexp.weight", {h, s}, "attention");
      add(K::SharedDown, l, "ffn_down_shexp.weight", {s, h}, "attention");
    }
  }
  return roles;
}

//===----------------------------------------------------------------------===//
// GGUF
//===----------------------------------------------------------------------===//

std::string moec::model::formatDims(ArrayRef<int64_t> dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i)
    s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

Expected<ModelConfig> moec::model::readGgufConfig(const gguf::GgufFile &file) {
  Expected<StringRef> arch = file.getString("general.architecture");
  if (!arch)
    return arch.takeError();
  ModelConfig c;
  for (const FamilyInfo &info : kFamilies)
    if (info.ggufArch == *arch)
      c.family = &info;
  if (!c.family) {
    std::string known;
    for (const FamilyInfo &info : kFamilies)
      known += (known.empty() ? "" : ", ") + info.ggufArch.str();
    return file.makeError("general.architecture is '" + *arch +
                          "', which moec does not support (supported: " +
                          known + ")");
  }
  std::string p = arch->str() + ".";
  auto required = [&](StringRef key, int64_t &out) -> Error {
    Expected<uint64_t> v = file.getUnsigned(p + key.str());
    if (!v)
      return v.takeError();
    if (*v > static_cast<uint64_t>(INT32_MAX))
      return file.makeError(p + key + " is " + Twine(*v) +
                            ", larger than any model moec supports");
    out = static_cast<int64_t>(*v);
    return Error::success();
  };
  auto optional = [&](StringRef key, int64_t &out) -> Error {
    if (!file.lookup(p + key.str()))
      return Error::success();
    return required(key, out);
  };
  if (*arch == "llama" && !file.lookup(p + "expert_count"))
    return file.makeError("architecture 'llama' without llama.expert_count is "
                          "a dense model, not a Mixture-of-Experts");
  if (Error e = required("embedding_length", c.hiddenSize))
    return std::move(e);
  if (Error e = required("block_count", c.numLayers))
    return std::move(e);
  if (Error e = required("attention.head_count", c.numHeads))
    return std::move(e);
  c.numKvHeads = c.numHeads;
  if (Error e = optional("attention.head_count_kv", c.numKvHeads))
    return std::move(e);
  if (c.numHeads > 0)
    c.headDim = c.hiddenSize / c.numHeads;
  if (Error e = optional("attention.key_length", c.headDim))
    return std::move(e);
  if (Error e = required("expert_count", c.numExperts))
    return std::move(e);
  if (Error e = required("expert_used_count", c.numExpertsUsed))
    return std::move(e);
  if (file.lookup(p + "expert_feed_forward_length")) {
    if (Error e = required("expert_feed_forward_length", c.expertFfnSize))
      return std::move(e);
  } else if (Error e = required("feed_forward_length", c.expertFfnSize)) {
    return std::move(e);
  }
  if (c.family->sharedExpert)
    if (Error e = required("expert_shared_feed_forward_length",
                           c.sharedExpertFfnSize))
      return std::move(e);
  if (Error e = optional("context_length", c.contextLength))
    return std::move(e);
  Expected<double> eps = file.getDouble(p + "attention.layer_norm_rms_epsilon");
  if (!eps)
    return eps.takeError();
  c.rmsNormEps = *eps;
  if (file.lookup(p + "rope.freq_base")) {
    Expected<double> theta = file.getDouble(p + "rope.freq_base");
    if (!theta)
      return theta.takeError();
    c.ropeTheta = *theta;
  }
  c.normTopK = c.family->defaultNormTopK;
  if (file.lookup(p + "expert_weights_norm")) {
    Expected<bool> norm = file.getBool(p + "expert_weights_norm");
    if (!norm)
      return norm.takeError();
    c.normTopK = *norm;
  }
  c.rope = c.family->ggufRope;

  const gguf::TensorInfo *embedding = file.findTensor("token_embd.weight");
  if (!embedding)
    return file.makeError("missing tensor 'token_embd.weight'");
  if (embedding->dims.size() != 2)
    return file.makeError("tensor 'token_embd.weight' has dims " +
                          formatDims(embedding->dims) +
                          ", expected [hidden, vocabulary]");
  c.vocabSize = embedding->dims[1];
  if (Error e = optional("vocab_size", c.vocabSize))
    return std::move(e);
  c.tiedEmbeddings = !file.findTensor("output.weight");
  if (Error e = c.validate(file.getPath()))
    return std::move(e);

  // Each layer has several tensors: a layer count beyond the file's tensor
  // count is wrong, and checking it first bounds the work below.
  if (static_cast<uint64_t>(c.numLayers) > file.getTensors().size())
    return file.makeError(p + "block_count is " + Twine(c.numLayers) +
                          " but the file has only " +
                          Twine(file.getTensors().size()) + " tensors");

  // Every tensor the configuration implies, with the shape it implies; an
  // expert bank either whole or one tensor per expert (a bank of mixed
  // formats, getExpertSliceName).
  for (const TensorRole &role : getTensorRoles(c)) {
    const gguf::TensorInfo *t = file.findTensor(role.ggufName);
    ArrayRef<int64_t> want = role.dims;
    std::string name = role.ggufName;
    if (!t && isExpertBank(role.kind) &&
        file.findTensor(getExpertSliceName(role.ggufName, 0))) {
      want = want.drop_back();
      for (int64_t e = 0; e < c.numExperts; ++e) {
        name = getExpertSliceName(role.ggufName, e);
        t = file.findTensor(name);
        if (!t)
          return file.makeError("missing tensor '" + name + "': expert " +
                                Twine(e) + " of '" + role.ggufName +
                                "', whose experts are stored one per tensor");
        if (ArrayRef<int64_t>(t->dims) != want)
          break;
      }
    }
    if (!t)
      return file.makeError("missing tensor '" + role.ggufName + "' of " +
                            c.family->name + " layer " + Twine(role.layer));
    if (ArrayRef<int64_t>(t->dims) != want)
      return file.makeError(
          "tensor '" + name + "' has dims " + formatDims(t->dims) +
          " but the metadata implies " + formatDims(want) + " (hidden " +
          Twine(c.hiddenSize) + ", heads " + Twine(c.numHeads) + "/" +
          Twine(c.numKvHeads) + " of " + Twine(c.headDim) + ", " +
          Twine(c.numExperts) + " experts of FFN size " +
          Twine(c.expertFfnSize) + ", vocabulary " + Twine(c.vocabSize) + ")");
  }
  return c;
}

//===----------------------------------------------------------------------===//
// Hugging Face
//===----------------------------------------------------------------------===//

bool moec::model::isExpertBank(TensorRole::Kind kind) {
  return kind == TensorRole::ExpertGate || kind == TensorRole::ExpertUp ||
         kind == TensorRole::ExpertDown;
}

std::string moec::model::getExpertSliceName(StringRef bankName,
                                            int64_t expert) {
  StringRef stem = bankName;
  stem.consume_back(".weight");
  return (stem + "." + Twine(expert) + ".weight").str();
}

std::string moec::model::getHfTensorName(const ModelConfig &c,
                                         const TensorRole &role,
                                         int64_t expert) {
  using K = TensorRole::Kind;
  const FamilyInfo &f = *c.family;
  std::string layer = "model.layers." + std::to_string(role.layer) + ".";
  std::string moe = layer + f.hfMoeBlock.str() + ".";
  std::string e = moe + "experts." + std::to_string(expert) + ".";
  switch (role.kind) {
  case K::TokenEmbedding:
    return "model.embed_tokens.weight";
  case K::OutputNorm:
    return "model.norm.weight";
  case K::Output:
    return "lm_head.weight";
  case K::AttnNorm:
    return layer + "input_layernorm.weight";
  case K::AttnQ:
    return layer + "self_attn.q_proj.weight";
  case K::AttnK:
    return layer + "self_attn.k_proj.weight";
  case K::AttnV:
    return layer + "self_attn.v_proj.weight";
  case K::AttnQBias:
    return layer + "self_attn.q_proj.bias";
  case K::AttnKBias:
    return layer + "self_attn.k_proj.bias";
  case K::AttnVBias:
    return layer + "self_attn.v_proj.bias";
  case K::AttnOutput:
    return layer + "self_attn.o_proj.weight";
  case K::AttnQNorm:
    return layer + "self_attn.q_norm.weight";
  case K::AttnKNorm:
    return layer + "self_attn.k_norm.weight";
  case K::FfnNorm:
    return layer + "post_attention_layernorm.weight";
  case K::Router:
    return moe + "gate.weight";
  case K::ExpertGate:
    return e + f.hfExpertGate.str() + ".weight";
  case K::ExpertUp:
    return e + f.hfExpertUp.str() + ".weight";
  case K::ExpertDown:
    return e + f.hfExpertDown.str() + ".weight";
  case K::SharedGate:
    return moe + "shared_expert.gate_proj.weight";
  case K::SharedUp:
    return moe + "shared_expert.up_proj.weight";
  case K::SharedDown:
    return moe + "shared_expert.down_proj.weight";
  case K::SharedInputGate:
    return moe + "shared_expert_gate.weight";
  }
  llvm_unreachable("every role has a name");
}

Expected<ModelConfig> moec::model::readHfConfig(const json::Object &json,
                                                StringRef source) {
  auto fail = [&](const Twine &message) -> Error {
    return createStringError(inconvertibleErrorCode(),
                             source + ": " + message);
  };
  std::optional<StringRef> type = json.getString("model_type");
  if (!type)
    return fail("missing string 'model_type'");
  ModelConfig c;
  for (const FamilyInfo &info : kFamilies)
    if (info.hfModelType == *type)
      c.family = &info;
  if (!c.family) {
    std::string known;
    for (const FamilyInfo &info : kFamilies)
      known += (known.empty() ? "" : ", ") + info.hfModelType.str();
    return fail("model_type '" + *type +
                "' is not supported (supported: " + known + ")");
  }
  const FamilyInfo &f = *c.family;
  auto integer = [&](StringRef key, int64_t &out, bool required) -> Error {
    const json::Value *v = json.get(key);
    if (!v || v->kind() == json::Value::Null) {
      if (required)
        return fail("missing integer '" + key + "'");
      return Error::success();
    }
    std::optional<int64_t> i = v->getAsInteger();
    if (!i || *i < 0 || *i > INT32_MAX)
      return fail("'" + key + "' must be a non-negative integer");
    out = *i;
    return Error::success();
  };
  auto number = [&](StringRef key, double &out) -> Error {
    const json::Value *v = json.get(key);
    if (!v || v->kind() == json::Value::Null)
      return Error::success();
    std::optional<double> d = v->getAsNumber();
    if (!d)
      return fail("'" + key + "' must be a number");
    out = *d;
    return Error::success();
  };
  auto boolean = [&](StringRef key, bool &out) -> Error {
    const json::Value *v = json.get(key);
    if (!v || v->kind() == json::Value::Null)
      return Error::success();
    std::optional<bool> b = v->getAsBoolean();
    if (!b)
      return fail("'" + key + "' must be true or false");
    out = *b;
    return Error::success();
  };
  if (Error e = integer("vocab_size", c.vocabSize, true))
    return std::move(e);
  if (Error e = integer("hidden_size", c.hiddenSize, true))
    return std::move(e);
  if (Error e = integer("num_hidden_layers", c.numLayers, true))
    return std::move(e);
  if (Error e = integer("num_attention_heads", c.numHeads, true))
    return std::move(e);
  // A missing num_key_value_heads takes the transformers class default; an
  // explicit null means one KV head per attention head.
  c.numKvHeads = f.hfDefaultKvHeads && !json.get("num_key_value_heads")
                     ? f.hfDefaultKvHeads
                     : c.numHeads;
  if (Error e = integer("num_key_value_heads", c.numKvHeads, false))
    return std::move(e);
  if (c.numHeads > 0)
    c.headDim = c.hiddenSize / c.numHeads;
  if (Error e = integer("head_dim", c.headDim, false))
    return std::move(e);
  // Published checkpoints and transformers 5 spell some keys differently:
  // accept the family's key or the other one.
  StringRef expertKey = f.hfExpertCountKey;
  if (!json.get(expertKey))
    expertKey = expertKey == "num_experts" ? "num_local_experts" : "num_experts";
  if (Error e = integer(expertKey, c.numExperts, true))
    return std::move(e);
  if (Error e = integer("num_experts_per_tok", c.numExpertsUsed, true))
    return std::move(e);
  if (Error e = integer(f.hfExpertFfnKey, c.expertFfnSize, true))
    return std::move(e);
  if (f.sharedExpert)
    if (Error e = integer("shared_expert_intermediate_size",
                          c.sharedExpertFfnSize, true))
      return std::move(e);
  if (Error e = integer("max_position_embeddings", c.contextLength, false))
    return std::move(e);
  c.rmsNormEps = f.hfDefaultRmsEps;
  c.ropeTheta = f.hfDefaultRopeTheta;
  if (Error e = number("rms_norm_eps", c.rmsNormEps))
    return std::move(e);
  if (Error e = number("rope_theta", c.ropeTheta))
    return std::move(e);
  // transformers 5 writes {"rope_parameters": {"rope_theta", "rope_type"}}.
  if (const json::Object *rope = json.getObject("rope_parameters")) {
    if (std::optional<double> theta = rope->getNumber("rope_theta"))
      c.ropeTheta = *theta;
    std::optional<StringRef> kind = rope->getString("rope_type");
    if (kind && *kind != "default")
      return fail("rope_parameters.rope_type is '" + *kind +
                  "': scaled RoPE is not supported");
  }
  c.normTopK = f.hfDefaultNormTopK;
  if (Error e = boolean("norm_topk_prob", c.normTopK))
    return std::move(e);
  if (f.hfAlwaysNormTopK)
    c.normTopK = true;
  if (Error e = boolean("tie_word_embeddings", c.tiedEmbeddings))
    return std::move(e);
  c.rope = f.hfRope;

  // Configurations moec does not compile yet are refused, not misread.
  int64_t sparseStep = 1;
  if (Error e = integer("decoder_sparse_step", sparseStep, false))
    return std::move(e);
  if (sparseStep != 1)
    return fail("decoder_sparse_step " + Twine(sparseStep) +
                ": dense FFN layers between MoE layers are not supported");
  if (const json::Array *dense = json.getArray("mlp_only_layers"))
    if (!dense->empty())
      return fail("mlp_only_layers is not empty: dense FFN layers are not "
                  "supported");
  if (const json::Value *clip = json.get("clip_qkv"))
    if (clip->kind() != json::Value::Null)
      return fail("clip_qkv is set: clipping Q/K/V is not supported");
  if (const json::Value *scaling = json.get("rope_scaling"))
    if (scaling->kind() != json::Value::Null)
      return fail("rope_scaling is set: scaled RoPE is not supported");
  if (const json::Value *window = json.get("sliding_window"))
    if (window->kind() != json::Value::Null) {
      // Qwen's configs switch the window with use_sliding_window (default
      // false); Mixtral's window applies whenever it is set.
      bool used = f.family == Family::Mixtral;
      if (Error e = boolean("use_sliding_window", used))
        return std::move(e);
      if (used)
        return fail("sliding_window is set and used: sliding-window "
                    "attention is not supported");
    }
  bool attentionBias = false;
  if (Error e = boolean("attention_bias", attentionBias))
    return std::move(e);
  if (attentionBias && !f.qkvBias)
    return fail("attention_bias is true: attention projection biases are "
                "not supported for " + f.name);
  if (std::optional<StringRef> act = json.getString("hidden_act"))
    if (*act != "silu")
      return fail("hidden_act is '" + *act +
                  "': only SwiGLU experts (silu) are supported");
  if (Error e = c.validate(source))
    return std::move(e);
  return c;
}

void moec::model::writeGgufConfig(const ModelConfig &c, StringRef name,
                                  gguf::GgufWriter &writer) {
  std::string p = c.family->ggufArch.str() + ".";
  auto u32 = [&](StringRef key, int64_t v) {
    writer.setMetadata(p + key.str(),
                       gguf::WriteValue::u32(static_cast<uint32_t>(v)));
  };
  writer.setMetadata("general.architecture",
                     gguf::WriteValue::str(c.family->ggufArch.str()));
  writer.setMetadata("general.name", gguf::WriteValue::str(name.str()));
  u32("context_length", c.contextLength);
  u32("embedding_length", c.hiddenSize);
  u32("block_count", c.numLayers);
  u32("feed_forward_length", c.expertFfnSize);
  u32("expert_feed_forward_length", c.expertFfnSize);
  if (c.family->sharedExpert)
    u32("expert_shared_feed_forward_length", c.sharedExpertFfnSize);
  u32("attention.head_count", c.numHeads);
  u32("attention.head_count_kv", c.numKvHeads);
  u32("attention.key_length", c.headDim);
  u32("attention.value_length", c.headDim);
  u32("expert_count", c.numExperts);
  u32("expert_used_count", c.numExpertsUsed);
  u32("vocab_size", c.vocabSize);
  writer.setMetadata(p + "attention.layer_norm_rms_epsilon",
                     gguf::WriteValue::f32(static_cast<float>(c.rmsNormEps)));
  writer.setMetadata(p + "rope.freq_base",
                     gguf::WriteValue::f32(static_cast<float>(c.ropeTheta)));
  writer.setMetadata(p + "expert_weights_norm",
                     gguf::WriteValue::boolean(c.normTopK));
}
