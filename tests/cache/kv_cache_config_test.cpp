#include <gtest/gtest.h>

#include "cache/block_pool.hpp"
#include "cache/kv_cache_manager.hpp"

namespace kvserve {
namespace {

TEST(KvCacheConfig, RejectsUnsupportedBlockSizes) {
  for (int bs : {0, 1, 3, 12, 24, 128, -16}) {
    kv_cache_config c;
    c.num_blocks = 8;
    c.block_size = bs;
    auto m = kv_cache_manager::create(c);
    ASSERT_FALSE(m.is_ok()) << bs;
    EXPECT_EQ(m.error().code(), cache_errc::kInvalidConfig);
    EXPECT_NE(m.error().message().find("block_size"), std::string::npos);
  }
}

TEST(KvCacheConfig, AcceptsSupportedBlockSizes) {
  for (int bs : {2, 4, 8, 16, 32, 64}) {
    kv_cache_config c;
    c.num_blocks = 8;
    c.block_size = bs;
    auto m = kv_cache_manager::create(c);
    ASSERT_TRUE(m.is_ok()) << bs;
    EXPECT_EQ((*m)->block_size(), bs);
    EXPECT_EQ((*m)->stats().num_blocks_free, 8);
  }
}

TEST(KvCacheConfig, RejectsEmptyPool) {
  kv_cache_config c;
  c.num_blocks = 0;
  auto m = kv_cache_manager::create(c);
  ASSERT_FALSE(m.is_ok());
  EXPECT_EQ(m.error().code(), cache_errc::kInvalidConfig);
}

TEST(KvCacheConfig, ParsesPolicyNames) {
  for (auto k : {eviction_policy_kind::kDependentLru, eviction_policy_kind::kDependentLfu,
                 eviction_policy_kind::kLruAny}) {
    EXPECT_EQ(parse_eviction_policy(to_string(k)), k);
  }
  EXPECT_FALSE(parse_eviction_policy("lru").has_value());
}

TEST(BlockPool, AllocatesEveryBlockOnceAndReusesFreed) {
  block_pool pool(4);
  std::vector<int> got;
  while (auto b = pool.allocate()) got.push_back(to_index(*b));
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(pool.num_free(), 0);
  pool.free(to_block_id(2));
  EXPECT_FALSE(pool.in_use(to_block_id(2)));
  EXPECT_EQ(to_index(*pool.allocate()), 2);
  EXPECT_FALSE(pool.allocate().has_value());
}

}  // namespace
}  // namespace kvserve
