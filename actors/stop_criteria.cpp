#include "actors/stop_criteria.hpp"

#include <algorithm>

namespace kvserve {

std::optional<finish_decision> stop_criteria::decide(std::int32_t token, int num_generated) const {
  // Suppressed tokens cannot be sampled below min_tokens; a backend that ignores the mask
  // still must not end the sequence early.
  if (num_generated > min_tokens) {
    if (is_listed(eos_token_ids, token)) return finish_decision{"stop", ""};
    if (is_listed(stop_token_ids, token)) return finish_decision{"stop", std::to_string(token)};
  }
  if (num_generated >= max_tokens) return finish_decision{"length", ""};
  return std::nullopt;
}

std::vector<std::int32_t> stop_criteria::suppressed_tokens(int num_generated) const {
  if (num_generated >= min_tokens) return {};
  std::vector<std::int32_t> out = eos_token_ids;
  out.insert(out.end(), stop_token_ids.begin(), stop_token_ids.end());
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace kvserve
