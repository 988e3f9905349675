#pragma once
/// The WebSocket streaming protocol, version kvserve.v1 (docs/protocol.md): JSON text frames,
/// several generations multiplexed on one socket by a client-chosen id. Parsing of client
/// messages and encoding of server messages; no I/O here.

#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "actors/engine.hpp"
#include "net/api_error.hpp"
#include "net/request_parsing.hpp"
#include "net/server.hpp"

namespace kvserve::net {

/// Sent in the hello frame; bumped on any incompatible change.
inline constexpr const char* kProtocolVersion = "kvserve.v1";
/// The WebSocket endpoint's path.
inline constexpr const char* kWebSocketPath = "/v1/ws";

/// {"type":"start"}: begin a generation under the client's id.
struct ws_start {
  std::string id;
  generate_request request;
  /// Keep the system prompt's tokens at this retention (resolved by the session, which knows
  /// the chat template); nullopt: no system-prompt retention.
  std::optional<retention_spec> retain_system_prompt;
};
/// {"type":"cancel"}: cancel the generation with this id.
struct ws_cancel {
  std::string id;
};
/// {"type":"ping"}: answered by {"type":"pong"}.
struct ws_ping {};

using ws_client_message = std::variant<ws_start, ws_cancel, ws_ping>;

/// A client message, or the error to send back. `id_out` receives the message's id when one
/// could be read, so the error frame can name the stream it concerns.
parse_result<ws_client_message> parse_ws_message(std::string_view text,
                                                 const request_bounds& bounds, int vocab_size,
                                                 std::string* id_out);

/// {"type":"hello"}: sent once when the socket opens.
std::string encode_ws_hello(const std::string& model, const request_bounds& bounds);
/// {"type":"accepted"}: prompt and cached prompt token counts.
std::string encode_ws_accepted(const std::string& id, const accepted_event& ev);
/// {"type":"delta"}: new text and token ids (and logprobs when asked for).
std::string encode_ws_delta(const std::string& id, const token_event& ev,
                            const std::function<std::string(std::int32_t)>& token_text);
/// {"type":"done"}: finish reason, usage and timings.
std::string encode_ws_done(const std::string& id, const finished_event& ev);
/// {"type":"error"}: id may be empty for errors not tied to a stream.
std::string encode_ws_error(const std::string& id, const api_error& err);
std::string encode_ws_pong();

}  // namespace kvserve::net
