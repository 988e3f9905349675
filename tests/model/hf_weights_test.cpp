#include "model/hf_weights.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "model/cpu_backend.hpp"
#include "model/hf_config.hpp"
#include "model/hf_tokenizer.hpp"
#include "model/model_loader.hpp"
#include "tiny_hf_model.hpp"

namespace kvserve {
namespace {

namespace fs = std::filesystem;

/// One tiny HF folder per dtype/sharding, made once for the suite.
class TinyHfModel : public ::testing::Test {
 protected:
  // Folders are made on first use: ctest runs each test in its own process.
  static const std::string& folder(std::string& slot, const char* tag, const char* args) {
    if (slot.empty()) slot = testing_support::make_tiny_hf_model(tag, args);
    return slot;
  }
  static const std::string& single() { return folder(single_, "single", ""); }
  static const std::string& sharded() { return folder(sharded_, "sharded", "--shards 3"); }
  static const std::string& bf16() { return folder(bf16_, "bf16", "--dtype BF16 --shards 2"); }
  static const std::string& f16() { return folder(f16_, "f16", "--dtype F16"); }

  static void TearDownTestSuite() {
    std::error_code ec;
    for (const auto& d : {single_, sharded_, bf16_, f16_}) {
      if (!d.empty()) fs::remove_all(d, ec);
    }
  }
  void SetUp() override {
    ASSERT_FALSE(single().empty()) << "scripts/make_tiny_hf_model.py failed";
  }

  static std::vector<const tensor_f32*> all(const model_weights& w) {
    std::vector<const tensor_f32*> out = {&w.token_embedding, &w.final_norm, &w.lm_head};
    for (const auto& l : w.layers) {
      for (const tensor_f32* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.bq, &l.bk, &l.bv, &l.wo,
                                  &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down}) {
        out.push_back(t);
      }
    }
    return out;
  }

