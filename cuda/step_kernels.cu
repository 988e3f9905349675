#include "cuda/step_kernels.hpp"

namespace kvserve::cuda {
namespace {

__global__ void embedding_gather_from_kernel(const __nv_bfloat16* __restrict__ table,
                                             const std::int32_t* __restrict__ tokens,
                                             const std::int32_t* __restrict__ src,
                                             const std::int32_t* __restrict__ prev_sampled,
                                             int hidden, float* __restrict__ out) {
  const int t = blockIdx.x;
  const int from = src ? src[t] : -1;
  const std::int32_t token = from >= 0 ? prev_sampled[from] : tokens[t];
  const __nv_bfloat16* row = table + static_cast<std::size_t>(token) * hidden;
  float* o = out + static_cast<std::size_t>(t) * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) o[i] = __bfloat162float(row[i]);
}

__global__ void step_stamp_kernel(unsigned long long* ring, unsigned int* counter, int end,
                                  int ring_size) {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  const unsigned int c = *counter;
  ring[2 * (c % static_cast<unsigned int>(ring_size)) + end] = t;
  if (end) *counter = c + 1;
}

}  // namespace

cudaError_t launch_step_stamp(unsigned long long* ring, unsigned int* counter, bool end,
                              int ring_size, cudaStream_t stream) {
  step_stamp_kernel<<<1, 1, 0, stream>>>(ring, counter, end ? 1 : 0, ring_size);
  return cudaGetLastError();
}

cudaError_t launch_embedding_gather_from(const __nv_bfloat16* table, const std::int32_t* tokens,
                                         const std::int32_t* src, const std::int32_t* prev_sampled,
                                         int num_rows, int hidden, float* out,
                                         cudaStream_t stream) {
  if (num_rows <= 0) return cudaSuccess;
  embedding_gather_from_kernel<<<num_rows, 256, 0, stream>>>(table, tokens, src, prev_sampled,
                                                             hidden, out);
  return cudaGetLastError();
}

}  // namespace kvserve::cuda
