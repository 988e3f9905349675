#pragma once
/// The worker's logic without actors: owns the backend, fills in tokens the scheduler could
/// not know when it built the plan (sequence_step::input_from_last_sample), runs the step,
/// turns exceptions into errors and times the step. Not thread-safe: one worker calls it.

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "model/backend.hpp"
#include "model/status.hpp"
#include "model/step_plan.hpp"

namespace kvserve {

/// The outcome of one step: the result, or the error that failed every sequence of the step.
struct worker_outcome {
  std::uint64_t step_index = 0;
  status error;  ///< ok when `result` is valid
  step_result result;
  double duration_seconds = 0;
  std::uint64_t cuda_graph_replays = 0;  ///< the backend's counter after the step
  /// The executed plan, handed back so the scheduler can reuse its memory
  /// (scheduler_policy::recycle). Local only: not serialised (empty across a network).
  step_plan plan;
};

class step_executor {
 public:
  explicit step_executor(std::unique_ptr<backend> model_backend);

  /// Runs `plan`. Never throws: a backend exception becomes a kInternal error.
  worker_outcome execute(step_plan plan);

  backend& model_backend() { return *backend_; }
  const backend& model_backend() const { return *backend_; }

 private:
  std::unique_ptr<backend> backend_;
  /// Tokens sampled by the last step, sorted by id (a flat vector: no allocation per step).
  std::vector<std::pair<seq_id, std::int32_t>> last_sampled_;
};

}  // namespace kvserve
