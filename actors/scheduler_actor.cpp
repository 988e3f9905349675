// The scheduler actor: a thin shell around scheduler_policy. One step is
//   plan_allocations -> cache manager (allocate) -> apply_allocations -> worker (submit,
//   collect) -> apply_result, then the next step; client messages are handled in between.
// Step overlap: the next step's cache request goes out while a step runs. Asynchronous steps
// (scheduler_config::async_steps) go further: the next step is planned and submitted while a
// step runs, and the running step is collected only after that (or once it is clear that no
// next step comes), so the worker queues step N + 1 behind step N.

#include <algorithm>
#include <chrono>
#include <deque>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include "actors/protocol.hpp"
#include "actors/scheduler_policy.hpp"
#include "actors/stats_board.hpp"

namespace kvserve {

namespace {

using clock = std::chrono::steady_clock;
constexpr auto kRetryDelay = std::chrono::milliseconds(1);
/// Token deltas of steps faster than this are coalesced; stats are published at this rate
/// (and whenever a request ends or the scheduler goes idle).
constexpr auto kFlushInterval = std::chrono::microseconds(1000);
/// Late step overlap: when steps take at least kLateAllocationMinStep, the cache request of
/// step N+1 goes out this long before step N is expected to end (the larger of this and a
/// quarter of the last step's duration), not when step N starts, so that a request arriving
/// during most of step N joins step N+1 instead of waiting for step N+1 as well.
constexpr auto kLateAllocationMinStep = std::chrono::microseconds(2000);
constexpr auto kLateAllocationMargin = std::chrono::microseconds(1000);

struct scheduler_state {
  scheduler_config config;
  std::unique_ptr<scheduler_policy> policy;
  cache_manager_actor cache;
  worker_actor worker;
  std::shared_ptr<observer> obs;
  std::shared_ptr<stats_board> board;
  std::shared_ptr<actor_cpu_meter> meter;  // may be null
  /// A sequence's client; batch clients (index into `batch_clients`) get token_batches.
  struct client_ref {
    sequence_client_actor actor;
    int batch = -1;
  };
  std::unordered_map<request_id, client_ref> clients;
  std::vector<batch_client_actor> batch_clients;
  std::vector<token_batch> batches;  // per batch client, filled by flush()
  // Step overlap: while the worker runs step N, the cache request of step N+1 is out; its
  // reply waits in `early_reply` until step N's outcome is applied (without async_steps).
  bool alloc_in_flight = false;
  int uncollected = 0;             // steps submitted to the worker and not collected (0..2)
  bool collect_in_flight = false;  // a collect request is out (for the oldest of them)
  std::optional<cache_step_reply> early_reply;
  std::deque<step_report> exec_reports;  // one per uncollected step, oldest first
  bool busy() const { return alloc_in_flight || uncollected > 0; }
  bool retry_pending = false;
  // Late allocation: a delayed step_atom carrying `late_token` sends the next cache request.
  bool late_pending = false;
  std::uint64_t late_token = 0;
  std::chrono::microseconds last_step_duration{0};  // the worker's time for the last step
  step_kind last_step_kind = step_kind::kPrefill;
  // Recovery from an exception in the scheduler itself: every request live at that moment
  // fails once the in-flight message has come back and the cache manager has released every
  // sequence; requests submitted meanwhile go to a fresh policy and are served after that.
  std::uint64_t epoch = 0;  // bumped by each recovery; replies of older epochs are dropped
  bool recovering = false;
  std::vector<std::pair<request_id, client_ref>> doomed;
  status doom_error;
  bool cache_lost = false;  // the cache manager actor is gone: nothing can be served
  cache_stats_snapshot cache_stats;
  std::uint64_t cuda_graph_replays = 0;
  std::uint64_t num_accepted = 0;
  std::uint64_t num_rejected = 0;
  // Token coalescing: deltas of fast steps are merged and sent at most every kFlushInterval
  // (and always before a final event, and when the scheduler goes idle), so a request
  // actor gets one message per interval rather than one per step.
  // Plain tokens (no logprobs), gathered per sequence by its policy slot; `touched_slots`
  // lists the slots holding tokens, in the order they were first filled.
  struct slot_tokens {
    request_id id = 0;
    std::vector<std::int32_t> tokens;
  };
  std::vector<slot_tokens> pending_by_slot;
  std::vector<std::uint32_t> touched_slots;
  std::vector<token_output> step_tokens;    // scratch for apply_result
  std::vector<token_delta> pending_deltas;  // tokens with logprobs or prompt logprobs
  std::vector<sequence_event> step_events;  // scratch for apply_result
  clock::time_point last_flush{};
  clock::time_point last_publish{};
  bool final_sent = false;  // a final event went out since the last publish
  static inline const char* name = "kvserve.scheduler";
};

using self_ptr = scheduler_actor::stateful_pointer<scheduler_state>;

/// Hands one sequence's merged delta to its client: into its batch client's token_batch,
/// or as a message of its own.
void route(self_ptr self, token_delta&& delta) {
  auto& st = self->state;
  auto it = st.clients.find(delta.id);
  if (it == st.clients.end()) return;
  if (it->second.batch >= 0) {
    st.batches[static_cast<std::size_t>(it->second.batch)].deltas.push_back(std::move(delta));
  } else {
    self->send(it->second.actor, tokens_atom::value, std::move(delta));
  }
}

/// Routes the plain tokens gathered in one slot as one delta, and empties the slot.
void route_slot(self_ptr self, scheduler_state::slot_tokens& pending) {
  token_delta d;
  d.id = pending.id;
  d.tokens = pending.tokens;  // a copy sized to fit; the slot keeps its capacity
  pending.tokens.clear();
  route(self, std::move(d));
}

/// Adds a step's plain tokens to their sequences' slots.
void gather(self_ptr self, const std::vector<token_output>& tokens) {
  auto& st = self->state;
  for (const token_output& t : tokens) {
    if (t.slot >= st.pending_by_slot.size()) st.pending_by_slot.resize(t.slot + 1);
    scheduler_state::slot_tokens& pending = st.pending_by_slot[t.slot];
    if (pending.tokens.empty()) {
      st.touched_slots.push_back(t.slot);
    } else if (pending.id != t.id) {
      // The slot's previous sequence ended and the slot was reused before a flush: its
      // tokens go out first (ahead of its final event, which flushes before it is sent).
      // The slot is listed in touched_slots already.
      route_slot(self, pending);
    }
    pending.id = t.id;
    pending.tokens.push_back(t.token);
  }
}

/// Sends the coalesced token deltas, in order: one token_batch per batch client, one message
/// per sequence for other clients.
void flush(self_ptr self) {
  auto& st = self->state;
  st.last_flush = clock::now();
  if (st.touched_slots.empty() && st.pending_deltas.empty()) return;
  // A sequence's tokens all take one path (flat when it asked for no logprobs), so the slots
  // and the delta list never hold the same sequence.
  for (std::uint32_t slot : st.touched_slots) {
    scheduler_state::slot_tokens& pending = st.pending_by_slot[slot];
    if (!pending.tokens.empty()) route_slot(self, pending);
  }
  st.touched_slots.clear();
  auto& pending = st.pending_deltas;
  std::stable_sort(pending.begin(), pending.end(),
                   [](const token_delta& a, const token_delta& b) { return a.id < b.id; });
  for (std::size_t i = 0; i < pending.size();) {
    token_delta merged = std::move(pending[i]);
    std::size_t j = i + 1;
    for (; j < pending.size() && pending[j].id == merged.id; ++j) {
      token_delta& d = pending[j];
      merged.tokens.insert(merged.tokens.end(), d.tokens.begin(), d.tokens.end());
      merged.logprobs.insert(merged.logprobs.end(), std::make_move_iterator(d.logprobs.begin()),
                             std::make_move_iterator(d.logprobs.end()));
      merged.prompt_logprobs.insert(merged.prompt_logprobs.end(),
                                    std::make_move_iterator(d.prompt_logprobs.begin()),
                                    std::make_move_iterator(d.prompt_logprobs.end()));
    }
    route(self, std::move(merged));
    i = j;
  }
  pending.clear();
  for (std::size_t b = 0; b < st.batches.size(); ++b) {
    if (st.batches[b].deltas.empty()) continue;
    self->send(st.batch_clients[b], tokens_atom::value, std::move(st.batches[b]));
    st.batches[b] = token_batch{};
  }
}

void maybe_flush(self_ptr self) {
  auto& st = self->state;
  if (!st.busy() || clock::now() - st.last_flush >= kFlushInterval) flush(self);
}

void deliver(self_ptr self, std::vector<sequence_event>& events) {
  auto& st = self->state;
  for (sequence_event& e : events) {
    auto it = st.clients.find(e.id);
    if (it == st.clients.end()) continue;
    switch (e.type) {
      case sequence_event::kind::kAccepted:
        self->send(it->second.actor, accepted_atom::value, e.id,
                   static_cast<std::int32_t>(e.prompt_tokens),
                   static_cast<std::int32_t>(e.cached_prompt_tokens));
        break;
      case sequence_event::kind::kTokens:
        st.pending_deltas.push_back(token_delta{e.id, std::move(e.tokens), std::move(e.logprobs),
                                                std::move(e.prompt_logprobs)});
        break;
      case sequence_event::kind::kFinished:
        flush(self);  // its tokens first
        self->send(it->second.actor, finished_atom::value, e.id, e.finish_reason, e.stop_reason);
        st.clients.erase(it);
        st.final_sent = true;
        break;
      case sequence_event::kind::kError:
        flush(self);
        self->send(it->second.actor, failed_atom::value, e.id, error_info::from(e.error));
        st.clients.erase(it);
        st.final_sent = true;
        break;
    }
  }
}

engine_stats make_stats(const scheduler_state& st) {
  engine_stats s;
  s.num_requests_running = st.policy->num_running();
  s.num_requests_waiting = st.policy->num_waiting();
  const cache_stats_snapshot& c = st.cache_stats;
  s.num_blocks_total = c.num_blocks_total;
  s.num_blocks_free = c.num_blocks_free;
  s.num_blocks_cached = c.num_blocks_cached;
  s.num_blocks_locked = c.num_blocks_locked;
  s.kv_cache_usage_ratio = c.num_blocks_total > 0 ? static_cast<double>(c.num_blocks_locked) /
                                                        static_cast<double>(c.num_blocks_total)
                                                  : 0.0;
  s.prefix_cache_queries_tokens = c.prefix_queries_tokens;
  s.prefix_cache_hits_tokens = c.prefix_hits_tokens;
  s.evictions_by_reason = {{"capacity", c.evictions_capacity},
                           {"retained", c.evictions_retained},
                           {"orphan", c.evictions_orphan},
                           {"reset", c.evictions_reset}};
  s.num_preemptions = st.policy->num_preemptions();
  s.cuda_graph_replays = st.cuda_graph_replays;
  s.num_requests_accepted = st.num_accepted;
  s.num_requests_rejected = st.num_rejected;
  if (st.meter) s.actor_cpu_seconds = st.meter->seconds();
  return s;
}

void publish(self_ptr self) {
  auto& st = self->state;
  if (!st.board && !st.obs) return;
  const auto now = clock::now();
  // Throttled on fast steps; always after a request ended or when idle, so that a client
  // that saw its final event reads stats that include it.
  if (!st.final_sent && st.busy() && now - st.last_publish < kFlushInterval) return;
  st.final_sent = false;
  st.last_publish = now;
  engine_stats s = make_stats(st);
  if (st.board) st.board->publish(s);
  if (st.obs) st.obs->on_stats(s);
}

step_report describe(const step_plan& plan, int num_prompt_tokens, int num_decode) {
  step_report r;
  r.batch_size = static_cast<int>(plan.seqs.size());
  r.num_prompt_tokens = num_prompt_tokens;
  r.kind = num_decode == r.batch_size ? step_kind::kDecode
           : num_decode == 0          ? step_kind::kPrefill
                                      : step_kind::kMixed;
  return r;
}

void kick(self_ptr self);
void schedule_next_allocation(self_ptr self);
void recover(self_ptr self, status error);

/// Runs `f`; an exception becomes a recovery (every live request fails with an error, the
/// blocks are returned, the engine keeps serving new requests).
template <class F>
void guarded(self_ptr self, F&& f) {
  actor_cpu_meter::scope measured(self->state.meter.get(), engine_actor::kScheduler);
  try {
    f();
  } catch (const std::exception& e) {
    recover(self, {status_code::kInternal, std::string("scheduler exception: ") + e.what()});
  } catch (...) {
    recover(self, {status_code::kInternal, "scheduler exception"});
  }
}

void fault_point(self_ptr self, const char* where) {
  if (self->state.config.fault_hook) self->state.config.fault_hook(where);
}

/// Fails every request: used when the cache manager is gone. Never throws.
void fail_everyone(self_ptr self, const status& error) noexcept {
  auto& st = self->state;
  try {
    flush(self);
    for (auto& [id, client] : st.clients)
      self->send(client.actor, failed_atom::value, id, error_info::from(error));
    for (auto& [id, client] : st.doomed)
      self->send(client.actor, failed_atom::value, id, error_info::from(error));
    st.clients.clear();
    st.doomed.clear();
    st.policy = std::make_unique<scheduler_policy>(st.config);
  } catch (...) {
  }
}

void request_collect(self_ptr self);

/// Recovery, once nothing is in flight: the cache manager releases every sequence, then the
/// doomed requests get their error. Steps still on the worker are collected (and dropped)
/// first.
void continue_recovery(self_ptr self) {
  auto& st = self->state;
  if (!st.recovering) return;
  if (st.uncollected > 0 && !st.collect_in_flight) request_collect(self);
  if (st.busy()) return;
  cache_step_request request;
  request.release_all = true;
  st.alloc_in_flight = true;
  const std::uint64_t epoch = st.epoch;
  self->request(st.cache, caf::infinite, allocate_atom::value, std::move(request))
      .then(
          [self, epoch](cache_step_reply& reply) {
            auto& st = self->state;
            st.alloc_in_flight = false;
            if (epoch != st.epoch) return continue_recovery(self);
            st.cache_stats = reply.stats;
            for (auto& [id, client] : st.doomed) {
              self->send(client.actor, failed_atom::value, id, error_info::from(st.doom_error));
            }
            st.doomed.clear();
            st.recovering = false;
            st.final_sent = true;  // publish the stats with every block returned
            guarded(self, [&] {
              kick(self);
              publish(self);
            });
          },
          [self](caf::error&) {
            auto& st = self->state;
            st.alloc_in_flight = false;
            st.recovering = false;
            st.cache_lost = true;
            fail_everyone(self, {status_code::kInternal, "the cache manager stopped"});
          });
}

void recover(self_ptr self, status error) {
  auto& st = self->state;
  try {
    st.pending_deltas.clear();  // the policy is suspect: these requests fail anyway
    for (auto& pending : st.pending_by_slot) pending.tokens.clear();
    st.touched_slots.clear();
    ++st.epoch;
    for (auto& entry : st.clients) st.doomed.push_back(std::move(entry));
    st.clients.clear();
    if (!st.recovering) st.doom_error = std::move(error);
    st.recovering = true;
    st.retry_pending = false;
    st.late_pending = false;
    st.early_reply.reset();
    st.policy = std::make_unique<scheduler_policy>(st.config);
    continue_recovery(self);
  } catch (...) {
    fail_everyone(self, {status_code::kInternal, "scheduler recovery failed"});
  }
}

void on_allocated(self_ptr self, cache_step_reply& reply);

/// Asynchronous steps: collects the oldest uncollected step once two are in flight, or once
/// no next step is being planned (no cache request out, none due later).
void ensure_collect(self_ptr self) {
  auto& st = self->state;
  if (st.uncollected == 0 || st.collect_in_flight) return;
  if (st.uncollected >= 2 || (!st.alloc_in_flight && !st.late_pending)) request_collect(self);
}

/// What follows a step's outcome or an empty plan: the next cache request unless a late one
/// is due, and (asynchronous steps) the collect that is now possible.
void advance(self_ptr self) {
  if (!self->state.late_pending) kick(self);
  ensure_collect(self);
}

void on_executed(self_ptr self, worker_outcome& out, const step_report& exec_report) {
  auto& st = self->state;
  fault_point(self, "executed");
  std::vector<sequence_event>& events = st.step_events;
  events.clear();
  int num_sampled = 0;
  if (out.error) {
    // Plain tokens go straight to the pending list; finishes are delivered after them.
    st.step_tokens.clear();
    num_sampled = st.policy->apply_result(out.result, st.step_tokens, events);
    gather(self, st.step_tokens);
  } else {
    events = st.policy->fail_step(out.error);
  }
  st.policy->recycle(std::move(out.plan));
  st.cuda_graph_replays = out.cuda_graph_replays;
  st.last_step_duration = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::duration<double>(out.duration_seconds));
  st.last_step_kind = exec_report.kind;
  if (out.error && st.obs) {
    step_report report = exec_report;
    report.duration_seconds = out.duration_seconds;
    report.num_generated_tokens = num_sampled;
    st.obs->on_step(report);
  }
  deliver(self, events);
  if (st.config.async_steps) {
    // The step submitted ahead (if any) runs now: time the next cache request by it.
    if (st.uncollected > 0 && !st.alloc_in_flight && !st.late_pending &&
        st.policy->can_plan_ahead()) {
      schedule_next_allocation(self);
    }
    advance(self);
  } else {
    st.late_pending = false;  // the step ended before a late request was due
    if (st.early_reply) {
      // The next step's blocks are ready: plan it now that this step's tokens are known.
      cache_step_reply reply = std::move(*st.early_reply);
      st.early_reply.reset();
      on_allocated(self, reply);
      return;
    }
    kick(self);
  }
  maybe_flush(self);
  publish(self);
}

void request_collect(self_ptr self) {
  auto& st = self->state;
  st.collect_in_flight = true;
  const std::uint64_t epoch = st.epoch;
  auto done = [self, epoch](worker_outcome& out) {
    auto& st = self->state;
    st.collect_in_flight = false;
    --st.uncollected;
    step_report report;
    if (!st.exec_reports.empty()) {
      report = st.exec_reports.front();
      st.exec_reports.pop_front();
    }
    if (epoch != st.epoch) return continue_recovery(self);
    guarded(self, [&] { on_executed(self, out, report); });
  };
  self->request(st.worker, caf::infinite, collect_atom::value)
      .then([done](worker_outcome& out) mutable { done(out); },
            [self, done](caf::error& err) mutable {
              worker_outcome out;
              out.error = {status_code::kInternal,
                           "the worker failed: " + self->system().render(err)};
              done(out);
            });
}

void send_step(self_ptr self, step_plan plan, int num_prompt_tokens, int num_decode) {
  auto& st = self->state;
  st.exec_reports.push_back(describe(plan, num_prompt_tokens, num_decode));
  ++st.uncollected;
  self->send(st.worker, submit_atom::value, std::move(plan));
  // Without asynchronous steps every step is collected at once (messages to the worker keep
  // their order, so the collect finds the step).
  if (!st.config.async_steps) request_collect(self);
}

void on_allocated(self_ptr self, cache_step_reply& reply) {
  auto& st = self->state;
  fault_point(self, "allocated");
  st.cache_stats = reply.stats;
  if (!reply.error) {
    // The cache manager failed and released every sequence: those that held blocks end with
    // the error, waiting ones are served later.
    std::vector<sequence_event> events = st.policy->abort_allocations(reply.error);
    deliver(self, events);
    advance(self);
    maybe_flush(self);
    publish(self);
    return;
  }
  planned_step ps = st.policy->apply_allocations(reply);
  deliver(self, ps.events);
  if (ps.plan.seqs.empty()) {
    flush(self);
    publish(self);
    if (st.policy->has_work() && !st.retry_pending && st.uncollected == 0) {
      st.retry_pending = true;
      self->delayed_send(self, kRetryDelay, step_atom::value);
    }
    ensure_collect(self);
    return;
  }
  const bool from_idle = st.uncollected == 0;
  send_step(self, std::move(ps.plan), ps.num_prompt_tokens, ps.num_decode_seqs);
  // Asynchronous steps: a step submitted behind a running one starts when that one ends,
  // which its collect tells; the next cache request is timed from there.
  if (!st.config.async_steps || from_idle) schedule_next_allocation(self);
  ensure_collect(self);
  maybe_flush(self);
  publish(self);
}

/// Step overlap: the next step's cache request goes out while this step runs — at once for
/// fast steps, else late (see kLateAllocationMinStep), judged by the last step's duration.
/// Should this step end before the late request is due, on_executed sends it instead. With
/// asynchronous steps, whose collect waits for the next plan, it is late only between decode
/// steps (a prefill's duration says nothing about the decode step after it).
void schedule_next_allocation(self_ptr self) {
  auto& st = self->state;
  const auto expected = st.last_step_duration;
  if (expected < kLateAllocationMinStep) return kick(self);
  if (st.config.async_steps &&
      (st.last_step_kind != step_kind::kDecode || st.exec_reports.empty() ||
       st.exec_reports.front().kind != step_kind::kDecode)) {
    return kick(self);
  }
  const auto margin = std::max<std::chrono::microseconds>(kLateAllocationMargin, expected / 4);
  st.late_pending = true;
  self->delayed_send(self, expected - margin, step_atom::value, ++st.late_token);
}

void kick(self_ptr self) {
  auto& st = self->state;
  if (st.alloc_in_flight || st.early_reply || st.recovering || st.cache_lost ||
      !st.policy->has_work()) {
    return;
  }
  if (st.config.async_steps) {
    // The next plan waits for the oldest step's result, or (after a failed step) for the
    // step behind it.
    if (st.uncollected >= 2 || (st.uncollected == 1 && !st.policy->can_plan_ahead())) return;
  } else if (st.uncollected > 0 && st.config.no_kv_cache) {
    return;  // no overlap without a KV cache
  }
  fault_point(self, "plan");
  cache_step_request request = st.policy->plan_allocations(clock::now());
  st.alloc_in_flight = true;
  st.late_pending = false;  // sent now, whether it was due later or not
  const std::uint64_t epoch = st.epoch;
  self->request(st.cache, caf::infinite, allocate_atom::value, std::move(request))
      .then(
          [self, epoch](cache_step_reply& reply) {
            auto& st = self->state;
            st.alloc_in_flight = false;
            if (epoch != st.epoch) return continue_recovery(self);
            if (st.uncollected > 0 && !st.config.async_steps) {
              st.early_reply = std::move(reply);  // applied after the running step's outcome
              return;
            }
            guarded(self, [&] { on_allocated(self, reply); });
          },
          [self](caf::error&) {
            // The cache manager is gone (the engine is shutting down, or it died): nothing
            // can be served any more, so every request ends with an error.
            auto& st = self->state;
            st.alloc_in_flight = false;
            st.cache_lost = true;
            st.recovering = false;
            fail_everyone(self, {status_code::kInternal, "the cache manager stopped"});
          });
}

void on_submit(self_ptr self, sequence_submission& sub, scheduler_state::client_ref client) {
  auto& s = self->state;
  const request_id id = sub.id;
  if (s.cache_lost) {
    self->send(client.actor, failed_atom::value, id,
               error_info{status_code::kInternal, "the cache manager stopped"});
    return;
  }
  if (s.clients.count(id) != 0) {
    ++s.num_rejected;
    self->send(
        client.actor, failed_atom::value, id,
        error_info{status_code::kInvalidArgument, "request id " + std::to_string(id) + " is live"});
    return;
  }
  // Registered first, so that a failure below still reaches this client.
  s.clients[id] = client;
  guarded(self, [&] {
    fault_point(self, "submit");
    status added = s.policy->add(std::move(sub), clock::now());
    if (!added) {
      ++s.num_rejected;
      s.clients.erase(id);
      self->send(client.actor, failed_atom::value, id, error_info::from(added));
      return;
    }
    ++s.num_accepted;
    kick(self);
  });
}

scheduler_actor::behavior_type scheduler(self_ptr self, scheduler_config config,
                                         cache_manager_actor cache, worker_actor worker,
                                         std::shared_ptr<observer> obs,
                                         std::shared_ptr<stats_board> board,
                                         std::shared_ptr<actor_cpu_meter> meter) {
  auto& st = self->state;
  st.meter = std::move(meter);
  st.config = config;
  st.policy = std::make_unique<scheduler_policy>(std::move(config));
  st.cache = std::move(cache);
  st.worker = std::move(worker);
  st.obs = std::move(obs);
  st.board = std::move(board);
  return {
      [self](submit_atom, sequence_submission& sub, sequence_client_actor& client) {
        on_submit(self, sub, scheduler_state::client_ref{std::move(client), -1});
      },
      [self](submit_atom, sequence_submission& sub, batch_client_actor& client) {
        auto& s = self->state;
        int index = -1;
        for (std::size_t i = 0; i < s.batch_clients.size(); ++i) {
          if (s.batch_clients[i].address() == client.address()) index = static_cast<int>(i);
        }
        if (index < 0) {
          index = static_cast<int>(s.batch_clients.size());
          s.batch_clients.push_back(client);
          s.batches.emplace_back();
        }
        on_submit(
            self, sub,
            scheduler_state::client_ref{caf::actor_cast<sequence_client_actor>(client), index});
      },
      [self](cancel_atom, request_id id) {
        guarded(self, [&] {
          std::vector<sequence_event> events = self->state.policy->remove(id, "cancelled");
          deliver(self, events);
          kick(self);
        });
      },
      [self](finish_atom, request_id id, const std::string& reason,
             const std::string& stop_reason) {
        guarded(self, [&] {
          std::vector<sequence_event> events = self->state.policy->remove(id, reason, stop_reason);
          deliver(self, events);
          kick(self);
        });
      },
      [self](stats_atom) -> engine_stats { return make_stats(self->state); },
      [self](step_atom) {
        self->state.retry_pending = false;
        guarded(self, [&] { advance(self); });
      },
      [self](step_atom, std::uint64_t token) {
        auto& st = self->state;
        if (token != st.late_token || !st.late_pending) return;  // sent already, or superseded
        st.late_pending = false;
        guarded(self, [&] { advance(self); });
      },
  };
}

}  // namespace

scheduler_actor spawn_scheduler(caf::actor_system& sys, scheduler_config config,
                                cache_manager_actor cache, worker_actor worker,
                                std::shared_ptr<observer> obs, std::shared_ptr<stats_board> board,
                                std::shared_ptr<actor_cpu_meter> meter) {
  return sys.spawn(scheduler, std::move(config), std::move(cache), std::move(worker),
                   std::move(obs), std::move(board), std::move(meter));
}

}  // namespace kvserve
