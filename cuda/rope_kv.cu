// Launchers of the RoPE + KV append kernel (bf16, FP8 E4M3 and INT8 pools) and of the
// encoding kernel the tests check against the host reference.
#include "cuda/kernels.hpp"
#include "cuda/rope_kv.cuh"

namespace kvserve::cuda {
namespace {
template <kv_storage S>
cudaError_t launch_8bit(const rope_kv_args& a, cudaStream_t stream) {
  switch (a.kv.head_dim) {
    case 64:
      return launch_pdl(rope_kv_append_kernel<S, 64>, dim3(a.num_tokens), dim3(256), 0, stream, a);
    case 128:
      return launch_pdl(rope_kv_append_kernel<S, 128>, dim3(a.num_tokens), dim3(256), 0, stream, a);
    default:
      return cudaErrorInvalidValue;
  }
}

template <kv_storage S>
cudaError_t launch_quantize(const float* x, int n, int hd, std::uint8_t* codes, float* scales,
                            cudaStream_t stream) {
  const int blocks = (n + 3) / 4;
  if (hd == 64)
    quantize_heads_kernel<S, 64><<<blocks, 128, 0, stream>>>(x, n, codes, scales);
  else if (hd == 128)
    quantize_heads_kernel<S, 128><<<blocks, 128, 0, stream>>>(x, n, codes, scales);
  else
    return cudaErrorInvalidValue;
  return cudaGetLastError();
}
}  // namespace

cudaError_t launch_rope_kv_append(const rope_kv_args& args, cudaStream_t stream) {
  if (args.num_tokens == 0) return cudaSuccess;
  switch (args.kv.dtype) {
    case kv_storage::kBf16:
      return launch_pdl(rope_kv_append_kernel<kv_storage::kBf16, 0>, dim3(args.num_tokens),
                        dim3(256), 0, stream, args);
    case kv_storage::kFp8E4m3:
      return launch_8bit<kv_storage::kFp8E4m3>(args, stream);
    case kv_storage::kInt8:
      return launch_8bit<kv_storage::kInt8>(args, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t launch_quantize_heads(const float* x, int num_heads, int head_dim, kv_storage dtype,
                                  std::uint8_t* codes, float* scales, cudaStream_t stream) {
  if (num_heads == 0) return cudaSuccess;
  switch (dtype) {
    case kv_storage::kFp8E4m3:
      return launch_quantize<kv_storage::kFp8E4m3>(x, num_heads, head_dim, codes, scales, stream);
    case kv_storage::kInt8:
      return launch_quantize<kv_storage::kInt8>(x, num_heads, head_dim, codes, scales, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace kvserve::cuda
