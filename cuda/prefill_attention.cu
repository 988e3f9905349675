// Launcher of paged prefill attention: head dims 64 and 128; bf16, FP8 E4M3 and INT8 pools.
#include "cuda/kernels.hpp"
#include "cuda/prefill_attention.cuh"

namespace kvserve::cuda {
namespace {
template <kv_storage S>
cudaError_t launch(const prefill_attention_args& a, cudaStream_t stream) {
  const dim3 grid(a.num_items, a.kv.num_kv_heads);
  switch (a.kv.head_dim) {
    case 64:
      prefill_attention_kernel<64, S><<<grid, kPrefillWarps * 32, 0, stream>>>(a);
      break;
    case 128:
      prefill_attention_kernel<128, S><<<grid, kPrefillWarps * 32, 0, stream>>>(a);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}
}  // namespace

cudaError_t launch_prefill_attention(const prefill_attention_args& a, cudaStream_t stream) {
  if (a.num_items == 0) return cudaSuccess;
  switch (a.kv.dtype) {
    case kv_storage::kBf16:
      return launch<kv_storage::kBf16>(a, stream);
    case kv_storage::kFp8E4m3:
    case kv_storage::kInt8:
      if (!a.kv.k_scale || !a.kv.v_scale) return cudaErrorInvalidValue;
      return a.kv.dtype == kv_storage::kInt8 ? launch<kv_storage::kInt8>(a, stream)
                                             : launch<kv_storage::kFp8E4m3>(a, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace kvserve::cuda
