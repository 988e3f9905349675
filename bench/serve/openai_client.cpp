// The HTTP side of the load generator: streaming OpenAI requests (SSE) and plain GETs.

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "bench/serve/client_transport.hpp"

namespace kvserve::bench {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

asio::awaitable<void> connect(beast::tcp_stream& stream, const transport_context& ctx,
                              bench_clock::time_point deadline) {
  tcp::resolver resolver(co_await asio::this_coro::executor);
  stream.expires_at(deadline);
  auto endpoints = co_await resolver.async_resolve(
      ctx.address.host, std::to_string(ctx.address.port), asio::use_awaitable);
  co_await stream.async_connect(endpoints, asio::use_awaitable);
  stream.socket().set_option(tcp::no_delay(true));
}

void set_common_fields(http::request<http::string_body>& req, const transport_context& ctx) {
  req.set(http::field::host, ctx.address.host + ":" + std::to_string(ctx.address.port));
  req.set(http::field::user_agent, "kvserve-bench");
  if (!ctx.api_key.empty()) req.set(http::field::authorization, "Bearer " + ctx.api_key);
}

void close_quietly(beast::tcp_stream& stream) {
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream.socket().close(ignored);
}

std::string excerpt(const std::string& body) {
  return body.size() <= 300 ? body : body.substr(0, 300) + "...";
}

}  // namespace

asio::awaitable<request_outcome> run_openai_request(const transport_context& ctx,
                                                    api_backend backend, request_spec spec,
                                                    bench_clock::time_point deadline) {
  request_recorder rec(clock_seconds(bench_clock::now()), ctx.run_origin);
  rec.outcome().prompt_tokens = static_cast<int>(spec.prompt_ids.size());
  try {
    beast::tcp_stream stream(co_await asio::this_coro::executor);
    co_await connect(stream, ctx, deadline);
    http::request<http::string_body> req{http::verb::post, openai_path(backend), 11};
    set_common_fields(req, ctx);
    req.set(http::field::content_type, "application/json");
    req.set(http::field::accept, "text/event-stream");
    req.body() = openai_request_body(backend, spec);
    req.prepare_payload();
    stream.expires_at(deadline);
    co_await http::async_write(stream, req, asio::use_awaitable);

    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none);
    stream.expires_at(deadline);
    if (ctx.tcp_quickack) set_tcp_quickack(stream.socket().native_handle());
    co_await http::async_read_header(stream, buffer, parser, asio::use_awaitable);
    if (parser.get().result_int() != 200) {
      co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
      rec.fail(
          "http " + std::to_string(parser.get().result_int()) + ": " + excerpt(parser.get().body()),
          clock_seconds(bench_clock::now()));
    }
    sse_splitter splitter;
    while (!rec.finished() && !parser.is_done()) {
      stream.expires_at(deadline);
      if (ctx.tcp_quickack) set_tcp_quickack(stream.socket().native_handle());
      co_await http::async_read_some(stream, buffer, parser, asio::use_awaitable);
      double now = clock_seconds(bench_clock::now());
      std::string& body = parser.get().body();
      if (body.empty()) continue;
      for (const std::string& payload : splitter.feed(body)) {
        if (rec.on_event(parse_sse_payload(payload, backend), now)) break;
      }
      body.clear();
    }
    if (!rec.finished()) {
      rec.fail("the stream ended without [DONE]", clock_seconds(bench_clock::now()));
    }
    close_quietly(stream);
  } catch (const boost::system::system_error& e) {
    rec.fail(
        e.code() == beast::error::timeout ? std::string("timeout") : "http: " + e.code().message(),
        clock_seconds(bench_clock::now()));
  } catch (const std::exception& e) {
    rec.fail(std::string("http: ") + e.what(), clock_seconds(bench_clock::now()));
  }
  co_return rec.take();
}

asio::awaitable<http_get_result> http_get(const transport_context& ctx, std::string path,
                                          bench_clock::time_point deadline) {
  http_get_result out;
  try {
    beast::tcp_stream stream(co_await asio::this_coro::executor);
    co_await connect(stream, ctx, deadline);
    http::request<http::string_body> req{http::verb::get, path, 11};
    set_common_fields(req, ctx);
    stream.expires_at(deadline);
    co_await http::async_write(stream, req, asio::use_awaitable);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
    out.ok = true;
    out.http_status = parser.get().result_int();
    out.body = std::move(parser.get().body());
    close_quietly(stream);
  } catch (const boost::system::system_error& e) {
    out.error = e.code() == beast::error::timeout ? std::string("timeout") : e.code().message();
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  co_return out;
}

}  // namespace kvserve::bench
