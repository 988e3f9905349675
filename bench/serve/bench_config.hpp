#pragma once
/// Everything `kvserve bench serve` is asked to do: where the server is, which API, the load
/// shape and the workload. Plain data, filled by app/bench_command.cpp.

#include <cstdint>
#include <limits>
#include <string>

#include "bench/serve/workload.hpp"
#include "model/status.hpp"

namespace kvserve::bench {

/// The API the load goes through.
enum class api_backend {
  kWebSocket,          ///< kvserve.v1 WebSocket protocol (token-id prompts, exact counts)
  kOpenAIChat,         ///< POST /v1/chat/completions, SSE (text prompts)
  kOpenAICompletions,  ///< POST /v1/completions, SSE (token-id prompts)
};

/// Parses "ws", "openai-chat" or "openai-completions".
result<api_backend> parse_api_backend(const std::string& name);
const char* to_string(api_backend backend);

/// Where the server listens.
struct server_address {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8000;
};

/// Parses "http://host:port" (scheme http or ws; the port defaults to 80; a trailing path is
/// ignored). https is not supported.
result<server_address> parse_base_url(const std::string& url);

struct bench_config {
  server_address address;
  api_backend backend = api_backend::kWebSocket;
  std::string api_key;  ///< sent as "Authorization: Bearer" when set
  std::string model;    ///< "model" field of OpenAI requests; empty: omitted

  /// Sessions per second, Poisson; infinity: all at once.
  double request_rate = std::numeric_limits<double>::infinity();
  /// Requests in flight at most; 0: unbounded.
  int max_concurrency = 0;
  workload_config workload;

  bool ignore_eos = true;    ///< so that outputs have exactly the asked length
  double temperature = 0.0;  ///< greedy by default
  /// >= 0: ask the server to retain each prompt's system part at this priority
  /// (kvserve.v1 `retention`, WebSocket only).
  int retain_system_prompt_priority = -1;

  double request_timeout_s = 300;  ///< one request, connection included
  double max_duration_s = 1800;    ///< the whole run; requests still open then fail
  /// Acknowledge every read at once (Linux TCP_QUICKACK). A server that leaves Nagle's
  /// algorithm on holds a small write until the previous one is acknowledged, and Linux delays
  /// ACKs by up to 40 ms: with this the client never delays, so TTFT shows the engine's time.
  bool tcp_quickack = false;
  bool read_metrics = true;   ///< scrape GET /metrics before and after
  bool progress = true;       ///< progress bar on stderr
  bool save_requests = true;  ///< per-request samples in the JSON
  std::string output_json;    ///< empty: no file
  std::string label;          ///< free text copied into the JSON (experiment tag)
};

}  // namespace kvserve::bench
