//===- Vocabulary.cpp - A GGUF file's tokenizer metadata ------------------===//

#include "compiler/import/Vocabulary.h"

using namespace llvm;

namespace moec::importer {

bool hasVocabulary(const gguf::GgufFile &file) {
  return file.lookup("tokenizer.ggml.model") != nullptr;
}

/// The tokenizer.ggml.* metadata of `file` as the runtime's vocabulary.
Expected<tokenizer::Vocabulary> readVocabulary(const gguf::GgufFile &file) {
  tokenizer::Vocabulary v;
  Expected<StringRef> model = file.getString("tokenizer.ggml.model");
  if (!model)
    return model.takeError();
  v.model = model->str();
  if (const gguf::Value *pre = file.lookup("tokenizer.ggml.pre"))
    if (std::optional<StringRef> s = pre->getAsString())
      v.preTokenizer = s->str();
  auto array = [&](StringRef key, gguf::ValueType element,
                   bool required) -> Expected<std::vector<gguf::Value>> {
    const gguf::Value *value = file.lookup(key);
    if (!value) {
      if (required)
        return file.makeError("missing metadata key '" + key + "'");
      return std::vector<gguf::Value>();
    }
    if (value->getType() != gguf::ValueType::Array ||
        value->getArrayElementType() != element)
      return file.makeError("metadata key '" + key + "' is " +
                            value->describe() + ", expected an array of " +
                            gguf::getValueTypeName(element));
    return value->getArrayElements();
  };
  Expected<std::vector<gguf::Value>> tokens =
      array("tokenizer.ggml.tokens", gguf::ValueType::String, true);
  if (!tokens)
    return tokens.takeError();
  for (const gguf::Value &t : *tokens)
    v.tokens.push_back(t.getAsString()->str());
  Expected<std::vector<gguf::Value>> scores =
      array("tokenizer.ggml.scores", gguf::ValueType::Float32, false);
  if (!scores)
    return scores.takeError();
  for (const gguf::Value &s : *scores)
    v.scores.push_back(static_cast<float>(*s.getAsDouble()));
  Expected<std::vector<gguf::Value>> types =
      array("tokenizer.ggml.token_type", gguf::ValueType::Int32, false);
  if (!types)
    return types.takeError();
  for (const gguf::Value &t : *types)
    v.types.push_back(static_cast<tokenizer::TokenType>(*t.getAsSigned()));
  Expected<std::vector<gguf::Value>> merges =
      array("tokenizer.ggml.merges", gguf::ValueType::String, false);
  if (!merges)
    return merges.takeError();
  for (const gguf::Value &m : *merges)
    v.merges.push_back(m.getAsString()->str());
  for (auto [key, field] :
       {std::pair<const char *, int32_t *>{"tokenizer.ggml.bos_token_id", &v.bos},
        {"tokenizer.ggml.eos_token_id", &v.eos},
        {"tokenizer.ggml.eot_token_id", &v.eot},
        {"tokenizer.ggml.unknown_token_id", &v.unknown},
        {"tokenizer.ggml.padding_token_id", &v.padding}})
    if (file.lookup(key)) {
      Expected<uint64_t> id = file.getUnsigned(key);
      if (!id)
        return id.takeError();
      if (*id >= v.tokens.size())
        return file.makeError(Twine(key) + " is " + Twine(*id) +
                              ", beyond the " + Twine(v.tokens.size()) +
                              " tokens");
      *field = static_cast<int32_t>(*id);
    }
  // llama.cpp's defaults: SentencePiece adds BOS, BPE does not.
  v.addBos = v.model == "llama";
  for (auto [key, field] :
       {std::pair<const char *, bool *>{"tokenizer.ggml.add_space_prefix",
                                        &v.addSpacePrefix},
        {"tokenizer.ggml.add_bos_token", &v.addBos},
        {"tokenizer.ggml.add_eos_token", &v.addEos}})
    if (file.lookup(key)) {
      Expected<bool> flag = file.getBool(key);
      if (!flag)
        return flag.takeError();
      *field = *flag;
    }
  if (const gguf::Value *chat = file.lookup("tokenizer.chat_template"))
    if (std::optional<StringRef> s = chat->getAsString())
      v.chatTemplate = s->str();
  return v;
}

std::string getBundleVocabulary(const model::WeightStore &store,
                                std::string &note) {
  const gguf::GgufFile *file = store.getGguf();
  if (!file) {
    note = "the model's tokenizer is not read from checkpoint directories "
           "yet: model-run takes --prompt-ids only";
    return "";
  }
  if (!hasVocabulary(*file)) {
    note = "the GGUF file has no tokenizer: model-run takes --prompt-ids only";
    return "";
  }
  Expected<tokenizer::Vocabulary> vocabulary = readVocabulary(*file);
  if (!vocabulary) {
    note = "the tokenizer metadata is unusable (" +
           toString(vocabulary.takeError()) +
           "): model-run takes --prompt-ids only";
    return "";
  }
  std::string error;
  tokenizer::Vocabulary copy = *vocabulary;
  if (!tokenizer::Tokenizer::create(std::move(copy), error)) {
    note = "the tokenizer cannot run: " + error +
           "; model-run takes --prompt-ids only";
    return "";
  }
  return vocabulary->serialize();
}

} // namespace moec::importer
