#include "model/model_loader.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "model/dummy_weights.hpp"
#include "test_model_path.hpp"

namespace kvserve {
namespace {

namespace fs = std::filesystem;

TEST(ModelLoader, ParsesLoadFormats) {
  EXPECT_EQ(parse_load_format("auto").value(), load_format::kAuto);
  EXPECT_EQ(parse_load_format("gguf").value(), load_format::kGguf);
  EXPECT_EQ(parse_load_format("safetensors").value(), load_format::kSafetensors);
  EXPECT_EQ(parse_load_format("dummy").value(), load_format::kDummy);
  auto bad = parse_load_format("pt");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), status_code::kInvalidArgument);
  EXPECT_STREQ(to_string(load_format::kDummy), "dummy");
}

TEST(ModelLoader, MissingPathIsNotFound) {
  auto r = load_model("/nonexistent/model.gguf", load_format::kAuto);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), status_code::kNotFound);
  EXPECT_NE(r.error().message().find("/nonexistent/model.gguf"), std::string::npos);
}

TEST(ModelLoader, GarbageFileIsCorrupt) {
  const fs::path p = fs::temp_directory_path() / "kvserve_loader_garbage.gguf";
  std::ofstream(p) << "this is not a model";
  auto r = load_model(p.string(), load_format::kAuto);
  fs::remove(p);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), status_code::kCorruptData);
}

TEST(ModelLoader, FindsDefaultModelFromExecutablePath) {
  KVSERVE_REQUIRE_DEFAULT_MODEL(path);
  ::unsetenv("KVSERVE_MODEL");
  const std::string exe = std::string(KVSERVE_SOURCE_DIR) + "/build/bin/kvserve";
  auto found = find_default_model(exe);
  ASSERT_TRUE(found) << found.error().message();
  EXPECT_TRUE(fs::equivalent(*found, path));
}

TEST(ModelLoader, EnvironmentVariableWins) {
  const fs::path p = fs::temp_directory_path() / "kvserve_env_model.gguf";
  std::ofstream(p) << "x";
  ::setenv("KVSERVE_MODEL", p.c_str(), 1);
  auto found = find_default_model("/");
  ::setenv("KVSERVE_MODEL", "/nonexistent/x.gguf", 1);
  auto missing = find_default_model("/");
  ::unsetenv("KVSERVE_MODEL");
  fs::remove(p);
  ASSERT_TRUE(found);
  EXPECT_EQ(*found, p.string());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), status_code::kNotFound);
}

TEST(ModelLoader, LoadsDefaultModel) {
  KVSERVE_REQUIRE_DEFAULT_MODEL(path);
  auto r = load_model(path, load_format::kAuto);
  ASSERT_TRUE(r) << r.error().message();
  const loaded_model& m = *r;
  EXPECT_EQ(m.config.architecture, "llama");
  EXPECT_EQ(m.config.hidden_size, 576);
  EXPECT_EQ(m.config.num_layers, 30);
  EXPECT_EQ(m.config.num_heads, 9);
  EXPECT_EQ(m.config.num_kv_heads, 3);
  EXPECT_EQ(m.config.head_dim, 64);
  EXPECT_EQ(m.config.intermediate_size, 1536);
  EXPECT_EQ(m.config.vocab_size, 49152);
  EXPECT_EQ(m.config.max_position_embeddings, 8192);
  EXPECT_FLOAT_EQ(m.config.rope_theta, 100000.0f);
  EXPECT_FLOAT_EQ(m.config.rms_norm_eps, 1e-5f);
  EXPECT_TRUE(m.config.tie_word_embeddings);
  EXPECT_FALSE(m.config.attention_bias);
  EXPECT_EQ(m.config.rope_scaling.type, rope_scaling_config::kind::kNone);
  ASSERT_EQ(m.weights.layers.size(), 30u);
  EXPECT_EQ(m.weights.token_embedding.shape, (std::vector<std::int64_t>{49152, 576}));
  EXPECT_EQ(m.weights.layers[29].wk.shape, (std::vector<std::int64_t>{192, 576}));
  EXPECT_TRUE(m.weights.lm_head.empty());
  ASSERT_NE(m.tokenizer, nullptr);
  EXPECT_EQ(m.tokenizer->vocab_size(), 49152);
  ASSERT_NE(m.chat_template, nullptr);
  EXPECT_EQ(m.chat_template->family(), chat_template_family::kChatMl);
}

TEST(ModelLoader, DummyKeepsConfigAndTokenizer) {
  KVSERVE_REQUIRE_DEFAULT_MODEL(path);
  auto a = load_model(path, load_format::kDummy, 5);
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->config.num_layers, 30);
  EXPECT_EQ(a->weights.layers[3].w_up.shape, (std::vector<std::int64_t>{1536, 576}));
  EXPECT_NE(a->tokenizer, nullptr);
  // Each tensor has its own random stream, so a smaller config with the same leading tensors
  // reproduces layer 3 cheaply.
  model_config small = a->config;
  small.vocab_size = 1;
  small.num_layers = 4;
  const model_weights expected = make_dummy_weights(small, 5);
  EXPECT_EQ(a->weights.layers[3].w_up.data, expected.layers[3].w_up.data);
}

}  // namespace
}  // namespace kvserve
