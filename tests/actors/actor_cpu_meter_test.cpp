// The per-actor CPU meter: a scope adds the thread's CPU time to its actor, a null meter
// measures nothing, and an engine started with measure_actor_cpu reports every actor's time.

#include "actors/actor_cpu_meter.hpp"

#include <gtest/gtest.h>
#include <time.h>

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "actors/engine.hpp"
#include "test_support.hpp"

namespace kvserve {
namespace {

/// This thread's CPU time in seconds.
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

/// Burns about `ms` milliseconds of this thread's CPU time, counted as CPU time: a wall-clock
/// spin gets only a sliver of CPU on a loaded machine (0.13 ms of 20 ms under 4 busy loops).
/// Bounded by 10 s of wall time.
void spin_cpu(int ms) {
  const double start = thread_cpu_seconds();
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  volatile std::uint64_t x = 0;
  while (thread_cpu_seconds() - start < 1e-3 * ms && std::chrono::steady_clock::now() < limit) {
    for (int i = 0; i < 1000; ++i) x = x + 1;
  }
}

TEST(actor_cpu_meter, a_scope_adds_its_threads_cpu_time_to_its_actor_only) {
  actor_cpu_meter meter;
  {
    actor_cpu_meter::scope s(&meter, engine_actor::kCacheManager);
    spin_cpu(20);
  }
  const auto seconds = meter.seconds();
  ASSERT_EQ(seconds.size(), 4u);
  // CPU time, not wall time: at most the 20 ms spun, and most of it even on a loaded machine.
  EXPECT_GT(seconds.at("cache_manager"), 0.002);
  EXPECT_LT(seconds.at("cache_manager"), 1.0);
  EXPECT_EQ(seconds.at("scheduler"), 0.0);
  EXPECT_EQ(seconds.at("worker"), 0.0);
  EXPECT_EQ(seconds.at("request_hub"), 0.0);
  { actor_cpu_meter::scope s(nullptr, engine_actor::kScheduler); }  // measures nothing
}

/// Waits for the request's final event.
struct final_waiter {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  event_callback callback() {
    return [this](request_id, const generation_event& e) {
      if (!std::holds_alternative<finished_event>(e) && !std::holds_alternative<error_event>(e))
        return;
      std::lock_guard<std::mutex> lock(mu);
      done = true;
      cv.notify_all();
    };
  }
  bool wait() {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(30), [&] { return done; });
  }
};

engine_stats run_one_request(bool measure) {
  engine_config config;
  config.block_size = 4;
  config.measure_actor_cpu = measure;
  engine_parts parts;
  parts.model_backend = std::make_unique<testing::fake_backend>(200, config.block_size, 64);
  parts.model_tokenizer = testing::make_byte_tokenizer();
  auto eng = make_engine(config, std::move(parts));
  EXPECT_TRUE(eng.is_ok());
  if (!eng) return {};
  generate_request r;
  r.prompt = testing::make_prompt(9, 1);
  r.max_tokens = 5;
  r.sampling.temperature = 0;
  final_waiter waiter;
  (*eng)->submit(r, waiter.callback());
  EXPECT_TRUE(waiter.wait());
  (*eng)->shutdown(std::chrono::milliseconds(0));
  return (*eng)->stats();  // published once the request ended
}

TEST(actor_cpu_meter, engine_reports_each_actors_cpu_time_when_asked) {
  const engine_stats s = run_one_request(true);
  ASSERT_EQ(s.actor_cpu_seconds.size(), 4u);
  for (const char* actor : {"scheduler", "cache_manager", "worker", "request_hub"}) {
    EXPECT_GT(s.actor_cpu_seconds.at(actor), 0.0) << actor;
    EXPECT_LT(s.actor_cpu_seconds.at(actor), 30.0) << actor;
  }
}

TEST(actor_cpu_meter, engine_reports_nothing_by_default) {
  EXPECT_TRUE(run_one_request(false).actor_cpu_seconds.empty());
}

}  // namespace
}  // namespace kvserve
