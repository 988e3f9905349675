#pragma once
/// Cache statistics as a plain struct, for metrics (monitoring/) and tests.

#include <array>
#include <cstdint>

namespace kvserve {

/// Why a block was evicted.
enum class eviction_reason {
  kCapacity,  ///< room was needed; the block had the default (or a lower) priority
  kRetained,  ///< room was needed and only blocks above the default priority were left
  kOrphan,    ///< lru-any: the block had been cut off from the root (wasted) before eviction
  kReset,     ///< reset_prefix_cache()
};
inline constexpr int kNumEvictionReasons = 4;

/// "capacity", "retained", "orphan", "reset".
const char* to_string(eviction_reason reason);

/// Gauges (now) and cumulative counters (since creation). Every block is exactly one of free,
/// cached (in the tree, unlocked, evictable) or locked (used by a live sequence: on its
/// matched/committed path, or private to it).
struct kv_cache_stats {
  std::int64_t num_blocks_total = 0;
  std::int64_t num_blocks_free = 0;
  std::int64_t num_blocks_cached = 0;  ///< unlocked in the tree (orphans included)
  std::int64_t num_blocks_locked = 0;
  std::int64_t num_blocks_orphaned = 0;  ///< lru-any only: cached but unreachable (wasted)
  /// Blocks in the tree whose retention priority is above the default and not expired.
  std::int64_t num_blocks_retained = 0;
  /// Of those, the cached (unlocked) ones: evicted only once every other cached block is gone.
  std::int64_t num_blocks_cached_retained = 0;
  std::int64_t num_sequences = 0;  ///< live sequences
  // Cumulative.
  std::uint64_t prefix_queries_tokens = 0;  ///< prompt tokens of admitted sequences
  std::uint64_t prefix_hits_tokens = 0;     ///< of those, tokens served from the cache
  std::uint64_t num_blocks_committed = 0;   ///< blocks inserted into the tree
  std::uint64_t num_blocks_orphaned_total = 0;
  std::array<std::uint64_t, kNumEvictionReasons> evictions{};  ///< indexed by eviction_reason

  std::uint64_t evictions_by(eviction_reason r) const { return evictions[static_cast<int>(r)]; }
  std::uint64_t num_evictions() const {
    std::uint64_t n = 0;
    for (auto e : evictions) n += e;
    return n;
  }
  /// Hits / queries in tokens; 0 when there were no queries.
  double prefix_hit_rate() const {
    return prefix_queries_tokens == 0 ? 0.0
                                      : static_cast<double>(prefix_hits_tokens) /
                                            static_cast<double>(prefix_queries_tokens);
  }
};

}  // namespace kvserve
