#pragma once
/// The KV memory budget of a paged pool, spelled out (issue 10, item 2): what one token costs
/// and from which factors (so GQA's saving and the dtype's are visible), how many blocks and
/// tokens fit, and how many sequences of a given context length can be resident at once.
/// Plain data and pure functions: the start log (app/), the Prometheus gauges (monitoring/,
/// through observer::on_kv_capacity) and the tests all read the same numbers.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/kv_cache_dtype.hpp"
#include "model/model_config.hpp"

namespace kvserve {

class backend;

/// How many sequences of `context_len` tokens the pool holds at once (no prefix sharing).
struct kv_sequences_at_context {
  int context_len = 0;
  std::int64_t max_sequences = 0;
  bool is_max_model_len = false;  ///< this entry is --max-model-len
};

/// One pool's budget. Bytes per token = 2 (K and V) x layers x KV heads x
/// (head_dim x element bytes + scale bytes); the 8-bit dtypes carry one fp32 scale per token,
/// KV head and K or V (model/kv_cache_dtype.hpp).
struct kv_capacity {
  kv_cache_dtype dtype = kv_cache_dtype::kAuto;  ///< kAuto: unknown (a backend that won't say)
  int num_layers = 0;
  int num_heads = 0;     ///< query heads: what each token would cost without GQA
  int num_kv_heads = 0;  ///< KV heads actually stored
  int head_dim = 0;
  std::size_t element_bytes = 0;  ///< per stored K or V value
  std::size_t scale_bytes = 0;    ///< per token, KV head and K or V (0 without scales)
  std::size_t bytes_per_token = 0;
  std::size_t bytes_per_token_without_gqa = 0;  ///< the same with num_heads KV heads (MHA)
  int block_size = 0;                           ///< tokens per block
  std::int64_t num_blocks = 0;
  std::int64_t num_tokens = 0;   ///< num_blocks x block_size
  std::uint64_t pool_bytes = 0;  ///< num_tokens x bytes_per_token
  int max_model_len = 0;
  /// Ascending context lengths: the standard ones (kStandardContexts) up to max_model_len,
  /// and max_model_len itself.
  std::vector<kv_sequences_at_context> sequences;
};

/// Context lengths reported besides --max-model-len (those not above it): 2k, 8k, 32k, 128k.
inline constexpr int kStandardContexts[] = {2048, 8192, 32768, 131072};

/// Blocks one sequence of `context_len` tokens needs: ceil(context_len / block_size).
std::int64_t kv_blocks_per_sequence(int context_len, int block_size);

/// The largest number of sequences of `context_len` tokens that are resident at once in a
/// pool of `num_blocks` blocks, each owning its blocks (no prefix sharing). 0 when invalid.
std::int64_t kv_max_sequences(std::int64_t num_blocks, int block_size, int context_len);

/// The budget of a pool of `num_blocks` blocks of `block_size` tokens holding `model`'s KV in
/// `dtype` (kAuto gives zero byte counts: resolve it first).
kv_capacity compute_kv_capacity(const model_config& model, kv_cache_dtype dtype, int block_size,
                                std::int64_t num_blocks, int max_model_len);

/// The budget of a running backend's pool. Its own kv_bytes_per_token() is taken as the truth
/// when it differs from the formula (e.g. a backend with padding) or when it reports kAuto.
kv_capacity describe_kv_capacity(const backend& model_backend, int max_model_len);

/// Human-readable lines for the start log (no trailing newline), e.g.
///   KV cache bf16: 23040 bytes per token = 30 layers x 3 KV heads x 64 head dim x 2 (K,V) x
///   2 bytes (vs 69120 without GQA: 9 heads, 3.0x) ...
std::string format_kv_capacity(const kv_capacity& capacity);

}  // namespace kvserve
