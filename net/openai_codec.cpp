#include "net/openai_codec.hpp"

#include <utility>

namespace kvserve::net {

using nlohmann::json;

namespace {

[[noreturn]] void fail(const std::string& message) { throw field_error(message); }

constexpr auto kDumpArgs = json::error_handler_t::replace;

std::string dump(const json& j) { return j.dump(-1, ' ', false, kDumpArgs); }

std::string openai_finish_reason(const std::string& reason) {
  if (reason == "stop" || reason == "length") return reason;
  return "abort";  // cancelled, timeout: vLLM's name for a request that did not complete
}

void read_completion_prompt(const json& j, const request_bounds& bounds, int vocab_size,
                            openai_request& out) {
  auto it = j.find("prompt");
  if (it == j.end() || it->is_null()) fail("'prompt' is required");
  const json& p = *it;
  if (p.is_string()) {
    out.prompt_text = p.get<std::string>();
  } else if (p.is_array() && !p.empty() && p[0].is_string()) {
    if (p.size() != 1) fail("batched prompts are not supported: send one prompt per request");
    out.prompt_text = p[0].get<std::string>();
  } else if (p.is_array() && !p.empty() && p[0].is_array()) {
    if (p.size() != 1) fail("batched prompts are not supported: send one prompt per request");
    out.prompt_ids = read_token_ids(p[0], "prompt", bounds, vocab_size);
  } else if (p.is_array()) {
    out.prompt_ids = read_token_ids(p, "prompt", bounds, vocab_size);
  } else {
    fail("'prompt' must be a string, an array of token ids, or a one-element array of either");
  }
  if (out.prompt_ids.empty()) {
    if (out.prompt_text.empty()) fail("'prompt' must not be empty");
    out.request.prompt = out.prompt_text;
  } else {
    out.request.prompt = out.prompt_ids;
  }
}

}  // namespace

parse_result<openai_request> parse_openai_request(openai_endpoint endpoint, std::string_view body,
                                                  const request_bounds& bounds, int vocab_size,
                                                  const std::string& served_model) {
  using result_t = parse_result<openai_request>;
  auto parsed = parse_json_object(body);
  if (!parsed.ok()) return result_t::failure(parsed.error);
  const json& j = *parsed.value;
  openai_request out;
  out.endpoint = endpoint;
  out.request.max_tokens = 16;  // OpenAI's default for completions
  try {
    if (auto model = get_string(j, "model"); model && !model->empty() && *model != served_model) {
      return result_t::failure(
          {error_code::kModelNotFound, "the model '" + *model + "' does not exist", 404});
    }
    out.stream = get_bool(j, "stream").value_or(false);
    if (auto it = j.find("stream_options"); it != j.end() && !it->is_null()) {
      if (!it->is_object()) fail("'stream_options' must be an object");
      out.include_usage = get_bool(*it, "include_usage").value_or(false);
    }
    if (endpoint == openai_endpoint::kCompletions) {
      read_completion_prompt(j, bounds, vocab_size, out);
      out.echo = get_bool(j, "echo").value_or(false);
      if (auto v = get_int(j, "logprobs", 0, bounds.limits.max_logprobs)) {
        out.logprobs = static_cast<int>(*v);
      }
      if (j.contains("suffix") && !j["suffix"].is_null()) fail("'suffix' is not supported");
      if (auto v = get_int(j, "best_of", 1, 1); v && *v != 1) fail("'best_of' must be 1");
      if (out.echo && out.logprobs >= 0) {
        if (out.stream) fail("'echo' with 'logprobs' is not supported when streaming");
        out.request.prompt_logprobs = out.logprobs;
      }
    } else {
      auto it = j.find("messages");
      if (it == j.end()) fail("'messages' is required");
      out.request.prompt = read_messages(*it);
      out.request.max_tokens = bounds.max_model_len;  // chat: no max_tokens means up to the limit
      if (auto v = get_bool(j, "add_generation_prompt")) out.request.add_generation_prompt = *v;
      bool logprobs = get_bool(j, "logprobs").value_or(false);
      auto top = get_int(j, "top_logprobs", 0, bounds.limits.max_logprobs);
      if (top && !logprobs) fail("'top_logprobs' needs 'logprobs': true");
      if (logprobs) out.logprobs = static_cast<int>(top.value_or(0));
    }
    read_generation_fields(j, bounds, out.request);
    out.request.sampling.logprobs = out.logprobs;
  } catch (const field_error& e) {
    return result_t::failure({error_code::kInvalidArgument, e.what(), 400});
  } catch (const json::exception& e) {
    return result_t::failure({error_code::kInvalidArgument, e.what(), 400});
  }
  return {std::move(out), {}};
}

openai_encoder::openai_encoder(const openai_request& request, const text_codec& codec,
                               std::string model, std::string id, std::int64_t created)
    : req_(request),
      codec_(codec),
      model_(std::move(model)),
      id_(std::move(id)),
      created_(created),
      chat_(request.endpoint == openai_endpoint::kChatCompletions) {}

json openai_encoder::chunk_base() const {
  return {{"id", id_},
          {"object", chat_ ? "chat.completion.chunk" : "text_completion"},
          {"created", created_},
          {"model", model_}};
}

json openai_encoder::usage_json() const {
  return {{"prompt_tokens", usage_.prompt_tokens},
          {"completion_tokens", usage_.completion_tokens},
          {"total_tokens", usage_.prompt_tokens + usage_.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", usage_.cached_prompt_tokens}}}};
}

json openai_encoder::completion_logprobs(const std::vector<position_logprobs>& lps,
                                         std::size_t text_offset) const {
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       offsets = json::array();
  for (const position_logprobs& p : lps) {
    std::string text = codec_.token_text ? codec_.token_text(p.chosen.token) : "";
    tokens.push_back(text);
    token_logprobs.push_back(p.chosen.logprob);
    json alternatives = json::object();
    alternatives[text] = p.chosen.logprob;  // vLLM includes the sampled token
    for (const token_logprob& t : p.top) {
      alternatives[codec_.token_text ? codec_.token_text(t.token) : ""] = t.logprob;
    }
    top.push_back(std::move(alternatives));
    offsets.push_back(text_offset);
    text_offset += text.size();
  }
  return {{"tokens", tokens},
          {"token_logprobs", token_logprobs},
          {"top_logprobs", top},
          {"text_offset", offsets}};
}

json openai_encoder::chat_logprobs(const std::vector<position_logprobs>& lps) const {
  auto entry = [&](const token_logprob& t) {
    std::string text = codec_.token_text ? codec_.token_text(t.token) : "";
    json bytes = json::array();
    for (unsigned char c : text) bytes.push_back(static_cast<int>(c));
    return json{{"token", text}, {"logprob", t.logprob}, {"bytes", bytes}};
  };
  json content = json::array();
  for (const position_logprobs& p : lps) {
    json e = entry(p.chosen);
    json top = json::array();
    for (const token_logprob& t : p.top) top.push_back(entry(t));
    e["top_logprobs"] = std::move(top);
    content.push_back(std::move(e));
  }
  return {{"content", content}};
}

std::string openai_encoder::on_event(const generation_event& event) {
  if (finished_) return {};
  if (const auto* acc = std::get_if<accepted_event>(&event)) {
    usage_.prompt_tokens = acc->prompt_tokens;
    usage_.cached_prompt_tokens = acc->cached_prompt_tokens;
    if (!req_.stream) return {};
    json chunk = chunk_base();
    if (chat_) {
      sent_role_ = true;
      chunk["choices"] = json::array({{{"index", 0},
                                       {"delta", {{"role", "assistant"}, {"content", ""}}},
                                       {"logprobs", nullptr},
                                       {"finish_reason", nullptr}}});
      return sse_data(dump(chunk));
    }
    if (!req_.echo) return {};
    std::string prompt = req_.prompt_text;
    if (prompt.empty() && codec_.decode) prompt = codec_.decode(req_.prompt_ids);
    chunk["choices"] = json::array(
        {{{"index", 0}, {"text", prompt}, {"logprobs", nullptr}, {"finish_reason", nullptr}}});
    return sse_data(dump(chunk));
  }
  if (const auto* tok = std::get_if<token_event>(&event)) {
    std::size_t offset = text_.size();
    text_ += tok->text;
    logprobs_.insert(logprobs_.end(), tok->logprobs.begin(), tok->logprobs.end());
    if (!req_.stream) return {};
    bool with_logprobs = req_.logprobs >= 0 && !tok->logprobs.empty();
    if (tok->text.empty() && !with_logprobs) return {};
    json choice = {{"index", 0}, {"finish_reason", nullptr}};
    if (chat_) {
      choice["delta"] = {{"content", tok->text}};
      choice["logprobs"] = with_logprobs ? chat_logprobs(tok->logprobs) : json(nullptr);
    } else {
      choice["text"] = tok->text;
      choice["logprobs"] =
          with_logprobs ? completion_logprobs(tok->logprobs, offset) : json(nullptr);
    }
    json chunk = chunk_base();
    chunk["choices"] = json::array({std::move(choice)});
    return sse_data(dump(chunk));
  }
  if (const auto* fin = std::get_if<finished_event>(&event)) return on_finished(*fin);
  const auto& err = std::get<error_event>(event);
  finished_ = true;
  error_ = from_status(err.error);
  if (!req_.stream) return {};
  return sse_data(openai_error_body(*error_)) + sse_done();
}

std::string openai_encoder::on_finished(const finished_event& ev) {
  finished_ = true;
  usage_ = ev.usage;
  finish_reason_ = openai_finish_reason(ev.finish_reason);
  prompt_logprobs_ = ev.prompt_logprobs;
  if (!req_.stream) return {};
  json chunk = chunk_base();
  json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason_}};
  if (chat_) {
    choice["delta"] = json::object();
  } else {
    choice["text"] = "";
  }
  if (!ev.stop_reason.empty()) choice["stop_reason"] = ev.stop_reason;
  chunk["choices"] = json::array({std::move(choice)});
  std::string out = sse_data(dump(chunk));
  if (req_.include_usage) {
    json usage = chunk_base();
    usage["choices"] = json::array();
    usage["usage"] = usage_json();
    out += sse_data(dump(usage));
  }
  return out + sse_done();
}

std::string openai_encoder::body() const {
  if (error_) return openai_error_body(*error_);
  json choice = {{"index", 0}, {"finish_reason", finish_reason_}};
  if (chat_) {
    choice["message"] = {{"role", "assistant"}, {"content", text_}};
    choice["logprobs"] = req_.logprobs >= 0 ? chat_logprobs(logprobs_) : json(nullptr);
  } else {
    std::string text = text_;
    json logprobs = nullptr;
    if (req_.echo) {
      std::string prompt = req_.prompt_text;
      if (prompt.empty() && codec_.decode) prompt = codec_.decode(req_.prompt_ids);
      text = prompt + text_;
    }
    if (req_.logprobs >= 0) {
      if (req_.echo && !prompt_logprobs_.empty()) {
        // The first prompt token has no logprob (nothing precedes it).
        std::vector<std::int32_t> ids = req_.prompt_ids;
        if (ids.empty() && codec_.encode) ids = codec_.encode(req_.prompt_text, true);
        json pl = completion_logprobs({}, 0);
        std::size_t offset = 0;
        for (std::size_t i = 0; i < prompt_logprobs_.size(); ++i) {
          const auto& p = prompt_logprobs_[i];
          std::int32_t token = p ? p->chosen.token : (i < ids.size() ? ids[i] : 0);
          std::string t = codec_.token_text ? codec_.token_text(token) : "";
          pl["tokens"].push_back(t);
          pl["text_offset"].push_back(offset);
          offset += t.size();
          if (!p) {
            pl["token_logprobs"].push_back(nullptr);
            pl["top_logprobs"].push_back(nullptr);
            continue;
          }
          pl["token_logprobs"].push_back(p->chosen.logprob);
          json alternatives = json::object();
          alternatives[t] = p->chosen.logprob;
          for (const token_logprob& a : p->top) {
            alternatives[codec_.token_text ? codec_.token_text(a.token) : ""] = a.logprob;
          }
          pl["top_logprobs"].push_back(std::move(alternatives));
        }
        json gen = completion_logprobs(logprobs_, offset);
        for (const char* k : {"tokens", "token_logprobs", "top_logprobs", "text_offset"}) {
          for (auto& e : gen[k]) pl[k].push_back(e);
        }
        logprobs = std::move(pl);
      } else {
        logprobs = completion_logprobs(logprobs_, 0);
      }
    }
    choice["text"] = text;
    choice["logprobs"] = std::move(logprobs);
  }
  json j = {{"id", id_},
            {"object", chat_ ? "chat.completion" : "text_completion"},
            {"created", created_},
            {"model", model_},
            {"choices", json::array({std::move(choice)})},
            {"usage", usage_json()}};
  return dump(j);
}

std::string sse_data(std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 8);
  out += "data: ";
  out += payload;
  out += "\n\n";
  return out;
}

