#include "model/hf_config.hpp"

#include <gtest/gtest.h>

namespace kvserve {
namespace {

TEST(HfConfig, ReadsLlama3WithRopeScaling) {
  auto c = model_config_from_hf_json(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
    "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
    "num_key_value_heads": 8, "head_dim": 64, "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "vocab_size": 128256,
    "tie_word_embeddings": true, "attention_bias": false,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"}})",
                                     "config.json");
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->architecture, "llama");
  EXPECT_EQ(c->num_kv_heads, 8);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->max_position_embeddings, 131072);
  EXPECT_FLOAT_EQ(c->rope_theta, 500000.0f);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_EQ(c->rope_scaling.type, rope_scaling_config::kind::kLlama3);
  EXPECT_FLOAT_EQ(c->rope_scaling.factor, 32.0f);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192);
}

TEST(HfConfig, Qwen2HasQkvBiasAndDefaults) {
  auto c = model_config_from_hf_json(R"({"model_type": "qwen2", "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "vocab_size": 100})",
                                     "config.json");
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->architecture, "qwen2");
  EXPECT_TRUE(c->attention_bias);
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->rope_scaling.type, rope_scaling_config::kind::kNone);
}

TEST(HfConfig, Errors) {
  auto code = [](const char* text) {
    auto c = model_config_from_hf_json(text, "config.json");
    return c ? status_code::kOk : c.error().code();
  };
  EXPECT_EQ(code("{"), status_code::kCorruptData);
  EXPECT_EQ(code(R"({"model_type": "gpt2"})"), status_code::kUnsupported);
  EXPECT_EQ(code(R"({"model_type": "llama", "hidden_size": 64})"), status_code::kCorruptData);
  const char* base = R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100)";
  EXPECT_EQ(code((std::string(base) + "}").c_str()), status_code::kOk);
  EXPECT_EQ(code((std::string(base) + R"(, "num_key_value_heads": 3})").c_str()),
            status_code::kCorruptData);
  EXPECT_EQ(code((std::string(base) + R"(, "hidden_size": "big"})").c_str()),
            status_code::kCorruptData);
  EXPECT_EQ(code((std::string(base) + R"(, "model_type": 5})").c_str()), status_code::kCorruptData);
  EXPECT_EQ(code((std::string(base) + R"(, "attention_bias": true})").c_str()),
            status_code::kUnsupported);
  EXPECT_EQ(code((std::string(base) + R"(, "mlp_bias": true})").c_str()),
            status_code::kUnsupported);
  EXPECT_EQ(
      code(
          (std::string(base) + R"(, "rope_scaling": {"rope_type": "yarn", "factor": 4}})").c_str()),
      status_code::kUnsupported);
}

}  // namespace
}  // namespace kvserve
