#pragma once
// Helpers for the actor tests: a fake backend whose "KV" is the token ids themselves (so a
// wrong block table or a stale shared block changes the output), a byte-level tokenizer, and
// a synchronous loop that drives scheduler_policy + step_allocator + step_executor.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "actors/scheduler_policy.hpp"
#include "actors/step_allocator.hpp"
#include "actors/step_executor.hpp"
#include "model/backend.hpp"
#include "model/counter_rng.hpp"
#include "model/tokenizer.hpp"

namespace kvserve::testing {

/// A backend whose KV slot holds the token written there; the sampled token is a hash of the
/// tokens read back through the block table (positions 0..end-1), plus the seed when not
/// greedy. Batch-invariant by construction, and sensitive to any block-table mistake.
class fake_backend : public backend {
 public:
  fake_backend(int vocab_size, int block_size, int num_blocks)
      : block_size_(block_size), num_blocks_(num_blocks), kv_(num_blocks * block_size, -1) {
    config_.vocab_size = vocab_size;
    config_.name = "fake";
    config_.max_position_embeddings = 1 << 20;
  }
  std::string name() const override { return "fake"; }
  const model_config& config() const override { return config_; }
  int block_size() const override { return block_size_; }
  int num_kv_blocks() const override { return num_blocks_; }
  std::size_t kv_bytes_per_token() const override { return 4; }

  /// Called at the start of every execute (tests block here or throw).
  std::function<void(const step_plan&)> on_execute;
  /// When it returns an error for a plan, the step fails with it.
  std::function<status(const step_plan&)> fail_if;
  std::atomic<int> steps{0};
  std::atomic<int> max_batch{0};
  std::atomic<int> max_tokens_per_step{0};
  std::atomic<bool> only_full_recompute{true};  // every step started at position 0
  /// When set, sampled tokens are drawn from these ids only (e.g. ASCII letters).
  std::vector<std::int32_t> alphabet;

  /// Steps submitted and not collected (backend::submit / collect), and the most at once.
  std::atomic<int> in_flight{0};
  std::atomic<int> max_in_flight{0};
  status submit(const step_plan& plan) override {
    status s = backend::submit(plan);
    if (s.is_ok()) {
      const int n = ++in_flight;
      if (n > max_in_flight) max_in_flight = n;
    }
    return s;
  }
  result<step_result> collect() override {
    result<step_result> r = backend::collect();
    if (in_flight > 0) --in_flight;
    return r;
  }

  result<step_result> execute(const step_plan& plan) override {
    if (on_execute) on_execute(plan);
    if (fail_if) {
      status s = fail_if(plan);
      if (!s) return s;
    }
    ++steps;
    if (static_cast<int>(plan.seqs.size()) > max_batch)
      max_batch = static_cast<int>(plan.seqs.size());
    if (plan.num_tokens() > max_tokens_per_step) max_tokens_per_step = plan.num_tokens();
    step_result out;
    out.step_index = plan.step_index;
    for (const sequence_step& s : plan.seqs) {
      if (s.start_position != 0) only_full_recompute = false;
      const int end = s.start_position + static_cast<int>(s.tokens.size());
      if (static_cast<int>(s.block_table.size()) * block_size_ < end) {
        return status{status_code::kInvalidArgument, "block table too short"};
      }
      for (std::size_t i = 0; i < s.tokens.size(); ++i) {
        const int pos = s.start_position + static_cast<int>(i);
        kv_[slot(s, pos)] = s.tokens[i];
      }
      sequence_result r;
      r.id = s.id;
      if (s.sample) {
        std::uint64_t h = 0x12345;
        for (int pos = 0; pos < end; ++pos)
          h = mix64(h ^ static_cast<std::uint64_t>(kv_[slot(s, pos)] + 7));
        if (!s.sampling.is_greedy()) h = mix64(h ^ counter_random_bits(s.sampling.seed, end));
        std::int32_t t =
            alphabet.empty()
                ? static_cast<std::int32_t>(h % static_cast<std::uint64_t>(config_.vocab_size))
                : alphabet[h % alphabet.size()];
        auto suppressed = [&](std::int32_t x) {
          for (auto y : s.suppressed_tokens)
            if (x == y) return true;
          return false;
        };
        while (suppressed(t)) t = (t + 1) % config_.vocab_size;
        r.sampled_token = t;
      }
      out.seqs.push_back(std::move(r));
    }
    return out;
  }

