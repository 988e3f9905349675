#pragma once
/// Paged decode attention with the context split across blocks (split-KV), then merged.
///
/// Grid (num_seqs, num_kv_heads * head_chunks, num_splits), 4 warps. A block serves up to
/// kMaxGroup query heads that share one KV head, so each K/V element is read once per block.
/// Warps take tokens round-robin; each lane holds HD/32 consecutive dimensions. Scores are kept
/// in the log2 domain (q is pre-scaled by scale * log2(e)).

#include <cuda_bf16.h>

#include <cstdint>

#include "cuda/device_math.cuh"
#include "cuda/kernels.hpp"

namespace kvserve::cuda {

inline constexpr int kDecodeWarps = 4;
inline constexpr int kMaxGroup = 8;

template <int HD>
__global__ void __launch_bounds__(kDecodeWarps * 32)
    decode_attention_kernel(decode_attention_args a) {
  constexpr int VEC = HD / 32;
  constexpr int NW = kDecodeWarps;
  __shared__ float sm_ml[NW][kMaxGroup][2];
  __shared__ float sm_acc[NW][kMaxGroup][HD];

  const int s = blockIdx.x;
  const int nkv = a.kv.num_kv_heads;
  const int group = a.num_heads / nkv;
  const int chunks = (group + kMaxGroup - 1) / kMaxGroup;
  const int kvh = blockIdx.y / chunks;
  const int g0 = (blockIdx.y % chunks) * kMaxGroup;
  const int ng = min(kMaxGroup, group - g0);
  const int split = blockIdx.z;
  const int ctx = a.context_lens[s];
  const int per = (ctx + a.num_splits - 1) / a.num_splits;
  const int begin = split * per;
  const int end = min(ctx, begin + per);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int bs = a.kv.block_size;
  const int shift = __ffs(bs) - 1;
  const float qscale = a.scale * 1.4426950408889634f;

  float q[kMaxGroup][VEC];
  float m[kMaxGroup], l[kMaxGroup], acc[kMaxGroup][VEC];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      acc[g][i] = 0.0f;
      q[g][i] = 0.0f;
    }
    if (g < ng) {
      const float* qp = a.q +
                        (static_cast<std::int64_t>(s) * a.num_heads + kvh * group + g0 + g) * HD +
                        lane * VEC;
#pragma unroll
      for (int i = 0; i < VEC; ++i) q[g][i] = qp[i] * qscale;
    }
  }

  const std::int32_t* bt = a.block_tables + static_cast<std::int64_t>(s) * a.max_blocks_per_seq;
  const std::int64_t head_stride = static_cast<std::int64_t>(bs) * HD;
  for (int t = begin + warp; t < end; t += NW) {
    const std::int64_t phys = bt[t >> shift];
    const std::int64_t base = (phys * nkv + kvh) * head_stride + (t & (bs - 1)) * HD + lane * VEC;
    float k[VEC], v[VEC];
    load_bf16<VEC>(a.kv.k + base, k);
    load_bf16<VEC>(a.kv.v + base, v);
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g < ng) {
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < VEC; ++i) dot += q[g][i] * k[i];
        dot = warp_sum(dot);
        const float mn = fmaxf(m[g], dot);
        const float corr = exp2f(m[g] - mn);
        const float p = exp2f(dot - mn);
        l[g] = l[g] * corr + p;
#pragma unroll
        for (int i = 0; i < VEC; ++i) acc[g][i] = acc[g][i] * corr + p * v[i];
        m[g] = mn;
      }
    }
  }

#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    if (g < ng) {
      if (lane == 0) {
        sm_ml[warp][g][0] = m[g];
        sm_ml[warp][g][1] = l[g];
      }
#pragma unroll
      for (int i = 0; i < VEC; ++i) sm_acc[warp][g][lane * VEC + i] = acc[g][i];
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < ng * HD; idx += blockDim.x) {
    const int g = idx / HD, d = idx % HD;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < NW; ++w) mx = fmaxf(mx, sm_ml[w][g][0]);
    float sum = 0.0f, out = 0.0f;
    if (mx != -INFINITY) {
#pragma unroll
      for (int w = 0; w < NW; ++w) {
        const float f = exp2f(sm_ml[w][g][0] - mx);
        sum += sm_ml[w][g][1] * f;
        out += sm_acc[w][g][d] * f;
      }
    }
    const std::int64_t row =
        (static_cast<std::int64_t>(s) * a.num_heads + kvh * group + g0 + g) * a.num_splits + split;
    a.partial_out[row * HD + d] = out;
    if (d == 0) {
      a.partial_ml[row * 2] = mx;
      a.partial_ml[row * 2 + 1] = sum;
    }
  }
}

/// Grid (num_seqs, num_heads), HD threads: merges the splits of one head.
template <int HD>
__global__ void decode_attention_merge_kernel(decode_attention_args a) {
  const int s = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
  const std::int64_t row0 = (static_cast<std::int64_t>(s) * a.num_heads + h) * a.num_splits;
  float mx = -INFINITY;
  for (int p = 0; p < a.num_splits; ++p) mx = fmaxf(mx, a.partial_ml[(row0 + p) * 2]);
  float sum = 0.0f, out = 0.0f;
  if (mx != -INFINITY) {
    for (int p = 0; p < a.num_splits; ++p) {
      const float m = a.partial_ml[(row0 + p) * 2];
      if (m == -INFINITY) continue;
      const float f = exp2f(m - mx);
      sum += a.partial_ml[(row0 + p) * 2 + 1] * f;
      out += a.partial_out[(row0 + p) * HD + d] * f;
    }
  }
  a.out[(static_cast<std::int64_t>(s) * a.num_heads + h) * HD + d] =
      __float2bfloat16(sum > 0.0f ? out / sum : 0.0f);
}

}  // namespace kvserve::cuda
