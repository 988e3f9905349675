// Which steps run decode-shaped (cuda/step_inputs.hpp, is_decode_shaped) with the backend's
// default limits: a pure function of the plan, so these run without a GPU.
#include <gtest/gtest.h>

#include "cuda/cuda_backend.hpp"
#include "cuda/step_inputs.hpp"

namespace kvserve::cuda::test {
namespace {

step_limits default_limits() {
  const cuda_backend_config d;
  step_limits l;
  l.max_num_seqs = 256;
  l.max_rows = 256;
  l.small_step_max_tokens = d.small_step_max_tokens;
  l.small_step_max_seq_tokens = d.small_step_max_seq_tokens;
  l.small_step_max_context_reads = d.small_step_max_context_reads;
  return l;
}

sequence_step seq(seq_id id, int tokens, int start) {
  sequence_step s;
  s.id = id;
  s.tokens.assign(tokens, 7);
  s.start_position = start;
  return s;
}

step_plan plan_of(std::initializer_list<std::pair<int, int>> tokens_and_starts) {
  step_plan p;
  seq_id id = 0;
  for (auto [n, start] : tokens_and_starts) p.seqs.push_back(seq(id++, n, start));
  return p;
}

TEST(SmallStepRouting, ShortChunksOverLongContextsRunDecodeShaped) {
  const step_limits l = default_limits();
  EXPECT_TRUE(is_decode_shaped(plan_of({{8, 2048}}), l));  // 8 * 2048 + 36 context reads
  EXPECT_TRUE(is_decode_shaped(plan_of({{16, 1024}}), l));
  // 16 rows from position 2,048 read 16 * 2048 + 136 context tokens: over the default budget.
  EXPECT_FALSE(is_decode_shaped(plan_of({{16, 2048}}), l));
  EXPECT_FALSE(is_decode_shaped(plan_of({{32, 2048}}), l));
  EXPECT_FALSE(is_decode_shaped(plan_of({{64, 2048}}), l));
}

TEST(SmallStepRouting, ShortPromptsRunDecodeShapedUpToTheSequenceLimit) {
  const step_limits l = default_limits();
  EXPECT_TRUE(is_decode_shaped(plan_of({{8, 0}}), l));
  EXPECT_TRUE(is_decode_shaped(plan_of({{64, 0}}), l));
  EXPECT_FALSE(is_decode_shaped(plan_of({{65, 0}}), l));
  EXPECT_FALSE(is_decode_shaped(plan_of({{128, 0}}), l));
  // Two prompts of 40: each within the limit, 80 tokens within small_step_max_tokens.
  EXPECT_TRUE(is_decode_shaped(plan_of({{40, 0}, {40, 0}}), l));
}

TEST(SmallStepRouting, DecodesCountAsTokensButNotAsContextReads) {
  const step_limits l = default_limits();
  step_plan p = plan_of({{8, 2048}});
  for (int s = 0; s < 63; ++s) p.seqs.push_back(seq(100 + s, 1, 1024));
  EXPECT_TRUE(is_decode_shaped(p, l));  // 71 tokens; decodes read their context anyway
  for (int s = 0; s < 60; ++s) p.seqs.push_back(seq(200 + s, 1, 1024));
  EXPECT_FALSE(is_decode_shaped(p, l));  // 131 tokens: over small_step_max_tokens
  step_plan decodes;
  for (int s = 0; s < 200; ++s) decodes.seqs.push_back(seq(s, 1, 4096));
  EXPECT_TRUE(is_decode_shaped(decodes, l));  // all single: always, within max_rows
}

TEST(SmallStepRouting, ZeroLimitsTurnSmallStepsOff) {
  step_limits l = default_limits();
  l.small_step_max_tokens = 0;
  EXPECT_FALSE(is_decode_shaped(plan_of({{2, 0}}), l));
  EXPECT_TRUE(is_decode_shaped(plan_of({{1, 5}, {1, 9}}), l));
  l = default_limits();
  l.small_step_max_context_reads = 0;
  EXPECT_FALSE(is_decode_shaped(plan_of({{2, 0}}), l));
}

TEST(SmallStepRouting, HostLogitsRowsKeepTheGeneralPath) {
  const step_limits l = default_limits();
  step_plan p = plan_of({{4, 0}});
  p.seqs[0].prompt_logprobs = 1;
  EXPECT_FALSE(is_decode_shaped(p, l));
  p = plan_of({{4, 0}});
  p.seqs[0].return_logits = logits_mode::kAll;
  EXPECT_FALSE(is_decode_shaped(p, l));
}

}  // namespace
}  // namespace kvserve::cuda::test
