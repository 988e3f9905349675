#pragma once
/// The scheduler's logic without actors: the waiting queue (fcfs, or lpm with an age bound,
/// and request priority), continuous batching with chunked prefill under
/// max_num_batched_tokens and max_num_seqs, preemption by recompute, and the step plan.
///
/// A step is three calls, each plan-then-apply:
///   1. plan_allocations(now)   -> one cache_step_request (commits and releases of the last
///                                 step, growth of running sequences, admissions, probes)
///   2. apply_allocations(reply)-> the step_plan for the worker, and client events (accepted,
///                                 finished ones whose blocks the reply confirmed released)
///   3. apply_result(result) or fail_step(error) -> client events (tokens, finishes)
/// Sequences removed (cancel, stop string, timeout) while part of a step are finished when
/// that step's result is applied, so the worker never writes into blocks already returned.
///
/// Asynchronous steps: apply_allocations() may also run while one step is in flight (its
/// result not applied yet), so that the worker can queue step N + 1 before step N ends. A
/// sequence that step N samples then decodes in step N + 1 with `input_from_last_sample` (the
/// backend takes the token step N sampled). When step N's result ends such a sequence (EOS, a
/// stop token), it is finished at once: step N + 1 still computes a token for it, which is
/// dropped. Its blocks go back in the next cache request, so only steps planned after step
/// N + 1 can reuse them, and the worker runs steps in order.
/// Not thread-safe: the scheduler actor owns it.

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "actors/scheduler_types.hpp"
#include "model/status.hpp"
#include "model/step_plan.hpp"

namespace kvserve {

enum class scheduling_policy { kFcfs, kLpm };

struct scheduler_config {
  int block_size = 16;
  int num_blocks = 0;  ///< KV pool size, to reject requests that could never fit
  int vocab_size = 0;  ///< to reject prompts with out-of-range ids (0: no check)
  int max_model_len = 2048;
  int max_num_seqs = 32;
  int max_num_batched_tokens = 2048;
  int max_waiting_requests = 1024;
  scheduling_policy policy = scheduling_policy::kFcfs;
  std::chrono::nanoseconds lpm_age_bound = std::chrono::seconds(2);
  bool enable_prefix_caching = true;
  bool prefix_commit_early = true;
  bool no_kv_cache = false;
  /// The scheduler actor plans step N + 1 while step N runs (apply_allocations ahead of
  /// apply_result) and has the worker submit it before collecting step N. Not with
  /// no_kv_cache.
  bool async_steps = false;
  int lpm_probes_per_step = 32;  ///< waiting sequences whose cached prefix is refreshed per step
  /// Tests: the scheduler actor calls it at named points ("submit", "plan", "allocated",
  /// "executed") inside its exception guard; a hook that throws simulates a scheduler bug.
  std::function<void(const char* where)> fault_hook;
};

/// The plan of one step and what the clients learn before it runs.
struct planned_step {
  step_plan plan;  ///< empty when nothing can run now
  std::vector<sequence_event> events;
  /// Tokens of the plan that lie inside their request's prompt (computed now, not cached), for
  /// the prompt-token metric; a one-token last prompt chunk counts too.
  int num_prompt_tokens = 0;
  /// Sequences of the plan that decode (one token, sampled, after position 0).
  int num_decode_seqs = 0;
};

class scheduler_policy {
 public:
  using clock = std::chrono::steady_clock;

  explicit scheduler_policy(scheduler_config config);

  const scheduler_config& config() const { return config_; }

  /// Queues a sequence. kInvalidArgument (empty prompt, bad ids, too long, larger than the
  /// pool), kOverloaded (waiting queue full); nothing is queued then.
  status add(sequence_submission submission, clock::time_point now);

  /// Ends a sequence with `reason` ("cancelled", "timeout", "stop" for a stop string). The
  /// finished event comes out of a later call once its blocks are released; unknown ids are
  /// ignored. Returns the events that can be sent at once (a waiting sequence that held no
  /// blocks).
  std::vector<sequence_event> remove(seq_id id, const std::string& reason,
                                     const std::string& stop_reason = "");

