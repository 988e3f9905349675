#include "app/bench_command.hpp"

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <memory>
#include <string>

#include "bench/serve/load_runner.hpp"

namespace kvserve {
namespace {

struct bench_serve_options {
  bench::bench_config config;
  std::string base_url;
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string backend = "ws";
  std::string workload = "random";
  std::string request_rate = "inf";
  bool no_ignore_eos = false;
  bool no_metrics = false;
  bool no_progress = false;
  bool no_save_requests = false;
  bool no_shuffle = false;
};

int fail_on(const status& s) {
  std::fprintf(stderr, "kvserve bench serve: error: %s\n", s.message().c_str());
  return 1;
}

int run_bench_serve(bench_serve_options& o) {
  bench::bench_config& c = o.config;
  if (!o.base_url.empty()) {
    auto address = bench::parse_base_url(o.base_url);
    if (!address) return fail_on(address.error());
    c.address = address.value();
  } else {
    if (o.port < 1 || o.port > 65535) {
      return fail_on({status_code::kInvalidArgument, "--port must be in 1..65535"});
    }
    c.address.host = o.host;
    c.address.port = static_cast<std::uint16_t>(o.port);
  }
  auto backend = bench::parse_api_backend(o.backend);
  if (!backend) return fail_on(backend.error());
  c.backend = backend.value();
  auto kind = bench::parse_workload_kind(o.workload);
  if (!kind) return fail_on(kind.error());
  c.workload.kind = kind.value();
  if (o.request_rate == "inf" || o.request_rate == "infinity") {
    c.request_rate = std::numeric_limits<double>::infinity();
  } else {
    try {
      std::size_t used = 0;
      c.request_rate = std::stod(o.request_rate, &used);
      if (used != o.request_rate.size()) throw std::invalid_argument("trailing text");
    } catch (const std::exception&) {
      return fail_on({status_code::kInvalidArgument,
                      "--request-rate must be a number of sessions per second or 'inf'"});
    }
  }
  c.ignore_eos = !o.no_ignore_eos;
  c.read_metrics = !o.no_metrics;
  c.progress = !o.no_progress;
  c.save_requests = !o.no_save_requests;
  c.workload.shared_prefix_shuffle = !o.no_shuffle;

  auto run = bench::run_benchmark(c);
  if (!run) return fail_on(run.error());
  std::fputs(bench::report_table(c, run->summary).c_str(), stdout);
  std::fflush(stdout);
  if (!c.output_json.empty()) {
    std::ofstream out(c.output_json);
    out << bench::report_json(c, run->summary, run->outcomes) << '\n';
    if (!out) {
      return fail_on({status_code::kInternal, "cannot write " + c.output_json});
    }
  }
  // Failed requests are results, not errors of the tool; a run where nothing completed is.
  return run->summary.completed > 0 ? 0 : 2;
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto* bench_cmd = app.add_subcommand("bench", "Benchmarks");
  bench_cmd->require_subcommand(1);
  auto o = std::make_shared<bench_serve_options>();
  bench::bench_config& c = o->config;
  bench::workload_config& w = c.workload;
  auto* cmd = bench_cmd->add_subcommand(
      "serve", "Load a running kvserve server (WebSocket or OpenAI API) and measure it");

  cmd->add_option("--base-url", o->base_url, "Server URL, e.g. http://127.0.0.1:8000")
      ->group("Server");
  cmd->add_option("--host", o->host, "Server host (without --base-url)")
      ->capture_default_str()
      ->group("Server");
  cmd->add_option("--port", o->port, "Server port (without --base-url)")
      ->capture_default_str()
      ->group("Server");
  cmd->add_option("--backend", o->backend, "ws | openai-chat | openai-completions")
      ->capture_default_str()
      ->group("Server");
  cmd->add_option("--api-key", c.api_key, "Sent as 'Authorization: Bearer KEY'")->group("Server");
  cmd->add_option("--model", c.model, "The 'model' field of OpenAI requests")->group("Server");

  cmd->add_option("--request-rate", o->request_rate,
                  "Sessions per second, Poisson arrivals; 'inf' sends all at once "
                  "(multi-turn: new conversations per second)")
      ->capture_default_str()
      ->group("Load");
  cmd->add_option("--max-concurrency", c.max_concurrency,
                  "Requests in flight at most (0: unbounded)")
      ->capture_default_str()
      ->group("Load");
  cmd->add_option("--num-prompts", w.num_prompts,
                  "Number of requests (random: required; other workloads: a cap, 0 = all)")
      ->group("Load");
  cmd->add_option("--seed", w.seed, "Seed of the workload and the arrival times")
      ->capture_default_str()
      ->group("Load");
  cmd->add_flag("--tcp-quickack", c.tcp_quickack,
                "Acknowledge every read at once (TCP_QUICKACK), so that a server's Nagle delay "
                "does not meet the client's delayed ACK (up to 40 ms on the first token)")
      ->group("Load");
  cmd->add_option("--request-timeout", c.request_timeout_s, "Seconds per request")
      ->capture_default_str()
      ->group("Load");
  cmd->add_option("--max-duration", c.max_duration_s,
                  "Seconds for the whole run; later requests are not sent")
      ->capture_default_str()
      ->group("Load");

  cmd->add_option("--workload,--dataset-name", o->workload, "random | shared-prefix | multi-turn")
      ->capture_default_str()
      ->group("Workload");
  cmd->add_option("--random-input-len", w.random_input_len)
      ->capture_default_str()
      ->group("Workload");
  cmd->add_option("--random-output-len", w.random_output_len)
      ->capture_default_str()
      ->group("Workload");
  cmd->add_option("--random-range-ratio", w.random_range_ratio,
                  "Lengths uniform in [len*(1-r), len*(1+r)]")
      ->capture_default_str()
      ->group("Workload");
  cmd->add_option("--shared-prefix-groups", w.shared_prefix_groups, "G: system prompts")
      ->capture_default_str()
      ->group("Workload");
  cmd->add_option("--shared-prefix-prompts-per-group", w.shared_prefix_prompts_per_group,
                  "P: questions per system prompt")
      ->capture_default_str()
      ->group("Workload");
  cmd->add_option("--shared-prefix-system-len", w.shared_prefix_system_len, "L: tokens")
      ->capture_default_str()
      ->group("Workload");
  cmd->add_option("--shared-prefix-question-len", w.shared_prefix_question_len, "Q: tokens")
      ->capture_default_str()
      ->group("Workload");
  cmd->add_option("--shared-prefix-output-len", w.shared_prefix_output_len, "O: tokens")
      ->capture_default_str()
      ->group("Workload");
  cmd->add_flag("--no-shuffle", o->no_shuffle, "Send shared-prefix prompts group by group")
      ->group("Workload");
  cmd->add_option("--multi-turn-conversations", w.multi_turn_conversations)
      ->capture_default_str()
      ->group("Workload");
  cmd->add_option("--multi-turn-turns", w.multi_turn_turns)
      ->capture_default_str()
      ->group("Workload");
  cmd->add_option("--multi-turn-system-len", w.multi_turn_system_len,
                  "A system prompt shared by every conversation")
      ->capture_default_str()
      ->group("Workload");
  cmd->add_option("--multi-turn-question-len", w.multi_turn_question_len)
      ->capture_default_str()
      ->group("Workload");
  cmd->add_option("--multi-turn-output-len", w.multi_turn_output_len)
      ->capture_default_str()
      ->group("Workload");
  cmd->add_option("--token-id-min", w.token_id_min, "Prompt token ids are drawn from [min, max)")
      ->capture_default_str()
      ->group("Workload");
  cmd->add_option("--token-id-max", w.token_id_max)->capture_default_str()->group("Workload");

  cmd->add_flag("--no-ignore-eos", o->no_ignore_eos,
                "Let the model stop at EOS (lengths are then not exact)")
      ->group("Sampling");
  cmd->add_option("--temperature", c.temperature)->capture_default_str()->group("Sampling");
  cmd->add_option("--retain-system-prompt", c.retain_system_prompt_priority,
                  "Ask the server to retain each system prompt at this priority (0..100; ws)")
      ->group("Sampling");

  cmd->add_option("--output-json", c.output_json, "Write the results as JSON")->group("Output");
  cmd->add_option("--label", c.label, "Free text copied into the JSON")->group("Output");
  cmd->add_flag("--no-metrics", o->no_metrics, "Do not read GET /metrics")->group("Output");
  cmd->add_flag("--no-progress", o->no_progress, "No progress bar on stderr")->group("Output");
  cmd->add_flag("--no-save-requests", o->no_save_requests,
                "Leave per-request samples out of the JSON")
      ->group("Output");
  cmd->callback([o] { throw CLI::RuntimeError(run_bench_serve(*o)); });
}

}  // namespace kvserve
