#pragma once
/// The cache manager's logic without actors: applies one cache_step_request to a
/// kv_cache_manager (commits, releases, growth with preemption from the back, batched
/// admission, lpm probes) and answers with block tables. Not thread-safe: the cache-manager
/// actor owns it.

#include <functional>
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

  /// Applies a step's request in the order cache_step_request documents. May throw only if
  /// the fault hook does (or on allocation failure); the cache-manager actor then calls
  /// fail() with the same request.
  cache_step_reply apply(const cache_step_request& request);

  /// Recovery after apply() threw, or for a request with release_all: releases every live
  /// sequence (those the allocator knows and those named in `request`), so every block is
  /// free or cached-unlocked again, and answers with `error` (ok for a plain release_all).
  /// Never throws.
  cache_step_reply fail(const cache_step_request& request, status error) noexcept;

  /// Tests: called at named points of apply() ("commits", "grows", "admits"); may throw.
  using fault_hook = std::function<void(const char* where)>;
  void set_fault_hook(fault_hook hook) { fault_hook_ = std::move(hook); }

  cache_stats_snapshot stats() const;
  const kv_cache_manager& cache() const { return *cache_; }

 private:
  explicit step_allocator(std::unique_ptr<kv_cache_manager> cache) : cache_(std::move(cache)) {}
  block_grant granted(seq_id id, int num_cached_tokens, int from_block = 0) const;

  void commit_deferred_and_release(seq_id id);

  /// What the allocator remembers of a live sequence.
  struct sequence_info {
    /// Its tokens as far as the scheduler sent them (admission, commits); prefix caching only.
    std::vector<std::int32_t> tokens;
    int num_computed = 0;   ///< leading tokens whose KV is computed (cached prefix, commits)
    bool deferred = false;  ///< computed tokens recorded by deferred commits, not yet inserted
  };

  std::unique_ptr<kv_cache_manager> cache_;
  std::unordered_map<seq_id, sequence_info> seqs_;
  std::vector<seq_id> order_;  // apply()'s preemption order (kept: no allocation per step)
  fault_hook fault_hook_;
};

}  // namespace kvserve
