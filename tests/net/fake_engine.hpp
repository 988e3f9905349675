#pragma once
/// A test double of kvserve::engine that streams scripted tokens: token i of a request is the
/// text "t<i> " with id i % vocab_size. One worker thread runs "steps" that give every running
/// request one token, after `step_delay` (zero: a backend that returns at once). Used by the
/// server tests, the bad-input table and bench/net_bench.cpp.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "actors/engine.hpp"

namespace kvserve::testing {

struct fake_engine_config {
  int vocab_size = 1000;
  int max_model_len = 1 << 20;
  int max_running = 1 << 20;  ///< beyond this, submit() rejects with kOverloaded
  std::chrono::microseconds step_delay{0};
  std::string model_name = "fake-model";
  /// Token text is "<steady_clock nanoseconds> " instead of "t<i> " (latency benchmarks).
  bool stamp_tokens = false;
  /// Bytes of filler ('.') after each token's text: large frames fill socket buffers in a few
  /// thousand tokens, however slowly a loaded machine runs the engine (slow-consumer tests).
  std::size_t token_padding = 0;
};

class fake_engine : public engine {
 public:
  explicit fake_engine(fake_engine_config cfg = {}) : cfg_(std::move(cfg)) {
    model_.name = cfg_.model_name;
    model_.vocab_size = cfg_.vocab_size;
    model_.max_position_embeddings = cfg_.max_model_len;
    config_.max_model_len = cfg_.max_model_len;
    worker_ = std::thread([this] { run(); });
  }
  ~fake_engine() override { shutdown(std::chrono::milliseconds{0}); }

  request_id submit(generate_request request, event_callback on_event) override {
    request_id id = next_id_++;
    int prompt_tokens = 0;
    if (const auto* text = std::get_if<std::string>(&request.prompt)) {
      prompt_tokens = static_cast<int>(text->size());  // one token per byte
    } else if (const auto* msgs = std::get_if<std::vector<chat_message>>(&request.prompt)) {
      for (const auto& m : *msgs) prompt_tokens += static_cast<int>(m.content.size()) + 4;
    } else {
      prompt_tokens = static_cast<int>(std::get<std::vector<std::int32_t>>(request.prompt).size());
    }
    ++submitted_;
    if (prompt_tokens >= cfg_.max_model_len) {
      ++rejected_;
      on_event(id, error_event{{status_code::kInvalidArgument,
                                "prompt of " + std::to_string(prompt_tokens) +
                                    " tokens is longer than max_model_len"}});
      return id;
    }
    std::unique_lock lock(mu_);
    if (stopping_ || static_cast<int>(running_.size()) >= cfg_.max_running) {
      lock.unlock();
      ++rejected_;
      on_event(id, error_event{{status_code::kOverloaded, "the waiting queue is full"}});
      return id;
    }
    running_.emplace(id, state{std::move(request), std::move(on_event), prompt_tokens, 0, false,
                               std::chrono::steady_clock::now()});
    ++accepted_;
    cv_.notify_all();
    return id;
  }

  std::shared_ptr<request_stream> submit(generate_request request) override {
    auto stream = std::make_shared<queue_stream>(this);
    stream->id_ = submit(std::move(request),
                         [stream](request_id, const generation_event& ev) { stream->push(ev); });
    return stream;
  }

  void cancel(request_id id) override {
    std::lock_guard lock(mu_);
    auto it = running_.find(id);
    if (it != running_.end()) {
      it->second.cancelled = true;
      ++cancels_;
      cv_.notify_all();
    }
  }

  const model_config& model() const override { return model_; }
  const tokenizer& get_tokenizer() const override { std::abort(); }
  const engine_config& config() const override { return config_; }
  engine_stats stats() const override {
    std::lock_guard lock(mu_);
    engine_stats s;
    s.num_requests_running = static_cast<int>(running_.size());
    s.num_requests_accepted = accepted_;
    s.num_requests_rejected = rejected_;
    return s;
  }

  void shutdown(std::chrono::milliseconds grace) override {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      stopping_ = true;
      for (auto& [id, s] : running_) s.cancelled = true;
      cv_.notify_all();
    }
    if (worker_.joinable()) worker_.join();
  }

