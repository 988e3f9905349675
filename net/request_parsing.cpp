#include "net/request_parsing.hpp"

#include <cmath>
#include <string>

namespace kvserve::net {

using nlohmann::json;

namespace {

[[noreturn]] void fail(const std::string& message) { throw field_error(message); }

const json* find_field(const json& j, const char* field) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

}  // namespace

parse_result<json> parse_json_object(std::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return parse_result<json>::failure({error_code::kInvalidJson, "malformed JSON", 400});
  }
  if (!j.is_object()) {
    return parse_result<json>::failure(
        {error_code::kInvalidJson, "the request must be a JSON object", 400});
  }
  return {std::move(j), {}};
}

std::optional<bool> get_bool(const json& j, const char* field) {
  const json* v = find_field(j, field);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) fail(std::string("'") + field + "' must be a boolean");
  return v->get<bool>();
}

std::optional<std::int64_t> get_int(const json& j, const char* field, std::int64_t min,
                                    std::int64_t max) {
  const json* v = find_field(j, field);
  if (!v) return std::nullopt;
  std::int64_t x = 0;
  if (v->is_number_integer()) {
    if (v->is_number_unsigned() && v->get<std::uint64_t>() > static_cast<std::uint64_t>(max)) {
      fail(std::string("'") + field + "' must be at most " + std::to_string(max));
    }
    x = v->get<std::int64_t>();
  } else if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>() &&
             std::abs(v->get<double>()) < 9e15) {
    x = static_cast<std::int64_t>(v->get<double>());
  } else {
    fail(std::string("'") + field + "' must be an integer");
  }
  if (x < min || x > max) {
    fail(std::string("'") + field + "' must be in [" + std::to_string(min) + ", " +
         std::to_string(max) + "], got " + std::to_string(x));
  }
  return x;
}

std::optional<double> get_number(const json& j, const char* field, double min, double max) {
  const json* v = find_field(j, field);
  if (!v) return std::nullopt;
  if (!v->is_number()) fail(std::string("'") + field + "' must be a number");
  double x = v->get<double>();
  if (!std::isfinite(x) || x < min || x > max) {
    fail(std::string("'") + field + "' must be in [" + std::to_string(min) + ", " +
         std::to_string(max) + "], got " + v->dump());
  }
  return x;
}

std::optional<std::string> get_string(const json& j, const char* field) {
  const json* v = find_field(j, field);
  if (!v) return std::nullopt;
  if (!v->is_string()) fail(std::string("'") + field + "' must be a string");
  return v->get<std::string>();
}

