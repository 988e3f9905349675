#pragma once
/// The CPU reference backend: fp32 Llama-family forward pass over a paged KV pool, on a small
/// thread pool. It is the oracle for the GPU backend and is batch-invariant: a sequence's
/// logits are bit-identical whatever else shares its batch, however its prompt was chunked,
/// whatever the block size and wherever its blocks lie in the pool. The pool stores K and V as
/// fp32 (the default), bf16, FP8 E4M3 or INT8 (model/kv_quantize.hpp); attention dequantizes
/// them on read, so every dtype keeps these guarantees.

#include <cstddef>
#include <memory>
#include <vector>

#include "cache/kv_cache_config.hpp"  // is_supported_block_size
#include "model/backend.hpp"
#include "model/kv_cache_dtype.hpp"
#include "model/model_config.hpp"
#include "model/model_weights.hpp"
#include "model/rope.hpp"
#include "model/sampler.hpp"
#include "model/status.hpp"
#include "model/thread_pool.hpp"

namespace kvserve {

/// How the CPU backend sizes its KV pool and its threads.
struct cpu_backend_config {
  int block_size = 16;    ///< tokens per KV block: 2, 4, 8, 16, 32 or 64
  int num_kv_blocks = 0;  ///< blocks in the pool (> 0); see cpu_kv_blocks_for_memory
  int num_threads = 0;    ///< <= 0: std::thread::hardware_concurrency()
  /// --kv-cache-dtype; kAuto is fp32, the reference's own.
  kv_cache_dtype kv_dtype = kv_cache_dtype::kAuto;
};

/// Bytes of K and V for one token over all layers of `config` stored as `dtype` (kAuto is
/// fp32), the 8-bit types' scales included: what the CPU backend allocates per token.
std::size_t cpu_kv_bytes_per_token(const model_config& config,
                                   kv_cache_dtype dtype = kv_cache_dtype::kFp32);

/// The number of blocks of `block_size` tokens whose KV in `dtype` fits in `kv_cache_memory`
/// bytes (`--kv-cache-memory`); 0 if not even one fits or the config is empty.
int cpu_kv_blocks_for_memory(const model_config& config, int block_size,
                             std::size_t kv_cache_memory,
                             kv_cache_dtype dtype = kv_cache_dtype::kFp32);

class cpu_backend final : public backend {
 public:
  /// Checks the block size, the pool size and every weight's shape against `model`, then takes
  /// the weights (they are repacked: Q/K/V and gate/up rows concatenated) and allocates the KV
  /// pool. kInvalidArgument for a bad config, kCorruptData for weights of the wrong shape,
  /// kOutOfMemory when the pool cannot be allocated.
  static result<std::unique_ptr<cpu_backend>> create(const cpu_backend_config& config,
                                                     model_config model, model_weights weights);

  std::string name() const override { return "cpu"; }
  const model_config& config() const override { return model_; }
  int block_size() const override { return block_size_; }
  int num_kv_blocks() const override { return num_kv_blocks_; }
  std::size_t kv_bytes_per_token() const override {
    return cpu_kv_bytes_per_token(model_, kv_dtype_);
  }
  /// The resolved storage type: kFp32 for kAuto.
  kv_cache_dtype kv_dtype() const override { return kv_dtype_; }
  int num_threads() const { return pool_.size(); }

  /// Computes every sequence's tokens (KV written to its slots, attention over positions
  /// [0, pos] through its block table), then samples / returns logits and logprobs as asked.
  /// Invalid plans (empty or out-of-vocabulary tokens, block ids outside the pool, a block
  /// table too short, positions at or past max_position_embeddings, bad sampling parameters,
  /// input_from_last_sample still set) give kInvalidArgument and leave the KV untouched.
  result<step_result> execute(const step_plan& plan) override;

  backend_stats stats() const override { return stats_; }

 private:
  struct layer {
    std::vector<float> attn_norm;  // [hidden]
    std::vector<float> wqkv;       // [q_size + 2 * kv_size, hidden]: Q, K, V rows
    std::vector<float> bqkv;       // [q_size + 2 * kv_size] or empty
    std::vector<float> wo;         // [hidden, q_size]
    std::vector<float> ffn_norm;   // [hidden]
    std::vector<float> w_gate_up;  // [2 * intermediate, hidden]: gate rows, then up rows
    std::vector<float> w_down;     // [hidden, intermediate]
  };
  // One token of the flattened batch.
  struct token_ref {
    int seq = 0;       // index into plan.seqs
    int position = 0;  // absolute position in its sequence
  };

  cpu_backend(const cpu_backend_config& config, model_config model);
  status validate(const step_plan& plan) const;
  void forward(const step_plan& plan);
  void attention(const step_plan& plan, int layer_index);
  // K or V of every layer and block: codes [layer][block][kv_head][block_size][head_dim] in
  // the pool's dtype (fp32 values, bf16 bit patterns, or 8-bit codes) and, for the 8-bit
  // types, one fp32 scale per token and KV head: [layer][block][kv_head][block_size].
  struct kv_pool {
    std::unique_ptr<float[]> data;  // raw storage; floats only for kFp32
    std::unique_ptr<float[]> scales;
  };
  // Index of (layer, block, kv_head) in the pool: its rows start at index x block_size_.
  std::size_t head_index(int layer, int block, int kv_head) const {
    return (static_cast<std::size_t>(layer) * num_kv_blocks_ + block) * model_.num_kv_heads +
           kv_head;
  }
  // Stores one token's head vector `x` into `slot` of (layer, block, kv_head).
  void store_row(kv_pool& pool, std::size_t head, int slot, const float* x);
  // The first `rows` rows of a (layer, block, kv_head) as fp32: a pointer into the pool for
  // kFp32, else the rows dequantized into `scratch` ([block_size, head_dim]).
  const float* load_rows(const kv_pool& pool, std::size_t head, int rows, float* scratch) const;

  model_config model_;
  int block_size_ = 0;
  int num_kv_blocks_ = 0;
  kv_cache_dtype kv_dtype_ = kv_cache_dtype::kFp32;  // resolved
  std::size_t row_bytes_ = 0;                        // one token's head: head_dim elements
  thread_pool pool_;
  rotary_embedding rope_;

  std::vector<float> token_embedding_;  // [vocab, hidden]
  std::vector<float> lm_head_;          // [vocab, hidden]; empty when tied
  std::vector<float> final_norm_;
  std::vector<layer> layers_;

  kv_pool k_cache_;
  kv_pool v_cache_;

  // Per-step scratch, grown as needed.
  std::vector<token_ref> tokens_;
  std::vector<int> seq_first_token_;        // flat index of each sequence's first token
  std::vector<float> rope_cos_, rope_sin_;  // [tokens, head_dim / 2]
  std::vector<float> x_, xn_, qkv_, attn_out_, gate_up_, act_;
  std::vector<std::vector<float>> scores_;      // per thread, [max context]
  std::vector<std::vector<float>> kv_scratch_;  // per thread, [block_size, head_dim]; not fp32
  std::vector<sampler> samplers_;               // per thread

  backend_stats stats_;
};

}  // namespace kvserve
