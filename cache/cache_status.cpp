#include "cache/cache_status.hpp"

#include <chrono>

#include "cache/cache_clock.hpp"
#include "cache/kv_cache_config.hpp"
#include "cache/kv_cache_stats.hpp"
#include "cache/retention.hpp"

namespace kvserve {

const char* to_string(cache_errc code) {
  switch (code) {
    case cache_errc::kOk:
      return "ok";
    case cache_errc::kInvalidConfig:
      return "invalid_config";
    case cache_errc::kInvalidArgument:
      return "invalid_argument";
    case cache_errc::kUnknownSequence:
      return "unknown_sequence";
    case cache_errc::kDuplicateSequence:
      return "duplicate_sequence";
    case cache_errc::kOutOfBlocks:
      return "out_of_blocks";
    case cache_errc::kStalePlan:
      return "stale_plan";
    case cache_errc::kInvariantViolated:
      return "invariant_violated";
  }
  return "unknown";
}

const char* to_string(eviction_reason reason) {
  switch (reason) {
    case eviction_reason::kCapacity:
      return "capacity";
    case eviction_reason::kRetained:
      return "retained";
    case eviction_reason::kOrphan:
      return "orphan";
    case eviction_reason::kReset:
      return "reset";
  }
  return "unknown";
}

cache_clock steady_cache_clock() {
  return [] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::steady_clock::now().time_since_epoch());
  };
}

bool is_valid(const retention_config& r) {
  return r.num_tokens >= 0 && r.priority >= kMinRetentionPriority &&
         r.priority <= kMaxRetentionPriority && (!r.duration || r.duration->count() > 0);
}

bool is_supported_block_size(int block_size) {
  for (int s : kSupportedBlockSizes) {
    if (s == block_size) return true;
  }
  return false;
}

cache_status validate(const kv_cache_config& config) {
  if (!is_supported_block_size(config.block_size)) {
    return {cache_errc::kInvalidConfig, "block_size " + std::to_string(config.block_size) +
                                            " is not supported (use 2, 4, 8, 16, 32 or 64)"};
  }
  if (config.num_blocks < 1) {
    return {cache_errc::kInvalidConfig,
            "num_blocks must be at least 1 (got " + std::to_string(config.num_blocks) + ")"};
  }
  // Block ids are int32 and the hash index holds 2x num_blocks slots.
  if (config.num_blocks > (1 << 29)) {
    return {cache_errc::kInvalidConfig,
            "num_blocks " + std::to_string(config.num_blocks) + " exceeds 2^29"};
  }
  return cache_status::ok();
}

}  // namespace kvserve
