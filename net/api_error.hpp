#pragma once
/// Errors the server returns: a stable code (docs/protocol.md lists them), a one-line message
/// and the HTTP status used when the error answers an HTTP request.

#include <string>

#include "model/status.hpp"

namespace kvserve::net {

/// Stable error code names of the WebSocket protocol and the HTTP API.
namespace error_code {
inline constexpr const char* kInvalidJson = "invalid_json";
inline constexpr const char* kInvalidArgument = "invalid_argument";
inline constexpr const char* kUnknownType = "unknown_type";
inline constexpr const char* kDuplicateId = "duplicate_id";
inline constexpr const char* kUnknownId = "unknown_id";
inline constexpr const char* kBinaryFrame = "binary_frame";
inline constexpr const char* kTooManyStreams = "too_many_streams";
inline constexpr const char* kTooManyConnections = "too_many_connections";
inline constexpr const char* kSlowConsumer = "slow_consumer";
inline constexpr const char* kOverloaded = "overloaded";
inline constexpr const char* kUnauthorized = "unauthorized";
inline constexpr const char* kNotFound = "not_found";
inline constexpr const char* kModelNotFound = "model_not_found";
inline constexpr const char* kMethodNotAllowed = "method_not_allowed";
inline constexpr const char* kPayloadTooLarge = "payload_too_large";
inline constexpr const char* kUnsupported = "unsupported";
inline constexpr const char* kShuttingDown = "shutting_down";
inline constexpr const char* kInternal = "internal";
}  // namespace error_code

/// One error as the client sees it.
struct api_error {
  std::string code;     ///< one of error_code, or a status_code name from the engine
  std::string message;  ///< human-readable, one line
  int http_status = 400;
};

/// An engine status as an api_error: overloaded -> 429, invalid_argument -> 400, ...
api_error from_status(const status& st);

/// OpenAI's error body: {"error": {"message", "type", "param", "code"}}.
std::string openai_error_body(const api_error& err);

}  // namespace kvserve::net
