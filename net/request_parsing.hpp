#pragma once
/// Reading generation parameters from JSON with bounds on every field. Shared by the WebSocket
/// protocol and the OpenAI endpoints so that both accept and reject the same values.

#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "actors/engine.hpp"
#include "net/api_error.hpp"
#include "net/server.hpp"

namespace kvserve::net {

/// A parsed value or the error that explains why there is none.
template <class T>
struct parse_result {
  std::optional<T> value;
  api_error error;

  static parse_result failure(api_error err) { return {std::nullopt, std::move(err)}; }
  bool ok() const { return value.has_value(); }
};

/// Limits a request is checked against.
struct request_bounds {
  int max_model_len = 2048;  ///< longest prompt + output
  server_limits limits;
};

/// Thrown inside the parsers only (never out of a public function): a field is invalid.
struct field_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Parses text as a JSON object; kInvalidJson on malformed text or a non-object.
parse_result<nlohmann::json> parse_json_object(std::string_view text);

/// Reads the sampling and stopping fields shared by every generation request (temperature,
/// top_p, top_k, min_p, the penalties, seed, max_tokens, min_tokens, ignore_eos, stop,
/// stop_token_ids, cache_salt, priority, n) into `request`. Throws field_error.
void read_generation_fields(const nlohmann::json& j, const request_bounds& bounds,
                            generate_request& request);

/// Reads chat messages ([{role, content}], content a string or text parts). Throws field_error.
std::vector<chat_message> read_messages(const nlohmann::json& messages);

/// Reads a token id list and checks it against the vocabulary and max_model_len.
/// Throws field_error.
std::vector<std::int32_t> read_token_ids(const nlohmann::json& ids, const char* field,
                                         const request_bounds& bounds, int vocab_size);

// Typed accessors: nullopt when absent or null; field_error on a wrong type or range.
std::optional<bool> get_bool(const nlohmann::json& j, const char* field);
std::optional<std::int64_t> get_int(const nlohmann::json& j, const char* field, std::int64_t min,
                                    std::int64_t max);
std::optional<double> get_number(const nlohmann::json& j, const char* field, double min,
                                 double max);
std::optional<std::string> get_string(const nlohmann::json& j, const char* field);

}  // namespace kvserve::net
