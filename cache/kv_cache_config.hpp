#pragma once
/// Configuration of the KV cache manager: pool size, block size, eviction policy, prefix
/// caching on/off, clock.

#include <optional>
#include <string_view>

#include "cache/cache_clock.hpp"
#include "cache/cache_status.hpp"
#include "cache/eviction_policy.hpp"

namespace kvserve {

/// The block sizes the engine supports (tokens per KV block).
inline constexpr int kSupportedBlockSizes[] = {2, 4, 8, 16, 32, 64};

/// True for 2, 4, 8, 16, 32 and 64.
bool is_supported_block_size(int block_size);

struct kv_cache_config {
  int num_blocks = 0;   ///< blocks in the pool, >= 1
  int block_size = 16;  ///< tokens per block: 2, 4, 8, 16, 32 or 64
  eviction_policy_kind eviction_policy = eviction_policy_kind::kDependentLru;
  /// false (--no-enable-prefix-caching): no lookups and no commits; every block is private to
  /// its sequence and freed on release. Everything else is the same.
  bool enable_prefix_caching = true;
  /// Time source for retention windows; empty means steady_cache_clock().
  cache_clock clock;
  /// After every mutating call, run check_invariants() (O(num_blocks)); a violation asserts in
  /// debug builds and is returned as kInvariantViolated. For tests and debug builds.
  bool debug_check_invariants = false;
};

/// ok, or kInvalidConfig with a message naming the bad field.
cache_status validate(const kv_cache_config& config);

}  // namespace kvserve