  /// True while there is anything to do: sequences to run, commits or releases to send.
  bool has_work() const;
  /// Step phase 1. Step overlap: it may also be called once while the worker runs the
  /// previous step (after apply_allocations() handed that step out, before its apply_result()
  /// or fail_step()). The request then sizes that step's sequences for the token it will
  /// sample and leaves out those that will surely finish with it; the previous step's
  /// apply_result()/fail_step() must come before this request's apply_allocations(), which
  /// then sees the sampled tokens (a preempted sequence keeps its last token, computed with
  /// valid KV, and recomputes from there). Not with no_kv_cache (needs every token known).
  cache_step_request plan_allocations(clock::time_point now);
  /// Step phase 2. An empty plan ends the step. At most one step may be in flight (handed out,
  /// result not applied) when it is called: the plan is then that step's successor.
  planned_step apply_allocations(const cache_step_reply& reply);
  /// Optional: hands back an executed plan (worker_outcome::plan) so that the next plan
  /// reuses its vectors instead of allocating per sequence per step. The plan whose result was
  /// applied last, given back with its block tables unchanged, lets the next plan copy only
  /// the blocks added since (a steady decode batch then copies about nothing).
  void recycle(step_plan&& plan);
  /// Step phase 3, on success, for the oldest step in flight (results come in plan order).
  std::vector<sequence_event> apply_result(const step_result& result);
  /// Step phase 3, on success, the hot path: tokens of sequences that asked for no logprobs
  /// are appended to `tokens` (plan order), everything else (tokens with logprobs, prompt
  /// logprobs, finishes) to `events`. A consumer takes `tokens` before `events`, which keeps
  /// every sequence's order (its token comes before its finish).
  /// Returns the number of tokens the step sampled.
  int apply_result(const step_result& result, std::vector<token_output>& tokens,
                   std::vector<sequence_event>& events);
  /// Step phase 3, when the worker failed: every sequence of the oldest step in flight ends
  /// with `error`.
  std::vector<sequence_event> fail_step(const status& error);
  /// Step phase 2 when the cache manager failed (cache_step_reply::error): it released every
  /// live sequence, so every sequence that held or was being given blocks ends with `error`;
  /// sequences that were only waiting stay queued. Ends the step.
  std::vector<sequence_event> abort_allocations(const status& error);

  int num_running() const { return static_cast<int>(running_.size()); }
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  std::uint64_t num_preemptions() const { return num_preemptions_; }
  std::uint64_t num_steps() const { return step_index_; }
  /// Steps handed out whose result is not applied yet (0..2).
  int num_steps_in_flight() const { return num_inflight_; }
  /// Whether the next step may be planned before the step in flight has its result applied.
  /// Not after a failed step: the step behind it, which was to take its tokens, is collected
  /// first, so a failure ends the sequences of at most those two steps.
  bool can_plan_ahead() const { return num_inflight_ == 0 || !last_step_failed_; }
  /// Completion tokens so far of a live sequence (tests).
  std::optional<int> num_generated(seq_id id) const;

 private:
  using slot_index = std::uint32_t;

  struct sequence {
    sequence_submission sub;
    std::vector<std::int32_t> tokens;  // prompt + output
    int num_computed = 0;              // tokens whose KV is in block_table
    int num_committed_blocks = 0;      // full blocks already sent to commit
    std::vector<std::int32_t> block_table;
    std::uint64_t table_epoch = 0;  // changes whenever block_table is reset (not on growth)
    bool live = false;              // the slot holds a sequence
    bool running = false;           // holds blocks (or, with no_kv_cache, is admitted)
    bool accepted_sent = false;
    bool flat_tokens = false;  // no logprobs asked: tokens take apply_result's flat path
    int num_cached_prompt_tokens = 0;
    clock::time_point arrival;
    std::uint64_t order = 0;
    int cached_estimate = 0;  // lpm
    std::uint64_t probed_step = 0;
    bool in_alloc = false;  // part of the cache request in flight
    bool admitted_now = false;
    /// The steps in flight that hold this sequence, oldest first: one, or two when step
    /// N + 1 was planned before step N's result was applied (asynchronous steps).
    struct exec_entry {
      std::uint64_t step = 0;
      int chunk = 0;         // tokens whose KV the step computes
      bool samples = false;  // the step samples the next token
    };
    std::array<exec_entry, 2> exec{};
    int num_exec = 0;
    int num_prompt_logprobs_sent = 0;
    std::optional<std::pair<std::string, std::string>> removal;  // reason, stop_reason
    int num_generated() const { return static_cast<int>(tokens.size() - sub.prompt.size()); }
    bool in_exec() const { return num_exec > 0; }
    bool busy() const { return in_alloc || in_exec(); }
    /// Tokens whose KV the steps in flight compute, and tokens they sample (0 or 1).
    int exec_chunks() const {
      int n = 0;
      for (int i = 0; i < num_exec; ++i) n += exec[static_cast<std::size_t>(i)].chunk;
      return n;
    }
    int exec_samples() const {
      int n = 0;
      for (int i = 0; i < num_exec; ++i) n += exec[static_cast<std::size_t>(i)].samples ? 1 : 0;
      return n;
    }
    /// Removes the oldest entry (its step's result is being applied).
    void pop_exec() {
      exec[0] = exec[1];
      --num_exec;
    }
  };

