#pragma once
/// The batch-level backend interface (DESIGN.md "Model and backends"): execute a step plan over
/// paged KV and return one sampled token per sampling sequence. The CPU backend is the
/// reference; the CUDA backend implements the same contract.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <string>
#include <utility>
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
  /// yet hold that token (the backend appends it). The CUDA backend takes the token on the
  /// device, without waiting for the previous step (except with penalties).
  ///
  /// The defaults run execute() synchronously inside submit() and fill those tokens from the
  /// last result, so every backend supports the pair.
  virtual status submit(const step_plan& plan) {
    if (submitted_.size() >= 2)
      return {status_code::kInvalidArgument, "two steps are in flight: collect one first"};
    const step_plan* run = &plan;
    step_plan filled;
    for (const auto& s : plan.seqs) {
      if (s.input_from_last_sample) {
        filled = plan;
        run = &filled;
        break;
      }
    }
    for (auto& s : filled.seqs) {
      if (!s.input_from_last_sample) continue;
      const auto it =
          std::lower_bound(last_sampled_.begin(), last_sampled_.end(),
                           std::make_pair(s.id, std::numeric_limits<std::int32_t>::min()));
      if (it == last_sampled_.end() || it->first != s.id || s.tokens.empty())
        return {status_code::kInvalidArgument,
                "sequence " + std::to_string(s.id) +
                    ": input_from_last_sample, but the previous step sampled no token for it"};
      s.tokens[0] = it->second;
      if (s.sampling.uses_penalties()) s.penalty_output_tokens.push_back(it->second);
      s.input_from_last_sample = false;
    }
    result<step_result> r = execute(*run);
    last_sampled_.clear();
    if (r) {
      for (const auto& q : r->seqs)
        if (q.sampled_token) last_sampled_.emplace_back(q.id, *q.sampled_token);
      std::sort(last_sampled_.begin(), last_sampled_.end());
    }
    submitted_.push_back(std::move(r));
    return status::ok();
  }

  /// The oldest submitted step's result (see submit); kInvalidArgument when none is in flight.
  virtual result<step_result> collect() {
    if (submitted_.empty())
      return status{status_code::kInvalidArgument, "collect: no step is in flight"};
    result<step_result> r = std::move(submitted_.front());
    submitted_.pop_front();
    return r;
  }

  virtual backend_stats stats() const { return {}; }

 private:
  // The default submit/collect: finished steps, and the tokens the last one sampled by id.
  std::deque<result<step_result>> submitted_;
  std::vector<std::pair<seq_id, std::int32_t>> last_sampled_;
};

/// Defined where backend has submit/collect (benchmarks built against several trees test it).
#define KVSERVE_BACKEND_HAS_SUBMIT 1

}  // namespace kvserve