  static inline std::string single_, sharded_, bf16_, f16_;
};

TEST_F(TinyHfModel, LoadsConfigTokenizerAndTemplate) {
  auto m = load_model(single(), load_format::kAuto);
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(m->config.architecture, "qwen2");
  EXPECT_EQ(m->config.num_heads, 6);
  EXPECT_EQ(m->config.num_kv_heads, 2);
  EXPECT_EQ(m->config.head_dim, 16);
  EXPECT_TRUE(m->config.attention_bias);
  EXPECT_FALSE(m->config.tie_word_embeddings);
  EXPECT_EQ(m->config.rope_scaling.type, rope_scaling_config::kind::kLlama3);
  EXPECT_EQ(m->config.rope_scaling.original_max_position_embeddings, 64);
  EXPECT_FALSE(m->weights.lm_head.empty());
  EXPECT_EQ(m->weights.layers[1].bk.shape, (std::vector<std::int64_t>{32}));
  ASSERT_NE(m->tokenizer, nullptr);
  EXPECT_EQ(m->tokenizer->vocab_size(), 271);
  EXPECT_EQ(m->tokenizer->bos_token_id(), 266);
  EXPECT_EQ(m->tokenizer->token_to_id("<|eot_id|>"), 270);
  EXPECT_EQ(m->tokenizer->eos_token_id(), 270);
  // The post-processor adds <|begin_of_text|>.
  EXPECT_EQ(m->tokenizer->encode("the", true).front(), 266);
  ASSERT_NE(m->chat_template, nullptr);
  EXPECT_EQ(m->chat_template->family(), chat_template_family::kLlama3);
  EXPECT_EQ(m->chat_template->apply({{"user", "hi"}}, true),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST_F(TinyHfModel, ShardedAndSingleFileLoadIdentically) {
  auto c = read_hf_config(single());
  ASSERT_TRUE(c);
  auto a = load_hf_weights(single(), *c);
  auto b = load_hf_weights(sharded(), *c);
  ASSERT_TRUE(a) << a.error().message();
  ASSERT_TRUE(b) << b.error().message();
  const auto ta = all(*a), tb = all(*b);
  ASSERT_EQ(ta.size(), tb.size());
  for (std::size_t i = 0; i < ta.size(); ++i) {
    EXPECT_FALSE(ta[i]->empty());
    EXPECT_EQ(ta[i]->shape, tb[i]->shape);
    EXPECT_EQ(ta[i]->data, tb[i]->data) << "tensor " << i;
  }
}

TEST_F(TinyHfModel, HalfPrecisionDtypesConvert) {
  auto c = read_hf_config(single());
  ASSERT_TRUE(c);
  auto f32 = load_hf_weights(single(), *c);
  auto w_bf16 = load_hf_weights(bf16(), *c);
  auto w_f16 = load_hf_weights(f16(), *c);
  ASSERT_TRUE(f32 && w_bf16 && w_f16);
  const auto a = all(*f32), b = all(*w_bf16), h = all(*w_f16);
  for (std::size_t i = 0; i < a.size(); ++i) {
    // The generator rounds every value to bfloat16, so BF16 is exact; F16 keeps them to
    // within its own precision.
    EXPECT_EQ(a[i]->data, b[i]->data) << "tensor " << i;
    for (std::size_t k = 0; k < a[i]->data.size(); ++k) {
      ASSERT_NEAR(a[i]->data[k], h[i]->data[k], 1e-3f * std::fabs(a[i]->data[k]) + 1e-7f);
    }
  }
}

TEST_F(TinyHfModel, TokenizerJsonMatchesHfTokenizers) {
  auto info = read_hf_tokenizer(single());
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->spec.pretokenizer, pretokenizer_kind::kLlama3);
  auto tok = tokenizer::create(info->spec);
  ASSERT_TRUE(tok) << tok.error().message();
  std::ifstream corpus_in(std::string(KVSERVE_TEST_DATA_DIR) + "/tokenizer_smollm2.json");
  std::ifstream ids_in(std::string(KVSERVE_TEST_DATA_DIR) + "/tokenizer_tiny_llama3.json");
  ASSERT_TRUE(corpus_in && ids_in);
  const auto corpus = nlohmann::json::parse(corpus_in).at("cases");
  const auto ids = nlohmann::json::parse(ids_in).at("ids");
  ASSERT_EQ(corpus.size(), ids.size());
  int mismatches = 0;
  for (std::size_t i = 0; i < corpus.size(); ++i) {
    const std::string text = corpus[i].at("text").get<std::string>();
    const auto expected = ids[i].get<std::vector<std::int32_t>>();
    const auto got = (*tok)->encode(text, false);
    if (got != expected && mismatches++ < 10) {
      ADD_FAILURE() << nlohmann::json(text).dump() << "\n  expected "
                    << nlohmann::json(expected).dump() << "\n  got      "
                    << nlohmann::json(got).dump();
    }
  }
  EXPECT_EQ(mismatches, 0);
}

// The Qwen2 split and SmolLM2's Digits + ByteLevel pre-tokenizers against HF `tokenizers`, on
// every third string of the corpus.
TEST_F(TinyHfModel, TokenizerJsonVariantsMatchHfTokenizers) {
  std::ifstream corpus_in(std::string(KVSERVE_TEST_DATA_DIR) + "/tokenizer_smollm2.json");
  std::ifstream ids_in(std::string(KVSERVE_TEST_DATA_DIR) + "/tokenizer_tiny_llama3_variants.json");
  ASSERT_TRUE(corpus_in && ids_in);
  const auto corpus = nlohmann::json::parse(corpus_in).at("cases");
  const auto variants = nlohmann::json::parse(ids_in).at("variants");
  for (const char* kind : {"qwen2", "digits"}) {
    const std::string dir = testing_support::make_tiny_hf_model(
        std::string("tok_") + kind, std::string("--tokenizer-only --pretokenizer ") + kind);
    ASSERT_FALSE(dir.empty());
    auto info = read_hf_tokenizer(dir);
    std::error_code ec;
    fs::remove_all(dir, ec);
    ASSERT_TRUE(info) << info.error().message();
    EXPECT_EQ(info->spec.individual_digits, std::string(kind) == "digits");
    EXPECT_EQ(info->spec.pretokenizer,
              std::string(kind) == "qwen2" ? pretokenizer_kind::kQwen2 : pretokenizer_kind::kGpt2);
    auto tok = tokenizer::create(info->spec);
    ASSERT_TRUE(tok) << tok.error().message();
    const auto& v = variants.at(kind);
    const auto stride = v.at("stride").get<std::size_t>();
    const auto& ids = v.at("ids");
    int mismatches = 0;
    for (std::size_t k = 0; k < ids.size(); ++k) {
      const std::string text = corpus.at(k * stride).at("text").get<std::string>();
      const auto expected = ids[k].get<std::vector<std::int32_t>>();
      const auto got = (*tok)->encode(text, false);
      if (got != expected && mismatches++ < 5) {
        ADD_FAILURE() << kind << ": " << nlohmann::json(text).dump() << "\n  expected "
                      << nlohmann::json(expected).dump() << "\n  got      "
                      << nlohmann::json(got).dump();
      }
    }
    EXPECT_EQ(mismatches, 0) << kind;
  }
}

// kvserve's CPU backend on the tiny model against transformers' fp32 logits
// (scripts/make_tiny_hf_model.py --reference): max |diff| <= 1e-3 * max |logit| per position.
TEST_F(TinyHfModel, CpuLogitsMatchTransformers) {
  auto m = load_model(single(), load_format::kSafetensors);
  ASSERT_TRUE(m) << m.error().message();
  std::ifstream in(std::string(KVSERVE_TEST_DATA_DIR) + "/tiny_hf_logits.json");
  ASSERT_TRUE(in);
  const auto ref = nlohmann::json::parse(in).at("cases");
  cpu_backend_config bc;
  bc.block_size = 16;
  bc.num_kv_blocks = 16;
  bc.num_threads = 2;
  auto backend = cpu_backend::create(bc, m->config, m->weights);
  ASSERT_TRUE(backend) << backend.error().message();
  const int vocab = m->config.vocab_size;
  int seq = 0;
  for (const auto& c : ref) {
    const auto tokens = c.at("tokens").get<std::vector<std::int32_t>>();
    const auto logits = c.at("logits").get<std::vector<std::vector<float>>>();
    step_plan plan;
    sequence_step s;
    s.id = static_cast<seq_id>(++seq);
    s.tokens = tokens;
    for (int b = 0; b < 4; ++b) s.block_table.push_back(b);
    s.return_logits = logits_mode::kAll;
    plan.seqs.push_back(s);
    auto r = (*backend)->execute(plan);
    ASSERT_TRUE(r) << r.error().message();
    const auto& got = r->seqs.at(0).logits;
    ASSERT_EQ(got.size(), tokens.size() * static_cast<std::size_t>(vocab));
    for (std::size_t p = 0; p < tokens.size(); ++p) {
      float max_abs = 0, max_diff = 0;
      for (int v = 0; v < vocab; ++v) {
        max_abs = std::max(max_abs, std::fabs(logits[p][static_cast<std::size_t>(v)]));
        max_diff = std::max(
            max_diff,
            std::fabs(got[p * static_cast<std::size_t>(vocab) + static_cast<std::size_t>(v)] -
                      logits[p][static_cast<std::size_t>(v)]));
      }
      EXPECT_LE(max_diff, 1e-3f * max_abs) << "case " << seq << " position " << p;
    }
  }
}

void write_text(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

TEST_F(TinyHfModel, BadFoldersAreClearErrors) {
  const fs::path dir =
      fs::path(single()).parent_path() / (fs::path(single()).filename().string() + "_bad");
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::copy(single(), dir, ec);
  ASSERT_FALSE(ec) << ec.message();
  auto c = read_hf_config(single());
  ASSERT_TRUE(c);

  // Shape that does not match config.json.
  model_config wrong = *c;
  wrong.intermediate_size = 128;
  auto r = load_hf_weights(dir.string(), wrong);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), status_code::kCorruptData);
  EXPECT_NE(r.error().message().find("config.json"), std::string::npos) << r.error().message();

  // Offset past the end of the file (truncated).
  const fs::path st = dir / "model.safetensors";
  fs::resize_file(st, fs::file_size(st) - 100);
  r = load_hf_weights(dir.string(), *c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), status_code::kCorruptData);

