// make_engine: the CAF-free engine facade over the actor system. Requests are prepared
// (tokenised, validated) on the caller's thread, so bad input and overload are reported
// before submit() returns; each accepted request then goes to the engine's request hub,
// which keeps its state and streams its events.

#include "actors/engine.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>

#include "actors/protocol.hpp"
#include "actors/request_state.hpp"
#include "actors/stats_board.hpp"

namespace kvserve {

namespace {

bool is_final(const generation_event& e) {
  return std::holds_alternative<finished_event>(e) || std::holds_alternative<error_event>(e);
}

/// Shared by the engine and its pull streams (which may outlive it).
class engine_core {
 public:
  engine_core(const engine_config& config, engine_parts& parts, const model_config& model)
      : config_(config),
        model_(model),
        tok_(std::move(parts.model_tokenizer)),
        tmpl_(std::move(parts.model_chat_template)),
        obs_(std::move(parts.engine_observer)),
        board_(std::make_shared<stats_board>()) {
    add_message_types(cfg_);
    const unsigned hw = std::max(2u, std::thread::hardware_concurrency());
    cfg_.set("scheduler.max-threads", static_cast<int>(std::min(hw, 4u)));
    // CAF's work-stealing scheduler (default) is faster from 16 running sequences up;
    // KVSERVE_CAF_SCHEDULER=sharing (one queue + condition variable) has lower latency with
    // a single sequence. See docs/BENCHMARKS.md.
    const char* policy = std::getenv("KVSERVE_CAF_SCHEDULER");
    const bool sharing = policy != nullptr && std::string(policy) == "sharing";
    cfg_.set("scheduler.policy", sharing ? caf::atom("sharing") : caf::atom("stealing"));
    sys_ = std::make_unique<caf::actor_system>(cfg_);
  }

  status start(std::unique_ptr<backend> model_backend) {
    auto sc = make_scheduler_config(config_, *model_backend);
    if (!sc) return sc.error();
    max_model_len_ = sc->max_model_len;
    if (obs_) obs_->on_kv_capacity(describe_kv_capacity(*model_backend, max_model_len_));
    // The pool as it starts (every block free), published before the actors exist so that
    // /metrics shows the real pool before the first step, and nothing races the scheduler's
    // own publications.
    engine_stats initial;
    initial.num_blocks_total = sc->num_blocks;
    initial.num_blocks_free = sc->num_blocks;
    board_->publish(initial);
    if (obs_) obs_->on_stats(initial);
    auto actors = spawn_engine_actors(*sys_, config_, std::move(model_backend), obs_, board_);
    if (!actors) return actors.error();
    actors_ = std::move(actors.value());
    request_hub_config hc;
    hc.scheduler = actors_.scheduler;
    hc.tok = tok_;
    hc.obs = obs_;
    hc.cpu_meter = actors_.cpu_meter;
    hub_ = spawn_request_hub(*sys_, std::move(hc));
    return status::ok();
  }

  request_id submit(generate_request request, event_callback on_event) {
    const request_id id = next_id_++;
    auto reject = [&](status error) {
      board_->count_rejected();
      if (on_event) on_event(id, error_event{std::move(error)});
      return id;
    };
    auto sub = prepare_submission(request, id, config_, max_model_len_, model_.vocab_size,
                                  tok_.get(), tmpl_.get());
    if (!sub) return reject(sub.error());
    status rejection;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!accepting_) {
        rejection = {status_code::kOverloaded, "the engine is shutting down"};
      } else if (num_unadmitted_ >= config_.max_waiting_requests) {
        rejection = {status_code::kOverloaded, "the waiting queue is full (" +
                                                   std::to_string(config_.max_waiting_requests) +
                                                   " requests); try again later"};
      } else {
        ++num_unadmitted_;
        live_.emplace(id, live_request{});
      }
    }
    if (!rejection) return reject(std::move(rejection));  // outside the lock: it calls back
    hub_request hr;
    hr.submission = std::move(sub.value());
    hr.stop_strings = request.stop;
    hr.timeout = request.timeout;
    hr.on_event = [this, cb = std::move(on_event)](request_id rid, const generation_event& e) {
      const bool final_event = is_final(e);
      const bool admitted = std::holds_alternative<accepted_event>(e);
      if (admitted || final_event) note_progress(rid, admitted);
      if (cb) cb(rid, e);
      if (final_event) on_final(rid);
    };
    std::lock_guard<std::mutex> lock(mu_);
    // Under the lock, so that a cancel() of this id reaches the hub after the submission.
    caf::anon_send(hub_, submit_atom::value, std::move(hr));
    auto it = live_.find(id);
    if (it != live_.end()) {
      it->second.sent = true;
      if (it->second.cancel_requested) caf::anon_send(hub_, cancel_atom::value, id);
    }
    return id;
  }

  void cancel(request_id id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(id);
    if (it == live_.end()) return;
    if (it->second.sent) {
      caf::anon_send(hub_, cancel_atom::value, id);
    } else {
      it->second.cancel_requested = true;  // submit() sends it after the submission
    }
  }

