#pragma once
/// On-device sampling with the CPU sampler's semantics (model/sampler.hpp): suppression,
/// repetition / frequency / presence penalties, greedy argmax, temperature, min-p, top-k,
/// top-p and the exponential race over counter_uniform(seed, position, token). One block of
/// kSampleThreads per sampled row; the row's work vector lives in global memory (L2).
///
/// Selections (the k-th largest probability, the top-p boundary) use 4 passes of an 8-bit
/// radix histogram over the float bits (probabilities are >= 0, so their bits order like
/// their values), never a sort.

#include <cuda_bf16.h>

#include <cstdint>

#include "cuda/device_math.cuh"
#include "cuda/sampling.hpp"
#include "model/counter_rng.hpp"

namespace kvserve::cuda {

inline constexpr int kSampleThreads = 1024;

namespace sampling_detail {

struct block_scratch {
  float f[32];
  int i[32];
  double d[32];
  unsigned int hist[256];
  double hsum[256];
  unsigned int prefix;
  double above;
  int flag;
};

__device__ __forceinline__ double block_sum_d(double v, block_scratch& s) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (lane == 0) s.d[warp] = v;
  __syncthreads();
  double r = lane < (blockDim.x >> 5) ? s.d[lane] : 0.0;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) r += __shfl_xor_sync(0xffffffffu, r, o);
  __syncthreads();
  return r;
}

__device__ __forceinline__ int block_sum_i(int v, block_scratch& s) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (lane == 0) s.i[warp] = v;
  __syncthreads();
  int r = lane < (blockDim.x >> 5) ? s.i[lane] : 0;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) r += __shfl_xor_sync(0xffffffffu, r, o);
  __syncthreads();
  return r;
}

/// (value, index) argmax over the block: the largest value, the lowest index on ties.
/// Every thread gets the winning index; -1 when no thread offered a candidate.
template <class T>
__device__ __forceinline__ int block_argmax(T value, int index, T* sval, int* sidx) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const T ov = __shfl_xor_sync(0xffffffffu, value, o);
    const int oi = __shfl_xor_sync(0xffffffffu, index, o);
    if (oi >= 0 && (index < 0 || ov > value || (ov == value && oi < index))) {
      value = ov;
      index = oi;
    }
  }
  if (lane == 0) {
    sval[warp] = value;
    sidx[warp] = index;
  }
  __syncthreads();
  if (warp == 0) {
    value = lane < (blockDim.x >> 5) ? sval[lane] : value;
    index = lane < (blockDim.x >> 5) ? sidx[lane] : -1;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const T ov = __shfl_xor_sync(0xffffffffu, value, o);
      const int oi = __shfl_xor_sync(0xffffffffu, index, o);
      if (oi >= 0 && (index < 0 || ov > value || (ov == value && oi < index))) {
        value = ov;
        index = oi;
      }
    }
    if (lane == 0) sidx[0] = index;
  }
  __syncthreads();
  const int r = sidx[0];
  __syncthreads();
  return r;
}

/// Bits of a kept probability, or 0 (never selected: kept probabilities are > 0).
__device__ __forceinline__ unsigned int kept_bits(float p, unsigned int min_bits) {
  const unsigned int b = __float_as_uint(p);
  return (b >= min_bits && p == p) ? b : 0u;  // NaN is never kept
}

}  // namespace sampling_detail

