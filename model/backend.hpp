#pragma once
/// The batch-level backend interface (DESIGN.md "Model and backends"): execute a step plan over
/// paged KV and return one sampled token per sampling sequence. The CPU backend is the
/// reference; the CUDA backend implements the same contract.

#include <cstddef>
#include <cstdint>
#include <string>

#include "model/kv_cache_dtype.hpp"
#include "model/model_config.hpp"
#include "model/status.hpp"
#include "model/step_plan.hpp"

namespace kvserve {

/// Counters a backend reports for metrics.
struct backend_stats {
  std::uint64_t cuda_graph_replays = 0;
  std::uint64_t steps_executed = 0;
};

/// Owns the weights and the KV memory (a pool of `num_kv_blocks()` blocks of `block_size()`
/// tokens); it only ever sees block ids. Not thread-safe: one worker calls it at a time.
class backend {
 public:
  virtual ~backend() = default;

  virtual std::string name() const = 0;  ///< "cpu", "cuda"
  virtual const model_config& config() const = 0;
  virtual int block_size() const = 0;
  virtual int num_kv_blocks() const = 0;
  /// Bytes of K and V for one token over all layers.
  virtual std::size_t kv_bytes_per_token() const = 0;
  /// The KV storage type in use (never kAuto for a real backend; test fakes may leave it).
  virtual kv_cache_dtype kv_dtype() const { return kv_cache_dtype::kAuto; }

  /// Runs one step. Errors (bad block ids, positions past the model's context, device
  /// failures) come back as a status; the KV of the sequences in a failed step is undefined.
  virtual result<step_result> execute(const step_plan& plan) = 0;

  virtual backend_stats stats() const { return {}; }
};

}  // namespace kvserve
