// The WebSocket side of the load generator: one kvserve.v1 generation per connection.

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "bench/serve/client_transport.hpp"

namespace kvserve::bench {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {
/// Must match net/ws_protocol.hpp's kWebSocketPath (bench/ does not include net/).
constexpr const char* kWebSocketPath = "/v1/ws";
}  // namespace

void set_tcp_quickack(int native_socket) {
#ifdef TCP_QUICKACK
  int on = 1;
  // Best effort: a failure only leaves the kernel's default ACK timing.
  (void)::setsockopt(native_socket, IPPROTO_TCP, TCP_QUICKACK, &on, sizeof on);
#else
  (void)native_socket;
#endif
}

asio::awaitable<request_outcome> run_ws_request(const transport_context& ctx, std::string id,
                                                request_spec spec,
                                                bench_clock::time_point deadline) {
  request_recorder rec(clock_seconds(bench_clock::now()), ctx.run_origin);
  rec.outcome().prompt_tokens = static_cast<int>(spec.prompt_ids.size());
  try {
    auto ex = co_await asio::this_coro::executor;
    tcp::resolver resolver(ex);
    websocket::stream<beast::tcp_stream> ws(ex);
    beast::get_lowest_layer(ws).expires_at(deadline);
    auto endpoints = co_await resolver.async_resolve(
        ctx.address.host, std::to_string(ctx.address.port), asio::use_awaitable);
    co_await beast::get_lowest_layer(ws).async_connect(endpoints, asio::use_awaitable);
    beast::get_lowest_layer(ws).socket().set_option(tcp::no_delay(true));
    const std::string key = ctx.api_key;
    ws.set_option(websocket::stream_base::decorator([key](websocket::request_type& req) {
      req.set(beast::http::field::user_agent, "kvserve-bench");
      if (!key.empty()) req.set(beast::http::field::authorization, "Bearer " + key);
    }));
    ws.read_message_max(64 << 20);
    beast::get_lowest_layer(ws).expires_at(deadline);
    co_await ws.async_handshake(ctx.address.host + ":" + std::to_string(ctx.address.port),
                                kWebSocketPath, asio::use_awaitable);
    ws.text(true);
    std::string frame = ws_start_frame(id, spec);
    beast::get_lowest_layer(ws).expires_at(deadline);
    if (ctx.tcp_quickack) set_tcp_quickack(beast::get_lowest_layer(ws).socket().native_handle());
    co_await ws.async_write(asio::buffer(frame), asio::use_awaitable);
    beast::flat_buffer buffer;
    while (!rec.finished()) {
      beast::get_lowest_layer(ws).expires_at(deadline);
      if (ctx.tcp_quickack) set_tcp_quickack(beast::get_lowest_layer(ws).socket().native_handle());
      co_await ws.async_read(buffer, asio::use_awaitable);
      double now = clock_seconds(bench_clock::now());
      std::string text = beast::buffers_to_string(buffer.data());
      buffer.consume(buffer.size());
      rec.on_event(parse_ws_frame(text, id), now);
    }
    // The generation has ended: drop the connection at once rather than wait for a close
    // handshake while holding a concurrency slot (the server treats it as a disconnect after
    // the stream's end).
    beast::error_code ignored;
    beast::get_lowest_layer(ws).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(ws).socket().close(ignored);
  } catch (const boost::system::system_error& e) {
    double now = clock_seconds(bench_clock::now());
    rec.fail(e.code() == beast::error::timeout ? std::string("timeout")
                                               : "websocket: " + e.code().message(),
             now);
  } catch (const std::exception& e) {
    rec.fail(std::string("websocket: ") + e.what(), clock_seconds(bench_clock::now()));
  }
  co_return rec.take();
}

}  // namespace kvserve::bench
