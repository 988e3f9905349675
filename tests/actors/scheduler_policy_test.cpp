// scheduler_policy + step_allocator + step_executor driven synchronously, without CAF.

#include "actors/scheduler_policy.hpp"

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace kvserve {
namespace {

using testing::make_prompt;
using testing::make_submission;
using testing::plain_engine;

scheduler_config small_config() {
  scheduler_config c;
  c.block_size = 4;
  c.num_blocks = 64;
  c.max_model_len = 256;
  c.max_num_seqs = 8;
  c.max_num_batched_tokens = 32;
  return c;
}

std::vector<std::int32_t> run_alone(scheduler_config c, sequence_submission s) {
  plain_engine e(c);
  EXPECT_TRUE(e.add(s).is_ok());
  e.run();
  return e.outputs[s.id].tokens;
}

TEST(scheduler_policy, batch_outputs_equal_single_outputs) {
  scheduler_config c = small_config();
  plain_engine e(c);
  std::vector<sequence_submission> subs;
  for (int i = 0; i < 12; ++i) {
    subs.push_back(
        make_submission(100 + i, make_prompt(5 + 3 * i, i), 6 + i % 5, i % 2 ? 0.8f : 0.0f));
    ASSERT_TRUE(e.add(subs.back()).is_ok());
  }
  e.run();
  for (const auto& s : subs) {
    const auto& o = e.outputs[s.id];
    EXPECT_EQ(o.num_final, 1);
    EXPECT_EQ(o.reason, "length");
    EXPECT_EQ(static_cast<int>(o.tokens.size()), s.stop.max_tokens);
    EXPECT_EQ(o.tokens, run_alone(c, s)) << "request " << s.id;
  }
  EXPECT_LE(e.fake->max_batch.load(), c.max_num_seqs);
  EXPECT_LE(e.fake->max_tokens_per_step.load(), c.max_num_batched_tokens);
  EXPECT_EQ(e.allocator->stats().num_blocks_locked, 0);
  EXPECT_TRUE(e.allocator->cache().check_invariants().is_ok());
}

TEST(scheduler_policy, steady_decode_asks_to_grow_only_sequences_that_need_a_block) {
  scheduler_config c = small_config();
  plain_engine e(c);
  std::vector<sequence_submission> subs;
  for (int i = 0; i < 4; ++i) {
    subs.push_back(make_submission(1 + i, make_prompt(4 + i, i), 14));
    ASSERT_TRUE(e.add(subs.back()).is_ok());
  }
  int sparse_steps = 0;
  for (int i = 0; i < 200 && e.step(); ++i) {
    const cache_step_request& r = e.last_request;
    for (const block_request& g : r.grows) {
      EXPECT_GT(g.num_tokens, g.num_known_blocks * c.block_size) << "a grow for nothing";
    }
    EXPECT_LE(r.grows.size(), r.running.size());
    if (r.running.size() == subs.size() && r.grows.size() < r.running.size()) ++sparse_steps;
  }
  EXPECT_GT(sparse_steps, 0);
  for (const auto& s : subs) EXPECT_EQ(e.outputs[s.id].tokens, run_alone(c, s));
  EXPECT_EQ(e.allocator->stats().num_blocks_locked, 0);
}

TEST(scheduler_policy, chunked_prefill_respects_budget) {
  scheduler_config c = small_config();
  c.max_num_batched_tokens = 8;
  plain_engine e(c);
  auto s = make_submission(1, make_prompt(30, 3), 4);
  ASSERT_TRUE(e.add(s).is_ok());
  e.run();
  EXPECT_EQ(e.outputs[1].tokens.size(), 4u);
  // 30 prompt tokens in chunks of at most 8: 4 prefill steps, then 3 decode steps.
  ASSERT_GE(e.plans.size(), 7u);
  for (const auto& p : e.plans) EXPECT_LE(p.num_tokens(), 8);
  EXPECT_FALSE(e.plans[0].seqs[0].sample);
  EXPECT_TRUE(e.plans[3].seqs[0].sample);
  EXPECT_EQ(e.outputs[1].tokens, run_alone(small_config(), s));
}

TEST(scheduler_policy, counts_prompt_tokens_of_each_step_including_a_one_token_last_chunk) {
  scheduler_config c = small_config();
  c.max_num_batched_tokens = 8;
  plain_engine e(c);
  ASSERT_TRUE(e.add(make_submission(1, make_prompt(17, 4), 3)).is_ok());
  e.run();
  // 17 prompt tokens in chunks of 8, 8 and 1 (the last one samples, like a decode step), then
  // two decode steps with no prompt tokens.
  ASSERT_EQ(e.plan_prompt_tokens.size(), 5u);
  EXPECT_EQ(e.plan_prompt_tokens, (std::vector<int>{8, 8, 1, 0, 0}));
  // A second request with the same first 16 tokens computes only what the cache lacks.
  auto p2 = make_prompt(17, 4);
  p2.back() = 7;
  ASSERT_TRUE(e.add(make_submission(2, p2, 1)).is_ok());
  e.run();
  EXPECT_EQ(e.plan_prompt_tokens.size(), 6u);
  EXPECT_EQ(e.plan_prompt_tokens.back(), 1);
}

TEST(scheduler_policy, shared_prefix_is_served_from_cache) {
  scheduler_config c = small_config();
  plain_engine e(c);
  auto system = make_prompt(18, 50);  // 18 shared tokens: 4 whole blocks of 4
  auto p1 = system, p2 = system;
  for (int i = 0; i < 5; ++i) p1.push_back(3 + i), p2.push_back(90 + i);
  ASSERT_TRUE(e.add(make_submission(1, p1, 5)).is_ok());
  e.run();
  ASSERT_TRUE(e.add(make_submission(2, p2, 5)).is_ok());
  e.run();
  EXPECT_EQ(e.outputs[1].cached, 0);
  EXPECT_EQ(e.outputs[2].cached, 16);
  EXPECT_EQ(e.outputs[2].tokens, run_alone(c, make_submission(2, p2, 5)));
}

TEST(scheduler_policy, early_commit_lets_a_concurrent_request_reuse_blocks) {
  for (bool early : {true, false}) {
    scheduler_config c = small_config();
    c.prefix_commit_early = early;
    plain_engine e(c);
    auto system = make_prompt(16, 20);
    auto p1 = system, p2 = system;
    p1.push_back(1);
    p2.push_back(2);
    ASSERT_TRUE(e.add(make_submission(1, p1, 20)).is_ok());
    for (int i = 0; i < 4; ++i) e.step();  // request 1 is decoding now
    ASSERT_EQ(e.outputs[1].num_final, 0);
    ASSERT_TRUE(e.add(make_submission(2, p2, 3)).is_ok());
    e.run();
    EXPECT_EQ(e.outputs[2].cached, early ? 16 : 0) << "early=" << early;
    EXPECT_EQ(e.outputs[2].tokens, run_alone(c, make_submission(2, p2, 3)));
  }
}

TEST(scheduler_policy, blocks_filled_during_decode_are_committed) {
  scheduler_config c = small_config();
  plain_engine e(c);
  auto p1 = make_prompt(6, 4);
  ASSERT_TRUE(e.add(make_submission(1, p1, 20)).is_ok());
  e.run();
  ASSERT_EQ(e.outputs[1].tokens.size(), 20u);
  // The prompt plus 14 generated tokens: 20 tokens, the first 16 of them in full blocks that
  // were filled by prefill and decode steps and committed in pieces.
  auto p2 = p1;
  p2.insert(p2.end(), e.outputs[1].tokens.begin(), e.outputs[1].tokens.begin() + 14);
  ASSERT_TRUE(e.add(make_submission(2, p2, 3)).is_ok());
  e.run();
  EXPECT_EQ(e.outputs[2].cached, 16);
  EXPECT_EQ(e.outputs[2].tokens, run_alone(c, make_submission(2, p2, 3)));
  EXPECT_TRUE(e.allocator->cache().check_invariants().is_ok());
}

TEST(scheduler_policy, preemption_recomputes_from_cache_with_same_outputs) {
  scheduler_config c = small_config();
  c.num_blocks = 24;  // 96 tokens for 6 requests of up to 40
  c.max_num_batched_tokens = 64;
  plain_engine e(c);
  std::vector<sequence_submission> subs;
  for (int i = 0; i < 6; ++i) {
    subs.push_back(make_submission(i + 1, make_prompt(10, 10 * i), 28));
    ASSERT_TRUE(e.add(subs.back()).is_ok());
  }
  e.run();
  EXPECT_GT(e.policy.num_preemptions(), 0u);
  for (const auto& s : subs) {
    EXPECT_EQ(e.outputs[s.id].num_final, 1);
    EXPECT_EQ(e.outputs[s.id].tokens, run_alone(small_config(), s)) << s.id;
  }
  // Resumed sequences matched their own committed blocks.
  const auto st = e.allocator->stats();
  EXPECT_GT(st.prefix_hits_tokens, 0u);
  EXPECT_EQ(st.num_blocks_locked, 0);
  EXPECT_TRUE(e.allocator->cache().check_invariants().is_ok());
}

TEST(scheduler_policy, finish_commit_mode_commits_a_preempted_sequence_blocks) {
  // --prefix-commit finish: a victim's computed full blocks are committed when it is
  // preempted, so its recompute hits them (the prompts share nothing, so every hit is that).
  for (bool early : {true, false}) {
    scheduler_config c = small_config();
    c.num_blocks = 24;
    c.max_num_batched_tokens = 64;
    c.prefix_commit_early = early;
    plain_engine e(c);
    std::vector<sequence_submission> subs;
    for (int i = 0; i < 6; ++i) {
      subs.push_back(make_submission(i + 1, make_prompt(10, 10 * i), 28));
      ASSERT_TRUE(e.add(subs.back()).is_ok());
    }
    e.run();
    EXPECT_GT(e.policy.num_preemptions(), 0u);
    for (const auto& s : subs) {
      EXPECT_EQ(e.outputs[s.id].num_final, 1);
      EXPECT_EQ(e.outputs[s.id].tokens, run_alone(small_config(), s)) << s.id;
    }
    const auto st = e.allocator->stats();
    EXPECT_GT(st.prefix_hits_tokens, 0u) << "early=" << early;
    EXPECT_EQ(st.num_blocks_locked, 0);
    EXPECT_TRUE(e.allocator->cache().check_invariants().is_ok());
  }
}

TEST(scheduler_policy, finish_commit_mode_commits_nothing_before_the_end) {
  scheduler_config c = small_config();
  c.prefix_commit_early = false;
  plain_engine e(c);
  ASSERT_TRUE(e.add(make_submission(1, make_prompt(10, 3), 12)).is_ok());
  for (int i = 0; i < 6; ++i) e.step();
  ASSERT_EQ(e.outputs[1].num_final, 0);
  EXPECT_EQ(e.allocator->cache().tree().num_nodes(), 0) << "blocks are only recorded (deferred)";
  e.run();
  // 10 + 11 computed tokens: 5 full blocks enter the tree when the request finishes.
  EXPECT_EQ(e.allocator->cache().tree().num_nodes(), 5);
  EXPECT_TRUE(e.allocator->cache().check_invariants().is_ok());
}

TEST(scheduler_policy, overlapped_steps_give_the_same_outputs) {
  // The next step's blocks are allocated (growth, preemption, admission) while the current
  // step runs; outputs, preemptions and block accounting must stay right.
  for (int num_blocks : {64, 24}) {
    scheduler_config c = small_config();
    c.num_blocks = num_blocks;
    c.max_num_batched_tokens = 48;
    plain_engine e(c);
    std::vector<sequence_submission> subs;
    for (int i = 0; i < 8; ++i) {
      subs.push_back(make_submission(i + 1, make_prompt(6 + 2 * i, 10 * i), 10 + 3 * (i % 4),
                                     i % 3 ? 0.0f : 0.7f));
      if (i == 5) subs.back().stop.stop_token_ids = {7, 11, 13};
      ASSERT_TRUE(e.add(subs.back()).is_ok());
    }
    e.run_overlapped(100000, [&](int step) {
      if (step == 9) e.record(e.policy.remove(4, "cancelled"));
    });
    if (num_blocks == 24) {
      EXPECT_GT(e.policy.num_preemptions(), 0u);
    }
    for (const auto& s : subs) {
      EXPECT_EQ(e.outputs[s.id].num_final, 1) << s.id;
      if (s.id == 4) {
        EXPECT_EQ(e.outputs[s.id].reason, "cancelled");
        continue;
      }
      EXPECT_EQ(e.outputs[s.id].tokens, run_alone(small_config(), s)) << s.id;
    }
    EXPECT_EQ(e.allocator->stats().num_blocks_locked, 0);
    EXPECT_TRUE(e.allocator->cache().check_invariants().is_ok());
    EXPECT_FALSE(e.policy.has_work());
  }
}

TEST(scheduler_policy, recycled_plan_entries_carry_nothing_over) {
  // Plans reuse the memory of executed ones (recycle): a plain request planned into entries
  // that last held a request with penalties, prompt logprobs and min_tokens must not see
  // any of those fields.
  scheduler_config c = small_config();
  plain_engine e(c);
  auto fancy = make_submission(1, make_prompt(7, 1), 3);
  fancy.sampling.repetition_penalty = 1.3f;
  fancy.prompt_logprobs = 2;
  fancy.stop.min_tokens = 2;
  fancy.stop.eos_token_ids = {5};
  ASSERT_TRUE(e.add(fancy).is_ok());
  e.run();
  ASSERT_EQ(e.outputs[1].num_final, 1);
  ASSERT_FALSE(e.plans.empty());
  EXPECT_FALSE(e.plans.back().seqs[0].penalty_prompt_tokens.empty());
  const std::size_t first = e.plans.size();
  ASSERT_TRUE(e.add(make_submission(2, make_prompt(5, 2), 4)).is_ok());
  e.run();
  ASSERT_GT(e.plans.size(), first);
  for (std::size_t i = first; i < e.plans.size(); ++i) {
    for (const sequence_step& st : e.plans[i].seqs) {
      EXPECT_EQ(st.id, 2u);
      EXPECT_TRUE(st.penalty_prompt_tokens.empty());
      EXPECT_TRUE(st.penalty_output_tokens.empty());
      EXPECT_TRUE(st.suppressed_tokens.empty());
      EXPECT_EQ(st.prompt_logprobs, -1);
      EXPECT_FALSE(st.next_prompt_token.has_value());
      EXPECT_FALSE(st.input_from_last_sample);
    }
  }
  EXPECT_EQ(e.outputs[2].tokens, run_alone(c, make_submission(2, make_prompt(5, 2), 4)));
}

TEST(scheduler_policy, cancel_at_each_stage_returns_every_block) {
  scheduler_config c = small_config();
  c.max_num_seqs = 2;
  c.max_num_batched_tokens = 8;
  plain_engine e(c);
  ASSERT_TRUE(e.add(make_submission(1, make_prompt(20, 1), 30)).is_ok());  // long prefill
  ASSERT_TRUE(e.add(make_submission(2, make_prompt(4, 2), 30)).is_ok());
  ASSERT_TRUE(e.add(make_submission(3, make_prompt(4, 3), 30)).is_ok());  // waits (max 2 seqs)
  e.step();
  e.step();
  // 1 is mid-prefill, 2 is decoding, 3 has never been admitted.
  EXPECT_FALSE(e.outputs[3].accepted);
  e.record(e.policy.remove(3, "cancelled"));
  EXPECT_EQ(e.outputs[3].reason, "cancelled");  // no blocks: finished at once
  e.record(e.policy.remove(1, "cancelled"));
  e.record(e.policy.remove(2, "cancelled"));
  EXPECT_EQ(e.outputs[1].num_final, 0);  // waits for the release to be confirmed
  e.run();
  for (seq_id id : {1, 2, 3}) {
    EXPECT_EQ(e.outputs[id].num_final, 1);
    EXPECT_EQ(e.outputs[id].reason, "cancelled");
  }
  EXPECT_EQ(e.allocator->stats().num_blocks_locked, 0);
  EXPECT_FALSE(e.policy.has_work());
}

TEST(scheduler_policy, cancel_during_a_step_finishes_after_it) {
  scheduler_config c = small_config();
  plain_engine e(c);
  ASSERT_TRUE(e.add(make_submission(1, make_prompt(6, 1), 30)).is_ok());
  e.step();
  cache_step_request req = e.policy.plan_allocations(e.now);
  planned_step ps = e.policy.apply_allocations(e.allocator->apply(req));
  ASSERT_EQ(ps.plan.seqs.size(), 1u);
  EXPECT_TRUE(e.policy.remove(1, "cancelled").empty());  // in flight
  auto out = e.executor->execute(ps.plan);
  e.record(e.policy.apply_result(out.result));
  e.run();
  EXPECT_EQ(e.outputs[1].reason, "cancelled");
  EXPECT_EQ(e.outputs[1].num_final, 1);
  EXPECT_EQ(e.allocator->stats().num_blocks_locked, 0);
}

TEST(scheduler_policy, failing_step_errors_only_its_requests) {
  scheduler_config c = small_config();
  c.max_num_seqs = 1;
  plain_engine e(c);
  int failures = 0;
  e.fake->fail_if = [&](const step_plan& p) {
    if (p.seqs[0].id == 1 && failures++ == 0) return status{status_code::kInternal, "boom"};
    return status::ok();
  };
  ASSERT_TRUE(e.add(make_submission(1, make_prompt(6, 1), 5)).is_ok());
  ASSERT_TRUE(e.add(make_submission(2, make_prompt(6, 2), 5)).is_ok());
  e.run();
  EXPECT_EQ(e.outputs[1].reason, "error");
  EXPECT_EQ(e.outputs[1].error.code(), status_code::kInternal);
  EXPECT_EQ(e.outputs[2].reason, "length");
  EXPECT_EQ(e.outputs[2].tokens.size(), 5u);
  EXPECT_EQ(e.allocator->stats().num_blocks_locked, 0);
}

TEST(scheduler_policy, lpm_prefers_cached_prefix_within_age_bound) {
  scheduler_config c = small_config();
  c.policy = scheduling_policy::kLpm;
  c.max_num_seqs = 1;
  c.lpm_age_bound = std::chrono::seconds(10);
  plain_engine e(c);
  auto system = make_prompt(24, 7);
  auto warm = system;
  warm.push_back(1);
  ASSERT_TRUE(e.add(make_submission(1, warm, 2)).is_ok());
  e.run();  // the system prompt is cached now
  ASSERT_TRUE(e.add(make_submission(9, make_prompt(8, 3), 4)).is_ok());  // occupies the slot
  e.step();
  e.now += std::chrono::seconds(1);
  ASSERT_TRUE(e.add(make_submission(2, make_prompt(12, 90), 2)).is_ok());  // older, no prefix
  e.now += std::chrono::seconds(1);
  auto shared = system;
  shared.push_back(5);
  ASSERT_TRUE(e.add(make_submission(3, shared, 2)).is_ok());  // newer, long prefix
  std::vector<seq_id> admitted;
  while (e.step()) {
    for (const auto& a : e.last_request.admits) admitted.push_back(a.id);
  }
  // Admission attempts in order: the cached one first.
  std::vector<seq_id> first_success;
  for (seq_id id : admitted) {
    if (std::find(first_success.begin(), first_success.end(), id) == first_success.end())
      first_success.push_back(id);
  }
  ASSERT_GE(first_success.size(), 2u);
  EXPECT_EQ(first_success[0], 3u);
  EXPECT_EQ(first_success[1], 2u);
}

TEST(scheduler_policy, lpm_age_bound_overrides_prefix_length) {
  scheduler_config c = small_config();
  c.policy = scheduling_policy::kLpm;
  c.max_num_seqs = 1;
  c.lpm_age_bound = std::chrono::seconds(1);
  plain_engine e(c);
  auto system = make_prompt(24, 7);
  auto warm = system;
  warm.push_back(1);
  ASSERT_TRUE(e.add(make_submission(1, warm, 2)).is_ok());
  e.run();
  ASSERT_TRUE(e.add(make_submission(9, make_prompt(8, 3), 4)).is_ok());
  e.step();
  ASSERT_TRUE(e.add(make_submission(2, make_prompt(12, 90), 2)).is_ok());
  e.now += std::chrono::seconds(2);  // request 2 is past the age bound
  auto shared = system;
  shared.push_back(5);
  ASSERT_TRUE(e.add(make_submission(3, shared, 2)).is_ok());
  seq_id first = 0;
  while (e.step()) {
    for (const auto& a : e.last_request.admits) {
      if (first == 0 && a.id != 9) first = a.id;
    }
  }
  EXPECT_EQ(first, 2u);
}

TEST(scheduler_policy, priority_orders_admission) {
  scheduler_config c = small_config();
  c.max_num_seqs = 1;
  plain_engine e(c);
  auto a = make_submission(1, make_prompt(4, 1), 2);
  auto b = make_submission(2, make_prompt(4, 2), 2);
  b.priority = -1;
  ASSERT_TRUE(e.add(a).is_ok());
  ASSERT_TRUE(e.add(b).is_ok());
  e.step();
  ASSERT_EQ(e.plans.size(), 1u);
  EXPECT_EQ(e.plans[0].seqs[0].id, 2u);
}

TEST(scheduler_policy, rejects_invalid_and_overload) {
  scheduler_config c = small_config();
  c.max_waiting_requests = 2;
  c.vocab_size = 100;
  plain_engine e(c);
  EXPECT_EQ(e.add(make_submission(1, {}, 4)).code(), status_code::kInvalidArgument);
  EXPECT_EQ(e.add(make_submission(1, {1, 500}, 4)).code(), status_code::kInvalidArgument);
  EXPECT_EQ(e.add(make_submission(1, make_prompt(250, 1, 100), 10)).code(),
            status_code::kInvalidArgument);  // > max_model_len
  EXPECT_TRUE(e.add(make_submission(1, make_prompt(4, 1, 100), 4)).is_ok());
  EXPECT_TRUE(e.add(make_submission(2, make_prompt(4, 1, 100), 4)).is_ok());
  EXPECT_EQ(e.add(make_submission(3, make_prompt(4, 1, 100), 4)).code(), status_code::kOverloaded);
}

TEST(scheduler_policy, no_kv_cache_recomputes_everything_with_same_outputs) {
  scheduler_config c = small_config();
  c.no_kv_cache = true;
  plain_engine e(c);
  std::vector<sequence_submission> subs;
  for (int i = 0; i < 4; ++i) {
    subs.push_back(make_submission(i + 1, make_prompt(6 + i, i), 5));
    ASSERT_TRUE(e.add(subs.back()).is_ok());
  }
  e.run();
  EXPECT_TRUE(e.fake->only_full_recompute.load());
  for (const auto& s : subs) {
    EXPECT_EQ(e.outputs[s.id].tokens, run_alone(small_config(), s));
    EXPECT_EQ(e.outputs[s.id].cached, 0);
  }
  const auto st = e.allocator->stats();
  EXPECT_EQ(st.num_blocks_locked, 0);
  EXPECT_EQ(st.num_blocks_cached, 0);
}

TEST(scheduler_policy, stop_tokens_and_min_tokens) {
  scheduler_config c = small_config();
  plain_engine probe(c);
  auto s = make_submission(1, make_prompt(5, 1), 8);
  ASSERT_TRUE(probe.add(s).is_ok());
  probe.run();
  const auto free_run = probe.outputs[1].tokens;
  ASSERT_EQ(free_run.size(), 8u);
  // Stop on the third token.
  plain_engine e(c);
  auto s2 = s;
  s2.stop.stop_token_ids = {free_run[2]};
  ASSERT_TRUE(e.add(s2).is_ok());
  e.run();
  EXPECT_EQ(e.outputs[1].reason, "stop");
  EXPECT_EQ(e.outputs[1].stop_reason, std::to_string(free_run[2]));
  EXPECT_LE(e.outputs[1].tokens.size(), 3u);
  // With min_tokens the first token cannot be a stop token.
  plain_engine m(c);
  auto s3 = s;
  s3.stop.stop_token_ids = {free_run[0]};
  s3.stop.min_tokens = 2;
  ASSERT_TRUE(m.add(s3).is_ok());
  m.run();
  ASSERT_FALSE(m.outputs[1].tokens.empty());
  EXPECT_NE(m.outputs[1].tokens[0], free_run[0]);
}

TEST(stop_criteria, check_and_suppress) {
  stop_criteria s;
  s.max_tokens = 5;
  s.min_tokens = 2;
  s.eos_token_ids = {9};
  s.stop_token_ids = {4};
  EXPECT_FALSE(s.check(9, 2).has_value());
  EXPECT_EQ(s.check(9, 3)->reason, "stop");
  EXPECT_EQ(s.check(4, 3)->stop_reason, "4");
  EXPECT_EQ(s.check(1, 5)->reason, "length");
  EXPECT_EQ(s.suppressed_tokens(1), (std::vector<std::int32_t>{4, 9}));
  EXPECT_TRUE(s.suppressed_tokens(2).empty());
}

}  // namespace
}  // namespace kvserve
