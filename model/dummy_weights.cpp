#include "model/dummy_weights.hpp"

#include <cmath>
#include <cstddef>
#include <initializer_list>

#include "model/counter_rng.hpp"

namespace kvserve {
namespace {

constexpr float kInitStd = 0.02f;

/// Each tensor gets its own stream so that adding a tensor never shifts the others' values.
class tensor_filler {
 public:
  explicit tensor_filler(std::uint64_t seed) : seed_(seed) {}

  tensor_f32 normal(std::initializer_list<std::int64_t> shape) {
    tensor_f32 t = make(shape);
    const std::uint64_t stream = next_stream_++;
    // Box-Muller over pairs of counter-based uniforms: reproducible and independent of order.
    for (std::size_t i = 0; i < t.data.size(); i += 2) {
      const std::uint64_t pair = i / 2;
      const double u1 =
          (static_cast<double>(counter_random_bits(seed_, pair, stream * 2) >> 11) + 0.5) *
          (1.0 / 9007199254740992.0);
      const double u2 =
          static_cast<double>(counter_random_bits(seed_, pair, stream * 2 + 1) >> 11) *
          (1.0 / 9007199254740992.0);
      const double r = std::sqrt(-2.0 * std::log(u1));
      const double theta = 6.283185307179586 * u2;
      t.data[i] = static_cast<float>(r * std::cos(theta)) * kInitStd;
      if (i + 1 < t.data.size()) t.data[i + 1] = static_cast<float>(r * std::sin(theta)) * kInitStd;
    }
    return t;
  }

  tensor_f32 ones(std::initializer_list<std::int64_t> shape) {
    tensor_f32 t = make(shape);
    ++next_stream_;
    for (float& v : t.data) v = 1.0f;
    return t;
  }

 private:
  static tensor_f32 make(std::initializer_list<std::int64_t> shape) {
    tensor_f32 t;
    t.shape.assign(shape);
    std::int64_t n = 1;
    for (std::int64_t d : shape) n *= d > 0 ? d : 0;
    t.data.resize(static_cast<std::size_t>(n));
    return t;
  }

  std::uint64_t seed_;
  std::uint64_t next_stream_ = 1;
};

}  // namespace

model_weights make_dummy_weights(const model_config& config, std::uint64_t seed) {
  tensor_filler fill(seed);
  const std::int64_t hidden = config.hidden_size;
  const std::int64_t inter = config.intermediate_size;
  const std::int64_t q = config.q_size();
  const std::int64_t kv = config.kv_size();
  const std::int64_t vocab = config.vocab_size;

  model_weights w;
  w.token_embedding = fill.normal({vocab, hidden});
  w.layers.resize(static_cast<std::size_t>(config.num_layers > 0 ? config.num_layers : 0));
  for (layer_weights& l : w.layers) {
    l.attn_norm = fill.ones({hidden});
    l.wq = fill.normal({q, hidden});
    l.wk = fill.normal({kv, hidden});
    l.wv = fill.normal({kv, hidden});
    if (config.attention_bias) {
      l.bq = fill.normal({q});
      l.bk = fill.normal({kv});
      l.bv = fill.normal({kv});
    }
    l.wo = fill.normal({hidden, q});
    l.ffn_norm = fill.ones({hidden});
    l.w_gate = fill.normal({inter, hidden});
    l.w_up = fill.normal({inter, hidden});
    l.w_down = fill.normal({hidden, inter});
  }
  w.final_norm = fill.ones({hidden});
  if (!config.tie_word_embeddings) w.lm_head = fill.normal({vocab, hidden});
  return w;
}

}  // namespace kvserve