  void shutdown(std::chrono::milliseconds grace) {
    std::unique_lock<std::mutex> lock(mu_);
    if (stopped_) return;
    accepting_ = false;
    cv_.wait_for(lock, grace, [&] { return live_.empty(); });
    for (auto& [id, r] : live_) {
      if (r.sent) caf::anon_send(hub_, cancel_atom::value, id);
      r.cancel_requested = true;
    }
    // Every request ends with its finished event; the bound only guards against a bug.
    cv_.wait_for(lock, std::chrono::seconds(60), [&] { return live_.empty(); });
    stopped_ = true;
    lock.unlock();
    caf::anon_send_exit(hub_, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(actors_.scheduler, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(actors_.cache_manager, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(actors_.worker, caf::exit_reason::user_shutdown);
    hub_ = request_hub_actor{};
    actors_ = engine_actors{};
    sys_.reset();  // joins every actor, the worker's thread included
  }

  engine_stats stats() const { return board_->snapshot(); }
  const engine_config& config() const { return config_; }
  const model_config& model() const { return model_; }
  const tokenizer* get_tokenizer() const { return tok_.get(); }

 private:
  struct live_request {
    bool admitted = false;
    bool sent = false;  // the submission is on its way to the hub
    bool cancel_requested = false;
  };

  void note_progress(request_id id, bool admitted) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(id);
    if (it == live_.end() || it->second.admitted) return;
    it->second.admitted = true;
    --num_unadmitted_;
    (void)admitted;
  }

  void on_final(request_id id) {
    std::lock_guard<std::mutex> lock(mu_);
    live_.erase(id);
    cv_.notify_all();
  }

  engine_config config_;
  model_config model_;
  std::shared_ptr<const tokenizer> tok_;
  std::shared_ptr<const chat_template> tmpl_;
  std::shared_ptr<observer> obs_;
  std::shared_ptr<stats_board> board_;
  int max_model_len_ = 0;
  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  engine_actors actors_;
  request_hub_actor hub_;  // the client of every request (one message per flush for tokens)
  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<request_id, live_request> live_;
  int num_unadmitted_ = 0;
  bool accepting_ = true;
  bool stopped_ = false;
  std::atomic<request_id> next_id_{1};
};

/// Pull side of one request: a queue the request actor fills through the callback.
class stream_impl final : public request_stream {
 public:
  explicit stream_impl(std::weak_ptr<engine_core> core) : core_(std::move(core)) {}

  void set_id(request_id id) { id_ = id; }
  request_id id() const override { return id_; }

  void push(const generation_event& e) {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(e);
    cv_.notify_all();
  }

  std::optional<generation_event> next(std::chrono::milliseconds timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (done_) return std::nullopt;
    if (!cv_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return std::nullopt;
    generation_event e = std::move(events_.front());
    events_.pop_front();
    if (is_final(e)) done_ = true;
    return e;
  }

  void cancel() override {
    if (auto core = core_.lock()) core->cancel(id_);
  }

 private:
  std::weak_ptr<engine_core> core_;
  request_id id_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<generation_event> events_;
  bool done_ = false;
};

class engine_impl final : public engine {
 public:
  explicit engine_impl(std::shared_ptr<engine_core> core) : core_(std::move(core)) {}
  ~engine_impl() override { core_->shutdown(std::chrono::milliseconds(0)); }

  request_id submit(generate_request request, event_callback on_event) override {
    return core_->submit(std::move(request), std::move(on_event));
  }

  std::shared_ptr<request_stream> submit(generate_request request) override {
    auto stream = std::make_shared<stream_impl>(core_);
    // The id is known only once submit returns, but events may come before: they carry the
    // id, so the stream learns it from there too.
    std::weak_ptr<stream_impl> weak = stream;
    const request_id id =
        core_->submit(std::move(request), [weak](request_id, const generation_event& e) {
          if (auto s = weak.lock()) s->push(e);
        });
    stream->set_id(id);
    return stream;
  }

  void cancel(request_id id) override { core_->cancel(id); }
  const model_config& model() const override { return core_->model(); }
  const tokenizer& get_tokenizer() const override { return *core_->get_tokenizer(); }
  const engine_config& config() const override { return core_->config(); }
  engine_stats stats() const override { return core_->stats(); }
  void shutdown(std::chrono::milliseconds grace) override { core_->shutdown(grace); }

 private:
  std::shared_ptr<engine_core> core_;
};

}  // namespace

result<std::unique_ptr<engine>> make_engine(const engine_config& config, engine_parts parts) {
  if (!parts.model_backend) return status{status_code::kInvalidArgument, "no backend"};
  const model_config model = parts.model_backend->config();
  auto checked = make_scheduler_config(config, *parts.model_backend);
  if (!checked) return checked.error();
  auto core = std::make_shared<engine_core>(config, parts, model);
  if (status s = core->start(std::move(parts.model_backend)); !s) return s;
  return std::unique_ptr<engine>(new engine_impl(std::move(core)));
}

}  // namespace kvserve
