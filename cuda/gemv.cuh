#pragma once
/// Small-batch GEMM for decode: y[m, n] = x[m, k] . w[n, k] with m <= 8, streaming each weight
/// row once with 16-byte loads. A block owns NR consecutive output columns and its 128 threads
/// stride over k together (thread t reads elements 8t, 8t + 1024, ...), so even the narrow
/// decode matrices (n = 4096) put thousands of warps on the device. Each thread keeps D stride
/// iterations of weights (and of x) in flight in a register ring: the load for iteration i + D
/// is issued before iteration i is used. Launched with programmatic dependent launch
/// (cuda/pdl.cuh): the first D weight loads are issued before `pdl_wait()`, so the weights
/// stream while the kernel that writes x (a norm, the attention merge, SwiGLU) finishes.
/// Partial sums are reduced with shuffles, then across the 4 warps in shared memory.

#include <cuda_bf16.h>

#include <cstdint>

#include "cuda/device_math.cuh"
#include "cuda/pdl.cuh"

namespace kvserve::cuda {

inline constexpr int kGemvWarps = 4;

/// Output columns per block: more for few rows, so that each thread keeps enough loads in
/// flight with few registers.
template <int M>
inline constexpr int kGemvRowsPerBlock = M <= 2 ? 4 : 2;
/// Stride iterations in flight per thread.
inline constexpr int kGemvDepth = 2;

/// Weights are read once per step: streaming loads (evict first) keep them from displacing
/// activations and the KV cache in L2.
__device__ __forceinline__ uint4 load_weights16(const __nv_bfloat16* p) {
  return __ldcs(reinterpret_cast<const uint4*>(p));
}

template <int M, int NR, int D>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_kernel(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ w, int n,
                int k, float* __restrict__ y) {
  constexpr int kStride = kGemvWarps * 32 * 8;
  __shared__ float partial[kGemvWarps][M * NR];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n0 = blockIdx.x * NR;
  const __nv_bfloat16* wrow[NR];
#pragma unroll
  for (int j = 0; j < NR; ++j) wrow[j] = w + static_cast<std::int64_t>(min(n0 + j, n - 1)) * k;
  const int kk0 = threadIdx.x * 8;
  const int iters = kk0 < k ? (k - kk0 + kStride - 1) / kStride : 0;

  // Weights only before the wait: nothing on the stream writes them.
  uint4 wb[D][NR];
#pragma unroll
  for (int d = 0; d < D; ++d)
    if (d < iters)
#pragma unroll
      for (int j = 0; j < NR; ++j) wb[d][j] = load_weights16(wrow[j] + kk0 + d * kStride);
  pdl_launch_dependents();
  pdl_wait();
  uint4 xb[D][M];
#pragma unroll
  for (int d = 0; d < D; ++d)
    if (d < iters)
#pragma unroll
      for (int r = 0; r < M; ++r)
        xb[d][r] = *reinterpret_cast<const uint4*>(x + static_cast<std::int64_t>(r) * k + kk0 +
                                                   d * kStride);

  float acc[M][NR];
#pragma unroll
  for (int r = 0; r < M; ++r)
#pragma unroll
    for (int j = 0; j < NR; ++j) acc[r][j] = 0.0f;
  for (int it = 0; it < iters; it += D) {
#pragma unroll
    for (int d = 0; d < D; ++d) {
      const int i = it + d;
      if (i < iters) {
        float wv[NR][8], xv[M][8];
#pragma unroll
        for (int j = 0; j < NR; ++j) bf16x8_to_float(wb[d][j], wv[j]);
#pragma unroll
        for (int r = 0; r < M; ++r) bf16x8_to_float(xb[d][r], xv[r]);
        if (i + D < iters) {
          const int kn = kk0 + (i + D) * kStride;
#pragma unroll
          for (int j = 0; j < NR; ++j) wb[d][j] = load_weights16(wrow[j] + kn);
#pragma unroll
          for (int r = 0; r < M; ++r)
            xb[d][r] = *reinterpret_cast<const uint4*>(x + static_cast<std::int64_t>(r) * k + kn);
        }
#pragma unroll
        for (int r = 0; r < M; ++r)
#pragma unroll
          for (int j = 0; j < NR; ++j)
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[r][j] += xv[r][e] * wv[j][e];
      }
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
