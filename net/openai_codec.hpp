#pragma once
/// OpenAI-compatible /v1/completions and /v1/chat/completions: request parsing (with vLLM's
/// extras min_tokens, ignore_eos, top_k, cache_salt) and the translation of engine events into
/// response bodies or SSE chunks. No I/O here.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/engine.hpp"
#include "net/api_error.hpp"
#include "net/request_parsing.hpp"
#include "net/server.hpp"

namespace kvserve::net {

enum class openai_endpoint { kCompletions, kChatCompletions };

/// A parsed OpenAI request.
struct openai_request {
  openai_endpoint endpoint = openai_endpoint::kCompletions;
  generate_request request;
  bool stream = false;
  bool include_usage = false;  ///< stream_options.include_usage
  bool echo = false;           ///< completions: prepend the prompt (and its logprobs)
  /// Alternatives per position: completions `logprobs`, chat `top_logprobs` when `logprobs`
  /// is true; -1: no logprobs.
  int logprobs = -1;
  std::string prompt_text;               ///< completions: the text prompt, for echo
  std::vector<std::int32_t> prompt_ids;  ///< completions: the token prompt, for echo
};

/// Parses a request body. `served_model`: a request naming another model gets 404.
parse_result<openai_request> parse_openai_request(openai_endpoint endpoint, std::string_view body,
                                                  const request_bounds& bounds, int vocab_size,
                                                  const std::string& served_model);

/// Turns one request's events into its response. Streaming: each on_event returns the SSE
/// text to send (possibly empty). Not streaming: events accumulate and body() is the response
/// once finished(). Not thread-safe; one per request.
class openai_encoder {
 public:
  openai_encoder(const openai_request& request, const text_codec& codec, std::string model,
                 std::string id, std::int64_t created);

  std::string on_event(const generation_event& event);
  bool finished() const { return finished_; }
  /// Non-streaming response body (valid once finished()).
  std::string body() const;
  /// 200, or the error's status when the request failed.
  int http_status() const { return error_ ? error_->http_status : 200; }

 private:
  nlohmann::json chunk_base() const;
  nlohmann::json completion_logprobs(const std::vector<position_logprobs>& lps,
                                     std::size_t text_offset) const;
  nlohmann::json chat_logprobs(const std::vector<position_logprobs>& lps) const;
  nlohmann::json usage_json() const;
  std::string on_finished(const finished_event& ev);

  openai_request req_;  // a copy: the caller moves its generate_request to the engine
  const text_codec& codec_;
  std::string model_;
  std::string id_;
  std::int64_t created_;
  bool chat_;
  bool sent_role_ = false;
  bool finished_ = false;
  std::string text_;
  std::vector<position_logprobs> logprobs_;
  usage_info usage_;
  std::string finish_reason_;
  std::vector<std::optional<position_logprobs>> prompt_logprobs_;
  std::optional<api_error> error_;
};

/// Formats one SSE event: "data: <payload>\n\n".
std::string sse_data(std::string_view payload);
/// The end marker of OpenAI's streams: "data: [DONE]\n\n".
std::string sse_done();

/// GET /v1/models.
std::string models_body(const std::string& model, int max_model_len, std::int64_t created);

/// A reply computed without the engine's event stream.
struct simple_reply {
  int http_status = 200;
  std::string body;
};
/// POST /tokenize (vLLM's shape: prompt or messages -> count, max_model_len, tokens).
simple_reply handle_tokenize(std::string_view body, const text_codec& codec, int max_model_len);
/// POST /detokenize (vLLM's shape: tokens -> prompt).
simple_reply handle_detokenize(std::string_view body, const text_codec& codec, int vocab_size);

}  // namespace kvserve::net
