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
  /// The server's token counters moved by exactly what the requests report (meaningful only
  /// when nothing else used the server). Where the server exports
  /// kvserve_request_prompt_tokens_total, prompt tokens are compared with it: each request's
  /// prompt once, as its usage reports it, however often it was computed (preemption) or
  /// looked up. Otherwise kvserve_prompt_tokens_total is compared, and it may count all prompt
  /// tokens or only those not served from the cache: either matches. Generation tokens are
  /// always kvserve_generation_tokens_total.
  bool token_counts_match = false;
  /// The server's kvserve_prompt_tokens_total matched the prompt tokens the prefix cache did
  /// not serve (it counts computed prompt tokens), rather than all prompt tokens.
  bool server_counts_uncached_prompt_tokens = false;
  /// kvserve_prompt_tokens_total moved by all the requests' prompt tokens.
  bool server_counts_all_prompt_tokens = false;
  /// |usage hit rate - server hit rate| in percentage points (issue 9: at most 0.5). The
  /// server's rate is kvserve_request_cached_prompt_tokens_total /
  /// kvserve_request_prompt_tokens_total where exported, else the lookup rate below.
  double hit_rate_diff_points = 0;
  /// |usage hit rate - kvserve_prefix_cache_hits_tokens_total /
  /// kvserve_prefix_cache_queries_tokens_total| in points: the engine's own lookups, which
  /// count a preempted request's lookup again when it is re-admitted.
  double lookup_hit_rate_diff_points = 0;
  /// The checks are well defined on this run: /metrics was read and either the server has the
  /// per-request counters or it preempted nothing. Without those counters a preempted
  /// request's recompute and second lookup count again in kvserve_prompt_tokens_total and
  /// kvserve_prefix_cache_queries_tokens_total, while its usage reports the first admission.
  bool checks_comparable = false;
  /// "pass", "fail", "no metrics", "not comparable: N preemptions" (a server without
  /// per-request counters that preempted), or "pass (N preemptions: lookup hit rate not
  /// compared)". Without preemption "pass" also needs the lookup hit rate within 0.5 points.
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
