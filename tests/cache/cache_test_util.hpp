#pragma once
// Helpers shared by the cache tests.

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <numeric>
#include <vector>

#include "cache/kv_cache_manager.hpp"

namespace kvserve::testing {

/// Tokens [start, start + n).
inline std::vector<std::int32_t> iota_tokens(int n, int start = 0) {
  std::vector<std::int32_t> t(static_cast<std::size_t>(n));
  std::iota(t.begin(), t.end(), start);
  return t;
}

inline std::vector<std::int32_t> concat(std::vector<std::int32_t> a,
                                        const std::vector<std::int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

inline std::unique_ptr<kv_cache_manager> make_manager(kv_cache_config config) {
  auto m = kv_cache_manager::create(std::move(config));
  EXPECT_TRUE(m.is_ok()) << (m.is_ok() ? "" : m.error().message());
  return std::move(m).value();
}

inline sequence_request request(seq_id id, const std::vector<std::int32_t>& tokens,
                                int num_tokens = -1) {
  sequence_request r;
  r.id = id;
  r.tokens = tokens;
  r.num_tokens = num_tokens;
  return r;
}

/// Admits one sequence; returns its allocation.
inline sequence_allocation admit(kv_cache_manager& m, const sequence_request& r) {
  allocation_plan plan = m.allocate(std::span<const sequence_request>(&r, 1));
  return plan.seqs.at(0);
}

#define KV_EXPECT_OK(expr)                                            \
  do {                                                                \
    auto kv_st_ = (expr);                                             \
    EXPECT_TRUE(kv_st_.is_ok()) << #expr << ": " << kv_st_.message(); \
  } while (0)

#define KV_ASSERT_INVARIANTS(m)                      \
  do {                                               \
    auto kv_st_ = (m).check_invariants();            \
    ASSERT_TRUE(kv_st_.is_ok()) << kv_st_.message(); \
  } while (0)

}  // namespace kvserve::testing
