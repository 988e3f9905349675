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
///
/// bf16 pools with STAGES >= 2: each thread copies its own K/V chunks of the next STAGES - 1
/// iterations into a shared-memory ring with cp.async (no registers held, no barrier: a thread
/// reads back only what it copied), so loads of later tokens overlap the math of the current
/// ones. STAGES = 0 loads into registers right before use (8-bit pools: one iteration ahead).
///
/// Split spans: a sequence's context is cut into pieces of decode_split_span() tokens (at least
/// the args' min_split_tokens, a multiple of 32), so a short context uses fewer splits than the
/// grid has; blocks past the last piece exit and the merge reads only the pieces in use. With
/// the ring and two or more pieces, the pieces are interleaved: each warp takes every W-th warp
/// iteration of the whole context (W the warps of all pieces) instead of a span of its own, so
/// the blocks of a sequence read its context front to back together (measured faster on the
/// H100, docs/BENCHMARKS.md). Both kernels are launched with programmatic dependent launch
/// (cuda/pdl.cuh).
///
/// Before `griddepcontrol.wait`, both kernels read only the step inputs (context lengths, block
/// tables: written by copies ordered before the step's first kernel, never by a kernel), and the
/// decode kernel asks L2 for the K/V lines of its first STAGES - 1 iterations
/// (`prefetch.global.L2`, one request per 128-byte line). L2 is the device's point of
/// coherence, so a line the previous kernel (RoPE + KV append) writes after the prefetch is
/// still read fresh after the wait; a block resident while the previous kernel finishes thus
/// starts with its first tiles on chip. The merge kernel loads its first kMergeEarly pieces'
/// outputs together with their (max, sum) pairs instead of after the weights.

#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>

#include "cuda/device_math.cuh"
#include "cuda/kernels.hpp"
#include "cuda/kv_quant.cuh"
#include "cuda/pdl.cuh"

