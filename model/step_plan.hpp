#pragma once
/// Step plans and step results: the pure data that crosses the scheduler -> worker -> backend
/// boundary. A plan is self-contained: a backend needs nothing else to execute it.

#include <cstdint>
#include <optional>
#include <vector>

#include "model/sampling_params.hpp"

namespace kvserve {

using seq_id = std::uint64_t;

/// How many logits rows a sequence returns (tests and prompt logprobs; never on the hot path).
enum class logits_mode { kNone, kLast, kAll };

/// One sequence's share of a step: compute the KV of `tokens` at positions
/// [start_position, start_position + tokens.size()), attending over the KV already stored for
/// positions [0, start_position) in the blocks of `block_table`, and optionally sample.
struct sequence_step {
  seq_id id = 0;
  std::vector<std::int32_t> tokens;  ///< a prefill chunk, or the one decode token
  /// Async scheduling: tokens[0] is a placeholder for the token sampled for this sequence in
  /// the previous step. backend::execute never sees it set (the worker fills it in);
  /// backend::submit takes it from the previous submitted step (model/backend.hpp).
  bool input_from_last_sample = false;
  std::int32_t start_position = 0;  ///< tokens whose KV is already in the blocks
  /// Physical block ids; block i holds positions [i*block_size, (i+1)*block_size).
  /// Covers at least start_position + tokens.size() positions.
  std::vector<std::int32_t> block_table;
  bool sample = false;  ///< sample the token at position start_position + tokens.size()
  sampling_params sampling;
  /// Filled only when sampling.uses_penalties(): the prompt and the output so far.
  std::vector<std::int32_t> penalty_prompt_tokens;
  std::vector<std::int32_t> penalty_output_tokens;
  /// Token ids masked out this step (EOS and stop tokens while below min_tokens).
  std::vector<std::int32_t> suppressed_tokens;
  logits_mode return_logits = logits_mode::kNone;
  /// Prompt logprobs (OpenAI `echo` + `logprobs`): <0 none, else top-k alternatives. For
  /// position i the target is tokens[i+1], and for the last position `next_prompt_token`.
  int prompt_logprobs = -1;
  std::optional<std::int32_t> next_prompt_token;
};

/// A batch: every sequence of one scheduler step.
struct step_plan {
  std::uint64_t step_index = 0;
  std::vector<sequence_step> seqs;

  int num_tokens() const {
    int n = 0;
    for (const auto& s : seqs) n += static_cast<int>(s.tokens.size());
    return n;
  }
};

struct token_logprob {
  std::int32_t token = 0;
  float logprob = 0.0f;
};

/// A token's log-probability with the most likely alternatives at its position.
struct position_logprobs {
  token_logprob chosen;
  std::vector<token_logprob> top;  ///< most likely first
};

struct sequence_result {
  seq_id id = 0;
  std::optional<std::int32_t> sampled_token;          ///< set when the step asked to sample
  std::optional<position_logprobs> sampled_logprobs;  ///< when sampling.logprobs >= 0
  std::vector<position_logprobs> prompt_logprobs;     ///< one per computed position with a target
  std::vector<float> logits;  ///< [rows, vocab]: rows = 1 (kLast) or tokens.size() (kAll)
};

/// One result per plan sequence, in plan order.
struct step_result {
  std::uint64_t step_index = 0;
  std::vector<sequence_result> seqs;
};

}  // namespace kvserve
