#pragma once
/// Summary statistics of latency samples: mean, median, p90, p99 (linear interpolation
/// between closest ranks, as numpy's default), min, max. Pure.

#include <cstddef>
#include <vector>

namespace kvserve::bench {

/// All fields are 0 when count is 0.
struct distribution_summary {
  std::size_t count = 0;
  double mean = 0;
  double median = 0;
  double p90 = 0;
  double p99 = 0;
  double min = 0;
  double max = 0;
};

/// The q-th percentile (q in [0, 100]) of `sorted` (ascending, non-empty).
double percentile_sorted(const std::vector<double>& sorted, double q);

/// Summarises `samples` (any order).
distribution_summary summarize(std::vector<double> samples);

}  // namespace kvserve::bench
