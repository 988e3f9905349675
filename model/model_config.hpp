#pragma once
/// Shapes and hyper-parameters of a Llama-family decoder (Llama 2/3, Mistral, Qwen2, SmolLM2).

#include <cstdint>
#include <string>

namespace kvserve {

/// RoPE frequency scaling. kLlama3 follows Llama 3.1's `rope_scaling` of type "llama3".
struct rope_scaling_config {
  enum class kind { kNone, kLinear, kLlama3 };
  kind type = kind::kNone;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position_embeddings = 8192;
};

/// Everything the backends need to know about a model's shapes. Weight matrices are stored
/// [out_features, in_features] row-major (Hugging Face's layout), and RoPE rotates the two
/// halves of each head (Hugging Face's `rotate_half`), whatever file the weights came from.
struct model_config {
  std::string architecture = "llama";  ///< "llama", "mistral", "qwen2", ...
  std::string name;                    ///< model name for /v1/models, from metadata or path
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;  ///< usually hidden_size / num_heads
  int max_position_embeddings = 2048;
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  rope_scaling_config rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  ///< Q, K and V projections carry a bias (Qwen2)

  int q_size() const { return num_heads * head_dim; }
  int kv_size() const { return num_kv_heads * head_dim; }
};

}  // namespace kvserve
