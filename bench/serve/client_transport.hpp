#pragma once
/// Internal to bench/serve: coroutines that run one request, or one GET, against the server.
/// Only Asio's small awaitable header is included here; Beast stays in ws_client.cpp and
/// openai_client.cpp.

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <string>

#include "bench/serve/bench_config.hpp"
#include "bench/serve/request_recorder.hpp"
#include "bench/serve/stream_events.hpp"

namespace kvserve::bench {

using bench_clock = std::chrono::steady_clock;

/// Seconds on bench_clock (the clock every time of the run is read from).
inline double clock_seconds(bench_clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

/// What every request of a run shares.
struct transport_context {
  server_address address;
  std::string api_key;
  double run_origin = 0;      ///< clock_seconds() of the start of the run
  bool tcp_quickack = false;  ///< bench_config::tcp_quickack
};

/// Sets TCP_QUICKACK on a connected socket's native handle (Linux; a no-op elsewhere). Linux
/// leaves quick-ACK mode on its own after a while, so callers set it again before every read.
void set_tcp_quickack(int native_socket);

/// One generation over the WebSocket protocol (a connection of its own). Never throws; a
/// transport error or the deadline ends it as failed.
boost::asio::awaitable<request_outcome> run_ws_request(const transport_context& ctx, std::string id,
                                                       request_spec spec,
                                                       bench_clock::time_point deadline);

/// One streaming generation over POST /v1/completions or /v1/chat/completions (a connection
/// of its own). Never throws.
boost::asio::awaitable<request_outcome> run_openai_request(const transport_context& ctx,
                                                           api_backend backend, request_spec spec,
                                                           bench_clock::time_point deadline);

/// The answer to a GET.
struct http_get_result {
  bool ok = false;  ///< connected and got a response (any status)
  int http_status = 0;
  std::string body;
  std::string error;
};

/// GET `path`, with the API key when set. Never throws.
boost::asio::awaitable<http_get_result> http_get(const transport_context& ctx, std::string path,
                                                 bench_clock::time_point deadline);

}  // namespace kvserve::bench
