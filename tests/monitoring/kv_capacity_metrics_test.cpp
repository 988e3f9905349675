// The KV memory budget as Prometheus gauges: set from on_kv_capacity, replaced by a later
// call, and reported by a real engine when it starts.

#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <string>

#include "actors/engine.hpp"
#include "bench/kv_capacity_measure.hpp"
#include "metric_sample.hpp"
#include "model/cpu_backend.hpp"
#include "model/dummy_weights.hpp"
#include "model/kv_capacity.hpp"
#include "monitoring/prometheus_observer.hpp"

namespace kvserve {
namespace {

using testing::sample;

model_config smollm2_shapes() {
  model_config c;
  c.num_layers = 30;
  c.hidden_size = 576;
  c.num_heads = 9;
  c.num_kv_heads = 3;
  c.head_dim = 64;
  c.max_position_embeddings = 8192;
  return c;
}

TEST(kv_capacity_metrics, gauges_carry_the_budget) {
  prometheus_observer obs;
  obs.on_kv_capacity(
      compute_kv_capacity(smollm2_shapes(), kv_cache_dtype::kFp8E4m3, 16, 5000, 8192));
  const std::string text = obs.render();
  EXPECT_EQ(sample(text, "kvserve_kv_cache_bytes_per_token{dtype=\"fp8_e4m3\"}"), 12240.0);
  EXPECT_EQ(sample(text, "kvserve_kv_cache_bytes_per_token_without_gqa{dtype=\"fp8_e4m3\"}"),
            36720.0);
  EXPECT_EQ(sample(text, "kvserve_kv_cache_blocks_total"), 5000.0);
  EXPECT_EQ(sample(text, "kvserve_kv_cache_tokens_capacity"), 80000.0);
  EXPECT_EQ(sample(text, "kvserve_kv_cache_memory_bytes"), 80000.0 * 12240.0);
  EXPECT_EQ(sample(text, "kvserve_kv_cache_max_sequences{context=\"2048\"}"), 39.0);
  EXPECT_EQ(sample(text, "kvserve_kv_cache_max_sequences{context=\"8192\"}"), 9.0);
  EXPECT_EQ(sample(text, "kvserve_max_model_len"), 8192.0);
  EXPECT_EQ(sample(text,
                   "kvserve_kv_cache_info{block_size=\"16\",dtype=\"fp8_e4m3\","
                   "element_bytes=\"1\",head_dim=\"64\",heads=\"9\",kv_heads=\"3\","
                   "layers=\"30\",scale_bytes=\"4\"}"),
            1.0)
      << text;
}

TEST(kv_capacity_metrics, a_later_budget_replaces_the_earlier_series) {
  prometheus_observer obs;
  obs.on_kv_capacity(compute_kv_capacity(smollm2_shapes(), kv_cache_dtype::kBf16, 16, 100, 8192));
  obs.on_kv_capacity(compute_kv_capacity(smollm2_shapes(), kv_cache_dtype::kInt8, 16, 200, 4096));
  const std::string text = obs.render();
  EXPECT_TRUE(std::isnan(sample(text, "kvserve_kv_cache_bytes_per_token{dtype=\"bf16\"}")));
  EXPECT_EQ(sample(text, "kvserve_kv_cache_bytes_per_token{dtype=\"int8\"}"), 12240.0);
  EXPECT_TRUE(std::isnan(sample(text, "kvserve_kv_cache_max_sequences{context=\"8192\"}")));
  EXPECT_EQ(sample(text, "kvserve_kv_cache_max_sequences{context=\"4096\"}"), 0.0);
  EXPECT_EQ(sample(text, "kvserve_kv_cache_blocks_total"), 200.0);
}

/// Counts on_kv_capacity calls.
class capacity_spy : public observer {
 public:
  void on_kv_capacity(const kv_capacity& c) override {
    ++calls;
    last = c;
  }
  int calls = 0;
  kv_capacity last;
};

TEST(kv_capacity_metrics, the_engine_reports_its_pool_once_at_start) {
  model_config m;
  m.name = "tiny-dummy";
  m.vocab_size = 257;
  m.hidden_size = 64;
  m.intermediate_size = 64;
  m.num_layers = 2;
  m.num_heads = 4;
  m.num_kv_heads = 2;
  m.head_dim = 16;
  m.max_position_embeddings = 512;
  m.tie_word_embeddings = true;
  cpu_backend_config bc;
  bc.block_size = 8;
  bc.num_kv_blocks = 40;
  bc.num_threads = 1;
  auto backend = cpu_backend::create(bc, m, make_dummy_weights(m, 3));
  ASSERT_TRUE(backend.is_ok()) << backend.error().message();
  const std::size_t reported = backend.value()->kv_bytes_per_token();
  auto spy = std::make_shared<capacity_spy>();
  engine_parts parts;
  parts.model_backend = std::move(backend.value());
  parts.model_tokenizer = capacity::make_byte_tokenizer();
  parts.engine_observer = spy;
  engine_config ec;
  ec.block_size = 8;
  ec.max_model_len = 100;
  auto eng = make_engine(ec, std::move(parts));
  ASSERT_TRUE(eng.is_ok()) << eng.error().message();
  eng.value()->shutdown(std::chrono::milliseconds(0));
  EXPECT_EQ(spy->calls, 1);
  EXPECT_EQ(spy->last.num_blocks, 40);
  EXPECT_EQ(spy->last.block_size, 8);
  EXPECT_EQ(spy->last.num_tokens, 320);
  EXPECT_EQ(spy->last.bytes_per_token, reported);
  EXPECT_EQ(spy->last.max_model_len, 100);
  ASSERT_EQ(spy->last.sequences.size(), 1u);
  EXPECT_EQ(spy->last.sequences[0].max_sequences, 40 / 13);  // 100 tokens: 13 blocks of 8
}

}  // namespace
}  // namespace kvserve
