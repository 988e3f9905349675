#include "bench/serve/request_recorder.hpp"

#include <utility>

namespace kvserve::bench {

request_recorder::request_recorder(double sent_at, double run_origin) : sent_at_(sent_at) {
  out_.start_s = sent_at - run_origin;
}

bool request_recorder::on_event(const stream_event& ev, double now) {
  if (finished_) return true;
  if (ev.prompt_tokens) out_.prompt_tokens = *ev.prompt_tokens;
  if (ev.cached_prompt_tokens) out_.cached_prompt_tokens = *ev.cached_prompt_tokens;
  if (ev.completion_tokens) {
    out_.output_tokens = *ev.completion_tokens;
    out_.usage_reported = true;
  }
  switch (ev.type) {
    case stream_event::kind::kDelta:
      if (ev.has_output) {
        if (last_output_at_ < 0) {
          out_.ttft_s = now - sent_at_;
        } else {
          out_.itl_s.push_back(now - last_output_at_);
        }
        last_output_at_ = now;
        ++chunks_;
        counted_ids_ += static_cast<int>(ev.token_ids.size());
        out_.output_ids.insert(out_.output_ids.end(), ev.token_ids.begin(), ev.token_ids.end());
        out_.output_text += ev.text;
      }
      break;
    case stream_event::kind::kDone:
      finished_ = true;
      out_.e2e_s = now - sent_at_;
      if (last_output_at_ < 0) {
        out_.success = false;
        out_.error = "no output before the end of the stream";
      } else {
        out_.success = true;
      }
      if (!out_.usage_reported) out_.output_tokens = counted_ids_ > 0 ? counted_ids_ : chunks_;
      break;
    case stream_event::kind::kError:
      fail(ev.error.empty() ? "error" : ev.error, now);
      break;
    case stream_event::kind::kAccepted:
    case stream_event::kind::kIgnored:
      break;
  }
  return finished_;
}

void request_recorder::fail(const std::string& error, double now) {
  if (finished_) return;
  finished_ = true;
  out_.success = false;
  out_.error = error;
  out_.e2e_s = now - sent_at_;
}

request_outcome request_recorder::take() { return std::move(out_); }

}  // namespace kvserve::bench
