#include "model/rope.hpp"

#include <cmath>
#include <numbers>

namespace kvserve {

rotary_embedding::rotary_embedding(const model_config& config) : head_dim_(config.head_dim) {
  const int half = head_dim_ / 2;
  inv_freq_.resize(half);
  for (int i = 0; i < half; ++i) {
    float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim_);
    float base = static_cast<float>(std::pow(static_cast<double>(config.rope_theta), exponent));
    inv_freq_[i] = 1.0f / base;
  }
  const auto& s = config.rope_scaling;
  if (s.type == rope_scaling_config::kind::kLinear && s.factor > 0.0f) {
    for (float& f : inv_freq_) f /= s.factor;
  } else if (s.type == rope_scaling_config::kind::kLlama3) {
    // transformers' _compute_llama3_parameters: long wavelengths are divided by `factor`,
    // short ones kept, the band between interpolated smoothly.
    const float old_len = static_cast<float>(s.original_max_position_embeddings);
    const float low_freq_wavelen = old_len / s.low_freq_factor;
    const float high_freq_wavelen = old_len / s.high_freq_factor;
    for (float& f : inv_freq_) {
      const float wavelen = 2.0f * std::numbers::pi_v<float> / f;
      float scaled = wavelen > low_freq_wavelen ? f / s.factor : f;
      if (!(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen)) {
        float smooth =
            (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        scaled = (1.0f - smooth) * scaled / s.factor + smooth * scaled;
      }
      f = scaled;
    }
  }
}

void rotary_embedding::cos_sin(int position, float* cos_out, float* sin_out) const {
  const float pos = static_cast<float>(position);
  for (std::size_t i = 0; i < inv_freq_.size(); ++i) {
    const float angle = pos * inv_freq_[i];  // fp32, as HF's inv_freq @ position_ids
    cos_out[i] = static_cast<float>(std::cos(static_cast<double>(angle)));
    sin_out[i] = static_cast<float>(std::sin(static_cast<double>(angle)));
  }
}

void rotary_embedding::apply(float* head, const float* cos_table, const float* sin_table) const {
  const int half = head_dim_ / 2;
  for (int i = 0; i < half; ++i) {
    const float x1 = head[i];
    const float x2 = head[i + half];
    head[i] = x1 * cos_table[i] - x2 * sin_table[i];
    head[i + half] = x2 * cos_table[i] + x1 * sin_table[i];
  }
}

}  // namespace kvserve
