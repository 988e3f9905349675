// Launcher of the on-device sampler.
#include "cuda/sampling.hpp"
#include "cuda/sampling_kernels.cuh"

namespace kvserve::cuda {

cudaError_t launch_sample(const float* logits, float* work, unsigned int* counts,
                          const device_sampling_row* rows, int num_rows,
                          const std::int32_t* token_lists, int vocab, std::int32_t* sampled,
                          cudaStream_t stream) {
  if (num_rows == 0) return cudaSuccess;
  sample_kernel<<<num_rows, kSampleThreads, 0, stream>>>(logits, work, counts, rows, token_lists,
                                                         vocab, sampled);
  return cudaGetLastError();
}

}  // namespace kvserve::cuda
