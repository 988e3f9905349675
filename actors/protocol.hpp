#pragma once
/// The engine's actor protocol (the in-process *actor* API for programs that use CAF
/// themselves): every atom, every payload with its `inspect` overload, and one typed interface
/// per actor with a comment per handler saying who sends it and what comes back.
///
/// A request's path (docs/ARCHITECTURE.md draws it):
///   client --submit--> scheduler --allocate--> cache manager --reply--> scheduler
///          --submit, collect--> worker --outcome--> scheduler --accepted/tokens/finished--> client
/// The engine facade (engine.hpp) puts a request actor in the client's place; a CAF program
/// may instead talk to the scheduler directly with any actor that implements
/// sequence_client_actor (see examples/embed/).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actors/actor_cpu_meter.hpp"
#include "actors/engine.hpp"
#include "actors/observer.hpp"
#include "actors/scheduler_policy.hpp"
#include "actors/scheduler_types.hpp"
#include "actors/step_allocator.hpp"
#include "actors/step_executor.hpp"
#include "cache/kv_cache_config.hpp"
#include "caf/all.hpp"

// std::optional fields: CAF 0.17 has no built-in support. Declared in namespace caf so that
// argument-dependent lookup finds it through the inspector.
namespace caf {
template <class Inspector, class T>
typename Inspector::result_type inspect(Inspector& f, std::optional<T>& x) {
  bool has_value = x.has_value();
  T value = has_value ? *x : T{};
  auto load = meta::load_callback([&]() -> error {
    if (has_value) {
      x = std::move(value);
    } else {
      x.reset();
    }
    return none;
  });
  return f(meta::type_name("optional"), has_value, value, load);
}
}  // namespace caf

