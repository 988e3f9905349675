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

  /// The current metrics in Prometheus's text format (version 0.0.4).
  std::string render() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace kvserve
