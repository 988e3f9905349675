#pragma once
/// Paged prefill attention on tensor cores (mma.sync m16n8k16 bf16 -> fp32), flash-attention
/// style: causal over the cached prefix plus the new chunk.
///
/// Grid (num_items, num_kv_heads, num_splits), 4 warps; the items run heaviest (last) first. With
/// num_splits > 1, split z takes the z-th run of an item's key tiles and writes its rows'
/// unnormalised output with their (max, sum) to the workspace; prefill_attention_merge_kernel then
/// combines the runs. A work item is up to 64 (token, query head) rows of one sequence that share
/// one KV head; warp w owns rows 16 w .. 16 w + 15 and keeps their Q (scaled by scale * log2 e,
/// rounded to bf16) as MMA A fragments in registers. K/V tiles of 64 tokens are gathered through
/// the block table (any block size 2..64: each token's head row is contiguous) into shared memory,
/// double-buffered with cp.async, rows padded by 16 bytes so that ldmatrix reads are conflict-free.
/// Per tile a warp computes S = Q K^T (fp32), masks keys beyond each row's position, updates the
/// online softmax in fp32 (exp2), rounds P to bf16 and accumulates O += P V in fp32. Warps whose
/// rows are all padding, or all before the tile, only help to load.
///
/// 8-bit pools: the codes are converted to bf16 exactly (E4M3 and INT8 values are bf16
/// values), so dequantization is exact: the per-token K scale multiplies the fp32 scores and
/// the per-token V scale multiplies P before its rounding. Those tiles load synchronously.
///
/// Error against exact arithmetic: Q and P are rounded to bf16 (relative 2^-9 each; the
/// softmax sum uses the unrounded P), so the output moves by up to about 2^-9 (mean over keys
/// of p |v|) plus the score errors' share; tests/cuda/paged_attention_test.cpp bounds both.
/// For 8-bit pools that is far below the quantization error of the codes themselves.

#include <cuda_bf16.h>

#include <climits>
#include <cstddef>
#include <cstdint>

#include "cuda/kernels.hpp"
#include "cuda/kv_quant.cuh"
#include "cuda/mma.cuh"

namespace kvserve::cuda {

inline constexpr int kPrefillWarps = kPrefillRowsPerItem / 16;
inline constexpr int kPrefillKeys = 64;  // keys per K/V tile

/// Dynamic shared memory of the kernel: two stages of K and V tiles (rows of HD + 8 bf16) and,
/// for 8-bit pools, two stages of K and V scales.
template <int HD>
constexpr std::size_t prefill_smem_bytes(bool eight_bit) {
  return std::size_t{2} * 2 * kPrefillKeys * (HD + 8) * sizeof(bf16) +
         (eight_bit ? std::size_t{2} * 2 * kPrefillKeys * sizeof(float) : 0);
}

template <int HD, kv_storage S = kv_storage::kBf16>
__global__ void __launch_bounds__(kPrefillWarps * 32)
    prefill_attention_kernel(prefill_attention_args a) {
  constexpr int BN = kPrefillKeys, LD = HD + 8, KSTEPS = HD / 16, NT = BN / 8, DT = HD / 8;
  constexpr int CHUNKS = HD / 8;  // 16-byte chunks of bf16 per token row
  constexpr bool kEightBit = S != kv_storage::kBf16;
  extern __shared__ __align__(16) unsigned char prefill_smem[];
  bf16* const sk = reinterpret_cast<bf16*>(prefill_smem);                          // [2][BN][LD]
  bf16* const sv = sk + 2 * BN * LD;                                               // [2][BN][LD]
  [[maybe_unused]] float* const sks = reinterpret_cast<float*>(sv + 2 * BN * LD);  // [2][BN]
  [[maybe_unused]] float* const svs = sks + 2 * BN;                                // [2][BN]

  const prefill_work_item item = a.items[gridDim.x - 1 - blockIdx.x];
  const int kvh = blockIdx.y;
  const int nkv = a.kv.num_kv_heads;
  const int group = a.num_heads / nkv;
  const int rows = item.token_count * item.head_count;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t4 = lane & 3;
  const int bs = a.kv.block_size;
  const int shift = __ffs(bs) - 1;
  const float qscale = a.scale * 1.4426950408889634f;

  // Keys the item needs: up to its last position.
  int kmax = 0;
  for (int t = lane; t < item.token_count; t += 32)
    kmax = max(kmax, a.positions[item.token_begin + t] + 1);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) kmax = max(kmax, __shfl_xor_sync(0xffffffffu, kmax, o));

