#include "bench/serve/workload.hpp"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace kvserve::bench {
namespace {

workload_config shared_prefix_config() {
  workload_config c;
  c.kind = workload_kind::kSharedPrefix;
  c.shared_prefix_groups = 3;
  c.shared_prefix_prompts_per_group = 5;
  c.shared_prefix_system_len = 40;
  c.shared_prefix_question_len = 7;
  c.shared_prefix_output_len = 9;
  c.seed = 42;
  return c;
}

TEST(WorkloadTest, RandomHasExactLengthsAndIdsInRange) {
  workload_config c;
  c.kind = workload_kind::kRandom;
  c.num_prompts = 20;
  c.random_input_len = 33;
  c.random_output_len = 11;
  c.token_id_min = 100;
  c.token_id_max = 110;
  ASSERT_TRUE(validate(c));
  auto sessions = make_workload(c);
  ASSERT_EQ(sessions.size(), 20u);
  EXPECT_EQ(count_requests(sessions), 20);
  for (const auto& s : sessions) {
    EXPECT_TRUE(s.system.token_ids.empty());
    ASSERT_EQ(s.turns.size(), 1u);
    EXPECT_EQ(s.turns[0].question.token_ids.size(), 33u);
    EXPECT_EQ(s.turns[0].output_len, 11);
    for (auto id : s.turns[0].question.token_ids) {
      EXPECT_GE(id, 100);
      EXPECT_LT(id, 110);
    }
  }
}

TEST(WorkloadTest, RandomRangeRatioStaysWithinBounds) {
  workload_config c;
  c.kind = workload_kind::kRandom;
  c.num_prompts = 200;
  c.random_input_len = 100;
  c.random_output_len = 10;
  c.random_range_ratio = 0.5;
  auto sessions = make_workload(c);
  std::set<std::size_t> lengths;
  for (const auto& s : sessions) {
    std::size_t n = s.turns[0].question.token_ids.size();
    EXPECT_GE(n, 50u);
    EXPECT_LE(n, 150u);
    lengths.insert(n);
    EXPECT_GE(s.turns[0].output_len, 5);
    EXPECT_LE(s.turns[0].output_len, 15);
  }
  EXPECT_GT(lengths.size(), 10u);  // actually varied
}

TEST(WorkloadTest, SameSeedSameWorkloadOtherSeedDiffers) {
  auto c = shared_prefix_config();
  auto a = make_workload(c);
  auto b = make_workload(c);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].system.token_ids, b[i].system.token_ids);
    EXPECT_EQ(a[i].turns[0].question.token_ids, b[i].turns[0].question.token_ids);
    EXPECT_EQ(a[i].turns[0].question.text, b[i].turns[0].question.text);
  }
  c.seed = 43;
  auto d = make_workload(c);
  EXPECT_NE(a[0].turns[0].question.token_ids, d[0].turns[0].question.token_ids);
}

TEST(WorkloadTest, SharedPrefixGroupsShareTheirSystemPromptOnly) {
  auto c = shared_prefix_config();
  auto sessions = make_workload(c);
  ASSERT_EQ(sessions.size(), 15u);
  std::map<int, std::vector<std::int32_t>> system_of_group;
  std::map<int, int> count_of_group;
  for (const auto& s : sessions) {
    ASSERT_GE(s.group, 0);
    ASSERT_LT(s.group, 3);
    EXPECT_EQ(s.system.token_ids.size(), 40u);
    EXPECT_EQ(s.turns[0].question.token_ids.size(), 7u);
    EXPECT_EQ(s.turns[0].output_len, 9);
    auto [it, inserted] = system_of_group.emplace(s.group, s.system.token_ids);
    if (!inserted) {
      EXPECT_EQ(it->second, s.system.token_ids);
    }
    ++count_of_group[s.group];
  }
  for (auto& [g, n] : count_of_group) EXPECT_EQ(n, 5) << "group " << g;
  EXPECT_NE(system_of_group[0], system_of_group[1]);
  // Shuffled: the first five are not all of one group (fixed seed, so this is stable).
  std::set<int> first_groups;
  for (int i = 0; i < 5; ++i) first_groups.insert(sessions[static_cast<std::size_t>(i)].group);
  EXPECT_GT(first_groups.size(), 1u);
}

TEST(WorkloadTest, SharedPrefixUnshuffledIsGroupOrderAndNumPromptsCaps) {
  auto c = shared_prefix_config();
  c.shared_prefix_shuffle = false;
  c.num_prompts = 7;
  auto sessions = make_workload(c);
  ASSERT_EQ(sessions.size(), 7u);
  for (std::size_t i = 0; i < sessions.size(); ++i) {
    EXPECT_EQ(sessions[i].group, static_cast<int>(i / 5));
  }
}

TEST(WorkloadTest, MultiTurnConversationsAndCap) {
  workload_config c;
  c.kind = workload_kind::kMultiTurn;
  c.multi_turn_conversations = 4;
  c.multi_turn_turns = 3;
  c.multi_turn_system_len = 16;
  c.multi_turn_question_len = 5;
  c.multi_turn_output_len = 6;
  auto sessions = make_workload(c);
  ASSERT_EQ(sessions.size(), 4u);
  EXPECT_EQ(count_requests(sessions), 12);
  for (const auto& s : sessions) {
    EXPECT_EQ(s.system.token_ids, sessions[0].system.token_ids);
    EXPECT_EQ(s.system.token_ids.size(), 16u);
    ASSERT_EQ(s.turns.size(), 3u);
    for (const auto& t : s.turns) {
      EXPECT_EQ(t.question.token_ids.size(), 5u);
      EXPECT_EQ(t.output_len, 6);
    }
  }
  c.num_prompts = 7;
  auto capped = make_workload(c);
  EXPECT_EQ(count_requests(capped), 7);
  ASSERT_EQ(capped.size(), 3u);
  EXPECT_EQ(capped[2].turns.size(), 1u);
}

TEST(WorkloadTest, TextHasAboutOneWordPerToken) {
  std::uint64_t state = 7;
  std::string text = make_words(25, state);
  int words = 0;
  for (char ch : text) words += ch == ' ';
  EXPECT_EQ(words, 25);
  EXPECT_EQ(text.front(), ' ');
}

TEST(WorkloadTest, ValidateRejectsBadConfigs) {
  workload_config c;
  c.kind = workload_kind::kRandom;
  EXPECT_FALSE(validate(c));  // random needs num_prompts
  c.num_prompts = 3;
  EXPECT_TRUE(validate(c));
  c.token_id_max = c.token_id_min;
  EXPECT_FALSE(validate(c));
  auto sp = shared_prefix_config();
  sp.shared_prefix_question_len = 0;
  EXPECT_FALSE(validate(sp));
  EXPECT_TRUE(parse_workload_kind("multi-turn").is_ok());
  EXPECT_FALSE(parse_workload_kind("sharegpt").is_ok());
}

}  // namespace
}  // namespace kvserve::bench
