#pragma once
/// The in-process engine API, free of CAF types: create an engine from a config, submit
/// requests (text, chat messages or token ids), receive streamed events through a callback or
/// by pulling from a stream, and cancel. net/ and embedding programs use only this header.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "actors/observer.hpp"
#include "model/backend.hpp"
#include "model/chat_message.hpp"
#include "model/model_config.hpp"
#include "model/sampling_params.hpp"
#include "model/status.hpp"
#include "model/step_plan.hpp"

namespace kvserve {

class tokenizer;
class chat_template;

using request_id = std::uint64_t;

/// Whether the worker submits step N + 1 to the backend before collecting step N.
enum class async_scheduling_mode {
  kAuto,  ///< on when the backend queues steps (backend::queues_steps: the CUDA backend)
  kOn,    ///< always (with the CPU backend it only delays each step's tokens: tests)
  kOff,   ///< plan each step after the previous one's result
};

/// Engine flags of DESIGN.md's table that the engine itself (not app/) interprets.
struct engine_config {
  int block_size = 16;
  int max_model_len = 0;  ///< 0: the model's context length
  int max_num_seqs = 32;
  int max_num_batched_tokens = 2048;
  int max_waiting_requests = 1024;  ///< beyond this, submit() rejects with kOverloaded
  bool enable_prefix_caching = true;
  bool prefix_commit_early = true;                ///< --prefix-commit early|finish
  std::string eviction_policy = "dependent-lru";  ///< dependent-lru|dependent-lfu|lru-any
  std::string scheduling_policy = "fcfs";         ///< fcfs|lpm
  std::chrono::milliseconds lpm_age_bound{2000};  ///< lpm never lets a request wait longer
  bool no_kv_cache = false;
  /// Asynchronous steps (--async-scheduling): the scheduler plans step N + 1 while step N
  /// runs and the worker queues it behind step N, so the device does not wait for the host
  /// between steps. Always off with no_kv_cache.
  async_scheduling_mode async_scheduling = async_scheduling_mode::kAuto;
  std::uint64_t seed = 0;  ///< default sampling seed
  /// Account each actor's CPU time in engine_stats::actor_cpu_seconds (two clock reads per
  /// message an actor handles).
  bool measure_actor_cpu = false;
};

/// Keep the first `num_tokens` prompt tokens at retention `priority` (higher is kept longer),
/// for `duration` if set, after which they fall back to the default priority.
struct retention_spec {
  int num_tokens = 0;
  int priority = 100;
  std::optional<std::chrono::milliseconds> duration;
};

/// A generation request. Exactly one prompt form.
struct generate_request {
  std::variant<std::string, std::vector<chat_message>, std::vector<std::int32_t>> prompt;
  bool add_generation_prompt = true;  ///< chat prompts: end with the assistant header
  sampling_params sampling;           ///< seed defaults to engine_config::seed when unset
  bool seed_set = false;
  int max_tokens = 256;
  std::vector<std::string> stop;             ///< stop strings, not included in the output
  std::vector<std::int32_t> stop_token_ids;  ///< besides the model's EOS tokens
  std::string cache_salt;                    ///< namespace: KV is shared only within a salt
  std::optional<retention_spec> retention;
  int priority = 0;  ///< lower is served first (vLLM); ties by arrival
  std::optional<std::chrono::milliseconds> timeout;  ///< deadline from submission
  int prompt_logprobs = -1;  ///< >=0: logprobs of every prompt token (computes all positions)
};

/// The request was first scheduled: its prompt length and how much of it the prefix cache
/// served (whole blocks). Sent once, before any token_event.
struct accepted_event {
  int prompt_tokens = 0;
  int cached_prompt_tokens = 0;
};
/// New output: text is UTF-8 safe (never half a character); stop strings are held back.
struct token_event {
  std::string text;
  std::vector<std::int32_t> token_ids;
  std::vector<position_logprobs> logprobs;  ///< one per token when sampling.logprobs >= 0
};
struct usage_info {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_prompt_tokens = 0;
};
/// The last event of a request that ended normally or was cancelled.
struct finished_event {
  std::string finish_reason;  ///< "stop", "length", "cancelled", "timeout"
  std::string stop_reason;    ///< the stop string or token that matched, if any
  usage_info usage;
  double time_to_first_token_seconds = -1;
  std::vector<double> inter_token_latencies_seconds;
  std::vector<std::optional<position_logprobs>> prompt_logprobs;  ///< first is nullopt
};
/// The last event of a request that failed; code is a stable status code name.
struct error_event {
  status error;
};

using generation_event = std::variant<accepted_event, token_event, finished_event, error_event>;
using event_callback = std::function<void(request_id, const generation_event&)>;

/// Pull-side handle: events of one request, in order. Thread-safe.
class request_stream {
 public:
  virtual ~request_stream() = default;
  virtual request_id id() const = 0;
  /// The next event, waiting up to `timeout`; nullopt on timeout or after the final event.
  virtual std::optional<generation_event> next(std::chrono::milliseconds timeout) = 0;
  virtual void cancel() = 0;
};

/// The engine. Every accepted request ends with exactly one finished_event or error_event.
class engine {
 public:
  virtual ~engine() = default;

  /// Submits a request; events go to `on_event` from engine threads, in order. A request that
  /// cannot be accepted (bad input, overload) gets its error_event before this returns.
  virtual request_id submit(generate_request request, event_callback on_event) = 0;
  /// Pull form of submit.
  virtual std::shared_ptr<request_stream> submit(generate_request request) = 0;
  /// Cancels a request; its stream ends with finished_event{"cancelled"}. Unknown ids are ignored.
  virtual void cancel(request_id id) = 0;

  virtual const model_config& model() const = 0;
  virtual const tokenizer& get_tokenizer() const = 0;
  virtual const engine_config& config() const = 0;
  virtual engine_stats stats() const = 0;

  /// Stops accepting, cancels what is still running after `grace`, and waits for every
  /// request to end. Idempotent; the destructor calls it with zero grace.
  virtual void shutdown(std::chrono::milliseconds grace) = 0;
};

/// Everything an engine is built from. The application chooses the backend.
struct engine_parts {
  std::unique_ptr<backend> model_backend;
  std::shared_ptr<const tokenizer> model_tokenizer;
  std::shared_ptr<const chat_template> model_chat_template;
  std::shared_ptr<observer> engine_observer;  ///< may be null
};

/// Creates the actor system and the engine's actors. Fails on an invalid config.
result<std::unique_ptr<engine>> make_engine(const engine_config& config, engine_parts parts);

/// Whether an engine made with `config` over `model_backend` runs asynchronous steps
/// (engine_config::async_scheduling resolved against the backend).
bool async_steps_enabled(const engine_config& config, const backend& model_backend);

}  // namespace kvserve
