#pragma once
/// Host-side launchers of the CUDA backend's own kernels, over raw device pointers. Internal to
/// cuda/ and its tests: app/ never includes this header (it pulls in CUDA's headers).
///
/// Layouts used throughout:
///   residual stream  float [num_tokens, hidden]
///   GEMM inputs      bf16  [num_tokens, in_features]   (row-major)
///   GEMM outputs     float [num_tokens, out_features]
///   paged KV cache   codes [num_blocks, num_kv_heads, block_size, head_dim] per layer, K and V
///                    in separate pools; slot = block * block_size + offset. Codes are bf16, or
///                    one byte (FP8 E4M3 / INT8) with fp32 scales [num_blocks, num_kv_heads,
///                    block_size] beside them (model/kv_quantize.hpp's formulas).
/// Launchers only enqueue work on `stream`; they return cudaGetLastError() of the launch.

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace kvserve::cuda {

using bf16 = __nv_bfloat16;

/// Element type of the paged KV pools on the device (model/kv_cache_dtype.hpp's kBf16,
/// kFp8E4m3, kInt8; kernels take this small enum so they need no model/ headers).
enum class kv_storage : int { kBf16 = 0, kFp8E4m3 = 1, kInt8 = 2 };

/// One layer's paged KV pools.
struct paged_kv_view {
  void* k = nullptr;  // [num_blocks, num_kv_heads, block_size, head_dim] bf16 or 1-byte codes
  void* v = nullptr;  // [num_blocks, num_kv_heads, block_size, head_dim] bf16 or 1-byte codes
  int num_kv_heads = 0;
  int block_size = 0;  // a power of two, 2..64
  int head_dim = 0;    // 64 or 128
  kv_storage dtype = kv_storage::kBf16;
  float* k_scale = nullptr;  // [num_blocks, num_kv_heads, block_size]; 8-bit types only
  float* v_scale = nullptr;  // [num_blocks, num_kv_heads, block_size]; 8-bit types only
};

/// Quantizes `num_heads` head vectors as the KV-append kernel does (one warp per head, the
/// formulas of model/kv_quantize.hpp): codes[h, :] and scales[h]. For tests of the encoding.
cudaError_t launch_quantize_heads(const float* x,  // [num_heads, head_dim]
                                  int num_heads, int head_dim, kv_storage dtype,
                                  std::uint8_t* codes,  // [num_heads, head_dim]
                                  float* scales,        // [num_heads]
                                  cudaStream_t stream);

// ---- element-wise and normalisation -------------------------------------------------------

/// out[t, :] = float(table[tokens[t], :]).
cudaError_t launch_embedding_gather(const bf16* table,           // [vocab, hidden]
                                    const std::int32_t* tokens,  // [num_tokens]
                                    int num_tokens, int hidden,
                                    float* out,  // [num_tokens, hidden]
                                    cudaStream_t stream);

/// For each output row i with r = rows ? rows[i] : i:
///   x = residual[r] + (delta ? delta[r] : 0);  if write_residual: residual[r] = x;
///   out[i] = bf16(x * rsqrt(mean(x^2) + eps) * weight).
cudaError_t launch_add_rms_norm(float* residual,           // [*, hidden]
                                const float* delta,        // [*, hidden] or null
                                const float* weight,       // [hidden]
                                const std::int32_t* rows,  // [num_rows] or null
                                int num_rows, int hidden, float eps, bool write_residual,
                                bf16* out,  // [num_rows, hidden]
                                cudaStream_t stream);

/// out[t, i] = bf16(silu(gate_up[t, i]) * gate_up[t, inter + i]).
cudaError_t launch_swiglu(const float* gate_up,  // [num_tokens, 2 * inter]
                          int num_tokens, int inter,
                          bf16* out,  // [num_tokens, inter]
                          cudaStream_t stream);

/// Converts fp32 to bf16 (round to nearest even).
cudaError_t launch_f32_to_bf16(const float* in, std::int64_t n, bf16* out, cudaStream_t stream);

/// Fills `out` with uniform values in [-scale, scale) from a counter hash of (seed, index):
/// dummy weights made directly on the device.
cudaError_t launch_fill_uniform_bf16(bf16* out, std::int64_t n, std::uint64_t seed, float scale,
                                     cudaStream_t stream);
cudaError_t launch_fill_f32(float* out, std::int64_t n, float value, cudaStream_t stream);

// ---- RoPE + KV append ---------------------------------------------------------------------

struct rope_kv_args {
  const float* qkv = nullptr;   // [num_tokens, (num_heads + 2 * num_kv_heads) * head_dim]
  const float* bias = nullptr;  // [(num_heads + 2 * num_kv_heads) * head_dim] or null
  const std::int32_t* positions = nullptr;     // [num_tokens]
  const std::int32_t* slot_mapping = nullptr;  // [num_tokens]; < 0: write nowhere (padding)
  const float* inv_freq = nullptr;             // [head_dim / 2], scaling already applied
  int num_tokens = 0;
  int num_heads = 0;
  float* q_out = nullptr;  // [num_tokens, num_heads, head_dim], rotated
  paged_kv_view kv;        // rotated K and plain V are written at slot_mapping[t]
};

/// Adds the bias, rotates Q and K (rotate_half) and appends K and V to their paged slots; 8-bit
/// pools get each token's head quantized with its own scale.
cudaError_t launch_rope_kv_append(const rope_kv_args& args, cudaStream_t stream);

// ---- paged attention ----------------------------------------------------------------------

/// Decode: one query token per sequence, attending over context_lens[s] cached tokens (its own
/// K/V already appended). The context is split into up to `num_splits` parts computed in
/// parallel and merged by a second kernel. Both kernels are launched with programmatic
/// dependent launch (cuda/pdl.cuh).
struct decode_attention_args {
  const float* q = nullptr;  // [num_seqs, num_heads, head_dim]
  paged_kv_view kv;
  const std::int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq]
  const std::int32_t* context_lens = nullptr;  // [num_seqs]; 0: padding row (output zeros)
  int num_seqs = 0;
  int num_heads = 0;
  int max_blocks_per_seq = 0;
  int num_splits = 1;  // 1..kMaxDecodeSplits
  float scale = 1.0f;
  float* partial_out = nullptr;  // [num_seqs, num_heads, num_splits, head_dim] workspace
  float* partial_ml = nullptr;   // [num_seqs, num_heads, num_splits, 2] workspace (max, sum)
  bf16* out = nullptr;           // [num_seqs, num_heads * head_dim]
  /// 8-bit pools: tokens each sub-warp loads before using any (2, 4 or 8; 0: the default) and
  /// dimensions per lane (8: one 8-byte load per token, or 16: one 16-byte load, for groups of
  /// up to 4 query heads per KV head; 0: the default). Valid pairs: (4 or 8, 8), (2 or 4, 16).
  /// bf16 always uses kTokensPerIter and 8. Benchmark knobs.
  int tokens_per_iter = 0;
  int dims_per_lane = 0;
  /// Shortest piece of a context in tokens (0: the default, 64): a short context is cut into
  /// fewer pieces than num_splits, and blocks past the last piece exit at once.
  int min_split_tokens = 0;
  /// bf16 pools: depth of the shared-memory ring the K/V chunks are copied into ahead of use
  /// (2..4; 0: 3, 1: no ring, loads right before use). The backend passes
  /// decode_attention_stages(); other values are benchmark knobs.
  int kv_stages = 0;
};
inline constexpr int kMaxDecodeSplits = 64;

