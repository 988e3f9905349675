#include "model/thread_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

namespace kvserve {
namespace {

TEST(ThreadPool, RunsEveryTaskExactlyOnce) {
  for (int threads : {1, 2, 3, 4}) {
    thread_pool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int round = 0; round < 200; ++round) {
      const int n = 1 + (round * 37) % 300;
      std::vector<std::atomic<int>> hits(n);
      std::atomic<bool> bad_thread{false};
      pool.parallel_for(n, [&](int task, int thread) {
        hits[task].fetch_add(1);
        if (thread < 0 || thread >= threads) bad_thread = true;
      });
      for (int i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "task " << i;
      EXPECT_FALSE(bad_thread.load());
    }
  }
}

TEST(ThreadPool, SerialModeRunsOnTheCaller) {
  thread_pool pool(2);
  std::vector<int> order;
  pool.parallel_for(
      5, [&](int task, int thread) { order.push_back(task * 10 + thread); }, false);
  EXPECT_EQ(order, (std::vector<int>{0, 10, 20, 30, 40}));
  pool.parallel_for(0, [&](int, int) { order.push_back(-1); });
  EXPECT_EQ(order.size(), 5u);
}

TEST(ThreadPool, SurvivesIdlePeriodsAndDestruction) {
  for (int i = 0; i < 20; ++i) {
    thread_pool pool(2);
    std::atomic<int> sum{0};
    pool.parallel_for(64, [&](int task, int) { sum += task; });
    EXPECT_EQ(sum.load(), 64 * 63 / 2);
  }
}

}  // namespace
}  // namespace kvserve
