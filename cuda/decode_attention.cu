// Launcher of paged decode attention: head dims 64 and 128; query heads per KV head handled
// 1, 2, 4 or 8 at a time (larger groups in chunks of 8); bf16, FP8 E4M3 and INT8 pools.
#include <algorithm>

#include "cuda/decode_attention.cuh"
#include "cuda/kernels.hpp"

namespace kvserve::cuda {
namespace {

/// 8-bit pools, when the caller leaves it to us: 4 tokens per sub-warp iteration and, for groups
/// of up to 4 query heads per KV head, 16 dimensions per lane (one 16-byte load per token: half
/// the lanes per token, so half the shuffle reductions and per-token softmax work; 254
/// registers, two blocks per SM). Measured on the H100 at 16k-32k context, group 4: 64-68% of
/// the copy bandwidth against 54-58% with 8 dimensions per lane (168 registers, three blocks)
/// and 50-53% with 8 tokens per iteration. Larger groups use 8 dimensions per lane.
constexpr int kTokensPerIter8Bit = 4;
constexpr int kDimsPerLane8Bit = 16;

template <int HD, int MAXG, kv_storage S, int U, int DPL = 8>
cudaError_t launch(const decode_attention_args& a, cudaStream_t stream) {
  const int group = a.num_heads / a.kv.num_kv_heads;
  const int chunks = (group + MAXG - 1) / MAXG;
  const dim3 grid(a.num_seqs, a.kv.num_kv_heads * chunks, a.num_splits);
  decode_attention_kernel<HD, MAXG, S, U, DPL><<<grid, kDecodeWarps * 32, 0, stream>>>(a);
  decode_attention_merge_kernel<HD><<<dim3(a.num_seqs, a.num_heads), HD, 0, stream>>>(a);
  return cudaGetLastError();
}

template <int HD, kv_storage S, int U>
cudaError_t launch_group(const decode_attention_args& a, cudaStream_t stream) {
  const int group = a.num_heads / a.kv.num_kv_heads;
  if (group <= 1) return launch<HD, 1, S, U>(a, stream);
  if (group <= 2) return launch<HD, 2, S, U>(a, stream);
  if (group <= 4) return launch<HD, 4, S, U>(a, stream);
  return launch<HD, 8, S, U>(a, stream);
}

// 16 dimensions per lane: groups of up to 4 (the per-warp merge buffers of 8 would not fit in
// 48 KB of static shared memory); larger groups run with 8.
template <int HD, kv_storage S, int U>
cudaError_t launch_group16(const decode_attention_args& a, cudaStream_t stream) {
  const int group = a.num_heads / a.kv.num_kv_heads;
  if (group <= 1) return launch<HD, 1, S, U, 16>(a, stream);
  if (group <= 2) return launch<HD, 2, S, U, 16>(a, stream);
  if (group <= 4) return launch<HD, 4, S, U, 16>(a, stream);
  return launch<HD, 8, S, kTokensPerIter8Bit>(a, stream);
}

template <int HD, kv_storage S>
cudaError_t launch_tokens(const decode_attention_args& a, cudaStream_t stream) {
  if constexpr (S == kv_storage::kBf16) {
    return launch_group<HD, S, kTokensPerIter>(a, stream);
  } else {
    const int u = a.tokens_per_iter > 0 ? a.tokens_per_iter : kTokensPerIter8Bit;
    const int dpl = a.dims_per_lane > 0 ? a.dims_per_lane : kDimsPerLane8Bit;
    if (dpl == 8 && u == 4) return launch_group<HD, S, 4>(a, stream);
    if (dpl == 8 && u == 8) return launch_group<HD, S, 8>(a, stream);
    if (dpl == 16 && u == 2) return launch_group16<HD, S, 2>(a, stream);
    if (dpl == 16 && u == 4) return launch_group16<HD, S, 4>(a, stream);
    return cudaErrorInvalidValue;
  }
}

template <int HD>
cudaError_t launch_dtype(const decode_attention_args& a, cudaStream_t stream) {
  switch (a.kv.dtype) {
    case kv_storage::kBf16:
      return launch_tokens<HD, kv_storage::kBf16>(a, stream);
    case kv_storage::kFp8E4m3:
      return launch_tokens<HD, kv_storage::kFp8E4m3>(a, stream);
    case kv_storage::kInt8:
      return launch_tokens<HD, kv_storage::kInt8>(a, stream);
  }
  return cudaErrorInvalidValue;
}

template <class Kernel>
int occupancy(Kernel kernel) {
  int n = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kDecodeWarps * 32, 0) !=
      cudaSuccess) {
    (void)cudaGetLastError();
    return 1;
  }
  return n > 0 ? n : 1;
}