/// Blocks the decode kernel launches per sequence and split (KV heads times head chunks):
/// callers size num_splits so that the whole grid fills the device.
int decode_attention_blocks_per_seq(int num_heads, int num_kv_heads);

/// The split count for `num_seqs` decode rows, chosen against wave quantisation: the kernel's
/// resident blocks per SM (measured occupancy) times `num_sms` make one wave. Also prepares the
/// kernel it sizes (shared memory limit), so call it before capturing a graph that launches it.
/// `kv_stages` as in decode_attention_args (benchmarks).
int decode_attention_splits(int num_seqs, int num_heads, int num_kv_heads, int head_dim,
                            int num_sms, kv_storage dtype = kv_storage::kBf16, int kv_stages = 0);

/// The bf16 ring depth (decode_attention_args::kv_stages) for `num_seqs` decode rows: 2 where
/// the 2-deep kernel's grid (fewer resident blocks per SM than the 3-deep one) is one wave at
/// least 90% full, else 3; 0 for 8-bit pools (no ring). Measured on the H100 with interleaved
/// pieces: the 2-deep ring is faster there (batch 8 x 4k: 83-85% of the copy bandwidth back to
/// back against 81-82%) and the 3-deep one where a 2-deep grid would take several waves
/// (batch 64-128 x 1k; docs/BENCHMARKS.md). Pass it to decode_attention_splits too.
int decode_attention_stages(int num_seqs, int num_heads, int num_kv_heads, int head_dim,
                            int num_sms, kv_storage dtype = kv_storage::kBf16);

