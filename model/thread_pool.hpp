#pragma once
/// A small fork-join thread pool for the CPU backend: `parallel_for` hands out task indices to
/// the workers and the calling thread and returns when every task has run. Which thread runs a
/// task never changes what the task computes, so results do not depend on the thread count.

#include <atomic>
#include <cstdint>
#include <thread>
#include <utility>
#include <vector>

namespace kvserve {

class thread_pool {
 public:
  /// `num_threads` threads in all, the caller included (<= 0: hardware concurrency).
  explicit thread_pool(int num_threads);
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  /// Threads that run tasks, the caller included.
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  /// Runs fn(task, thread) for every task in [0, num_tasks); `thread` in [0, size()) names the
  /// running thread (for per-thread scratch). Blocks until all tasks are done; the caller runs
  /// tasks too and never waits for a worker that has not woken up (an oversubscribed machine
  /// degrades to fewer threads, not to a stall). Not re-entrant: one caller at a time, and fn
  /// must not call parallel_for. With `parallel` false the caller runs every task itself
  /// (for work too small to be worth waking a thread).
  template <class Fn>
  void parallel_for(int num_tasks, Fn&& fn, bool parallel = true) {
    if (num_tasks <= 0) return;
    if (num_tasks == 1 || workers_.empty() || !parallel) {
      for (int i = 0; i < num_tasks; ++i) fn(i, 0);
      return;
    }
    auto call = [](void* ctx, int task, int thread) { (*static_cast<Fn*>(ctx))(task, thread); };
    run(num_tasks, call, &fn);
  }

 private:
  using task_fn = void (*)(void* ctx, int task, int thread);
  void run(int num_tasks, task_fn fn, void* ctx);
  void worker_loop(int thread);
  void drain(int thread);

  std::vector<std::thread> workers_;
  // The current job. `generation_` is odd while the caller rewrites it and even once it is
  // published; a worker announces itself in `workers_inside_` and re-checks the generation
  // before touching the job, and the caller rewrites only when no worker is inside.
  task_fn fn_ = nullptr;
  void* ctx_ = nullptr;
  int num_tasks_ = 0;
  std::atomic<int> next_task_{0};
  std::atomic<int> tasks_done_{0};
  std::atomic<int> workers_inside_{0};
  std::atomic<int> workers_sleeping_{0};
  std::atomic<std::uint32_t> generation_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace kvserve
