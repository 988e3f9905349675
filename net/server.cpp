// The listener and the server's lifetime: bind, accept, graceful stop.

#include <chrono>
#include <thread>

#include <boost/asio/ip/address.hpp>

#include "net/server_impl.hpp"

namespace kvserve {

using namespace std::chrono_literals;

server::impl::impl(server_config cfg, engine& e) : config(std::move(cfg)), eng(e) {
  const model_config& model = eng.model();
  model_name = config.served_model_name.empty() ? model.name : config.served_model_name;
  if (model_name.empty()) model_name = "kvserve";
  vocab_size = model.vocab_size;
  bounds.limits = config.limits;
  bounds.max_model_len =
      eng.config().max_model_len > 0 ? eng.config().max_model_len : model.max_position_embeddings;
  if (bounds.max_model_len <= 0) bounds.max_model_len = 2048;
  created_unix = std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
}

void server::impl::register_session(const std::shared_ptr<net::session_base>& s) {
  std::lock_guard lock(sessions_mu);
  std::erase_if(sessions, [](const auto& w) { return w.expired(); });
  sessions.push_back(s);
}

bool server::impl::authorized(const net::http_request& req) const {
  if (config.api_key.empty()) return true;
  auto it = req.find(net::http::field::authorization);
  if (it != req.end() && it->value() == "Bearer " + config.api_key) return true;
  // Browsers cannot set headers on a WebSocket: accept ?api_key=KEY on the upgrade request.
  std::string_view target = req.target();
  auto q = target.find('?');
  if (q == std::string_view::npos) return false;
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    if (pair == "api_key=" + config.api_key) return true;
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return false;
}

void server::impl::do_accept() {
  acceptor->async_accept(net::asio::make_strand(ioc),
                         [this](boost::system::error_code ec, net::tcp::socket socket) {
                           if (ec) {
                             if (ec == net::asio::error::operation_aborted || !acceptor->is_open())
                               return;
                           } else {
                             // Streamed frames are small and latency-bound: without this,
                             // Nagle's algorithm holds a token frame that follows the
                             // `accepted` frame until the client's delayed ACK (up to 40 ms).
                             boost::system::error_code option_ec;
                             socket.set_option(net::tcp::no_delay(true), option_ec);
                             net::start_http_session(*this, std::move(socket));
                           }
                           if (acceptor->is_open()) do_accept();
                         });
}

server::server(server_config config, engine& eng)
    : impl_(std::make_unique<impl>(std::move(config), eng)) {}

server::~server() { stop(0ms); }

status server::start() {
  impl& s = *impl_;
  if (s.acceptor) return {status_code::kInvalidArgument, "the server is already started"};
  boost::system::error_code ec;
  auto address = net::asio::ip::make_address(s.config.host, ec);
  if (ec) return {status_code::kInvalidArgument, "bad --host '" + s.config.host + "'"};
  net::tcp::endpoint endpoint(address, s.config.port);
  s.acceptor.emplace(net::asio::make_strand(s.ioc));  // accept and close never race
  s.acceptor->open(endpoint.protocol(), ec);
  if (!ec) s.acceptor->set_option(net::asio::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor->bind(endpoint, ec);
  if (!ec) s.acceptor->listen(net::asio::socket_base::max_listen_connections, ec);
  if (ec) {
    s.acceptor.reset();
    return {status_code::kInvalidArgument, "cannot listen on " + s.config.host + ":" +
                                               std::to_string(s.config.port) + ": " + ec.message()};
  }
  s.bound_port = s.acceptor->local_endpoint().port();
  s.do_accept();
  int n = std::max(1, s.config.num_threads);
  for (int i = 0; i < n; ++i) s.threads.emplace_back([&s] { s.ioc.run(); });
  return status::ok();
}

std::uint16_t server::port() const { return impl_->bound_port; }

void server::stop_accepting() {
  impl& s = *impl_;
  if (!s.acceptor) return;
  net::asio::post(s.acceptor->get_executor(), [&s] {
    boost::system::error_code ec;
    if (s.acceptor && s.acceptor->is_open()) s.acceptor->close(ec);
  });
}

void server::stop(std::chrono::milliseconds grace) {
  impl& s = *impl_;
  std::lock_guard stop_lock(s.stop_mu);
  if (s.stopped) return;
  s.stopped = true;
  s.stopping = true;
  if (s.threads.empty()) return;
  stop_accepting();
  auto wait_idle = [&s](std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (s.num_active_generations > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(5ms);
    }
  };
  wait_idle(grace);
  std::vector<std::shared_ptr<net::session_base>> open;
  {
    std::lock_guard lock(s.sessions_mu);
    for (auto& w : s.sessions) {
      if (auto p = w.lock()) open.push_back(std::move(p));
    }
  }
  for (auto& p : open) p->shutdown();
  open.clear();
  // Cancelled generations still deliver their final event; give them a moment to be written.
  wait_idle(2000ms);
  auto deadline = std::chrono::steady_clock::now() + 1000ms;
  while (s.num_connections > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  s.gate->close();
  s.ioc.stop();
  for (auto& t : s.threads) t.join();
  s.threads.clear();
}

int server::num_active_generations() const { return impl_->num_active_generations; }
int server::num_connections() const { return impl_->num_connections; }

}  // namespace kvserve
