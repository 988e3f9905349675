#pragma once
/// A request's client-side state without actors: turning a generate_request into a
/// sequence_submission (prompt forms, validation, seeds, stop rules), and turning the
/// scheduler's token ids into the client's events (incremental detokenisation, stop strings,
/// finish reasons, usage and timings). The request actor owns one.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actors/engine.hpp"
#include "actors/observer.hpp"
#include "actors/scheduler_types.hpp"
#include "model/chat_template.hpp"
#include "model/incremental_detokenizer.hpp"
#include "model/tokenizer.hpp"

namespace kvserve {

/// Tokenises and validates a request: text is encoded with special tokens, chat messages go
/// through the chat template first, token ids are taken as they are. kInvalidArgument for an
/// empty prompt, ids outside the vocabulary, prompt + max_tokens > max_model_len, bad
/// sampling values, or a text prompt without a tokenizer. The seed defaults to
/// config.seed unless request.seed_set.
result<sequence_submission> prepare_submission(const generate_request& request, request_id id,
                                               const engine_config& config, int max_model_len,
                                               int vocab_size, const tokenizer* tok,
                                               const chat_template* tmpl);

/// Client-side state of one request.
class request_state {
 public:
  using clock = std::chrono::steady_clock;

  /// `tok` may be null: events then carry token ids without text, and stop strings are not
  /// checked.
  request_state(std::shared_ptr<const tokenizer> tok, stop_criteria stop,
                std::vector<std::string> stop_strings, int prompt_logprobs,
                clock::time_point submitted);

  /// The scheduler admitted the request for the first time.
  accepted_event on_accepted(int prompt_tokens, int cached_prompt_tokens, clock::time_point now);

  /// What a batch of new tokens produced: an event to send (if it carries anything) and
  /// whether a stop string ended the request.
  struct token_outcome {
    std::optional<token_event> event;
    bool stopped = false;
    std::string stop_string;
  };
  /// New tokens. Tokens after a stop string matched are ignored.
  token_outcome on_tokens(const std::vector<std::int32_t>& tokens,
                          const std::vector<position_logprobs>& logprobs,
                          const std::vector<position_logprobs>& prompt_logprobs,
                          clock::time_point now);

  /// The request ended: any held-back text (as a last token_event) and the finished_event.
  struct finish_outcome {
    std::optional<token_event> tail;
    finished_event finished;
  };
  finish_outcome on_finished(const std::string& reason, const std::string& stop_reason,
                             clock::time_point now);

  /// The observer's record of the request; `reason` as finished (or "error").
  request_report report(const std::string& reason, clock::time_point now) const;

  bool stopped_by_string() const { return stopped_; }
  int completion_tokens() const { return completion_tokens_; }
  const std::string& text() const { return text_; }

 private:
  std::shared_ptr<const tokenizer> tok_;
  std::optional<incremental_detokenizer> detok_;
  stop_criteria stop_;
  int prompt_logprobs_ = -1;
  clock::time_point submitted_;
  std::optional<clock::time_point> accepted_at_;
  std::optional<clock::time_point> first_token_at_;
  std::optional<clock::time_point> last_token_at_;
  std::vector<double> inter_token_latencies_;
  std::vector<position_logprobs> prompt_logprobs_received_;
  int prompt_tokens_ = 0;
  int cached_prompt_tokens_ = 0;
  int completion_tokens_ = 0;
  bool stopped_ = false;
  std::string stop_string_;
  std::string text_;
};

}  // namespace kvserve
