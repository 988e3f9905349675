// One WebSocket connection speaking kvserve.v1 (docs/protocol.md): several generations
// multiplexed by client id, one outstanding write, a bounded queue per stream.

#include <deque>
#include <unordered_map>

#include <boost/asio/dispatch.hpp>
#include <boost/beast/websocket.hpp>

#include "net/server_impl.hpp"
#include "net/ws_protocol.hpp"

namespace kvserve::net {

namespace websocket = beast::websocket;

namespace {

class websocket_session : public session_base,
                          public std::enable_shared_from_this<websocket_session> {
 public:
  websocket_session(server::impl& srv, beast::tcp_stream stream)
      : srv_(srv), ws_(std::move(stream)) {
    ++srv_.num_connections;
  }
  ~websocket_session() override {
    for (auto& [id, s] : streams_) {
      if (s.engine_id) srv_.eng.cancel(*s.engine_id);
    }
    --srv_.num_connections;
  }

  void run(http_request req) {
    srv_.register_session(shared_from_this());
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "kvserve"); }));
    ws_.read_message_max(srv_.config.limits.max_frame_bytes);
    ws_.text(true);
    ws_.async_accept(req, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return;
      self->queue(encode_ws_hello(self->srv_.model_name, self->srv_.bounds));
      self->do_read();
    });
  }

  void shutdown() override {
    asio::post(ws_.get_executor(), [self = shared_from_this()] {
      self->closing_ = true;
      self->cancel_all();
      self->maybe_close();
    });
  }

 private:
  struct stream_state {
    std::uint64_t serial = 0;  ///< tells this stream from an earlier one with the same id
    std::optional<request_id> engine_id;
    int pending_frames = 0;
    bool cancelled = false;
    bool overflowed = false;
  };
  struct frame {
    std::string data;
    std::uint64_t serial = 0;  ///< the stream's serial; 0: not counted
  };

  void do_read() {
    ws_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_read(ec);
    });
  }

  void on_read(beast::error_code ec) {
    if (ec) {
      // Closed, reset, or a frame over max_frame_bytes (Beast closes with 1009): the client's
      // generations are cancelled and their blocks return to the cache.
      read_closed_ = true;
      cancel_all();
      return;
    }
    if (!ws_.got_text()) {
      buffer_.consume(buffer_.size());
      queue(encode_ws_error({}, {error_code::kBinaryFrame,
                                 "binary frames are not accepted: send "
                                 "JSON text frames",
                                 400}));
      return do_read();
    }
    std::string text = beast::buffers_to_string(buffer_.data());
    buffer_.consume(buffer_.size());
    handle(text);
    if (!closing_) do_read();
  }

  void handle(const std::string& text) {
    std::string id;
    auto parsed = parse_ws_message(text, srv_.bounds, srv_.vocab_size, &id);
    if (!parsed.ok()) return queue(encode_ws_error(id, parsed.error));
    std::visit([this](auto& m) { on_message(m); }, *parsed.value);
  }

  void on_message(ws_ping&) { queue(encode_ws_pong()); }

  void on_message(ws_cancel& m) {
    auto it = streams_.find(m.id);
    if (it == streams_.end()) {
      return queue(encode_ws_error(
          m.id, {error_code::kUnknownId, "no running generation has id '" + m.id + "'", 400}));
    }
    cancel(it->second);
  }

  void on_message(ws_start& m) {
    if (closing_ || srv_.stopping) {
      return queue(
          encode_ws_error(m.id, {error_code::kShuttingDown, "the server is shutting down", 503}));
    }
    if (streams_.count(m.id)) {
      return queue(encode_ws_error(
          m.id, {error_code::kDuplicateId, "a generation with id '" + m.id + "' is running", 400}));
    }
    if (static_cast<int>(streams_.size()) >= srv_.config.limits.max_streams_per_connection) {
      return queue(encode_ws_error(
          m.id, {error_code::kTooManyStreams,
                 "at most " + std::to_string(srv_.config.limits.max_streams_per_connection) +
                     " generations may run on one connection",
                 400}));
    }
    // Best effort: without a chat renderer (no tokenizer configured) the hint is ignored.
    const text_codec& codec = srv_.config.codec;
    if (m.retain_system_prompt && codec.render_chat && codec.encode) {
      std::vector<chat_message> system;
      for (const auto& msg : std::get<std::vector<chat_message>>(m.request.prompt)) {
        if (msg.role != "system") break;
        system.push_back(msg);
      }
      retention_spec spec = *m.retain_system_prompt;
      spec.num_tokens =
          system.empty()
              ? 0
              : static_cast<int>(codec.encode(codec.render_chat(system, false), false).size());
      if (spec.num_tokens > 0) m.request.retention = spec;
    }
    stream_state& state = streams_[m.id];
    state.serial = next_serial_++;

    ++srv_.num_active_generations;
    std::weak_ptr<websocket_session> weak = weak_from_this();
    auto gate = srv_.gate;
    auto ex = ws_.get_executor();
    std::atomic<int>* active = &srv_.num_active_generations;
    auto on_event = [weak, gate, ex, active, id = m.id, serial = state.serial](
                        request_id, const generation_event& ev) {
      if (std::holds_alternative<finished_event>(ev) || std::holds_alternative<error_event>(ev)) {
        --*active;
      }
      gate->post(ex, [weak, ev, id, serial] {
        if (auto self = weak.lock()) self->on_event(id, serial, ev);
      });
    };
    state.engine_id = srv_.eng.submit(std::move(m.request), std::move(on_event));
  }

  void on_event(const std::string& id, std::uint64_t serial, const generation_event& ev) {
    auto it = streams_.find(id);
    if (it == streams_.end() || it->second.serial != serial) return;
    stream_state& s = it->second;
    if (const auto* acc = std::get_if<accepted_event>(&ev)) {
      return queue(encode_ws_accepted(id, *acc), &s);
    }
    if (const auto* tok = std::get_if<token_event>(&ev)) {
      if (s.overflowed) return;
      if (s.pending_frames >= srv_.config.limits.max_pending_frames_per_stream) {
        s.overflowed = true;  // the client stopped reading: bound the queue, cancel
        cancel(s);
        return;
      }
      return queue(encode_ws_delta(id, *tok, srv_.config.codec.token_text), &s);
    }
    std::string last;
    if (const auto* fin = std::get_if<finished_event>(&ev)) {
      last = s.overflowed ? encode_ws_error(id, {error_code::kSlowConsumer,
                                                 "the client did not read its stream in time", 400})
                          : encode_ws_done(id, *fin);
    } else {
      last = encode_ws_error(id, from_status(std::get<error_event>(ev).error));
    }
    streams_.erase(it);
    queue(std::move(last));
    maybe_close();
  }

  void cancel(stream_state& s) {
    if (s.cancelled || !s.engine_id) return;
    s.cancelled = true;
    srv_.eng.cancel(*s.engine_id);
  }

  void cancel_all() {
    for (auto& [id, s] : streams_) cancel(s);
  }

  /// Queues a frame; `s` counts it against its stream's bound until it is written.
  void queue(std::string data, stream_state* s = nullptr) {
    if (read_closed_ || close_sent_) return;
    frame f{std::move(data), 0};
    if (s) {
      ++s->pending_frames;
      f.serial = s->serial;
    }
    queue_.push_back(std::move(f));
    if (!writing_) do_write();
  }

  void do_write() {
    writing_ = true;
    ws_.async_write(
        asio::buffer(queue_.front().data),
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_write(ec); });
  }

  void on_write(beast::error_code ec) {
    writing_ = false;
    frame done = std::move(queue_.front());
    queue_.pop_front();
    if (done.serial) {
      for (auto& [id, s] : streams_) {
        if (s.serial == done.serial) {
          --s.pending_frames;
          break;
        }
      }
    }
    if (ec) {
      read_closed_ = true;
      queue_.clear();
      cancel_all();
      return;
    }
    if (!queue_.empty()) return do_write();
    maybe_close();
  }

  /// While shutting down: close once every stream has ended and its frames are out.
  void maybe_close() {
    if (!closing_ || close_sent_ || writing_ || !queue_.empty() || !streams_.empty()) return;
    if (read_closed_) return;
    close_sent_ = true;
    ws_.async_close(websocket::close_code::going_away,
                    [self = shared_from_this()](beast::error_code) {});
  }

  server::impl& srv_;
  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buffer_;
  std::unordered_map<std::string, stream_state> streams_;
  std::deque<frame> queue_;
  std::uint64_t next_serial_ = 1;
  bool writing_ = false;
  bool read_closed_ = false;
  bool closing_ = false;
  bool close_sent_ = false;
};

}  // namespace

void start_websocket_session(server::impl& srv, beast::tcp_stream stream, http_request req) {
  std::make_shared<websocket_session>(srv, std::move(stream))->run(std::move(req));
}

}  // namespace kvserve::net
