#pragma once
/// Turning CUDA and cuBLAS errors into statuses. Every CUDA and cuBLAS call of the backend goes
/// through one of these macros.

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "model/status.hpp"

namespace kvserve::cuda {

inline status cuda_status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return status::ok();
  const status_code code =
      e == cudaErrorMemoryAllocation ? status_code::kOutOfMemory : status_code::kInternal;
  return {code,
          std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")"};
}

inline status cublas_status(cublasStatus_t e, const char* what) {
  if (e == CUBLAS_STATUS_SUCCESS) return status::ok();
  const status_code code =
      e == CUBLAS_STATUS_ALLOC_FAILED ? status_code::kOutOfMemory : status_code::kInternal;
  return {code, std::string(what) + ": cuBLAS status " + std::to_string(static_cast<int>(e))};
}

}  // namespace kvserve::cuda

/// Returns the failed status from the enclosing function (returning status or result<T>).
#define KVSERVE_CUDA_TRY(expr)                                                             \
  do {                                                                                     \
    const cudaError_t kvserve_e_ = (expr);                                                 \
    if (kvserve_e_ != cudaSuccess) return ::kvserve::cuda::cuda_status(kvserve_e_, #expr); \
  } while (0)

#define KVSERVE_CUBLAS_TRY(expr)                                \
  do {                                                          \
    const cublasStatus_t kvserve_e_ = (expr);                   \
    if (kvserve_e_ != CUBLAS_STATUS_SUCCESS)                    \
      return ::kvserve::cuda::cublas_status(kvserve_e_, #expr); \
  } while (0)

/// Propagates a non-ok status.
#define KVSERVE_STATUS_TRY(expr)                \
  do {                                          \
    ::kvserve::status kvserve_s_ = (expr);      \
    if (!kvserve_s_.is_ok()) return kvserve_s_; \
  } while (0)
