#pragma once
/// The wire formats the benchmark speaks, without I/O: request bodies for the WebSocket
/// protocol (kvserve.v1, docs/protocol.md) and OpenAI's endpoints, the SSE event splitter,
/// and the decoding of server messages into one event type.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bench/serve/bench_config.hpp"

namespace kvserve::bench {

struct chat_entry {
  std::string role;
  std::string content;
};

/// One request as the client sends it.
struct request_spec {
  std::vector<std::int32_t> prompt_ids;  ///< WebSocket and completions
  std::vector<chat_entry> messages;      ///< chat
  int max_tokens = 16;
  bool ignore_eos = true;
  double temperature = 0.0;
  int retain_tokens = 0;  ///< > 0: retention of the first retain_tokens prompt tokens
  int retention_priority = 100;
  std::string model;
};

/// A decoded server message or SSE event.
struct stream_event {
  enum class kind { kIgnored, kAccepted, kDelta, kDone, kError };
  kind type = kind::kIgnored;
  /// kDelta: token ids when the protocol sends them (WebSocket), else empty.
  std::vector<std::int32_t> token_ids;
  std::string text;
  /// kDelta carries output (ids or non-empty text): it counts for TTFT and ITL.
  bool has_output = false;
  std::optional<int> prompt_tokens;
  std::optional<int> completion_tokens;
  std::optional<int> cached_prompt_tokens;
  std::string finish_reason;
  std::string error;  ///< kError: "code: message"
};

/// {"type":"start",...} for the WebSocket protocol.
std::string ws_start_frame(const std::string& id, const request_spec& spec);
/// Body of POST /v1/completions (prompt_ids) or /v1/chat/completions (messages), streaming
/// with usage in the last chunk.
std::string openai_request_body(api_backend backend, const request_spec& spec);
/// The path of the OpenAI endpoint of `backend`.
const char* openai_path(api_backend backend);

/// Decodes one WebSocket text frame. Frames for other ids are kIgnored.
stream_event parse_ws_frame(std::string_view frame, const std::string& id);
/// Decodes the payload of one SSE "data:" event; "[DONE]" is kDone.
stream_event parse_sse_payload(std::string_view payload, api_backend backend);

/// Splits an SSE byte stream into the payloads of its "data:" events (events end with a
/// blank line; "\r\n" is accepted). Incomplete events stay buffered until more bytes come.
class sse_splitter {
 public:
  std::vector<std::string> feed(std::string_view bytes);

 private:
  std::string buffer_;
};

}  // namespace kvserve::bench
