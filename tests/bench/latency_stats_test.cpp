#include "bench/serve/latency_stats.hpp"

#include <gtest/gtest.h>

#include "bench/serve/arrival_schedule.hpp"

#include <cmath>
#include <limits>

namespace kvserve::bench {
namespace {

TEST(LatencyStatsTest, PercentilesInterpolateLikeNumpy) {
  // numpy.percentile([1..10], q): 50 -> 5.5, 90 -> 9.1, 99 -> 9.91
  std::vector<double> v = {10, 9, 8, 7, 6, 5, 4, 3, 2, 1};
  auto s = summarize(v);
  EXPECT_EQ(s.count, 10u);
  EXPECT_DOUBLE_EQ(s.mean, 5.5);
  EXPECT_DOUBLE_EQ(s.median, 5.5);
  EXPECT_NEAR(s.p90, 9.1, 1e-12);
  EXPECT_NEAR(s.p99, 9.91, 1e-12);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 10);
}

TEST(LatencyStatsTest, SingleAndEmpty) {
  auto one = summarize({3.5});
  EXPECT_DOUBLE_EQ(one.median, 3.5);
  EXPECT_DOUBLE_EQ(one.p99, 3.5);
  auto none = summarize({});
  EXPECT_EQ(none.count, 0u);
  EXPECT_DOUBLE_EQ(none.mean, 0);
}

TEST(ArrivalScheduleTest, InfiniteRateStartsAllAtOnce) {
  auto t = poisson_arrival_times(5, std::numeric_limits<double>::infinity(), 1);
  ASSERT_EQ(t.size(), 5u);
  for (double x : t) EXPECT_EQ(x, 0.0);
}

TEST(ArrivalScheduleTest, PoissonGapsHaveTheRequestedMean) {
  const double rate = 4.0;
  auto t = poisson_arrival_times(20001, rate, 9);
  ASSERT_EQ(t.size(), 20001u);
  EXPECT_EQ(t[0], 0.0);
  for (std::size_t i = 1; i < t.size(); ++i) ASSERT_GE(t[i], t[i - 1]);
  double mean_gap = t.back() / 20000.0;
  EXPECT_NEAR(mean_gap, 1.0 / rate, 0.01);  // standard error ~0.0018
  // Exponential gaps: about e^-1 of them exceed the mean.
  int longer = 0;
  for (std::size_t i = 1; i < t.size(); ++i) longer += (t[i] - t[i - 1]) > 1.0 / rate;
  EXPECT_NEAR(longer / 20000.0, std::exp(-1.0), 0.02);
}

TEST(ArrivalScheduleTest, DeterministicInSeed) {
  EXPECT_EQ(poisson_arrival_times(10, 2.0, 5), poisson_arrival_times(10, 2.0, 5));
  EXPECT_NE(poisson_arrival_times(10, 2.0, 5), poisson_arrival_times(10, 2.0, 6));
}

}  // namespace
}  // namespace kvserve::bench
