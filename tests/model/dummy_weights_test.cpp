#include "model/dummy_weights.hpp"

#include <gtest/gtest.h>

#include <cmath>

namespace kvserve {
namespace {

model_config small_config() {
  model_config c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  return c;
}

TEST(DummyWeights, ShapesFollowConfig) {
  model_config c = small_config();
  c.attention_bias = true;
  model_weights w = make_dummy_weights(c, 1);
  EXPECT_EQ(w.token_embedding.shape, (std::vector<std::int64_t>{64, 32}));
  ASSERT_EQ(w.layers.size(), 2u);
  EXPECT_EQ(w.layers[0].wq.shape, (std::vector<std::int64_t>{32, 32}));
  EXPECT_EQ(w.layers[0].wk.shape, (std::vector<std::int64_t>{16, 32}));
  EXPECT_EQ(w.layers[0].wv.numel(), 16u * 32u);
  EXPECT_EQ(w.layers[0].bk.numel(), 16u);
  EXPECT_EQ(w.layers[1].wo.shape, (std::vector<std::int64_t>{32, 32}));
  EXPECT_EQ(w.layers[1].w_gate.shape, (std::vector<std::int64_t>{48, 32}));
  EXPECT_EQ(w.layers[1].w_down.shape, (std::vector<std::int64_t>{32, 48}));
  EXPECT_EQ(w.lm_head.shape, (std::vector<std::int64_t>{64, 32}));
  for (float v : w.final_norm.data) EXPECT_EQ(v, 1.0f);
}

TEST(DummyWeights, TiedHasNoLmHeadAndNoBiasByDefault) {
  model_config c = small_config();
  c.tie_word_embeddings = true;
  model_weights w = make_dummy_weights(c, 1);
  EXPECT_TRUE(w.lm_head.empty());
  EXPECT_TRUE(w.layers[0].bq.empty());
  EXPECT_EQ(&w.output_matrix(), &w.token_embedding);
}

TEST(DummyWeights, DeterministicAndSeedDependent) {
  model_config c = small_config();
  model_weights a = make_dummy_weights(c, 7);
  model_weights b = make_dummy_weights(c, 7);
  model_weights d = make_dummy_weights(c, 8);
  EXPECT_EQ(a.layers[1].w_up.data, b.layers[1].w_up.data);
  EXPECT_NE(a.layers[1].w_up.data, d.layers[1].w_up.data);
  EXPECT_NE(a.layers[0].wq.data, a.layers[1].wq.data);
}

TEST(DummyWeights, NormalWithSmallStd) {
  model_config c = small_config();
  c.vocab_size = 1000;
  model_weights w = make_dummy_weights(c, 3);
  double sum = 0, sq = 0;
  for (float v : w.token_embedding.data) {
    ASSERT_TRUE(std::isfinite(v));
    sum += v;
    sq += double(v) * v;
  }
  const double n = static_cast<double>(w.token_embedding.numel());
  const double mean = sum / n;
  const double std = std::sqrt(sq / n - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.001);
  EXPECT_NEAR(std, 0.02, 0.001);
}

}  // namespace
}  // namespace kvserve
