// The server with a fake engine on 127.0.0.1: HTTP endpoints, SSE, the WebSocket protocol, and
// the connection-level cases of the bad-input table (keys, sizes, binary frames, connection
// limit, overload, vanishing and slow clients). Every wait is bounded.

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <set>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "net/server.hpp"
#include "tests/net/fake_engine.hpp"

namespace kvserve {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using json = nlohmann::json;
using namespace std::chrono_literals;

struct reply {
  int status = 0;
  std::string body;
};

reply request(std::uint16_t port, http::verb verb, const std::string& target,
              const std::string& body = "", const std::string& auth = "") {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.expires_after(20s);
  stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, "127.0.0.1");
  if (!auth.empty()) req.set(http::field::authorization, auth);
  if (!body.empty()) req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 << 20);
  beast::error_code ec;
  http::read(stream, buffer, parser, ec);
  if (ec) return {-1, ec.message()};
  return {static_cast<int>(parser.get().result_int()), parser.get().body()};
}

reply post(std::uint16_t port, const std::string& target, const std::string& body,
           const std::string& auth = "") {
  return request(port, http::verb::post, target, body, auth);
}
reply get(std::uint16_t port, const std::string& target, const std::string& auth = "") {
  return request(port, http::verb::get, target, "", auth);
}

/// A blocking WebSocket client.
class ws_client {
 public:
  explicit ws_client(std::uint16_t port, const std::string& target = "/v1/ws", int rcvbuf = 0)
      : ws_(ioc_) {
    auto& sock = beast::get_lowest_layer(ws_);
    sock.open(tcp::v4());
    if (rcvbuf) sock.set_option(asio::socket_base::receive_buffer_size(rcvbuf));
    sock.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    ws_.handshake("127.0.0.1", target, ec_);
    if (!ec_) hello = read();
  }
  bool ok() const { return !ec_; }
  void send(const json& j) { ws_.write(asio::buffer(j.dump())); }
  void send_text(const std::string& s) { ws_.write(asio::buffer(s)); }
  void send_binary(const std::string& s) {
    ws_.binary(true);
    ws_.write(asio::buffer(s));
    ws_.text(true);
  }
  /// The next frame, or a json with "closed" after an error.
  json read() {
    beast::flat_buffer b;
    beast::error_code ec;
    ws_.read(b, ec);
    if (ec) return json{{"closed", ec.message()}};
    return json::parse(beast::buffers_to_string(b.data()));
  }
  websocket::stream<tcp::socket>& raw() { return ws_; }
  json hello;

 private:
  asio::io_context ioc_;
  websocket::stream<tcp::socket> ws_;
  beast::error_code ec_;
};

/// Reads frames until one has type `type` (or the socket closes), at most `limit` frames.
json read_until(ws_client& c, const std::string& type, int limit = 1 << 22) {
  json f;
  for (int i = 0; i < limit; ++i) {
    f = c.read();
    if (f.contains("closed") || f.value("type", "") == type) break;
  }
  return f;
}

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 10s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return pred();
}

class server_fixture : public ::testing::Test {
 protected:
  void start(testing::fake_engine_config ecfg = {}, server_config cfg = {}) {
    engine_ = std::make_unique<testing::fake_engine>(ecfg);
    cfg.port = 0;
    cfg.host = "127.0.0.1";
    if (!cfg.metrics_text) cfg.metrics_text = [] { return std::string("kvserve_up 1\n"); };
    server_ = std::make_unique<server>(cfg, *engine_);
    ASSERT_TRUE(server_->start().is_ok());
    port_ = server_->port();
    ASSERT_NE(port_, 0);
  }
  void TearDown() override {
    if (server_) server_->stop(1000ms);
    server_.reset();
    engine_.reset();
  }
  std::unique_ptr<testing::fake_engine> engine_;
  std::unique_ptr<server> server_;
  std::uint16_t port_ = 0;
};