/// Grid (num_rows), kSampleThreads threads.
__global__ void __launch_bounds__(kSampleThreads)
    sample_kernel(const float* __restrict__ logits,   // [*, vocab]
                  float* __restrict__ work,           // [num_rows, vocab]
                  unsigned int* __restrict__ counts,  // [num_rows, vocab], zero on entry/exit
                  const device_sampling_row* __restrict__ rows,
                  const std::int32_t* __restrict__ token_lists, int vocab,
                  std::int32_t* __restrict__ sampled) {  // [num_rows]
  using namespace sampling_detail;
  __shared__ block_scratch sc;
  const device_sampling_row p = rows[blockIdx.x];
  const float* in = logits + static_cast<std::int64_t>(p.logits_row) * vocab;
  float* w = work + static_cast<std::int64_t>(blockIdx.x) * vocab;
  unsigned int* cnt = counts + static_cast<std::int64_t>(blockIdx.x) * vocab;
  const int tid = threadIdx.x, nt = blockDim.x;
  constexpr unsigned int kSeen = 1u << 31;

  if (p.repetition_penalty != 1.0f || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) {
    for (int i = tid; i < p.prompt_count; i += nt) {
      const int t = token_lists[p.prompt_begin + i];
      if (t >= 0 && t < vocab) atomicOr(cnt + t, kSeen);
    }
    for (int i = tid; i < p.output_count; i += nt) {
      const int t = token_lists[p.output_begin + i];
      if (t >= 0 && t < vocab) atomicAdd(cnt + t, 1u);
      if (t >= 0 && t < vocab) atomicOr(cnt + t, kSeen);
    }
  }
  __syncthreads();
  // work = penalised logits (suppression applied below, after the penalties are folded in:
  // -inf stays -inf under both).
  const bool greedy = p.temperature <= 0.0f;
  float local_max = -INFINITY;
  for (int t = tid; t < vocab; t += nt) {
    float l = in[t];
    const unsigned int c = cnt[t];
    if (c != 0u) {
      if ((c & kSeen) && p.repetition_penalty != 1.0f)
        l = l > 0.0f ? __fdiv_rn(l, p.repetition_penalty) : __fmul_rn(l, p.repetition_penalty);
      const unsigned int n = c & ~kSeen;
      if (n > 0u && (p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f)) {
        l = __fsub_rn(l, __fmul_rn(p.frequency_penalty, static_cast<float>(n)));
        l = __fsub_rn(l, p.presence_penalty);
      }
      cnt[t] = 0u;
    }
    w[t] = l;
  }
  __syncthreads();
  for (int i = tid; i < p.suppressed_count; i += nt) {
    const int t = token_lists[p.suppressed_begin + i];
    if (t >= 0 && t < vocab) w[t] = -INFINITY;
  }
  __syncthreads();

  if (greedy) {
    float best = -INFINITY;
    int best_i = -1;
    for (int t = tid; t < vocab; t += nt) {
      const float v = w[t];
      if (v > best) {  // NaN and -inf never win, as in the CPU argmax
        best = v;
        best_i = t;
      }
    }
    const int r = block_argmax(best, best_i, sc.f, sc.i);
    if (tid == 0) sampled[blockIdx.x] = r < 0 ? 0 : r;
    return;
  }

  for (int t = tid; t < vocab; t += nt) {
    const float l = __fdiv_rn(w[t], p.temperature);
    w[t] = l;
    local_max = fmaxf(local_max, l);
  }
  const float mx = block_max(local_max, sc.f);
  // Unnormalised probabilities; kept: p > 0 and p >= min_p.
  int kept = 0;
  const unsigned int min_bits = max(__float_as_uint(p.min_p), 1u);
  for (int t = tid; t < vocab; t += nt) {
    const float pr = expf(w[t] - mx);
    w[t] = pr;
    kept += kept_bits(pr, min_bits) != 0u;
  }
  kept = block_sum_i(kept, sc);
  unsigned int threshold = min_bits;  // kept: bits >= threshold

  if (p.top_k > 0 && p.top_k < kept) {
    // k-th largest kept value: 4 radix passes from the top byte.
    unsigned int prefix = 0, need = static_cast<unsigned int>(p.top_k);
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int b = tid; b < 256; b += nt) sc.hist[b] = 0;
      __syncthreads();
      const unsigned int hi_mask = shift == 24 ? 0u : (0xffffffffu << (shift + 8));
      for (int t = tid; t < vocab; t += nt) {
        const unsigned int b = kept_bits(w[t], threshold);
        if (b != 0u && (b & hi_mask) == prefix) atomicAdd(&sc.hist[(b >> shift) & 0xff], 1u);
      }
      __syncthreads();
      if (tid == 0) {
        unsigned int cum = 0;
        int bin = 0;
        for (int b = 255; b >= 0; --b) {
          if (cum + sc.hist[b] >= need) {
            bin = b;
            break;
          }
          cum += sc.hist[b];
        }
        sc.prefix = prefix | (static_cast<unsigned int>(bin) << shift);
        sc.flag = static_cast<int>(need - cum);
      }
      __syncthreads();
      prefix = sc.prefix;
      need = static_cast<unsigned int>(sc.flag);
      __syncthreads();
    }
    threshold = max(threshold, prefix);  // ties with the k-th stay
    int k2 = 0;
    for (int t = tid; t < vocab; t += nt) k2 += kept_bits(w[t], threshold) != 0u;
    kept = block_sum_i(k2, sc);
  }

  int tie_id_limit = vocab;  // among tokens whose bits == threshold, keep ids < this
  if (p.top_p < 1.0f && kept > 1) {
    double total = 0.0;
    for (int t = tid; t < vocab; t += nt)
      if (kept_bits(w[t], threshold) != 0u) total += static_cast<double>(w[t]);
    total = block_sum_d(total, sc);
    const double target = static_cast<double>(p.top_p) * total;
    // Largest value v with sum(kept p with bits >= v) >= target.
    unsigned int prefix = 0;
    double above = 0.0;  // sum of kept p with bits above the current prefix range
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int b = tid; b < 256; b += nt) {
        sc.hist[b] = 0;
        sc.hsum[b] = 0.0;
      }
      __syncthreads();
      const unsigned int hi_mask = shift == 24 ? 0u : (0xffffffffu << (shift + 8));
      for (int t = tid; t < vocab; t += nt) {
        const unsigned int b = kept_bits(w[t], threshold);
        if (b != 0u && (b & hi_mask) == prefix) {
          atomicAdd(&sc.hist[(b >> shift) & 0xff], 1u);
          atomicAdd(&sc.hsum[(b >> shift) & 0xff], static_cast<double>(w[t]));
        }
      }
      __syncthreads();
      if (tid == 0) {
        double cum = above;
        int bin = -1, lowest = -1;
        for (int b = 255; b >= 0; --b) {
          if (sc.hist[b] == 0) continue;
          if (cum + sc.hsum[b] >= target) {
            bin = b;
            break;
          }
          cum += sc.hsum[b];
          lowest = b;
        }
        if (bin < 0) {  // rounding: the target is never reached, keep everything
          bin = lowest;
          cum -= sc.hsum[lowest];
        }
        sc.prefix = prefix | (static_cast<unsigned int>(bin) << shift);
        sc.above = cum;
      }
      __syncthreads();
      prefix = sc.prefix;
      above = sc.above;
      __syncthreads();
    }
    // Ties at the boundary value are taken in id order until the mass reaches the target.
    int ties = 0;
    for (int t = tid; t < vocab; t += nt) ties += __float_as_uint(w[t]) == prefix;
    ties = block_sum_i(ties, sc);
    const double v = static_cast<double>(__uint_as_float(prefix));
    int take = 0;
    double cum = above;
    while (take < ties && (cum < target || (take == 0 && above == 0.0))) {
      cum += v;
      ++take;
    }
    if (take < ties) {
      // The take-th lowest id among the ties: contiguous chunks per thread, then a scan.
      const int chunk = (vocab + nt - 1) / nt;
      const int lo = tid * chunk, hi = min(vocab, lo + chunk);
      int mine = 0;
      for (int t = lo; t < hi; ++t) mine += __float_as_uint(w[t]) == prefix;
      // Exclusive scan over threads through shared memory (one warp of partial sums).
      __shared__ int scan[kSampleThreads];
      scan[tid] = mine;
      __syncthreads();
      if (tid == 0) {
        int run = 0;
        for (int i = 0; i < nt; ++i) {
          const int c = scan[i];
          scan[i] = run;
          run += c;
        }
      }
      __syncthreads();
      int before = scan[tid];
      if (before < take && before + mine >= take) {
        for (int t = lo; t < hi; ++t) {
          if (__float_as_uint(w[t]) == prefix && ++before == take) {
            sc.flag = t + 1;
            break;
          }
        }
      }
      __syncthreads();
      tie_id_limit = sc.flag;
      __syncthreads();
    }
    threshold = prefix;
  }

  // Exponential race over the kept tokens.
  double best = -1.0;
  int best_i = -1;
  for (int t = tid; t < vocab; t += nt) {
    const unsigned int b = kept_bits(w[t], threshold);
    if (b == 0u || (b == threshold && t >= tie_id_limit)) continue;
    const float u = counter_uniform(p.seed, static_cast<std::uint64_t>(p.position),
                                    static_cast<std::uint64_t>(t));
    const double e = -log1p(-static_cast<double>(u));
    const double score = e > 0.0 ? static_cast<double>(w[t]) / e : INFINITY;
    if (best_i < 0 || score > best) {
      best = score;
      best_i = t;
    }
  }
  __shared__ double sbest[32];
  int r = block_argmax(best, best_i, sbest, sc.i);
  if (r < 0) {  // nothing kept: argmax of the raw logits, as the CPU sampler
    float bv = -INFINITY;
    int bi = -1;
    for (int t = tid; t < vocab; t += nt)
      if (in[t] > bv) {
        bv = in[t];
        bi = t;
      }
    r = block_argmax(bv, bi, sc.f, sc.i);
    if (r < 0) r = 0;
  }
  if (tid == 0) sampled[blockIdx.x] = r;
}

}  // namespace kvserve::cuda
