#pragma once
/// Sampling and stopping flags of the generate and chat subcommands.

#include <string>
#include <vector>

#include "actors/engine.hpp"

namespace CLI {
class App;
}

namespace kvserve {

struct sampling_flags {
  int max_tokens = 256;
  float temperature = 0.0f;
  int top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int min_tokens = 0;
  bool ignore_eos = false;
  std::vector<std::string> stop;
  long long request_seed = -1;  ///< <0: the engine's --seed
};

/// Adds the sampling flags to a subcommand, bound to `flags`.
void add_sampling_flags(CLI::App& command, sampling_flags& flags);

/// Fills the sampling and stopping fields of a request from the flags.
void apply_sampling_flags(const sampling_flags& flags, generate_request& request);

}  // namespace kvserve
