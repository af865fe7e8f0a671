//===- ChatTemplate.cpp - Chat prompts in the model's own format ----------===//

#include "runtime/tokenizer/ChatTemplate.h"

namespace moec::tokenizer {

bool detectChatFormat(std::string_view jinja, ChatFormat &format,
                      std::string &error) {
  if (jinja.empty()) {
    error = "the model has no chat template (GGUF tokenizer.chat_template)";
    return false;
  }
  if (jinja.find("<|im_start|>") != std::string_view::npos) {
    format = ChatFormat::ChatML;
    return true;
  }
  if (jinja.find("[INST]") != std::string_view::npos) {
    format = ChatFormat::Mistral;
    return true;
  }
  if (jinja.find("<|user|>") != std::string_view::npos &&
      jinja.find("<|assistant|>") != std::string_view::npos) {
    format = ChatFormat::Tulu;
    return true;
  }
  std::string start(jinja.substr(0, 60));
  for (char &c : start)
    if (c == '\n')
      c = ' ';
  error = "the model's chat template is not supported (it begins '" + start +
          (jinja.size() > 60 ? "...'" : "'") +
          "; supported: chatml <|im_start|>, mistral [INST], tulu <|user|>)";
  return false;
}

const char *getChatFormatName(ChatFormat format) {
  switch (format) {
  case ChatFormat::ChatML: return "chatml";
  case ChatFormat::Mistral: return "mistral";
  case ChatFormat::Tulu: return "tulu";
  }
  return "?";
}

std::string formatChat(ChatFormat format,
                       const std::vector<ChatMessage> &messages,
                       bool openAssistantTurn, const std::string &bos,
                       const std::string &eos) {
  std::string out;
  switch (format) {
  case ChatFormat::ChatML:
    for (const ChatMessage &m : messages)
      out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    if (openAssistantTurn)
      out += "<|im_start|>assistant\n";
    return out;
  case ChatFormat::Mistral: {
    // Mixtral Instruct's template: a system message goes in front of the
    // first user message.
    out = bos;
    std::string system;
    for (const ChatMessage &m : messages) {
      if (m.role == "system") {
        system = m.content + "\n\n";
      } else if (m.role == "user") {
        out += "[INST] " + system + m.content + " [/INST]";
        system.clear();
      } else {
        out += m.content + eos;
      }
    }
    return out;
  }
  case ChatFormat::Tulu:
    out = bos;
    for (const ChatMessage &m : messages) {
      if (m.role == "assistant")
        out += "<|assistant|>\n" + m.content + eos + "\n";
      else
        out += "<|" + m.role + "|>\n" + m.content + "\n";
    }
    if (openAssistantTurn)
      out += "<|assistant|>\n";
    return out;
  }
  return out;
}

} // namespace moec::tokenizer