namespace kvserve::cuda {

inline constexpr int kDecodeWarps = 4;
inline constexpr int kMaxGroup = 8;
inline constexpr int kTokensPerIter = 4;
/// Default lower bound of a split's span in tokens (decode_attention_args::min_split_tokens).
inline constexpr int kMinSplitTokens = 64;
/// Pieces whose outputs the merge kernel loads before it has their weights.
inline constexpr int kMergeEarly = 8;

/// Tokens per split of a `ctx`-token context cut into at most `num_splits` pieces of at least
/// `min_tokens` tokens, rounded up to a multiple of 32. Shared by both kernels.
__device__ __forceinline__ int decode_split_span(int ctx, int num_splits, int min_tokens) {
  const int per = max((ctx + num_splits - 1) / num_splits, min_tokens);
  return max(32, (per + 31) & ~31);
}

/// Shared memory of the decode kernel: the K/V ring (STAGES >= 2) and the merge buffers of the
/// sub-warps, which reuse the ring once the loop is done.
template <int HD, int MAXG, int NSUB, int STAGES, int U>
struct decode_smem {
  static constexpr int kRingBytes = STAGES >= 2 ? STAGES * U * 2 * kDecodeWarps * 32 * 16 : 0;
  static constexpr int kAccBytes = NSUB * MAXG * HD * 4;
  static constexpr int kMlBytes = NSUB * MAXG * 2 * 4;
  static constexpr int kBytes = (kRingBytes > kAccBytes ? kRingBytes : kAccBytes) + kMlBytes;
};

__device__ __forceinline__ void prefetch_l2(const void* gmem) {
  asm volatile("prefetch.global.L2 [%0];" ::"l"(gmem));
}
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

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

template <int HD, int MAXG, kv_storage S = kv_storage::kBf16, int U = kTokensPerIter, int DPL = 8,
          int STAGES = 0>
__global__ void __launch_bounds__(kDecodeWarps * 32)
    decode_attention_kernel(decode_attention_args a, bool l2_prefetch, bool interleave) {
  static_assert(DPL == 8 || (DPL == 16 && S != kv_storage::kBf16 && MAXG <= 4));
  static_assert(STAGES == 0 || (STAGES >= 2 && S == kv_storage::kBf16));
  constexpr int TPT = HD / DPL;  // lanes per token
  constexpr int SUB = 32 / TPT;  // tokens side by side in a warp
  constexpr bool kScaled = S != kv_storage::kBf16;
  constexpr bool kAsync = STAGES >= 2;
  constexpr int EB = kScaled ? 1 : 2;  // bytes per element
  constexpr int NSUB = kDecodeWarps * SUB;
  using smem_t = decode_smem<HD, MAXG, NSUB, STAGES, U>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  // Ring (async path): [STAGES][U][K, V][thread] 16-byte chunks; after the loop the same bytes
  // hold the sub-warps' accumulators, and the (max, sum) pairs follow.
  uint4* ring = reinterpret_cast<uint4*>(smem_raw);
  auto& sm_acc = *reinterpret_cast<float(*)[NSUB][MAXG][HD]>(smem_raw);
  auto& sm_ml =
      *reinterpret_cast<float(*)[NSUB][MAXG][2]>(smem_raw + smem_t::kBytes - smem_t::kMlBytes);

  pdl_launch_dependents();

  const int s = blockIdx.x;
  const int nkv = a.kv.num_kv_heads;
  const int group = a.num_heads / nkv;
  const int chunks = (group + MAXG - 1) / MAXG;
  const int kvh = blockIdx.y / chunks;
  const int g0 = (blockIdx.y % chunks) * MAXG;
  const int ng = min(MAXG, group - g0);
  const int split = blockIdx.z;
  const int ctx = a.context_lens[s];
  const int per = decode_split_span(ctx, a.num_splits,
                                    a.min_split_tokens > 0 ? a.min_split_tokens : kMinSplitTokens);
  const int begin = split * per;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  constexpr int kWarpTokens = SUB * U;  // tokens of one warp iteration
  constexpr int kStride = NSUB * U;     // tokens of one block iteration
  // Interleaved pieces (ring path, two or more pieces): warp w of piece p takes the warp
  // iterations w', w' + W, w' + 2W, ... of the whole context (w' = p * kDecodeWarps + w, W the
  // warps of all pieces), so all of them sweep the context front to back together; otherwise
  // piece p is its own span of tokens. A piece's partial result covers different tokens either
  // way, and the merge is the same.
  const int pieces = ctx > 0 ? min(a.num_splits, (ctx + per - 1) / per) : 1;
  const bool interleaved = kAsync && interleave && pieces >= 2;
  const int first =
      interleaved ? (split * kDecodeWarps + warp) * kWarpTokens : begin + warp * kWarpTokens;
  const int stride = interleaved ? pieces * kDecodeWarps * kWarpTokens : kStride;
  const int end = interleaved ? ctx : min(ctx, begin + per);
  const int sub = warp * SUB + lane / TPT;
  const int sl = lane % TPT;
  const int bs = a.kv.block_size;
  const int shift = __ffs(bs) - 1;
  const float qscale = a.scale * 1.4426950408889634f;
  const std::int32_t* bt = a.block_tables + static_cast<std::int64_t>(s) * a.max_blocks_per_seq;
  auto row_of = [&](int t) -> std::int64_t {
    const std::int64_t phys = bt[t >> shift];
    return (phys * nkv + kvh) * bs + (t & (bs - 1));
  };
  if constexpr (kAsync) {
    // The lanes that start a 128-byte line of a token's K or V row ask L2 for the lines of the
    // first STAGES - 1 iterations (the ones the ring's prologue copies).
    if (l2_prefetch && (sl * DPL * EB) % 128 == 0) {
#pragma unroll
      for (int st = 0; st < STAGES - 1; ++st) {
        const int t0 = first + st * stride + (lane / TPT) * U;
#pragma unroll
        for (int u = 0; u < U; ++u) {
          if (t0 + u < end) {
            const std::int64_t base = row_of(t0 + u) * HD + sl * DPL;
            prefetch_l2(static_cast<const bf16*>(a.kv.k) + base);
            prefetch_l2(static_cast<const bf16*>(a.kv.v) + base);
          }
        }
      }
    }
  }
  // Every block waits (also those with nothing to do), so this grid completes only after the
  // kernel before it has: later kernels rely on that.
  pdl_wait();
  // Past the last piece (the merge reads only pieces that start inside the context); a
  // zero-length context still writes its one empty piece.
  if (begin > 0 && begin >= ctx) return;

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
      const std::int64_t row = row_of(min(t0 + u, end - 1));
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
  // Async path: iteration `tw`'s chunks into ring stage `st` (one commit group per call, empty
  // past the end, so the group count stays uniform).
  auto issue = [&](int tw, int st) {
    if (tw < end) {
      const int t0 = tw + (lane / TPT) * U;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const std::int64_t base = row_of(min(t0 + u, end - 1)) * HD + sl * DPL;
        uint4* slot = ring + ((st * U + u) * 2) * (kDecodeWarps * 32) + threadIdx.x;
        cp_async16(slot, static_cast<const bf16*>(a.kv.k) + base);
        cp_async16(slot + kDecodeWarps * 32, static_cast<const bf16*>(a.kv.v) + base);
      }
    }
    cp_async_commit();
  };
  int tw = first;
  if constexpr (kAsync) {
#pragma unroll
    for (int st = 0; st < STAGES - 1; ++st) issue(tw + st * stride, st);
  } else if constexpr (kPrefetch) {
    if (tw < end) fetch(tw);
  }
  int stage = 0;
  for (; tw < end; tw += stride) {
    const int t0 = tw + (lane / TPT) * U;
    kv_chunk<S, DPL> kr[U], vr[U];
    [[maybe_unused]] float ks[U], vs[U];
    if constexpr (kAsync) {
      // Refill the stage read in the previous iteration, then wait for this one's group.
      issue(tw + (STAGES - 1) * stride, stage == 0 ? STAGES - 1 : stage - 1);
      cp_async_wait<STAGES - 1>();
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const uint4* slot = ring + ((stage * U + u) * 2) * (kDecodeWarps * 32) + threadIdx.x;
        kr[u] = slot[0];
        vr[u] = slot[kDecodeWarps * 32];
      }
      stage = stage == STAGES - 1 ? 0 : stage + 1;
    } else {
      if constexpr (!kPrefetch) fetch(tw);
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
        if (tw + stride < end) fetch(tw + stride);  // uniform over the warp
      }
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
  if constexpr (kAsync) {
    cp_async_wait<0>();  // no copy may land in the ring once it holds the accumulators
    __syncthreads();
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

/// Grid (num_seqs, num_heads), HD threads: merges the pieces of one head. The (max, sum) pairs
/// of all pieces are loaded at once (one per thread) and weighed in shared memory; each thread
/// then sums its dimension over the pieces with independent loads.
template <int HD>
__global__ void __launch_bounds__(HD) decode_attention_merge_kernel(decode_attention_args a) {
  static_assert(HD >= kMaxDecodeSplits);
  __shared__ float sm_w[kMaxDecodeSplits], sm_l[kMaxDecodeSplits];
  __shared__ float sm_scale;
  pdl_launch_dependents();
  const int s = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
  const int ctx = a.context_lens[s];  // a step input: read before the wait
  const int per = decode_split_span(ctx, a.num_splits,
                                    a.min_split_tokens > 0 ? a.min_split_tokens : kMinSplitTokens);
  const int n = ctx > 0 ? min(a.num_splits, (ctx + per - 1) / per) : 1;
  const std::int64_t row0 = (static_cast<std::int64_t>(s) * a.num_heads + h) * a.num_splits;
  pdl_wait();
  float m = -INFINITY;
  if (d < n) {
    m = a.partial_ml[(row0 + d) * 2];
    sm_l[d] = a.partial_ml[(row0 + d) * 2 + 1];
  }
  // The first pieces' outputs are loaded now, beside the pairs, not after the weights.
  const float* po = a.partial_out + row0 * HD + d;
  float early[kMergeEarly];
#pragma unroll
  for (int p = 0; p < kMergeEarly; ++p) early[p] = p < n ? po[p * HD] : 0.0f;
  const float mx = block_max(m, sm_w);  // sm_w is free until the barrier inside returns
  if (d < n) sm_w[d] = m == -INFINITY ? 0.0f : exp2f(m - mx);
  __syncthreads();
  if (d == 0) {
    float sum = 0.0f;
    for (int p = 0; p < n; ++p) sum += sm_l[p] * sm_w[p];
    sm_scale = sum > 0.0f ? 1.0f / sum : 0.0f;
  }
  float out = 0.0f;
#pragma unroll
  for (int p = 0; p < kMergeEarly; ++p)
    if (p < n) out += early[p] * sm_w[p];
  int p = kMergeEarly;
  for (; p + 4 <= n; p += 4) {
    const float v0 = po[(p + 0) * HD], v1 = po[(p + 1) * HD], v2 = po[(p + 2) * HD],
                v3 = po[(p + 3) * HD];
    out += v0 * sm_w[p] + v1 * sm_w[p + 1] + v2 * sm_w[p + 2] + v3 * sm_w[p + 3];
  }
  for (; p < n; ++p) out += po[p * HD] * sm_w[p];
  __syncthreads();
  a.out[(static_cast<std::int64_t>(s) * a.num_heads + h) * HD + d] =
      __float2bfloat16(out * sm_scale);
}

}  // namespace kvserve::cuda
