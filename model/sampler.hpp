#pragma once
/// Token sampling with vLLM's semantics, the reference for every backend's sampler.
///
/// Order of operations for one draw (vLLM v1):
///   1. logprobs, when asked, are the log-softmax of the RAW model logits, before any of the
///      steps below (vLLM's default `logprobs_mode = raw_logprobs`);
///   2. suppressed tokens (EOS/stop tokens below min_tokens) are set to -inf;
///   3. repetition penalty over prompt + output tokens (HF: a positive logit is divided by the
///      penalty, a negative one multiplied), then frequency and presence penalties over output
///      tokens (logit -= frequency * count + presence * [count > 0]);
///   4. temperature 0: greedy argmax (lowest id on ties), done;
///   5. logits / temperature; min-p (keep p >= min_p * p_max); top-k (keep logits >= the k-th
///      largest); top-p (keep the most likely tokens until their mass reaches top_p);
///   6. the draw: an exponential race, token = argmax_i p_i / E_i over the kept tokens with
///      E_i = -ln(1 - u_i) and u_i = counter_uniform(seed, position, stream = i) (see
///      counter_rng.hpp). This samples exactly from the kept distribution, needs no prefix sum
///      (so a GPU computes the same token), and depends only on (seed, position, logits).

#include <cstdint>
#include <span>
#include <vector>

#include "model/sampling_params.hpp"
#include "model/status.hpp"
#include "model/step_plan.hpp"

namespace kvserve {

/// Everything a draw needs besides the logits and the parameters.
struct sampling_context {
  std::span<const std::int32_t> prompt_tokens;      ///< for the repetition penalty
  std::span<const std::int32_t> output_tokens;      ///< generated so far
  std::span<const std::int32_t> suppressed_tokens;  ///< masked to -inf
  std::int64_t position = 0;  ///< position of the token being sampled: the RNG counter
};

/// The sampled token, with its logprobs when params.logprobs >= 0.
struct sampled_token {
  std::int32_t token = 0;
  std::optional<position_logprobs> logprobs;
};

/// kInvalidArgument for parameters no sampler can honour (negative temperature, top_p outside
/// (0, 1], min_p outside [0, 1], a non-positive repetition penalty, non-finite values).
status validate_sampling_params(const sampling_params& params);

/// log-softmax of `logits` for `chosen` and the `top_k` most likely tokens (most likely first,
/// lowest id first on ties). Sums in double in id order.
position_logprobs compute_logprobs(std::span<const float> logits, std::int32_t chosen, int top_k);

/// Applies steps 2 and 3 above to `logits` in place.
void apply_penalties(std::span<float> logits, const sampling_params& params,
                     const sampling_context& context);

/// Samples one token. Keeps scratch buffers between calls; not thread-safe (use one sampler
/// per thread). Token ids in the context outside the vocabulary are ignored.
class sampler {
 public:
  sampled_token sample(std::span<const float> logits, const sampling_params& params,
                       const sampling_context& context);

 private:
  std::vector<float> work_;
  std::vector<std::int32_t> order_;
};

}  // namespace kvserve
