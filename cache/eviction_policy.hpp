#pragma once
/// Eviction policies. A policy only ranks blocks; which blocks are candidates is decided by the
/// prefix tree: unlocked leaves for the dependent-first policies, every unlocked block for
/// lru-any.

#include <cstdint>
#include <optional>
#include <string_view>

namespace kvserve {

enum class eviction_policy_kind {
  /// Dependent-first, then lower retention priority, then least recently used (default).
  kDependentLru,
  /// Dependent-first, then lower retention priority, then fewest hits, then LRU.
  kDependentLfu,
  /// The naive baseline: any unlocked block, interior ones included, by priority then last
  /// access. Evicting an interior block orphans its descendants: they can no longer be
  /// matched and stay in the pool, wasted, until they are evicted themselves.
  kLruAny,
};

/// "dependent-lru", "dependent-lfu", "lru-any" (the --eviction-policy values).
const char* to_string(eviction_policy_kind kind);
/// Parses a --eviction-policy value; nullopt if unknown.
std::optional<eviction_policy_kind> parse_eviction_policy(std::string_view name);

/// What a policy ranks a block by. Smaller ranks are evicted first.
struct eviction_rank {
  std::uint32_t major = 0;  ///< priority (high byte) and, for LFU, the saturated hit count
  std::uint64_t minor = 0;  ///< last access (logical counter): older first
  friend bool operator<(const eviction_rank& a, const eviction_rank& b) {
    return a.major != b.major ? a.major < b.major : a.minor < b.minor;
  }
  friend bool operator==(const eviction_rank&, const eviction_rank&) = default;
};

/// The rank of a block under `kind`, given its effective retention priority, hit count and
/// last access.
eviction_rank make_eviction_rank(eviction_policy_kind kind, int priority, std::uint32_t hit_count,
                                 std::uint64_t last_access);

/// True for the policies that evict only leaves (dependent-first).
constexpr bool is_dependent_first(eviction_policy_kind kind) {
  return kind != eviction_policy_kind::kLruAny;
}

}  // namespace kvserve
