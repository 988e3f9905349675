#include "bench/serve/bench_report.hpp"

#include <cmath>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

namespace kvserve::bench {

using nlohmann::json;

namespace {

json summary_json(const distribution_summary& s) {
  return {{"count", s.count}, {"mean", s.mean}, {"median", s.median}, {"p90", s.p90},
          {"p99", s.p99},     {"min", s.min},   {"max", s.max}};
}

json workload_json(const workload_config& w) {
  json j = {{"name", to_string(w.kind)},
            {"num_prompts", w.num_prompts},
            {"seed", w.seed},
            {"token_id_min", w.token_id_min},
            {"token_id_max", w.token_id_max}};
  switch (w.kind) {
    case workload_kind::kRandom:
      j["input_len"] = w.random_input_len;
      j["output_len"] = w.random_output_len;
      j["range_ratio"] = w.random_range_ratio;
      break;
    case workload_kind::kSharedPrefix:
      j["groups"] = w.shared_prefix_groups;
      j["prompts_per_group"] = w.shared_prefix_prompts_per_group;
      j["system_len"] = w.shared_prefix_system_len;
      j["question_len"] = w.shared_prefix_question_len;
      j["output_len"] = w.shared_prefix_output_len;
      break;
    case workload_kind::kMultiTurn:
      j["conversations"] = w.multi_turn_conversations;
      j["turns"] = w.multi_turn_turns;
      j["system_len"] = w.multi_turn_system_len;
      j["question_len"] = w.multi_turn_question_len;
      j["output_len"] = w.multi_turn_output_len;
      break;
  }
  return j;
}

/// JSON has no infinity: an unbounded rate is written as the string "inf".
json rate_json(double rate) {
  if (!std::isfinite(rate) || rate <= 0) return "inf";
  return rate;
}

std::string now_utc() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

bench_summary summarize_run(const std::vector<request_outcome>& outcomes, double duration_s,
                            const server_counters& server) {
  bench_summary s;
  s.num_requests = static_cast<int>(outcomes.size());
  s.duration_s = duration_s;
  s.server = server;
  std::vector<double> ttft, tpot, itl, e2e;
  long long all_prompt = 0;
  long long all_output = 0;
  long long all_cached = 0;
  for (const request_outcome& o : outcomes) {
    // The server counts tokens of every request it ran, failed ones included when they got
    // that far; compare against everything the client saw.
    all_prompt += o.prompt_tokens;
    all_output += o.output_tokens;
    all_cached += o.cached_prompt_tokens;
    if (!o.success) {
      ++s.failed;
      if (s.first_errors.size() < 10) {
        bool seen = false;
        for (const std::string& e : s.first_errors) seen = seen || e == o.error;
        if (!seen) s.first_errors.push_back(o.error);
      }
      continue;
    }
    ++s.completed;
    s.total_input_tokens += o.prompt_tokens;
    s.total_output_tokens += o.output_tokens;
    s.total_cached_tokens += o.cached_prompt_tokens;
    ttft.push_back(o.ttft_s * 1e3);
    e2e.push_back(o.e2e_s * 1e3);
    if (o.output_tokens > 1) tpot.push_back(o.tpot_s() * 1e3);
    for (double gap : o.itl_s) itl.push_back(gap * 1e3);
  }
  s.ttft_ms = summarize(std::move(ttft));
  s.tpot_ms = summarize(std::move(tpot));
  s.itl_ms = summarize(std::move(itl));
  s.e2e_ms = summarize(std::move(e2e));
  if (duration_s > 0) {
    s.request_throughput = s.completed / duration_s;
    s.output_throughput = static_cast<double>(s.total_output_tokens) / duration_s;
    s.total_token_throughput =
        static_cast<double>(s.total_input_tokens + s.total_output_tokens) / duration_s;
  }
  if (s.total_input_tokens > 0) {
    s.client_prefix_hit_rate =
        static_cast<double>(s.total_cached_tokens) / static_cast<double>(s.total_input_tokens);
  }
  const long long server_prompt = std::llround(server.prompt_tokens);
  const bool generation_match = std::llround(server.generation_tokens) == all_output;
  s.server_counts_uncached_prompt_tokens =
      all_cached > 0 && server_prompt == all_prompt - all_cached;
  s.server_counts_all_prompt_tokens = server_prompt == all_prompt;
  s.lookup_hit_rate_diff_points =
      100.0 * std::fabs(s.client_prefix_hit_rate - server.prefix_hit_rate());
  const long long preemptions = std::llround(server.preemptions);
  if (server.has_request_counters) {
    // Per request, once: well defined whatever the server recomputed or looked up again.
    const double all_hit_rate =
        all_prompt > 0 ? static_cast<double>(all_cached) / static_cast<double>(all_prompt) : 0.0;
    s.token_counts_match = server.available &&
                           std::llround(server.request_prompt_tokens) == all_prompt &&
                           generation_match;
    s.hit_rate_diff_points = 100.0 * std::fabs(all_hit_rate - server.request_hit_rate());
    s.checks_comparable = server.available;
  } else {
    s.token_counts_match =
        server.available &&
        (server_prompt == all_prompt || s.server_counts_uncached_prompt_tokens) && generation_match;
    s.hit_rate_diff_points = s.lookup_hit_rate_diff_points;
    s.checks_comparable = server.available && preemptions == 0;
  }
  if (!server.available) {
    s.check_verdict = "no metrics";
  } else if (!s.checks_comparable) {
    s.check_verdict = "not comparable: " + std::to_string(preemptions) + " preemptions";
  } else {
    const bool lookup_ok = preemptions > 0 || s.lookup_hit_rate_diff_points <= 0.5;
    const bool ok = s.token_counts_match && s.hit_rate_diff_points <= 0.5 && lookup_ok;
    s.check_verdict = !ok               ? "fail"
                      : preemptions > 0 ? "pass (" + std::to_string(preemptions) +
                                              " preemptions: lookup hit rate not compared)"
                                        : "pass";
  }
  return s;
}

std::string report_json(const bench_config& config, const bench_summary& s,
                        const std::vector<request_outcome>& outcomes) {
  json j;
  j["date"] = now_utc();
  j["label"] = config.label;
  j["backend"] = to_string(config.backend);
  j["host"] = config.address.host;
  j["port"] = config.address.port;
  j["model"] = config.model;
  j["request_rate"] = rate_json(config.request_rate);
  j["max_concurrency"] = config.max_concurrency;
  j["ignore_eos"] = config.ignore_eos;
  j["tcp_quickack"] = config.tcp_quickack;
  j["temperature"] = config.temperature;
  j["retain_system_prompt_priority"] = config.retain_system_prompt_priority;
  j["workload"] = workload_json(config.workload);

  j["num_requests"] = s.num_requests;
  j["completed"] = s.completed;
  j["failed"] = s.failed;
  j["errors"] = s.first_errors;
  j["duration_s"] = s.duration_s;
  j["total_input_tokens"] = s.total_input_tokens;
  j["total_output_tokens"] = s.total_output_tokens;
  j["total_cached_tokens"] = s.total_cached_tokens;
  j["request_throughput"] = s.request_throughput;
  j["output_throughput"] = s.output_throughput;
  j["total_token_throughput"] = s.total_token_throughput;
  j["ttft_ms"] = summary_json(s.ttft_ms);
  j["tpot_ms"] = summary_json(s.tpot_ms);
  j["itl_ms"] = summary_json(s.itl_ms);
  j["e2e_ms"] = summary_json(s.e2e_ms);
  j["client_prefix_hit_rate"] = s.client_prefix_hit_rate;
  json server = {{"available", s.server.available}};
  if (s.server.available) {
    server["prefix_hits_tokens"] = s.server.prefix_hits_tokens;
    server["prefix_queries_tokens"] = s.server.prefix_queries_tokens;
    server["prefix_hit_rate"] = s.server.prefix_hit_rate();
    server["prompt_tokens"] = s.server.prompt_tokens;
    if (s.server.has_request_counters) {
      server["request_prompt_tokens"] = s.server.request_prompt_tokens;
      server["request_cached_prompt_tokens"] = s.server.request_cached_prompt_tokens;
      server["request_hit_rate"] = s.server.request_hit_rate();
    }
    server["generation_tokens"] = s.server.generation_tokens;
    server["preemptions"] = s.server.preemptions;
    server["evictions"] = s.server.evictions;
    server["mean_ttft_ms"] = 1e3 * s.server.mean_ttft_s();
    server["mean_queue_time_ms"] = 1e3 * s.server.mean_queue_time_s();
    server["token_counts_match"] = s.token_counts_match;
    // What kvserve_prompt_tokens_total counted on this run (informational once the
    // per-request counters exist): computed tokens ("uncached"), all, or neither.
    server["prompt_tokens_counted"] = s.server_counts_uncached_prompt_tokens ? "uncached"
                                      : s.server_counts_all_prompt_tokens    ? "all"
                                                                             : "neither";
    server["hit_rate_diff_points"] = s.hit_rate_diff_points;
    server["lookup_hit_rate_diff_points"] = s.lookup_hit_rate_diff_points;
    server["checks_against"] =
        s.server.has_request_counters ? "per-request counters" : "step and lookup counters";
    server["checks_comparable"] = s.checks_comparable;
  }
  j["server"] = std::move(server);
  j["check"] = s.check_verdict;
  if (config.save_requests) {
    json reqs = json::array();
    for (const request_outcome& o : outcomes) {
      json r = {{"session", o.session},
                {"turn", o.turn},
                {"success", o.success},
                {"start_s", o.start_s},
                {"ttft_s", o.ttft_s},
                {"e2e_s", o.e2e_s},
                {"prompt_tokens", o.prompt_tokens},
                {"output_tokens", o.output_tokens},
                {"cached_prompt_tokens", o.cached_prompt_tokens}};
      if (!o.success) r["error"] = o.error;
      reqs.push_back(std::move(r));
    }
    j["requests"] = std::move(reqs);
  }
  return j.dump(2, ' ', false, json::error_handler_t::replace);
}

std::string report_table(const bench_config& config, const bench_summary& s) {
  std::string out;
  char line[160];
  auto row = [&](const char* name, const char* fmt, double v) {
    char value[64];
    std::snprintf(value, sizeof value, fmt, v);
    std::snprintf(line, sizeof line, "%-40s %14s\n", name, value);
    out += line;
  };
  auto title = [&](const char* t) {
    std::snprintf(line, sizeof line, "%s\n", t);
    out += line;
  };
  const char* rule = "==========================================================\n";
  out += rule;
  std::snprintf(line, sizeof line, "  kvserve bench serve: %s over %s\n",
                to_string(config.workload.kind), to_string(config.backend));
  out += line;
  out += rule;
  row("Requests sent:", "%.0f", s.num_requests);
  row("Successful requests:", "%.0f", s.completed);
  row("Failed requests:", "%.0f", s.failed);
  if (std::isfinite(config.request_rate) && config.request_rate > 0) {
    row("Request rate (sessions/s):", "%.2f", config.request_rate);
  } else {
    std::snprintf(line, sizeof line, "%-40s %14s\n", "Request rate (sessions/s):", "inf");
    out += line;
  }
  if (config.max_concurrency > 0) row("Max concurrency:", "%.0f", config.max_concurrency);
  row("Benchmark duration (s):", "%.2f", s.duration_s);
  row("Total input tokens:", "%.0f", static_cast<double>(s.total_input_tokens));
  row("Total generated tokens:", "%.0f", static_cast<double>(s.total_output_tokens));
  row("Request throughput (req/s):", "%.2f", s.request_throughput);
  row("Output token throughput (tok/s):", "%.2f", s.output_throughput);
  row("Total token throughput (tok/s):", "%.2f", s.total_token_throughput);
  row("Prefix hit rate, usage (%):", "%.2f", 100.0 * s.client_prefix_hit_rate);
  if (s.server.available) {
    row("Prefix hit rate, /metrics lookups (%):", "%.2f", 100.0 * s.server.prefix_hit_rate());
    if (s.server.has_request_counters) {
      row("Prefix hit rate, /metrics requests (%):", "%.2f", 100.0 * s.server.request_hit_rate());
    }
    row("Mean TTFT, /metrics (ms):", "%.2f", 1e3 * s.server.mean_ttft_s());
    row("Mean queue time, /metrics (ms):", "%.2f", 1e3 * s.server.mean_queue_time_s());
    std::snprintf(line, sizeof line, "%-40s %14s\n",
                  "Token counts equal /metrics:", s.token_counts_match ? "yes" : "no");
    out += line;
    std::snprintf(line, sizeof line, "%-40s %14s\n", "Prompt tokens counted by /metrics:",
                  s.server_counts_uncached_prompt_tokens ? "uncached"
                  : s.server_counts_all_prompt_tokens    ? "all"
                                                         : "neither");
    out += line;
    std::snprintf(line, sizeof line, "Checks (counts equal, hit rates within 0.5 pt): %s\n",
                  s.check_verdict.c_str());
    out += line;
  }
  auto block = [&](const char* name, const char* unit, const distribution_summary& d) {
    std::snprintf(line, sizeof line, "---------------%s----------------\n", name);
    out += line;
    char label[64];
    std::snprintf(label, sizeof label, "Mean %s (ms):", unit);
    row(label, "%.2f", d.mean);
    std::snprintf(label, sizeof label, "Median %s (ms):", unit);
    row(label, "%.2f", d.median);
    std::snprintf(label, sizeof label, "P90 %s (ms):", unit);
    row(label, "%.2f", d.p90);
    std::snprintf(label, sizeof label, "P99 %s (ms):", unit);
    row(label, "%.2f", d.p99);
  };
  block("Time to First Token", "TTFT", s.ttft_ms);
  block("Time per Output Token (excl. 1st token)", "TPOT", s.tpot_ms);
  block("Inter-token Latency", "ITL", s.itl_ms);
  block("End-to-end Latency", "E2EL", s.e2e_ms);
  out += rule;
  for (const std::string& e : s.first_errors) {
    title(("error: " + e).c_str());
  }
  return out;
}

}  // namespace kvserve::bench
