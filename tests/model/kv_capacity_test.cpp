// The KV memory budget helper: bytes per token from its factors (GQA and dtype visible),
// blocks, tokens and sequences per context, and the start-log text.

#include <gtest/gtest.h>

#include <string>

#include "model/backend.hpp"
#include "model/kv_capacity.hpp"

namespace kvserve {
namespace {

/// SmolLM2-135M's attention shapes: 30 layers, 9 query heads, 3 KV heads, head_dim 64.
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

/// Llama-3-8B's: 32 layers, 32 query heads, 8 KV heads, head_dim 128.
model_config llama3_8b_shapes() {
  model_config c;
  c.num_layers = 32;
  c.hidden_size = 4096;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  c.max_position_embeddings = 8192;
  return c;
}

TEST(kv_capacity, bytes_per_token_follows_its_factors) {
  const model_config m = smollm2_shapes();
  // 2 (K,V) x 30 x 3 x 64 x element bytes, + 2 x 30 x 3 x 4 scale bytes for the 8-bit types.
  EXPECT_EQ(compute_kv_capacity(m, kv_cache_dtype::kFp32, 16, 1, 0).bytes_per_token, 46080u);
  EXPECT_EQ(compute_kv_capacity(m, kv_cache_dtype::kBf16, 16, 1, 0).bytes_per_token, 23040u);
  EXPECT_EQ(compute_kv_capacity(m, kv_cache_dtype::kFp8E4m3, 16, 1, 0).bytes_per_token,
            11520u + 720u);
  EXPECT_EQ(compute_kv_capacity(m, kv_cache_dtype::kInt8, 16, 1, 0).bytes_per_token, 11520u + 720u);
  // Llama-3-8B in bf16: the well-known 128 KiB per token.
  EXPECT_EQ(
      compute_kv_capacity(llama3_8b_shapes(), kv_cache_dtype::kBf16, 16, 1, 0).bytes_per_token,
      131072u);
}

TEST(kv_capacity, agrees_with_kv_bytes_per_token_of_the_dtype_header) {
  for (const model_config& m : {smollm2_shapes(), llama3_8b_shapes()}) {
    for (kv_cache_dtype d : {kv_cache_dtype::kFp32, kv_cache_dtype::kBf16, kv_cache_dtype::kFp8E4m3,
                             kv_cache_dtype::kInt8}) {
      EXPECT_EQ(compute_kv_capacity(m, d, 16, 1, 0).bytes_per_token, kv_bytes_per_token(m, d))
          << to_string(d);
    }
  }
}

TEST(kv_capacity, gqa_saving_is_the_ratio_of_query_to_kv_heads) {
  const kv_capacity c = compute_kv_capacity(llama3_8b_shapes(), kv_cache_dtype::kBf16, 16, 1, 0);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.bytes_per_token_without_gqa, 4 * c.bytes_per_token);
  model_config mha = smollm2_shapes();
  mha.num_kv_heads = mha.num_heads;
  const kv_capacity d = compute_kv_capacity(mha, kv_cache_dtype::kBf16, 16, 1, 0);
  EXPECT_EQ(d.bytes_per_token_without_gqa, d.bytes_per_token);
}

TEST(kv_capacity, eight_bit_tokens_cost_about_half_of_bf16) {
  for (const model_config& m : {smollm2_shapes(), llama3_8b_shapes()}) {
    const double bf16 = compute_kv_capacity(m, kv_cache_dtype::kBf16, 16, 1, 0).bytes_per_token;
    const double fp8 = compute_kv_capacity(m, kv_cache_dtype::kFp8E4m3, 16, 1, 0).bytes_per_token;
    // head_dim 64: 128 / 68; head_dim 128: 256 / 132.
    EXPECT_GT(bf16 / fp8, 1.85);
    EXPECT_LT(bf16 / fp8, 2.0);
  }
}

TEST(kv_capacity, blocks_tokens_and_pool_bytes) {
  const kv_capacity c = compute_kv_capacity(smollm2_shapes(), kv_cache_dtype::kBf16, 16, 1000, 0);
  EXPECT_EQ(c.block_size, 16);
  EXPECT_EQ(c.num_blocks, 1000);
  EXPECT_EQ(c.num_tokens, 16000);
  EXPECT_EQ(c.pool_bytes, 16000u * 23040u);
}

struct sequences_case {
  std::int64_t num_blocks;
  int block_size;
  int context_len;
  std::int64_t expected;
};

class kv_max_sequences_test : public ::testing::TestWithParam<sequences_case> {};

TEST_P(kv_max_sequences_test, whole_blocks_per_sequence) {
  const sequences_case& p = GetParam();
  EXPECT_EQ(kv_max_sequences(p.num_blocks, p.block_size, p.context_len), p.expected);
}

INSTANTIATE_TEST_SUITE_P(table, kv_max_sequences_test,
                         ::testing::Values(sequences_case{8, 4, 4, 8},  // one block each
                                           sequences_case{
                                               8, 4, 5, 4},  // a partial second block counts whole
                                           sequences_case{8, 4, 32, 1},  // exactly the pool
                                           sequences_case{8, 4, 33, 0},  // larger than the pool
                                           sequences_case{1000, 16, 2048, 7},  // 128 blocks each
                                           sequences_case{1000, 64, 2048, 31},
                                           sequences_case{0, 16, 16, 0},  // empty pool
                                           sequences_case{8, 4, 0, 0}));  // no context

TEST(kv_capacity, contexts_are_standard_ones_below_max_model_len_then_max_model_len) {
  const kv_capacity c =
      compute_kv_capacity(smollm2_shapes(), kv_cache_dtype::kBf16, 16, 46603, 8192);
  ASSERT_EQ(c.sequences.size(), 2u);
  EXPECT_EQ(c.sequences[0].context_len, 2048);
  EXPECT_EQ(c.sequences[0].max_sequences, 46603 / 128);
  EXPECT_FALSE(c.sequences[0].is_max_model_len);
  EXPECT_EQ(c.sequences[1].context_len, 8192);
  EXPECT_EQ(c.sequences[1].max_sequences, 46603 / 512);
  EXPECT_TRUE(c.sequences[1].is_max_model_len);

  const kv_capacity odd =
      compute_kv_capacity(smollm2_shapes(), kv_cache_dtype::kBf16, 16, 100, 3000);
  ASSERT_EQ(odd.sequences.size(), 2u);
  EXPECT_EQ(odd.sequences[1].context_len, 3000);
  EXPECT_EQ(odd.sequences[1].max_sequences, 100 / 188);

  const kv_capacity large =
      compute_kv_capacity(llama3_8b_shapes(), kv_cache_dtype::kBf16, 16, 100000, 131072);
  ASSERT_EQ(large.sequences.size(), 4u);
  EXPECT_EQ(large.sequences[2].context_len, 32768);
  EXPECT_TRUE(large.sequences[3].is_max_model_len);
}

TEST(kv_capacity, log_names_dtype_factors_gqa_and_capacity) {
  const kv_capacity c =
      compute_kv_capacity(smollm2_shapes(), kv_cache_dtype::kBf16, 16, 46603, 8192);
  const std::string text = format_kv_capacity(c);
  EXPECT_NE(text.find("KV cache bf16: 23040 bytes per token = 2 (K,V) x 30 layers x 3 KV heads "
                      "x 64 head dim x 2 bytes"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("vs 69120 without GQA: 9 KV heads, 3.0x more"), std::string::npos) << text;
  EXPECT_NE(text.find("46603 blocks of 16 tokens = 745648 tokens"), std::string::npos) << text;
  EXPECT_NE(text.find("364 at 2048 tokens, 91 at 8192 tokens (max-model-len)"), std::string::npos)
      << text;

  const std::string fp8 = format_kv_capacity(
      compute_kv_capacity(smollm2_shapes(), kv_cache_dtype::kFp8E4m3, 16, 1, 8192));
  EXPECT_NE(fp8.find("KV cache fp8_e4m3: 12240 bytes per token = 2 (K,V) x 30 layers x 3 KV "
                     "heads x (64 head dim x 1 byte + 4 scale bytes)"),
            std::string::npos)
      << fp8;
}

/// A backend that only answers the pool questions.
class pool_only_backend : public backend {
 public:
  pool_only_backend(model_config m, kv_cache_dtype dtype, std::size_t bytes_per_token)
      : model_(std::move(m)), dtype_(dtype), bytes_per_token_(bytes_per_token) {}
  std::string name() const override { return "pool-only"; }
  const model_config& config() const override { return model_; }
  int block_size() const override { return 32; }
  int num_kv_blocks() const override { return 300; }
  std::size_t kv_bytes_per_token() const override { return bytes_per_token_; }
  kv_cache_dtype kv_dtype() const override { return dtype_; }
  result<step_result> execute(const step_plan&) override {
    return status(status_code::kUnsupported, "pool only");
  }

 private:
  model_config model_;
  kv_cache_dtype dtype_;
  std::size_t bytes_per_token_;
};

TEST(kv_capacity, describes_a_backend_pool) {
  pool_only_backend b(smollm2_shapes(), kv_cache_dtype::kInt8, 12240);
  const kv_capacity c = describe_kv_capacity(b, 4096);
  EXPECT_EQ(c.dtype, kv_cache_dtype::kInt8);
  EXPECT_EQ(c.bytes_per_token, 12240u);
  EXPECT_EQ(c.num_blocks, 300);
  EXPECT_EQ(c.num_tokens, 9600);
  ASSERT_EQ(c.sequences.size(), 2u);
  EXPECT_EQ(c.sequences[0].max_sequences, 300 / 64);
  EXPECT_EQ(c.sequences[1].max_sequences, 300 / 128);
}

TEST(kv_capacity, a_backend_that_does_not_name_its_dtype_is_taken_at_its_word) {
  pool_only_backend b(smollm2_shapes(), kv_cache_dtype::kAuto, 1000);
  const kv_capacity c = describe_kv_capacity(b, 2048);
  EXPECT_EQ(c.bytes_per_token, 1000u);
  EXPECT_EQ(c.pool_bytes, 9600u * 1000u);
  EXPECT_EQ(c.bytes_per_token_without_gqa, 3000u);  // 9 query heads over 3 KV heads
  EXPECT_NE(format_kv_capacity(c).find("KV cache auto: 1000 bytes per token"), std::string::npos);
}

}  // namespace
}  // namespace kvserve
