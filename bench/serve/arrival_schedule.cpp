#include "bench/serve/arrival_schedule.hpp"

#include <cmath>

namespace kvserve::bench {

std::vector<double> poisson_arrival_times(int count, double rate, std::uint64_t seed) {
  std::vector<double> out;
  if (count <= 0) return out;
  out.reserve(static_cast<std::size_t>(count));
  if (!std::isfinite(rate) || rate <= 0.0) {
    out.assign(static_cast<std::size_t>(count), 0.0);
    return out;
  }
  std::uint64_t state = seed ^ 0x617272697661ULL;  // "arriva"
  double t = 0.0;
  out.push_back(0.0);  // the first session starts at once, as vLLM's does
  for (int i = 1; i < count; ++i) {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    // Uniform in (0, 1]: 53 random bits, never 0, so log() is finite.
    double u = (static_cast<double>(z >> 11) + 1.0) / 9007199254740992.0;
    t += -std::log(u) / rate;
    out.push_back(t);
  }
  return out;
}

}  // namespace kvserve::bench
