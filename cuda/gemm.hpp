#pragma once
/// Linear layers: y[m, n] = x[m, k] . w[n, k]^T with bf16 inputs and fp32 accumulation and
/// output. Small m goes to the project's GEMV kernel (kernels.hpp), the rest to cuBLASLt; the
/// choice per (n, k, m) can be measured on the device with `tune`.

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <map>
#include <tuple>
#include <vector>

#include "cuda/device_memory.hpp"
#include "cuda/kernels.hpp"
#include "model/status.hpp"

namespace kvserve::cuda {

class gemm_runner {
 public:
  gemm_runner() = default;
  ~gemm_runner();
  gemm_runner(const gemm_runner&) = delete;
  gemm_runner& operator=(const gemm_runner&) = delete;

  /// Creates the cuBLASLt handle and its workspace.
  [[nodiscard]] status init(std::size_t workspace_bytes = 32u << 20);

  /// Enqueues y = x . w^T on `stream`. Capturable in a CUDA graph once the (m, n, k) plan
  /// exists (plans are made on first use; making one launches nothing).
  [[nodiscard]] status run(const bf16* x, const bf16* w, int m, int n, int k, float* y,
                           cudaStream_t stream);

  /// Times GEMV against cuBLASLt for every (n, k) weight of `weights` and every m in `ms`
  /// (m <= kGemvMaxRows) and remembers the faster; x and y are scratch large enough.
  struct weight_shape {
    const bf16* w;
    int n, k;
  };
  [[nodiscard]] status tune(const std::vector<weight_shape>& weights, const std::vector<int>& ms,
                            bf16* x_scratch, float* y_scratch, cudaStream_t stream);

  /// Forces one path (tests and benchmarks): 0 = measured/default, 1 = GEMV, 2 = cuBLASLt.
  void force_path(int path) { forced_ = path; }

 private:
  struct plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  result<plan*> get_plan(int m, int n, int k);
  status run_lt(const bf16* x, const bf16* w, int m, int n, int k, float* y, cudaStream_t stream);
  bool use_gemv(int m, int n, int k) const;

  cublasLtHandle_t handle_ = nullptr;
  device_buffer<unsigned char> workspace_;
  std::map<std::tuple<int, int, int>, plan> plans_;
  std::map<std::tuple<int, int, int>, bool> gemv_choice_;  // (m, n, k) -> GEMV is faster
  int forced_ = 0;
};

}  // namespace kvserve::cuda
