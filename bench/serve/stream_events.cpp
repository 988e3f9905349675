#include "bench/serve/stream_events.hpp"

#include <nlohmann/json.hpp>

namespace kvserve::bench {

using nlohmann::json;

namespace {

std::optional<int> int_field(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int>();
}

void read_usage(const json& usage, stream_event& ev) {
  if (!usage.is_object()) return;
  ev.prompt_tokens = int_field(usage, "prompt_tokens");
  ev.completion_tokens = int_field(usage, "completion_tokens");
  if (auto c = int_field(usage, "cached_prompt_tokens")) ev.cached_prompt_tokens = c;
  auto details = usage.find("prompt_tokens_details");
  if (details != usage.end() && details->is_object()) {
    if (auto c = int_field(*details, "cached_tokens")) ev.cached_prompt_tokens = c;
  }
}

std::string error_text(const json& err) {
  if (err.is_string()) return err.get<std::string>();
  if (!err.is_object()) return err.dump();
  std::string code = err.value("code", json()).is_string() ? err["code"].get<std::string>()
                                                           : err.value("type", "error");
  std::string message = err.value("message", "");
  return code + ": " + message;
}

json sampling_fields(const request_spec& spec) {
  json j = {{"max_tokens", spec.max_tokens}, {"temperature", spec.temperature}};
  if (spec.ignore_eos) j["ignore_eos"] = true;
  return j;
}

}  // namespace

std::string ws_start_frame(const std::string& id, const request_spec& spec) {
  json j = sampling_fields(spec);
  j["type"] = "start";
  j["id"] = id;
  if (!spec.messages.empty()) {
    json msgs = json::array();
    for (const chat_entry& m : spec.messages) {
      msgs.push_back({{"role", m.role}, {"content", m.content}});
    }
    j["messages"] = std::move(msgs);
  } else {
    j["prompt_token_ids"] = spec.prompt_ids;
  }
  if (spec.retain_tokens > 0) {
    j["retention"] = {{"num_tokens", spec.retain_tokens}, {"priority", spec.retention_priority}};
  }
  return j.dump();
}

std::string openai_request_body(api_backend backend, const request_spec& spec) {
  json j = sampling_fields(spec);
  if (!spec.model.empty()) j["model"] = spec.model;
  j["stream"] = true;
  j["stream_options"] = {{"include_usage", true}};
  if (backend == api_backend::kOpenAIChat) {
    json msgs = json::array();
    for (const chat_entry& m : spec.messages) {
      msgs.push_back({{"role", m.role}, {"content", m.content}});
    }
    j["messages"] = std::move(msgs);
  } else {
    j["prompt"] = spec.prompt_ids;
  }
  return j.dump();
}

const char* openai_path(api_backend backend) {
  return backend == api_backend::kOpenAIChat ? "/v1/chat/completions" : "/v1/completions";
}

stream_event parse_ws_frame(std::string_view frame, const std::string& id) {
  stream_event ev;
  json j = json::parse(frame, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    ev.type = stream_event::kind::kError;
    ev.error = "protocol: a frame that is not a JSON object";
    return ev;
  }
  std::string type = j.value("type", "");
  std::string frame_id = j.contains("id") && j["id"].is_string() ? j["id"].get<std::string>() : "";
  if (type == "error") {
    // An error without an id concerns the connection, hence this request too.
    if (!frame_id.empty() && frame_id != id) return ev;
    ev.type = stream_event::kind::kError;
    ev.error = j.value("code", "error") + ": " + j.value("message", "");
    return ev;
  }
  if (frame_id != id) return ev;
  if (type == "accepted") {
    ev.type = stream_event::kind::kAccepted;
    ev.prompt_tokens = int_field(j, "prompt_tokens");
    ev.cached_prompt_tokens = int_field(j, "cached_prompt_tokens");
  } else if (type == "delta") {
    ev.type = stream_event::kind::kDelta;
    if (auto it = j.find("token_ids"); it != j.end() && it->is_array()) {
      for (const json& t : *it) {
        if (t.is_number_integer()) ev.token_ids.push_back(t.get<std::int32_t>());
      }
    }
    ev.text = j.value("text", "");
    ev.has_output = !ev.token_ids.empty() || !ev.text.empty();
  } else if (type == "done") {
    ev.type = stream_event::kind::kDone;
    ev.finish_reason = j.value("finish_reason", "");
    if (auto it = j.find("usage"); it != j.end()) read_usage(*it, ev);
  }
  return ev;
}

stream_event parse_sse_payload(std::string_view payload, api_backend backend) {
  stream_event ev;
  if (payload == "[DONE]") {
    ev.type = stream_event::kind::kDone;
    return ev;
  }
  json j = json::parse(payload, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    ev.type = stream_event::kind::kError;
    ev.error = "protocol: an SSE event that is not a JSON object";
    return ev;
  }
  if (auto it = j.find("error"); it != j.end() && !it->is_null()) {
    ev.type = stream_event::kind::kError;
    ev.error = error_text(*it);
    return ev;
  }
  if (auto it = j.find("usage"); it != j.end() && !it->is_null()) read_usage(*it, ev);
  auto choices = j.find("choices");
  if (choices == j.end() || !choices->is_array() || choices->empty()) return ev;
  const json& choice = (*choices)[0];
  ev.type = stream_event::kind::kDelta;
  if (backend == api_backend::kOpenAIChat) {
    auto delta = choice.find("delta");
    if (delta != choice.end() && delta->is_object()) {
      auto content = delta->find("content");
      if (content != delta->end() && content->is_string()) ev.text = content->get<std::string>();
    }
  } else {
    auto text = choice.find("text");
    if (text != choice.end() && text->is_string()) ev.text = text->get<std::string>();
  }
  ev.has_output = !ev.text.empty();
  if (auto fr = choice.find("finish_reason"); fr != choice.end() && fr->is_string()) {
    ev.finish_reason = fr->get<std::string>();
  }
  return ev;
}

std::vector<std::string> sse_splitter::feed(std::string_view bytes) {
  buffer_.append(bytes);
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    // An event ends at the first blank line: "\n\n" or "\r\n\r\n".
    std::size_t lf = buffer_.find("\n\n", start);
    std::size_t crlf = buffer_.find("\r\n\r\n", start);
    std::size_t end = std::min(lf, crlf);
    if (end == std::string::npos) break;
    std::size_t sep = end == crlf ? 4 : 2;
    std::string_view event(buffer_.data() + start, end - start);
    std::string data;
    bool any = false;
    while (!event.empty()) {
      std::size_t eol = event.find('\n');
      std::string_view line = event.substr(0, eol);
      event = eol == std::string_view::npos ? std::string_view{} : event.substr(eol + 1);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.substr(0, 5) != "data:") continue;  // comments, event:, id:, retry:
      line.remove_prefix(5);
      if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
      if (any) data += '\n';
      data.append(line);
      any = true;
    }
    if (any) out.push_back(std::move(data));
    start = end + sep;
  }
  buffer_.erase(0, start);
  return out;
}

}  // namespace kvserve::bench
