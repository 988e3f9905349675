#pragma once
/// The prefix tree of full KV blocks. Each node is one full block, named by its physical block
/// id: its tokens, parent, children (found through a hash of the block's tokens chained with
/// the parent's hash and, at the root, the namespace; always confirmed on the stored tokens),
/// lock count (live sequences using it), last access, hit count and retention priority.
///
/// The tree also keeps the eviction candidates in a 4-ary heap ordered by the policy's rank:
/// unlocked leaves for the dependent-first policies (a node's dependents always go before it,
/// so no cached block is orphaned), every unlocked node for lru-any. Every operation is
/// O(log n) in the number of candidates, plus O(block_size) for token work.
///
/// Not thread-safe: one owner (the cache-manager actor) calls it.

#include <chrono>
#include <climits>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "cache/block_id.hpp"
#include "cache/cache_status.hpp"
#include "cache/eviction_policy.hpp"
#include "cache/kv_cache_stats.hpp"

namespace kvserve {

struct prefix_tree_config {
  int num_blocks = 0;   ///< the pool size; block ids are in [0, num_blocks)
  int block_size = 16;  ///< tokens per block
  eviction_policy_kind eviction_policy = eviction_policy_kind::kDependentLru;
};

/// A block removed from the tree by evict_one(); it goes back to the pool.
struct evicted_block {
  block_id block;
  eviction_reason reason;
};

/// A child inserted, or the equal child that was already there.
struct insert_result {
  block_id node;
  bool inserted = false;  ///< false: `node` already held these tokens; the offered block was
                          ///< not taken
};

class prefix_tree {
 public:
  explicit prefix_tree(const prefix_tree_config& config);

  int block_size() const { return block_size_; }
  int num_blocks() const { return static_cast<int>(nodes_.size()); }
  eviction_policy_kind eviction_policy() const { return policy_; }

  /// The longest cached prefix of `tokens` in namespace `ns`, in whole blocks (a trailing
  /// partial block is ignored), at most `max_blocks` blocks. Appends the matched blocks to
  /// `out` and returns how many. Pure: touches nothing.
  int match(namespace_id ns, std::span<const std::int32_t> tokens, int max_blocks,
            std::vector<block_id>* out) const;

  /// Inserts block `b` (in use, not in the tree) holding `tokens` (exactly block_size) as a
  /// child of `parent` (nullopt: a root child in namespace `ns`; otherwise `parent` must be in
  /// the tree, reachable and locked by the caller), unless an equal child exists. Either way
  /// the returned node is locked once for the caller and touched at `tick`.
  insert_result insert_and_lock(std::optional<block_id> parent, namespace_id ns,
                                std::span<const std::int32_t> tokens, block_id b,
                                std::uint64_t tick);

  /// Lock count +1 (a live sequence uses the node). A locked node is never evicted.
  void lock(block_id node);
  /// Lock count -1. At 0 the node becomes evictable (when it is a leaf, for dependent-first).
  void unlock(block_id node);
  /// Records an access at logical time `tick` (non-decreasing); `hit` also counts a hit (LFU).
  void touch(block_id node, std::uint64_t tick, bool hit);
  /// Raises the node's retention: priority wins if higher than its effective priority; at equal
  /// priority the later expiry wins (nullopt = never expires). `now` is the current time.
  void retain(block_id node, int priority, std::optional<std::chrono::nanoseconds> expiry,
              std::chrono::nanoseconds now);
  /// Drops every retention whose expiry is <= now back to the default priority.
  void expire_retention(std::chrono::nanoseconds now);

  /// Removes the lowest-ranked candidate from the tree (lru-any: orphaning its descendants)
  /// and returns it; nullopt when there is none. The caller frees the block.
  std::optional<evicted_block> evict_one();

  bool contains(block_id b) const;
  /// Whether the node can be reached from the root (false for lru-any's orphans).
  bool is_reachable(block_id node) const;
  int lock_count(block_id node) const;
  std::optional<block_id> parent(block_id node) const;
  std::span<const std::int32_t> tokens(block_id node) const;
  /// Effective retention priority as of the last expire_retention().
  int priority(block_id node) const;
  std::uint64_t last_access(block_id node) const;

