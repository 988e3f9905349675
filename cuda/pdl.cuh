#pragma once
/// Programmatic dependent launch (PDL, compute capability 9.0): a kernel launched with
/// `launch_pdl` may start while the kernel before it on the stream is still running. Such a
/// kernel must call `pdl_wait()` before it reads anything an earlier kernel wrote or writes
/// anything an earlier kernel reads; before that it may only read memory that no kernel of the
/// stream writes (weights), so a matmul streams its first weight tiles while the small kernel
/// before it finishes. `pdl_launch_dependents()` lets the next PDL kernel launch as soon as
/// every block of this one has called it (otherwise it launches when this grid exits); it says
/// nothing about memory, which only `pdl_wait()` orders. Both are no-ops for a kernel launched
/// without the attribute, and captured CUDA graphs keep the programmatic edges.
///
/// `KVSERVE_PDL=0` in the environment launches every kernel without the attribute (A/B runs).

#include <cuda_runtime.h>

#include <cstdlib>
#include <utility>

namespace kvserve::cuda {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/// Whether launches carry the PDL attribute (read once from KVSERVE_PDL; default on).
inline bool pdl_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("KVSERVE_PDL");
    return !(e && e[0] == '0');
  }();
  return on;
}

/// Launches `kernel` on `stream` with programmatic stream serialization allowed.
template <class... Params, class... Args>
cudaError_t launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t smem,
                       cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  // Not on the legacy default stream (tests launch there), which synchronises implicitly.
  cfg.numAttrs = pdl_enabled() && stream != nullptr ? 1 : 0;
  const cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
  return e != cudaSuccess ? e : cudaGetLastError();
}

}  // namespace kvserve::cuda
