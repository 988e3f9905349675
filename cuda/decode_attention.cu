// Launcher of paged decode attention: head dims 64 and 128.
#include "cuda/decode_attention.cuh"
#include "cuda/kernels.hpp"

namespace kvserve::cuda {
namespace {
template <int HD>
cudaError_t launch(const decode_attention_args& a, cudaStream_t stream) {
  const int group = a.num_heads / a.kv.num_kv_heads;
  const int chunks = (group + kMaxGroup - 1) / kMaxGroup;
  const dim3 grid(a.num_seqs, a.kv.num_kv_heads * chunks, a.num_splits);
  decode_attention_kernel<HD><<<grid, kDecodeWarps * 32, 0, stream>>>(a);
  decode_attention_merge_kernel<HD><<<dim3(a.num_seqs, a.num_heads), HD, 0, stream>>>(a);
  return cudaGetLastError();
}
}  // namespace

cudaError_t launch_decode_attention(const decode_attention_args& a, cudaStream_t stream) {
  if (a.num_seqs == 0) return cudaSuccess;
  if (a.num_splits < 1 || a.num_splits > kMaxDecodeSplits) return cudaErrorInvalidValue;
  switch (a.kv.head_dim) {
    case 64:
      return launch<64>(a, stream);
    case 128:
      return launch<128>(a, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace kvserve::cuda
