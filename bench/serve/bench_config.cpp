#include "bench/serve/bench_config.hpp"

#include <charconv>

namespace kvserve::bench {

result<api_backend> parse_api_backend(const std::string& name) {
  if (name == "ws") return api_backend::kWebSocket;
  if (name == "openai-chat") return api_backend::kOpenAIChat;
  if (name == "openai-completions") return api_backend::kOpenAICompletions;
  return status(status_code::kInvalidArgument,
                "unknown backend '" + name + "' (ws, openai-chat, openai-completions)");
}

const char* to_string(api_backend backend) {
  switch (backend) {
    case api_backend::kWebSocket:
      return "ws";
    case api_backend::kOpenAIChat:
      return "openai-chat";
    case api_backend::kOpenAICompletions:
      return "openai-completions";
  }
  return "?";
}

result<server_address> parse_base_url(const std::string& url) {
  auto bad = [&](const std::string& why) {
    return status(status_code::kInvalidArgument, "bad --base-url '" + url + "': " + why);
  };
  std::string_view rest = url;
  if (auto sep = rest.find("://"); sep != std::string_view::npos) {
    std::string_view scheme = rest.substr(0, sep);
    if (scheme != "http" && scheme != "ws") return bad("only http:// (or ws://) is supported");
    rest.remove_prefix(sep + 3);
  }
  rest = rest.substr(0, rest.find('/'));
  if (rest.empty()) return bad("no host");
  server_address out;
  std::string_view host = rest;
  if (rest.front() == '[') {  // [::1]:8000
    auto close = rest.find(']');
    if (close == std::string_view::npos) return bad("unclosed '['");
    host = rest.substr(1, close - 1);
    rest.remove_prefix(close + 1);
  } else {
    auto colon = rest.find(':');
    host = rest.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon);
  }
  if (host.empty()) return bad("no host");
  out.host = std::string(host);
  out.port = 80;
  if (!rest.empty()) {
    if (rest.front() != ':') return bad("unexpected text after the host");
    rest.remove_prefix(1);
    unsigned port = 0;
    auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), port);
    if (ec != std::errc() || p != rest.data() + rest.size() || port == 0 || port > 65535) {
      return bad("the port must be a number in 1..65535");
    }
    out.port = static_cast<std::uint16_t>(port);
  }
  return out;
}

}  // namespace kvserve::bench