  // This thread's two rows (g and g + 8 of the warp's 16): position (-1: padding) and offset.
  int pos[2];
  std::int64_t row_off[2];
#pragma unroll
  for (int h2 = 0; h2 < 2; ++h2) {
    const int r = warp * 16 + g + 8 * h2;
    pos[h2] = -1;
    row_off[h2] = -1;
    if (r < rows) {
      const int t = item.token_begin + r / item.head_count;
      const int h = kvh * group + item.head_begin + r % item.head_count;
      pos[h2] = a.positions[t];
      row_off[h2] = (static_cast<std::int64_t>(t) * a.num_heads + h) * HD;
    }
  }
  int wmax = max(pos[0], pos[1]);
  int wmin = min(pos[0] < 0 ? INT_MAX : pos[0], pos[1] < 0 ? INT_MAX : pos[1]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    wmax = max(wmax, __shfl_xor_sync(0xffffffffu, wmax, o));
    wmin = min(wmin, __shfl_xor_sync(0xffffffffu, wmin, o));
  }

  // Q fragments: a[kk] covers dims 16 kk .. 16 kk + 15.
  std::uint32_t qf[KSTEPS][4];
#pragma unroll
  for (int kk = 0; kk < KSTEPS; ++kk)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int h2 = i & 1, col = kk * 16 + (i >> 1) * 8 + 2 * t4;
      float2 v = make_float2(0.0f, 0.0f);
      if (row_off[h2] >= 0) v = *reinterpret_cast<const float2*>(a.q + row_off[h2] + col);
      qf[kk][i] = pack_bf16x2(v.x * qscale, v.y * qscale);
    }

  float acc[DT][4];
