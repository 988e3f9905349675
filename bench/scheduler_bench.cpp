// Scheduler + cache-manager overhead per step, with a backend that returns at once.
//
//   scheduler_bench [--seconds S] [--sizes 1,16,64,256] [--mode both|plain|actors]
//
// Two measurements per number of running sequences N (all decoding, block size 16):
//   plain   scheduler_policy + step_allocator + step_executor called in a loop (no actors):
//           the CPU cost of planning, allocating and applying a step;
//   actors  the full engine (request hub, scheduler, cache-manager and worker actors)
//           through engine.hpp: wall and process CPU time per step while N requests decode,
//           token streaming included; then, from engine_config::measure_actor_cpu, the CPU
//           time per step spent inside each actor's message handlers (the rest of the
//           process time is CAF's mailboxes and scheduling, thread wake-ups, the bench).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "actors/engine.hpp"
#include "actors/scheduler_policy.hpp"
#include "actors/step_allocator.hpp"
#include "actors/step_executor.hpp"

namespace {

using namespace kvserve;
using clock_type = std::chrono::steady_clock;

/// CPU time of the whole process (all threads): what the work costs, whatever else runs.
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct timing {
  double wall_us = 0;  ///< wall time per step
  double cpu_us = 0;   ///< process CPU time per step
  /// Actors only: CPU time per step inside each actor's message handlers.
  double scheduler_us = 0, cache_manager_us = 0, worker_us = 0, request_hub_us = 0;
};

constexpr int kBlockSize = 16;
constexpr int kPromptLen = 32;
constexpr int kMeasuredSteps = 1500;

/// Samples a fixed token per sequence without computing anything.
class instant_backend : public backend {
 public:
  explicit instant_backend(int num_blocks) : num_blocks_(num_blocks) {
    config_.name = "instant";
    config_.vocab_size = 1000;
    config_.max_position_embeddings = 1 << 20;
  }
  std::string name() const override { return "instant"; }
  const model_config& config() const override { return config_; }
  int block_size() const override { return kBlockSize; }
  int num_kv_blocks() const override { return num_blocks_; }
  std::size_t kv_bytes_per_token() const override { return 0; }
  result<step_result> execute(const step_plan& plan) override {
    step_result r;
    r.step_index = plan.step_index;
    r.seqs.resize(plan.seqs.size());
    for (std::size_t i = 0; i < plan.seqs.size(); ++i) {
      r.seqs[i].id = plan.seqs[i].id;
      if (plan.seqs[i].sample) r.seqs[i].sampled_token = static_cast<std::int32_t>(1 + i % 500);
    }
    return r;
  }