TEST_F(server_fixture, health_models_metrics_and_playground) {
  start();
  EXPECT_EQ(get(port_, "/health").status, 200);
  reply models = get(port_, "/v1/models");
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(json::parse(models.body)["data"][0]["id"], "fake-model");
  reply metrics = get(port_, "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("kvserve_up"), std::string::npos);
  reply page = get(port_, "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("<html"), std::string::npos);
  EXPECT_NE(page.body.find("/v1/ws"), std::string::npos);
}

TEST_F(server_fixture, completion_without_streaming) {
  start();
  reply r = post(port_, "/v1/completions", R"({"prompt":"hello","max_tokens":3})");
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["choices"][0]["text"], "t0 t1 t2 ");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 5);
  EXPECT_EQ(j["usage"]["completion_tokens"], 3);
}

TEST_F(server_fixture, chat_completion_streams_sse_chunks) {
  start();
  reply r = post(port_, "/v1/chat/completions",
                 R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":4,"stream":true,
                     "stream_options":{"include_usage":true}})");
  ASSERT_EQ(r.status, 200) << r.body;
  std::string text;
  int chunks = 0;
  bool done = false;
  json usage;
  std::size_t pos = 0;
  while ((pos = r.body.find("data: ", pos)) != std::string::npos) {
    auto end = r.body.find("\n\n", pos);
    std::string payload = r.body.substr(pos + 6, end - pos - 6);
    pos = end;
    if (payload == "[DONE]") {
      done = true;
      continue;
    }
    json c = json::parse(payload);
    ++chunks;
    if (c.contains("usage")) usage = c["usage"];
    if (!c["choices"].empty() && c["choices"][0]["delta"].contains("content")) {
      text += c["choices"][0]["delta"]["content"].get<std::string>();
    }
  }
  EXPECT_TRUE(done);
  EXPECT_EQ(text, "t0 t1 t2 t3 ");
  EXPECT_GE(chunks, 6);  // role, 4 deltas, finish (+ usage)
  EXPECT_EQ(usage["completion_tokens"], 4);
}

TEST_F(server_fixture, keep_alive_serves_several_requests_on_one_connection) {
  start();
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.expires_after(20s);
  stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
  for (int i = 0; i < 3; ++i) {
    http::request<http::string_body> req{http::verb::post, "/v1/completions", 11};
    req.set(http::field::host, "x");
    req.body() =
        R"({"prompt":"a","max_tokens":2,"stream":)" + std::string(i % 2 ? "true" : "false") + "}";
    req.prepare_payload();
    http::write(stream, req);
    beast::flat_buffer b;
    http::response<http::string_body> res;
    http::read(stream, b, res);
    EXPECT_EQ(res.result_int(), 200u);
    EXPECT_NE(res.body().find("t1 "), std::string::npos);
  }
}

TEST_F(server_fixture, websocket_multiplexes_generations_by_id) {
  start({.step_delay = 200us});
  ws_client c(port_);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c.hello["protocol"], "kvserve.v1");
  c.send({{"type", "start"}, {"id", "a"}, {"prompt", "one"}, {"max_tokens", 5}});
  c.send({{"type", "start"}, {"id", "b"}, {"prompt", "three"}, {"max_tokens", 7}, {"logprobs", 1}});
  std::map<std::string, std::string> text;
  std::map<std::string, json> done;
  std::map<std::string, int> accepted_prompt;
  for (int i = 0; i < 100 && done.size() < 2; ++i) {
    json f = c.read();
    ASSERT_FALSE(f.contains("closed"));
    std::string id = f.value("id", "");
    if (f["type"] == "accepted") accepted_prompt[id] = f["prompt_tokens"];
    if (f["type"] == "delta") {
      text[id] += f["text"].get<std::string>();
      if (id == "b") {
        EXPECT_EQ(f["logprobs"].size(), 1u);
      }
    }
    if (f["type"] == "done") done[id] = f;
  }
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(text["a"], "t0 t1 t2 t3 t4 ");
  EXPECT_EQ(text["b"], "t0 t1 t2 t3 t4 t5 t6 ");
  EXPECT_EQ(accepted_prompt["a"], 3);
  EXPECT_EQ(accepted_prompt["b"], 5);
  EXPECT_EQ(done["b"]["usage"]["completion_tokens"], 7);
  EXPECT_EQ(done["b"]["timings"]["inter_token_latencies_s"].size(), 6u);
}

