#pragma once
/// The model's weights on the device: bf16 matrices (Q/K/V rows and gate/up rows concatenated)
/// and fp32 norms and biases, each set in one allocation.

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "cuda/device_memory.hpp"
#include "cuda/kernels.hpp"
#include "model/model_config.hpp"
#include "model/model_weights.hpp"
#include "model/status.hpp"

namespace kvserve::cuda {

struct device_layer {
  const float* attn_norm = nullptr;  // [hidden]
  const bf16* wqkv = nullptr;        // [q_size + 2 * kv_size, hidden]
  const float* bqkv = nullptr;       // [q_size + 2 * kv_size] or null
  const bf16* wo = nullptr;          // [hidden, q_size]
  const float* ffn_norm = nullptr;   // [hidden]
  const bf16* w_gate_up = nullptr;   // [2 * intermediate, hidden]: gate rows, then up rows
  const bf16* w_down = nullptr;      // [hidden, intermediate]
};

class device_weights {
 public:
  /// Converts and uploads host weights; kCorruptData when a tensor has the wrong size.
  [[nodiscard]] status upload(const model_config& config, const model_weights& weights,
                              cudaStream_t stream);
  /// Random weights drawn on the device.
  [[nodiscard]] status make_dummy(const model_config& config, std::uint64_t seed,
                                  cudaStream_t stream);

  const bf16* embedding() const { return embedding_; }  // [vocab, hidden]
  const bf16* lm_head() const { return lm_head_; }      // [vocab, hidden]
  const float* final_norm() const { return final_norm_; }
  const std::vector<device_layer>& layers() const { return layers_; }
  std::size_t bytes() const { return mats_.bytes() + vecs_.bytes(); }

 private:
  // Offsets (elements) of every tensor in the two allocations.
  struct layout {
    std::size_t embedding = 0, lm_head = 0, final_norm = 0, mats = 0, vecs = 0;
    struct layer {
      std::size_t attn_norm, wq, wk, wv, bq, bk, bv, wo, ffn_norm, w_gate, w_up, w_down;
    };
    std::vector<layer> layers;
  };
  static layout plan_layout(const model_config& config);
  status allocate(const model_config& config);

  layout layout_;
  device_buffer<bf16> mats_;
  device_buffer<float> vecs_;
  const bf16* embedding_ = nullptr;
  const bf16* lm_head_ = nullptr;
  const float* final_norm_ = nullptr;
  std::vector<device_layer> layers_;
};

}  // namespace kvserve::cuda
