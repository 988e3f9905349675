#pragma once
/// The KV cache manager: the facade the scheduler (through the cache-manager actor) calls once
/// per step. It owns the block pool, the prefix tree and the per-sequence block tables.
///
/// A step, as the scheduler sees it:
///   1. plan_allocation(new sequences)  pure: what each would match, need, and whether it fits
///   2. apply(plan)                     lock matched paths, evict dependent-first, allocate
///   3. grow(seq, n) for running ones   one more block every block_size decode tokens;
///                                      kOutOfBlocks -> preempt someone (release) and retry
///   4. block_table(seq)                physical block ids for the step plan
///   5. commit(seq, tokens)             after the step: every newly full block enters the tree
///                                      at once, so other sequences can match it (early reuse)
///   6. release(seq)                    finished, cancelled or preempted: unlock its path
///                                      (blocks stay cached), free its private blocks
///
/// Block tables only ever grow at the end: commit() never rewrites an entry. When a sequence
/// commits a block whose tokens another sequence committed first, the tree keeps the first
/// copy; the sequence keeps its own copy (private, freed on release) and locks the shared
/// node, so later blocks chain on the shared path.
///
/// Not thread-safe: one owner calls it. No call throws; errors come back as cache_status.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "cache/block_id.hpp"
#include "cache/block_pool.hpp"
#include "cache/cache_status.hpp"
#include "cache/kv_cache_config.hpp"
#include "cache/kv_cache_stats.hpp"
#include "cache/prefix_tree.hpp"
#include "cache/retention.hpp"

namespace kvserve {

/// One sequence asking to be admitted.
struct sequence_request {
  seq_id id = 0;
  /// The tokens known now (the prompt, or prompt + output when a preempted sequence comes
  /// back). The cached prefix is matched on them, in whole blocks, leaving at least the last
  /// token to compute (so a fully cached prompt still yields logits). Only read during
  /// plan_allocation(); the plan keeps no reference.
  std::span<const std::int32_t> tokens;
  /// Tokens to hold KV for after admission (e.g. cached prefix + first prefill chunk, or the
  /// whole prompt); < 0 means tokens.size(). Blocks for the rest come later from grow().
  int num_tokens = -1;
  /// Namespace key (model, adapter, cache salt, ...): blocks are shared only between
  /// sequences with equal keys. Empty is the default namespace.
  std::string cache_namespace;
  /// Retention of the first retention->num_tokens tokens; nullopt: default priority.
  std::optional<retention_config> retention;
};

/// Why a sequence of a plan is not served.
enum class admission_status {
  kAdmitted,
  kOutOfBlocks,    ///< not enough free + evictable blocks now; may fit later
  kNeverFits,      ///< needs more blocks than the whole pool
  kDuplicate,      ///< the id is already live, or appears twice in the batch
  kInvalid,        ///< bad request (num_tokens < matched tokens, invalid retention)
  kNotConsidered,  ///< kStopAtFirstFailure: an earlier sequence was not served
};
const char* to_string(admission_status s);

/// What apply() will do for one sequence. Pure data.
struct sequence_allocation {
  seq_id id = 0;
  admission_status status = admission_status::kNotConsidered;
  // The next three are filled for kAdmitted and kOutOfBlocks (e.g. for longest-prefix-match
  // scheduling), empty otherwise.
  /// The cached prefix: physical block ids, whole blocks, confirmed on stored tokens.
  std::vector<std::int32_t> cached_blocks;
  int num_cached_tokens = 0;  ///< cached_blocks.size() * block_size
  int num_new_blocks = 0;     ///< fresh blocks to allocate (evicting if needed)
  int num_prompt_tokens = 0;  ///< tokens.size(), for prefix query statistics
  // Carried for apply():
  std::string cache_namespace;
  std::optional<retention_config> retention;

  bool admitted() const { return status == admission_status::kAdmitted; }
};

/// How plan_allocation() treats a sequence that does not fit.
enum class admission_order {
  kStopAtFirstFailure,  ///< FCFS: nothing after it is admitted (no overtaking)
  kSkipFailures,        ///< later, smaller sequences may still be admitted
};

/// The result of plan_allocation(): one entry per requested sequence, in batch order.
struct allocation_plan {
  std::vector<sequence_allocation> seqs;
  std::vector<seq_id> not_served;  ///< ids of every entry with status != kAdmitted, in order
  int num_blocks_to_allocate = 0;  ///< over admitted sequences
  int num_blocks_to_evict = 0;     ///< how many cached blocks apply() will evict
  std::uint64_t version = 0;       ///< the manager's version when planned (see apply())
};

class kv_cache_manager {
 public:
  /// A manager for `config`, or kInvalidConfig (e.g. an unsupported block size).
  static cache_result<std::unique_ptr<kv_cache_manager>> create(kv_cache_config config);

  const kv_cache_config& config() const { return config_; }
  int block_size() const { return config_.block_size; }
  int num_blocks() const { return config_.num_blocks; }

  /// Blocks an allocation can use now: free + cached unlocked (all evictable).
  int num_available_blocks() const;
  /// Blocks needed to hold `num_tokens` tokens.
  int blocks_for_tokens(int num_tokens) const {
    return (num_tokens + config_.block_size - 1) / config_.block_size;
  }

