#pragma once
/// Turns the events of one streamed request, with the times they arrived, into its outcome:
/// TTFT, inter-token latencies, end-to-end latency and token counts. Pure: the caller reads
/// the clock.

#include <cstdint>
#include <string>
#include <vector>

#include "bench/serve/stream_events.hpp"

namespace kvserve::bench {

/// What one request measured. Times are seconds.
struct request_outcome {
  int session = 0;
  int turn = 0;
  bool success = false;
  std::string error;
  double start_s = 0;  ///< when it was sent, from the start of the run
  double ttft_s = 0;   ///< first output, from start (connection included)
  double e2e_s = 0;    ///< last event, from start
  /// Gaps between successive output chunks (a chunk may carry several tokens).
  std::vector<double> itl_s;
  int prompt_tokens = 0;
  int output_tokens = 0;
  int cached_prompt_tokens = 0;
  bool usage_reported = false;           ///< counts came from the server's usage, not from counting
  std::vector<std::int32_t> output_ids;  ///< WebSocket only
  std::string output_text;

  /// (e2e - ttft) / (output_tokens - 1); 0 with fewer than two tokens.
  double tpot_s() const { return output_tokens > 1 ? (e2e_s - ttft_s) / (output_tokens - 1) : 0.0; }
};

class request_recorder {
 public:
  /// `sent_at`: the clock reading (seconds) when the request was started; `run_origin`: the
  /// start of the run on the same clock.
  request_recorder(double sent_at, double run_origin);

  /// Records an event received at `now`. Returns true once the request has ended (done or
  /// error); later events are ignored.
  bool on_event(const stream_event& ev, double now);
  /// Ends the request as failed (transport error, timeout), unless it has already ended.
  void fail(const std::string& error, double now);
  bool finished() const { return finished_; }
  /// The outcome; call once finished.
  request_outcome take();
  request_outcome& outcome() { return out_; }

 private:
  double sent_at_;
  double last_output_at_ = -1;
  int chunks_ = 0;
  int counted_ids_ = 0;
  bool finished_ = false;
  request_outcome out_;
};

}  // namespace kvserve::bench
