// Launcher of the RoPE + KV append kernel.
#include "cuda/kernels.hpp"
#include "cuda/rope_kv.cuh"

namespace kvserve::cuda {

cudaError_t launch_rope_kv_append(const rope_kv_args& args, cudaStream_t stream) {
  if (args.num_tokens == 0) return cudaSuccess;
  rope_kv_append_kernel<<<args.num_tokens, 256, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace kvserve::cuda
