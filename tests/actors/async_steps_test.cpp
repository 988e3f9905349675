// Asynchronous steps (scheduler_config::async_steps, engine_config::async_scheduling): step
// N + 1 is planned and submitted before step N's result is applied. Every request must get
// exactly the tokens and the ending it gets with synchronous steps, and every block must come
// back, whatever ends a sequence (EOS, stop token, max_tokens, cancellation, preemption,
// failure).

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "actors/engine.hpp"
#include "test_support.hpp"

namespace kvserve {
namespace {

using namespace std::chrono_literals;
using testing::fake_backend;
using testing::make_prompt;
using testing::make_submission;
using testing::plain_engine;

scheduler_config async_config(int num_blocks, int budget) {
  scheduler_config c;
  c.block_size = 4;
  c.num_blocks = num_blocks;
  c.max_model_len = 512;
  c.max_num_seqs = 8;
  c.max_num_batched_tokens = budget;
  c.async_steps = true;
  return c;
}

/// A mix of requests: greedy and seeded, EOS and stop tokens that end some early, min_tokens,
/// penalties, prompt logprobs, and shared prefixes (ids 1..n).
std::vector<sequence_submission> mixed_requests(int n) {
  std::vector<sequence_submission> subs;
  const std::vector<std::int32_t> shared = make_prompt(12, 99);
  for (int i = 0; i < n; ++i) {
    std::vector<std::int32_t> prompt = make_prompt(5 + (3 * i) % 11, 10 * i);
    if (i % 3 == 0) prompt.insert(prompt.begin(), shared.begin(), shared.end());
    sequence_submission s = make_submission(static_cast<request_id>(i + 1), prompt,
                                            6 + (5 * i) % 23, i % 2 ? 0.0f : 0.8f);
    if (i % 4 == 1) s.stop.eos_token_ids = {3, 5, 8, 13, 21, 34, 55, 89, 144};
    if (i % 4 == 2) s.stop.stop_token_ids = {7, 11, 17, 19, 23, 29, 31, 37};
    if (i % 5 == 3) {
      s.stop.eos_token_ids = {2, 4, 6, 9, 10, 12, 14, 15, 16, 18};
      s.stop.min_tokens = 4;
    }
    if (i % 6 == 4) s.sampling.repetition_penalty = 1.2f;
    if (i % 7 == 5) s.prompt_logprobs = 1;
    subs.push_back(std::move(s));
  }
  return subs;
}

plain_engine::output run_alone(const sequence_submission& s) {
  scheduler_config c = async_config(256, 64);
  c.async_steps = false;
  plain_engine e(c);
  EXPECT_TRUE(e.add(s).is_ok());
  e.run();
  return e.outputs[s.id];
}

/// The fake backend checks what only asynchronous plans carry: a decode token taken from the
/// previous step, and (with penalties) an output list the backend completed with it.
void check_filled_plans(fake_backend& fake, std::atomic<int>& penalty_checks) {
  fake.on_execute = [&penalty_checks](const step_plan& p) {
    for (const sequence_step& s : p.seqs) {
      EXPECT_FALSE(s.input_from_last_sample) << "the backend fills the token in";
      const int prompt_len = static_cast<int>(s.penalty_prompt_tokens.size());
      if (!s.sampling.uses_penalties() || s.tokens.size() != 1 || s.start_position < prompt_len)
        continue;
      // The outputs so far end with this step's input token.
      ASSERT_EQ(prompt_len + static_cast<int>(s.penalty_output_tokens.size()),
                s.start_position + 1);
      EXPECT_EQ(s.penalty_output_tokens.back(), s.tokens[0]);
      ++penalty_checks;
    }
  };
}

TEST(async_steps, plans_ahead_and_gives_the_outputs_of_synchronous_steps) {
  // A roomy pool, then one so small that growth preempts running sequences, some of them
  // while their step is in flight; budgets that chunk prompts.
  for (auto [num_blocks, budget] : {std::pair{256, 64}, std::pair{40, 64}, std::pair{256, 7}}) {
    plain_engine e(async_config(num_blocks, budget));
    std::atomic<int> penalty_checks{0};
    check_filled_plans(*e.fake, penalty_checks);
    const auto subs = mixed_requests(24);
    for (const auto& s : subs) ASSERT_TRUE(e.add(s).is_ok());
    e.run_async();
    EXPECT_EQ(e.max_in_flight, 2);
    int ahead = 0;
    for (const step_plan& p : e.plans)
      for (const sequence_step& s : p.seqs) ahead += s.input_from_last_sample ? 1 : 0;
    EXPECT_GT(ahead, 0) << "decodes take their token from the step before";
    EXPECT_GT(penalty_checks.load(), 0);
    int ended_early = 0;
    for (const auto& s : subs) {
      const auto& got = e.outputs[s.id];
      const auto want = run_alone(s);
      EXPECT_EQ(got.num_final, 1) << s.id;
      EXPECT_EQ(got.tokens, want.tokens) << "request " << s.id << ", pool " << num_blocks;
      EXPECT_EQ(got.reason, want.reason) << s.id;
      EXPECT_EQ(got.stop_reason, want.stop_reason) << s.id;
      if (got.reason == "stop") ++ended_early;
    }
    EXPECT_GT(ended_early, 3) << "EOS and stop tokens end some requests early";
    if (num_blocks == 40) EXPECT_GT(e.policy.num_preemptions(), 0u);
    EXPECT_EQ(e.policy.num_steps_in_flight(), 0);
    EXPECT_FALSE(e.policy.has_work());
    EXPECT_EQ(e.allocator->stats().num_blocks_locked, 0);
    EXPECT_TRUE(e.allocator->cache().check_invariants().is_ok());
  }
}

TEST(async_steps, a_finished_sequence_drops_the_token_of_the_step_planned_ahead) {
  // Stop tokens end a sequence with step N's result while step N + 1, already submitted,
  // computes one more token for it: that token never reaches the client.
  plain_engine e(async_config(256, 64));
  sequence_submission s = make_submission(1, make_prompt(6, 4), 200);
  for (std::int32_t t = 0; t < 200; t += 9) s.stop.stop_token_ids.push_back(t);
  ASSERT_TRUE(e.add(s).is_ok());
  e.run_async();
  const auto want = run_alone(s);
  ASSERT_EQ(want.reason, "stop") << "the stop list must end it early for this test";
  ASSERT_LT(want.tokens.size(), 200u);
  EXPECT_EQ(e.outputs[1].tokens, want.tokens);
  EXPECT_EQ(e.outputs[1].reason, "stop");
  // The last plan holding it was planned after the stop token's step.
  std::size_t planned = 0;
  for (const step_plan& p : e.plans)
    for (const sequence_step& q : p.seqs) planned += q.sample ? 1 : 0;
  EXPECT_EQ(planned, want.tokens.size() + 1) << "one sampling step ran past the stop token";
  EXPECT_EQ(e.allocator->stats().num_blocks_locked, 0);
}

TEST(async_steps, cancellation_and_failures_end_every_request_once) {
  // An exception out of the backend's submit (a step holding request 2), later a step that
  // fails (the first holding request 9): each takes the step planned behind it down too,
  // whose tokens it was to provide. Requests submitted after both still get their tokens.
  plain_engine e(async_config(64, 32));
  const auto subs = mixed_requests(12);
  auto holds = [](const step_plan& p, seq_id id) {
    for (const sequence_step& q : p.seqs)
      if (q.id == id) return true;
    return false;
  };
  int exceptions = 0, failures = 0;
  e.fake->on_execute = [&](const step_plan& p) {
    if (holds(p, 2) && p.step_index >= 3 && exceptions++ == 0)
      throw std::runtime_error("injected exception");
  };
  e.fake->fail_if = [&](const step_plan& p) {
    if (holds(p, 9) && failures++ == 0) return status{status_code::kInternal, "injected"};
    return status::ok();
  };
  for (std::size_t i = 0; i < 6; ++i) ASSERT_TRUE(e.add(subs[i]).is_ok());
  // Each wave comes once the one before has met its failure (a failed step and the step
  // behind it end every sequence they hold).
  int second_wave_at = -1;
  bool late_added = false;
  e.run_async(100000, [&](int i) {
    if (i == 2) e.record(e.policy.remove(3, "cancelled"));
    if (second_wave_at < 0 && exceptions == 1) {
      second_wave_at = i;
      for (std::size_t k = 6; k < 10; ++k) ASSERT_TRUE(e.add(subs[k]).is_ok());
    }
    if (second_wave_at >= 0 && i == second_wave_at + 3) {
      e.record(e.policy.remove(10, "cancelled"));
    }
    if (!late_added && failures == 1) {
      late_added = true;
      for (std::size_t k = 10; k < 12; ++k) ASSERT_TRUE(e.add(subs[k]).is_ok());
    }
  });
  EXPECT_EQ(exceptions, 1);
  EXPECT_EQ(failures, 1);
  ASSERT_TRUE(late_added);
  int errors = 0;
  for (const auto& s : subs) {
    const auto& got = e.outputs[s.id];
    EXPECT_EQ(got.num_final, 1) << s.id;
    if (got.reason == "error") {
      ++errors;
      continue;
    }
    if (got.reason == "cancelled") continue;
    EXPECT_EQ(got.tokens, run_alone(s).tokens) << s.id;
  }
  EXPECT_GT(errors, 0) << "the failed steps' sequences end with their error";
  for (seq_id late : {11, 12}) {
    EXPECT_NE(e.outputs[late].reason, "error") << late;
    EXPECT_FALSE(e.outputs[late].tokens.empty()) << late;
  }
  EXPECT_FALSE(e.policy.has_work());
  EXPECT_EQ(e.policy.num_steps_in_flight(), 0);
  EXPECT_EQ(e.allocator->stats().num_blocks_locked, 0);
  EXPECT_TRUE(e.allocator->cache().check_invariants().is_ok());
}

TEST(async_steps, auto_follows_the_backend_and_no_kv_cache_turns_it_off) {
  struct queueing_backend : fake_backend {
    using fake_backend::fake_backend;
    bool queues_steps() const override { return true; }
  };
  fake_backend runs_in_submit(200, 4, 64);
  queueing_backend queues(200, 4, 64);
  engine_config c;
  EXPECT_FALSE(async_steps_enabled(c, runs_in_submit));
  EXPECT_TRUE(async_steps_enabled(c, queues));
  c.async_scheduling = async_scheduling_mode::kOn;
  EXPECT_TRUE(async_steps_enabled(c, runs_in_submit));
  c.async_scheduling = async_scheduling_mode::kOff;
  EXPECT_FALSE(async_steps_enabled(c, queues));
  c.async_scheduling = async_scheduling_mode::kOn;
  c.no_kv_cache = true;
  EXPECT_FALSE(async_steps_enabled(c, queues));
}

// The engine with the actors, forced on over the fake backend (whose submit runs the step at
// once, so 'auto' would leave it off).

struct async_fixture {
  explicit async_fixture(async_scheduling_mode mode, int num_blocks = 256) {
    engine_config config;
    config.block_size = 4;
    config.max_num_seqs = 8;
    config.max_num_batched_tokens = 48;
    config.async_scheduling = mode;
    auto b = std::make_unique<fake_backend>(200, config.block_size, num_blocks);
    fake = b.get();
    engine_parts parts;
    parts.model_backend = std::move(b);
    parts.model_tokenizer = testing::make_byte_tokenizer();
    auto e = make_engine(config, std::move(parts));
    EXPECT_TRUE(e.is_ok()) << (e ? "" : e.error().message());
    if (e) eng = std::move(e.value());
  }
  fake_backend* fake = nullptr;
  std::unique_ptr<engine> eng;
};

struct finished_request {
  std::vector<std::int32_t> tokens;
  std::string reason;
  int num_final = 0;
};

/// Submits every request at once and waits for all of them.
std::vector<finished_request> run_all(async_fixture& f, const std::vector<generate_request>& rs,
                                      const std::function<void(request_id, int)>& after = {}) {
  std::mutex mu;
  std::condition_variable cv;
  std::map<request_id, finished_request> done;
  int num_done = 0;
  std::vector<request_id> ids;
  for (std::size_t i = 0; i < rs.size(); ++i) {
    ids.push_back(f.eng->submit(rs[i], [&](request_id id, const generation_event& e) {
      std::lock_guard<std::mutex> lock(mu);
      finished_request& r = done[id];
      if (auto* t = std::get_if<token_event>(&e))
        r.tokens.insert(r.tokens.end(), t->token_ids.begin(), t->token_ids.end());
      if (auto* x = std::get_if<finished_event>(&e)) r.reason = x->finish_reason;
      if (std::holds_alternative<error_event>(e)) r.reason = "error";
      if (std::holds_alternative<finished_event>(e) || std::holds_alternative<error_event>(e)) {
        ++r.num_final;
        ++num_done;
        cv.notify_all();
      }
    }));
    if (after) after(ids.back(), static_cast<int>(i));
  }
  std::unique_lock<std::mutex> lock(mu);
  EXPECT_TRUE(cv.wait_for(lock, 60s, [&] { return num_done >= static_cast<int>(rs.size()); }));
  std::vector<finished_request> out;
  for (request_id id : ids) out.push_back(done[id]);
  return out;
}

std::vector<generate_request> engine_requests(int n) {
  std::vector<generate_request> rs;
  for (int i = 0; i < n; ++i) {
    generate_request r;
    r.prompt = make_prompt(4 + (7 * i) % 13, 3 * i);
    r.max_tokens = 5 + (11 * i) % 29;
    r.sampling.temperature = i % 2 ? 0.0f : 0.9f;
    r.sampling.seed = 1000 + i;
    r.seed_set = true;
    if (i % 3 == 1) r.stop_token_ids = {7, 11, 17, 19, 23, 29, 31, 37, 41};
    if (i % 5 == 2) r.sampling.presence_penalty = 0.5f;
    rs.push_back(std::move(r));
  }
  return rs;
}

TEST(async_steps, engine_submits_ahead_and_matches_synchronous_steps) {
  const auto rs = engine_requests(40);
  for (int num_blocks : {256, 36}) {  // 36: preemption under memory pressure
    async_fixture sync(async_scheduling_mode::kOff, num_blocks);
    async_fixture ahead(async_scheduling_mode::kOn, num_blocks);
    // A step takes 200 us, long enough for the next plan to arrive while it runs.
    ahead.fake->on_execute = [](const step_plan&) { std::this_thread::sleep_for(200us); };
    const auto want = run_all(sync, rs);
    const auto got = run_all(ahead, rs);
    int stopped = 0;
    for (std::size_t i = 0; i < rs.size(); ++i) {
      EXPECT_EQ(got[i].num_final, 1) << i;
      EXPECT_EQ(got[i].tokens, want[i].tokens) << "request " << i << ", pool " << num_blocks;
      EXPECT_EQ(got[i].reason, want[i].reason) << i;
      stopped += got[i].reason == "stop" ? 1 : 0;
    }
    EXPECT_GT(stopped, 0);
    EXPECT_EQ(ahead.fake->max_in_flight.load(), 2) << "step N+1 was submitted before collect(N)";
    EXPECT_EQ(sync.fake->max_in_flight.load(), 1);
    ahead.eng->shutdown(0ms);
    EXPECT_EQ(ahead.eng->stats().num_blocks_locked, 0);
    EXPECT_EQ(ahead.fake->in_flight.load(), 0);
  }
}

TEST(async_steps, engine_cancels_and_survives_a_failed_step) {
  async_fixture f(async_scheduling_mode::kOn);
  std::atomic<int> failures{0};
  f.fake->on_execute = [](const step_plan&) { std::this_thread::sleep_for(200us); };
  f.fake->fail_if = [&](const step_plan& p) {
    if (p.step_index == 12 && failures++ == 0) return status{status_code::kInternal, "injected"};
    return status::ok();
  };
  auto rs = engine_requests(16);
  for (auto& r : rs) r.max_tokens = 40;
  const auto got = run_all(f, rs, [&](request_id id, int i) {
    if (i % 4 == 3) f.eng->cancel(id);
  });
  int errors = 0, cancelled = 0;
  for (const auto& r : got) {
    EXPECT_EQ(r.num_final, 1);
    errors += r.reason == "error" ? 1 : 0;
    cancelled += r.reason == "cancelled" ? 1 : 0;
  }
  EXPECT_EQ(failures.load(), 1);
  EXPECT_GT(errors, 0);
  EXPECT_GT(cancelled, 0);
  // It keeps serving after the failure.
  const auto after = run_all(f, engine_requests(4));
  for (const auto& r : after) EXPECT_NE(r.reason, "error");
  f.eng->shutdown(0ms);
  EXPECT_EQ(f.eng->stats().num_blocks_locked, 0);
}

}  // namespace
}  // namespace kvserve
