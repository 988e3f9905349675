// The request hub: the engine facade's client of the scheduler for every request. A thin
// shell around one request_state per request (detokenisation, stop strings, finish reasons,
// usage); it owns the deadlines and the cancel path. Tokens of all requests arrive in one
// token_batch per scheduler flush, so streaming costs one message per flush rather than one
// per request (the per-request actor of request_actor.cpp remains for CAF programs).

#include <chrono>
#include <memory>
#include <optional>
#include <unordered_map>
#include <utility>

#include "actors/protocol.hpp"
#include "actors/request_state.hpp"

namespace kvserve {

namespace {

using clock = std::chrono::steady_clock;

struct hub_entry {
  std::unique_ptr<request_state> state;
  event_callback on_event;
  bool finish_requested = false;  // cancel, timeout or stop string sent to the scheduler
};

struct request_hub_state {
  request_hub_config config;
  std::unordered_map<request_id, hub_entry> requests;
  bool scheduler_down = false;
  static inline const char* name = "kvserve.request_hub";
};

using self_ptr = request_hub_actor::stateful_pointer<request_hub_state>;

void emit(hub_entry& e, request_id id, generation_event event) {
  if (e.on_event) e.on_event(id, event);
}

/// Ends a request with an error event (not through the scheduler) and forgets it.
void fail_request(self_ptr self, request_id id, hub_entry& e, const status& error) {
  emit(e, id, error_event{error});
  if (self->state.config.obs) {
    self->state.config.obs->on_request_finished(e.state->report("error", clock::now()));
  }
}

void on_delta(self_ptr self, token_delta& delta, clock::time_point now) {
  auto& st = self->state;
  auto it = st.requests.find(delta.id);
  if (it == st.requests.end()) return;
  hub_entry& e = it->second;
  request_state::token_outcome out =
      e.state->on_tokens(delta.tokens, delta.logprobs, delta.prompt_logprobs, now);
  if (out.event && !out.event->token_ids.empty()) emit(e, delta.id, std::move(*out.event));
  if (out.stopped && !e.finish_requested) {
    e.finish_requested = true;
    self->send(st.config.scheduler, finish_atom::value, delta.id, std::string("stop"),
               out.stop_string);
  }
}

/// Asks the scheduler to end a request once (cancel or timeout).
void request_finish(self_ptr self, request_id id, const char* reason) {
  auto& st = self->state;
  auto it = st.requests.find(id);
  if (it == st.requests.end() || it->second.finish_requested) return;
  it->second.finish_requested = true;
  if (std::string(reason) == "cancelled") {
    self->send(st.config.scheduler, cancel_atom::value, id);
  } else {
    self->send(st.config.scheduler, finish_atom::value, id, std::string(reason), std::string());
  }
}

/// Accounts the handler's CPU time to the hub (when the engine measures actor CPU).
actor_cpu_meter::scope measure(self_ptr self) {
  return actor_cpu_meter::scope(self->state.config.cpu_meter.get(), engine_actor::kRequestHub);
}

/// Removes request `id` and hands back its entry; nullopt when it is not live.
std::optional<hub_entry> take(self_ptr self, request_id id) {
  auto& requests = self->state.requests;
  auto it = requests.find(id);
  if (it == requests.end()) return std::nullopt;
  hub_entry e = std::move(it->second);
  requests.erase(it);
  return e;
}

request_hub_actor::behavior_type request_hub(self_ptr self, request_hub_config config) {
  self->state.config = std::move(config);
  // Safety net: should the scheduler stop, every stream still ends (with an error).
  self->monitor(self->state.config.scheduler);
  self->set_down_handler([self](caf::down_msg&) {
    auto& st = self->state;
    st.scheduler_down = true;
    const status error{status_code::kInternal, "the engine's scheduler stopped"};
    auto requests = std::move(st.requests);
    st.requests.clear();
    for (auto& [id, e] : requests) fail_request(self, id, e, error);
  });
  return {
      [self](submit_atom, hub_request& r) {
        const auto measured = measure(self);
        auto& st = self->state;
        const request_id id = r.submission.id;
        hub_entry e;
        e.state = std::make_unique<request_state>(st.config.tok, r.submission.stop,
                                                  std::move(r.stop_strings),
                                                  r.submission.prompt_logprobs, clock::now());
        e.on_event = std::move(r.on_event);
        if (st.scheduler_down) {
          fail_request(self, id, e, {status_code::kInternal, "the engine's scheduler stopped"});
          return;
        }
        st.requests[id] = std::move(e);
        self->send(st.config.scheduler, submit_atom::value, std::move(r.submission),
                   caf::actor_cast<batch_client_actor>(self));
        if (r.timeout) self->delayed_send(self, *r.timeout, timeout_atom::value, id);
      },
      [self](accepted_atom, request_id id, std::int32_t prompt_tokens, std::int32_t cached) {
        const auto measured = measure(self);
        auto& st = self->state;
        auto it = st.requests.find(id);
        if (it == st.requests.end()) return;
        emit(it->second, id, it->second.state->on_accepted(prompt_tokens, cached, clock::now()));
      },
      [self](tokens_atom, token_delta& delta) {
        const auto measured = measure(self);
        on_delta(self, delta, clock::now());
      },
      [self](tokens_atom, token_batch& batch) {
        const auto measured = measure(self);
        const auto now = clock::now();
        for (token_delta& d : batch.deltas) on_delta(self, d, now);
      },
      [self](finished_atom, request_id id, const std::string& reason,
             const std::string& stop_reason) {
        const auto measured = measure(self);
        std::optional<hub_entry> e = take(self, id);
        if (!e) return;
        auto& st = self->state;
        const auto now = clock::now();
        request_state::finish_outcome out = e->state->on_finished(reason, stop_reason, now);
        if (out.tail) emit(*e, id, std::move(*out.tail));
        const std::string final_reason = out.finished.finish_reason;
        emit(*e, id, std::move(out.finished));
        if (st.config.obs) st.config.obs->on_request_finished(e->state->report(final_reason, now));
      },
      [self](failed_atom, request_id id, const error_info& error) {
        const auto measured = measure(self);
        if (std::optional<hub_entry> e = take(self, id))
          fail_request(self, id, *e, error.to_status());
      },
      [self](cancel_atom, request_id id) { request_finish(self, id, "cancelled"); },
      [self](timeout_atom, request_id id) { request_finish(self, id, "timeout"); },
  };
}

}  // namespace

request_hub_actor spawn_request_hub(caf::actor_system& sys, request_hub_config config) {
  return sys.spawn(request_hub, std::move(config));
}

}  // namespace kvserve
