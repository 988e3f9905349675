// step_allocator without CAF: growth only for the sequences that ask, preemption from the back
// of the running order (including sequences that asked for no block).

#include "actors/step_allocator.hpp"

#include <gtest/gtest.h>

#include <numeric>

namespace kvserve {
namespace {

std::unique_ptr<step_allocator> make_allocator(int num_blocks, int block_size) {
  kv_cache_config kc;
  kc.num_blocks = num_blocks;
  kc.block_size = block_size;
  return std::move(step_allocator::create(kc).value());
}

block_request admit(seq_id id, int num_tokens, int base) {
  block_request r;
  r.id = id;
  r.tokens.resize(num_tokens);
  std::iota(r.tokens.begin(), r.tokens.end(), base);
  return r;
}

block_request grow(seq_id id, int num_tokens, int num_known_blocks) {
  block_request r;
  r.id = id;
  r.num_tokens = num_tokens;
  r.num_known_blocks = num_known_blocks;
  return r;
}

/// Two sequences of 8 tokens in a pool of 4 blocks of 4: the pool is full.
std::unique_ptr<step_allocator> full_pool() {
  auto a = make_allocator(4, 4);
  cache_step_request r;
  r.admits = {admit(1, 8, 1), admit(2, 8, 101)};
  cache_step_reply reply = a->apply(r);
  EXPECT_EQ(reply.admits.size(), 2u);
  for (const auto& g : reply.admits) EXPECT_EQ(g.status, grant_status::kGranted);
  EXPECT_EQ(a->stats().num_blocks_free, 0);
  return a;
}

TEST(step_allocator, a_grow_preempts_a_running_sequence_behind_it_that_asked_for_nothing) {
  auto a = full_pool();
  cache_step_request r;
  r.running = {1, 2};  // 2 is less important and needs no block this step
  r.grows = {grow(1, 9, 2)};
  cache_step_reply reply = a->apply(r);
  ASSERT_EQ(reply.grows.size(), 1u);
  EXPECT_EQ(reply.grows[0].status, grant_status::kGranted);
  EXPECT_EQ(reply.grows[0].block_table.size(), 1u);  // only the new block
  EXPECT_EQ(reply.preempted, std::vector<seq_id>{2});
  EXPECT_FALSE(a->cache().contains(2));
  EXPECT_EQ(a->cache().block_table(1).size(), 3u);
  EXPECT_TRUE(a->cache().check_invariants().is_ok());
}

TEST(step_allocator, the_last_running_sequence_preempts_itself) {
  auto a = full_pool();
  cache_step_request r;
  r.running = {1, 2};
  r.grows = {grow(2, 9, 2)};  // nobody behind 2: it is the victim
  cache_step_reply reply = a->apply(r);
  ASSERT_EQ(reply.grows.size(), 1u);
  EXPECT_EQ(reply.grows[0].status, grant_status::kPreempted);
  EXPECT_TRUE(reply.preempted.empty());
  EXPECT_FALSE(a->cache().contains(2));
  EXPECT_TRUE(a->cache().contains(1));
  EXPECT_TRUE(a->cache().check_invariants().is_ok());
}

TEST(step_allocator, a_victim_that_also_asked_to_grow_gets_a_preempted_grant) {
  auto a = full_pool();
  cache_step_request r;
  r.running = {1, 2};
  r.grows = {grow(1, 9, 2), grow(2, 9, 2)};
  cache_step_reply reply = a->apply(r);
  ASSERT_EQ(reply.grows.size(), 2u);
  EXPECT_EQ(reply.grows[0].status, grant_status::kGranted);
  EXPECT_EQ(reply.grows[1].status, grant_status::kPreempted);
  EXPECT_TRUE(reply.preempted.empty());  // reported once, through its grant
  EXPECT_TRUE(a->cache().check_invariants().is_ok());
}

TEST(step_allocator, without_a_running_order_grows_are_the_order) {
  auto a = full_pool();
  cache_step_request r;
  r.grows = {grow(1, 9, 2), grow(2, 8, 2)};  // 2 needs nothing new but is behind 1
  cache_step_reply reply = a->apply(r);
  ASSERT_EQ(reply.grows.size(), 2u);
  EXPECT_EQ(reply.grows[0].status, grant_status::kGranted);
  EXPECT_EQ(reply.grows[1].status, grant_status::kPreempted);
  EXPECT_TRUE(a->cache().check_invariants().is_ok());
}

}  // namespace
}  // namespace kvserve