void read_generation_fields(const json& j, const request_bounds& bounds,
                            generate_request& request) {
  sampling_params& s = request.sampling;
  if (auto v = get_int(j, "n", 1, 1000)) {
    if (*v != 1) fail("'n' must be 1: one choice per request is supported");
  }
  if (auto v = get_number(j, "temperature", 0.0, 100.0)) s.temperature = static_cast<float>(*v);
  if (auto v = get_number(j, "top_p", 0.0, 1.0)) {
    if (*v <= 0.0) fail("'top_p' must be in (0, 1]");
    s.top_p = static_cast<float>(*v);
  }
  if (auto v = get_int(j, "top_k", -1, 1 << 20)) s.top_k = static_cast<int>(*v);
  if (auto v = get_number(j, "min_p", 0.0, 1.0)) s.min_p = static_cast<float>(*v);
  if (auto v = get_number(j, "presence_penalty", -2.0, 2.0)) {
    s.presence_penalty = static_cast<float>(*v);
  }
  if (auto v = get_number(j, "frequency_penalty", -2.0, 2.0)) {
    s.frequency_penalty = static_cast<float>(*v);
  }
  if (auto v = get_number(j, "repetition_penalty", 0.0, 10.0)) {
    if (*v <= 0.0) fail("'repetition_penalty' must be in (0, 10]");
    s.repetition_penalty = static_cast<float>(*v);
  }
  if (auto v = get_int(j, "seed", INT64_MIN, INT64_MAX)) {
    s.seed = static_cast<std::uint64_t>(*v);
    request.seed_set = true;
  }
  const std::int64_t max_tokens_cap =
      std::min<std::int64_t>(bounds.limits.max_tokens_limit, bounds.max_model_len);
  std::optional<std::int64_t> max_tokens = get_int(j, "max_tokens", 1, max_tokens_cap);
  if (auto v = get_int(j, "max_completion_tokens", 1, max_tokens_cap)) max_tokens = v;
  if (max_tokens) request.max_tokens = static_cast<int>(*max_tokens);
  request.max_tokens = std::min<int>(request.max_tokens, static_cast<int>(max_tokens_cap));
  if (auto v = get_int(j, "min_tokens", 0, request.max_tokens)) {
    s.min_tokens = static_cast<int>(*v);
  }
  if (auto v = get_bool(j, "ignore_eos")) s.ignore_eos = *v;
  if (const json* stop = find_field(j, "stop")) {
    request.stop.clear();
    if (stop->is_string()) {
      request.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      if (static_cast<int>(stop->size()) > bounds.limits.max_stop_strings) {
        fail("'stop' has more than " + std::to_string(bounds.limits.max_stop_strings) + " strings");
      }
      for (const json& e : *stop) {
        if (!e.is_string()) fail("'stop' must be a string or an array of strings");
        request.stop.push_back(e.get<std::string>());
      }
    } else {
      fail("'stop' must be a string or an array of strings");
    }
    for (const std::string& s_ : request.stop) {
      if (s_.empty()) fail("'stop' strings must not be empty");
    }
  }
  if (const json* ids = find_field(j, "stop_token_ids")) {
    if (!ids->is_array()) fail("'stop_token_ids' must be an array of integers");
    for (const json& e : *ids) {
      if (!e.is_number_integer() || e.get<std::int64_t>() < 0 ||
          e.get<std::int64_t>() > INT32_MAX) {
        fail("'stop_token_ids' must be an array of non-negative integers");
      }
      request.stop_token_ids.push_back(static_cast<std::int32_t>(e.get<std::int64_t>()));
    }
  }
  if (auto v = get_string(j, "cache_salt")) {
    if (v->empty()) fail("'cache_salt' must not be empty");
    request.cache_salt = *v;
  }
  if (auto v = get_int(j, "priority", -1000000, 1000000)) request.priority = static_cast<int>(*v);
}

std::vector<chat_message> read_messages(const json& messages) {
  if (!messages.is_array() || messages.empty()) {
    fail("'messages' must be a non-empty array");
  }
  std::vector<chat_message> out;
  for (const json& m : messages) {
    if (!m.is_object()) fail("each message must be an object");
    auto role = get_string(m, "role");
    if (!role) fail("each message needs a 'role'");
    if (*role != "system" && *role != "user" && *role != "assistant" && *role != "developer") {
      fail("unknown message role '" + *role + "'");
    }
    chat_message msg{*role == "developer" ? "system" : *role, ""};
    const json* content = find_field(m, "content");
    if (!content) {
      if (*role != "assistant") fail("message 'content' is missing");
    } else if (content->is_string()) {
      msg.content = content->get<std::string>();
    } else if (content->is_array()) {
      for (const json& part : *content) {
        if (!part.is_object() || get_string(part, "type").value_or("") != "text") {
          fail("only text content parts are supported");
        }
        msg.content += get_string(part, "text").value_or("");
      }
    } else {
      fail("message 'content' must be a string or an array of text parts");
    }
    out.push_back(std::move(msg));
  }
  return out;
}

std::vector<std::int32_t> read_token_ids(const json& ids, const char* field,
                                         const request_bounds& bounds, int vocab_size) {
  if (!ids.is_array()) fail(std::string("'") + field + "' must be an array of token ids");
  if (ids.empty()) fail(std::string("'") + field + "' must not be empty");
  if (static_cast<std::int64_t>(ids.size()) >= bounds.max_model_len) {
    fail("the prompt has " + std::to_string(ids.size()) + " tokens, which reaches max_model_len (" +
         std::to_string(bounds.max_model_len) + ")");
  }
  std::vector<std::int32_t> out;
  out.reserve(ids.size());
  for (const json& e : ids) {
    if (!e.is_number_integer()) fail(std::string("'") + field + "' must contain integers");
    std::int64_t id = e.get<std::int64_t>();
    if (id < 0 || (vocab_size > 0 && id >= vocab_size)) {
      fail("token id " + std::to_string(id) + " is outside the vocabulary");
    }
    out.push_back(static_cast<std::int32_t>(id));
  }
  return out;
}

}  // namespace kvserve::net
