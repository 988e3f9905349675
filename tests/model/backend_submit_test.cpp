// The backend interface's default submit/collect (model/backend.hpp) on the CPU backend:
// greedy and seeded sampling submitted one step ahead, with tokens marked
// input_from_last_sample, equal synchronous execute; misuse gives kInvalidArgument.

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/backend.hpp"
#include "model/cpu_backend.hpp"
#include "model/dummy_weights.hpp"
#include "tests/model/cpu_backend_test_models.hpp"

namespace kvserve {
namespace {

std::unique_ptr<backend> make_cpu(const model_config& c, const model_weights& w) {
  cpu_backend_config cc;
  cc.block_size = 4;
  cc.num_kv_blocks = 64;
  cc.num_threads = 1;
  auto b = cpu_backend::create(cc, c, w);
  EXPECT_TRUE(b.is_ok()) << b.error().message();
  return b.is_ok() ? std::move(*b) : nullptr;
}

// Three sequences: a prefill, then `steps` decode steps feeding back the sampled tokens.
// Sequence 0 is greedy, 1 samples with a seed, 2 also uses penalties (its pending token is
// not in penalty_output_tokens when the step is submitted ahead). `async`: submit(N + 1)
// before collect(N) with input_from_last_sample.
std::vector<std::int32_t> run(backend& b, int steps, bool async) {
  const int n = 3;
  std::mt19937 rng(4);
  std::vector<std::vector<std::int32_t>> prompt(n), output(n);
  for (int s = 0; s < n; ++s) {
    prompt[s].resize(3 + 2 * s);
    for (auto& t : prompt[s]) t = static_cast<std::int32_t>(rng() % b.config().vocab_size);
  }
  auto make_step = [&](int step) {
    step_plan p;
    p.step_index = step;
    for (int s = 0; s < n; ++s) {
      sequence_step q;
      q.id = static_cast<seq_id>(10 + s);
      const int len = static_cast<int>(prompt[s].size());
      if (step == 0) {
        q.tokens = prompt[s];
      } else {
        q.start_position = len + step - 1;
        q.tokens = {async ? -1 : output[s].back()};
        q.input_from_last_sample = async;
      }
      for (int i = 0; i < 16; ++i) q.block_table.push_back(s * 16 + i);
      q.sample = true;
      q.sampling.temperature = s == 0 ? 0.0f : 0.8f;
      q.sampling.seed = 5 + s;
      if (s == 2) {
        q.sampling.repetition_penalty = 1.5f;
        q.sampling.presence_penalty = 0.7f;
        q.penalty_prompt_tokens = prompt[s];
        q.penalty_output_tokens = output[s];  // async: one step behind, as a worker's would be
      }
      p.seqs.push_back(q);
    }
    return p;
  };
  std::vector<std::int32_t> all;
  auto take = [&](result<step_result> r) {
    EXPECT_TRUE(r.is_ok()) << r.error().message();
    if (!r.is_ok()) return false;
    EXPECT_EQ(r->seqs.size(), static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < r->seqs.size(); ++i) {
      EXPECT_TRUE(r->seqs[i].sampled_token.has_value());
      if (!r->seqs[i].sampled_token) return false;
      all.push_back(*r->seqs[i].sampled_token);
      output[i].push_back(*r->seqs[i].sampled_token);
    }
    return true;
  };
  if (!async) {
    for (int step = 0; step <= steps; ++step) {
      if (!take(b.execute(make_step(step)))) break;
    }
    return all;
  }
  EXPECT_TRUE(b.submit(make_step(0)).is_ok());
  for (int step = 1; step <= steps + 1; ++step) {
    if (step <= steps) {
      EXPECT_TRUE(b.submit(make_step(step)).is_ok());
    }
    if (!take(b.collect())) break;
  }
  return all;
}

TEST(BackendSubmit, DefaultSubmitAheadEqualsExecute) {
  const model_config c = cpu_test::gqa_config();
  const model_weights w = make_dummy_weights(c, 12);
  auto a = make_cpu(c, w);
  auto b = make_cpu(c, w);
  ASSERT_TRUE(a && b);
  const auto sync_tokens = run(*a, 12, false);
  const auto async_tokens = run(*b, 12, true);
  EXPECT_EQ(sync_tokens.size(), 3u * 13);
  EXPECT_EQ(sync_tokens, async_tokens);
}

TEST(BackendSubmit, DefaultMisuseIsReported) {
  const model_config c = cpu_test::gqa_config();
  const model_weights w = make_dummy_weights(c, 3);
  auto b = make_cpu(c, w);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->collect().error().code(), status_code::kInvalidArgument);
  step_plan p;
  sequence_step q;
  q.id = 1;
  q.tokens = {-1};
  q.input_from_last_sample = true;
  q.block_table = {0};
  q.sample = true;
  p.seqs.push_back(q);
  EXPECT_EQ(b->submit(p).code(), status_code::kInvalidArgument);  // no previous step
  p.seqs[0].tokens = {3};
  p.seqs[0].input_from_last_sample = false;
  ASSERT_TRUE(b->submit(p).is_ok());
  p.seqs[0].tokens = {-1};
  p.seqs[0].input_from_last_sample = true;
  p.seqs[0].start_position = 1;
  ASSERT_TRUE(b->submit(p).is_ok());
  EXPECT_EQ(b->submit(p).code(), status_code::kInvalidArgument);  // two in flight
  EXPECT_TRUE(b->collect().is_ok());
  EXPECT_TRUE(b->collect().is_ok());
  EXPECT_EQ(b->collect().error().code(), status_code::kInvalidArgument);
}

/// Samples token 10 + id for every sampling sequence; throws on the plan of step `throw_at`.
class scripted_backend : public backend {
 public:
  std::string name() const override { return "scripted"; }
  const model_config& config() const override { return config_; }
  int block_size() const override { return 4; }
  int num_kv_blocks() const override { return 8; }
  std::size_t kv_bytes_per_token() const override { return 4; }
  std::uint64_t throw_at = 0;
  result<step_result> execute(const step_plan& plan) override {
    if (plan.step_index == throw_at) throw std::runtime_error("injected");
    step_result r;
    for (const sequence_step& q : plan.seqs) {
      sequence_result x;
      x.id = q.id;
      if (q.sample) x.sampled_token = static_cast<std::int32_t>(10 + q.id);
      r.seqs.push_back(x);
    }
    return r;
  }

