#pragma once
/// Small-batch GEMM for decode: y[m, n] = x[m, k] . w[n, k] with m <= 8, streaming each weight
/// row once with 16-byte loads. A block owns kGemvRowsPerBlock<M> consecutive output columns and
/// its 128 threads stride over k together (thread t reads elements 8t, 8t + 1024, ...), so even
/// the narrow decode matrices (n = 4096) put thousands of warps and enough bytes in flight on
/// the device; partial sums are reduced with shuffles, then across the 4 warps in shared memory.

#include <cuda_bf16.h>

#include <cstdint>

#include "cuda/device_math.cuh"

namespace kvserve::cuda {

inline constexpr int kGemvWarps = 4;

/// Output columns per block: more for few rows, so that each thread keeps 8 loads in flight.
template <int M>
inline constexpr int kGemvRowsPerBlock = M <= 2 ? 4 : 2;

template <int M>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_kernel(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ w, int n,
                int k, float* __restrict__ y) {
  constexpr int NR = kGemvRowsPerBlock<M>;
  constexpr int kStride = kGemvWarps * 32 * 8;
  __shared__ float partial[kGemvWarps][M * NR];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n0 = blockIdx.x * NR;
  float acc[M][NR];
#pragma unroll
  for (int r = 0; r < M; ++r)
#pragma unroll
    for (int j = 0; j < NR; ++j) acc[r][j] = 0.0f;
  const __nv_bfloat16* wrow[NR];
#pragma unroll
  for (int j = 0; j < NR; ++j) wrow[j] = w + static_cast<std::int64_t>(min(n0 + j, n - 1)) * k;
#pragma unroll 2
  for (int kk = threadIdx.x * 8; kk < k; kk += kStride) {
    float wv[NR][8];
#pragma unroll
    for (int j = 0; j < NR; ++j) load_bf16<8>(wrow[j] + kk, wv[j]);
#pragma unroll
    for (int r = 0; r < M; ++r) {
      float xv[8];
      load_bf16<8>(x + static_cast<std::int64_t>(r) * k + kk, xv);
#pragma unroll
      for (int j = 0; j < NR; ++j)
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[r][j] += xv[e] * wv[j][e];
    }
  }
#pragma unroll
  for (int r = 0; r < M; ++r)
#pragma unroll
    for (int j = 0; j < NR; ++j) {
      const float v = warp_sum(acc[r][j]);
      if (lane == 0) partial[warp][r * NR + j] = v;
    }
  __syncthreads();
  if (threadIdx.x < M * NR) {
    const int r = threadIdx.x / NR, j = threadIdx.x % NR;
    float v = 0.0f;
#pragma unroll
    for (int q = 0; q < kGemvWarps; ++q) v += partial[q][threadIdx.x];
    if (n0 + j < n) y[static_cast<std::int64_t>(r) * n + n0 + j] = v;
  }
}

}  // namespace kvserve::cuda
