#pragma once
/// Tokenizer spec and chat template from a Hugging Face folder: tokenizer.json (byte-level BPE)
/// and tokenizer_config.json (special tokens, chat template).

#include <string>
#include <string_view>

#include "model/status.hpp"
#include "model/tokenizer.hpp"

namespace kvserve {

/// What a folder's tokenizer files say.
struct hf_tokenizer_info {
  tokenizer_spec spec;
  std::string chat_template;  ///< Jinja source, empty when the folder has none
  std::string bos_text;       ///< BOS/EOS token strings, for the chat template
  std::string eos_text;
};

/// Parses tokenizer.json (and optionally tokenizer_config.json, empty when absent). Supports
/// model type BPE with a ByteLevel pre-tokenizer, alone (GPT-2 regex), after `Digits`
/// (individual digits), or after a Split by Llama 3's or Qwen2's regex; added tokens (special
/// ones become control tokens); BOS/EOS added by a TemplateProcessing post-processor.
/// A normalizer other than none/NFC is kUnsupported; NFC is not applied (text is assumed to be
/// NFC already). `origin` names the folder in messages.
result<hf_tokenizer_info> hf_tokenizer_from_json(std::string_view tokenizer_json,
                                                 std::string_view tokenizer_config_json,
                                                 const std::string& origin);

/// Reads `<folder>/tokenizer.json` and `<folder>/tokenizer_config.json`.
result<hf_tokenizer_info> read_hf_tokenizer(const std::string& folder);

}  // namespace kvserve