  /// The live sequence `id`, or nullptr. Only client calls and mismatches look ids up: the
  /// step itself addresses sequences by slot.
  sequence* find(seq_id id);
  const sequence* find(seq_id id) const;
  /// The slot the step's bookkeeping names for position `i`, if it still holds `id`;
  /// otherwise looked up by id. kNoSlot when the sequence is gone.
  slot_index resolve(const std::vector<slot_index>& slots, std::size_t i, seq_id id) const;
  static constexpr slot_index kNoSlot = ~slot_index{0};

  bool before(const sequence& a, const sequence& b) const;  // running / victim order
  void ordered_waiting(clock::time_point now, std::vector<slot_index>& out) const;
  void insert_running(slot_index slot);
  void erase_running(slot_index slot);
  void erase_waiting(slot_index slot);
  void preempt(slot_index slot, std::vector<sequence_event>& immediate);
  /// Ends a sequence: releases its blocks (if any) and queues the final event until the
  /// release is confirmed by the next cache reply. Frees the slot.
  void finish(slot_index slot, sequence_event final_event, bool commit,
              std::vector<sequence_event>& immediate);
  /// What a plan entry was last filled with: when the next plan puts the same sequence at
  /// the same position, only the blocks added since are copied.
  struct plan_entry {
    seq_id id = 0;
    std::uint64_t table_epoch = 0;
    std::uint32_t table_size = 0;
  };
  void reset_table(sequence& s);
  /// Fills `st` with `chunk` tokens from position `computed` (past the steps in flight, which
  /// sample `pending` tokens: 0 or 1).
  void fill_step(sequence_step& st, const sequence& s, int computed, int pending, int chunk,
                 const plan_entry* known) const;
  block_commit make_commit(const sequence& s) const;
  static sequence_event finished_event(seq_id id, std::string reason, std::string stop_reason);
  static sequence_event error_event(seq_id id, status error);

  scheduler_config config_;
  std::vector<sequence> slots_;  // sequences by slot; freed slots are reused
  std::vector<slot_index> free_slots_;
  std::unordered_map<seq_id, slot_index> index_;  // live sequences
  std::vector<slot_index> running_;               // ordered: priority, then arrival
  std::vector<slot_index> waiting_;
  std::vector<block_commit> pending_commits_;
  std::vector<seq_id> pending_releases_;
  std::vector<sequence_event> pending_finals_;   // released in the next cache request
  std::vector<sequence_event> inflight_finals_;  // released in the current cache request
  /// A step handed to the worker whose result is not applied yet.
  struct inflight_step {
    std::uint64_t step = 0;
    std::vector<slot_index> slots;    // its sequences, in plan order
    std::vector<plan_entry> entries;  // what its plan's entries hold
  };
  std::array<inflight_step, 2> inflight_;  // oldest first
  int num_inflight_ = 0;
  bool last_step_failed_ = false;  // the last step retired ended with fail_step()
  /// Pops the oldest step in flight; its entries describe the plan recycle() gets next.
  void retire_oldest_step();
  std::vector<slot_index> step_grows_;   // grows of the current cache request
  std::vector<slot_index> step_admits_;  // admissions of the current cache request
  std::vector<slot_index> step_probes_;
  std::vector<slot_index> order_scratch_;  // apply_allocations' copy of running_
  std::vector<slot_index> admitted_scratch_;
  std::vector<slot_index> waiting_scratch_;
  std::vector<token_output> tokens_scratch_;  // the vector form of apply_result
  step_plan recycled_;                        // an executed plan whose memory the next one reuses
  std::vector<plan_entry> recycled_entries_;  // what recycled_'s entries hold (may be empty)
  std::vector<plan_entry> applied_entries_;   // the same for the plan applied last
  std::vector<plan_entry> entries_scratch_;
  std::uint64_t applied_step_ = 0;
  std::uint64_t num_table_epochs_ = 0;
  std::uint64_t next_order_ = 0;
  std::uint64_t step_index_ = 0;
  std::uint64_t num_preemptions_ = 0;
};

}  // namespace kvserve
