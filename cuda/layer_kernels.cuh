#pragma once
/// Element-wise and normalisation kernels of a decoder layer (see kernels.hpp for layouts).

#include <cuda_bf16.h>

#include <cstdint>

#include "cuda/device_math.cuh"
#include "cuda/pdl.cuh"
#include "model/counter_rng.hpp"

namespace kvserve::cuda {

/// One block per token; threads stride over the hidden dimension.
__global__ void embedding_gather_kernel(const __nv_bfloat16* __restrict__ table,
                                        const std::int32_t* __restrict__ tokens, int hidden,
                                        float* __restrict__ out) {
  const std::int64_t row = tokens[blockIdx.x];
  const __nv_bfloat16* src = table + row * hidden;
  float* dst = out + static_cast<std::int64_t>(blockIdx.x) * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = __bfloat162float(src[i]);
}

/// One block per output row. The row is staged in shared memory (hidden floats).
__global__ void add_rms_norm_kernel(float* __restrict__ residual, const float* __restrict__ delta,
                                    const float* __restrict__ weight,
                                    const std::int32_t* __restrict__ rows, int hidden, float eps,
                                    bool write_residual, __nv_bfloat16* __restrict__ out) {
  extern __shared__ float row_buf[];
  __shared__ float scratch[32];
  pdl_launch_dependents();  // launched with PDL (cuda/pdl.cuh): the next matmul may start
  pdl_wait();               // streaming its weights; wait for the writer of residual/delta
  const std::int64_t r = rows ? rows[blockIdx.x] : blockIdx.x;
  float* res = residual + r * hidden;
  const float* d = delta ? delta + r * hidden : nullptr;
  float sum_sq = 0.0f;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
    float x = res[i];
    if (d) x += d[i];
    row_buf[i] = x;
    sum_sq += x * x;
  }
  sum_sq = block_sum(sum_sq, scratch);
  const float inv_rms = rsqrtf(sum_sq / static_cast<float>(hidden) + eps);
  __nv_bfloat16* o = out + static_cast<std::int64_t>(blockIdx.x) * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
    const float x = row_buf[i];
    if (write_residual) res[i] = x;
    o[i] = __float2bfloat16(x * inv_rms * weight[i]);
  }
}

__global__ void swiglu_kernel(const float* __restrict__ gate_up, int inter,
                              __nv_bfloat16* __restrict__ out) {
  pdl_launch_dependents();
  pdl_wait();
  const std::int64_t t = blockIdx.y;
  const float* g = gate_up + t * 2 * inter;
  const float* u = g + inter;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < inter; i += gridDim.x * blockDim.x) {
    const float x = g[i];
    const float silu = x / (1.0f + expf(-x));
    out[t * inter + i] = __float2bfloat16(silu * u[i]);
  }
}

__global__ void f32_to_bf16_kernel(const float* __restrict__ in, std::int64_t n,
                                   __nv_bfloat16* __restrict__ out) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    out[i] = __float2bfloat16(in[i]);
}

__global__ void fill_uniform_bf16_kernel(__nv_bfloat16* __restrict__ out, std::int64_t n,
                                         std::uint64_t seed, float scale) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const float u = counter_uniform(seed, static_cast<std::uint64_t>(i), 7);
    out[i] = __float2bfloat16((2.0f * u - 1.0f) * scale);
  }
}

__global__ void fill_f32_kernel(float* __restrict__ out, std::int64_t n, float value) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    out[i] = value;
}

}  // namespace kvserve::cuda
