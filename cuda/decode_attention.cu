// Launcher of paged decode attention: head dims 64 and 128; query heads per KV head handled
// 1, 2, 4 or 8 at a time (larger groups in chunks of 8).
#include <algorithm>

#include "cuda/decode_attention.cuh"
#include "cuda/kernels.hpp"

namespace kvserve::cuda {
namespace {
template <int HD, int MAXG>
cudaError_t launch(const decode_attention_args& a, cudaStream_t stream) {
  const int group = a.num_heads / a.kv.num_kv_heads;
  const int chunks = (group + MAXG - 1) / MAXG;
  const dim3 grid(a.num_seqs, a.kv.num_kv_heads * chunks, a.num_splits);
  decode_attention_kernel<HD, MAXG><<<grid, kDecodeWarps * 32, 0, stream>>>(a);
  decode_attention_merge_kernel<HD><<<dim3(a.num_seqs, a.num_heads), HD, 0, stream>>>(a);
  return cudaGetLastError();
}

template <int HD>
cudaError_t launch_group(const decode_attention_args& a, cudaStream_t stream) {
  const int group = a.num_heads / a.kv.num_kv_heads;
  if (group <= 1) return launch<HD, 1>(a, stream);
  if (group <= 2) return launch<HD, 2>(a, stream);
  if (group <= 4) return launch<HD, 4>(a, stream);
  return launch<HD, 8>(a, stream);
}
}  // namespace

int decode_attention_blocks_per_seq(int num_heads, int num_kv_heads) {
  const int group = num_heads / num_kv_heads;
  const int maxg = group <= 1 ? 1 : group <= 2 ? 2 : group <= 4 ? 4 : 8;
  return num_kv_heads * ((group + maxg - 1) / maxg);
}

namespace {
template <int HD>
int resident_blocks_per_sm(int group) {
  int n = 0;
  cudaError_t e = cudaSuccess;
  if (group <= 1)
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, decode_attention_kernel<HD, 1>,
                                                      kDecodeWarps * 32, 0);
  else if (group <= 2)
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, decode_attention_kernel<HD, 2>,
                                                      kDecodeWarps * 32, 0);
  else if (group <= 4)
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, decode_attention_kernel<HD, 4>,
                                                      kDecodeWarps * 32, 0);
  else
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, decode_attention_kernel<HD, 8>,
                                                      kDecodeWarps * 32, 0);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return 1;
  }
  return n > 0 ? n : 1;
}
}  // namespace

int decode_attention_splits(int num_seqs, int num_heads, int num_kv_heads, int head_dim,
                            int num_sms) {
  const int group = num_heads / num_kv_heads;
  const int per_sm =
      head_dim == 64 ? resident_blocks_per_sm<64>(group) : resident_blocks_per_sm<128>(group);
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
  switch (a.kv.head_dim) {
    case 64:
      return launch_group<64>(a, stream);
    case 128:
      return launch_group<128>(a, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace kvserve::cuda
