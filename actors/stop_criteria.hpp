#pragma once
/// When a sequence stops on its own tokens: end-of-sequence and stop token ids, min_tokens and
/// max_tokens. Plain data shared by the scheduler (which stops scheduling a finished sequence
/// at once) and the request's state (which reports the finish reason).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kvserve {

/// A finish decided from the generated tokens.
struct finish_decision {
  std::string reason;       ///< "stop" or "length"
  std::string stop_reason;  ///< the stop token id as text; empty for EOS and length
};

/// Token-level stop rules of one request.
struct stop_criteria {
  int max_tokens = 256;  ///< completion tokens at most
  int min_tokens = 0;    ///< EOS and stop tokens are suppressed before this many
  std::vector<std::int32_t>
      eos_token_ids;  ///< the model's EOS and end-of-turn ids (empty with ignore_eos)
  std::vector<std::int32_t> stop_token_ids;  ///< the request's own stop token ids

  /// The finish caused by `token`, the `num_generated`-th completion token (1-based), if any.
  std::optional<finish_decision> check(std::int32_t token, int num_generated) const {
    // Inline for the common case (called per sequence per step): no finish.
    if (num_generated < max_tokens &&
        (num_generated <= min_tokens ||
         (!is_listed(eos_token_ids, token) && !is_listed(stop_token_ids, token)))) {
      return std::nullopt;
    }
    return decide(token, num_generated);
  }
  /// Tokens the backend must mask when `num_generated` tokens exist so far.
  std::vector<std::int32_t> suppressed_tokens(int num_generated) const;

 private:
  static bool is_listed(const std::vector<std::int32_t>& ids, std::int32_t token) {
    for (std::int32_t id : ids) {
      if (id == token) return true;
    }
    return false;
  }
  std::optional<finish_decision> decide(std::int32_t token, int num_generated) const;
};

}  // namespace kvserve
