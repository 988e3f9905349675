#include "actors/step_executor.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <limits>
#include <string>
#include <utility>

namespace kvserve {

step_executor::step_executor(std::unique_ptr<backend> model_backend)
    : backend_(std::move(model_backend)) {}

worker_outcome step_executor::execute(step_plan plan) {
  worker_outcome out;
  out.step_index = plan.step_index;
  for (sequence_step& s : plan.seqs) {
    if (!s.input_from_last_sample) continue;
    auto it = std::lower_bound(last_sampled_.begin(), last_sampled_.end(),
                               std::make_pair(s.id, std::numeric_limits<std::int32_t>::min()));
    if (it == last_sampled_.end() || it->first != s.id || s.tokens.empty()) {
      out.error = {status_code::kInternal,
                   "sequence " + std::to_string(s.id) + " has no token from the previous step"};
      last_sampled_.clear();
      return out;
    }
    s.tokens[0] = it->second;
    s.input_from_last_sample = false;
  }
  const auto start = std::chrono::steady_clock::now();
  try {
    result<step_result> r = backend_->execute(plan);
    if (r) {
      out.result = std::move(r.value());
    } else {
      out.error = r.error();
    }
  } catch (const std::exception& e) {
    out.error = {status_code::kInternal, std::string("backend exception: ") + e.what()};
  } catch (...) {
    out.error = {status_code::kInternal, "backend exception"};
  }
  out.duration_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  last_sampled_.clear();
  out.cuda_graph_replays = backend_->stats().cuda_graph_replays;
  if (out.error.is_ok()) {
    out.result.step_index = plan.step_index;
    for (const sequence_result& r : out.result.seqs) {
      if (r.sampled_token) last_sampled_.emplace_back(r.id, *r.sampled_token);
    }
    if (!std::is_sorted(last_sampled_.begin(), last_sampled_.end())) {
      std::sort(last_sampled_.begin(), last_sampled_.end());
    }
  }
  out.plan = std::move(plan);
  return out;
}

}  // namespace kvserve
