#include "model/thread_pool.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace kvserve {
namespace {

// Spinning briefly before sleeping keeps the hand-off cheap between the ~150 parallel regions
// of one decode step, without burning a core while the backend is idle.
constexpr int kSpinIterations = 4000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

}  // namespace

thread_pool::thread_pool(int num_threads) {
  if (num_threads <= 0) num_threads = static_cast<int>(std::thread::hardware_concurrency());
  if (num_threads <= 0) num_threads = 1;
  workers_.reserve(num_threads - 1);
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

thread_pool::~thread_pool() {
  stop_.store(true);
  generation_.fetch_add(2);
  generation_.notify_all();
  for (auto& w : workers_) w.join();
}

void thread_pool::drain(int thread) {
  for (;;) {
    const int task = next_task_.fetch_add(1);
    if (task >= num_tasks_) return;
    fn_(ctx_, task, thread);
    tasks_done_.fetch_add(1);
  }
}

void thread_pool::run(int num_tasks, task_fn fn, void* ctx) {
  generation_.fetch_add(1);  // odd: rewriting; late workers of the last job back off
  for (int spin = 0; workers_inside_.load() != 0; ++spin) {
    if (spin < kSpinIterations) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
  fn_ = fn;
  ctx_ = ctx;
  num_tasks_ = num_tasks;
  next_task_.store(0);
  tasks_done_.store(0);
  generation_.fetch_add(1);  // even: published
  if (workers_sleeping_.load() > 0) generation_.notify_all();
  drain(0);
  // Tasks that a worker has claimed may still be running.
  for (int spin = 0; tasks_done_.load() < num_tasks; ++spin) {
    if (spin < kSpinIterations) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

void thread_pool::worker_loop(int thread) {
  std::uint32_t seen = 0;
  int spin = 0;
  for (;;) {
    const std::uint32_t gen = generation_.load();
    if (gen == seen || (gen & 1u) != 0) {
      if (stop_.load()) return;
      if (++spin < kSpinIterations) {
        cpu_relax();
      } else {
        workers_sleeping_.fetch_add(1);
        generation_.wait(gen);
        workers_sleeping_.fetch_sub(1);
        spin = 0;
      }
      continue;
    }
    workers_inside_.fetch_add(1);
    if (generation_.load() != gen) {  // the caller started rewriting the job: look again
      workers_inside_.fetch_sub(1);
      continue;
    }
    seen = gen;
    spin = 0;
    if (!stop_.load()) drain(thread);
    workers_inside_.fetch_sub(1);
    if (stop_.load()) return;
  }
}

}  // namespace kvserve
