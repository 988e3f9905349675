#pragma once
/// Per-request sampling parameters, with vLLM's meanings.

#include <cstdint>

namespace kvserve {

struct sampling_params {
  float temperature = 1.0f;  ///< 0 means greedy
  int top_k = 0;             ///< 0 (or <0) disables
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;  ///< over prompt and output tokens (HF/vLLM semantics)
  float presence_penalty = 0.0f;    ///< over output tokens
  float frequency_penalty = 0.0f;   ///< over output tokens
  std::uint64_t seed = 0;           ///< counter-based: draws depend on (seed, position) only
  int min_tokens = 0;               ///< EOS and stop tokens are masked before this many
  bool ignore_eos = false;
  int logprobs = -1;  ///< <0: none; 0: the sampled token's; k>0: also the k most likely

  bool is_greedy() const { return temperature <= 0.0f; }
  bool uses_penalties() const {
    return repetition_penalty != 1.0f || presence_penalty != 0.0f || frequency_penalty != 0.0f;
  }
};

}  // namespace kvserve
