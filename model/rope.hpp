#pragma once
/// Rotary position embedding as Hugging Face computes it: `rotate_half` pairs element i with
/// i + head_dim/2, inverse frequencies theta^(-2i/d) in fp32 (optionally scaled: linear or
/// Llama 3's "llama3" rule), angles position * inv_freq rounded to fp32.

#include <vector>

#include "model/model_config.hpp"

namespace kvserve {

class rotary_embedding {
 public:
  explicit rotary_embedding(const model_config& config);

  int head_dim() const { return head_dim_; }
  const std::vector<float>& inv_freq() const { return inv_freq_; }

  /// cos and sin of the angles at `position`: head_dim/2 values each.
  void cos_sin(int position, float* cos_out, float* sin_out) const;

  /// Rotates one head of `head_dim` floats in place with the tables of cos_sin.
  void apply(float* head, const float* cos_table, const float* sin_table) const;

 private:
  int head_dim_ = 0;
  std::vector<float> inv_freq_;  // [head_dim / 2]
};

}  // namespace kvserve
