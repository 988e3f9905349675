#include "net/ws_protocol.hpp"

#include <nlohmann/json.hpp>

namespace kvserve::net {

using nlohmann::json;

namespace {

[[noreturn]] void fail(const std::string& message) { throw field_error(message); }

retention_spec read_retention(const json& r, bool needs_num_tokens) {
  if (!r.is_object()) fail("retention must be an object");
  retention_spec spec;
  if (needs_num_tokens) {
    auto n = get_int(r, "num_tokens", 1, 1 << 24);
    if (!n) fail("'retention.num_tokens' is required");
    spec.num_tokens = static_cast<int>(*n);
  }
  if (auto p = get_int(r, "priority", 0, 100)) spec.priority = static_cast<int>(*p);
  if (auto d = get_int(r, "duration_ms", 1, 365LL * 24 * 3600 * 1000)) {
    spec.duration = std::chrono::milliseconds{*d};
  }
  return spec;
}

ws_start read_start(const json& j, const std::string& id, const request_bounds& bounds,
                    int vocab_size) {
  ws_start start;
  start.id = id;
  generate_request& req = start.request;
  int forms = j.contains("prompt") + j.contains("messages") + j.contains("prompt_token_ids");
  if (forms != 1) fail("give exactly one of 'prompt', 'messages' or 'prompt_token_ids'");
  if (j.contains("prompt")) {
    auto text = get_string(j, "prompt");
    if (!text || text->empty()) fail("'prompt' must be a non-empty string");
    req.prompt = *text;
  } else if (j.contains("messages")) {
    req.prompt = read_messages(j.at("messages"));
  } else {
    req.prompt = read_token_ids(j.at("prompt_token_ids"), "prompt_token_ids", bounds, vocab_size);
  }
  if (auto v = get_bool(j, "add_generation_prompt")) req.add_generation_prompt = *v;
  read_generation_fields(j, bounds, req);
  if (auto v = get_int(j, "logprobs", 0, bounds.limits.max_logprobs)) {
    req.sampling.logprobs = static_cast<int>(*v);
  }
  if (auto v = get_int(j, "prompt_logprobs", 0, bounds.limits.max_logprobs)) {
    req.prompt_logprobs = static_cast<int>(*v);
  }
  if (auto v = get_int(j, "timeout_ms", 1, 24LL * 3600 * 1000)) {
    req.timeout = std::chrono::milliseconds{*v};
  }
  if (auto it = j.find("retention"); it != j.end() && !it->is_null()) {
    req.retention = read_retention(*it, true);
  }
  if (auto it = j.find("retain_system_prompt"); it != j.end() && !it->is_null()) {
    if (!std::holds_alternative<std::vector<chat_message>>(req.prompt)) {
      fail("'retain_system_prompt' needs a 'messages' prompt");
    }
    start.retain_system_prompt = read_retention(*it, false);
  }
  return start;
}

json logprob_entry(const token_logprob& lp,
                   const std::function<std::string(std::int32_t)>& token_text) {
  json e = {{"token_id", lp.token}, {"logprob", lp.logprob}};
  if (token_text) e["token"] = token_text(lp.token);
  return e;
}

}  // namespace

parse_result<ws_client_message> parse_ws_message(std::string_view text,
                                                 const request_bounds& bounds, int vocab_size,
                                                 std::string* id_out) {
  using result_t = parse_result<ws_client_message>;
  auto parsed = parse_json_object(text);
  if (!parsed.ok()) return result_t::failure(parsed.error);
  const json& j = *parsed.value;
  try {
    auto type = get_string(j, "type");
    if (!type) fail("the message has no 'type'");
    if (*type == "ping") return {ws_client_message{ws_ping{}}, {}};
    if (*type != "start" && *type != "cancel") {
      return result_t::failure(
          {error_code::kUnknownType, "unknown message type '" + *type + "'", 400});
    }
    auto id = get_string(j, "id");
    if (!id || id->empty() || id->size() > 128) {
      fail("'id' must be a string of 1 to 128 characters");
    }
    if (id_out) *id_out = *id;
    if (*type == "cancel") return {ws_client_message{ws_cancel{*id}}, {}};
    return {ws_client_message{read_start(j, *id, bounds, vocab_size)}, {}};
  } catch (const field_error& e) {
    return result_t::failure({error_code::kInvalidArgument, e.what(), 400});
  } catch (const json::exception& e) {
    return result_t::failure({error_code::kInvalidArgument, e.what(), 400});
  }
}

std::string encode_ws_hello(const std::string& model, const request_bounds& bounds) {
  json j = {{"type", "hello"},
            {"protocol", kProtocolVersion},
            {"model", model},
            {"max_model_len", bounds.max_model_len},
            {"max_streams", bounds.limits.max_streams_per_connection},
            {"max_frame_bytes", bounds.limits.max_frame_bytes}};
  return j.dump();
}

std::string encode_ws_accepted(const std::string& id, const accepted_event& ev) {
  json j = {{"type", "accepted"},
            {"id", id},
            {"prompt_tokens", ev.prompt_tokens},
            {"cached_prompt_tokens", ev.cached_prompt_tokens}};
  return j.dump();
}

std::string encode_ws_delta(const std::string& id, const token_event& ev,
                            const std::function<std::string(std::int32_t)>& token_text) {
  json j = {{"type", "delta"}, {"id", id}, {"text", ev.text}, {"token_ids", ev.token_ids}};
  if (!ev.logprobs.empty()) {
    json lps = json::array();
    for (const position_logprobs& p : ev.logprobs) {
      json e = logprob_entry(p.chosen, token_text);
      json top = json::array();
      for (const token_logprob& t : p.top) top.push_back(logprob_entry(t, token_text));
      e["top"] = std::move(top);
      lps.push_back(std::move(e));
    }
    j["logprobs"] = std::move(lps);
  }
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string encode_ws_done(const std::string& id, const finished_event& ev) {
  json j = {{"type", "done"},
            {"id", id},
            {"finish_reason", ev.finish_reason},
            {"usage",
             {{"prompt_tokens", ev.usage.prompt_tokens},
              {"completion_tokens", ev.usage.completion_tokens},
              {"cached_prompt_tokens", ev.usage.cached_prompt_tokens}}},
            {"timings",
             {{"time_to_first_token_s", ev.time_to_first_token_seconds >= 0
                                            ? json(ev.time_to_first_token_seconds)
                                            : json(nullptr)},
              {"inter_token_latencies_s", ev.inter_token_latencies_seconds}}}};
  if (!ev.stop_reason.empty()) j["stop_reason"] = ev.stop_reason;
  if (!ev.prompt_logprobs.empty()) {
    json pl = json::array();
    for (const auto& p : ev.prompt_logprobs) {
      if (!p) {
        pl.push_back(nullptr);
        continue;
      }
      json e = {{"token_id", p->chosen.token}, {"logprob", p->chosen.logprob}};
      json top = json::array();
      for (const token_logprob& t : p->top) {
        top.push_back({{"token_id", t.token}, {"logprob", t.logprob}});
      }
      e["top"] = std::move(top);
      pl.push_back(std::move(e));
    }
    j["prompt_logprobs"] = std::move(pl);
  }
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string encode_ws_error(const std::string& id, const api_error& err) {
  json j = {{"type", "error"}, {"code", err.code}, {"message", err.message}};
  if (!id.empty()) j["id"] = id;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string encode_ws_pong() { return R"({"type":"pong"})"; }

}  // namespace kvserve::net
