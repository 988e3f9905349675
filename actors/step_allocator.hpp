#pragma once
/// The cache manager's logic without actors: applies one cache_step_request to a
/// kv_cache_manager (commits, releases, growth with preemption from the back, batched
/// admission, lpm probes) and answers with block tables. Not thread-safe: the cache-manager
/// actor owns it.

#include <memory>
#include <unordered_map>
#include <vector>

#include "actors/scheduler_types.hpp"
#include "cache/kv_cache_manager.hpp"
#include "model/status.hpp"

namespace kvserve {

/// A cache_status as a kvserve status (kOutOfBlocks -> kOutOfMemory, invalid -> kInvalidArgument,
/// the rest -> kInternal).
status to_status(const cache_status& s);

class step_allocator {
 public:
  /// kInvalidArgument for a config the cache rejects.
  static result<std::unique_ptr<step_allocator>> create(kv_cache_config config);

  /// Applies a step's request in the order cache_step_request documents.
  cache_step_reply apply(const cache_step_request& request);

  cache_stats_snapshot stats() const;
  const kv_cache_manager& cache() const { return *cache_; }

 private:
  explicit step_allocator(std::unique_ptr<kv_cache_manager> cache) : cache_(std::move(cache)) {}
  block_grant granted(seq_id id, int num_cached_tokens, int from_block = 0) const;

  std::unique_ptr<kv_cache_manager> cache_;
  /// Per live sequence: its tokens as far as the scheduler sent them (admission, commits).
  std::unordered_map<seq_id, std::vector<std::int32_t>> tokens_;
};

}  // namespace kvserve
