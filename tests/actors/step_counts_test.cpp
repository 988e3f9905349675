// What a step reports besides its plan and tokens: the sequences it decodes (its kind for the
// step metrics) and how many tokens it sampled.

#include <gtest/gtest.h>

#include <vector>

#include "actors/scheduler_policy.hpp"
#include "test_support.hpp"

namespace kvserve {
namespace {

using testing::make_prompt;
using testing::make_submission;
using testing::plain_engine;

struct step_counts {
  int num_seqs = 0;
  int num_decode = 0;
  int num_sampled = 0;
};

step_counts run_step(plain_engine& e) {
  planned_step ps =
      e.policy.apply_allocations(e.allocator->apply(e.policy.plan_allocations(e.now)));
  step_counts c;
  c.num_seqs = static_cast<int>(ps.plan.seqs.size());
  c.num_decode = ps.num_decode_seqs;
  worker_outcome out = e.executor->execute(std::move(ps.plan));
  std::vector<token_output> tokens;
  std::vector<sequence_event> events;
  c.num_sampled = e.policy.apply_result(out.result, tokens, events);
  e.policy.recycle(std::move(out.plan));
  return c;
}

TEST(step_counts, decode_sequences_and_sampled_tokens_of_each_step) {
  scheduler_config sc;
  sc.block_size = 4;
  sc.num_blocks = 64;
  sc.max_model_len = 256;
  sc.max_num_seqs = 8;
  sc.max_num_batched_tokens = 6;
  plain_engine e(sc);
  ASSERT_TRUE(e.add(make_submission(1, make_prompt(3, 1), 10)).is_ok());
  step_counts s = run_step(e);  // a's prompt (3 tokens), sampling its first token
  EXPECT_EQ(s.num_seqs, 1);
  EXPECT_EQ(s.num_decode, 0);
  EXPECT_EQ(s.num_sampled, 1);
  s = run_step(e);  // a decodes
  EXPECT_EQ(s.num_decode, 1);
  EXPECT_EQ(s.num_sampled, 1);
  ASSERT_TRUE(e.add(make_submission(2, make_prompt(9, 2), 10)).is_ok());
  s = run_step(e);  // a decodes; b's first chunk (5 of 9 tokens) samples nothing
  EXPECT_EQ(s.num_seqs, 2);
  EXPECT_EQ(s.num_decode, 1);
  EXPECT_EQ(s.num_sampled, 1);
  s = run_step(e);  // a decodes; b's last chunk (4 tokens) samples b's first token
  EXPECT_EQ(s.num_seqs, 2);
  EXPECT_EQ(s.num_decode, 1);
  EXPECT_EQ(s.num_sampled, 2);
  s = run_step(e);  // both decode
  EXPECT_EQ(s.num_decode, 2);
  EXPECT_EQ(s.num_sampled, 2);
}

}  // namespace
}  // namespace kvserve
