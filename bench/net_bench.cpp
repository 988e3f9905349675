// Network-layer cost, measured with a fake engine (tests/net/fake_engine.hpp) so that only the
// server is timed:
//  1. latency added per token: the engine stamps each token with steady_clock time; the
//     in-process API (engine callback) and a WebSocket client on loopback note when it
//     arrives. Medians and p99 over all tokens.
//  2. streaming throughput: a backend that returns at once, N sockets x M streams; tokens per
//     second delivered to the clients as WebSocket frames and as SSE events.
// Usage: net_bench [--tokens N] [--sockets S] [--streams M]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "net/server.hpp"
#include "tests/net/fake_engine.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

double now_ns() { return static_cast<double>(clock_type::now().time_since_epoch().count()); }

struct percentiles {
  double p50, p99;
};
percentiles summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)]};
}

percentiles in_process_latency(int tokens) {
  kvserve::testing::fake_engine eng(
      {.step_delay = std::chrono::microseconds{200}, .stamp_tokens = true});
  std::vector<double> lat;
  lat.reserve(tokens);
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  kvserve::generate_request req;
  req.prompt = std::string("x");
  req.max_tokens = tokens;
  eng.submit(req, [&](kvserve::request_id, const kvserve::generation_event& ev) {
    if (auto* t = std::get_if<kvserve::token_event>(&ev)) {
      lat.push_back(now_ns() - std::stod(t->text));
    } else if (std::holds_alternative<kvserve::finished_event>(ev)) {
      std::lock_guard lock(mu);
      done = true;
      cv.notify_all();
    }
  });
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return done; });
  return summarize(lat);
}

percentiles websocket_latency(int tokens) {
  kvserve::testing::fake_engine eng(
      {.step_delay = std::chrono::microseconds{200}, .stamp_tokens = true});
  kvserve::server_config cfg;
  cfg.port = 0;
  kvserve::server srv(cfg, eng);
  if (!srv.start()) std::abort();
  asio::io_context ioc;
  websocket::stream<tcp::socket> ws(ioc);
  beast::get_lowest_layer(ws).connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), srv.port()));
  ws.handshake("127.0.0.1", "/v1/ws");
  beast::flat_buffer b;
  ws.read(b);  // hello
  b.clear();
  ws.write(asio::buffer(
      json{{"type", "start"}, {"id", "a"}, {"prompt", "x"}, {"max_tokens", tokens}}.dump()));
  std::vector<double> lat;
  for (;;) {
    ws.read(b);
    double t = now_ns();
    json f = json::parse(beast::buffers_to_string(b.data()));
    b.clear();
    if (f["type"] == "delta") lat.push_back(t - std::stod(f["text"].get<std::string>()));
    if (f["type"] == "done") break;
  }
  ws.close(websocket::close_code::normal);
  srv.stop();
  return summarize(lat);
}

double websocket_throughput(int sockets, int streams, int tokens) {
  kvserve::testing::fake_engine eng;
  kvserve::server_config cfg;
  cfg.port = 0;
  cfg.limits.max_streams_per_connection = streams;
  kvserve::server srv(cfg, eng);
  if (!srv.start()) std::abort();
  std::vector<std::thread> clients;
  std::atomic<long> frames{0};
  auto t0 = clock_type::now();
  for (int s = 0; s < sockets; ++s) {
    clients.emplace_back([&, s] {
      asio::io_context ioc;
      websocket::stream<tcp::socket> ws(ioc);
      beast::get_lowest_layer(ws).connect(
          tcp::endpoint(asio::ip::make_address("127.0.0.1"), srv.port()));
      ws.handshake("127.0.0.1", "/v1/ws");
      beast::flat_buffer b;
      ws.read(b);
      b.clear();
      for (int m = 0; m < streams; ++m) {
        ws.write(asio::buffer(json{
            {"type", "start"}, {"id", std::to_string(m)}, {"prompt", "x"}, {"max_tokens", tokens}}
                                  .dump()));
      }
      int done = 0;
      long local = 0;
      while (done < streams) {
        ws.read(b);
        std::string_view v(static_cast<const char*>(b.data().data()), b.size());
        if (v.find("\"delta\"") != std::string_view::npos) ++local;
        if (v.find("\"done\"") != std::string_view::npos) ++done;
        b.clear();
      }
      frames += local;
      ws.close(websocket::close_code::normal);
    });
  }
  for (auto& t : clients) t.join();
  double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
  srv.stop();
  return frames / secs;
}

double sse_throughput(int clients_n, int tokens) {
  kvserve::testing::fake_engine eng;
  kvserve::server_config cfg;
  cfg.port = 0;
  kvserve::server srv(cfg, eng);
  if (!srv.start()) std::abort();
  std::atomic<long> events{0};
  auto t0 = clock_type::now();
  std::vector<std::thread> clients;
  for (int c = 0; c < clients_n; ++c) {
    clients.emplace_back([&] {
      asio::io_context ioc;
      beast::tcp_stream stream(ioc);
      stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), srv.port()));
      http::request<http::string_body> req{http::verb::post, "/v1/completions", 11};
      req.body() = json{{"prompt", "x"}, {"max_tokens", tokens}, {"stream", true}}.dump();
      req.prepare_payload();
      http::write(stream, req);
      beast::flat_buffer b;
      http::response_parser<http::string_body> p;
      p.body_limit(1 << 30);
      http::read(stream, b, p);
      const std::string& body = p.get().body();
      long n = 0;
      for (std::size_t pos = 0; (pos = body.find("\"text\":\"", pos)) != std::string::npos; ++pos)
        ++n;
      events += n;
    });
  }
  for (auto& t : clients) t.join();
  double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
  srv.stop();
  return events / secs;
}

}  // namespace

int main(int argc, char** argv) {
  int tokens = 5000, sockets = 4, streams = 16;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--tokens")) tokens = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--sockets")) sockets = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--streams")) streams = std::atoi(argv[i + 1]);
  }
  auto in_proc = in_process_latency(tokens);
  auto ws = websocket_latency(tokens);
  std::printf("per-token delivery latency over %d tokens (engine stamp -> receiver):\n", tokens);
  std::printf("  in-process callback : p50 %8.1f us  p99 %8.1f us\n", in_proc.p50 / 1e3,
              in_proc.p99 / 1e3);
  std::printf("  WebSocket, loopback : p50 %8.1f us  p99 %8.1f us\n", ws.p50 / 1e3, ws.p99 / 1e3);
  std::printf("  added by the network layer (p50): %.1f us\n", (ws.p50 - in_proc.p50) / 1e3);
  double wst = websocket_throughput(sockets, streams, tokens / 10);
  std::printf(
      "WebSocket streaming throughput: %d sockets x %d streams x %d tokens: %.0f tokens/s\n",
      sockets, streams, tokens / 10, wst);
  double sse = sse_throughput(sockets * 4, tokens / 10);
  std::printf("SSE streaming throughput: %d clients x %d tokens: %.0f tokens/s\n", sockets * 4,
              tokens / 10, sse);
  return 0;
}