#pragma unroll
  for (int d = 0; d < DT; ++d)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[d][i] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  const std::int32_t* bt =
      a.block_tables + static_cast<std::int64_t>(item.seq) * a.max_blocks_per_seq;
  const std::int64_t kv_head_base = static_cast<std::int64_t>(kvh) * bs;

  // Gathers keys j0 .. j0 + BN - 1 into stage st (zeros beyond kmax).
  auto load_tile = [&](int j0, int st) {
    bf16* const dk = sk + st * BN * LD;
    bf16* const dv = sv + st * BN * LD;
    for (int idx = threadIdx.x; idx < BN * CHUNKS; idx += kPrefillWarps * 32) {
      const int j = idx / CHUNKS, c = idx % CHUNKS;
      const int tok = j0 + j;
      const bool ok = tok < kmax;
      const std::int64_t row = ok ? (static_cast<std::int64_t>(bt[tok >> shift]) * nkv * bs +
                                     kv_head_base + (tok & (bs - 1)))
                                  : 0;
      if constexpr (!kEightBit) {
        const std::int64_t off = row * HD + c * 8;
        cp_async_16(dk + j * LD + c * 8, static_cast<const bf16*>(a.kv.k) + off, ok ? 16 : 0);
        cp_async_16(dv + j * LD + c * 8, static_cast<const bf16*>(a.kv.v) + off, ok ? 16 : 0);
      } else {
        uint4 kb = make_uint4(0, 0, 0, 0), vb = make_uint4(0, 0, 0, 0);
        if (ok) {
          const std::int64_t off = row * HD + c * 8;
          const uint2 kc =
              *reinterpret_cast<const uint2*>(static_cast<const std::uint8_t*>(a.kv.k) + off);
          const uint2 vc =
              *reinterpret_cast<const uint2*>(static_cast<const std::uint8_t*>(a.kv.v) + off);
          float f[8];
          kv_decode4<S>(kc.x, f);
          kv_decode4<S>(kc.y, f + 4);
          kb = make_uint4(pack_bf16x2(f[0], f[1]), pack_bf16x2(f[2], f[3]), pack_bf16x2(f[4], f[5]),
                          pack_bf16x2(f[6], f[7]));
          kv_decode4<S>(vc.x, f);
          kv_decode4<S>(vc.y, f + 4);
          vb = make_uint4(pack_bf16x2(f[0], f[1]), pack_bf16x2(f[2], f[3]), pack_bf16x2(f[4], f[5]),
                          pack_bf16x2(f[6], f[7]));
        }
        *reinterpret_cast<uint4*>(dk + j * LD + c * 8) = kb;
        *reinterpret_cast<uint4*>(dv + j * LD + c * 8) = vb;
        if (c == 0) {
          sks[st * BN + j] = ok ? a.kv.k_scale[row] : 0.0f;
          svs[st * BN + j] = ok ? a.kv.v_scale[row] : 0.0f;
        }
      }
    }
  };

  const bool warp_busy = wmax >= 0;
  // This split's run of key tiles (all of them without splits).
  const int ntiles = (kmax + BN - 1) / BN;
  const int per_split = (ntiles + a.num_splits - 1) / a.num_splits;
  const int tile_begin = min(ntiles, static_cast<int>(blockIdx.z) * per_split);
  const int tile_end = min(ntiles, tile_begin + per_split);
  if (tile_begin < tile_end) load_tile(tile_begin * BN, 0);
  cp_async_commit();
  for (int it = tile_begin; it < tile_end; ++it) {
    const int st = (it - tile_begin) & 1, j0 = it * BN;
    if (it + 1 < tile_end) load_tile(j0 + BN, st ^ 1);
    cp_async_commit();
    cp_async_wait<1>();  // this tile's copies have landed
    __syncthreads();
    if (warp_busy && j0 <= wmax) {
      const bf16* const tk = sk + st * BN * LD;
      const bf16* const tv = sv + st * BN * LD;
      float s[NT][4];
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) s[n][i] = 0.0f;
#pragma unroll
      for (int kk = 0; kk < KSTEPS; ++kk)
#pragma unroll
        for (int np = 0; np < NT / 2; ++np) {
          std::uint32_t b[4];
          ldmatrix_x4(b, tk + (np * 16 + (lane >> 4) * 8 + (lane & 7)) * LD + kk * 16 +
                             ((lane >> 3) & 1) * 8);
          mma_bf16_16816(s[2 * np], qf[kk], b[0], b[1]);
          mma_bf16_16816(s[2 * np + 1], qf[kk], b[2], b[3]);
        }
      if constexpr (kEightBit) {
#pragma unroll
        for (int n = 0; n < NT; ++n)
#pragma unroll
          for (int i = 0; i < 4; ++i) s[n][i] *= sks[st * BN + n * 8 + 2 * t4 + (i & 1)];
      }
      if (j0 + BN - 1 > wmin) {  // some key of the tile lies beyond some row's position
#pragma unroll
        for (int n = 0; n < NT; ++n)
#pragma unroll
          for (int i = 0; i < 4; ++i)
            if (j0 + n * 8 + 2 * t4 + (i & 1) > pos[i >> 1]) s[n][i] = -INFINITY;
      }
      // Online softmax per row (the quad of lanes 4g .. 4g + 3 shares rows g and g + 8).
      float mu[2];
#pragma unroll
      for (int h2 = 0; h2 < 2; ++h2) {
        float mx = -INFINITY;
#pragma unroll
        for (int n = 0; n < NT; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * h2], s[n][2 * h2 + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float mn = fmaxf(m[h2], mx);
        mu[h2] = mn == -INFINITY ? 0.0f : mn;  // a row with no key yet: keep zeros
        const float corr = exp2f(m[h2] - mu[h2]);
        m[h2] = mn;
        l[h2] *= corr;
#pragma unroll
        for (int d = 0; d < DT; ++d) {
          acc[d][2 * h2] *= corr;
          acc[d][2 * h2 + 1] *= corr;
        }
      }
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float p = exp2f(s[n][i] - mu[i >> 1]);
          l[i >> 1] += p;
          if constexpr (kEightBit) {
            s[n][i] = p * svs[st * BN + n * 8 + 2 * t4 + (i & 1)];
          } else {
            s[n][i] = p;
          }
        }
        // O += P V, 16 keys per step; P's accumulator layout is the A fragment layout.
#pragma unroll
      for (int kj = 0; kj < BN / 16; ++kj) {
        const std::uint32_t pa[4] = {pack_bf16x2(s[2 * kj][0], s[2 * kj][1]),
                                     pack_bf16x2(s[2 * kj][2], s[2 * kj][3]),
                                     pack_bf16x2(s[2 * kj + 1][0], s[2 * kj + 1][1]),
                                     pack_bf16x2(s[2 * kj + 1][2], s[2 * kj + 1][3])};
#pragma unroll
        for (int dp = 0; dp < DT / 2; ++dp) {
          std::uint32_t b[4];
          ldmatrix_x4_trans(b, tv + (kj * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LD + dp * 16 +
                                   (lane >> 4) * 8);
          mma_bf16_16816(acc[2 * dp], pa, b[0], b[1]);
          mma_bf16_16816(acc[2 * dp + 1], pa, b[2], b[3]);
        }
      }
    }
    __syncthreads();  // stage st is consumed before the next iteration refills it
  }

