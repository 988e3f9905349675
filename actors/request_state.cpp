#include "actors/request_state.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

namespace kvserve {

namespace {
status invalid(std::string message) { return {status_code::kInvalidArgument, std::move(message)}; }

status check_sampling(const sampling_params& s) {
  if (!std::isfinite(s.temperature) || s.temperature < 0) {
    return invalid("temperature must be >= 0");
  }
  if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) return invalid("top_p must be in (0, 1]");
  if (!(s.min_p >= 0.0f && s.min_p <= 1.0f)) return invalid("min_p must be in [0, 1]");
  if (!(s.repetition_penalty > 0.0f)) return invalid("repetition_penalty must be > 0");
  if (s.min_tokens < 0) return invalid("min_tokens must be >= 0");
  return status::ok();
}

double seconds(request_state::clock::duration d) {
  return std::chrono::duration<double>(d).count();
}
}  // namespace

result<sequence_submission> prepare_submission(const generate_request& request, request_id id,
                                               const engine_config& config, int max_model_len,
                                               int vocab_size, const tokenizer* tok,
                                               const chat_template* tmpl) {
  sequence_submission sub;
  sub.id = id;
  if (const auto* text = std::get_if<std::string>(&request.prompt)) {
    if (text->empty()) return invalid("the prompt is empty");
    if (tok == nullptr) return invalid("text prompts need a tokenizer; send token ids");
    sub.prompt = tok->encode(*text, /*add_special_tokens=*/true);
  } else if (const auto* messages = std::get_if<std::vector<chat_message>>(&request.prompt)) {
    if (messages->empty()) return invalid("the conversation has no messages");
    if (tok == nullptr || tmpl == nullptr) {
      return invalid("chat prompts need a tokenizer and a chat template");
    }
    for (const auto& m : *messages) {
      if (m.role != "system" && m.role != "user" && m.role != "assistant") {
        return invalid("unknown chat role \"" + m.role + "\"");
      }
    }
    sub.prompt = tok->encode(tmpl->apply(*messages, request.add_generation_prompt),
                             /*add_special_tokens=*/false);
  } else {
    sub.prompt = std::get<std::vector<std::int32_t>>(request.prompt);
  }
  if (sub.prompt.empty()) return invalid("the prompt is empty");
  for (std::int32_t t : sub.prompt) {
    if (t < 0 || (vocab_size > 0 && t >= vocab_size)) {
      return invalid("prompt token id " + std::to_string(t) + " is outside the vocabulary [0, " +
                     std::to_string(vocab_size) + ")");
    }
  }
  if (request.max_tokens < 1) return invalid("max_tokens must be at least 1");
  const long long total = static_cast<long long>(sub.prompt.size()) + request.max_tokens;
  if (total > max_model_len) {
    return invalid("prompt (" + std::to_string(sub.prompt.size()) + " tokens) + max_tokens (" +
                   std::to_string(request.max_tokens) + ") exceeds max_model_len (" +
                   std::to_string(max_model_len) + ")");
  }
  if (status s = check_sampling(request.sampling); !s) return s;
  for (std::int32_t t : request.stop_token_ids) {
    if (t < 0 || (vocab_size > 0 && t >= vocab_size)) {
      return invalid("stop token id " + std::to_string(t) + " is outside the vocabulary");
    }
  }
  if (request.retention && (request.retention->num_tokens < 0 || request.retention->priority < 0 ||
                            request.retention->priority > 100)) {
    return invalid("retention needs num_tokens >= 0 and a priority in [0, 100]");
  }

  sub.sampling = request.sampling;
  if (!request.seed_set) sub.sampling.seed = config.seed;
  sub.stop.max_tokens = request.max_tokens;
  sub.stop.min_tokens = request.sampling.min_tokens;
  if (!request.sampling.ignore_eos && tok != nullptr)
    sub.stop.eos_token_ids = tok->stop_token_ids();
  sub.stop.stop_token_ids = request.stop_token_ids;
  sub.cache_salt = request.cache_salt;
  sub.priority = request.priority;
  sub.prompt_logprobs = request.prompt_logprobs;
  if (request.retention && request.retention->num_tokens > 0) {
    sub.retention_num_tokens = request.retention->num_tokens;
    sub.retention_priority = request.retention->priority;
    if (request.retention->duration) {
      sub.retention_duration_ms = request.retention->duration->count();
    }
  }
  return sub;
}