namespace kvserve {

// ---- Atoms -------------------------------------------------------------------------------
using submit_atom = caf::atom_constant<caf::atom("submit")>;
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;
using finish_atom = caf::atom_constant<caf::atom("finish")>;
using accepted_atom = caf::atom_constant<caf::atom("accepted")>;
using tokens_atom = caf::atom_constant<caf::atom("tokens")>;
using finished_atom = caf::atom_constant<caf::atom("finished")>;
using failed_atom = caf::atom_constant<caf::atom("failed")>;
using allocate_atom = caf::atom_constant<caf::atom("allocate")>;
using collect_atom = caf::atom_constant<caf::atom("collect")>;
using step_atom = caf::atom_constant<caf::atom("step")>;
using stats_atom = caf::atom_constant<caf::atom("stats")>;
using timeout_atom = caf::atom_constant<caf::atom("timeout")>;

// ---- Payloads ----------------------------------------------------------------------------

/// New tokens of one sequence (scheduler -> client).
struct token_delta {
  request_id id = 0;
  std::vector<std::int32_t> tokens;
  std::vector<position_logprobs> logprobs;         ///< one per token when requested
  std::vector<position_logprobs> prompt_logprobs;  ///< prompt positions computed this step
};

/// The token deltas of several sequences in one message (scheduler -> batch client): each
/// sequence at most once, its deltas of the flush interval merged in order.
struct token_batch {
  std::vector<token_delta> deltas;
};

/// An error as a message: a status code and a one-line message.
struct error_info {
  status_code code = status_code::kInternal;
  std::string message;
  status to_status() const { return {code, message}; }
  static error_info from(const status& s) { return {s.code(), s.message()}; }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, status& x) {
  status_code code = x.code();
  std::string message = x.message();
  auto load = caf::meta::load_callback([&]() -> caf::error {
    x = status(code, message);
    return caf::none;
  });
  return f(caf::meta::type_name("status"), code, message, load);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, error_info& x) {
  return f(caf::meta::type_name("error_info"), x.code, x.message);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sampling_params& x) {
  return f(caf::meta::type_name("sampling_params"), x.temperature, x.top_k, x.top_p, x.min_p,
           x.repetition_penalty, x.presence_penalty, x.frequency_penalty, x.seed, x.min_tokens,
           x.ignore_eos, x.logprobs);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stop_criteria& x) {
  return f(caf::meta::type_name("stop_criteria"), x.max_tokens, x.min_tokens, x.eos_token_ids,
           x.stop_token_ids);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sequence_submission& x) {
  return f(caf::meta::type_name("sequence_submission"), x.id, x.prompt, x.sampling, x.stop,
           x.cache_salt, x.priority, x.prompt_logprobs, x.retention_num_tokens,
           x.retention_priority, x.retention_duration_ms);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, token_logprob& x) {
  return f(caf::meta::type_name("token_logprob"), x.token, x.logprob);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, position_logprobs& x) {
  return f(caf::meta::type_name("position_logprobs"), x.chosen, x.top);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, token_delta& x) {
  return f(caf::meta::type_name("token_delta"), x.id, x.tokens, x.logprobs, x.prompt_logprobs);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, token_batch& x) {
  return f(caf::meta::type_name("token_batch"), x.deltas);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sequence_step& x) {
  return f(caf::meta::type_name("sequence_step"), x.id, x.tokens, x.input_from_last_sample,
           x.start_position, x.block_table, x.sample, x.sampling, x.penalty_prompt_tokens,
           x.penalty_output_tokens, x.suppressed_tokens, x.return_logits, x.prompt_logprobs,
           x.next_prompt_token);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, step_plan& x) {
  return f(caf::meta::type_name("step_plan"), x.step_index, x.seqs);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sequence_result& x) {
  return f(caf::meta::type_name("sequence_result"), x.id, x.sampled_token, x.sampled_logprobs,
           x.prompt_logprobs, x.logits);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, step_result& x) {
  return f(caf::meta::type_name("step_result"), x.step_index, x.seqs);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, worker_outcome& x) {
  return f(caf::meta::type_name("worker_outcome"), x.step_index, x.error, x.result,
           x.duration_seconds, x.cuda_graph_replays);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, block_request& x) {
  return f(caf::meta::type_name("block_request"), x.id, x.tokens, x.num_tokens, x.num_known_blocks,
           x.cache_namespace, x.retention_num_tokens, x.retention_priority,
           x.retention_duration_ms);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, block_commit& x) {
  return f(caf::meta::type_name("block_commit"), x.id, x.start, x.tokens, x.defer);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cache_step_request& x) {
  return f(caf::meta::type_name("cache_step_request"), x.step_index, x.commits, x.releases,
           x.running, x.grows, x.admits, x.probes, x.release_all);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, block_grant& x) {
  return f(caf::meta::type_name("block_grant"), x.id, x.status, x.num_cached_tokens, x.block_table,
           x.message);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cache_stats_snapshot& x) {
  return f(caf::meta::type_name("cache_stats_snapshot"), x.num_blocks_total, x.num_blocks_free,
           x.num_blocks_cached, x.num_blocks_locked, x.prefix_queries_tokens, x.prefix_hits_tokens,
           x.evictions_capacity, x.evictions_retained, x.evictions_orphan, x.evictions_reset);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cache_step_reply& x) {
  return f(caf::meta::type_name("cache_step_reply"), x.step_index, x.grows, x.preempted, x.admits,
           x.probes, x.stats, x.error);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, engine_stats& x) {
  return f(caf::meta::type_name("engine_stats"), x.num_requests_running, x.num_requests_waiting,
           x.num_blocks_total, x.num_blocks_free, x.num_blocks_cached, x.num_blocks_locked,
           x.kv_cache_usage_ratio, x.prefix_cache_queries_tokens, x.prefix_cache_hits_tokens,
           x.evictions_by_reason, x.num_preemptions, x.cuda_graph_replays, x.num_requests_accepted,
           x.num_requests_rejected, x.actor_cpu_seconds);
}

// ---- Typed actor interfaces --------------------------------------------------------------

/// A sequence's client: a request actor, or a CAF program's own actor. The scheduler sends,
/// for each submitted sequence, in order: at most one `accepted`, any number of `tokens`, and
/// exactly one `finished` or `failed` (then nothing more).
using sequence_client_actor = caf::typed_actor<
    /// scheduler -> client: first admitted; (id, prompt tokens, cached prompt tokens).
    caf::reacts_to<accepted_atom, request_id, std::int32_t, std::int32_t>,
    /// scheduler -> client: tokens sampled by a step (or prompt logprobs of a prefill chunk).
    caf::reacts_to<tokens_atom, token_delta>,
    /// scheduler -> client: the sequence ended and its blocks are released;
    /// (id, finish reason "stop"|"length"|"cancelled"|"timeout", stop reason).
    caf::reacts_to<finished_atom, request_id, std::string, std::string>,
    /// scheduler -> client: rejected (invalid, overloaded) or failed (backend error).
    caf::reacts_to<failed_atom, request_id, error_info>>;

/// A sequence client that serves many sequences and takes their tokens in batches: the
/// scheduler sends it one `token_batch` per flush for all of its sequences instead of one
/// `tokens` message per sequence (the engine's request hub is one). `accepted`, `finished`
/// and `failed` stay per sequence; a sequence's messages keep their order.
using batch_client_actor = sequence_client_actor::extend<
    /// scheduler -> batch client: tokens of several of its sequences.
    caf::reacts_to<tokens_atom, token_batch>>;

/// The scheduler: continuous batching over the cache manager and the worker.
using scheduler_actor = caf::typed_actor<
    /// client -> scheduler: queue a tokenised sequence (ids must be unique among live ones);
    /// events go to the given client. Invalid or overloaded: `failed` at once.
    caf::reacts_to<submit_atom, sequence_submission, sequence_client_actor>,
    /// client -> scheduler: the same for a batch client (tokens come in token_batch messages).
    caf::reacts_to<submit_atom, sequence_submission, batch_client_actor>,
    /// client -> scheduler: cancel; the client gets `finished` with reason "cancelled" once
    /// every block of the sequence is returned. Unknown ids are ignored.
    caf::reacts_to<cancel_atom, request_id>,
    /// client -> scheduler: end with (reason, stop reason), e.g. ("stop", the stop string) or
    /// ("timeout", ""); the client gets `finished` with them. Unknown ids are ignored.
    caf::reacts_to<finish_atom, request_id, std::string, std::string>,
    /// anyone -> scheduler: the latest engine_stats.
    caf::replies_to<stats_atom>::with<engine_stats>,
    /// scheduler -> itself: try to run a step (retry after a step with nothing to run).
    caf::reacts_to<step_atom>,
    /// scheduler -> itself: send the cache request of the step after step N now (late step
    /// overlap; N = the number of steps sent when it was scheduled; stale ones are ignored).
    caf::reacts_to<step_atom, std::uint64_t>>;

/// The cache manager: owns the kv_cache_manager.
using cache_manager_actor = caf::typed_actor<
    /// scheduler -> cache manager, once per step: commits and releases of the last step, then
    /// growth (with preemption), admissions and lpm probes; replies with block tables + stats.
    caf::replies_to<allocate_atom, cache_step_request>::with<cache_step_reply>,
    /// anyone -> cache manager: current cache statistics.
    caf::replies_to<stats_atom>::with<cache_stats_snapshot>>;

/// The worker: owns the backend and runs steps on its own thread.
using worker_actor = caf::typed_actor<
    /// scheduler -> worker: hand a plan to the backend (step_executor::submit); at most two
    /// steps in flight. Its outcome comes from a collect.
    caf::reacts_to<submit_atom, step_plan>,
    /// scheduler -> worker: the oldest submitted step's outcome, once it has run: the result
    /// or the error that failed the step (never a CAF error for backend failures).
    caf::replies_to<collect_atom>::with<worker_outcome>>;

/// The request actor of the engine facade: a sequence client that owns the client's event
/// stream, deadline, cancellation and detokenisation.
using request_actor = sequence_client_actor::extend<
    /// engine -> request actor: cancel (the stream ends with finished "cancelled").
    caf::reacts_to<cancel_atom>,
    /// request actor -> itself: the deadline passed (the stream ends with "timeout").
    caf::reacts_to<timeout_atom>>;

/// What the engine facade hands its request hub for one request. Local only (it carries the
/// client's callback): never crosses a network.
struct hub_request {
  sequence_submission submission;
  std::vector<std::string> stop_strings;
  event_callback on_event;  ///< called from the hub's thread, in order
  std::optional<std::chrono::milliseconds> timeout;
};

/// The engine's request hub: the client of every request submitted through engine.hpp. It
/// holds one request_state per request (the client's event stream, detokeniser, stop
/// strings, deadline, cancel path) and takes the tokens of all of them in one message per
/// flush, where one actor per request would take one message each.
using request_hub_actor = batch_client_actor::extend<
    /// engine -> hub: a new request; the hub submits it to the scheduler.
    caf::reacts_to<submit_atom, hub_request>,
    /// engine -> hub: cancel (the stream ends with finished "cancelled"); unknown ids ignored.
    caf::reacts_to<cancel_atom, request_id>,
    /// hub -> itself: a request's deadline passed (its stream ends with "timeout").
    caf::reacts_to<timeout_atom, request_id>>;

// ---- Spawning ----------------------------------------------------------------------------

/// Registers every payload above with an actor system config (needed only for messages that
/// cross a network; harmless otherwise).
void add_message_types(caf::actor_system_config& cfg);

/// The engine's long-lived actors.
struct engine_actors {
  scheduler_actor scheduler;
  cache_manager_actor cache_manager;
  worker_actor worker;
  std::shared_ptr<actor_cpu_meter> cpu_meter;  ///< null unless engine_config::measure_actor_cpu
};

class stats_board;

/// Validates `config` against the backend, builds the scheduler and cache configs, and spawns
/// the cache manager, the worker (detached: its own thread, since backend calls block) and the
/// scheduler. The backend is moved into the worker. `board` (may be null) receives the stats
/// after every step; `obs` (may be null) gets on_step / on_stats.
result<engine_actors> spawn_engine_actors(caf::actor_system& sys, const engine_config& config,
                                          std::unique_ptr<backend> model_backend,
                                          std::shared_ptr<observer> obs,
                                          std::shared_ptr<stats_board> board);

/// The scheduler's settings for `config` over a backend (max_model_len resolved). Errors for
/// invalid settings.
result<scheduler_config> make_scheduler_config(const engine_config& config,
                                               const backend& model_backend);

/// Each of these takes an optional meter that accounts the actor's CPU time.
cache_manager_actor spawn_cache_manager(caf::actor_system& sys,
                                        std::shared_ptr<step_allocator> allocator,
                                        std::shared_ptr<actor_cpu_meter> meter = nullptr);
worker_actor spawn_worker(caf::actor_system& sys, std::shared_ptr<step_executor> executor,
                          std::shared_ptr<actor_cpu_meter> meter = nullptr);
scheduler_actor spawn_scheduler(caf::actor_system& sys, scheduler_config config,
                                cache_manager_actor cache, worker_actor worker,
                                std::shared_ptr<observer> obs, std::shared_ptr<stats_board> board,
                                std::shared_ptr<actor_cpu_meter> meter = nullptr);

/// Everything a request actor needs besides its submission.
struct request_actor_config {
  scheduler_actor scheduler;
  std::shared_ptr<const tokenizer> tok;  ///< may be null: no text
  std::vector<std::string> stop_strings;
  event_callback on_event;  ///< called from the actor's thread, in order
  std::shared_ptr<observer> obs;
  std::optional<std::chrono::milliseconds> timeout;
};

/// Everything the request hub needs.
struct request_hub_config {
  scheduler_actor scheduler;
  std::shared_ptr<const tokenizer> tok;        ///< may be null: no text
  std::shared_ptr<observer> obs;               ///< may be null
  std::shared_ptr<actor_cpu_meter> cpu_meter;  ///< may be null
};

/// Spawns the engine's request hub (see request_hub_actor). Should the scheduler stop, every
/// live request (and every later one) ends with an error.
request_hub_actor spawn_request_hub(caf::actor_system& sys, request_hub_config config);

/// Spawns a request actor that submits `submission` to the scheduler and streams its events.
request_actor spawn_request_actor(caf::actor_system& sys, sequence_submission submission,
                                  request_actor_config config);

}  // namespace kvserve

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(kvserve::hub_request)
