#pragma once
/// RoPE (rotate_half, Hugging Face's layout) fused with appending K and V to the paged cache.

#include <cuda_bf16.h>

#include <cstdint>

#include "cuda/kernels.hpp"

namespace kvserve::cuda {

/// One block per token. Threads stride over (head, i) pairs, i < head_dim / 2, for the Q and
/// K heads, then over the V elements.
__global__ void rope_kv_append_kernel(rope_kv_args a) {
  const int t = blockIdx.x;
  const int hd = a.kv.head_dim, half = hd / 2;
  const int nkv = a.kv.num_kv_heads;
  const int width = (a.num_heads + 2 * nkv) * hd;
  const float* row = a.qkv + static_cast<std::int64_t>(t) * width;
  const float pos = static_cast<float>(a.positions[t]);
  const int slot = a.slot_mapping[t];
  const int block = slot >= 0 ? slot / a.kv.block_size : 0;
  const int offset = slot >= 0 ? slot % a.kv.block_size : 0;
  auto cache_index = [&](int h, int d) {
    return ((static_cast<std::int64_t>(block) * nkv + h) * a.kv.block_size + offset) * hd + d;
  };
  const int rot_heads = a.num_heads + nkv;
  for (int j = threadIdx.x; j < rot_heads * half; j += blockDim.x) {
    const int h = j / half, i = j % half;
    const int col = h * hd + i;  // Q heads first, then K heads: same column layout as qkv
    float x1 = row[col], x2 = row[col + half];
    if (a.bias) {
      x1 += a.bias[col];
      x2 += a.bias[col + half];
    }
    float s, c;
    sincosf(pos * a.inv_freq[i], &s, &c);
    const float y1 = x1 * c - x2 * s;
    const float y2 = x2 * c + x1 * s;
    if (h < a.num_heads) {
      float* q = a.q_out + (static_cast<std::int64_t>(t) * a.num_heads + h) * hd;
      q[i] = y1;
      q[i + half] = y2;
    } else if (slot >= 0) {
      const int kh = h - a.num_heads;
      a.kv.k[cache_index(kh, i)] = __float2bfloat16(y1);
      a.kv.k[cache_index(kh, i + half)] = __float2bfloat16(y2);
    }
  }
  if (slot < 0) return;
  const int v_col = (a.num_heads + nkv) * hd;
  for (int j = threadIdx.x; j < nkv * hd; j += blockDim.x) {
    float x = row[v_col + j];
    if (a.bias) x += a.bias[v_col + j];
    a.kv.v[cache_index(j / hd, j % hd)] = __float2bfloat16(x);
  }
}

}  // namespace kvserve::cuda