 private:
  int slot(const sequence_step& s, int pos) const {
    return s.block_table[pos / block_size_] * block_size_ + pos % block_size_;
  }
  model_config config_;
  int block_size_;
  int num_blocks_;
  std::vector<std::int32_t> kv_;
};

/// GPT-2's byte-to-unicode alphabet: printable bytes map to themselves, the rest to 256+n.
inline std::string byte_token(int b) {
  auto printable = [](int c) {
    return (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
  };
  int cp = b;
  if (!printable(b)) {
    int n = 0;
    for (int c = 0; c < b; ++c) n += printable(c) ? 0 : 1;
    cp = 256 + n;
  }
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

/// A tokenizer with one token per byte (ids 0..255) and "<|endoftext|>" (id 256, EOS).
inline std::shared_ptr<const tokenizer> make_byte_tokenizer() {
  tokenizer_spec spec;
  for (int b = 0; b < 256; ++b) spec.tokens.push_back(byte_token(b));
  spec.kinds.assign(256, token_kind::kNormal);
  spec.tokens.push_back("<|endoftext|>");
  spec.kinds.push_back(token_kind::kControl);
  spec.eos_token_id = 256;
  auto t = tokenizer::create(std::move(spec));
  return t ? t.value() : nullptr;
}

/// Token ids 1..n offset by `base`, mod vocab: easy distinct prompts.
inline std::vector<std::int32_t> make_prompt(int n, int base, int vocab = 200) {
  std::vector<std::int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back((base + i * 7 + 1) % vocab);
  return p;
}

/// Drives the plain classes synchronously, as the actors do asynchronously.
class plain_engine {
 public:
  plain_engine(scheduler_config sc, int vocab = 200) : policy(sc) {
    kv_cache_config kc;
    kc.num_blocks = sc.num_blocks;
    kc.block_size = sc.block_size;
    kc.enable_prefix_caching = sc.enable_prefix_caching && !sc.no_kv_cache;
    allocator = std::move(step_allocator::create(kc).value());
    auto b = std::make_unique<fake_backend>(vocab, sc.block_size, sc.num_blocks);
    fake = b.get();
    executor = std::make_unique<step_executor>(std::move(b));
  }

  status add(sequence_submission s) { return policy.add(std::move(s), now); }

  /// One scheduler step; returns false when there was nothing to do.
  bool step() {
    if (!policy.has_work()) return false;
    cache_step_request req = policy.plan_allocations(now);
    last_request = req;
    cache_step_reply reply = allocator->apply(req);
    planned_step ps = policy.apply_allocations(reply);
    record(ps.events);
    if (ps.plan.seqs.empty()) return true;
    plans.push_back(ps.plan);
    plan_prompt_tokens.push_back(ps.num_prompt_tokens);
    worker_outcome out = executor->execute(std::move(ps.plan));
    record(out.error ? policy.apply_result(out.result) : policy.fail_step(out.error));
    policy.recycle(std::move(out.plan));
    return true;
  }
  void run(int max_steps = 100000) {
    for (int i = 0; i < max_steps && step(); ++i) {
    }
  }

  /// Like run(), with step overlap in its harshest order: the next step's cache request is
  /// planned and applied by the cache manager before the running step executes, and its
  /// reply is applied after the step's result (as the scheduler actor does).
  void run_overlapped(int max_steps = 100000,
                      const std::function<void(int)>& before_step = nullptr) {
    std::optional<step_plan> running;
    for (int i = 0; i < max_steps; ++i) {
      if (before_step) before_step(i);
      if (!running) {
        if (!policy.has_work()) return;
        planned_step ps = policy.apply_allocations(allocator->apply(policy.plan_allocations(now)));
        record(ps.events);
        if (!ps.plan.seqs.empty()) running = std::move(ps.plan);
        continue;
      }
      std::optional<cache_step_reply> next;
      if (policy.has_work()) next = allocator->apply(policy.plan_allocations(now));
      plans.push_back(*running);
      worker_outcome out = executor->execute(std::move(*running));
      running.reset();
      record(out.error ? policy.apply_result(out.result) : policy.fail_step(out.error));
      policy.recycle(std::move(out.plan));
      if (next) {
        planned_step ps = policy.apply_allocations(*next);
        record(ps.events);
        if (!ps.plan.seqs.empty()) running = std::move(ps.plan);
      }
    }
  }

  /// Like run(), with asynchronous steps as the scheduler actor runs them
  /// (scheduler_config::async_steps): while step N is in flight, step N + 1 is planned (its
  /// cache request applied) and submitted, and only then is step N collected and its result
  /// applied. `before_step(i)` runs before each iteration.
  void run_async(int max_steps = 100000, const std::function<void(int)>& before_step = nullptr) {
    for (int i = 0; i < max_steps; ++i) {
      if (before_step) before_step(i);
      const int in_flight = executor->num_in_flight();
      if (in_flight == 0 && !policy.has_work()) return;
      bool submitted = false;
      if (in_flight < 2 && policy.has_work() && policy.can_plan_ahead()) {
        planned_step ps = policy.apply_allocations(allocator->apply(policy.plan_allocations(now)));
        record(ps.events);
        if (!ps.plan.seqs.empty()) {
          plans.push_back(ps.plan);
          executor->submit(std::move(ps.plan));
          submitted = true;
        }
      }
      max_in_flight = std::max(max_in_flight, executor->num_in_flight());
      if (executor->num_in_flight() == 2 || (!submitted && executor->num_in_flight() == 1)) {
        worker_outcome out = executor->collect();
        record(out.error ? policy.apply_result(out.result) : policy.fail_step(out.error));
        policy.recycle(std::move(out.plan));
      }
    }
  }

  void record(const std::vector<sequence_event>& events) {
    for (const auto& e : events) {
      auto& o = outputs[e.id];
      switch (e.type) {
        case sequence_event::kind::kAccepted:
          o.accepted = true;
          o.cached = e.cached_prompt_tokens;
          break;
        case sequence_event::kind::kTokens:
          o.tokens.insert(o.tokens.end(), e.tokens.begin(), e.tokens.end());
          break;
        case sequence_event::kind::kFinished:
          ++o.num_final;
          o.reason = e.finish_reason;
          o.stop_reason = e.stop_reason;
          break;
        case sequence_event::kind::kError:
          ++o.num_final;
          o.reason = "error";
          o.error = e.error;
          break;
      }
    }
  }

  struct output {
    bool accepted = false;
    int cached = -1;
    std::vector<std::int32_t> tokens;
    int num_final = 0;
    std::string reason, stop_reason;
    status error;
  };

  scheduler_policy policy;
  std::unique_ptr<step_allocator> allocator;
  std::unique_ptr<step_executor> executor;
  fake_backend* fake = nullptr;
  scheduler_policy::clock::time_point now = scheduler_policy::clock::time_point{};
  std::map<seq_id, output> outputs;
  std::vector<step_plan> plans;
  std::vector<int> plan_prompt_tokens;  ///< planned_step::num_prompt_tokens of each plan (step())
  cache_step_request last_request;
  int max_in_flight = 0;  ///< most steps submitted and not collected at once (run_async)
};

/// Holds the backend at chosen steps until the test opens it.
class gate {
 public:
  /// Blocks while closed; call from the backend's on_execute.
  void pass() {
    std::unique_lock<std::mutex> lock(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
    --waiting_;
  }
  void close() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = false;
  }
  void open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  /// Waits until the backend is blocked in pass().
  bool wait_blocked(std::chrono::seconds timeout = std::chrono::seconds(20)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return waiting_ > 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true;
  int waiting_ = 0;
};

inline sequence_submission make_submission(request_id id, std::vector<std::int32_t> prompt,
                                           int max_tokens, float temperature = 0.0f) {
  sequence_submission s;
  s.id = id;
  s.prompt = std::move(prompt);
  s.stop.max_tokens = max_tokens;
  s.sampling.temperature = temperature;
  s.sampling.seed = id * 31;
  return s;
}

}  // namespace kvserve::testing