  /// Plans admission of `batch`, in order: each sequence's cached prefix, the blocks it needs,
  /// and whether it fits in free + evictable blocks after the sequences before it (their
  /// matched blocks become locked, so they no longer count as evictable). Does not mutate
  /// anything (no touch, no statistics).
  allocation_plan plan_allocation(
      std::span<const sequence_request> batch,
      admission_order order = admission_order::kStopAtFirstFailure) const;

  /// Applies a plan made by plan_allocation() with no mutating call in between (otherwise
  /// kStalePlan, and nothing changes): for each admitted sequence, locks and touches its
  /// matched path (applying its retention), then evicts dependent-first and allocates its new
  /// blocks. Entries not admitted are ignored. Counts prefix queries and hits (tokens).
  cache_status apply(const allocation_plan& plan);

  /// Convenience: plan_allocation() then apply(); returns the plan.
  allocation_plan allocate(std::span<const sequence_request> batch,
                           admission_order order = admission_order::kStopAtFirstFailure);

  /// Blocks grow(seq, num_tokens) would allocate (0 if it already has room); -1 if unknown.
  int blocks_needed_to_grow(seq_id seq, int num_tokens) const;
  /// Makes room for `num_tokens` tokens in total (e.g. current length + 1 before a decode
  /// step), allocating and evicting as needed. kOutOfBlocks if it cannot; then nothing changed
  /// and the scheduler preempts (release()) someone and retries.
  cache_status grow(seq_id seq, int num_tokens);

  /// `tokens` are all tokens of the sequence whose KV is now computed (prompt and output so
  /// far; only the part after the last commit is read). Inserts every newly full block into the
  /// prefix tree at once, so others can match it while this sequence is still running (early
  /// reuse). No-op when prefix caching is disabled. kInvalidArgument if tokens.size() exceeds
  /// the blocks held.
  cache_status commit(seq_id seq, std::span<const std::int32_t> tokens);

  /// The sequence ends (finished, cancelled, preempted): unlocks its tree path (blocks stay
  /// cached and become evictable) and frees its private blocks. kUnknownSequence if not live.
  cache_status release(seq_id seq);

  /// Physical block ids of a live sequence; block i holds positions [i*block_size,
  /// (i+1)*block_size). Empty for an unknown sequence. Valid until the next mutating call.
  std::span<const std::int32_t> block_table(seq_id seq) const;
  bool contains(seq_id seq) const { return seqs_.count(seq) != 0; }
  /// Tokens of the sequence served from the cache at admission.
  int num_cached_tokens(seq_id seq) const;
  /// Tokens the sequence's blocks can hold.
  int capacity_tokens(seq_id seq) const;
  /// Tokens committed to the tree so far (a multiple of block_size).
  int num_committed_tokens(seq_id seq) const;

  /// Evicts every cached unlocked block (vLLM's reset_prefix_cache). Locked paths stay.
  void reset_prefix_cache();

  /// Gauges and counters. Retention windows are taken as of the last mutating call.
  kv_cache_stats stats() const;

  /// Checks every invariant of DESIGN.md ("KV cache semantics"): every block is exactly one of
  /// free, cached-unlocked or locked; lock counts equal the live sequences on each node's path;
  /// no node outlives its parent (dependent-first policies); tree structure. O(blocks).
  /// Tests call it after every operation; debug builds may call it after each mutation.
  cache_status check_invariants() const;

  /// The prefix tree, read-only (tests, tools). Empty when prefix caching is disabled.
  const prefix_tree& tree() const { return tree_; }
  /// Live sequences.
  int num_sequences() const { return static_cast<int>(seqs_.size()); }

  /// Bytes of metadata (pool, tree, index, heap; token ids excluded), for the memory goal.
  std::size_t memory_bytes_without_tokens() const;

  /// The interned id of a namespace key (0 for ""); for tests and tools.
  namespace_id intern_namespace(const std::string& key);
  /// The id of a namespace key if already interned.
  std::optional<namespace_id> find_namespace(const std::string& key) const;

 private:
  explicit kv_cache_manager(kv_cache_config config);

  struct sequence_state {
    std::vector<std::int32_t> block_table;
    std::vector<std::int32_t> path;  // tree nodes of committed blocks (locked by this seq)
    namespace_id ns = 0;
    int num_cached_tokens = 0;
    std::optional<retention_config> retention;
  };

  std::chrono::nanoseconds now() const { return config_.clock(); }
  cache_status allocate_blocks(int n, std::vector<std::int32_t>* out);
  bool evict_for(int n);
  void apply_retention(const sequence_state& s, std::int32_t node, int block_index);
  // Every successful mutation ends here: bumps the version (stale plans) and, with
  // config_.debug_check_invariants, checks every invariant.
  cache_status mutated(cache_status result = cache_status::ok());

  kv_cache_config config_;
  block_pool pool_;
  prefix_tree tree_;
  std::unordered_map<seq_id, sequence_state> seqs_;
  std::unordered_map<std::string, namespace_id> namespaces_;
  std::uint64_t version_ = 0;
  std::uint64_t tick_ = 0;
  kv_cache_stats counters_;  // cumulative fields only
};

}  // namespace kvserve
