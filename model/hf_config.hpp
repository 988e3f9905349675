#pragma once
/// Model config from a Hugging Face config.json (Llama, Mistral and Qwen2 architectures).

#include <string>
#include <string_view>

#include "model/model_config.hpp"
#include "model/status.hpp"

namespace kvserve {

/// Parses config.json text. Reads hidden/intermediate sizes, layers, heads and KV heads,
/// head_dim, max_position_embeddings, rms_norm_eps, rope_theta, rope_scaling ("linear",
/// "llama3"; "default" or null is none), tie_word_embeddings, attention_bias (always on for
/// Qwen2, whose q/k/v projections carry biases). kUnsupported for other architectures, MLP
/// biases or other rope scalings; kCorruptData for bad JSON or missing/invalid fields.
/// `origin` names the file in messages.
result<model_config> model_config_from_hf_json(std::string_view json_text,
                                               const std::string& origin);

/// Reads `<folder>/config.json`.
result<model_config> read_hf_config(const std::string& folder);

}  // namespace kvserve
