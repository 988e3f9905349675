#pragma once
/// Paged decode attention with the context split across blocks (split-KV), then merged.
///
/// Grid (num_seqs, num_kv_heads * head_chunks, num_splits), 4 warps. A block serves up to MAXG
/// query heads that share one KV head, so each K/V element is read once per block. Each token
/// is handled by a sub-warp of HD/8 lanes holding 8 dimensions each (16-byte loads); a sub-warp
/// loads kTokensPerIter tokens before using any, to keep enough bytes in flight, and rescales
/// its running softmax once per group of tokens. Scores are in the log2 domain (q is
/// pre-scaled by scale * log2(e)). Sub-warps and warps are merged through shared memory.
///
/// 8-bit pools (FP8 E4M3, INT8): a lane's DPL dimensions (8 or 16) are one 8- or 16-byte load,
/// decoded to floats; the token's K scale multiplies its score (q . (s k) = s (q . k)) and its
/// V scale multiplies its softmax weight in the P.V sum (not in the normaliser), so no
/// dequantized copy is made.

#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>

#include "cuda/device_math.cuh"
#include "cuda/kernels.hpp"
#include "cuda/kv_quant.cuh"

namespace kvserve::cuda {

inline constexpr int kDecodeWarps = 4;
inline constexpr int kMaxGroup = 8;
inline constexpr int kTokensPerIter = 4;

/// The raw bytes of a lane's DPL elements of one token: 16 for bf16 (DPL 8), 8 or 16 for the
/// 8-bit types (DPL 8 or 16).
template <kv_storage S, int DPL = 8>
using kv_chunk = std::conditional_t<S == kv_storage::kBf16 || DPL == 16, uint4, uint2>;

template <kv_storage S, int DPL = 8>
__device__ __forceinline__ void kv_chunk_to_float(const kv_chunk<S, DPL>& raw, float* f) {
  if constexpr (S == kv_storage::kBf16) {
    static_assert(DPL == 8);
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 x = __bfloat1622float2(h[i]);
      f[2 * i] = x.x;
      f[2 * i + 1] = x.y;
    }
  } else if constexpr (DPL == 8) {
    kv_decode4<S>(raw.x, f);
    kv_decode4<S>(raw.y, f + 4);
  } else {
    kv_decode4<S>(raw.x, f);
    kv_decode4<S>(raw.y, f + 4);
    kv_decode4<S>(raw.z, f + 8);
    kv_decode4<S>(raw.w, f + 12);
  }
}

