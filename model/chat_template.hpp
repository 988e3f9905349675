#pragma once
/// Chat templates for the ChatML (SmolLM2, Qwen2), Llama-3 and Llama-2 families. The family is
/// detected from the model's Jinja template string (GGUF `tokenizer.chat_template`,
/// tokenizer_config.json `chat_template`); no Jinja is interpreted, each family is written out.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/chat_message.hpp"
#include "model/status.hpp"

namespace kvserve {

enum class chat_template_family { kChatMl, kLlama3, kLlama2 };

const char* to_string(chat_template_family family);

/// Renders a conversation to the prompt text the model was trained on. The text contains the
/// special tokens written out (e.g. "<|im_start|>"); encode it with add_special_tokens=false,
/// as HF's apply_chat_template(tokenize=True) does.
class chat_template {
 public:
  /// `default_system`: the system message inserted when the conversation has none (SmolLM2's
  /// and Qwen2's templates add one); `bos`/`eos` token texts (Llama families write them).
  chat_template(chat_template_family family, std::optional<std::string> default_system = {},
                std::string bos = "", std::string eos = "");

  /// Detects the family and the default system prompt from a Jinja template string; an empty
  /// template falls back to ChatML. kUnsupported for a template of no known family.
  static result<chat_template> from_jinja(std::string_view jinja, std::string bos = "",
                                          std::string eos = "");

  chat_template_family family() const { return family_; }
  const std::optional<std::string>& default_system() const { return default_system_; }

  /// The prompt for `messages`; with `add_generation_prompt`, ends with the assistant header.
  std::string apply(const std::vector<chat_message>& messages, bool add_generation_prompt) const;

 private:
  std::string apply_chatml(const std::vector<chat_message>& messages, bool gen) const;
  std::string apply_llama3(const std::vector<chat_message>& messages, bool gen) const;
  std::string apply_llama2(const std::vector<chat_message>& messages, bool gen) const;

  chat_template_family family_;
  std::optional<std::string> default_system_;
  std::string bos_;
  std::string eos_;
};

}  // namespace kvserve