#pragma unroll
  for (int h2 = 0; h2 < 2; ++h2) {
    float sum = l[h2];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    if (row_off[h2] < 0) continue;
    if (a.num_splits > 1) {  // this run's share, unnormalised (row_off / HD is the row)
      const std::int64_t piece = (row_off[h2] / HD) * a.num_splits + blockIdx.z;
      float* const po = a.partial_out + piece * HD;
#pragma unroll
      for (int d = 0; d < DT; ++d)
        *reinterpret_cast<float2*>(po + d * 8 + 2 * t4) =
            make_float2(acc[d][2 * h2], acc[d][2 * h2 + 1]);
      if (t4 == 0) {
        a.partial_ml[piece * 2] = m[h2];
        a.partial_ml[piece * 2 + 1] = sum;
      }
      continue;
    }
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    bf16* const o = a.out + row_off[h2];
#pragma unroll
    for (int d = 0; d < DT; ++d)
      *reinterpret_cast<__nv_bfloat162*>(o + d * 8 + 2 * t4) =
          __floats2bfloat162_rn(acc[d][2 * h2] * inv, acc[d][2 * h2 + 1] * inv);
  }
}

/// Grid (num_tokens, num_heads), HD threads: combines the num_splits runs of one (token, head)
/// row written by prefill_attention_kernel. A run without keys has max -inf and weighs nothing.
template <int HD>
__global__ void __launch_bounds__(HD) prefill_attention_merge_kernel(prefill_attention_args a) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * a.num_heads + blockIdx.y;
  const int d = threadIdx.x;
  const float* const ml = a.partial_ml + row * a.num_splits * 2;
  float mx = -INFINITY;
  for (int z = 0; z < a.num_splits; ++z) mx = fmaxf(mx, ml[2 * z]);
  float sum = 0.0f, out = 0.0f;
  if (mx != -INFINITY) {
    for (int z = 0; z < a.num_splits; ++z) {
      const float w = ml[2 * z] == -INFINITY ? 0.0f : exp2f(ml[2 * z] - mx);
      sum += ml[2 * z + 1] * w;
      out += a.partial_out[(row * a.num_splits + z) * HD + d] * w;
    }
  }
  a.out[row * HD + d] = __float2bfloat16(sum > 0.0f ? out / sum : 0.0f);
}

}  // namespace kvserve::cuda
