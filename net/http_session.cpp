// One HTTP/1.1 connection: routing, the OpenAI endpoints (SSE streaming or one JSON body),
// /tokenize, /detokenize, /v1/models, /health, /metrics and the playground page.

#include <deque>
#include <sstream>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include "net/openai_codec.hpp"
#include "net/playground.hpp"
#include "net/server_impl.hpp"
#include "net/ws_protocol.hpp"

namespace kvserve::net {

namespace {

std::string chunk(std::string_view data) {
  std::ostringstream os;
  os << std::hex << data.size() << "\r\n" << data << "\r\n";
  return os.str();
}

std::string_view path_of(std::string_view target) { return target.substr(0, target.find('?')); }

bool is_final(const generation_event& ev) {
  return std::holds_alternative<finished_event>(ev) || std::holds_alternative<error_event>(ev);
}

/// One in-flight OpenAI generation on the connection.
struct http_generation {
  http_generation(const openai_request& req, const text_codec& codec, std::string model,
                  std::string id, std::int64_t created, unsigned version, bool keep_alive)
      : encoder(req, codec, std::move(model), std::move(id), created),
        streaming(req.stream),
        version(version),
        keep_alive(keep_alive) {}

  openai_encoder encoder;
  bool streaming;
  unsigned version;
  bool keep_alive;
  std::optional<request_id> engine_id;
  bool headers_sent = false;
  bool done = false;
  bool cancelled = false;   ///< cancel sent to the engine
  bool overflowed = false;  ///< the client stopped reading: output is dropped
};

class http_session : public session_base, public std::enable_shared_from_this<http_session> {
 public:
  http_session(server::impl& srv, tcp::socket socket) : srv_(srv), stream_(std::move(socket)) {
    over_limit_ = ++srv_.num_connections > srv_.config.limits.max_connections;
  }
  ~http_session() override {
    if (gen_ && !gen_->done && gen_->engine_id) srv_.eng.cancel(*gen_->engine_id);
    if (!handed_over_) --srv_.num_connections;
  }

  void run() {
    srv_.register_session(shared_from_this());
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
  }

  void shutdown() override {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      self->closing_ = true;
      if (self->gen_ && !self->gen_->done) {
        self->cancel_generation();
      } else if (!self->writing_) {
        self->close();
      }
    });
  }

