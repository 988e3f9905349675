// The engine over the CPU reference backend: a small dummy model for the concurrency,
// caching and preemption checks, and one smoke test with the real default model.

#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>

#include "actors/engine.hpp"
#include "model/cpu_backend.hpp"
#include "model/dummy_weights.hpp"
#include "model/model_loader.hpp"
#include "test_support.hpp"

namespace kvserve {
namespace {

using namespace std::chrono_literals;

model_config tiny_model() {
  model_config c;
  c.name = "tiny-dummy";
  c.vocab_size = 257;  // the byte tokenizer's vocabulary
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.max_position_embeddings = 512;
  c.tie_word_embeddings = true;
  return c;
}

std::unique_ptr<engine> make_cpu_engine(engine_config config, int num_blocks) {
  const model_config model = tiny_model();
  cpu_backend_config bc;
  bc.block_size = config.block_size;
  bc.num_kv_blocks = num_blocks;
  bc.num_threads = 1;
  auto backend = cpu_backend::create(bc, model, make_dummy_weights(model, 7));
  EXPECT_TRUE(backend.is_ok());
  if (!backend) return nullptr;
  engine_parts parts;
  parts.model_backend = std::move(backend.value());
  parts.model_tokenizer = testing::make_byte_tokenizer();
  auto e = make_engine(config, std::move(parts));
  EXPECT_TRUE(e.is_ok()) << (e ? "" : e.error().message());
  return e ? std::move(e.value()) : nullptr;
}

struct outcome {
  std::vector<std::int32_t> tokens;
  std::string reason;
  int cached = -1;
  int num_final = 0;
};

/// Submits all requests at once and waits for every one to end.
std::vector<outcome> run_all(engine& eng, const std::vector<generate_request>& requests) {
  std::mutex mu;
  std::condition_variable cv;
  std::map<request_id, outcome> by_id;
  std::vector<request_id> ids;
  int done = 0;
  for (const auto& r : requests) {
    ids.push_back(eng.submit(r, [&](request_id id, const generation_event& e) {
      std::lock_guard<std::mutex> lock(mu);
      outcome& o = by_id[id];
      if (auto* a = std::get_if<accepted_event>(&e)) o.cached = a->cached_prompt_tokens;
      if (auto* t = std::get_if<token_event>(&e)) {
        o.tokens.insert(o.tokens.end(), t->token_ids.begin(), t->token_ids.end());
      }
      if (auto* f = std::get_if<finished_event>(&e)) o.reason = f->finish_reason;
      if (auto* x = std::get_if<error_event>(&e)) o.reason = "error: " + x->error.message();
      if (std::holds_alternative<finished_event>(e) || std::holds_alternative<error_event>(e)) {
        ++o.num_final;
        ++done;
        cv.notify_all();
      }
    }));
  }
  std::unique_lock<std::mutex> lock(mu);
  EXPECT_TRUE(cv.wait_for(lock, 60s, [&] { return done == static_cast<int>(requests.size()); }));
  std::vector<outcome> out;
  for (request_id id : ids) out.push_back(by_id[id]);
  return out;
}

generate_request greedy(std::vector<std::int32_t> prompt, int max_tokens) {
  generate_request r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0.0f;
  return r;
}

TEST(cpu_engine, hundred_concurrent_greedy_requests_are_bit_identical_to_alone) {
  engine_config config;
  config.block_size = 4;
  config.max_num_seqs = 32;
  config.max_num_batched_tokens = 128;
  auto eng = make_cpu_engine(config, 1024);
  ASSERT_TRUE(eng);
  std::vector<generate_request> requests;
  for (int i = 0; i < 100; ++i) {
    requests.push_back(greedy(testing::make_prompt(4 + i % 13, i, 256), 6 + i % 5));
  }
  const auto together = run_all(*eng, requests);
  for (int i = 0; i < 100; ++i) {
    const auto alone = run_all(*eng, {requests[i]});
    EXPECT_EQ(together[i].num_final, 1);
    EXPECT_FALSE(together[i].tokens.empty());
    EXPECT_EQ(together[i].tokens, alone[0].tokens) << "request " << i;
    EXPECT_EQ(together[i].reason, alone[0].reason) << "request " << i;
  }
  eng->shutdown(0ms);
  EXPECT_EQ(eng->stats().num_blocks_locked, 0);
}

TEST(cpu_engine, shared_system_prompt_is_cached_in_whole_blocks) {
  engine_config config;
  config.block_size = 8;
  auto eng = make_cpu_engine(config, 256);
  ASSERT_TRUE(eng);
  auto system = testing::make_prompt(21, 11, 256);  // 21 shared tokens: 2 blocks of 8
  auto p1 = system, p2 = system;
  p1.insert(p1.end(), {40, 41, 42});
  p2.insert(p2.end(), {50, 51});
  const auto first = run_all(*eng, {greedy(p1, 8)});
  const auto second = run_all(*eng, {greedy(p2, 8)});
  EXPECT_EQ(first[0].cached, 0);
  EXPECT_EQ(second[0].cached, 16);
  engine_config no_cache = config;
  no_cache.enable_prefix_caching = false;
  auto plain = make_cpu_engine(no_cache, 256);
  const auto reference = run_all(*plain, {greedy(p2, 8)});
  EXPECT_EQ(reference[0].cached, 0);
  EXPECT_EQ(second[0].tokens, reference[0].tokens);
}

TEST(cpu_engine, small_pool_preempts_resumes_from_cache_with_same_outputs) {
  engine_config config;
  config.block_size = 4;
  config.max_num_seqs = 16;
  auto small = make_cpu_engine(config, 40);  // 160 tokens for 12 x (12 + 24)
  auto big = make_cpu_engine(config, 1024);
  ASSERT_TRUE(small && big);
  std::vector<generate_request> requests;
  for (int i = 0; i < 12; ++i) {
    auto r = greedy(testing::make_prompt(12, 20 * i, 256), 24);
    r.sampling.ignore_eos = true;
    requests.push_back(r);
  }
  const auto squeezed = run_all(*small, requests);
  const auto roomy = run_all(*big, requests);
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(squeezed[i].reason, "length");
    EXPECT_EQ(squeezed[i].tokens, roomy[i].tokens) << "request " << i;
  }
  const engine_stats s = small->stats();
  EXPECT_GT(s.num_preemptions, 0u);
  EXPECT_GT(s.prefix_cache_hits_tokens, 0u);  // resumed sequences hit their committed blocks
  EXPECT_EQ(s.num_blocks_locked, 0);
}

TEST(cpu_engine, smoke_test_with_the_default_model) {
  const std::string path =
      std::string(KVSERVE_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no default model (scripts/fetch_model)";
  auto model = load_model(path, load_format::kAuto);
  ASSERT_TRUE(model.is_ok()) << model.error().message();
  engine_config config;
  cpu_backend_config bc;
  bc.block_size = config.block_size;
  bc.num_kv_blocks = 64;
  bc.num_threads = 2;
  auto backend = cpu_backend::create(bc, model->config, std::move(model->weights));
  ASSERT_TRUE(backend.is_ok());
  engine_parts parts;
  parts.model_backend = std::move(backend.value());
  parts.model_tokenizer = model->tokenizer;
  parts.model_chat_template = model->chat_template;
  auto eng = make_engine(config, std::move(parts));
  ASSERT_TRUE(eng.is_ok());
  generate_request r;
  r.prompt = std::vector<chat_message>{{"user", "What is the capital of France?"}};
  r.max_tokens = 12;
  r.sampling.temperature = 0.0f;
  auto stream = (*eng)->submit(r);
  std::string text;
  std::optional<finished_event> fin;
  while (auto e = stream->next(60s)) {
    if (auto* t = std::get_if<token_event>(&*e)) text += t->text;
    if (auto* f = std::get_if<finished_event>(&*e)) fin = *f;
    if (auto* x = std::get_if<error_event>(&*e)) FAIL() << x->error.message();
  }
  ASSERT_TRUE(fin.has_value());
  EXPECT_GT(fin->usage.completion_tokens, 0);
  EXPECT_GT(fin->usage.prompt_tokens, 10);
  EXPECT_NE(text.find("Paris"), std::string::npos) << text;
}

}  // namespace
}  // namespace kvserve
