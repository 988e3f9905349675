#pragma once
/// Paged prefill attention (CUDA cores): causal over the cached prefix plus the new chunk.
///
/// Grid (num_items, num_kv_heads), 4 warps. A work item is up to 16 (token, query head) rows of
/// one sequence that share one KV head; each warp owns 4 rows. K/V tiles of 32 tokens are
/// gathered from the paged pools into shared memory once per block and read by all 16 rows.
/// Scores: lane j computes the score of key j0 + j for the warp's rows; the P.V product then
/// has each lane own dimensions lane + 32 c.
///
/// 8-bit pools: the tile loader decodes the codes and multiplies by the token's scale, as
/// model/kv_quantize.hpp's dequantize_head does, into fp32 tiles (bf16 pools keep bf16 tiles).

#include <cuda_bf16.h>

#include <cstdint>

#include "cuda/device_math.cuh"
#include "cuda/kernels.hpp"
#include "cuda/kv_quant.cuh"

namespace kvserve::cuda {

inline constexpr int kPrefillWarps = 4;
inline constexpr int kPrefillTile = 32;

/// Tile element types: bf16 pools keep bf16 tiles, 8-bit pools fp32 (dequantized) ones.
template <kv_storage S>
struct prefill_tile_types {
  using pair = float2;
  using elem = float;
};
template <>
struct prefill_tile_types<kv_storage::kBf16> {
  using pair = __nv_bfloat162;
  using elem = __nv_bfloat16;
};

__device__ __forceinline__ float2 to_float2(__nv_bfloat162 x) { return __bfloat1622float2(x); }
__device__ __forceinline__ float2 to_float2(float2 x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(float x) { return x; }

template <int HD, kv_storage S = kv_storage::kBf16>
__global__ void __launch_bounds__(kPrefillWarps * 32)
    prefill_attention_kernel(prefill_attention_args a) {
  constexpr int NW = kPrefillWarps, RPW = kPrefillRowsPerItem / NW, TILE = kPrefillTile;
  constexpr int VEC = HD / 32;
  constexpr int KW = HD / 2 + 1;  // padded row of K in pairs: conflict-free column reads
  using pair_t = typename prefill_tile_types<S>::pair;
  using elem_t = typename prefill_tile_types<S>::elem;
  __shared__ float sq[kPrefillRowsPerItem][HD];
  __shared__ pair_t sk[TILE][KW];
  __shared__ __align__(16) elem_t sv[TILE][HD];

  const prefill_work_item item = a.items[blockIdx.x];
  const int kvh = blockIdx.y;
  const int nkv = a.kv.num_kv_heads;
  const int group = a.num_heads / nkv;
  const int rows = item.token_count * item.head_count;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int bs = a.kv.block_size;
  const int shift = __ffs(bs) - 1;
  const float qscale = a.scale * 1.4426950408889634f;

  for (int idx = threadIdx.x; idx < kPrefillRowsPerItem * HD; idx += blockDim.x) {
    const int r = idx / HD, d = idx % HD;
    float v = 0.0f;
    if (r < rows) {
      const int t = item.token_begin + r / item.head_count;
      const int h = kvh * group + item.head_begin + r % item.head_count;
      v = a.q[(static_cast<std::int64_t>(t) * a.num_heads + h) * HD + d] * qscale;
    }
    sq[r][d] = v;
  }
  int pos[RPW];
  int kmax = 0;
#pragma unroll
  for (int i = 0; i < RPW; ++i) {
    const int r = warp * RPW + i;
    pos[i] = r < rows ? a.positions[item.token_begin + r / item.head_count] : -1;
  }
  for (int t = 0; t < item.token_count; ++t)
    kmax = max(kmax, a.positions[item.token_begin + t] + 1);

  float m[RPW], l[RPW], acc[RPW][VEC];
#pragma unroll
  for (int i = 0; i < RPW; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int c = 0; c < VEC; ++c) acc[i][c] = 0.0f;
  }

  const std::int32_t* bt =
      a.block_tables + static_cast<std::int64_t>(item.seq) * a.max_blocks_per_seq;
  [[maybe_unused]] const std::int64_t head_stride = static_cast<std::int64_t>(bs) * HD;
  for (int j0 = 0; j0 < kmax; j0 += TILE) {
    __syncthreads();  // the previous tile is consumed (and sq is written on the first pass)
    for (int idx = threadIdx.x; idx < TILE * (HD / 4); idx += blockDim.x) {
      const int j = idx / (HD / 4), c = idx % (HD / 4);
      const int tok = j0 + j;
      if constexpr (S == kv_storage::kBf16) {
        uint2 kraw = make_uint2(0, 0), vraw = make_uint2(0, 0);
        if (tok < kmax) {
          const std::int64_t phys = bt[tok >> shift];
          const std::int64_t base =
              (phys * nkv + kvh) * head_stride + (tok & (bs - 1)) * HD + c * 4;
          kraw = *reinterpret_cast<const uint2*>(static_cast<const bf16*>(a.kv.k) + base);
          vraw = *reinterpret_cast<const uint2*>(static_cast<const bf16*>(a.kv.v) + base);
        }
        sk[j][c * 2] = *reinterpret_cast<const __nv_bfloat162*>(&kraw.x);
        sk[j][c * 2 + 1] = *reinterpret_cast<const __nv_bfloat162*>(&kraw.y);
        *reinterpret_cast<uint2*>(&sv[j][c * 4]) = vraw;
      } else {
        float kf[4] = {0.0f, 0.0f, 0.0f, 0.0f}, vf[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (tok < kmax) {
          const std::int64_t phys = bt[tok >> shift];
          const std::int64_t row = (phys * nkv + kvh) * bs + (tok & (bs - 1));
          const std::int64_t base = row * HD + c * 4;
          kv_decode4<S>(*reinterpret_cast<const std::uint32_t*>(
                            static_cast<const std::uint8_t*>(a.kv.k) + base),
                        kf);
          kv_decode4<S>(*reinterpret_cast<const std::uint32_t*>(
                            static_cast<const std::uint8_t*>(a.kv.v) + base),
                        vf);
          const float ks = a.kv.k_scale[row], vs = a.kv.v_scale[row];
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            kf[i] *= ks;
            vf[i] *= vs;
          }
        }
        sk[j][c * 2] = make_float2(kf[0], kf[1]);
        sk[j][c * 2 + 1] = make_float2(kf[2], kf[3]);
        *reinterpret_cast<float4*>(&sv[j][c * 4]) = make_float4(vf[0], vf[1], vf[2], vf[3]);
      }
    }
    __syncthreads();

    float s[RPW];
#pragma unroll
    for (int i = 0; i < RPW; ++i) s[i] = 0.0f;
#pragma unroll 8
    for (int d2 = 0; d2 < HD / 2; ++d2) {
      const float2 k = to_float2(sk[lane][d2]);
#pragma unroll
      for (int i = 0; i < RPW; ++i) {
        const float2 qv = *reinterpret_cast<const float2*>(&sq[warp * RPW + i][2 * d2]);
        s[i] += qv.x * k.x + qv.y * k.y;
      }
    }
    const int key = j0 + lane;
    float p[RPW];
#pragma unroll
    for (int i = 0; i < RPW; ++i) {
      p[i] = 0.0f;
      const float si = key <= pos[i] ? s[i] : -INFINITY;
      const float tile_max = warp_max(si);
      if (tile_max == -INFINITY) continue;  // uniform over the warp
      const float mn = fmaxf(m[i], tile_max);
      const float corr = exp2f(m[i] - mn);
      p[i] = exp2f(si - mn);
      l[i] = l[i] * corr + warp_sum(p[i]);
#pragma unroll
      for (int c = 0; c < VEC; ++c) acc[i][c] *= corr;
      m[i] = mn;
    }
#pragma unroll 4
    for (int jj = 0; jj < TILE; ++jj) {
      float v[VEC];
#pragma unroll
      for (int c = 0; c < VEC; ++c) v[c] = to_float(sv[jj][lane + 32 * c]);
#pragma unroll
      for (int i = 0; i < RPW; ++i) {
        const float pj = __shfl_sync(0xffffffffu, p[i], jj);
#pragma unroll
        for (int c = 0; c < VEC; ++c) acc[i][c] += pj * v[c];
      }
    }
  }

#pragma unroll
  for (int i = 0; i < RPW; ++i) {
    const int r = warp * RPW + i;
    if (r >= rows) continue;
    const int t = item.token_begin + r / item.head_count;
    const int h = kvh * group + item.head_begin + r % item.head_count;
    const float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
    __nv_bfloat16* o = a.out + (static_cast<std::int64_t>(t) * a.num_heads + h) * HD;
#pragma unroll
    for (int c = 0; c < VEC; ++c) o[lane + 32 * c] = __float2bfloat16(acc[i][c] * inv);
  }
}

}  // namespace kvserve::cuda
