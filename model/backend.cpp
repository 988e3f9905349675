#include "model/backend.hpp"

#include <algorithm>
#include <limits>
#include <utility>

namespace kvserve {

status backend::submit(const step_plan& plan) {
  if (submitted_.size() >= 2)
    return {status_code::kInvalidArgument, "two steps are in flight: collect one first"};
  // Taken, so that a failure below (an error or an exception) leaves no previous step.
  const std::vector<std::pair<seq_id, std::int32_t>> prev = std::move(last_sampled_);
  last_sampled_.clear();
  const step_plan* run = &plan;
  step_plan filled;
  const bool needs_fill =
      std::any_of(plan.seqs.begin(), plan.seqs.end(),
                  [](const sequence_step& s) { return s.input_from_last_sample; });
  if (needs_fill) {
    filled = plan;
    run = &filled;
  }
  for (auto& s : filled.seqs) {
    if (!s.input_from_last_sample) continue;
    const auto it = std::lower_bound(
        prev.begin(), prev.end(), std::make_pair(s.id, std::numeric_limits<std::int32_t>::min()));
    if (it == prev.end() || it->first != s.id || s.tokens.empty())
      return {status_code::kInvalidArgument,
              "sequence " + std::to_string(s.id) +
                  ": input_from_last_sample, but the previous step sampled no token for it"};
    s.tokens[0] = it->second;
    if (s.sampling.uses_penalties()) s.penalty_output_tokens.push_back(it->second);
    s.input_from_last_sample = false;
  }
  result<step_result> r = execute(*run);
  if (r) {
    for (const auto& q : r->seqs)
      if (q.sampled_token) last_sampled_.emplace_back(q.id, *q.sampled_token);
    std::sort(last_sampled_.begin(), last_sampled_.end());
  }
  submitted_.push_back(std::move(r));
  return status::ok();
}

result<step_result> backend::collect() {
  if (submitted_.empty())
    return status{status_code::kInvalidArgument, "collect: no step is in flight"};
  result<step_result> r = std::move(submitted_.front());
  submitted_.pop_front();
  return r;
}

}  // namespace kvserve
