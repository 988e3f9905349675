#pragma once
/// The counter-based random generator of DESIGN.md: a draw depends only on (seed, position,
/// stream), never on what else shares the batch. Header-only and usable from CUDA kernels, so
/// the CPU and CUDA backends draw identical numbers.

#include <cstdint>

#if defined(__CUDACC__)
#define KVSERVE_HOST_DEVICE __host__ __device__
#else
#define KVSERVE_HOST_DEVICE
#endif

namespace kvserve {

/// SplitMix64 finaliser: a bijective 64-bit mix with good avalanche.
KVSERVE_HOST_DEVICE constexpr std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// 64 random bits for draw `stream` at `position` of a request with `seed`.
KVSERVE_HOST_DEVICE constexpr std::uint64_t counter_random_bits(std::uint64_t seed,
                                                                std::uint64_t position,
                                                                std::uint64_t stream = 0) {
  return mix64(mix64(seed ^ 0x6a09e667f3bcc909ULL) ^ mix64(position * 2 + 1) ^
               mix64(stream + 0x3c6ef372fe94f82bULL));
}

/// A float uniform in [0, 1) with 24 random bits, exact in float.
KVSERVE_HOST_DEVICE constexpr float counter_uniform(std::uint64_t seed, std::uint64_t position,
                                                    std::uint64_t stream = 0) {
  return static_cast<float>(counter_random_bits(seed, position, stream) >> 40) *
         (1.0f / 16777216.0f);
}

}  // namespace kvserve
