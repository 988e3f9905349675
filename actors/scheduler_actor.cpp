// The scheduler actor: a thin shell around scheduler_policy. One step is
//   plan_allocations -> cache manager (allocate) -> apply_allocations -> worker (execute)
//   -> apply_result, then the next step; client messages are handled in between.

#include <chrono>
#include <memory>
#include <unordered_map>
#include <utility>

#include "actors/protocol.hpp"
#include "actors/scheduler_policy.hpp"
#include "actors/stats_board.hpp"

namespace kvserve {

namespace {

using clock = std::chrono::steady_clock;
constexpr auto kRetryDelay = std::chrono::milliseconds(1);

struct scheduler_state {
  std::unique_ptr<scheduler_policy> policy;
  cache_manager_actor cache;
  worker_actor worker;
  std::shared_ptr<observer> obs;
  std::shared_ptr<stats_board> board;
  std::unordered_map<request_id, sequence_client_actor> clients;
  bool busy = false;
  bool retry_pending = false;
  cache_stats_snapshot cache_stats;
  std::uint64_t cuda_graph_replays = 0;
  std::uint64_t num_accepted = 0;
  std::uint64_t num_rejected = 0;
  static inline const char* name = "kvserve.scheduler";
};

using self_ptr = scheduler_actor::stateful_pointer<scheduler_state>;

void deliver(self_ptr self, std::vector<sequence_event>& events) {
  auto& st = self->state;
  for (sequence_event& e : events) {
    auto it = st.clients.find(e.id);
    if (it == st.clients.end()) continue;
    switch (e.type) {
      case sequence_event::kind::kAccepted:
        self->send(it->second, accepted_atom::value, e.id,
                   static_cast<std::int32_t>(e.prompt_tokens),
                   static_cast<std::int32_t>(e.cached_prompt_tokens));
        break;
      case sequence_event::kind::kTokens:
        self->send(it->second, tokens_atom::value,
                   token_delta{e.id, std::move(e.tokens), std::move(e.logprobs),
                               std::move(e.prompt_logprobs)});
        break;
      case sequence_event::kind::kFinished:
        self->send(it->second, finished_atom::value, e.id, e.finish_reason, e.stop_reason);
        st.clients.erase(it);
        break;
      case sequence_event::kind::kError:
        self->send(it->second, failed_atom::value, e.id, error_info::from(e.error));
        st.clients.erase(it);
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
  return s;
}

void publish(self_ptr self) {
  auto& st = self->state;
  if (!st.board && !st.obs) return;
  engine_stats s = make_stats(st);
  if (st.board) st.board->publish(s);
  if (st.obs) st.obs->on_stats(s);
}

step_report describe(const step_plan& plan) {
  step_report r;
  r.batch_size = static_cast<int>(plan.seqs.size());
  int num_decode = 0;
  for (const sequence_step& s : plan.seqs) {
    const bool decode = s.tokens.size() == 1 && s.sample && s.start_position > 0;
    if (decode) {
      ++num_decode;
    } else {
      r.num_prompt_tokens += static_cast<int>(s.tokens.size());
    }
  }
  r.kind = num_decode == r.batch_size ? step_kind::kDecode
           : num_decode == 0          ? step_kind::kPrefill
                                      : step_kind::kMixed;
  return r;
}

void kick(self_ptr self);

void on_executed(self_ptr self, step_report report, worker_outcome& out) {
  auto& st = self->state;
  std::vector<sequence_event> events =
      out.error ? st.policy->apply_result(out.result) : st.policy->fail_step(out.error);
  st.cuda_graph_replays = out.cuda_graph_replays;
  if (out.error && st.obs) {
    report.duration_seconds = out.duration_seconds;
    for (const auto& r : out.result.seqs) report.num_generated_tokens += r.sampled_token ? 1 : 0;
    st.obs->on_step(report);
  }
  deliver(self, events);
  st.busy = false;
  publish(self);
  kick(self);
}

void on_allocated(self_ptr self, cache_step_reply& reply) {
  auto& st = self->state;
  planned_step ps = st.policy->apply_allocations(reply);
  st.cache_stats = reply.stats;
  deliver(self, ps.events);
  if (ps.plan.seqs.empty()) {
    st.busy = false;
    publish(self);
    if (st.policy->has_work() && !st.retry_pending) {
      st.retry_pending = true;
      self->delayed_send(self, kRetryDelay, step_atom::value);
    }
    return;
  }
  step_report report = describe(ps.plan);
  self->request(st.worker, caf::infinite, execute_atom::value, std::move(ps.plan))
      .then([self, report](worker_outcome& out) { on_executed(self, report, out); },
            [self, report](caf::error& err) {
              worker_outcome out;
              out.error = {status_code::kInternal,
                           "the worker failed: " + self->system().render(err)};
              on_executed(self, report, out);
            });
}

void kick(self_ptr self) {
  auto& st = self->state;
  if (st.busy || !st.policy->has_work()) return;
  st.busy = true;
  cache_step_request request = st.policy->plan_allocations(clock::now());
  self->request(st.cache, caf::infinite, allocate_atom::value, std::move(request))
      .then([self](cache_step_reply& reply) { on_allocated(self, reply); },
            [self](caf::error&) {
              // The cache manager is gone: the engine is shutting down (it ends every
              // request before stopping its actors), so there is nothing left to serve.
              self->state.busy = false;
            });
}

scheduler_actor::behavior_type scheduler(self_ptr self, scheduler_config config,
                                         cache_manager_actor cache, worker_actor worker,
                                         std::shared_ptr<observer> obs,
                                         std::shared_ptr<stats_board> board) {
  auto& st = self->state;
  st.policy = std::make_unique<scheduler_policy>(std::move(config));
  st.cache = std::move(cache);
  st.worker = std::move(worker);
  st.obs = std::move(obs);
  st.board = std::move(board);
  return {
      [self](submit_atom, sequence_submission& sub, sequence_client_actor& client) {
        auto& s = self->state;
        const request_id id = sub.id;
        status added = s.policy->add(std::move(sub), clock::now());
        if (!added) {
          ++s.num_rejected;
          self->send(client, failed_atom::value, id, error_info::from(added));
          return;
        }
        ++s.num_accepted;
        s.clients[id] = std::move(client);
        kick(self);
      },
      [self](cancel_atom, request_id id) {
        std::vector<sequence_event> events = self->state.policy->remove(id, "cancelled");
        deliver(self, events);
        kick(self);
      },
      [self](finish_atom, request_id id, const std::string& reason,
             const std::string& stop_reason) {
        std::vector<sequence_event> events = self->state.policy->remove(id, reason, stop_reason);
        deliver(self, events);
        kick(self);
      },
      [self](stats_atom) -> engine_stats { return make_stats(self->state); },
      [self](step_atom) {
        self->state.retry_pending = false;
        kick(self);
      },
  };
}

}  // namespace

scheduler_actor spawn_scheduler(caf::actor_system& sys, scheduler_config config,
                                cache_manager_actor cache, worker_actor worker,
                                std::shared_ptr<observer> obs, std::shared_ptr<stats_board> board) {
  return sys.spawn(scheduler, std::move(config), std::move(cache), std::move(worker),
                   std::move(obs), std::move(board));
}

}  // namespace kvserve
