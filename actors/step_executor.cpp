#include "actors/step_executor.hpp"

#include <algorithm>
#include <exception>
#include <string>
#include <utility>

namespace kvserve {

namespace {

/// Runs `f` (returning a status or a result); an exception becomes a kInternal error.
template <class F>
auto guard(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    return status{status_code::kInternal, std::string("backend exception: ") + e.what()};
  } catch (...) {
    return status{status_code::kInternal, "backend exception"};
  }
}

}  // namespace

step_executor::step_executor(std::unique_ptr<backend> model_backend)
    : backend_(std::move(model_backend)) {}

worker_outcome step_executor::execute(step_plan plan) {
  submit(std::move(plan));
  return collect();
}

void step_executor::submit(step_plan plan) {
  submitted_step s;
  s.submitted_at = clock::now();
  // A failed submit leaves the backend no previous step, so a step planned behind it with
  // input_from_last_sample fails there too (model/backend.hpp).
  if (in_flight_.size() >= 2) {
    s.error = {status_code::kInternal, "the worker got a third step while two are in flight"};
  } else {
    s.error = guard([&] { return backend_->submit(plan); });
  }
  s.plan = std::move(plan);
  in_flight_.push_back(std::move(s));
}

worker_outcome step_executor::collect() {
  worker_outcome out;
  if (in_flight_.empty()) {
    out.error = {status_code::kInternal, "collect: no step is in flight"};
    return out;
  }
  submitted_step s = std::move(in_flight_.front());
  in_flight_.pop_front();
  out.step_index = s.plan.step_index;
  out.error = s.error;
  if (out.error.is_ok()) {
    result<step_result> r = guard([&]() -> result<step_result> { return backend_->collect(); });
    if (r) {
      out.result = std::move(r.value());
      out.result.step_index = s.plan.step_index;
    } else {
      out.error = r.error();
    }
  }
  const clock::time_point end = clock::now();
  out.duration_seconds =
      std::chrono::duration<double>(end - std::max(s.submitted_at, last_collect_end_)).count();
  last_collect_end_ = end;
  out.cuda_graph_replays = backend_->stats().cuda_graph_replays;
  out.plan = std::move(s.plan);
  return out;
}

}  // namespace kvserve
