// Eviction order: dependent-first, retention priorities and windows (injected clock), LRU among
// equals, LFU, and the lru-any baseline's orphaning. Small worlds: 8 blocks.

#include <gtest/gtest.h>

#include <chrono>

#include "cache_test_util.hpp"

namespace kvserve {
namespace {

using namespace std::chrono_literals;
using testing::admit;
using testing::concat;
using testing::iota_tokens;
using testing::make_manager;
using testing::request;

class Eviction : public ::testing::TestWithParam<int> {
 protected:
  int bs() const { return GetParam(); }
  std::unique_ptr<kv_cache_manager> make(eviction_policy_kind policy, int num_blocks = 8) {
    kv_cache_config c;
    c.num_blocks = num_blocks;
    c.block_size = bs();
    c.eviction_policy = policy;
    c.clock = clock_.clock();
    c.debug_check_invariants = true;
    return make_manager(c);
  }
  std::vector<std::int32_t> blocks(int n, int start) { return iota_tokens(n * bs(), start); }

  /// Runs a sequence over `tokens` (whole blocks), commits them, releases it; returns its
  /// block table.
  std::vector<std::int32_t> cache_blocks(kv_cache_manager& m, seq_id id,
                                         const std::vector<std::int32_t>& tokens,
                                         std::optional<retention_config> retention = {}) {
    auto r = request(id, tokens);
    r.retention = retention;
    auto a = admit(m, r);
    EXPECT_TRUE(a.admitted());
    std::vector<std::int32_t> table(m.block_table(id).begin(), m.block_table(id).end());
    KV_EXPECT_OK(m.commit(id, tokens));
    KV_EXPECT_OK(m.release(id));
    return table;
  }
  /// Takes `n` blocks with a fresh sequence (forcing evictions); returns its id.
  seq_id take(kv_cache_manager& m, int n) {
    seq_id id = next_id_++;
    auto a = admit(m, request(id, iota_tokens(n * bs(), 100000 + static_cast<int>(id) * 1000)));
    EXPECT_TRUE(a.admitted());
    return id;
  }
  bool cached(kv_cache_manager& m, const std::vector<std::int32_t>& tokens, int num_blocks) {
    // Matching `tokens` + one extra token tells how many whole blocks are cached.
    auto t = concat(tokens, {-1});
    auto plan = m.plan_allocation(std::vector<sequence_request>{request(999999, t)});
    return plan.seqs[0].num_cached_tokens == num_blocks * bs();
  }
  manual_clock clock_;
  seq_id next_id_ = 1000;
};

TEST_P(Eviction, DependentFirstEvictsLeavesBeforeOlderParents) {
  auto m = make(eviction_policy_kind::kDependentLru);
  // Block a is cached first; b and c extend it later, so a is the least recently used.
  auto a = blocks(1, 0);
  cache_blocks(*m, 1, a);
  auto abc = concat(a, blocks(2, 50));
  cache_blocks(*m, 2, abc);
  KV_ASSERT_INVARIANTS(*m);
  // abc matched a at admission (touching it), then committed b, c later: a is oldest.
  take(*m, 6);  // 5 free + 1 eviction: the leaf c goes, never a
  KV_ASSERT_INVARIANTS(*m);
  EXPECT_TRUE(cached(*m, abc, 2));
  auto s = m->stats();
  EXPECT_EQ(s.num_blocks_orphaned_total, 0u);
  EXPECT_EQ(s.evictions_by(eviction_reason::kCapacity), 1u);
  take(*m, 1);
  EXPECT_TRUE(cached(*m, abc, 1));
  KV_ASSERT_INVARIANTS(*m);
}

TEST_P(Eviction, LruAnyEvictsInteriorBlocksAndOrphansDescendants) {
  auto m = make(eviction_policy_kind::kLruAny);
  auto a = blocks(1, 0);
  cache_blocks(*m, 1, concat(a, {1}));  // a committed, one private block freed
  auto abc = concat(a, blocks(2, 50));
  cache_blocks(*m, 2, concat(abc, {1}));
  KV_ASSERT_INVARIANTS(*m);
  // a was last touched when sequence 2 matched it; b and c were committed after.
  take(*m, 6);
  KV_ASSERT_INVARIANTS(*m);
  auto s = m->stats();
  EXPECT_EQ(s.num_blocks_orphaned, 2);  // b and c: cached, unreachable, wasted
  EXPECT_EQ(s.num_blocks_cached, 2);
  EXPECT_TRUE(cached(*m, abc, 0));
  take(*m, 2);
  s = m->stats();
  EXPECT_EQ(s.evictions_by(eviction_reason::kOrphan), 2u);
  EXPECT_EQ(s.num_blocks_orphaned, 0);
  KV_ASSERT_INVARIANTS(*m);
}

TEST_P(Eviction, LruOrderAmongEquals) {
  auto m = make(eviction_policy_kind::kDependentLru);
  auto x = blocks(1, 0), y = blocks(1, 100), z = blocks(1, 200);
  cache_blocks(*m, 1, x);
  cache_blocks(*m, 2, y);
  cache_blocks(*m, 3, z);
  // Touch x again: now y is the least recently used, then z, then x.
  cache_blocks(*m, 4, concat(x, {1}));
  take(*m, 6);  // 5 free + 1
  EXPECT_FALSE(cached(*m, y, 1));
  EXPECT_TRUE(cached(*m, z, 1));
  EXPECT_TRUE(cached(*m, x, 1));
  take(*m, 1);
  EXPECT_FALSE(cached(*m, z, 1));
  EXPECT_TRUE(cached(*m, x, 1));
  KV_ASSERT_INVARIANTS(*m);
}

TEST_P(Eviction, LowerPriorityGoesFirst) {
  auto m = make(eviction_policy_kind::kDependentLru);
  auto sys = blocks(1, 0), other = blocks(1, 100);
  cache_blocks(*m, 1, sys, retention_config{bs(), 90, std::nullopt});
  cache_blocks(*m, 2, other);  // more recent, but default priority
  EXPECT_EQ(m->stats().num_blocks_retained, 1);
  EXPECT_EQ(m->stats().num_blocks_cached_retained, 1);
  take(*m, 7);
  EXPECT_TRUE(cached(*m, sys, 1));
  EXPECT_FALSE(cached(*m, other, 1));
  take(*m, 1);  // only the retained block is left to evict
  EXPECT_FALSE(cached(*m, sys, 1));
  EXPECT_EQ(m->stats().evictions_by(eviction_reason::kRetained), 1u);
  KV_ASSERT_INVARIANTS(*m);
}

TEST_P(Eviction, RetentionCoversOnlyTheFirstTokens) {
  auto m = make(eviction_policy_kind::kDependentLru);
  auto ab = blocks(2, 0);
  cache_blocks(*m, 1, ab, retention_config{bs() + bs() / 2, 90, std::nullopt});
  // Only block a lies entirely inside the first 1.5 blocks.
  EXPECT_EQ(m->stats().num_blocks_retained, 1);
  take(*m, 7);
  EXPECT_TRUE(cached(*m, ab, 1));
  KV_ASSERT_INVARIANTS(*m);
}

TEST_P(Eviction, RetentionWindowExpires) {
  auto m = make(eviction_policy_kind::kDependentLru);
  auto sys = blocks(1, 0), other = blocks(1, 100);
  cache_blocks(*m, 1, sys, retention_config{bs(), 90, std::chrono::nanoseconds(10s)});
  clock_.advance(5s);
  cache_blocks(*m, 2, other);
  clock_.advance(6s);  // 11 s: sys is back at the default priority and older
  take(*m, 7);
  EXPECT_FALSE(cached(*m, sys, 1));
  EXPECT_TRUE(cached(*m, other, 1));
  EXPECT_EQ(m->stats().num_blocks_retained, 0);
  KV_ASSERT_INVARIANTS(*m);
}

TEST_P(Eviction, RetentionWindowStillOpenProtects) {
  auto m = make(eviction_policy_kind::kDependentLru);
  auto sys = blocks(1, 0), other = blocks(1, 100);
  cache_blocks(*m, 1, sys, retention_config{bs(), 90, std::chrono::nanoseconds(10s)});
  clock_.advance(5s);
  cache_blocks(*m, 2, other);
  clock_.advance(4s);  // 9 s: still retained
  take(*m, 7);
  EXPECT_TRUE(cached(*m, sys, 1));
  EXPECT_FALSE(cached(*m, other, 1));
  KV_ASSERT_INVARIANTS(*m);
}

TEST_P(Eviction, HighestRetentionWins) {
  auto m = make(eviction_policy_kind::kDependentLru);
  auto sys = blocks(1, 0), other = blocks(1, 100);
  cache_blocks(*m, 1, sys, retention_config{bs(), 90, std::nullopt});
  // A later, lower retention on the same block does not lower it.
  cache_blocks(*m, 2, concat(sys, {1}), retention_config{bs(), 10, std::nullopt});
  cache_blocks(*m, 3, other);
  take(*m, 7);
  EXPECT_TRUE(cached(*m, sys, 1));
  KV_ASSERT_INVARIANTS(*m);
}

TEST_P(Eviction, LfuKeepsFrequentlyHitBlocks) {
  auto m = make(eviction_policy_kind::kDependentLfu);
  auto hot = blocks(1, 0), cold = blocks(1, 100);
  cache_blocks(*m, 1, hot);
  for (int i = 0; i < 3; ++i) cache_blocks(*m, 10 + i, concat(hot, {i}));
  cache_blocks(*m, 2, cold);  // more recent, fewer hits
  take(*m, 7);
  EXPECT_TRUE(cached(*m, hot, 1));
  EXPECT_FALSE(cached(*m, cold, 1));
  // The same history under LRU evicts the hot block.
  auto lru = make(eviction_policy_kind::kDependentLru);
  cache_blocks(*lru, 1, hot);
  for (int i = 0; i < 3; ++i) cache_blocks(*lru, 10 + i, concat(hot, {i}));
  cache_blocks(*lru, 2, cold);
  take(*lru, 7);
  EXPECT_FALSE(cached(*lru, hot, 1));
  KV_ASSERT_INVARIANTS(*m);
}

TEST_P(Eviction, LockedBlocksAreNeverEvicted) {
  auto m = make(eviction_policy_kind::kLruAny);
  auto p = blocks(2, 0);
  auto a = admit(*m, request(1, concat(p, {1})));
  ASSERT_TRUE(a.admitted());
  KV_EXPECT_OK(m->commit(1, p));
  auto big = admit(*m, request(2, blocks(6, 500)));
  EXPECT_FALSE(big.admitted());
  EXPECT_EQ(big.status, admission_status::kOutOfBlocks);
  take(*m, 5);
  EXPECT_EQ(m->stats().num_evictions(), 0u);
  KV_ASSERT_INVARIANTS(*m);
}

INSTANTIATE_TEST_SUITE_P(BlockSizes, Eviction, ::testing::Values(2, 4, 8, 16, 32, 64),
                         [](const auto& info) { return "bs" + std::to_string(info.param); });

}  // namespace
}  // namespace kvserve
