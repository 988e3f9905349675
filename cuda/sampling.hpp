#pragma once
/// Device-side sampling rows and the sampling launcher (internal to cuda/ and its tests).

#include <cuda_runtime.h>

#include <cstdint>

namespace kvserve::cuda {

/// One sampled row's parameters, as the device reads them. The token lists are ranges of one
/// flat int32 array shared by all rows of a step.
struct device_sampling_row {
  std::uint64_t seed = 0;
  std::int64_t position = 0;    // RNG counter: position of the token being sampled
  std::int32_t logits_row = 0;  // row of the logits buffer
  float temperature = 0.0f;     // <= 0: greedy
  std::int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::int32_t prompt_begin = 0, prompt_count = 0;
  std::int32_t output_begin = 0, output_count = 0;
  std::int32_t suppressed_begin = 0, suppressed_count = 0;
};

/// Samples one token per row. `work` is [num_rows, vocab] floats of scratch; `counts` is
/// [num_rows, vocab] uint32 that must be zero on entry and is zero again on exit.
cudaError_t launch_sample(const float* logits,  // [*, vocab]
                          float* work, unsigned int* counts, const device_sampling_row* rows,
                          int num_rows, const std::int32_t* token_lists, int vocab,
                          std::int32_t* sampled,  // [num_rows]
                          cudaStream_t stream);

}  // namespace kvserve::cuda