TEST_F(server_fixture, websocket_cancel_ends_the_stream) {
  start({.step_delay = 1ms});
  ws_client c(port_);
  c.send({{"type", "start"}, {"id", "long"}, {"prompt", "x"}, {"max_tokens", 100000}});
  json f = read_until(c, "delta");
  ASSERT_EQ(f["type"], "delta") << f.dump();
  c.send({{"type", "cancel"}, {"id", "long"}});
  for (int i = 0; i < 100000; ++i) {
    f = c.read();
    ASSERT_FALSE(f.contains("closed"));
    if (f["type"] == "done") break;
  }
  EXPECT_EQ(f["finish_reason"], "cancelled");
  EXPECT_TRUE(eventually([&] { return engine_->num_running() == 0; }));
  // The id may be reused once its generation ended.
  c.send({{"type", "start"}, {"id", "long"}, {"prompt", "x"}, {"max_tokens", 1}});
  f = read_until(c, "done");
  EXPECT_EQ(f["finish_reason"], "length");
}

struct ws_error_case {
  const char* name;
  std::string frame;
  const char* code;
};

TEST_F(server_fixture, websocket_bad_frames_get_error_frames_and_the_socket_survives) {
  server_config cfg;
  cfg.limits.max_streams_per_connection = 2;
  start({.step_delay = 1ms}, cfg);
  ws_client c(port_);
  const std::vector<ws_error_case> cases = {
      {"malformed_json", "{\"type\":", "invalid_json"},
      {"unknown_type", R"({"type":"resume","id":"z"})", "unknown_type"},
      {"bad_parameter", R"({"type":"start","id":"p","prompt":"x","temperature":-3})",
       "invalid_argument"},
      {"unknown_cancel", R"({"type":"cancel","id":"nope"})", "unknown_id"},
  };
  for (const auto& k : cases) {
    c.send_text(k.frame);
    json f = c.read();
    EXPECT_EQ(f["type"], "error") << k.name;
    EXPECT_EQ(f["code"], k.code) << k.name;
  }
  c.send_binary("\x01\x02");
  json f = c.read();
  EXPECT_EQ(f["code"], "binary_frame");
  // Two long streams fill the connection's quota; a duplicate id and a third stream fail.
  c.send({{"type", "start"}, {"id", "s1"}, {"prompt", "x"}, {"max_tokens", 100000}});
  c.send({{"type", "start"}, {"id", "s1"}, {"prompt", "x"}, {"max_tokens", 1}});
  c.send({{"type", "start"}, {"id", "s2"}, {"prompt", "x"}, {"max_tokens", 100000}});
  c.send({{"type", "start"}, {"id", "s3"}, {"prompt", "x"}, {"max_tokens", 1}});
  std::set<std::string> errors;
  for (int i = 0; i < 100000 && errors.size() < 2; ++i) {
    f = c.read();
    ASSERT_FALSE(f.contains("closed"));
    if (f["type"] == "error")
      errors.insert(f["code"].get<std::string>() + ":" + f["id"].get<std::string>());
  }
  EXPECT_TRUE(errors.count("duplicate_id:s1"));
  EXPECT_TRUE(errors.count("too_many_streams:s3"));
  c.send({{"type", "ping"}});
  for (int i = 0; i < 100000; ++i) {
    f = c.read();
    if (f["type"] == "pong" || f.contains("closed")) break;
  }
  EXPECT_EQ(f["type"], "pong");
}

