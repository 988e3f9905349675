#pragma once
// Small random Llama-family models and step-running helpers shared by the CPU backend tests.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "model/cpu_backend.hpp"
#include "model/dummy_weights.hpp"

namespace kvserve::cpu_test {

inline model_config gqa_config() {
  model_config c;
  c.name = "tiny-gqa";
  c.vocab_size = 96;
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.max_position_embeddings = 256;
  c.tie_word_embeddings = true;
  return c;
}

// MQA, untied head, QKV bias, Llama-3 rope scaling.
inline model_config mqa_config() {
  model_config c = gqa_config();
  c.name = "tiny-mqa";
  c.num_kv_heads = 1;
  c.tie_word_embeddings = false;
  c.attention_bias = true;
  c.rope_theta = 500000.0f;
  c.rope_scaling.type = rope_scaling_config::kind::kLlama3;
  c.rope_scaling.factor = 8.0f;
  c.rope_scaling.original_max_position_embeddings = 64;
  return c;
}

// Sizes that are not multiples of the 8-float vector width, and q_size != hidden.
inline model_config odd_config() {
  model_config c;
  c.name = "tiny-odd";
  c.vocab_size = 70;
  c.hidden_size = 60;
  c.intermediate_size = 90;
  c.num_layers = 3;
  c.num_heads = 3;
  c.num_kv_heads = 3;
  c.head_dim = 12;
  c.max_position_embeddings = 256;
  c.rope_scaling.type = rope_scaling_config::kind::kLinear;
  c.rope_scaling.factor = 2.0f;
  return c;
}

// Dummy weights with larger attention projections (so attention patterns are far from uniform
// and RoPE matters) and norm weights that are not all ones.
inline model_weights test_weights(const model_config& c, std::uint64_t seed) {
  model_weights w = make_dummy_weights(c, seed);
  auto scale = [](tensor_f32& t, float f) {
    for (float& v : t.data) v *= f;
  };
  auto vary = [](tensor_f32& t, int salt) {
    for (std::size_t i = 0; i < t.data.size(); ++i) {
      t.data[i] = 1.0f + 0.25f * std::sin(static_cast<float>(i * 7 + salt));
    }
  };
  int salt = 0;
  for (auto& l : w.layers) {
    scale(l.wq, 12.0f);
    scale(l.wk, 12.0f);
    scale(l.wv, 10.0f);
    scale(l.wo, 5.0f);
    scale(l.w_gate, 10.0f);
    scale(l.w_up, 10.0f);
    scale(l.w_down, 5.0f);
    scale(l.bq, 10.0f);
    scale(l.bk, 10.0f);
    vary(l.attn_norm, ++salt);
    vary(l.ffn_norm, ++salt);
  }
  vary(w.final_norm, ++salt);
  scale(w.token_embedding, 20.0f);
  scale(w.lm_head, 20.0f);
  return w;
}

inline std::unique_ptr<cpu_backend> make_backend(const model_config& c, int block_size,
                                                 int num_blocks, int threads = 2,
                                                 std::uint64_t seed = 1,
                                                 kv_cache_dtype kv_dtype = kv_cache_dtype::kAuto) {
  cpu_backend_config bc;
  bc.kv_dtype = kv_dtype;
  bc.block_size = block_size;
  bc.num_kv_blocks = num_blocks;
  bc.num_threads = threads;
  auto b = cpu_backend::create(bc, c, test_weights(c, seed));
  EXPECT_TRUE(b.is_ok()) << (b.is_ok() ? "" : b.error().message());
  return b.is_ok() ? std::move(b).value() : nullptr;
}

inline std::vector<std::int32_t> random_tokens(int n, int vocab, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::int32_t> out(n);
  for (auto& t : out) t = static_cast<std::int32_t>(rng() % vocab);
  return out;
}

// ---- helpers that run schedules -----------------------------------------------------------

inline sequence_step chunk_step(seq_id id, const std::vector<std::int32_t>& tokens, int start,
                                int len, const std::vector<std::int32_t>& table) {
  sequence_step s;
  s.id = id;
  s.tokens.assign(tokens.begin() + start, tokens.begin() + start + len);
  s.start_position = start;
  s.block_table = table;
  s.return_logits = logits_mode::kAll;
  return s;
}

// Logits of every position of `tokens`, computed alone in chunks of `chunk` tokens.
inline std::vector<std::vector<float>> run_alone(cpu_backend& b,
                                                 const std::vector<std::int32_t>& tokens, int chunk,
                                                 const std::vector<std::int32_t>& table) {
  std::vector<std::vector<float>> rows;
  const int vocab = b.config().vocab_size;
  for (int start = 0; start < static_cast<int>(tokens.size()); start += chunk) {
    const int len = std::min<int>(chunk, static_cast<int>(tokens.size()) - start);
    step_plan plan;
    plan.seqs.push_back(chunk_step(1, tokens, start, len, table));
    auto r = b.execute(plan);
    EXPECT_TRUE(r.is_ok()) << (r.is_ok() ? "" : r.error().message());
    if (!r.is_ok()) return rows;
    const auto& logits = r->seqs[0].logits;
    EXPECT_EQ(logits.size(), static_cast<std::size_t>(len) * vocab);
    for (int i = 0; i < len; ++i)
      rows.emplace_back(logits.begin() + i * vocab, logits.begin() + (i + 1) * vocab);
  }
  return rows;
}

inline std::vector<std::int32_t> iota_table(int n, int first = 0) {
  std::vector<std::int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

inline void expect_bit_identical(const std::vector<std::vector<float>>& want,
                                 const std::vector<std::vector<float>>& got,
                                 const std::string& what) {
  ASSERT_EQ(want.size(), got.size()) << what;
  for (std::size_t p = 0; p < want.size(); ++p) {
    ASSERT_EQ(want[p].size(), got[p].size()) << what;
    ASSERT_EQ(0, std::memcmp(want[p].data(), got[p].data(), want[p].size() * sizeof(float)))
        << what << ": logits differ at position " << p;
  }
}

}  // namespace kvserve::cpu_test
