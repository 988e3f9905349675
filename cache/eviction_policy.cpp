#include "cache/eviction_policy.hpp"

#include <algorithm>

namespace kvserve {

const char* to_string(eviction_policy_kind kind) {
  switch (kind) {
    case eviction_policy_kind::kDependentLru:
      return "dependent-lru";
    case eviction_policy_kind::kDependentLfu:
      return "dependent-lfu";
    case eviction_policy_kind::kLruAny:
      return "lru-any";
  }
  return "unknown";
}

std::optional<eviction_policy_kind> parse_eviction_policy(std::string_view name) {
  if (name == "dependent-lru") return eviction_policy_kind::kDependentLru;
  if (name == "dependent-lfu") return eviction_policy_kind::kDependentLfu;
  if (name == "lru-any") return eviction_policy_kind::kLruAny;
  return std::nullopt;
}

eviction_rank make_eviction_rank(eviction_policy_kind kind, int priority, std::uint32_t hit_count,
                                 std::uint64_t last_access) {
  constexpr std::uint32_t kMaxCount = (1u << 24) - 1;
  std::uint32_t major = static_cast<std::uint32_t>(std::clamp(priority, 0, 255)) << 24;
  if (kind == eviction_policy_kind::kDependentLfu) major |= std::min(hit_count, kMaxCount);
  return {major, last_access};
}

}  // namespace kvserve