 private:
  model_config config_;
  int num_blocks_;
};

std::vector<std::int32_t> prompt_for(int i) {
  std::vector<std::int32_t> p(kPromptLen);
  for (int j = 0; j < kPromptLen; ++j) p[j] = (i * 131 + j * 7) % 997 + 1;
  return p;
}

int blocks_needed(int n, int max_tokens) {
  return n * ((kPromptLen + max_tokens) / kBlockSize + 2) + 64;
}

timing plain_us_per_step(int n, double seconds) {
  scheduler_config sc;
  sc.block_size = kBlockSize;
  sc.max_model_len = 1 << 20;
  sc.max_num_seqs = n;
  sc.max_num_batched_tokens = 8192;
  const int steps_cap = 2000;  // sequences stay below ~2k tokens (128 blocks)
  sc.num_blocks = blocks_needed(n, steps_cap);
  scheduler_policy policy(sc);
  kv_cache_config kc;
  kc.num_blocks = sc.num_blocks;
  kc.block_size = kBlockSize;
  auto allocator = std::move(step_allocator::create(kc).value());
  step_executor executor(std::make_unique<instant_backend>(sc.num_blocks));
  const auto t0 = clock_type::now();
  for (int i = 0; i < n; ++i) {
    sequence_submission s;
    s.id = static_cast<request_id>(i + 1);
    s.prompt = prompt_for(i);
    s.stop.max_tokens = steps_cap + 64;
    s.sampling.temperature = 0;
    (void)policy.add(std::move(s), t0);
  }
  std::vector<token_output> tokens;  // what the scheduler actor would stream out
  std::vector<sequence_event> events;
  auto run_step = [&] {
    cache_step_request req = policy.plan_allocations(clock_type::now());
    cache_step_reply reply = allocator->apply(req);
    planned_step ps = policy.apply_allocations(reply);
    if (ps.plan.seqs.empty()) return;
    worker_outcome out = executor.execute(std::move(ps.plan));
    tokens.clear();
    events.clear();
    policy.apply_result(out.result, tokens, events);
    policy.recycle(std::move(out.plan));
  };
  for (int i = 0; i < 8; ++i) run_step();  // prefill and warm-up
  int steps = 0;
  const double cpu0 = cpu_seconds();
  const auto start = clock_type::now();
  const auto deadline = start + std::chrono::duration<double>(seconds);
  while (clock_type::now() < deadline && steps < steps_cap) {
    run_step();
    ++steps;
  }
  timing t;
  t.wall_us = std::chrono::duration<double, std::micro>(clock_type::now() - start).count() / steps;
  t.cpu_us = 1e6 * (cpu_seconds() - cpu0) / steps;
  if (policy.num_running() != n)
    std::fprintf(stderr, "warning: %d running\n", policy.num_running());
  return t;
}

/// Counts steps and wakes the measuring thread when a target count is reached (the
/// measuring thread sleeps meanwhile: polling would add its own CPU time to the figures).
struct step_counter : observer {
  std::atomic<int> steps{0};
  std::atomic<int> full_steps{0};
  std::atomic<int> target{-1};
  int n = 0;
  std::mutex mu;
  std::condition_variable cv;
  void on_step(const step_report& r) override {
    const int s = ++steps;
    if (r.batch_size == n) ++full_steps;
    if (s == target.load()) {
      std::lock_guard<std::mutex> lock(mu);
      cv.notify_all();
    }
  }
  /// Per-actor CPU seconds as published with the stats, and the step count they include.
  struct actor_snapshot {
    int steps = -1;
    std::map<std::string, double> seconds;
  };
  std::mutex stats_mu;
  bool measuring = false;
  actor_snapshot first, last;  // the window's first and last publications
  void on_stats(const engine_stats& s) override {
    if (s.actor_cpu_seconds.empty()) return;
    std::lock_guard<std::mutex> lock(stats_mu);
    if (!measuring) return;
    actor_snapshot snap{steps.load(), s.actor_cpu_seconds};
    if (first.steps < 0) first = snap;
    last = std::move(snap);
  }
  /// Waits until `count` steps have run, or until `deadline`.
  void wait_for_steps(int count, clock_type::time_point deadline) {
    std::unique_lock<std::mutex> lock(mu);
    target.store(count);
    cv.wait_until(lock, deadline, [&] { return steps.load() >= count; });
  }
};

timing actors_us_per_step(int n, double seconds) {
  const int max_tokens = kMeasuredSteps + 1000;
  engine_config config;
  config.block_size = kBlockSize;
  config.max_num_seqs = n;
  config.max_num_batched_tokens = 8192;
  config.measure_actor_cpu = true;
  auto obs = std::make_shared<step_counter>();
  obs->n = n;
  engine_parts parts;
  parts.model_backend = std::make_unique<instant_backend>(blocks_needed(n, max_tokens));
  parts.engine_observer = obs;
  auto eng = make_engine(config, std::move(parts));
  if (!eng) {
    std::fprintf(stderr, "%s\n", eng.error().message().c_str());
    std::exit(1);
  }
  for (int i = 0; i < n; ++i) {
    generate_request r;
    r.prompt = prompt_for(i);
    r.max_tokens = max_tokens;
    r.sampling.temperature = 0;
    r.sampling.ignore_eos = true;
    (*eng)->submit(r, nullptr);
  }
  while (obs->full_steps.load() < 8) std::this_thread::sleep_for(std::chrono::microseconds(50));
  {
    std::lock_guard<std::mutex> lock(obs->stats_mu);
    obs->measuring = true;
  }
  // Time a fixed number of steps (all with N sequences decoding; requests outlive them).
  const int s0 = obs->steps.load();
  const double cpu0 = cpu_seconds();
  const auto start = clock_type::now();
  const auto deadline = start + std::chrono::duration_cast<clock_type::duration>(
                                    std::chrono::duration<double>(seconds));
  obs->wait_for_steps(s0 + kMeasuredSteps, deadline);
  const int s1 = obs->steps.load();
  timing t;
  t.wall_us =
      std::chrono::duration<double, std::micro>(clock_type::now() - start).count() / (s1 - s0);
  t.cpu_us = 1e6 * (cpu_seconds() - cpu0) / (s1 - s0);
  {
    std::lock_guard<std::mutex> lock(obs->stats_mu);
    obs->measuring = false;
    const int steps = obs->last.steps - obs->first.steps;
    auto per_step = [&](const char* actor) {
      if (steps <= 0) return 0.0;
      return 1e6 * (obs->last.seconds[actor] - obs->first.seconds[actor]) / steps;
    };
    t.scheduler_us = per_step("scheduler");
    t.cache_manager_us = per_step("cache_manager");
    t.worker_us = per_step("worker");
    t.request_hub_us = per_step("request_hub");
  }
  (*eng)->shutdown(std::chrono::milliseconds(0));
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 1.0;
  std::vector<int> sizes = {1, 16, 64, 256};
  std::string mode = "both";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--seconds") {
      seconds = std::atof(argv[i + 1]);
    } else if (flag == "--sizes") {
      sizes.clear();
      std::stringstream ss(argv[i + 1]);
      std::string item;
      while (std::getline(ss, item, ',')) sizes.push_back(std::atoi(item.c_str()));
    } else if (flag == "--mode") {
      mode = argv[i + 1];
    }
  }
  std::printf(
      "running_seqs  plain_us_per_step  actors_us_per_step  plain_cpu_us  actors_cpu_us  "
      "scheduler_cpu_us  cache_manager_cpu_us  worker_cpu_us  request_hub_cpu_us\n");
  for (int n : sizes) {
    const timing plain = mode != "actors" ? plain_us_per_step(n, seconds) : timing{};
    const timing actors = mode != "plain" ? actors_us_per_step(n, seconds) : timing{};
    std::printf("%12d  %17.1f  %18.1f  %12.1f  %13.1f  %16.1f  %20.1f  %13.1f  %18.1f\n", n,
                plain.wall_us, actors.wall_us, plain.cpu_us, actors.cpu_us, actors.scheduler_us,
                actors.cache_manager_us, actors.worker_us, actors.request_hub_us);
    std::fflush(stdout);
  }
  return 0;
}
