#pragma once
/// Workloads of `kvserve bench serve`: random, shared-prefix and multi-turn. A workload is a
/// list of sessions; a session is a fixed prefix (a system prompt, possibly empty) and one or
/// more turns that are sent one after the other, each once the previous answer has arrived.
/// Prompts exist in two forms: token ids (for the WebSocket protocol and /v1/completions, so
/// that lengths are exact) and text (for /v1/chat/completions, where lengths are approximate:
/// about one token per word). Pure: no I/O.

#include <cstdint>
#include <string>
#include <vector>

#include "model/status.hpp"

namespace kvserve::bench {

enum class workload_kind { kRandom, kSharedPrefix, kMultiTurn };

/// Parses "random", "shared-prefix" or "multi-turn".
result<workload_kind> parse_workload_kind(const std::string& name);
const char* to_string(workload_kind kind);

/// Every length is in tokens. `num_prompts` bounds the number of requests of any workload;
/// 0 means the workload's natural size (G*P prompts, C*T turns; random needs it set).
struct workload_config {
  workload_kind kind = workload_kind::kRandom;
  int num_prompts = 0;
  std::uint64_t seed = 0;
  /// Token ids are drawn uniformly from [token_id_min, token_id_max).
  std::int32_t token_id_min = 1000;
  std::int32_t token_id_max = 30000;

  // random
  int random_input_len = 128;
  int random_output_len = 32;
  /// Lengths are drawn uniformly from [len * (1 - ratio), len * (1 + ratio)]; 0: exact.
  double random_range_ratio = 0.0;

  // shared-prefix: G groups of P prompts sharing an L-token system prompt
  int shared_prefix_groups = 4;             ///< G
  int shared_prefix_prompts_per_group = 8;  ///< P
  int shared_prefix_system_len = 512;       ///< L
  int shared_prefix_question_len = 32;      ///< Q
  int shared_prefix_output_len = 32;        ///< O
  bool shared_prefix_shuffle = true;        ///< send prompts in random order, not by group

  // multi-turn: C conversations of T turns; one system prompt shared by all conversations
  int multi_turn_conversations = 8;  ///< C
  int multi_turn_turns = 4;          ///< T
  int multi_turn_system_len = 0;
  int multi_turn_question_len = 32;
  int multi_turn_output_len = 32;
};

/// A piece of prompt in both forms.
struct prompt_part {
  std::vector<std::int32_t> token_ids;
  std::string text;
};

/// One turn: the user's new message and how many tokens the answer must have.
struct bench_turn {
  prompt_part question;
  int output_len = 0;
};

/// A sequence of turns sent in order over one growing history.
struct bench_session {
  prompt_part system;  ///< may be empty
  int group = -1;      ///< shared-prefix: which system prompt; else -1
  std::vector<bench_turn> turns;
};

/// Checks the config (positive lengths, id range, a size for random).
[[nodiscard]] status validate(const workload_config& config);

/// Builds the sessions; deterministic in config.seed. The total number of turns is at most
/// num_prompts (when set). The config must be valid.
std::vector<bench_session> make_workload(const workload_config& config);

/// Number of requests (turns) in a workload.
int count_requests(const std::vector<bench_session>& sessions);

/// `n` words of text whose length in tokens is roughly `n` (common English words, each
/// with a leading space), drawn from `rng_state` (any splitmix64 state).
std::string make_words(int n, std::uint64_t& rng_state);

}  // namespace kvserve::bench
