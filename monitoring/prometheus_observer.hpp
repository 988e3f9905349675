#pragma once
/// Prometheus metrics for the engine: implements kvserve::observer with prometheus-cpp and
/// renders the text exposition format for GET /metrics. The metric names and their vLLM
/// equivalents are listed in docs/metrics.md. prometheus-cpp stays inside monitoring/*.cpp.

#include <memory>
#include <string>

#include "actors/observer.hpp"

namespace kvserve {

/// Thread-safe: the engine calls the observer methods from its threads while /metrics is
/// rendered on the server's. Cumulative totals in engine_stats become counter increments by
/// their delta since the previous snapshot.
class prometheus_observer : public observer {
 public:
  prometheus_observer();
  ~prometheus_observer() override;

  void on_step(const step_report& report) override;
  void on_request_finished(const request_report& report) override;
  void on_stats(const engine_stats& stats) override;
  /// Sets the KV memory budget gauges (kvserve_kv_cache_bytes_per_token{dtype},
  /// kvserve_kv_cache_info, kvserve_kv_cache_blocks_total, kvserve_kv_cache_tokens_capacity,
  /// kvserve_kv_cache_memory_bytes, kvserve_kv_cache_max_sequences{context},
  /// kvserve_max_model_len). A later call replaces the earlier series.
  void on_kv_capacity(const kv_capacity& capacity) override;

  /// The current metrics in Prometheus's text format (version 0.0.4).
  std::string render() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace kvserve
