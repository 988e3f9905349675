#pragma once
// Helpers shared by the GPU benchmark programs (bench/cuda_*.cpp): fail-fast checks, CUDA-event
// timing, the Llama-3-8B shapes they run, its weight bytes, and the card's copy bandwidth.
// Only included by CUDA builds.

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cuda/cuda_backend.hpp"
#include "cuda/device_memory.hpp"
#include "model/model_config.hpp"

#define CHECK_CUDA(x)                                                                         \
  do {                                                                                        \
    cudaError_t e_ = (x);                                                                     \
    if (e_ != cudaSuccess) {                                                                  \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)
#define CHECK_OK(x)                                                                 \
  do {                                                                              \
    auto s_ = (x);                                                                  \
    if (!s_.is_ok()) {                                                              \
      std::fprintf(stderr, "%s:%d %s\n", __FILE__, __LINE__, s_.message().c_str()); \
      std::exit(1);                                                                 \
    }                                                                               \
  } while (0)

namespace kvserve::bench {

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/// Median time in ms of `fn(i)` enqueued on `stream`, by CUDA events, after 3 warm-up calls.
/// `held`: a host function holds the stream until the start event and `fn` are enqueued, so the
/// time is the GPU's alone from the start event on (no host launch latency, as when a captured
/// graph replays).
template <class F>
double time_ms(F&& fn, cudaStream_t stream, int reps = 30, bool held = false) {
  cuda::cuda_event a, b;
  CHECK_OK(a.create());
  CHECK_OK(b.create());
  for (int i = 0; i < 3; ++i) fn(i);
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    std::atomic<bool> go{!held};
    if (held)
      CHECK_CUDA(cudaLaunchHostFunc(
          stream,
          [](void* p) {
            while (!static_cast<std::atomic<bool>*>(p)->load()) {
            }
          },
          &go));
    CHECK_CUDA(cudaEventRecord(a.get(), stream));
    fn(i);
    CHECK_CUDA(cudaEventRecord(b.get(), stream));
    go.store(true);
    CHECK_CUDA(cudaEventSynchronize(b.get()));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a.get(), b.get()));
    t.push_back(ms);
  }
  return median(t);
}

/// Llama-3-8B's shapes (hidden 4096, 32 layers, 32 q / 8 kv heads, head dim 128, FFN 14336,
/// vocab 128256, Llama 3.1 RoPE scaling).
inline model_config llama3_8b() {
  model_config c;
  c.name = "llama-3-8b-dummy";
  c.vocab_size = 128256;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_layers = 32;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  c.max_position_embeddings = 8192;
  c.rope_theta = 500000.0f;
  c.rope_scaling.type = rope_scaling_config::kind::kLlama3;
  c.rope_scaling.factor = 8.0f;
  return c;
}

/// The backend settings of the whole-step benchmarks at Llama-3-8B's shapes: block 16, up to
/// 256 sequences of 8,192 tokens, 2,048 tokens per step, 0.90 of the GPU's memory, no log.
inline cuda_backend_config llama3_8b_step_config() {
  cuda_backend_config cfg;
  cfg.block_size = 16;
  cfg.max_num_seqs = 256;
  cfg.max_model_len = 8192;
  cfg.max_num_batched_tokens = 2048;
  cfg.gpu_memory_utilization = 0.90;
  cfg.log = false;
  return cfg;
}

/// Bytes of a model's bf16 weights (untied embeddings and LM head).
inline double weight_bytes(const model_config& c) {
  const double h = c.hidden_size, i = c.intermediate_size, v = c.vocab_size;
  const double per_layer = h * (c.q_size() + 2.0 * c.kv_size()) + h * c.q_size() + 3.0 * h * i;
  return 2.0 * (c.num_layers * per_layer + 2.0 * v * h);
}

/// Device-to-device copy bandwidth in bytes/s, counting bytes read plus written (2 GiB copies);
/// prints a table row.
inline double measure_copy_bandwidth(cudaStream_t s) {
  const std::size_t bytes = std::size_t{1} << 31;
  cuda::device_buffer<unsigned char> a, b;
  CHECK_OK(a.allocate(bytes));
  CHECK_OK(b.allocate(bytes));
  CHECK_CUDA(cudaMemsetAsync(a.get(), 1, bytes, s));
  const double ms = time_ms(
      [&](int) {
        CHECK_CUDA(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, s));
      },
      s, 20);
  const double bandwidth = 2.0 * bytes / (ms * 1e-3);
  std::printf("| copy bandwidth (read + write) | %.3f ms for 2 GiB | %.2f TB/s |\n", ms,
              bandwidth / 1e12);
  return bandwidth;
}

}  // namespace kvserve::bench
