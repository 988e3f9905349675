#pragma once
/// Internal to net/: the server's shared state, seen by the listener and the sessions. Includes
/// Asio and Beast's HTTP headers, so only net/*.cpp files include it.

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "net/request_parsing.hpp"
#include "net/server.hpp"

namespace kvserve::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using http_request = http::request<http::string_body>;

/// Engine callbacks arrive on engine threads; they reach a session only through the gate,
/// which stops forwarding once the server is stopping and its io_context may be gone.
class event_gate {
 public:
  template <class Executor, class F>
  void post(const Executor& ex, F&& f) {
    std::lock_guard lock(mu_);
    if (open_) asio::post(ex, std::forward<F>(f));
  }
  void close() {
    std::lock_guard lock(mu_);
    open_ = false;
  }

 private:
  std::mutex mu_;
  bool open_ = true;
};

/// What stop() can ask of every open session, from any thread.
class session_base {
 public:
  virtual ~session_base() = default;
  /// Cancels the session's generations and closes its socket, on the session's strand.
  virtual void shutdown() = 0;
};

}  // namespace kvserve::net

namespace kvserve {

struct server::impl {
  impl(server_config cfg, engine& e);

  server_config config;
  engine& eng;
  net::request_bounds bounds;
  std::string model_name;
  int vocab_size = 0;

  net::asio::io_context ioc;
  std::optional<net::tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  std::shared_ptr<net::event_gate> gate = std::make_shared<net::event_gate>();
  std::atomic<int> num_connections{0};
  std::atomic<int> num_active_generations{0};
  std::atomic<bool> stopping{false};
  std::atomic<std::uint16_t> bound_port{0};
  std::int64_t created_unix = 0;
  std::atomic<std::uint64_t> next_response_id{1};

  std::mutex sessions_mu;
  std::vector<std::weak_ptr<net::session_base>> sessions;
  std::mutex stop_mu;
  bool stopped = false;

  void register_session(const std::shared_ptr<net::session_base>& s);
  void do_accept();
  /// Whether `req` carries the API key (always true without --api-key).
  bool authorized(const net::http_request& req) const;
};

namespace net {
/// Serves one accepted TCP connection (HTTP/1.1; upgrades to WebSocket on kWebSocketPath).
void start_http_session(server::impl& srv, tcp::socket socket);
/// Takes over an upgraded connection.
void start_websocket_session(server::impl& srv, beast::tcp_stream stream, http_request req);
/// A JSON response with common headers.
http::response<http::string_body> make_json_response(const http_request& req, http::status status,
                                                     std::string body);
}  // namespace net

}  // namespace kvserve
