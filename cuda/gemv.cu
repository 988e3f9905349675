// Launcher of the small-batch GEMM: one instantiation per row count 1..8.
#include "cuda/gemv.cuh"
#include "cuda/kernels.hpp"

namespace kvserve::cuda {
namespace {
template <int M>
cudaError_t launch(const bf16* x, const bf16* w, int n, int k, float* y, cudaStream_t stream) {
  constexpr int cols_per_block = kGemvRowsPerBlock<M>;
  gemv_kernel<M>
      <<<(n + cols_per_block - 1) / cols_per_block, kGemvWarps * 32, 0, stream>>>(x, w, n, k, y);
  return cudaGetLastError();
}
}  // namespace

cudaError_t launch_gemv(const bf16* x, const bf16* w, int m, int n, int k, float* y,
                        cudaStream_t stream) {
  if (m == 0 || n == 0) return cudaSuccess;
  if (k % 8 != 0) return cudaErrorInvalidValue;
  switch (m) {
    case 1:
      return launch<1>(x, w, n, k, y, stream);
    case 2:
      return launch<2>(x, w, n, k, y, stream);
    case 3:
      return launch<3>(x, w, n, k, y, stream);
    case 4:
      return launch<4>(x, w, n, k, y, stream);
    case 5:
      return launch<5>(x, w, n, k, y, stream);
    case 6:
      return launch<6>(x, w, n, k, y, stream);
    case 7:
      return launch<7>(x, w, n, k, y, stream);
    case 8:
      return launch<8>(x, w, n, k, y, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace kvserve::cuda
