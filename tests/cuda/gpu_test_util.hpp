#pragma once
// Helpers shared by the GPU tests: skipping without a device, bf16 rounding, device copies.

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "cuda/cuda_backend.hpp"
#include "cuda/device_memory.hpp"
#include "model/model_config.hpp"

namespace kvserve::cuda::test {

#define KVSERVE_SKIP_WITHOUT_GPU()                                             \
  do {                                                                         \
    if (!::kvserve::cuda_device_available()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

#define KVSERVE_ASSERT_CUDA(expr) ASSERT_EQ((expr), cudaSuccess) << cudaGetErrorString(expr)

/// A tiny model for whole-backend tests: vocab 384, hidden 256, 2 layers, 2 KV heads of
/// `head_dim` with `group` query heads each, 512 positions.
inline model_config tiny_model_config(int head_dim, int group, bool bias, bool tied) {
  model_config c;
  c.name = "tiny";
  c.vocab_size = 384;
  c.hidden_size = 256;
  c.intermediate_size = 512;
  c.num_layers = 2;
  c.num_kv_heads = 2;
  c.num_heads = 2 * group;
  c.head_dim = head_dim;
  c.max_position_embeddings = 512;
  c.attention_bias = bias;
  c.tie_word_embeddings = tied;
  return c;
}

inline float round_bf16(float x) { return __bfloat162float(__float2bfloat16(x)); }

inline std::vector<float> random_floats(std::size_t n, std::mt19937& rng, float lo = -1.0f,
                                        float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

inline std::vector<__nv_bfloat16> to_bf16(const std::vector<float>& v) {
  std::vector<__nv_bfloat16> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = __float2bfloat16(v[i]);
  return out;
}

template <class T>
device_buffer<T> upload(const std::vector<T>& v) {
  device_buffer<T> d;
  EXPECT_TRUE(d.allocate(std::max<std::size_t>(v.size(), 1)).is_ok());
  if (!v.empty()) {
    EXPECT_EQ(cudaMemcpy(d.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  return d;
}

template <class T>
std::vector<T> download(const device_buffer<T>& d, std::size_t n) {
  std::vector<T> v(n);
  EXPECT_EQ(cudaMemcpy(v.data(), d.get(), n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return v;
}

/// Relative L2 error ||a - b|| / ||b||.
inline double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace kvserve::cuda::test
