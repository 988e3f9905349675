// Unit tests of the manager facade on small worlds: 8 blocks, every supported block size.

#include <gtest/gtest.h>

#include "cache_test_util.hpp"

namespace kvserve {
namespace {

using testing::admit;
using testing::concat;
using testing::iota_tokens;
using testing::make_manager;
using testing::request;

class KvCacheManager : public ::testing::TestWithParam<int> {
 protected:
  int bs() const { return GetParam(); }
  std::unique_ptr<kv_cache_manager> make(
      eviction_policy_kind policy = eviction_policy_kind::kDependentLru, int num_blocks = 8,
      bool caching = true) {
    kv_cache_config c;
    c.num_blocks = num_blocks;
    c.block_size = bs();
    c.eviction_policy = policy;
    c.enable_prefix_caching = caching;
    c.clock = clock_.clock();
    c.debug_check_invariants = true;
    return make_manager(c);
  }
  /// n full blocks of distinct tokens starting at `start`.
  std::vector<std::int32_t> blocks(int n, int start = 0) { return iota_tokens(n * bs(), start); }
  manual_clock clock_;
};

TEST_P(KvCacheManager, AdmitsAndAllocatesWholeBlocks) {
  auto m = make();
  auto prompt = iota_tokens(3 * bs() + 1);
  auto a = admit(*m, request(1, prompt));
  EXPECT_TRUE(a.admitted());
  EXPECT_EQ(a.num_cached_tokens, 0);
  EXPECT_EQ(a.num_new_blocks, 4);
  EXPECT_EQ(m->block_table(1).size(), 4u);
  auto s = m->stats();
  EXPECT_EQ(s.num_blocks_locked, 4);
  EXPECT_EQ(s.num_blocks_free, 4);
  EXPECT_EQ(s.prefix_queries_tokens, prompt.size());
  EXPECT_EQ(s.prefix_hits_tokens, 0u);
  KV_ASSERT_INVARIANTS(*m);
}

TEST_P(KvCacheManager, ReleasedBlocksStayCachedAndMatch) {
  auto m = make();
  auto prompt = iota_tokens(3 * bs() + 1);
  (void)admit(*m, request(1, prompt));
  KV_EXPECT_OK(m->commit(1, prompt));
  KV_EXPECT_OK(m->release(1));
  auto s = m->stats();
  EXPECT_EQ(s.num_blocks_cached, 3);
  EXPECT_EQ(s.num_blocks_locked, 0);
  EXPECT_EQ(s.num_blocks_free, 5);
  KV_ASSERT_INVARIANTS(*m);

  auto a = admit(*m, request(2, prompt));
  ASSERT_TRUE(a.admitted());
  EXPECT_EQ(a.num_cached_tokens, 3 * bs());
  EXPECT_EQ(a.num_new_blocks, 1);
  EXPECT_EQ(m->num_cached_tokens(2), 3 * bs());
  EXPECT_EQ(m->stats().prefix_hits_tokens, static_cast<std::uint64_t>(3 * bs()));
  KV_ASSERT_INVARIANTS(*m);
}

TEST_P(KvCacheManager, FullyCachedPromptLeavesLastTokenToCompute) {
  auto m = make();
  auto prompt = blocks(2);
  (void)admit(*m, request(1, prompt));
  KV_EXPECT_OK(m->commit(1, prompt));
  KV_EXPECT_OK(m->release(1));
  auto a = admit(*m, request(2, prompt));
  EXPECT_EQ(a.num_cached_tokens, bs());  // the second block is recomputed
  EXPECT_EQ(a.num_new_blocks, 1);
  // Committing the recomputed block finds the cached copy: the tree keeps one copy.
  KV_EXPECT_OK(m->commit(2, prompt));
  KV_ASSERT_INVARIANTS(*m);
  KV_EXPECT_OK(m->release(2));
  EXPECT_EQ(m->stats().num_blocks_cached, 2);
  KV_ASSERT_INVARIANTS(*m);
}

TEST_P(KvCacheManager, EarlyReuseWhileOwnerRuns) {
  auto m = make();
  auto prompt = blocks(2);
  auto a = admit(*m, request(1, prompt, 3 * bs()));
  ASSERT_TRUE(a.admitted());
  KV_EXPECT_OK(m->commit(1, prompt));  // prefill done, sequence 1 keeps running
  auto b = admit(*m, request(2, concat(prompt, {7})));
  ASSERT_TRUE(b.admitted());
  EXPECT_EQ(b.num_cached_tokens, 2 * bs());
  EXPECT_EQ(b.cached_blocks,
            std::vector<std::int32_t>(m->block_table(1).begin(), m->block_table(1).begin() + 2));
  EXPECT_EQ(m->stats().num_blocks_locked, 3 + 1);
  KV_ASSERT_INVARIANTS(*m);
  KV_EXPECT_OK(m->release(1));
  KV_ASSERT_INVARIANTS(*m);
  EXPECT_EQ(m->stats().num_blocks_locked, 3);  // sequence 2 still holds the shared path
  KV_EXPECT_OK(m->release(2));
  EXPECT_EQ(m->stats().num_blocks_locked, 0);
  KV_ASSERT_INVARIANTS(*m);
}

TEST_P(KvCacheManager, DecodeCommitsEachBlockAsItFills) {
  auto m = make();
  auto tokens = iota_tokens(bs() - 1);
  (void)admit(*m, request(1, tokens));
  EXPECT_EQ(m->block_table(1).size(), 1u);
  for (int i = 0; i < 2 * bs(); ++i) {
    tokens.push_back(1000 + i);
    KV_EXPECT_OK(m->grow(1, static_cast<int>(tokens.size())));
    KV_EXPECT_OK(m->commit(1, tokens));
    EXPECT_EQ(m->num_committed_tokens(1), static_cast<int>(tokens.size()) / bs() * bs());
    KV_ASSERT_INVARIANTS(*m);
  }
  EXPECT_EQ(m->block_table(1).size(), 3u);
  EXPECT_EQ(m->stats().num_blocks_committed, 2u);
}

TEST_P(KvCacheManager, PlanIsPureAndApplyRejectsStalePlans) {
  auto m = make();
  auto prompt = blocks(2);
  (void)admit(*m, request(1, concat(prompt, {1})));
  KV_EXPECT_OK(m->commit(1, prompt));
  KV_EXPECT_OK(m->release(1));
  auto before = m->stats();
  auto tokens = concat(prompt, {5});  // requests only view their tokens
  std::vector<sequence_request> batch{request(2, tokens)};
  auto p1 = m->plan_allocation(batch);
  auto p2 = m->plan_allocation(batch);
  EXPECT_EQ(p1.seqs[0].cached_blocks, p2.seqs[0].cached_blocks);
  auto after = m->stats();
  EXPECT_EQ(before.prefix_queries_tokens, after.prefix_queries_tokens);
  EXPECT_EQ(before.num_blocks_cached, after.num_blocks_cached);
  EXPECT_FALSE(m->contains(2));
  (void)admit(*m, request(3, blocks(1, 500)));
  auto st = m->apply(p1);
  EXPECT_EQ(st.code(), cache_errc::kStalePlan);
  EXPECT_FALSE(m->contains(2));
  KV_ASSERT_INVARIANTS(*m);
}

TEST_P(KvCacheManager, SaysWhichSequencesCannotBeServed) {
  auto m = make();
  std::vector<std::vector<std::int32_t>> prompts{blocks(3, 0), blocks(4, 100), blocks(2, 200),
                                                 blocks(1, 300)};
  std::vector<sequence_request> batch;
  for (int i = 0; i < 4; ++i) batch.push_back(request(10 + i, prompts[i]));
  // 3 + 4 fit in 8 blocks, 2 does not, 1 would.
  auto fcfs = m->plan_allocation(batch, admission_order::kStopAtFirstFailure);
  EXPECT_EQ(fcfs.seqs[2].status, admission_status::kOutOfBlocks);
  EXPECT_EQ(fcfs.seqs[3].status, admission_status::kNotConsidered);
  EXPECT_EQ(fcfs.not_served, (std::vector<seq_id>{12, 13}));
  auto skip = m->plan_allocation(batch, admission_order::kSkipFailures);
  EXPECT_EQ(skip.seqs[3].status, admission_status::kAdmitted);
  EXPECT_EQ(skip.not_served, (std::vector<seq_id>{12}));
  KV_EXPECT_OK(m->apply(skip));
  EXPECT_EQ(m->stats().num_blocks_free, 0);
  EXPECT_TRUE(m->contains(13));
  EXPECT_FALSE(m->contains(12));
  KV_ASSERT_INVARIANTS(*m);
}

TEST_P(KvCacheManager, RejectsDuplicatesAndOversizedRequests) {
  auto m = make();
  (void)admit(*m, request(1, blocks(1)));
  auto t1 = blocks(1, 50), t2 = blocks(1, 60), t3 = blocks(1, 70), t4 = blocks(9, 80);
  std::vector<sequence_request> batch{request(1, t1), request(2, t2), request(2, t3),
                                      request(3, t4)};
  auto plan = m->plan_allocation(batch, admission_order::kSkipFailures);
  EXPECT_EQ(plan.seqs[0].status, admission_status::kDuplicate);
  EXPECT_EQ(plan.seqs[1].status, admission_status::kAdmitted);
  EXPECT_EQ(plan.seqs[2].status, admission_status::kDuplicate);
  EXPECT_EQ(plan.seqs[3].status, admission_status::kNeverFits);
  sequence_request bad = request(4, blocks(1));
  bad.retention = retention_config{bs(), 101, std::nullopt};
  EXPECT_EQ(admit(*m, bad).status, admission_status::kInvalid);
}

TEST_P(KvCacheManager, GrowFailsWithoutChangingAnything) {
  auto m = make();
  (void)admit(*m, request(1, blocks(6)));
  (void)admit(*m, request(2, blocks(1, 100)));
  EXPECT_EQ(m->blocks_needed_to_grow(2, 3 * bs()), 2);
  auto st = m->grow(2, 3 * bs());
  EXPECT_EQ(st.code(), cache_errc::kOutOfBlocks);
  EXPECT_EQ(m->block_table(2).size(), 1u);
  KV_EXPECT_OK(m->grow(2, 2 * bs()));
  EXPECT_EQ(m->grow(99, 1).code(), cache_errc::kUnknownSequence);
  EXPECT_EQ(m->release(99).code(), cache_errc::kUnknownSequence);
  KV_ASSERT_INVARIANTS(*m);
}

TEST_P(KvCacheManager, CommitBeyondCapacityIsAnError) {
  auto m = make();
  (void)admit(*m, request(1, blocks(1)));
  EXPECT_EQ(m->commit(1, blocks(2)).code(), cache_errc::kInvalidArgument);
  KV_ASSERT_INVARIANTS(*m);
}

TEST_P(KvCacheManager, SameBlocksCommittedTwiceKeepOneCopy) {
  auto m = make();
  auto prompt = concat(blocks(2), {9});
  std::vector<sequence_request> batch{request(1, prompt), request(2, prompt)};
  auto plan = m->allocate(batch);
  ASSERT_TRUE(plan.seqs[1].admitted());
  EXPECT_EQ(plan.seqs[1].num_cached_tokens, 0);  // nothing was committed yet
  KV_EXPECT_OK(m->commit(1, prompt));
  KV_EXPECT_OK(m->commit(2, prompt));
  KV_ASSERT_INVARIANTS(*m);
  KV_EXPECT_OK(m->release(2));
  KV_ASSERT_INVARIANTS(*m);
  KV_EXPECT_OK(m->release(1));
  auto s = m->stats();
  EXPECT_EQ(s.num_blocks_cached, 2);
  EXPECT_EQ(s.num_blocks_free, 6);
  KV_ASSERT_INVARIANTS(*m);
}

TEST_P(KvCacheManager, NamespacesNeverShare) {
  auto m = make();
  auto prompt = concat(blocks(2), {1});
  auto r1 = request(1, prompt);
  r1.cache_namespace = "tenant-a";
  (void)admit(*m, r1);
  KV_EXPECT_OK(m->commit(1, prompt));
  KV_EXPECT_OK(m->release(1));
  auto r2 = request(2, prompt);
  r2.cache_namespace = "tenant-b";
  EXPECT_EQ(admit(*m, r2).num_cached_tokens, 0);
  auto r3 = request(3, prompt);  // default namespace
  EXPECT_EQ(admit(*m, r3).num_cached_tokens, 0);
  KV_EXPECT_OK(m->release(2));
  KV_EXPECT_OK(m->release(3));
  auto r4 = request(4, prompt);
  r4.cache_namespace = "tenant-a";
  EXPECT_EQ(admit(*m, r4).num_cached_tokens, 2 * bs());
  KV_ASSERT_INVARIANTS(*m);
}

TEST_P(KvCacheManager, DisabledPrefixCachingNeverLooksUpOrCommits) {
  auto m = make(eviction_policy_kind::kDependentLru, 8, /*caching=*/false);
  auto prompt = concat(blocks(2), {1});
  (void)admit(*m, request(1, prompt));
  KV_EXPECT_OK(m->commit(1, prompt));
  KV_ASSERT_INVARIANTS(*m);
  KV_EXPECT_OK(m->release(1));
  auto a = admit(*m, request(2, prompt));
  EXPECT_EQ(a.num_cached_tokens, 0);
  auto s = m->stats();
  EXPECT_EQ(s.num_blocks_cached, 0);
  EXPECT_EQ(s.num_blocks_free, 5);
  EXPECT_EQ(s.prefix_queries_tokens, 0u);
  EXPECT_EQ(s.num_blocks_committed, 0u);
  KV_ASSERT_INVARIANTS(*m);
}

TEST_P(KvCacheManager, ResetEvictsOnlyUnlockedBlocks) {
  auto m = make();
  auto p1 = concat(blocks(2), {1});
  auto p2 = concat(blocks(2, 100), {1});
  (void)admit(*m, request(1, p1));
  (void)admit(*m, request(2, p2));
  KV_EXPECT_OK(m->commit(1, p1));
  KV_EXPECT_OK(m->commit(2, p2));
  KV_EXPECT_OK(m->release(1));
  m->reset_prefix_cache();
  auto s = m->stats();
  EXPECT_EQ(s.num_blocks_cached, 0);
  EXPECT_EQ(s.evictions_by(eviction_reason::kReset), 2u);
  EXPECT_EQ(s.num_blocks_locked, 3);
  KV_ASSERT_INVARIANTS(*m);
}

INSTANTIATE_TEST_SUITE_P(BlockSizes, KvCacheManager, ::testing::Values(2, 4, 8, 16, 32, 64),
                         [](const auto& info) { return "bs" + std::to_string(info.param); });

}  // namespace
}  // namespace kvserve
