#include "cuda/gemm.hpp"

#include <algorithm>

namespace kvserve::cuda {

gemm_runner::~gemm_runner() {
  for (auto& [key, p] : plans_) {
    if (p.desc) (void)cublasLtMatmulDescDestroy(p.desc);
    if (p.a) (void)cublasLtMatrixLayoutDestroy(p.a);
    if (p.b) (void)cublasLtMatrixLayoutDestroy(p.b);
    if (p.c) (void)cublasLtMatrixLayoutDestroy(p.c);
  }
  if (handle_) (void)cublasLtDestroy(handle_);
}

status gemm_runner::init(std::size_t workspace_bytes) {
  KVSERVE_CUBLAS_TRY(cublasLtCreate(&handle_));
  return workspace_.allocate(workspace_bytes, "cuBLASLt workspace");
}

// Row-major y[m, n] = x[m, k] w[n, k]^T is, column-major, y^T[n, m] = w^T[n, k] . x^T[k, m]:
// A = w viewed as a column-major k x n matrix (ld k), transposed; B = x as k x m (ld k);
// C = D = y^T as n x m (ld n).
result<gemm_runner::plan*> gemm_runner::get_plan(int m, int n, int k) {
  const auto key = std::make_tuple(m, n, k);
  auto it = plans_.find(key);
  if (it != plans_.end()) return &it->second;
  plan p;
  KVSERVE_CUBLAS_TRY(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  KVSERVE_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a,
                                                    sizeof(trans_a)));
  KVSERVE_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b,
                                                    sizeof(trans_b)));
  KVSERVE_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, k, n, k));
  KVSERVE_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, k, m, k));
  KVSERVE_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, n, m, n));
  cublasLtMatmulPreference_t pref = nullptr;
  KVSERVE_CUBLAS_TRY(cublasLtMatmulPreferenceCreate(&pref));
  const std::size_t ws = workspace_.bytes();
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic(handle_, p.desc, p.a, p.b, p.c, p.c, pref, 1, &heuristic,
                                        &found);
  (void)cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
    (void)cublasLtMatmulDescDestroy(p.desc);
    (void)cublasLtMatrixLayoutDestroy(p.a);
    (void)cublasLtMatrixLayoutDestroy(p.b);
    (void)cublasLtMatrixLayoutDestroy(p.c);
    return status{status_code::kInternal, "cuBLASLt has no algorithm for m=" + std::to_string(m) +
                                              " n=" + std::to_string(n) +
                                              " k=" + std::to_string(k)};
  }
  p.algo = heuristic.algo;
  return &plans_.emplace(key, p).first->second;
}

status gemm_runner::run_lt(const bf16* x, const bf16* w, int m, int n, int k, float* y,
                           cudaStream_t stream) {
  auto p = get_plan(m, n, k);
  if (!p) return p.error();
  const float alpha = 1.0f, beta = 0.0f;
  KVSERVE_CUBLAS_TRY(cublasLtMatmul(handle_, (*p)->desc, &alpha, w, (*p)->a, x, (*p)->b, &beta, y,
                                    (*p)->c, y, (*p)->c, &(*p)->algo, workspace_.get(),
                                    workspace_.bytes(), stream));
  return status::ok();
}

bool gemm_runner::use_gemv(int m, int n, int k) const {
  if (m > kGemvMaxRows || k % 8 != 0) return false;
  if (forced_ == 1) return true;
  if (forced_ == 2) return false;
  const auto it = gemv_choice_.find(std::make_tuple(m, n, k));
  return it == gemv_choice_.end() ? true : it->second;
}

status gemm_runner::run(const bf16* x, const bf16* w, int m, int n, int k, float* y,
                        cudaStream_t stream) {
  if (m == 0) return status::ok();
  if (use_gemv(m, n, k)) {
    KVSERVE_CUDA_TRY(launch_gemv(x, w, m, n, k, y, stream));
    return status::ok();
  }
  return run_lt(x, w, m, n, k, y, stream);
}

status gemm_runner::tune(const std::vector<weight_shape>& weights, const std::vector<int>& ms,
                         bf16* x_scratch, float* y_scratch, cudaStream_t stream) {
  cuda_event start, stop;
  KVSERVE_STATUS_TRY(start.create());
  KVSERVE_STATUS_TRY(stop.create());
  auto time_path = [&](bool gemv, const weight_shape& s, int m) -> result<float> {
    constexpr int kReps = 10;
    for (int rep = 0; rep < kReps + 2; ++rep) {
      if (rep == 2) KVSERVE_CUDA_TRY(cudaEventRecord(start.get(), stream));
      if (gemv) {
        KVSERVE_CUDA_TRY(launch_gemv(x_scratch, s.w, m, s.n, s.k, y_scratch, stream));
      } else {
        KVSERVE_STATUS_TRY(run_lt(x_scratch, s.w, m, s.n, s.k, y_scratch, stream));
      }
    }
    KVSERVE_CUDA_TRY(cudaEventRecord(stop.get(), stream));
    KVSERVE_CUDA_TRY(cudaEventSynchronize(stop.get()));
    float ms_total = 0.0f;
    KVSERVE_CUDA_TRY(cudaEventElapsedTime(&ms_total, start.get(), stop.get()));
    return ms_total;
  };
  for (const auto& s : weights) {
    for (int m : ms) {
      if (m > kGemvMaxRows || s.k % 8 != 0) continue;
      auto t_gemv = time_path(true, s, m);
      if (!t_gemv) return t_gemv.error();
      auto t_lt = time_path(false, s, m);
      if (!t_lt) return t_lt.error();
      gemv_choice_[std::make_tuple(m, s.n, s.k)] = *t_gemv <= *t_lt;
    }
  }
  return status::ok();
}

}  // namespace kvserve::cuda