  // Corrupt header.
  write_text(st, "garbage!");
  auto m = load_model(dir.string(), load_format::kAuto);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code(), status_code::kCorruptData);

  // An index naming a missing shard.
  write_text(dir / "model.safetensors.index.json",
             R"({"weight_map": {"model.norm.weight": "nope.safetensors"}})");
  r = load_hf_weights(dir.string(), *c);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("nope.safetensors"), std::string::npos);
  write_text(dir / "model.safetensors.index.json",
             R"({"weight_map": {"model.norm.weight": "../x.safetensors"}})");
  EXPECT_FALSE(load_hf_weights(dir.string(), *c));

  // No weights at all.
  fs::remove(dir / "model.safetensors.index.json");
  fs::remove(st);
  r = load_hf_weights(dir.string(), *c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), status_code::kNotFound);

  // Dummy weights need only config.json and the tokenizer.
  auto dummy = load_model(dir.string(), load_format::kDummy, 3);
  ASSERT_TRUE(dummy) << dummy.error().message();
  EXPECT_EQ(dummy->weights.layers.size(), 2u);

  // Unsupported architecture.
  write_text(dir / "config.json", R"({"model_type": "gpt2"})");
  m = load_model(dir.string(), load_format::kAuto);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code(), status_code::kUnsupported);
  fs::remove_all(dir, ec);
}

}  // namespace
}  // namespace kvserve
