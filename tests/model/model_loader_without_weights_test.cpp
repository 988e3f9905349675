// load_model_without_weights: config, tokenizer and template only (what `--load-format dummy`
// on the CUDA backend reads), on the default GGUF and on the Llama-3-8B-shaped benchmark folder
// of bench/experiments/make_llama3_8b_folder.py (which has no weight files at all).

#include <gtest/gtest.h>

#include <unistd.h>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "model/model_loader.hpp"
#include "test_model_path.hpp"

namespace kvserve {
namespace {

namespace fs = std::filesystem;

TEST(ModelLoaderWithoutWeights, DefaultGgufKeepsConfigAndTokenizer) {
  KVSERVE_REQUIRE_DEFAULT_MODEL(path);
  auto r = load_model_without_weights(path, load_format::kDummy);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->config.num_layers, 30);
  EXPECT_EQ(r->config.hidden_size, 576);
  EXPECT_EQ(r->config.vocab_size, 49152);
  EXPECT_TRUE(r->weights.layers.empty());
  EXPECT_TRUE(r->weights.token_embedding.data.empty());
  ASSERT_NE(r->tokenizer, nullptr);
  EXPECT_EQ(r->tokenizer->vocab_size(), 49152);
  ASSERT_NE(r->chat_template, nullptr);
}

TEST(ModelLoaderWithoutWeights, MissingPathIsNotFound) {
  auto r = load_model_without_weights("/nonexistent/folder", load_format::kDummy);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), status_code::kNotFound);
}

/// The benchmark folder, written once per test process into a temporary folder.
class Llama3BenchFolder : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ =
        (fs::temp_directory_path() / ("kvserve_llama3_8b_" + std::to_string(::getpid()))).string();
    const std::string cmd = "python3 '" + std::string(KVSERVE_SOURCE_DIR) +
                            "/bench/experiments/make_llama3_8b_folder.py' --out '" + dir_ +
                            "' > /dev/null";
    made_ = std::system(cmd.c_str()) == 0;
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void SetUp() override { ASSERT_TRUE(made_) << "make_llama3_8b_folder.py failed"; }

  static std::string dir_;
  static bool made_;
};

std::string Llama3BenchFolder::dir_;
bool Llama3BenchFolder::made_ = false;

TEST_F(Llama3BenchFolder, LoadsLlama3ShapesWithoutWeights) {
  auto r = load_model_without_weights(dir_, load_format::kDummy);
  ASSERT_TRUE(r) << r.error().message();
  const model_config& c = r->config;
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.num_layers, 32);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.max_position_embeddings, 8192);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_TRUE(r->weights.layers.empty());
  ASSERT_NE(r->chat_template, nullptr);
  EXPECT_EQ(r->chat_template->family(), chat_template_family::kLlama3);
}

TEST_F(Llama3BenchFolder, FullLoadFailsForLackOfWeights) {
  // The folder has no safetensors: only the weight-free path can load it.
  auto r = load_model(dir_, load_format::kAuto);
  EXPECT_FALSE(r);
}

TEST_F(Llama3BenchFolder, EveryIdOfTheVocabularyDecodes) {
  auto r = load_model_without_weights(dir_, load_format::kDummy);
  ASSERT_TRUE(r) << r.error().message();
  const tokenizer& tok = *r->tokenizer;
  ASSERT_EQ(tok.vocab_size(), 128256);
  int empty_regular = 0;
  for (std::int32_t id = 0; id < 128000; ++id) {
    const std::int32_t one[] = {id};
    if (tok.decode(one, false).empty()) ++empty_regular;
  }
  EXPECT_EQ(empty_regular, 0);
  const std::int32_t eot[] = {128009};
  EXPECT_EQ(tok.decode(eot, false), "<|eot_id|>");
  EXPECT_TRUE(tok.is_control(128255));
  EXPECT_EQ(tok.bos_token_id(), std::optional<std::int32_t>(128000));
  EXPECT_EQ(tok.eos_token_id(), std::optional<std::int32_t>(128009));
  // Text survives a round trip through the synthetic merges.
  const std::string text = "The KV cache, 2048 tokens: reused.\n";
  const std::vector<std::int32_t> ids = tok.encode(text, false);
  EXPECT_LT(ids.size(), text.size());
  EXPECT_EQ(tok.decode(ids, false), text);
}

}  // namespace
}  // namespace kvserve