TEST_F(server_fixture, websocket_frame_over_the_limit_closes_the_socket_and_cancels) {
  server_config cfg;
  cfg.limits.max_frame_bytes = 1024;
  start({.step_delay = 1ms}, cfg);
  ws_client c(port_);
  c.send({{"type", "start"}, {"id", "s"}, {"prompt", "x"}, {"max_tokens", 100000}});
  json f = read_until(c, "delta");
  ASSERT_EQ(f["type"], "delta") << f.dump();
  c.send_text(std::string(4096, ' '));
  for (int i = 0; i < 200000; ++i) {
    f = c.read();
    if (f.contains("closed")) break;
  }
  EXPECT_TRUE(f.contains("closed"));
  EXPECT_EQ(c.raw().reason().code, websocket::close_code::too_big);
  EXPECT_TRUE(eventually([&] { return engine_->num_running() == 0; }));
}

struct http_error_case {
  const char* name;
  http::verb verb;
  const char* target;
  std::string body;
  std::string auth;
  int status;
  const char* code;
};

TEST_F(server_fixture, http_bad_input_table) {
  server_config cfg;
  cfg.api_key = "sekret";
  cfg.limits.max_request_bytes = 4096;
  start({.max_model_len = 128}, cfg);
  const std::string key = "Bearer sekret";
  const std::vector<http_error_case> cases = {
      {"missing_key", http::verb::get, "/v1/models", "", "", 401, "unauthorized"},
      {"wrong_key", http::verb::get, "/v1/models", "", "Bearer nope", 401, "unauthorized"},
      {"metrics_need_key", http::verb::get, "/metrics", "", "", 401, "unauthorized"},
      {"malformed_json", http::verb::post, "/v1/completions", "{\"prompt\":", key, 400,
       "invalid_json"},
      {"bad_parameter", http::verb::post, "/v1/completions", R"({"prompt":"x","top_p":2})", key,
       400, "invalid_argument"},
      {"prompt_too_long", http::verb::post, "/v1/completions",
       R"({"prompt":")" + std::string(200, 'x') + R"("})", key, 400, "invalid_argument"},
      {"body_too_large", http::verb::post, "/v1/completions",
       R"({"prompt":")" + std::string(5000, 'x') + R"("})", key, 413, "payload_too_large"},
      {"unknown_path", http::verb::get, "/v2/nothing", "", key, 404, "not_found"},
      {"wrong_method", http::verb::get, "/v1/completions", "", key, 405, "method_not_allowed"},
      {"wrong_model", http::verb::post, "/v1/completions", R"({"model":"x","prompt":"y"})", key,
       404, "model_not_found"},
      {"no_tokenizer", http::verb::post, "/tokenize", R"({"prompt":"y"})", key, 501, "unsupported"},
      {"ws_without_upgrade", http::verb::get, "/v1/ws", "", key, 400, "invalid_argument"},
  };
  for (const auto& k : cases) {
    reply r = request(port_, k.verb, k.target, k.body, k.auth);
    EXPECT_EQ(r.status, k.status) << k.name << ": " << r.body;
    if (r.status > 0) {
      json j = json::parse(r.body, nullptr, false);
      EXPECT_EQ(j["error"]["code"], k.code) << k.name;
    }
  }
  // No key needed for the health check and the page; the right key works.
  EXPECT_EQ(get(port_, "/health").status, 200);
  EXPECT_EQ(get(port_, "/").status, 200);
  EXPECT_EQ(get(port_, "/v1/models", key).status, 200);
  // WebSocket: the upgrade needs the key, by header or by ?api_key= (browsers).
  EXPECT_FALSE(ws_client(port_).ok());
  EXPECT_TRUE(ws_client(port_, "/v1/ws?api_key=sekret").ok());
}

TEST_F(server_fixture, overload_gives_429_and_an_overloaded_frame) {
  start({.max_running = 0});
  reply r = post(port_, "/v1/completions", R"({"prompt":"x","max_tokens":2})");
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(json::parse(r.body)["error"]["code"], "overloaded");
  reply s = post(port_, "/v1/completions", R"({"prompt":"x","max_tokens":2,"stream":true})");
  EXPECT_EQ(s.status, 429);
  ws_client c(port_);
  c.send({{"type", "start"}, {"id", "o"}, {"prompt", "x"}});
  json f = c.read();
  EXPECT_EQ(f["type"], "error");
  EXPECT_EQ(f["id"], "o");
  EXPECT_EQ(f["code"], "overloaded");
}

