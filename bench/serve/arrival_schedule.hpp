#pragma once
/// When each session starts: a Poisson process at a given rate (exponential gaps), or all at
/// once when the rate is infinite. Pure.

#include <cstdint>
#include <vector>

namespace kvserve::bench {

/// Start offsets in seconds from the beginning of the run, non-decreasing, the first one 0.
/// `rate` is in sessions per second; a rate that is infinite (or <= 0) starts all at 0.
/// Deterministic in `seed`.
std::vector<double> poisson_arrival_times(int count, double rate, std::uint64_t seed);

}  // namespace kvserve::bench
