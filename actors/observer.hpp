#pragma once
/// The plain interface through which the engine reports what it does. monitoring/ implements
/// it with prometheus-cpp; tests implement it to count. Free of CAF types. Calls come from
/// engine threads, possibly concurrently: implementations must be thread-safe and quick.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/kv_capacity.hpp"

namespace kvserve {

/// Kind of a scheduler step, for `kvserve_step_duration_seconds{kind}`.
enum class step_kind { kPrefill, kDecode, kMixed };
const char* to_string(step_kind kind);

/// One executed step.
struct step_report {
  step_kind kind = step_kind::kDecode;
  double duration_seconds = 0;   ///< worker execution time of the step
  int batch_size = 0;            ///< sequences in the step
  int num_prompt_tokens = 0;     ///< prompt (prefill) tokens computed
  int num_generated_tokens = 0;  ///< tokens sampled
};

/// One request that ended (any reason).
struct request_report {
  std::string finish_reason;  ///< "stop", "length", "cancelled", "error", "timeout"
  int prompt_tokens = 0;
  int cached_prompt_tokens = 0;
  int completion_tokens = 0;
  double queue_time_seconds = 0;            ///< submitted -> first scheduled
  double time_to_first_token_seconds = -1;  ///< <0 when no token was produced
  double e2e_latency_seconds = 0;
  std::vector<double> inter_token_latencies_seconds;
};

/// Gauges and cumulative counters, reported after every step (and on idle ticks).
struct engine_stats {
  int num_requests_running = 0;
  int num_requests_waiting = 0;
  std::int64_t num_blocks_total = 0;
  std::int64_t num_blocks_free = 0;
  std::int64_t num_blocks_cached = 0;  ///< cached and unlocked (evictable)
  std::int64_t num_blocks_locked = 0;
  double kv_cache_usage_ratio = 0;  ///< locked / total
  // Cumulative since start.
  std::uint64_t prefix_cache_queries_tokens = 0;
  std::uint64_t prefix_cache_hits_tokens = 0;
  std::map<std::string, std::uint64_t> evictions_by_reason;
  std::uint64_t num_preemptions = 0;
  std::uint64_t cuda_graph_replays = 0;
  std::uint64_t num_requests_accepted = 0;
  std::uint64_t num_requests_rejected = 0;
  /// CPU seconds spent handling messages, by actor (scheduler, cache_manager, worker,
  /// request_hub); empty unless engine_config::measure_actor_cpu.
  std::map<std::string, double> actor_cpu_seconds;
};

class observer {
 public:
  virtual ~observer() = default;
  virtual void on_step(const step_report& report) {}
  virtual void on_request_finished(const request_report& report) {}
  virtual void on_stats(const engine_stats& stats) {}
  /// The KV memory budget of the engine's pool (bytes per token and its factors, blocks,
  /// tokens, sequences per context length): called once when the engine starts, before any
  /// request is served.
  virtual void on_kv_capacity(const kv_capacity& capacity) {}
};

}  // namespace kvserve
