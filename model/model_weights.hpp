#pragma once
/// Host-side fp32 weights of a Llama-family model, in Hugging Face's layout: matrices are
/// [out_features, in_features] row-major; Q and K rows are ordered for `rotate_half` RoPE.
/// Loaders (GGUF, safetensors, dummy) produce this; backends consume it.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvserve {

/// A dense, row-major fp32 tensor.
struct tensor_f32 {
  std::vector<std::int64_t> shape;
  std::vector<float> data;

  bool empty() const { return data.empty(); }
  std::size_t numel() const { return data.size(); }
};

struct layer_weights {
  tensor_f32 attn_norm;  ///< [hidden]
  tensor_f32 wq;         ///< [num_heads * head_dim, hidden]
  tensor_f32 wk;         ///< [num_kv_heads * head_dim, hidden]
  tensor_f32 wv;         ///< [num_kv_heads * head_dim, hidden]
  tensor_f32 bq;         ///< [num_heads * head_dim], empty unless attention_bias
  tensor_f32 bk;         ///< [num_kv_heads * head_dim], empty unless attention_bias
  tensor_f32 bv;         ///< [num_kv_heads * head_dim], empty unless attention_bias
  tensor_f32 wo;         ///< [hidden, num_heads * head_dim]
  tensor_f32 ffn_norm;   ///< [hidden]
  tensor_f32 w_gate;     ///< [intermediate, hidden]
  tensor_f32 w_up;       ///< [intermediate, hidden]
  tensor_f32 w_down;     ///< [hidden, intermediate]
};

struct model_weights {
  tensor_f32 token_embedding;  ///< [vocab, hidden]
  std::vector<layer_weights> layers;
  tensor_f32 final_norm;  ///< [hidden]
  tensor_f32 lm_head;     ///< [vocab, hidden]; empty when tie_word_embeddings

  /// The LM head matrix: lm_head, or the embedding when tied.
  const tensor_f32& output_matrix() const { return lm_head.empty() ? token_embedding : lm_head; }
};

}  // namespace kvserve