 private:
  model_config config_;
};

TEST(BackendSubmit, FailedSubmitLeavesNoPreviousStep) {
  // Step 2 throws inside submit: step 3 must not take step 1's tokens.
  scripted_backend b;
  b.throw_at = 2;
  step_plan p;
  sequence_step q;
  q.id = 1;
  q.tokens = {3};
  q.block_table = {0};
  q.sample = true;
  p.seqs.push_back(q);
  p.step_index = 1;
  ASSERT_TRUE(b.submit(p).is_ok());
  ASSERT_TRUE(b.collect().is_ok());
  p.step_index = 2;
  p.seqs[0].input_from_last_sample = true;
  EXPECT_THROW((void)b.submit(p), std::runtime_error);
  p.step_index = 3;
  EXPECT_EQ(b.submit(p).code(), status_code::kInvalidArgument);
  // A successful step restores the chain.
  p.step_index = 4;
  p.seqs[0].input_from_last_sample = false;
  ASSERT_TRUE(b.submit(p).is_ok());
  p.step_index = 5;
  p.seqs[0].input_from_last_sample = true;
  ASSERT_TRUE(b.submit(p).is_ok());
  ASSERT_TRUE(b.collect().is_ok());
  EXPECT_EQ(b.collect()->seqs[0].sampled_token, 11);
}

}  // namespace
}  // namespace kvserve
