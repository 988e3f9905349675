#pragma once
/// Byte-level BPE tokenizer (GPT-2 family: SmolLM2, Llama 3, Qwen2), built from GGUF
/// `tokenizer.ggml.*` metadata or a Hugging Face tokenizer.json. Encodes exactly as Hugging Face
/// `tokenizers` does: special tokens written in the text are matched first, the rest is split
/// by the model's pre-tokenizer regex (PCRE2) and each piece merged by BPE rank.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/status.hpp"

namespace kvserve {

/// The pre-tokenizer regex family (GGUF `tokenizer.ggml.pre`).
enum class pretokenizer_kind {
  kGpt2,    ///< GPT-2's pattern ("gpt2", "smollm", "starcoder", ...)
  kLlama3,  ///< Llama 3's pattern ("llama-bpe", "llama3")
  kQwen2,   ///< Qwen2's pattern ("qwen2"): Llama 3's with single digits
};

/// Token kinds, with GGUF's `tokenizer.ggml.token_type` numbering.
enum class token_kind : std::int32_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,      ///< special: <|im_start|>, <|endoftext|>, ...
  kUserDefined = 4,  ///< added tokens matched in text, decoded as written
  kUnused = 5,
  kByte = 6,
};

/// Everything needed to build a tokenizer; the loaders fill it from file metadata.
struct tokenizer_spec {
  /// Token strings in the byte-to-unicode alphabet of GPT-2 (e.g. "Ġthe"), specials as written.
  std::vector<std::string> tokens;
  /// Same length as tokens, or empty (all normal).
  std::vector<token_kind> kinds;
  /// Merges in rank order, each "left right" in the same alphabet.
  std::vector<std::string> merges;
  pretokenizer_kind pretokenizer = pretokenizer_kind::kGpt2;
  /// Split every Unicode digit off on its own before the regex (HF's `Digits` pre-tokenizer
  /// with individual_digits, as SmolLM2's tokenizer.json has it).
  bool individual_digits = false;
  std::optional<std::int32_t> bos_token_id;
  std::optional<std::int32_t> eos_token_id;
  /// Stands for bytes the vocabulary lacks (consecutive ones fuse into one, as HF's BPE with
  /// fuse_unk); without it such bytes are dropped.
  std::optional<std::int32_t> unknown_token_id;
  /// End-of-turn ids (`<|im_end|>`, `<|eot_id|>`, ...); added to stop_token_ids().
  std::vector<std::int32_t> extra_stop_token_ids;
  bool add_bos = false;  ///< prepend BOS when encoding with add_special_tokens
  bool add_eos = false;  ///< append EOS when encoding with add_special_tokens
};

/// Immutable once built, so it is shared between threads as `shared_ptr<const tokenizer>`.
class tokenizer {
 public:
  /// Validates the spec (ids in range, merges made of known tokens, regex compiles).
  static result<std::shared_ptr<const tokenizer>> create(tokenizer_spec spec);
  ~tokenizer();
  tokenizer(const tokenizer&) = delete;
  tokenizer& operator=(const tokenizer&) = delete;

  /// Token ids of `text` (any bytes; invalid UTF-8 is encoded byte by byte). Special and
  /// user-defined tokens written in the text are recognised as single tokens, as HF does.
  /// With `add_special_tokens`, BOS/EOS are added as the model's metadata asks.
  std::vector<std::int32_t> encode(std::string_view text, bool add_special_tokens) const;

  /// The text of `ids`: the concatenated raw bytes of their pieces, with invalid UTF-8
  /// replaced by U+FFFD (as HF). Out-of-range ids are skipped.
  std::string decode(std::span<const std::int32_t> ids, bool skip_special_tokens) const;

  int vocab_size() const;
  std::optional<std::int32_t> bos_token_id() const;
  std::optional<std::int32_t> eos_token_id() const;
  /// EOS plus end-of-turn tokens (`<|im_end|>`, `<|eot_id|>`, `<|end_of_text|>`...), sorted.
  const std::vector<std::int32_t>& stop_token_ids() const;

  /// Raw bytes of one token (may be part of a UTF-8 character); empty for an invalid id.
  const std::string& token_piece(std::int32_t id) const;
  /// The token string as stored in the vocabulary (GPT-2 alphabet), e.g. "Ġthe".
  const std::string& token_text(std::int32_t id) const;
  /// Control and user-defined tokens; skipped by decode(..., skip_special_tokens=true)
  /// only when control.
  bool is_special(std::int32_t id) const;
  bool is_control(std::int32_t id) const;
  /// Id of a token by its vocabulary string (e.g. "<|im_end|>").
  std::optional<std::int32_t> token_to_id(std::string_view token) const;

 private:
  struct impl;
  explicit tokenizer(std::unique_ptr<impl> impl);
  std::unique_ptr<impl> impl_;
};

/// Maps a GGUF `tokenizer.ggml.pre` value to a pre-tokenizer; kUnsupported for unknown ones.
result<pretokenizer_kind> pretokenizer_from_name(std::string_view pre);

}  // namespace kvserve
