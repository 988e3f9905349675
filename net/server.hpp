#pragma once
/// The network front of kvserve: one port for the WebSocket streaming protocol
/// (docs/protocol.md), the OpenAI-compatible HTTP API, /tokenize and /detokenize, /health,
/// /metrics and the playground page. Boost.Beast stays inside net/*.cpp: this header is cheap to
/// include.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actors/engine.hpp"
#include "model/chat_message.hpp"
#include "model/status.hpp"

namespace kvserve {

/// Bounds that protect the server from its clients. Every one has a test in
/// tests/net/request_validation_test.cpp or tests/net/server_test.cpp.
struct server_limits {
  std::size_t max_request_bytes = 1 << 20;  ///< HTTP request body (413 beyond)
  std::size_t max_frame_bytes = 1 << 20;    ///< one WebSocket message (closes with 1009)
  int max_connections = 512;                ///< open sockets; further ones get 503
  int max_streams_per_connection = 64;      ///< concurrent generations on one WebSocket
  /// Frames queued for a client that does not read; beyond this the generation is cancelled
  /// and ends with error code `slow_consumer`.
  int max_pending_frames_per_stream = 4096;
  int max_tokens_limit = 1 << 20;  ///< upper bound of max_tokens besides max_model_len
  int max_stop_strings = 16;
  int max_logprobs = 20;                   ///< OpenAI's bound for top_logprobs / logprobs
  std::chrono::seconds idle_timeout{300};  ///< an HTTP connection with no request
};

/// Text services the HTTP endpoints need besides generation (/tokenize, /detokenize, token
/// strings of logprobs). Empty functions are filled from `engine::get_tokenizer()`.
struct text_codec {
  std::function<std::vector<std::int32_t>(const std::string& text, bool add_special_tokens)> encode;
  std::function<std::string(const std::vector<std::int32_t>& ids)> decode;
  /// The text of one token as OpenAI's logprobs show it (may be part of a UTF-8 character).
  std::function<std::string(std::int32_t id)> token_text;
  /// Chat prompt text for /tokenize with `messages`; unset: such requests get 400.
  std::function<std::string(const std::vector<chat_message>&, bool add_generation_prompt)>
      render_chat;
};

/// Everything the server is built from.
struct server_config {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8000;      ///< 0: any free port (see server::port())
  std::string api_key;            ///< non-empty: every endpoint but / and /health needs Bearer
  std::string served_model_name;  ///< empty: engine.model().name
  int num_threads = 2;            ///< I/O threads
  server_limits limits;
  /// Body of GET /metrics (Prometheus text format); unset: 404.
  std::function<std::string()> metrics_text;
  text_codec codec;
};

/// The server. start() binds and serves on background threads; stop() ends it. The engine
/// must outlive the server. Thread-safe: start/stop may be called from any thread.
class server {
 public:
  server(server_config config, engine& eng);
  ~server();  ///< stop(0)
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Binds host:port and starts the I/O threads. Fails if the address is unusable.
  [[nodiscard]] status start();
  /// The bound port (the chosen one when config.port was 0); 0 before start().
  std::uint16_t port() const;
  /// Closes the listening socket; open connections keep working.
  void stop_accepting();
  /// Stops accepting, waits up to `grace` for in-flight generations to end, cancels the rest,
  /// closes every connection and joins the I/O threads. Idempotent.
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds{0});
  /// Generations started through this server that have not ended yet.
  int num_active_generations() const;
  /// Open connections (HTTP and WebSocket).
  int num_connections() const;

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace kvserve