request_state::request_state(std::shared_ptr<const tokenizer> tok, stop_criteria stop,
                             std::vector<std::string> stop_strings, int prompt_logprobs,
                             clock::time_point submitted)
    : tok_(std::move(tok)),
      stop_(std::move(stop)),
      prompt_logprobs_(prompt_logprobs),
      submitted_(submitted) {
  if (tok_) detok_.emplace(tok_, std::move(stop_strings), /*skip_special_tokens=*/true);
}

accepted_event request_state::on_accepted(int prompt_tokens, int cached_prompt_tokens,
                                          clock::time_point now) {
  if (!accepted_at_) accepted_at_ = now;
  prompt_tokens_ = prompt_tokens;
  cached_prompt_tokens_ = cached_prompt_tokens;
  return accepted_event{prompt_tokens, cached_prompt_tokens};
}

request_state::token_outcome request_state::on_tokens(
    const std::vector<std::int32_t>& tokens, const std::vector<position_logprobs>& logprobs,
    const std::vector<position_logprobs>& prompt_logprobs, clock::time_point now) {
  token_outcome out;
  if (prompt_logprobs_ >= 0) {
    prompt_logprobs_received_.insert(prompt_logprobs_received_.end(), prompt_logprobs.begin(),
                                     prompt_logprobs.end());
  }
  if (stopped_ || tokens.empty()) return out;
  if (!first_token_at_) {
    first_token_at_ = now;
  } else if (last_token_at_) {
    inter_token_latencies_.push_back(seconds(now - *last_token_at_));
  }
  last_token_at_ = now;
  token_event ev;
  for (std::size_t i = 0; i < tokens.size() && !stopped_; ++i) {
    const std::int32_t t = tokens[i];
    ++completion_tokens_;
    // Tokens of several fast steps may come in one message (the scheduler coalesces them):
    // they arrived together, so each after the first counts a latency of 0 (one latency per
    // token after the first, however they were batched).
    if (i > 0) inter_token_latencies_.push_back(0.0);
    ev.token_ids.push_back(t);
    if (i < logprobs.size()) ev.logprobs.push_back(logprobs[i]);
    // A stop token (or EOS) ends the output without adding its text, as vLLM does.
    const auto fin = stop_.check(t, completion_tokens_);
    if (fin && fin->reason == "stop") continue;
    if (!detok_) continue;
    incremental_detokenizer::delta d = detok_->push(t);
    ev.text += d.text;
    if (d.stopped) {
      stopped_ = true;
      stop_string_ = d.stop.value_or("");
      out.stopped = true;
      out.stop_string = stop_string_;
    }
  }
  text_ += ev.text;
  out.event = std::move(ev);
  return out;
}

request_state::finish_outcome request_state::on_finished(const std::string& reason,
                                                         const std::string& stop_reason,
                                                         clock::time_point now) {
  finish_outcome out;
  if (detok_ && !stopped_) {
    incremental_detokenizer::delta d = detok_->finish();
    if (!d.text.empty()) {
      token_event tail;
      tail.text = std::move(d.text);
      text_ += tail.text;
      out.tail = std::move(tail);
    }
  }
  finished_event& f = out.finished;
  f.finish_reason = stopped_ ? "stop" : reason;  // a stop string wins over a late length
  f.stop_reason = stopped_ ? stop_string_ : stop_reason;
  f.usage.prompt_tokens = prompt_tokens_;
  f.usage.completion_tokens = completion_tokens_;
  f.usage.cached_prompt_tokens = cached_prompt_tokens_;
  if (first_token_at_) f.time_to_first_token_seconds = seconds(*first_token_at_ - submitted_);
  f.inter_token_latencies_seconds = inter_token_latencies_;
  if (prompt_logprobs_ >= 0) {
    f.prompt_logprobs.emplace_back(std::nullopt);
    for (const auto& lp : prompt_logprobs_received_) f.prompt_logprobs.emplace_back(lp);
  }
  (void)now;
  return out;
}

request_report request_state::report(const std::string& reason, clock::time_point now) const {
  request_report r;
  r.finish_reason = reason;
  r.prompt_tokens = prompt_tokens_;
  r.cached_prompt_tokens = cached_prompt_tokens_;
  r.completion_tokens = completion_tokens_;
  r.queue_time_seconds =
      accepted_at_ ? seconds(*accepted_at_ - submitted_) : seconds(now - submitted_);
  r.time_to_first_token_seconds = first_token_at_ ? seconds(*first_token_at_ - submitted_) : -1;
  r.e2e_latency_seconds = seconds(now - submitted_);
  r.inter_token_latencies_seconds = inter_token_latencies_;
  return r;
}

}  // namespace kvserve
