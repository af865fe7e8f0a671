//===- ChatTemplate.h - Chat prompts in the model's own format --*- C++ -*-===//
//
// GGUF files carry their chat format as a Jinja template
// (tokenizer.chat_template). Like llama.cpp, moec does not run Jinja: it
// recognises the template by what it spells and formats conversations
// with the matching built-in format. Formats for the supported families:
//
//   chatml   "<|im_start|>"  Qwen2/Qwen3 (MoE included) and others
//   mistral  "[INST]"        Mixtral Instruct
//   tulu     "<|user|>"      OLMoE Instruct
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_TOKENIZER_CHATTEMPLATE_H
#define MOEC_RUNTIME_TOKENIZER_CHATTEMPLATE_H

#include <string>
#include <string_view>
#include <vector>

namespace moec::tokenizer {

enum class ChatFormat { ChatML, Mistral, Tulu };

struct ChatMessage {
  std::string role; // system, user or assistant
  std::string content;
};

/// The format of `jinja`; false with `error` (naming what the template
/// starts with, and what is supported) when moec has none for it.
bool detectChatFormat(std::string_view jinja, ChatFormat &format,
                      std::string &error);

const char *getChatFormatName(ChatFormat format);

/// The conversation as prompt text (special tokens spelled out: tokenize it
/// with special tokens parsed), ending with the assistant's turn opened
/// when `openAssistantTurn`. `bos` and `eos` are those tokens' spellings.
std::string formatChat(ChatFormat format,
                       const std::vector<ChatMessage> &messages,
                       bool openAssistantTurn, const std::string &bos,
                       const std::string &eos);

} // namespace moec::tokenizer

#endif // MOEC_RUNTIME_TOKENIZER_CHATTEMPLATE_H
