#pragma once
/// Retention: how long cached blocks are kept relative to each other. A block's retention
/// priority ranks it for eviction before recency does (lower priority is evicted first), in
/// the spirit of TensorRT-LLM's KvCacheRetentionConfig.

#include <chrono>
#include <cstdint>
#include <optional>

namespace kvserve {

inline constexpr int kMinRetentionPriority = 0;
inline constexpr int kMaxRetentionPriority = 100;
/// The priority of blocks no retention request covers (TensorRT-LLM's default).
inline constexpr int kDefaultRetentionPriority = 35;

/// Keep the first `num_tokens` tokens of a sequence (whole blocks inside that range) at
/// `priority`, for `duration` if set, after which they fall back to the default priority.
/// Applies to the blocks the sequence matches and to the blocks it commits; the window starts
/// when the block is matched or committed.
///
/// When several sequences give one block a retention, the highest priority wins; at equal
/// priority the later expiry wins (no duration = never expires).
struct retention_config {
  int num_tokens = 0;
  int priority = kMaxRetentionPriority;
  std::optional<std::chrono::nanoseconds> duration;
};

/// True when num_tokens >= 0, priority in [kMinRetentionPriority, kMaxRetentionPriority] and
/// duration, if set, is positive.
bool is_valid(const retention_config& r);

}  // namespace kvserve
