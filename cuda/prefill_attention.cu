// Launcher of paged prefill attention (tensor cores): head dims 64 and 128; bf16, FP8 E4M3
// and INT8 pools.
#include "cuda/kernels.hpp"
#include "cuda/prefill_attention.cuh"

namespace kvserve::cuda {
namespace {
template <int HD, kv_storage S>
cudaError_t launch_hd(const prefill_attention_args& a, cudaStream_t stream) {
  constexpr std::size_t smem = prefill_smem_bytes<HD>(S != kv_storage::kBf16);
  // More than 48 KB of dynamic shared memory needs the opt-in (cheap; set on every launch so
  // that every device of the process gets it).
  if (const cudaError_t e =
          cudaFuncSetAttribute(prefill_attention_kernel<HD, S>,
                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
      e != cudaSuccess)
    return e;
  const dim3 grid(a.num_items, a.kv.num_kv_heads);
  prefill_attention_kernel<HD, S><<<grid, kPrefillWarps * 32, smem, stream>>>(a);
  return cudaGetLastError();
}

template <kv_storage S>
cudaError_t launch(const prefill_attention_args& a, cudaStream_t stream) {
  switch (a.kv.head_dim) {
    case 64:
      return launch_hd<64, S>(a, stream);
    case 128:
      return launch_hd<128, S>(a, stream);
    default:
      return cudaErrorInvalidValue;
  }
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