  int num_nodes() const { return num_nodes_; }
  /// Unlocked nodes: all of them are evictable (a locked node's ancestors are locked).
  int num_unlocked() const { return num_unlocked_; }
  int num_orphaned() const { return num_orphaned_; }
  /// Nodes with a priority above the default.
  int num_retained() const { return num_retained_; }
  /// Unlocked nodes with a priority above the default (evicted only after all others).
  int num_unlocked_retained() const { return num_unlocked_retained_; }
  /// Cumulative count of nodes cut off from the root (lru-any).
  std::uint64_t num_orphaned_total() const { return num_orphaned_total_; }

  /// Checks the tree's own structure: parent/children links, the hash index, the candidate
  /// heap, counters. O(n).
  cache_status check_invariants() const;
  /// Bytes of metadata held (nodes, index, heap), tokens excluded; capacity, not size.
  std::size_t memory_bytes_without_tokens() const;
  std::size_t memory_bytes_of_tokens() const;

 private:
  static constexpr std::int64_t kNoExpiry = INT64_MAX;
  static constexpr std::uint8_t kInTree = 1;
  static constexpr std::uint8_t kOrphan = 2;
  struct node {                       // 64 bytes
    std::uint64_t hash = 0;           // chained hash of the path (index key)
    std::uint64_t last_access = 0;    // logical tick
    std::int64_t expiry = kNoExpiry;  // ns; retention falls back to default after it
    std::int32_t parent = -1;
    std::int32_t first_child = -1;
    std::int32_t next_sibling = -1;
    std::int32_t prev_sibling = -1;
    std::int32_t lock_ref = 0;
    std::int32_t heap_pos = -1;  // position in heap_, -1 when not a candidate
    std::uint32_t hit_count = 0;
    namespace_id ns = 0;
    std::int8_t priority = 0;
    std::uint8_t flags = 0;
  };
  struct heap_entry {
    std::uint64_t minor;
    std::uint32_t major;
    std::int32_t node;
  };

  // Hash index (open addressing, linear probing, backward-shift deletion).
  std::uint64_t chain_hash(std::uint64_t seed, std::span<const std::int32_t> tokens) const;
  std::uint64_t root_seed(namespace_id ns) const;
  std::int32_t find_child(std::int32_t parent, namespace_id ns, std::uint64_t hash,
                          std::span<const std::int32_t> tokens) const;
  void index_insert(std::int32_t n);
  void index_erase(std::int32_t n);

  // Candidate heap.
  bool is_candidate_eligible(std::int32_t n) const;
  void update_candidacy(std::int32_t n);
  void heap_push(std::int32_t n);
  void heap_erase(std::int32_t n);
  void heap_update(std::int32_t n);
  void sift_up(std::size_t pos);
  void sift_down(std::size_t pos);
  heap_entry make_entry(std::int32_t n) const;

  void detach(std::int32_t n);  // unlink from parent's children and the index
  void orphan_subtree(std::int32_t n);
  void set_priority(std::int32_t n, int priority);

  int block_size_;
  eviction_policy_kind policy_;
  std::vector<node> nodes_;
  std::vector<std::int32_t> tokens_;  // [num_blocks, block_size]
  std::vector<std::uint64_t> index_;  // slots: (tag << 32) | (node + 1), 0 = empty
  std::uint64_t index_mask_ = 0;
  std::vector<heap_entry> heap_;
  struct expiry_entry {
    std::int64_t at;
    std::int32_t node;
    friend bool operator>(const expiry_entry& a, const expiry_entry& b) { return a.at > b.at; }
  };
  std::vector<expiry_entry> expiries_;  // min-heap; stale entries skipped lazily
  int num_nodes_ = 0;
  int num_unlocked_ = 0;
  int num_orphaned_ = 0;
  int num_retained_ = 0;
  int num_unlocked_retained_ = 0;
  std::uint64_t num_orphaned_total_ = 0;
};

}  // namespace kvserve
