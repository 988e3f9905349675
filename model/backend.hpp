#pragma once
/// The batch-level backend interface (DESIGN.md "Model and backends"): execute a step plan over
/// paged KV and return one sampled token per sampling sequence. The CPU backend is the
/// reference; the CUDA backend implements the same contract.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

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

  /// Asynchronous steps: submit(N + 1) may be called before collect(N), so that a backend can
  /// queue step N + 1 on the device while step N runs (at most two steps in flight: submit
  /// with two uncollected steps is kInvalidArgument). collect() returns the oldest submitted
  /// step's result, in submission order; an error of a step may come from its submit or its
  /// collect. execute() must not be called while steps are in flight.
  ///
  /// A sequence of a submitted plan may set `input_from_last_sample`: its tokens[0] is then the
  /// token sampled for the same sequence id by the previously submitted step (which must have
  /// sampled it), and where its sampling uses penalties, its penalty_output_tokens must not
  /// yet hold that token (the backend appends it). A submit that fails (an error status, or an
  /// exception out of it) leaves no previous step: such a sequence in the next plan is then
  /// kInvalidArgument, never a token of an older step. The CUDA backend takes the token on the
  /// device, without waiting for the previous step (except with penalties).
  ///
  /// The defaults run execute() synchronously inside submit() and fill those tokens from the
  /// last result, so every backend supports the pair.
  virtual status submit(const step_plan& plan);

  /// The oldest submitted step's result (see submit); kInvalidArgument when none is in flight.
  virtual result<step_result> collect();

  /// True when submit() returns before its step has run (the CUDA backend queues it on the
  /// device), so that a worker gains by submitting step N + 1 before collecting step N. False
  /// for the defaults, which run the step inside submit().
  virtual bool queues_steps() const { return false; }

  virtual backend_stats stats() const { return {}; }

 private:
  // The default submit/collect: finished steps, and the tokens the last one sampled by id.
  std::deque<result<step_result>> submitted_;
  std::vector<std::pair<seq_id, std::int32_t>> last_sampled_;
};

}  // namespace kvserve