template <int HD, int MAXG, kv_storage S = kv_storage::kBf16, int U = kTokensPerIter, int DPL = 8>
__global__ void __launch_bounds__(kDecodeWarps * 32)
    decode_attention_kernel(decode_attention_args a) {
  static_assert(DPL == 8 || (DPL == 16 && S != kv_storage::kBf16 && MAXG <= 4));
  constexpr int TPT = HD / DPL;  // lanes per token
  constexpr int SUB = 32 / TPT;  // tokens side by side in a warp
  constexpr bool kScaled = S != kv_storage::kBf16;
  constexpr int EB = kScaled ? 1 : 2;  // bytes per element
  constexpr int NSUB = kDecodeWarps * SUB;
  __shared__ float sm_ml[NSUB][MAXG][2];
  __shared__ float sm_acc[NSUB][MAXG][HD];

  const int s = blockIdx.x;
  const int nkv = a.kv.num_kv_heads;
  const int group = a.num_heads / nkv;
  const int chunks = (group + MAXG - 1) / MAXG;
  const int kvh = blockIdx.y / chunks;
  const int g0 = (blockIdx.y % chunks) * MAXG;
  const int ng = min(MAXG, group - g0);
  const int split = blockIdx.z;
  const int ctx = a.context_lens[s];
  const int per = (ctx + a.num_splits - 1) / a.num_splits;
  const int begin = split * per;
  const int end = min(ctx, begin + per);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int sub = warp * SUB + lane / TPT;
  const int sl = lane % TPT;
  const int bs = a.kv.block_size;
  const int shift = __ffs(bs) - 1;
  const float qscale = a.scale * 1.4426950408889634f;

  float q[MAXG][DPL];
  float m[MAXG], l[MAXG], acc[MAXG][DPL];
#pragma unroll
  for (int g = 0; g < MAXG; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int i = 0; i < DPL; ++i) {
      acc[g][i] = 0.0f;
      q[g][i] = 0.0f;
    }
    if (g < ng) {
      const float* qp =
          a.q + (static_cast<std::int64_t>(s) * a.num_heads + kvh * group + g0 + g) * HD + sl * DPL;
#pragma unroll
      for (int c = 0; c < DPL / 4; ++c) {
        const float4 x = *reinterpret_cast<const float4*>(qp + 4 * c);
        q[g][4 * c] = x.x * qscale;
        q[g][4 * c + 1] = x.y * qscale;
        q[g][4 * c + 2] = x.z * qscale;
        q[g][4 * c + 3] = x.w * qscale;
      }
    }
  }

  const std::int32_t* bt = a.block_tables + static_cast<std::int64_t>(s) * a.max_blocks_per_seq;
  // The trip count must be uniform over the warp (the score reduction shuffles across lanes):
  // iterate per warp, and give each sub-warp its U tokens inside the warp's span.
  // 8-bit pools: the next iteration's codes and scales are loaded before this one's are used
  // (software pipelining), doubling the bytes in flight that the smaller loads would halve.
  constexpr bool kPrefetch = kScaled;
  kv_chunk<S, DPL> kn[U], vn[U];
  [[maybe_unused]] float ksn[U], vsn[U];
  auto fetch = [&](int tw) {
    const int t0 = tw + (lane / TPT) * U;
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int t = min(t0 + u, end - 1);
      const std::int64_t phys = bt[t >> shift];
      const std::int64_t row = (phys * nkv + kvh) * bs + (t & (bs - 1));
      const std::int64_t base = row * HD + sl * DPL;
      kn[u] =
          *reinterpret_cast<const kv_chunk<S, DPL>*>(static_cast<const char*>(a.kv.k) + base * EB);
      vn[u] =
          *reinterpret_cast<const kv_chunk<S, DPL>*>(static_cast<const char*>(a.kv.v) + base * EB);
      if constexpr (kScaled) {
        ksn[u] = a.kv.k_scale[row];
        vsn[u] = a.kv.v_scale[row];
      }
    }
  };
  constexpr int kStride = NSUB * U;
  int tw = begin + warp * SUB * U;
  if constexpr (kPrefetch) {
    if (tw < end) fetch(tw);
  }
  for (; tw < end; tw += kStride) {
    const int t0 = tw + (lane / TPT) * U;
    if constexpr (!kPrefetch) fetch(tw);
    kv_chunk<S, DPL> kr[U], vr[U];
    [[maybe_unused]] float ks[U], vs[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      kr[u] = kn[u];
      vr[u] = vn[u];
      if constexpr (kScaled) {
        ks[u] = ksn[u];
        vs[u] = vsn[u];
      }
    }
    if constexpr (kPrefetch) {
      if (tw + kStride < end) fetch(tw + kStride);  // uniform over the warp
    }
    // Token-major, for every storage type: decode one token's DPL values (bf16 or codes) and
    // score it for every query head, so only DPL decoded values are live at a time; the
    // same for V after the softmax update. Scores are computed for all MAXG heads without a
    // branch (q is 0 past ng), so that the U x MAXG shuffle reductions interleave instead
    // of running one after the other.
    float p[MAXG][U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float kf[DPL];
      kv_chunk_to_float<S, DPL>(kr[u], kf);
#pragma unroll
      for (int g = 0; g < MAXG; ++g) {
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; ++i) dot += q[g][i] * kf[i];
#pragma unroll
        for (int o = TPT / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        if constexpr (kScaled) dot *= ks[u];
        p[g][u] = t0 + u < end ? dot : -INFINITY;
      }
    }
#pragma unroll
    for (int g = 0; g < MAXG; ++g) {
      float mx = g < ng ? m[g] : -INFINITY;
#pragma unroll
      for (int u = 0; u < U; ++u) mx = fmaxf(mx, p[g][u]);
      if (g >= ng || mx == -INFINITY) {  // no such head, or no valid token seen yet
#pragma unroll
        for (int u = 0; u < U; ++u) p[g][u] = 0.0f;
        continue;
      }
      const float corr = exp2f(m[g] - mx);
      float psum = 0.0f;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const float e = exp2f(p[g][u] - mx);
        psum += e;
        p[g][u] = kScaled ? e * vs[u] : e;  // the V scale weighs the sum, not the normaliser
      }
      l[g] = l[g] * corr + psum;
      m[g] = mx;
#pragma unroll
      for (int i = 0; i < DPL; ++i) acc[g][i] *= corr;
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float vf[DPL];
      kv_chunk_to_float<S, DPL>(vr[u], vf);
#pragma unroll
      for (int g = 0; g < MAXG; ++g) {
#pragma unroll
        for (int i = 0; i < DPL; ++i) acc[g][i] += p[g][u] * vf[i];
      }
    }
  }

#pragma unroll
  for (int g = 0; g < MAXG; ++g) {
    if (g < ng) {
      if (sl == 0) {
        sm_ml[sub][g][0] = m[g];
        sm_ml[sub][g][1] = l[g];
      }
#pragma unroll
      for (int i = 0; i < DPL; ++i) sm_acc[sub][g][sl * DPL + i] = acc[g][i];
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < ng * HD; idx += blockDim.x) {
    const int g = idx / HD, d = idx % HD;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < NSUB; ++w) mx = fmaxf(mx, sm_ml[w][g][0]);
    float sum = 0.0f, out = 0.0f;
    if (mx != -INFINITY) {
#pragma unroll
      for (int w = 0; w < NSUB; ++w) {
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