 private:
  void do_read() {
    if (closing_) return close();
    parser_.emplace();
    parser_->body_limit(srv_.config.limits.max_request_bytes);
    stream_.expires_after(srv_.config.limits.idle_timeout);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::body_limit) {
      http_request req;
      req.version(11);
      req.keep_alive(false);
      return send(make_json_response(
          req, http::status::payload_too_large,
          openai_error_body({error_code::kPayloadTooLarge,
                             "the request body exceeds " +
                                 std::to_string(srv_.config.limits.max_request_bytes) + " bytes",
                             413})));
    }
    if (ec) return close();
    handle(parser_->release());
  }

  void send_error(const http_request& req, const api_error& err) {
    send(make_json_response(req, static_cast<http::status>(err.http_status),
                            openai_error_body(err)));
  }

  void handle(http_request req) {
    if (over_limit_) {
      req.keep_alive(false);
      return send_error(
          req, {error_code::kTooManyConnections, "the server has too many open connections", 503});
    }
    if (srv_.stopping) {
      req.keep_alive(false);
      return send_error(req, {error_code::kShuttingDown, "the server is shutting down", 503});
    }
    const std::string_view path = path_of(req.target());
    const bool get = req.method() == http::verb::get;
    const bool post = req.method() == http::verb::post;
    if (path == "/health") {
      if (!get) return method_not_allowed(req);
      return send(make_json_response(req, http::status::ok, ""));
    }
    if (path == "/" || path == "/index.html") {
      if (!get) return method_not_allowed(req);
      http::response<http::string_body> res{http::status::ok, req.version()};
      res.set(http::field::server, "kvserve");
      res.set(http::field::content_type, "text/html; charset=utf-8");
      res.keep_alive(req.keep_alive());
      res.body() = std::string(playground_html());
      res.prepare_payload();
      return send(std::move(res));
    }
    if (!srv_.authorized(req)) {
      return send_error(req, {error_code::kUnauthorized, "missing or wrong API key", 401});
    }
    if (path == kWebSocketPath) {
      if (!beast::websocket::is_upgrade(req)) {
        return send_error(
            req, {error_code::kInvalidArgument, "this endpoint needs a WebSocket upgrade", 400});
      }
      handed_over_ = true;
      --srv_.num_connections;  // the WebSocket session counts itself
      stream_.expires_never();
      return start_websocket_session(srv_, std::move(stream_), std::move(req));
    }
    if (path == "/metrics") {
      if (!get) return method_not_allowed(req);
      if (!srv_.config.metrics_text) {
        return send_error(req, {error_code::kNotFound, "metrics are not enabled", 404});
      }
      auto res = make_json_response(req, http::status::ok, srv_.config.metrics_text());
      res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      return send(std::move(res));
    }
    if (path == "/v1/models") {
      if (!get) return method_not_allowed(req);
      return send(make_json_response(
          req, http::status::ok,
          models_body(srv_.model_name, srv_.bounds.max_model_len, srv_.created_unix)));
    }
    if (path == "/tokenize" || path == "/detokenize") {
      if (!post) return method_not_allowed(req);
      const text_codec& codec = srv_.config.codec;
      if (!codec.encode || !codec.decode) {
        return send_error(req, {error_code::kUnsupported, "no tokenizer is configured", 501});
      }
      simple_reply r = path == "/tokenize"
                           ? handle_tokenize(req.body(), codec, srv_.bounds.max_model_len)
                           : handle_detokenize(req.body(), codec, srv_.vocab_size);
      return send(
          make_json_response(req, static_cast<http::status>(r.http_status), std::move(r.body)));
    }
    if (path == "/v1/completions" || path == "/v1/chat/completions") {
      if (!post) return method_not_allowed(req);
      return start_generation(req, path == "/v1/completions" ? openai_endpoint::kCompletions
                                                             : openai_endpoint::kChatCompletions);
    }
    return send_error(req, {error_code::kNotFound, "no such endpoint: " + std::string(path), 404});
  }

  void method_not_allowed(const http_request& req) {
    send_error(req, {error_code::kMethodNotAllowed,
                     std::string(req.method_string()) + " is not allowed here", 405});
  }

  void start_generation(const http_request& req, openai_endpoint endpoint) {
    auto parsed =
        parse_openai_request(endpoint, req.body(), srv_.bounds, srv_.vocab_size, srv_.model_name);
    if (!parsed.ok()) return send_error(req, parsed.error);
    openai_request& oreq = *parsed.value;
    const bool chat = endpoint == openai_endpoint::kChatCompletions;
    std::string id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(srv_.next_response_id++);
    auto now = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    gen_.emplace(oreq, srv_.config.codec, srv_.model_name, std::move(id), now, req.version(),
                 req.keep_alive());
    stream_.expires_never();  // a generation may take long; a client that leaves is noticed
    watch_for_disconnect();

    ++srv_.num_active_generations;
    std::weak_ptr<http_session> weak = weak_from_this();
    auto gate = srv_.gate;
    auto ex = stream_.get_executor();
    std::atomic<int>* active = &srv_.num_active_generations;
    // The server outlives every engine callback: stop() waits for the final events (bounded),
    // and the gate drops events once the io_context is going away.
    auto on_event = [weak, gate, ex, active](request_id, const generation_event& ev) {
      if (is_final(ev)) --*active;
      gate->post(ex, [weak, ev] {
        if (auto self = weak.lock()) self->on_event(ev);
      });
    };
    gen_->engine_id = srv_.eng.submit(std::move(oreq.request), std::move(on_event));
  }

  /// While a generation runs, a read notices a client that goes away. Bytes of a pipelined
  /// next request are kept for the parser.
  void watch_for_disconnect() {
    if (watching_) return;
    watching_ = true;
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              self->watching_ = false;
                              if (ec) {
                                self->client_gone_ = true;
                                if (self->gen_ && !self->gen_->done) {
                                  self->cancel_generation();
                                } else if (!self->writing_) {
                                  self->close();
                                }
                                return;
                              }
                              self->buffer_.commit(n);
                              if (!self->gen_)
                                self->do_read();  // the response is out: parse the next request
                            });
  }

  void cancel_generation() {
    if (!gen_ || gen_->cancelled || !gen_->engine_id) return;
    gen_->cancelled = true;
    srv_.eng.cancel(*gen_->engine_id);
  }

  void on_event(const generation_event& ev) {
    if (!gen_ || gen_->done) return;
    http_generation& g = *gen_;
    const bool final = is_final(ev);
    if (!g.streaming) {
      g.encoder.on_event(ev);
      if (!g.encoder.finished()) return;
      g.done = true;
      http_request req;
      req.version(g.version);
      req.keep_alive(g.keep_alive && !client_gone_);
      auto res = make_json_response(req, static_cast<http::status>(g.encoder.http_status()),
                                    g.encoder.body());
      return finish_generation(std::move(res));
    }
    if (!g.headers_sent) {
      if (const auto* err = std::get_if<error_event>(&ev)) {
        // Rejected before anything was sent: a plain HTTP error (429 when overloaded).
        g.done = true;
        http_request req;
        req.version(g.version);
        req.keep_alive(g.keep_alive && !client_gone_);
        api_error e = from_status(err->error);
        return finish_generation(make_json_response(req, static_cast<http::status>(e.http_status),
                                                    openai_error_body(e)));
      }
      g.headers_sent = true;
      http::response<http::empty_body> res{http::status::ok, g.version};
      res.set(http::field::server, "kvserve");
      res.set(http::field::content_type, "text/event-stream");
      res.set(http::field::cache_control, "no-cache");
      res.keep_alive(g.keep_alive);
      res.chunked(true);
      std::ostringstream os;
      os << res.base();
      queue(os.str());
    }
    if (g.overflowed && !final) return;
    if (!final &&
        static_cast<int>(queue_.size()) >= srv_.config.limits.max_pending_frames_per_stream) {
      g.overflowed = true;  // the client stopped reading: cancel, keep the queue bounded
      cancel_generation();
      return;
    }
    std::string out;
    if (final && g.overflowed) {
      out = sse_data(openai_error_body(
                {error_code::kSlowConsumer, "the client did not read its stream in time", 400})) +
            sse_done();
    } else {
      out = g.encoder.on_event(ev);
    }
    if (!out.empty()) queue(chunk(out));
    if (final) {
      g.done = true;
      queue("0\r\n\r\n");
    }
  }

  void finish_generation(http::response<http::string_body> res) {
    std::ostringstream os;
    os << res;
    queue(os.str());
  }

  void queue(std::string data) {
    if (client_gone_ && !gen_) return;
    queue_.push_back(std::move(data));
    if (!writing_) do_write();
  }

  void do_write() {
    writing_ = true;
    asio::async_write(
        stream_, asio::buffer(queue_.front()),
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_write(ec); });
  }

  void on_write(beast::error_code ec) {
    writing_ = false;
    queue_.pop_front();
    if (ec) {
      client_gone_ = true;
      queue_.clear();
      if (gen_ && !gen_->done) {
        cancel_generation();
        return;  // the final event arrives later and finds the client gone
      }
      return close();
    }
    if (!queue_.empty()) return do_write();
    if (gen_ && gen_->done) {
      const bool keep = gen_->keep_alive && !client_gone_ && !closing_;
      gen_.reset();
      if (!keep) return close();
      stream_.expires_after(srv_.config.limits.idle_timeout);
      if (!watching_) do_read();  // else the watch read's completion resumes reading
      return;
    }
    if (!gen_ && close_after_write_) close();
  }

  template <class Body>
  void send(http::response<Body> res) {
    close_after_write_ = !res.keep_alive();
    auto msg = std::make_shared<http::response<Body>>(std::move(res));
    writing_ = true;
    http::async_write(stream_, *msg,
                      [self = shared_from_this(), msg](beast::error_code ec, std::size_t) {
                        self->writing_ = false;
                        if (ec || self->close_after_write_ || self->closing_) return self->close();
                        self->do_read();
                      });
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.close();
  }

  server::impl& srv_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http_generation> gen_;
  std::deque<std::string> queue_;
  bool over_limit_ = false;
  bool handed_over_ = false;
  bool writing_ = false;
  bool watching_ = false;
  bool client_gone_ = false;
  bool closing_ = false;
  bool closed_ = false;
  bool close_after_write_ = false;
};

}  // namespace

http::response<http::string_body> make_json_response(const http_request& req, http::status status,
                                                     std::string body) {
  http::response<http::string_body> res{status, req.version() ? req.version() : 11};
  res.set(http::field::server, "kvserve");
  res.set(http::field::content_type, "application/json");
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

void start_http_session(server::impl& srv, tcp::socket socket) {
  std::make_shared<http_session>(srv, std::move(socket))->run();
}

}  // namespace kvserve::net
