#include "model/dummy_weights.hpp"

#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <thread>

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
    // An Irwin-Hall sum of four 16-bit uniforms from one counter-based draw per element:
    // close to normal (bounded at 3.46 std), cheap enough for 100M-parameter models, and
    // each element depends only on (seed, tensor, index), so threads may split the work.
    const std::size_t n = t.data.size();
    float* out = t.data.data();
    const std::uint64_t seed = seed_;
    auto fill_range = [out, seed, stream](std::size_t begin, std::size_t end) {
      constexpr float kScale = kInitStd * 1.7320508f / 65536.0f;  // sqrt(3): std of the sum
      for (std::size_t i = begin; i < end; ++i) {
        const std::uint64_t r = counter_random_bits(seed, i, stream);
        const auto sum = static_cast<std::int64_t>((r & 0xFFFF) + ((r >> 16) & 0xFFFF) +
                                                   ((r >> 32) & 0xFFFF) + (r >> 48));
        out[i] = static_cast<float>(2 * sum + 4 - 4 * 65536) * 0.5f * kScale;
      }
    };
    if (n < (1u << 16)) {
      fill_range(0, n);
    } else {
      std::thread helper(fill_range, n / 2, n);
      fill_range(0, n / 2);
      helper.join();
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
