#pragma once
/// The result of a run: aggregate metrics over the request outcomes (as vLLM's `bench serve`
/// reports them), the JSON written by --output-json and the printed table. Pure.

#include <string>
#include <vector>

#include "bench/serve/bench_config.hpp"
#include "bench/serve/latency_stats.hpp"
#include "bench/serve/metrics_text.hpp"
#include "bench/serve/request_recorder.hpp"

namespace kvserve::bench {

struct bench_summary {
  int num_requests = 0;  ///< sent
  int completed = 0;
  int failed = 0;
  double duration_s = 0;              ///< first send to last completion
  long long total_input_tokens = 0;   ///< completed requests
  long long total_output_tokens = 0;  ///< completed requests
  long long total_cached_tokens = 0;  ///< completed requests
  double request_throughput = 0;      ///< completed / s
  double output_throughput = 0;       ///< output tokens / s
  double total_token_throughput = 0;  ///< (input + output) tokens / s
  /// Milliseconds.
  distribution_summary ttft_ms, tpot_ms, itl_ms, e2e_ms;
  /// Cached prompt tokens / prompt tokens over completed requests, from the usage the server
  /// returned with each request.
  double client_prefix_hit_rate = 0;
  server_counters server;  ///< server.available: /metrics was read before and after
  /// The server's prompt and generation token counters moved by exactly what the requests
  /// report (meaningful only when nothing else used the server). The prompt counter may
  /// count all prompt tokens or only those not served from the cache: either matches.
  bool token_counts_match = false;
  /// The server's kvserve_prompt_tokens_total matched the prompt tokens the prefix cache did
  /// not serve (it counts computed prompt tokens), rather than all prompt tokens.
  bool server_counts_uncached_prompt_tokens = false;
  /// |usage hit rate - /metrics hit rate| in percentage points (issue 9: at most 0.5).
  double hit_rate_diff_points = 0;
  /// The two checks (token counts, hit rates) are well defined on this run: /metrics was read
  /// and the server preempted nothing. kvserve computes a preempted request's prompt again and
  /// looks its prefix up again when it is re-admitted, and counts both again in
  /// kvserve_prompt_tokens_total and kvserve_prefix_cache_queries_tokens_total, while the
  /// request's usage reports the first admission only.
  bool checks_comparable = false;
  /// "pass", "fail", "not comparable: N preemptions" or "no metrics": both checks together.
  std::string check_verdict;
  std::vector<std::string> first_errors;  ///< up to 10 distinct errors
};

/// Aggregates outcomes; `duration_s` is the wall time of the run.
bench_summary summarize_run(const std::vector<request_outcome>& outcomes, double duration_s,
                            const server_counters& server);

/// The JSON document of --output-json: config, summary and (when config.save_requests) the
/// per-request samples.
std::string report_json(const bench_config& config, const bench_summary& summary,
                        const std::vector<request_outcome>& outcomes);

/// The human-readable table printed at the end of a run.
std::string report_table(const bench_config& config, const bench_summary& summary);

}  // namespace kvserve::bench