  int num_running() const {
    std::lock_guard lock(mu_);
    return static_cast<int>(running_.size());
  }
  int num_cancels() const { return cancels_; }
  int num_accepted() const { return accepted_; }
  int num_finished() const { return finished_; }

 private:
  struct state {
    generate_request request;
    event_callback cb;
    int prompt_tokens;
    int produced;
    bool cancelled;
    std::chrono::steady_clock::time_point start;
  };

  class queue_stream : public request_stream {
   public:
    explicit queue_stream(fake_engine* e) : engine_(e) {}
    request_id id() const override { return id_; }
    std::optional<generation_event> next(std::chrono::milliseconds timeout) override {
      std::unique_lock lock(mu_);
      if (!cv_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return std::nullopt;
      generation_event ev = std::move(events_.front());
      events_.pop_front();
      return ev;
    }
    void cancel() override { engine_->cancel(id_); }
    void push(const generation_event& ev) {
      std::lock_guard lock(mu_);
      events_.push_back(ev);
      cv_.notify_all();
    }
    fake_engine* engine_;
    request_id id_ = 0;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<generation_event> events_;
  };

  void run() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stopping_ || !running_.empty(); });
      if (running_.empty() && stopping_) return;
      // Release the lock between steps so that cancel() and submit() get in.
      lock.unlock();
      if (cfg_.step_delay.count() > 0) {
        std::this_thread::sleep_for(cfg_.step_delay);
      } else {
        std::this_thread::yield();
      }
      lock.lock();
      std::vector<std::pair<request_id, state*>> batch;
      for (auto& [id, s] : running_) batch.emplace_back(id, &s);
      for (auto [id, s] : batch) step(id, *s);
      for (auto [id, s] : batch) {
        if (s->produced < 0) running_.erase(id);
      }
    }
  }

  // Called with mu_ held; callbacks are quick (the server only posts).
  void step(request_id id, state& s) {
    const generate_request& r = s.request;
    if (s.produced == 0 && !s.cancelled) {
      s.cb(id, accepted_event{s.prompt_tokens, 0});
    }
    if (!s.cancelled && s.produced < r.max_tokens) {
      token_event tok;
      tok.text =
          cfg_.stamp_tokens
              ? std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + " "
              : "t" + std::to_string(s.produced) + " ";
      tok.text.append(cfg_.token_padding, '.');
      tok.token_ids = {s.produced % cfg_.vocab_size};
      if (r.sampling.logprobs >= 0) {
        position_logprobs p;
        p.chosen = {tok.token_ids[0], -0.5f};
        for (int k = 0; k < r.sampling.logprobs; ++k) {
          p.top.push_back({(tok.token_ids[0] + k) % cfg_.vocab_size, -0.5f - k});
        }
        tok.logprobs.push_back(p);
      }
      ++s.produced;
      s.cb(id, tok);
      if (s.produced < r.max_tokens) return;
    }
    finished_event fin;
    fin.finish_reason = s.cancelled ? "cancelled" : "length";
    fin.usage = {s.prompt_tokens, s.produced, 0};
    fin.time_to_first_token_seconds = 0.001;
    fin.inter_token_latencies_seconds.assign(s.produced > 0 ? s.produced - 1 : 0, 0.001);
    if (r.prompt_logprobs >= 0) {
      fin.prompt_logprobs.push_back(std::nullopt);
      for (int i = 1; i < s.prompt_tokens; ++i) {
        fin.prompt_logprobs.push_back(position_logprobs{{i % cfg_.vocab_size, -1.0f}, {}});
      }
    }
    s.cb(id, fin);
    ++finished_;
    s.produced = -1;  // erased by run()
  }

  fake_engine_config cfg_;
  model_config model_;
  engine_config config_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<request_id, state> running_;
  bool stopping_ = false;
  std::atomic<request_id> next_id_{1};
  std::atomic<int> submitted_{0}, accepted_{0}, rejected_{0}, cancels_{0}, finished_{0};
  std::thread worker_;
};

}  // namespace kvserve::testing
