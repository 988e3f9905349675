// Launcher of paged prefill attention: head dims 64 and 128.
#include "cuda/kernels.hpp"
#include "cuda/prefill_attention.cuh"

namespace kvserve::cuda {

cudaError_t launch_prefill_attention(const prefill_attention_args& a, cudaStream_t stream) {
  if (a.num_items == 0) return cudaSuccess;
  const dim3 grid(a.num_items, a.kv.num_kv_heads);
  switch (a.kv.head_dim) {
    case 64:
      prefill_attention_kernel<64><<<grid, kPrefillWarps * 32, 0, stream>>>(a);
      break;
    case 128:
      prefill_attention_kernel<128><<<grid, kPrefillWarps * 32, 0, stream>>>(a);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace kvserve::cuda
