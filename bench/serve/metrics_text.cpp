#include "bench/serve/metrics_text.hpp"

#include <cstdlib>
#include <string>

namespace kvserve::bench {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

std::optional<double> parse_value(std::string_view text) {
  text = trim(text);
  // A timestamp may follow the value: keep the first field.
  if (auto space = text.find(' '); space != std::string_view::npos) text = text.substr(0, space);
  if (text.empty()) return std::nullopt;
  if (text == "+Inf") return 1.0 / 0.0;
  if (text == "-Inf") return -1.0 / 0.0;
  std::string copy(text);
  char* end = nullptr;
  double v = std::strtod(copy.c_str(), &end);
  if (end != copy.c_str() + copy.size()) return std::nullopt;
  return v;
}

}  // namespace

metrics_snapshot metrics_snapshot::parse(std::string_view text) {
  metrics_snapshot out;
  while (!text.empty()) {
    std::size_t eol = text.find('\n');
    std::string_view line = trim(text.substr(0, eol));
    text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
    if (line.empty() || line.front() == '#') continue;
    std::string_view name;
    std::string_view labels;
    std::string_view rest;
    std::size_t brace = line.find('{');
    std::size_t space = line.find_first_of(" \t");
    if (brace != std::string_view::npos && (space == std::string_view::npos || brace < space)) {
      // Label values may contain '}' inside quotes: find the closing brace outside quotes.
      bool quoted = false;
      std::size_t close = std::string_view::npos;
      for (std::size_t i = brace + 1; i < line.size(); ++i) {
        char c = line[i];
        if (quoted && c == '\\') {
          ++i;
        } else if (c == '"') {
          quoted = !quoted;
        } else if (!quoted && c == '}') {
          close = i;
          break;
        }
      }
      if (close == std::string_view::npos) continue;
      name = line.substr(0, brace);
      labels = line.substr(brace + 1, close - brace - 1);
      rest = line.substr(close + 1);
    } else {
      if (space == std::string_view::npos) continue;
      name = line.substr(0, space);
      rest = line.substr(space);
    }
    auto value = parse_value(rest);
    if (!value || name.empty()) continue;
    out.samples_[std::string(name)][std::string(labels)] = *value;
  }
  return out;
}

std::optional<double> metrics_snapshot::sum(const std::string& name) const {
  auto it = samples_.find(name);
  if (it == samples_.end()) return std::nullopt;
  double total = 0;
  for (const auto& [labels, v] : it->second) total += v;
  return total;
}

std::optional<double> metrics_snapshot::get(const std::string& name,
                                            const std::string& labels) const {
  auto it = samples_.find(name);
  if (it == samples_.end()) return std::nullopt;
  auto jt = it->second.find(labels);
  if (jt == it->second.end()) return std::nullopt;
  return jt->second;
}

server_counters counters_between(const metrics_snapshot& before, const metrics_snapshot& after) {
  server_counters c;
  auto delta = [&](const char* name) {
    return after.sum(name).value_or(0.0) - before.sum(name).value_or(0.0);
  };
  c.available = before.sum("kvserve_prefix_cache_queries_tokens_total").has_value() &&
                after.sum("kvserve_prefix_cache_queries_tokens_total").has_value();
  c.prefix_hits_tokens = delta("kvserve_prefix_cache_hits_tokens_total");
  c.prefix_queries_tokens = delta("kvserve_prefix_cache_queries_tokens_total");
  c.prompt_tokens = delta("kvserve_prompt_tokens_total");
  c.generation_tokens = delta("kvserve_generation_tokens_total");
  c.has_request_counters = before.sum("kvserve_request_prompt_tokens_total").has_value() &&
                           after.sum("kvserve_request_prompt_tokens_total").has_value();
  c.request_prompt_tokens = delta("kvserve_request_prompt_tokens_total");
  c.request_cached_prompt_tokens = delta("kvserve_request_cached_prompt_tokens_total");
  c.preemptions = delta("kvserve_num_preemptions_total");
  c.evictions = delta("kvserve_kv_cache_evictions_total");
  c.ttft_sum_s = delta("kvserve_time_to_first_token_seconds_sum");
  c.ttft_count = delta("kvserve_time_to_first_token_seconds_count");
  c.queue_time_sum_s = delta("kvserve_request_queue_time_seconds_sum");
  c.queue_time_count = delta("kvserve_request_queue_time_seconds_count");
  return c;
}

}  // namespace kvserve::bench
