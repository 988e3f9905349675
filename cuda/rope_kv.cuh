#pragma once
/// RoPE (rotate_half, Hugging Face's layout) fused with appending K and V to the paged cache,
/// and, for 8-bit pools, quantizing each appended head with its own scale.

#include <cuda_bf16.h>

#include <cstdint>

#include "cuda/kernels.hpp"
#include "cuda/kv_quant.cuh"
#include "cuda/pdl.cuh"

namespace kvserve::cuda {

/// (x1, x2) of one rotate_half pair at `pos`, rotated by the frequency inv_freq.
__device__ __forceinline__ void rope_rotate(float x1, float x2, float pos, float inv_freq,
                                            float& y1, float& y2) {
  float s, c;
  sincosf(pos * inv_freq, &s, &c);
  y1 = x1 * c - x2 * s;
  y2 = x2 * c + x1 * s;
}

/// One block per token. bf16 pools: threads stride over (head, i) pairs, i < head_dim / 2, for
/// the Q and K heads, then over the V elements. 8-bit pools (HD known): Q as before, then one
/// warp per K or V head, which holds the whole head in registers to find its scale.
template <kv_storage S, int HD>
__global__ void rope_kv_append_kernel(rope_kv_args a) {
  pdl_launch_dependents();  // launched with PDL (cuda/pdl.cuh)
  pdl_wait();
  const int t = blockIdx.x;
  const int hd = S == kv_storage::kBf16 ? a.kv.head_dim : HD, half = hd / 2;
  const int nkv = a.kv.num_kv_heads;
  const int width = (a.num_heads + 2 * nkv) * hd;
  const float* row = a.qkv + static_cast<std::int64_t>(t) * width;
  const float pos = static_cast<float>(a.positions[t]);
  const int slot = a.slot_mapping[t];
  const int block = slot >= 0 ? slot / a.kv.block_size : 0;
  const int offset = slot >= 0 ? slot % a.kv.block_size : 0;
  // Row of (block, head, offset) in the pools: codes at row * hd, the scale at row.
  auto cache_row = [&](int h) {
    return (static_cast<std::int64_t>(block) * nkv + h) * a.kv.block_size + offset;
  };
  const int rot_heads = S == kv_storage::kBf16 ? a.num_heads + nkv : a.num_heads;
  for (int j = threadIdx.x; j < rot_heads * half; j += blockDim.x) {
    const int h = j / half, i = j % half;
    const int col = h * hd + i;  // Q heads first, then K heads: same column layout as qkv
    float x1 = row[col], x2 = row[col + half];
    if (a.bias) {
      x1 += a.bias[col];
      x2 += a.bias[col + half];
    }
    float y1, y2;
    rope_rotate(x1, x2, pos, a.inv_freq[i], y1, y2);
    if (h < a.num_heads) {
      float* q = a.q_out + (static_cast<std::int64_t>(t) * a.num_heads + h) * hd;
      q[i] = y1;
      q[i + half] = y2;
    } else if (slot >= 0) {
      bf16* k = static_cast<bf16*>(a.kv.k) + cache_row(h - a.num_heads) * hd;
      k[i] = __float2bfloat16(y1);
      k[i + half] = __float2bfloat16(y2);
    }
  }
  if (slot < 0) return;
  if constexpr (S == kv_storage::kBf16) {
    const int v_col = (a.num_heads + nkv) * hd;
    for (int j = threadIdx.x; j < nkv * hd; j += blockDim.x) {
      float x = row[v_col + j];
      if (a.bias) x += a.bias[v_col + j];
      static_cast<bf16*>(a.kv.v)[cache_row(j / hd) * hd + j % hd] = __float2bfloat16(x);
    }
  } else {
    constexpr int N = HD / 32;  // values per lane; lane l holds i = l + 32 c
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, num_warps = blockDim.x >> 5;
    for (int unit = warp; unit < 2 * nkv; unit += num_warps) {
      const bool is_v = unit >= nkv;
      const int h = is_v ? unit - nkv : unit;
      const int base = (a.num_heads + unit) * HD;  // K heads, then V heads
      float x[N];
      if (!is_v) {
#pragma unroll
        for (int c = 0; c < N / 2; ++c) {
          const int i = lane + 32 * c;
          float x1 = row[base + i], x2 = row[base + i + HD / 2];
          if (a.bias) {
            x1 += a.bias[base + i];
            x2 += a.bias[base + i + HD / 2];
          }
          rope_rotate(x1, x2, pos, a.inv_freq[i], x[c], x[c + N / 2]);
        }
      } else {
#pragma unroll
        for (int c = 0; c < N; ++c) {
          x[c] = row[base + lane + 32 * c];
          if (a.bias) x[c] += a.bias[base + lane + 32 * c];
        }
      }
      std::uint8_t codes[N];
      const float scale = kv_quantize_warp<S, N>(x, codes);
      const std::int64_t r = cache_row(h);
      std::uint8_t* dst = static_cast<std::uint8_t*>(is_v ? a.kv.v : a.kv.k) + r * HD;
#pragma unroll
      for (int c = 0; c < N; ++c) dst[lane + 32 * c] = codes[c];
      if (lane == 0) (is_v ? a.kv.v_scale : a.kv.k_scale)[r] = scale;
    }
  }
}

/// One warp per head vector: the encoding of the append kernel, alone (tests).
template <kv_storage S, int HD>
__global__ void quantize_heads_kernel(const float* x, int num_heads, std::uint8_t* codes,
                                      float* scales) {
  constexpr int N = HD / 32;
  const int lane = threadIdx.x & 31;
  const int h = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (h >= num_heads) return;  // uniform over the warp
  float v[N];
#pragma unroll
  for (int c = 0; c < N; ++c) v[c] = x[static_cast<std::int64_t>(h) * HD + lane + 32 * c];
  std::uint8_t q[N];
  const float scale = kv_quantize_warp<S, N>(v, q);
#pragma unroll
  for (int c = 0; c < N; ++c) codes[static_cast<std::int64_t>(h) * HD + lane + 32 * c] = q[c];
  if (lane == 0) scales[h] = scale;
}

}  // namespace kvserve::cuda