std::string sse_done() { return "data: [DONE]\n\n"; }

std::string models_body(const std::string& model, int max_model_len, std::int64_t created) {
  json j = {{"object", "list"},
            {"data", json::array({{{"id", model},
                                   {"object", "model"},
                                   {"created", created},
                                   {"owned_by", "kvserve"},
                                   {"root", model},
                                   {"max_model_len", max_model_len}}})}};
  return j.dump();
}

simple_reply handle_tokenize(std::string_view body, const text_codec& codec, int max_model_len) {
  auto parsed = parse_json_object(body);
  if (!parsed.ok()) return {400, openai_error_body(parsed.error)};
  const json& j = *parsed.value;
  try {
    std::string text;
    bool add_special = true;
    if (j.contains("messages")) {
      if (!codec.render_chat) {
        return {400, openai_error_body({error_code::kUnsupported,
                                        "this server cannot render chat prompts", 400})};
      }
      auto messages = read_messages(j.at("messages"));
      text = codec.render_chat(messages, get_bool(j, "add_generation_prompt").value_or(true));
      add_special = false;  // the template writes its special tokens out
    } else {
      auto prompt = get_string(j, "prompt");
      if (!prompt) fail("give 'prompt' or 'messages'");
      text = *prompt;
    }
    if (auto v = get_bool(j, "add_special_tokens")) add_special = *v;
    std::vector<std::int32_t> ids = codec.encode(text, add_special);
    json out = {{"count", ids.size()}, {"max_model_len", max_model_len}, {"tokens", ids}};
    if (get_bool(j, "return_token_strs").value_or(false) && codec.token_text) {
      json strs = json::array();
      for (std::int32_t id : ids) strs.push_back(codec.token_text(id));
      out["token_strs"] = std::move(strs);
    } else {
      out["token_strs"] = nullptr;
    }
    return {200, dump(out)};
  } catch (const field_error& e) {
    return {400, openai_error_body({error_code::kInvalidArgument, e.what(), 400})};
  } catch (const json::exception& e) {
    return {400, openai_error_body({error_code::kInvalidArgument, e.what(), 400})};
  }
}

simple_reply handle_detokenize(std::string_view body, const text_codec& codec, int vocab_size) {
  auto parsed = parse_json_object(body);
  if (!parsed.ok()) return {400, openai_error_body(parsed.error)};
  const json& j = *parsed.value;
  try {
    auto it = j.find("tokens");
    if (it == j.end()) fail("'tokens' is required");
    request_bounds unbounded;
    unbounded.max_model_len = INT32_MAX;
    if (it->is_array() && it->empty()) return {200, json{{"prompt", ""}}.dump()};
    std::vector<std::int32_t> ids = read_token_ids(*it, "tokens", unbounded, vocab_size);
    return {200, dump(json{{"prompt", codec.decode(ids)}})};
  } catch (const field_error& e) {
    return {400, openai_error_body({error_code::kInvalidArgument, e.what(), 400})};
  }
}

}  // namespace kvserve::net