template <int HD, kv_storage S, int U, int DPL = 8>
int resident_blocks_per_sm(int group) {
  if (group <= 1) return occupancy(decode_attention_kernel<HD, 1, S, U, DPL>);
  if (group <= 2) return occupancy(decode_attention_kernel<HD, 2, S, U, DPL>);
  if (group <= 4) return occupancy(decode_attention_kernel<HD, 4, S, U, DPL>);
  return occupancy(decode_attention_kernel<HD, 8, S, U>);  // 8 dimensions per lane
}

template <int HD>
int resident_blocks_per_sm(int group, kv_storage dtype) {
  switch (dtype) {
    case kv_storage::kFp8E4m3:
      return resident_blocks_per_sm<HD, kv_storage::kFp8E4m3, kTokensPerIter8Bit, kDimsPerLane8Bit>(
          group);
    case kv_storage::kInt8:
      return resident_blocks_per_sm<HD, kv_storage::kInt8, kTokensPerIter8Bit, kDimsPerLane8Bit>(
          group);
    default:
      return resident_blocks_per_sm<HD, kv_storage::kBf16, kTokensPerIter>(group);
  }
}

}  // namespace

int decode_attention_blocks_per_seq(int num_heads, int num_kv_heads) {
  const int group = num_heads / num_kv_heads;
  const int maxg = group <= 1 ? 1 : group <= 2 ? 2 : group <= 4 ? 4 : 8;
  return num_kv_heads * ((group + maxg - 1) / maxg);
}

int decode_attention_splits(int num_seqs, int num_heads, int num_kv_heads, int head_dim,
                            int num_sms, kv_storage dtype) {
  const int group = num_heads / num_kv_heads;
  const int per_sm = head_dim == 64 ? resident_blocks_per_sm<64>(group, dtype)
                                    : resident_blocks_per_sm<128>(group, dtype);
  const int capacity = per_sm * num_sms;
  const int base = std::max(1, num_seqs * decode_attention_blocks_per_seq(num_heads, num_kv_heads));
  // Time ~ waves(s) / s for s splits (each block does 1/s of a sequence's context). Take the
  // fewest splits within 5% of the best ratio: fewer splits mean less merging.
  auto cost = [&](int splits) {
    const int blocks = base * splits;
    return static_cast<double>((blocks + capacity - 1) / capacity) / splits;
  };
  double best = cost(1);
  for (int splits = 2; splits <= kMaxDecodeSplits; ++splits) best = std::min(best, cost(splits));
  for (int splits = 1; splits <= kMaxDecodeSplits; ++splits)
    if (cost(splits) <= best * 1.05) return splits;
  return 1;
}

cudaError_t launch_decode_attention(const decode_attention_args& a, cudaStream_t stream) {
  if (a.num_seqs == 0) return cudaSuccess;
  if (a.num_splits < 1 || a.num_splits > kMaxDecodeSplits) return cudaErrorInvalidValue;
  if (a.kv.dtype != kv_storage::kBf16 && (!a.kv.k_scale || !a.kv.v_scale))
    return cudaErrorInvalidValue;
  switch (a.kv.head_dim) {
    case 64:
      return launch_dtype<64>(a, stream);
    case 128:
      return launch_dtype<128>(a, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace kvserve::cuda
