#pragma once
/// Reading the Prometheus text exposition format that kvserve's GET /metrics serves, and the
/// counters the benchmark compares before and after a run. Pure.

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace kvserve::bench {

/// Samples of one scrape, keyed by metric name; each name maps its label set (the text between
/// the braces, "" when none) to the value. Comment lines and malformed lines are skipped.
class metrics_snapshot {
 public:
  static metrics_snapshot parse(std::string_view text);

  /// The sum over every label set of `name`; nullopt when the scrape lacks the metric.
  std::optional<double> sum(const std::string& name) const;
  /// The value of `name` with exactly this label text (e.g. `reason="stop"`).
  std::optional<double> get(const std::string& name, const std::string& labels = "") const;
  bool empty() const { return samples_.empty(); }

 private:
  std::map<std::string, std::map<std::string, double>> samples_;
};

/// The server-side counters of a run: differences between two scrapes.
struct server_counters {
  bool available = false;  ///< both scrapes had the prefix-cache counters
  double prefix_hits_tokens = 0;
  double prefix_queries_tokens = 0;
  double prompt_tokens = 0;
  double generation_tokens = 0;
  double preemptions = 0;
  double evictions = 0;
  /// Both scrapes had kvserve_request_prompt_tokens_total: the server counts each ended
  /// request's prompt (and the cached part of it, from the request's usage) once.
  bool has_request_counters = false;
  double request_prompt_tokens = 0;         ///< kvserve_request_prompt_tokens_total
  double request_cached_prompt_tokens = 0;  ///< kvserve_request_cached_prompt_tokens_total
  /// The server's own TTFT and queue-time histograms (_sum in seconds, _count): their means
  /// against the client's TTFT separate engine time from network and client time.
  double ttft_sum_s = 0;
  double ttft_count = 0;
  double queue_time_sum_s = 0;
  double queue_time_count = 0;
  /// Mean seconds; 0 when nothing was observed.
  double mean_ttft_s() const { return ttft_count > 0 ? ttft_sum_s / ttft_count : 0.0; }
  double mean_queue_time_s() const {
    return queue_time_count > 0 ? queue_time_sum_s / queue_time_count : 0.0;
  }
  /// hits / queries; 0 when nothing was queried.
  double prefix_hit_rate() const {
    return prefix_queries_tokens > 0 ? prefix_hits_tokens / prefix_queries_tokens : 0.0;
  }
  /// The ended requests' cached prompt tokens / their prompt tokens; 0 when none ended.
  double request_hit_rate() const {
    return request_prompt_tokens > 0 ? request_cached_prompt_tokens / request_prompt_tokens : 0.0;
  }
};

/// after - before for the counters above (kvserve_prefix_cache_hits_tokens_total,
/// kvserve_prefix_cache_queries_tokens_total, kvserve_prompt_tokens_total,
/// kvserve_generation_tokens_total, kvserve_request_prompt_tokens_total,
/// kvserve_request_cached_prompt_tokens_total, kvserve_num_preemptions_total,
/// kvserve_kv_cache_evictions_total summed over reasons, and the _sum and _count of
/// kvserve_time_to_first_token_seconds and kvserve_request_queue_time_seconds).
server_counters counters_between(const metrics_snapshot& before, const metrics_snapshot& after);

}  // namespace kvserve::bench
