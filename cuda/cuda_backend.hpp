#pragma once
/// The CUDA backend's public face: a factory behind the backend interface. Free of CUDA types
/// and headers, so app/ can include it; only built when nvcc is found (KVSERVE_HAVE_CUDA).

#include <cstdint>
#include <memory>
#include <vector>

#include "model/backend.hpp"
#include "model/kv_cache_dtype.hpp"
#include "model/model_config.hpp"
#include "model/model_weights.hpp"
#include "model/status.hpp"

namespace kvserve {

/// How the CUDA backend sizes its memory and runs its steps (DESIGN.md's flags).
struct cuda_backend_config {
  int block_size = 16;                   ///< --block-size: 2, 4, 8, 16, 32 or 64
  double gpu_memory_utilization = 0.90;  ///< --gpu-memory-utilization: weights + workspace + KV
  int max_num_seqs = 256;                ///< --max-num-seqs: sequences per step
  int max_model_len = 0;                 ///< --max-model-len; 0: the model's context
  int max_num_batched_tokens = 2048;     ///< tokens per step (prefill chunk budget)
  bool enforce_eager = false;            ///< --enforce-eager: no CUDA graphs
  int device = 0;                        ///< CUDA device ordinal
  /// --kv-cache-dtype: kAuto and kBf16 store bf16; kFp8E4m3 and kInt8 store one byte per
  /// element plus an fp32 scale per token and KV head (about half the bytes, so about twice the
  /// tokens at the same memory); kFp32 is CPU-only (kUnsupported).
  kv_cache_dtype kv_dtype = kv_cache_dtype::kAuto;
  /// > 0: exactly this many KV blocks instead of sizing from gpu_memory_utilization (tests).
  int num_kv_blocks = 0;
  /// Measure GEMV against cuBLASLt per decode shape at start (a few ms).
  bool tune_gemm = true;
  /// Logs the chosen sizes to stderr.
  bool log = true;
  /// Records CUDA events just before each step's first kernel (after its inputs arrived) and
  /// after its last (sampling), so that the GPU's idle time between consecutive steps can be
  /// read (cuda_step_gaps_us). Benchmarks and tests.
  bool record_step_gaps = false;
  /// Steps of at most this many tokens in all (short prompts, a prompt chunk beside decodes)
  /// run like decode steps: one row per token through the split-KV decode attention and the
  /// decode graph of the row bucket (rows up to max(max_num_seqs, this), within
  /// max_num_batched_tokens). Sequences that need host logits rows other than their last
  /// (prompt logprobs, kAll over several tokens) keep the general path. 0: off.
  int small_step_max_tokens = 128;
  /// A small step gives each token its own row, which reads its whole context: such a step
  /// keeps the general path (prefill attention reads a context once per tile of query rows, in
  /// key splits for short steps) when one sequence brings more than small_step_max_seq_tokens
  /// tokens, or when its multi-token sequences' rows read more than
  /// small_step_max_context_reads context tokens in all (n rows from position p read
  /// n * p + n (n + 1) / 2). Measured on the H100 for Llama-3-8B shapes (docs/BENCHMARKS.md,
  /// "Short prefill and mixed steps"), general against decode-shaped: a chunk over 2,048
  /// cached tokens of 8 tokens 7.31 / 7.34 ms, 16 tokens 7.42 / 7.94, 32 tokens 7.53 / 9.23;
  /// 8 decodes beside an 8-token chunk 9.48 / 8.03, beside a 32-token chunk 9.63 / 10.06; a
  /// 128-token prompt 7.91 / 8.51.
  int small_step_max_seq_tokens = 64;
  int small_step_max_context_reads = 24576;
};

/// True when a CUDA device can be used (driver present and at least one device). Any error,
/// e.g. "driver version insufficient" on machines without a GPU, counts as no device.
bool cuda_device_available();

/// Name of device `ordinal` (e.g. "NVIDIA H100 80GB HBM3"), or an error.
result<std::string> cuda_device_name(int ordinal = 0);

/// Uploads `weights` (fp32, HF layout) to the device as bf16 and sizes the KV pool. Errors:
/// kInvalidArgument (bad config), kCorruptData (a weight of the wrong shape), kOutOfMemory
/// (naming --gpu-memory-utilization), kInternal (CUDA failures).
result<std::unique_ptr<backend>> make_cuda_backend(const cuda_backend_config& config,
                                                   model_config model,
                                                   const model_weights& weights);

/// The same with random bf16 weights drawn directly on the device (`--load-format dummy` at
/// real shapes: no host copy of the weights is ever made). Uniform values with std 0.02, RMSNorm
/// weights 1; deterministic for a (model, seed).
result<std::unique_ptr<backend>> make_cuda_backend_dummy(const cuda_backend_config& config,
                                                         model_config model,
                                                         std::uint64_t seed = 0);

/// Device memory the KV pool of a CUDA backend took (free memory before minus after allocating
/// it, so allocator rounding included); 0 for a backend not made by this file's factories.
std::size_t cuda_kv_pool_bytes(const backend& b);

/// With record_step_gaps: for each collected step after the first, the time in microseconds
/// from the end of the previous step's kernels to the start of this one's (CUDA events on the
/// backend's compute stream: the GPU's compute idles in between, input uploads included).
/// Empty otherwise.
std::vector<float> cuda_step_gaps_us(const backend& b);

/// With record_step_gaps: the same idle time from device timestamps (the GPU's global timer,
/// read by a one-thread kernel that is the first and the last kernel of every step, inside its
/// graph): for each of the last 4,096 steps after the first, the time in microseconds from the
/// previous step's last kernel to this step's first, graph launch included. Empty otherwise.
std::vector<float> cuda_step_gaps_device_us(const backend& b);

}  // namespace kvserve
