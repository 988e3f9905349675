// Launchers of the element-wise and normalisation kernels.
#include <algorithm>

#include "cuda/kernels.hpp"
#include "cuda/layer_kernels.cuh"

namespace kvserve::cuda {
namespace {
int grid_for(std::int64_t n, int threads) {
  return static_cast<int>(std::min<std::int64_t>((n + threads - 1) / threads, 4096));
}
}  // namespace

cudaError_t launch_embedding_gather(const bf16* table, const std::int32_t* tokens, int num_tokens,
                                    int hidden, float* out, cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  embedding_gather_kernel<<<num_tokens, 256, 0, stream>>>(table, tokens, hidden, out);
  return cudaGetLastError();
}

cudaError_t launch_add_rms_norm(float* residual, const float* delta, const float* weight,
                                const std::int32_t* rows, int num_rows, int hidden, float eps,
                                bool write_residual, bf16* out, cudaStream_t stream) {
  if (num_rows == 0) return cudaSuccess;
  const std::size_t smem = static_cast<std::size_t>(hidden) * sizeof(float);
  if (smem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(
        add_rms_norm_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
  }
  return launch_pdl(add_rms_norm_kernel, dim3(num_rows), dim3(512), smem, stream, residual, delta,
                    weight, rows, hidden, eps, write_residual, out);
}

cudaError_t launch_swiglu(const float* gate_up, int num_tokens, int inter, bf16* out,
                          cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  const dim3 grid(std::min((inter + 255) / 256, 64), num_tokens);
  return launch_pdl(swiglu_kernel, grid, dim3(256), 0, stream, gate_up, inter, out);
}

cudaError_t launch_f32_to_bf16(const float* in, std::int64_t n, bf16* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  f32_to_bf16_kernel<<<grid_for(n, 256), 256, 0, stream>>>(in, n, out);
  return cudaGetLastError();
}

cudaError_t launch_fill_uniform_bf16(bf16* out, std::int64_t n, std::uint64_t seed, float scale,
                                     cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  fill_uniform_bf16_kernel<<<grid_for(n, 256), 256, 0, stream>>>(out, n, seed, scale);
  return cudaGetLastError();
}

cudaError_t launch_fill_f32(float* out, std::int64_t n, float value, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  fill_f32_kernel<<<grid_for(n, 256), 256, 0, stream>>>(out, n, value);
  return cudaGetLastError();
}

}  // namespace kvserve::cuda
