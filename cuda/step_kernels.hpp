#pragma once
/// Kernels of the CUDA backend's step machinery (internal to cuda/ and its tests): the
/// embedding lookup that takes some rows' tokens on the device from the previous step's
/// sampled tokens (asynchronous steps, sequence_step::input_from_last_sample).

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace kvserve::cuda {

/// For each row t: token = src && src[t] >= 0 ? prev_sampled[src[t]] : tokens[t];
/// out[t, :] = float(table[token, :]). With src == null this is a plain embedding gather.
cudaError_t launch_embedding_gather_from(const __nv_bfloat16* table,        // [vocab, hidden]
                                         const std::int32_t* tokens,        // [num_rows]
                                         const std::int32_t* src,           // [num_rows] or null
                                         const std::int32_t* prev_sampled,  // [*]
                                         int num_rows, int hidden,
                                         float* out,  // [num_rows, hidden]
                                         cudaStream_t stream);

/// Device timestamps of step boundaries (cuda_backend_config::record_step_gaps): writes the
/// GPU's global timer (ns) to ring[2 * (*counter % ring_size) + (end ? 1 : 0)]; the end stamp
/// then increments *counter. One thread; stream order makes step c's begin stamp follow step
/// c - 1's end stamp.
cudaError_t launch_step_stamp(unsigned long long* ring, unsigned int* counter, bool end,
                              int ring_size, cudaStream_t stream);

}  // namespace kvserve::cuda
