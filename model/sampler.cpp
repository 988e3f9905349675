#include "model/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "model/counter_rng.hpp"

namespace kvserve {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Index of the largest value, the lowest index on ties; 0 when every value is -inf or NaN.
std::int32_t argmax(std::span<const float> v) {
  std::int32_t best = 0;
  float best_value = kNegInf;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] > best_value) {
      best_value = v[i];
      best = static_cast<std::int32_t>(i);
    }
  }
  return best;
}

bool in_vocab(std::int32_t token, std::size_t vocab) {
  return token >= 0 && static_cast<std::size_t>(token) < vocab;
}

}  // namespace

status validate_sampling_params(const sampling_params& p) {
  if (!std::isfinite(p.temperature) || p.temperature < 0.0f) {
    return {status_code::kInvalidArgument, "temperature must be a finite number >= 0"};
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return {status_code::kInvalidArgument, "top_p must be in (0, 1]"};
  }
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
    return {status_code::kInvalidArgument, "min_p must be in [0, 1]"};
  }
  if (!std::isfinite(p.repetition_penalty) || p.repetition_penalty <= 0.0f) {
    return {status_code::kInvalidArgument, "repetition_penalty must be > 0"};
  }
  if (!std::isfinite(p.presence_penalty) || !std::isfinite(p.frequency_penalty)) {
    return {status_code::kInvalidArgument, "presence and frequency penalties must be finite"};
  }
  return status::ok();
}

position_logprobs compute_logprobs(std::span<const float> logits, std::int32_t chosen, int top_k) {
  position_logprobs out;
  if (logits.empty()) return out;
  float max_value = kNegInf;
  for (float v : logits) max_value = std::max(max_value, v);
  double sum = 0.0;
  for (float v : logits) sum += std::exp(static_cast<double>(v) - max_value);
  const double log_norm = static_cast<double>(max_value) + std::log(sum);
  auto logprob = [&](std::int32_t t) {
    return static_cast<float>(static_cast<double>(logits[t]) - log_norm);
  };
  if (in_vocab(chosen, logits.size())) out.chosen = {chosen, logprob(chosen)};
  const int k = std::min<int>(std::max(top_k, 0), static_cast<int>(logits.size()));
  if (k > 0) {
    std::vector<std::int32_t> ids(logits.size());
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int32_t>(i);
    auto better = [&](std::int32_t a, std::int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    };
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), better);
    out.top.reserve(k);
    for (int i = 0; i < k; ++i) out.top.push_back({ids[i], logprob(ids[i])});
  }
  return out;
}

void apply_penalties(std::span<float> logits, const sampling_params& p,
                     const sampling_context& context) {
  const std::size_t vocab = logits.size();
  for (std::int32_t t : context.suppressed_tokens) {
    if (in_vocab(t, vocab)) logits[t] = kNegInf;
  }
  if (!p.uses_penalties()) return;
  // Penalise each distinct token once, whatever its count.
  std::vector<std::int32_t> output_counts;
  if (p.repetition_penalty != 1.0f) {
    std::vector<bool> seen(vocab, false);
    auto mark = [&](std::span<const std::int32_t> tokens) {
      for (std::int32_t t : tokens) {
        if (in_vocab(t, vocab)) seen[t] = true;
      }
    };
    mark(context.prompt_tokens);
    mark(context.output_tokens);
    for (std::size_t t = 0; t < vocab; ++t) {
      if (!seen[t]) continue;
      float& l = logits[t];
      l = l > 0.0f ? l / p.repetition_penalty : l * p.repetition_penalty;
    }
  }
  if (p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) {
    std::vector<std::int32_t> counts(vocab, 0);
    for (std::int32_t t : context.output_tokens) {
      if (in_vocab(t, vocab)) ++counts[t];
    }
    for (std::size_t t = 0; t < vocab; ++t) {
      if (counts[t] == 0) continue;
      logits[t] -= p.frequency_penalty * static_cast<float>(counts[t]);
      logits[t] -= p.presence_penalty;
    }
  }
}

sampled_token sampler::sample(std::span<const float> logits, const sampling_params& p,
                              const sampling_context& context) {
  sampled_token out;
  if (logits.empty()) return out;
  const std::size_t vocab = logits.size();
  work_.assign(logits.begin(), logits.end());
  apply_penalties(work_, p, context);

  if (p.is_greedy()) {
    out.token = argmax(work_);
  } else {
    for (float& l : work_) l /= p.temperature;
    float max_value = kNegInf;
    for (float l : work_) max_value = std::max(max_value, l);
    // Unnormalised probabilities exp(l - max): p_max is 1, so min-p compares with min_p.
    order_.clear();
    for (std::size_t i = 0; i < vocab; ++i) {
      float prob = std::exp(work_[i] - max_value);
      work_[i] = prob;
      if (prob > 0.0f && prob >= p.min_p) order_.push_back(static_cast<std::int32_t>(i));
    }
    auto more_likely = [&](std::int32_t a, std::int32_t b) {
      return work_[a] > work_[b] || (work_[a] == work_[b] && a < b);
    };
    if (p.top_k > 0 && static_cast<std::size_t>(p.top_k) < order_.size()) {
      // Keep every token at least as likely as the k-th (ties at the boundary stay, as vLLM).
      std::nth_element(order_.begin(), order_.begin() + (p.top_k - 1), order_.end(), more_likely);
      const float kth = work_[order_[p.top_k - 1]];
      std::erase_if(order_, [&](std::int32_t t) { return work_[t] < kth; });
    }
    if (p.top_p < 1.0f && order_.size() > 1) {
      std::sort(order_.begin(), order_.end(), more_likely);
      double total = 0.0;
      for (std::int32_t t : order_) total += work_[t];
      const double target = static_cast<double>(p.top_p) * total;
      double cumulative = 0.0;
      std::size_t keep = 0;
      while (keep < order_.size() && (keep == 0 || cumulative < target)) {
        cumulative += work_[order_[keep]];
        ++keep;
      }
      order_.resize(keep);
    }
    if (order_.empty()) {
      out.token = argmax(logits);
    } else {
      // Exponential race over the kept tokens (see the header).
      double best_score = -1.0;
      std::int32_t best = order_.front();
      for (std::int32_t t : order_) {
        const float u = counter_uniform(p.seed, static_cast<std::uint64_t>(context.position),
                                        static_cast<std::uint64_t>(t));
        const double e = -std::log1p(-static_cast<double>(u));
        const double score =
            e > 0.0 ? static_cast<double>(work_[t]) / e : std::numeric_limits<double>::infinity();
        if (score > best_score || (score == best_score && t < best)) {
          best_score = score;
          best = t;
        }
      }
      out.token = best;
    }
  }
  if (p.logprobs >= 0) out.logprobs = compute_logprobs(logits, out.token, p.logprobs);
  return out;
}

}  // namespace kvserve
