// Launcher of paged prefill attention (tensor cores): head dims 64 and 128; bf16, FP8 E4M3
// and INT8 pools.
#include <algorithm>
#include <cstdlib>

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
  const dim3 grid(a.num_items, a.kv.num_kv_heads, a.num_splits);
  prefill_attention_kernel<HD, S><<<grid, kPrefillWarps * 32, smem, stream>>>(a);
  if (a.num_splits > 1) {
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
    prefill_attention_merge_kernel<HD><<<dim3(a.num_tokens, a.num_heads), HD, 0, stream>>>(a);
  }
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

int prefill_attention_splits(int num_tokens, int num_items, int num_kv_heads, int max_context,
                             int num_sms) {
  // KVSERVE_PREFILL_SPLITS=0 turns splitting off (A/B runs); read once.
  static const bool on = [] {
    const char* e = std::getenv("KVSERVE_PREFILL_SPLITS");
    return !(e && e[0] == '0');
  }();
  if (!on || num_tokens > kSplitPrefillMaxTokens || num_items <= 0) return 1;
  const int blocks = num_items * num_kv_heads;
  const int by_fill = num_sms / blocks;
  const int by_keys = max_context / (2 * kPrefillKeys);
  return std::max(1, std::min({kMaxPrefillSplits, by_fill, by_keys}));
}

cudaError_t launch_prefill_attention(const prefill_attention_args& a, cudaStream_t stream) {
  if (a.num_items == 0) return cudaSuccess;
  if (a.num_splits < 1 || a.num_splits > kMaxPrefillSplits) return cudaErrorInvalidValue;
  if (a.num_splits > 1 && (!a.partial_out || !a.partial_ml || a.num_tokens < 1))
    return cudaErrorInvalidValue;
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
