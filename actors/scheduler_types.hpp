#pragma once
/// Plain data exchanged between the scheduler, the cache manager and the clients of the
/// scheduler. Free of CAF: actors/protocol.hpp wraps these in messages, and the plain classes
/// (scheduler_policy, step_allocator) are tested with them directly.

#include <cstdint>
#include <string>
#include <vector>

#include "actors/stop_criteria.hpp"
#include "model/sampling_params.hpp"
#include "model/status.hpp"
#include "model/step_plan.hpp"

namespace kvserve {

using request_id = std::uint64_t;

/// A tokenised request as the scheduler receives it. Its sequence id equals its request id.
struct sequence_submission {
  request_id id = 0;
  std::vector<std::int32_t> prompt;
  sampling_params sampling;  ///< seed already resolved (engine_config::seed when unset)
  stop_criteria stop;
  std::string cache_salt;  ///< namespace: KV is shared only within one salt
  int priority = 0;        ///< lower is served first; ties by arrival
  int prompt_logprobs = -1;
  /// Retention of the first retention_num_tokens prompt tokens (0: none).
  int retention_num_tokens = 0;
  int retention_priority = 0;
  std::int64_t retention_duration_ms = -1;  ///< < 0: no expiry
};

/// One sequence of a step's batched cache request.
struct block_request {
  seq_id id = 0;
  /// Admissions only: every known token (prompt, or prompt + output after a preemption),
  /// matched against the prefix tree; blocks are allocated for all of them.
  std::vector<std::int32_t> tokens;
  /// Growth only: the tokens the sequence's blocks must hold after this step.
  int num_tokens = 0;
  /// Growth only: blocks the scheduler already knows; the grant lists only those after them.
  int num_known_blocks = 0;
  std::string cache_namespace;
  int retention_num_tokens = 0;
  int retention_priority = 0;
  std::int64_t retention_duration_ms = -1;
};

/// Tokens of a sequence whose KV is computed: commit its newly full blocks. `tokens` holds
/// positions [start, start + tokens.size()); the cache manager already has those before
/// `start` (from the admission or earlier commits), so each commit sends only the new part.
struct block_commit {
  seq_id id = 0;
  std::int32_t start = 0;
  std::vector<std::int32_t> tokens;
  /// `--prefix-commit finish`: only record the tokens as computed; the cache manager inserts
  /// them into the prefix tree when the sequence is preempted (its KV stays useful for the
  /// recompute) or by a later commit without `defer` (when the sequence finishes).
  bool defer = false;
};

/// One batched message per step to the cache manager, applied in this order: commits,
/// releases, growth of running sequences (preempting from the back of `running` when blocks
/// run out), admissions (in order, stopping at the first that does not fit), probes.
struct cache_step_request {
  std::uint64_t step_index = 0;
  std::vector<block_commit> commits;
  std::vector<seq_id> releases;
  /// Every running sequence that holds blocks, most important first: the preemption order
  /// (victims are taken from the back). Empty: the ids of `grows`, in their order.
  std::vector<seq_id> running;
  /// Running sequences that need more blocks this step (a subsequence of `running`, in its
  /// order); the others keep their blocks untouched, so a steady decode batch sends about
  /// one grow per block_size steps per sequence.
  std::vector<block_request> grows;
  std::vector<block_request> admits;  ///< waiting sequences in scheduling order
  std::vector<block_request> probes;  ///< lpm: cached prefix length only, nothing locked
  /// Recovery after a failure: release every live sequence first (nothing else is applied).
  bool release_all = false;
};

enum class grant_status : std::uint8_t {
  kGranted,    ///< blocks held; block_table is valid
  kDeferred,   ///< not admitted now (no room, or after a failure); try again later
  kPreempted,  ///< running sequence evicted from the GPU: its blocks were released
  kFailed,     ///< can never be served (message says why)
};

/// The cache manager's answer for one sequence of a cache_step_request.
struct block_grant {
  seq_id id = 0;
  grant_status status = grant_status::kDeferred;
  int num_cached_tokens = 0;  ///< admissions and probes: tokens served by the prefix cache
  /// Admissions: the whole block table. Growth: only the blocks after num_known_blocks.
  std::vector<std::int32_t> block_table;
  std::string message;  ///< kFailed only
};

/// Cache gauges and counters, as engine_stats reports them.
struct cache_stats_snapshot {
  std::int64_t num_blocks_total = 0;
  std::int64_t num_blocks_free = 0;
  std::int64_t num_blocks_cached = 0;
  std::int64_t num_blocks_locked = 0;
  std::uint64_t prefix_queries_tokens = 0;
  std::uint64_t prefix_hits_tokens = 0;
  std::uint64_t evictions_capacity = 0;
  std::uint64_t evictions_retained = 0;
  std::uint64_t evictions_orphan = 0;
  std::uint64_t evictions_reset = 0;
};

struct cache_step_reply {
  std::uint64_t step_index = 0;
  std::vector<block_grant> grows;  ///< one per request grow, same order
  /// Sequences of `running` preempted (blocks released) that were not in `grows`.
  std::vector<seq_id> preempted;
  std::vector<block_grant> admits;  ///< one per request admit, same order
  std::vector<block_grant> probes;  ///< one per request probe, same order
  cache_stats_snapshot stats;
  /// Not ok when applying the request failed (e.g. an exception): the cache manager then
  /// released every live sequence, so no sequence holds blocks any more, and the grant lists
  /// are empty.
  status error;
};

/// A token sampled for a sequence whose client asked for no logprobs: the scheduler's hot
/// path reports these flat, without a sequence_event each.
struct token_output {
  seq_id id = 0;
  std::int32_t token = 0;
  /// The sequence's slot in the scheduler_policy (dense, reused once the sequence is gone):
  /// lets the caller group tokens by sequence without a lookup or a sort.
  std::uint32_t slot = 0;
};

/// What the scheduler tells a sequence's client. One struct for every kind keeps the plain
/// scheduler free of messaging; protocol.hpp maps each kind onto its own message.
struct sequence_event {
  enum class kind : std::uint8_t { kAccepted, kTokens, kFinished, kError };
  kind type = kind::kTokens;
  request_id id = 0;
  // kAccepted
  int prompt_tokens = 0;
  int cached_prompt_tokens = 0;
  // kTokens
  std::vector<std::int32_t> tokens;
  std::vector<position_logprobs> logprobs;         ///< one per token when requested
  std::vector<position_logprobs> prompt_logprobs;  ///< prompt positions 1.. computed this step
  // kFinished
  std::string finish_reason;
  std::string stop_reason;
  // kError
  status error;
};

}  // namespace kvserve
