#include "bench/serve/workload.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <string_view>
#include <utility>

namespace kvserve::bench {

namespace {

/// splitmix64: small, fast and identical on every platform (std distributions are not).
std::uint64_t next_u64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// Uniform in [lo, hi); hi > lo. The modulo bias is negligible for the ranges used here.
std::int64_t uniform_int(std::uint64_t& state, std::int64_t lo, std::int64_t hi) {
  return lo + static_cast<std::int64_t>(next_u64(state) % static_cast<std::uint64_t>(hi - lo));
}

constexpr std::array<std::string_view, 64> kWords = {
    "the",   "of",    "and",    "to",     "in",    "is",     "for",   "that",  "with",  "on",
    "as",    "it",    "by",     "this",   "be",    "are",    "from",  "at",    "or",    "an",
    "was",   "have",  "not",    "which",  "can",   "will",   "one",   "all",   "more",  "about",
    "time",  "new",   "data",   "system", "model", "cache",  "token", "block", "first", "used",
    "other", "some",  "when",   "there",  "what",  "people", "water", "light", "world", "house",
    "green", "river", "stone",  "music",  "paper", "market", "field", "story", "night", "city",
    "early", "small", "number", "place"};

prompt_part make_part(int num_tokens, const workload_config& config, std::uint64_t& state) {
  prompt_part part;
  part.token_ids.reserve(static_cast<std::size_t>(num_tokens));
  for (int i = 0; i < num_tokens; ++i) {
    part.token_ids.push_back(
        static_cast<std::int32_t>(uniform_int(state, config.token_id_min, config.token_id_max)));
  }
  part.text = make_words(num_tokens, state);
  return part;
}

int jitter(int len, double ratio, std::uint64_t& state) {
  if (ratio <= 0.0) return len;
  int lo = std::max(1, static_cast<int>(std::floor(len * (1.0 - ratio))));
  int hi = std::max(lo, static_cast<int>(std::ceil(len * (1.0 + ratio))));
  return static_cast<int>(uniform_int(state, lo, hi + 1));
}

std::vector<bench_session> make_random(const workload_config& config, std::uint64_t& state) {
  std::vector<bench_session> out;
  for (int i = 0; i < config.num_prompts; ++i) {
    bench_session s;
    int in = jitter(config.random_input_len, config.random_range_ratio, state);
    int outl = jitter(config.random_output_len, config.random_range_ratio, state);
    s.turns.push_back({make_part(in, config, state), outl});
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<bench_session> make_shared_prefix(const workload_config& config, std::uint64_t& state) {
  std::vector<prompt_part> systems;
  for (int g = 0; g < config.shared_prefix_groups; ++g) {
    systems.push_back(make_part(config.shared_prefix_system_len, config, state));
  }
  std::vector<bench_session> out;
  for (int g = 0; g < config.shared_prefix_groups; ++g) {
    for (int p = 0; p < config.shared_prefix_prompts_per_group; ++p) {
      bench_session s;
      s.system = systems[static_cast<std::size_t>(g)];
      s.group = g;
      s.turns.push_back({make_part(config.shared_prefix_question_len, config, state),
                         config.shared_prefix_output_len});
      out.push_back(std::move(s));
    }
  }
  if (config.shared_prefix_shuffle) {
    // Fisher-Yates with the portable generator.
    for (std::size_t i = out.size(); i > 1; --i) {
      auto j = static_cast<std::size_t>(uniform_int(state, 0, static_cast<std::int64_t>(i)));
      std::swap(out[i - 1], out[j]);
    }
  }
  if (config.num_prompts > 0 && static_cast<int>(out.size()) > config.num_prompts) {
    out.resize(static_cast<std::size_t>(config.num_prompts));
  }
  return out;
}

std::vector<bench_session> make_multi_turn(const workload_config& config, std::uint64_t& state) {
  prompt_part system = make_part(config.multi_turn_system_len, config, state);
  std::vector<bench_session> out;
  for (int c = 0; c < config.multi_turn_conversations; ++c) {
    bench_session s;
    s.system = system;
    for (int t = 0; t < config.multi_turn_turns; ++t) {
      s.turns.push_back(
          {make_part(config.multi_turn_question_len, config, state), config.multi_turn_output_len});
    }
    out.push_back(std::move(s));
  }
  if (config.num_prompts > 0) {
    // Keep whole conversations first; the last one kept may lose its later turns.
    int left = config.num_prompts;
    std::vector<bench_session> kept;
    for (bench_session& s : out) {
      if (left <= 0) break;
      if (static_cast<int>(s.turns.size()) > left) s.turns.resize(static_cast<std::size_t>(left));
      left -= static_cast<int>(s.turns.size());
      kept.push_back(std::move(s));
    }
    out = std::move(kept);
  }
  return out;
}

}  // namespace

result<workload_kind> parse_workload_kind(const std::string& name) {
  if (name == "random") return workload_kind::kRandom;
  if (name == "shared-prefix") return workload_kind::kSharedPrefix;
  if (name == "multi-turn") return workload_kind::kMultiTurn;
  return status(status_code::kInvalidArgument,
                "unknown workload '" + name + "' (random, shared-prefix, multi-turn)");
}

const char* to_string(workload_kind kind) {
  switch (kind) {
    case workload_kind::kRandom:
      return "random";
    case workload_kind::kSharedPrefix:
      return "shared-prefix";
    case workload_kind::kMultiTurn:
      return "multi-turn";
  }
  return "?";
}

status validate(const workload_config& c) {
  auto bad = [](const std::string& m) { return status(status_code::kInvalidArgument, m); };
  if (c.num_prompts < 0) return bad("--num-prompts must be >= 0");
  if (c.token_id_min < 0 || c.token_id_max <= c.token_id_min) {
    return bad("the token id range must satisfy 0 <= min < max");
  }
  switch (c.kind) {
    case workload_kind::kRandom:
      if (c.num_prompts <= 0) return bad("the random workload needs --num-prompts > 0");
      if (c.random_input_len < 1 || c.random_output_len < 1) {
        return bad("random input and output lengths must be >= 1");
      }
      if (c.random_range_ratio < 0.0 || c.random_range_ratio >= 1.0) {
        return bad("--random-range-ratio must be in [0, 1)");
      }
      break;
    case workload_kind::kSharedPrefix:
      if (c.shared_prefix_groups < 1 || c.shared_prefix_prompts_per_group < 1) {
        return bad("shared-prefix needs at least one group and one prompt per group");
      }
      if (c.shared_prefix_system_len < 0 || c.shared_prefix_question_len < 1 ||
          c.shared_prefix_output_len < 1) {
        return bad("shared-prefix lengths: system >= 0, question and output >= 1");
      }
      break;
    case workload_kind::kMultiTurn:
      if (c.multi_turn_conversations < 1 || c.multi_turn_turns < 1) {
        return bad("multi-turn needs at least one conversation of one turn");
      }
      if (c.multi_turn_system_len < 0 || c.multi_turn_question_len < 1 ||
          c.multi_turn_output_len < 1) {
        return bad("multi-turn lengths: system >= 0, question and output >= 1");
      }
      break;
  }
  return status::ok();
}

std::vector<bench_session> make_workload(const workload_config& config) {
  std::uint64_t state = config.seed ^ 0x6b767365727665ULL;  // "kvserve"
  switch (config.kind) {
    case workload_kind::kRandom:
      return make_random(config, state);
    case workload_kind::kSharedPrefix:
      return make_shared_prefix(config, state);
    case workload_kind::kMultiTurn:
      return make_multi_turn(config, state);
  }
  return {};
}

int count_requests(const std::vector<bench_session>& sessions) {
  int n = 0;
  for (const bench_session& s : sessions) n += static_cast<int>(s.turns.size());
  return n;
}

std::string make_words(int n, std::uint64_t& rng_state) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    out += ' ';
    out += kWords[static_cast<std::size_t>(uniform_int(rng_state, 0, kWords.size()))];
  }
  return out;
}

}  // namespace kvserve::bench
