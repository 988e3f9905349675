#include "app/sampling_flags.hpp"

#include <CLI/CLI.hpp>

namespace kvserve {

void add_sampling_flags(CLI::App& command, sampling_flags& flags) {
  command.add_option("--max-tokens", flags.max_tokens, "Most tokens to generate")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  command.add_option("--temperature", flags.temperature, "Sampling temperature; 0 is greedy")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  command.add_option("--top-k", flags.top_k, "Keep the k most likely tokens; 0 keeps all")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  command.add_option("--top-p", flags.top_p, "Nucleus sampling mass")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  command.add_option("--min-p", flags.min_p, "Drop tokens below min-p times the top probability")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  command
      .add_option("--repetition-penalty", flags.repetition_penalty,
                  "Penalty on tokens of the prompt and output (1 = off)")
      ->check(CLI::Range(0.01, 100.0))
      ->capture_default_str();
  command
      .add_option("--presence-penalty", flags.presence_penalty,
                  "Penalty on tokens already in the output")
      ->check(CLI::Range(-2.0, 2.0))
      ->capture_default_str();
  command
      .add_option("--frequency-penalty", flags.frequency_penalty,
                  "Penalty proportional to a token's count in the output")
      ->check(CLI::Range(-2.0, 2.0))
      ->capture_default_str();
  command.add_option("--min-tokens", flags.min_tokens, "Generate at least this many tokens")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  command.add_flag("--ignore-eos", flags.ignore_eos, "Keep generating past end-of-sequence");
  command.add_option("--stop", flags.stop, "Stop string (repeatable)");
  command.add_option("--request-seed", flags.request_seed,
                     "Sampling seed of this request (default: --seed)");
}

void apply_sampling_flags(const sampling_flags& flags, generate_request& request) {
  request.max_tokens = flags.max_tokens;
  request.sampling.temperature = flags.temperature;
  request.sampling.top_k = flags.top_k;
  request.sampling.top_p = flags.top_p;
  request.sampling.min_p = flags.min_p;
  request.sampling.repetition_penalty = flags.repetition_penalty;
  request.sampling.presence_penalty = flags.presence_penalty;
  request.sampling.frequency_penalty = flags.frequency_penalty;
  request.sampling.min_tokens = flags.min_tokens;
  request.sampling.ignore_eos = flags.ignore_eos;
  request.stop = flags.stop;
  if (flags.request_seed >= 0) {
    request.sampling.seed = static_cast<std::uint64_t>(flags.request_seed);
    request.seed_set = true;
  }
}

}  // namespace kvserve
