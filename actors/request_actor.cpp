// The request actor: one per request of the engine facade. A thin shell around
// request_state: it submits to the scheduler, turns token ids into the client's events
// (detokenisation, stop strings), and owns the deadline and the cancel path.

#include <chrono>
#include <memory>
#include <utility>

#include "actors/protocol.hpp"
#include "actors/request_state.hpp"

namespace kvserve {

namespace {

using clock = std::chrono::steady_clock;

struct request_actor_state {
  request_id id = 0;
  std::unique_ptr<request_state> state;
  request_actor_config config;
  bool finish_requested = false;  // cancel, timeout or stop string sent to the scheduler
  static inline const char* name = "kvserve.request";
};

using self_ptr = request_actor::stateful_pointer<request_actor_state>;

void emit(self_ptr self, generation_event event) {
  auto& st = self->state;
  if (st.config.on_event) st.config.on_event(st.id, event);
}

request_actor::behavior_type request_fn(self_ptr self, sequence_submission submission,
                                        request_actor_config config) {
  auto& st = self->state;
  st.id = submission.id;
  st.state = std::make_unique<request_state>(config.tok, submission.stop, config.stop_strings,
                                             submission.prompt_logprobs, clock::now());
  st.config = std::move(config);
  self->send(st.config.scheduler, submit_atom::value, std::move(submission),
             caf::actor_cast<sequence_client_actor>(self));
  if (st.config.timeout) self->delayed_send(self, *st.config.timeout, timeout_atom::value);
  // Safety net: should the scheduler stop, the stream still ends (with an error), never hangs.
  self->monitor(st.config.scheduler);
  self->set_down_handler([self](caf::down_msg&) {
    auto& s = self->state;
    emit(self, error_event{{status_code::kInternal, "the engine's scheduler stopped"}});
    if (s.config.obs) s.config.obs->on_request_finished(s.state->report("error", clock::now()));
    self->quit();
  });
  return {
      [self](accepted_atom, request_id, std::int32_t prompt_tokens, std::int32_t cached) {
        emit(self, self->state.state->on_accepted(prompt_tokens, cached, clock::now()));
      },
      [self](tokens_atom, token_delta& delta) {
        auto& s = self->state;
        request_state::token_outcome out =
            s.state->on_tokens(delta.tokens, delta.logprobs, delta.prompt_logprobs, clock::now());
        if (out.event && !out.event->token_ids.empty()) emit(self, std::move(*out.event));
        if (out.stopped && !s.finish_requested) {
          s.finish_requested = true;
          self->send(s.config.scheduler, finish_atom::value, s.id, std::string("stop"),
                     out.stop_string);
        }
      },
      [self](finished_atom, request_id, const std::string& reason, const std::string& stop_reason) {
        auto& s = self->state;
        const auto now = clock::now();
        request_state::finish_outcome out = s.state->on_finished(reason, stop_reason, now);
        if (out.tail) emit(self, std::move(*out.tail));
        const std::string final_reason = out.finished.finish_reason;
        emit(self, std::move(out.finished));
        if (s.config.obs) s.config.obs->on_request_finished(s.state->report(final_reason, now));
        self->quit();
      },
      [self](failed_atom, request_id, const error_info& error) {
        auto& s = self->state;
        emit(self, error_event{error.to_status()});
        if (s.config.obs) s.config.obs->on_request_finished(s.state->report("error", clock::now()));
        self->quit();
      },
      [self](cancel_atom) {
        auto& s = self->state;
        if (s.finish_requested) return;
        s.finish_requested = true;
        self->send(s.config.scheduler, cancel_atom::value, s.id);
      },
      [self](timeout_atom) {
        auto& s = self->state;
        if (s.finish_requested) return;
        s.finish_requested = true;
        self->send(s.config.scheduler, finish_atom::value, s.id, std::string("timeout"),
                   std::string());
      },
  };
}

}  // namespace

request_actor spawn_request_actor(caf::actor_system& sys, sequence_submission submission,
                                  request_actor_config config) {
  return sys.spawn(request_fn, std::move(submission), std::move(config));
}

}  // namespace kvserve