/// The ring depth and split count to pass together in decode_attention_args for `num_seqs`
/// rows: decode_attention_stages, then decode_attention_splits at that depth.
struct decode_attention_plan {
  int kv_stages = 0;
  int num_splits = 1;
};
decode_attention_plan plan_decode_attention(int num_seqs, int num_heads, int num_kv_heads,
                                            int head_dim, int num_sms,
                                            kv_storage dtype = kv_storage::kBf16);

cudaError_t launch_decode_attention(const decode_attention_args& args, cudaStream_t stream);

/// A prefill work item: a run of query tokens of one sequence times a range of the query heads
/// that share one KV head (token_count * head_count <= kPrefillRowsPerItem); row r of an item
/// is token token_begin + r / head_count, head head_begin + r % head_count of the group. One
/// thread block (4 warps of 16 rows, tensor cores) computes one item for one KV head.
struct prefill_work_item {
  std::int32_t seq = 0;          // row of block_tables
  std::int32_t token_begin = 0;  // first query token (row of q / out)
  std::int32_t token_count = 0;
  std::int32_t head_begin = 0;  // first query head within the KV head's group
  std::int32_t head_count = 0;
};
inline constexpr int kPrefillRowsPerItem = 64;

/// Prefill (and mixed steps): each query token at positions[t] attends causally over the cached
/// positions [0, positions[t]] of its sequence: prefix blocks plus the chunk just appended.
struct prefill_attention_args {
  const float* q = nullptr;  // [num_tokens, num_heads, head_dim]
  paged_kv_view kv;
  const std::int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq]
  const std::int32_t* positions = nullptr;     // [num_tokens]
  const prefill_work_item* items = nullptr;    // [num_items]
  int num_items = 0;
  int num_heads = 0;
  int max_blocks_per_seq = 0;
  float scale = 1.0f;
  bf16* out = nullptr;  // [num_tokens, num_heads * head_dim]
  /// Key splits (1..kMaxPrefillSplits): each item's keys are cut into this many runs of tiles
  /// computed by separate blocks, then merged by a second kernel through the workspace below
  /// (needed only when num_splits > 1). For short chunks over long contexts, whose few items
  /// would otherwise leave most SMs idle (prefill_attention_splits).
  int num_splits = 1;
  int num_tokens = 0;            // rows of q / out (needed with num_splits > 1)
  float* partial_out = nullptr;  // [num_tokens * num_heads, num_splits, head_dim] workspace
  float* partial_ml = nullptr;   // [num_tokens * num_heads, num_splits, 2] workspace (max, sum)
};
inline constexpr int kMaxPrefillSplits = 8;
/// Steps of at most this many tokens may split their prefill attention (the workspace's rows).
inline constexpr int kSplitPrefillMaxTokens = 128;

/// Key splits for a prefill attention launch of `num_items` items per KV head whose longest
/// row attends over `max_context` keys: enough blocks to fill `num_sms`, each split at least
/// two 64-key tiles; 1 for steps of more than kSplitPrefillMaxTokens tokens.
int prefill_attention_splits(int num_tokens, int num_items, int num_kv_heads, int max_context,
                             int num_sms);

cudaError_t launch_prefill_attention(const prefill_attention_args& args, cudaStream_t stream);

// ---- small-batch GEMM ---------------------------------------------------------------------

/// y[m, n] = sum_k x[m, k] * w[n, k] for small m (1..kGemvMaxRows), streaming w once.
inline constexpr int kGemvMaxRows = 8;
cudaError_t launch_gemv(const bf16* x,  // [m, k]
                        const bf16* w,  // [n, k]
                        int m, int n, int k,
                        float* y,  // [m, n]
                        cudaStream_t stream);

/// Benchmarks only: the batch-1 GEMV's shape (0: the default, 4 or 8 columns per block by wave
/// fill, 2 stride iterations in flight; 1: 4 columns, 4 in flight; 2: 8 columns, 2 in flight;
/// 3: 2 columns, 4 in flight; 4: 4 columns, 2 in flight). Not thread-safe; applies to later
/// launches.
void set_gemv_variant(int variant);

}  // namespace kvserve::cuda
