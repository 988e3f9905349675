#include "model/chat_template.hpp"

#include <utility>

namespace kvserve {
namespace {

/// Jinja's `trim` / Python's `strip()`: leading and trailing whitespace removed.
std::string strip(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const std::size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return {};
  const std::size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

/// The literal default system prompt of a ChatML template: the text of the first string
/// literal '<|im_start|>system\n...<|im_end|>' that contains no expression.
std::optional<std::string> chatml_default_system(std::string_view jinja) {
  for (std::string_view head :
       {std::string_view("<|im_start|>system\n"), std::string_view("<|im_start|>system\\n")}) {
    std::size_t pos = 0;
    while ((pos = jinja.find(head, pos)) != std::string_view::npos) {
      const std::size_t start = pos + head.size();
      const std::size_t end = jinja.find("<|im_end|>", start);
      if (end == std::string_view::npos) break;
      std::string_view body = jinja.substr(start, end - start);
      pos = start;
      if (body.find_first_of("'\"+{}") != std::string_view::npos) continue;
      std::string out;
      for (std::size_t i = 0; i < body.size(); ++i) {
        if (body[i] == '\\' && i + 1 < body.size()) {
          const char c = body[++i];
          out.push_back(c == 'n' ? '\n' : c == 't' ? '\t' : c);
        } else {
          out.push_back(body[i]);
        }
      }
      return out;
    }
  }
  return std::nullopt;
}

}  // namespace

const char* to_string(chat_template_family family) {
  switch (family) {
    case chat_template_family::kChatMl:
      return "chatml";
    case chat_template_family::kLlama3:
      return "llama3";
    case chat_template_family::kLlama2:
      return "llama2";
  }
  return "unknown";
}

chat_template::chat_template(chat_template_family family, std::optional<std::string> default_system,
                             std::string bos, std::string eos)
    : family_(family),
      default_system_(std::move(default_system)),
      bos_(std::move(bos)),
      eos_(std::move(eos)) {}

result<chat_template> chat_template::from_jinja(std::string_view jinja, std::string bos,
                                                std::string eos) {
  if (jinja.empty()) {
    return chat_template(chat_template_family::kChatMl, std::nullopt, std::move(bos),
                         std::move(eos));
  }
  if (jinja.find("<|im_start|>") != std::string_view::npos) {
    return chat_template(chat_template_family::kChatMl, chatml_default_system(jinja),
                         std::move(bos), std::move(eos));
  }
  if (jinja.find("<|start_header_id|>") != std::string_view::npos) {
    std::optional<std::string> system;
    // Llama 3.1 and later always write a system turn that starts with the knowledge date.
    if (jinja.find("Cutting Knowledge Date") != std::string_view::npos) {
      system = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";
    }
    return chat_template(chat_template_family::kLlama3, std::move(system), std::move(bos),
                         std::move(eos));
  }
  if (jinja.find("[INST]") != std::string_view::npos) {
    return chat_template(chat_template_family::kLlama2, std::nullopt, std::move(bos),
                         std::move(eos));
  }
  return status(status_code::kUnsupported,
                "chat template of an unknown family (kvserve knows ChatML, Llama 3, Llama 2)");
}

std::string chat_template::apply(const std::vector<chat_message>& messages,
                                 bool add_generation_prompt) const {
  switch (family_) {
    case chat_template_family::kChatMl:
      return apply_chatml(messages, add_generation_prompt);
    case chat_template_family::kLlama3:
      return apply_llama3(messages, add_generation_prompt);
    case chat_template_family::kLlama2:
      return apply_llama2(messages, add_generation_prompt);
  }
  return {};
}

// SmolLM2 / Qwen2: a default system turn before the first message when none is given.
std::string chat_template::apply_chatml(const std::vector<chat_message>& messages, bool gen) const {
  std::string out;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (i == 0 && messages[0].role != "system" && default_system_) {
      out += "<|im_start|>system\n" + *default_system_ + "<|im_end|>\n";
    }
    out += "<|im_start|>" + messages[i].role + "\n" + messages[i].content + "<|im_end|>\n";
  }
  if (gen) out += "<|im_start|>assistant\n";
  return out;
}

// Llama 3: BOS, then header + trimmed content + <|eot_id|> per turn. Llama 3.1's template
// (default_system set) folds a leading system message into its dated system turn.
std::string chat_template::apply_llama3(const std::vector<chat_message>& messages, bool gen) const {
  std::string out;
  std::size_t first = 0;
  if (default_system_) {
    std::string system;
    if (!messages.empty() && messages[0].role == "system") {
      system = strip(messages[0].content);
      first = 1;
    }
    out += bos_ + "<|start_header_id|>system<|end_header_id|>\n\n" + *default_system_ + system +
           "<|eot_id|>";
  } else if (!messages.empty()) {
    out += bos_;
  }
  for (std::size_t i = first; i < messages.size(); ++i) {
    out += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n" +
           strip(messages[i].content) + "<|eot_id|>";
  }
  if (gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// Llama 2: the system message goes inside the first [INST] between <<SYS>> markers.
std::string chat_template::apply_llama2(const std::vector<chat_message>& messages,
                                        bool /*gen*/) const {
  std::string out;
  std::size_t first = 0;
  std::optional<std::string> system;
  if (!messages.empty() && messages[0].role == "system") {
    system = messages[0].content;
    first = 1;
  }
  for (std::size_t i = first; i < messages.size(); ++i) {
    std::string content = messages[i].content;
    if (i == first && system) content = "<<SYS>>\n" + *system + "\n<</SYS>>\n\n" + content;
    if (messages[i].role == "user") {
      out += bos_ + "[INST] " + strip(content) + " [/INST]";
    } else if (messages[i].role == "assistant") {
      out += ' ';  // appended piecewise: GCC 12 warns falsely on a chain of + here
      out += strip(content);
      out += ' ';
      out += eos_;
    }
  }
  return out;
}

}  // namespace kvserve
