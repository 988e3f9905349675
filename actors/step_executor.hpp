#pragma once
/// The worker's logic without actors: owns the backend, hands it steps (backend::submit) and
/// takes their results (backend::collect), turns exceptions into errors and times each step.
/// With a backend that queues steps on a device, submitting step N + 1 before collecting step N
/// keeps the device busy between the two. Not thread-safe: one worker calls it.

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>

#include "model/backend.hpp"
#include "model/status.hpp"
#include "model/step_plan.hpp"

namespace kvserve {

/// The outcome of one step: the result, or the error that failed every sequence of the step.
struct worker_outcome {
  std::uint64_t step_index = 0;
  status error;  ///< ok when `result` is valid
  step_result result;
  /// The step's time on the backend: from its submit, or from the previous step's collect if
  /// that came later (the step queued behind it), to the end of its collect.
  double duration_seconds = 0;
  std::uint64_t cuda_graph_replays = 0;  ///< the backend's counter after the step
  /// The executed plan, handed back so the scheduler can reuse its memory
  /// (scheduler_policy::recycle). Local only: not serialised (empty across a network).
  step_plan plan;
};

class step_executor {
 public:
  explicit step_executor(std::unique_ptr<backend> model_backend);

  /// Runs `plan`: submit() then collect(). Never throws.
  worker_outcome execute(step_plan plan);

  /// Hands `plan` to the backend; its outcome comes from a later collect(), in submission
  /// order. At most two steps may be in flight (a third gets an error outcome). A sequence
  /// with `input_from_last_sample` takes the token the previous submitted step sampled for
  /// it. Never throws: a failed submit becomes that step's error outcome.
  void submit(step_plan plan);

  /// The oldest submitted step's outcome, waiting for it; an error outcome when nothing is in
  /// flight. Never throws.
  worker_outcome collect();

  /// Steps submitted and not yet collected.
  int num_in_flight() const { return static_cast<int>(in_flight_.size()); }

  backend& model_backend() { return *backend_; }
  const backend& model_backend() const { return *backend_; }

 private:
  using clock = std::chrono::steady_clock;
  struct submitted_step {
    step_plan plan;
    status error;  ///< the submit failed: the backend holds nothing for this step
    clock::time_point submitted_at;
  };
  std::unique_ptr<backend> backend_;
  std::deque<submitted_step> in_flight_;
  clock::time_point last_collect_end_{};
};

}  // namespace kvserve