TEST_F(server_fixture, too_many_connections_get_503) {
  server_config cfg;
  cfg.limits.max_connections = 2;
  start({}, cfg);
  asio::io_context ioc;
  tcp::socket a(ioc), b(ioc);
  a.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
  b.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
  ASSERT_TRUE(eventually([&] { return server_->num_connections() == 2; }));
  reply r = get(port_, "/health");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(json::parse(r.body)["error"]["code"], "too_many_connections");
  a.close();
  b.close();
  ASSERT_TRUE(eventually([&] { return server_->num_connections() == 0; }));
  EXPECT_EQ(get(port_, "/health").status, 200);
}

TEST_F(server_fixture, disconnect_mid_stream_cancels_the_generation) {
  start({.step_delay = 1ms});
  {
    ws_client c(port_);
    c.send({{"type", "start"}, {"id", "a"}, {"prompt", "x"}, {"max_tokens", 100000}});
    json f = read_until(c, "delta");
    ASSERT_EQ(f["type"], "delta") << f.dump();
  }  // socket closed without a close frame
  EXPECT_TRUE(eventually([&] { return engine_->num_running() == 0; }));
  EXPECT_GE(engine_->num_cancels(), 1);
  // The same for HTTP: a non-streaming completion whose client leaves.
  {
    asio::io_context ioc;
    beast::tcp_stream stream(ioc);
    stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
    http::request<http::string_body> req{http::verb::post, "/v1/completions", 11};
    req.body() = R"({"prompt":"x","max_tokens":100000})";
    req.prepare_payload();
    http::write(stream, req);
    ASSERT_TRUE(eventually([&] { return engine_->num_running() == 1; }));
  }
  EXPECT_TRUE(eventually([&] { return engine_->num_running() == 0; }));
  EXPECT_GE(engine_->num_cancels(), 2);
  EXPECT_TRUE(eventually([&] { return server_->num_active_generations() == 0; }));
}

TEST_F(server_fixture, a_client_that_stops_reading_is_cancelled_with_slow_consumer) {
  server_config cfg;
  cfg.limits.max_pending_frames_per_stream = 16;
  // 4 KiB tokens: the kernel's socket buffers (a few MiB) fill within a few thousand tokens,
  // not the tens of thousands of short ones a loaded machine may not produce in time.
  start({.max_model_len = 1 << 22, .token_padding = 4096}, cfg);
  ws_client c(port_, "/v1/ws", 4096);
  c.send({{"type", "start"}, {"id", "flood"}, {"prompt", "x"}, {"max_tokens", 1 << 20}});
  // Do not read: the socket buffers fill, the queue reaches its bound, the engine is told.
  ASSERT_TRUE(eventually([&] { return engine_->num_cancels() >= 1; }, 60s));
  EXPECT_TRUE(eventually([&] { return engine_->num_running() == 0; }));
  json f;
  for (int i = 0; i < (1 << 21); ++i) {
    f = c.read();
    if (f.contains("closed") || f["type"] == "error" || f["type"] == "done") break;
  }
  EXPECT_EQ(f["type"], "error");
  EXPECT_EQ(f["code"], "slow_consumer");
}

TEST_F(server_fixture, stop_with_grace_lets_in_flight_work_finish) {
  start({.step_delay = 1ms});
  ws_client c(port_);
  c.send({{"type", "start"}, {"id", "a"}, {"prompt", "x"}, {"max_tokens", 20}});
  json f = read_until(c, "accepted");
  ASSERT_EQ(f["type"], "accepted") << f.dump();
  std::thread stopper([&] { server_->stop(5000ms); });
  for (int i = 0; i < 100; ++i) {
    f = c.read();
    if (f.contains("closed") || f["type"] == "done") break;
  }
  stopper.join();
  EXPECT_EQ(f["type"], "done");
  EXPECT_EQ(f["finish_reason"], "length");
  EXPECT_EQ(server_->num_active_generations(), 0);
}

}  // namespace
}  // namespace kvserve
