#pragma once
/// Runs a benchmark against a running server: builds the workload, sends sessions on the
/// arrival schedule within the concurrency bound, collects every request's outcome and reads
/// /metrics before and after. Every run ends: each request has a deadline
/// (request_timeout_s) and the whole run a cap (max_duration_s).

#include <vector>

#include "bench/serve/bench_config.hpp"
#include "bench/serve/bench_report.hpp"
#include "bench/serve/request_recorder.hpp"
#include "model/status.hpp"

namespace kvserve::bench {

struct bench_run {
  bench_summary summary;
  std::vector<request_outcome> outcomes;  ///< in completion order
};

/// Fails (without sending load) on an invalid config or when the server cannot be reached.
/// Failed requests do not fail the run; they are counted in the summary.
result<bench_run> run_benchmark(const bench_config& config);

/// Checks what run_benchmark needs before it starts (workload, backend/workload fit, rates).
[[nodiscard]] status validate(const bench_config& config);

}  // namespace kvserve::bench
