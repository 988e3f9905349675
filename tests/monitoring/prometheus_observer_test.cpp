// The Prometheus observer: every metric of issue 6 is exported under its exact name, counters
// follow the engine's cumulative totals by deltas, histograms count what they observe.

#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "metric_sample.hpp"
#include "monitoring/prometheus_observer.hpp"

namespace kvserve {
namespace {

using testing::sample;

TEST(prometheus_observer, exports_every_metric_of_the_issue) {
  prometheus_observer obs;
  std::string text = obs.render();
  for (const char* name : {"kvserve_num_requests_running",
                           "kvserve_num_requests_waiting",
                           "kvserve_kv_cache_usage_ratio",
                           "kvserve_kv_cache_blocks",
                           "kvserve_prefix_cache_queries_tokens_total",
                           "kvserve_prefix_cache_hits_tokens_total",
                           "kvserve_kv_cache_evictions_total",
                           "kvserve_num_preemptions_total",
                           "kvserve_prompt_tokens_total",
                           "kvserve_generation_tokens_total",
                           "kvserve_requests_finished_total",
                           "kvserve_time_to_first_token_seconds",
                           "kvserve_inter_token_latency_seconds",
                           "kvserve_e2e_request_latency_seconds",
                           "kvserve_request_queue_time_seconds",
                           "kvserve_step_duration_seconds",
                           "kvserve_step_batch_size",
                           "kvserve_cuda_graph_replays_total",
                           "kvserve_request_prompt_tokens_total",
                           "kvserve_request_cached_prompt_tokens_total"}) {
    EXPECT_NE(text.find(std::string("# TYPE ") + name + " "), std::string::npos) << name;
  }
  EXPECT_EQ(sample(text, "kvserve_cuda_graph_replays_total"), 0.0);
}

TEST(prometheus_observer, cumulative_stats_become_counter_deltas) {
  prometheus_observer obs;
  engine_stats s;
  s.num_requests_running = 3;
  s.num_requests_waiting = 2;
  s.num_blocks_total = 10;
  s.num_blocks_free = 5;
  s.num_blocks_cached = 3;
  s.num_blocks_locked = 2;
  s.kv_cache_usage_ratio = 0.2;
  s.prefix_cache_queries_tokens = 100;
  s.prefix_cache_hits_tokens = 40;
  s.evictions_by_reason["capacity"] = 7;
  s.num_preemptions = 1;
  obs.on_stats(s);
  obs.on_stats(s);  // the same totals again: no double counting
  s.prefix_cache_queries_tokens = 150;
  s.prefix_cache_hits_tokens = 60;
  s.evictions_by_reason["capacity"] = 9;
  s.evictions_by_reason["salt_expired"] = 1;
  obs.on_stats(s);
  std::string text = obs.render();
  EXPECT_EQ(sample(text, "kvserve_num_requests_running"), 3.0);
  EXPECT_EQ(sample(text, "kvserve_num_requests_waiting"), 2.0);
  EXPECT_EQ(sample(text, "kvserve_kv_cache_usage_ratio"), 0.2);
  EXPECT_EQ(sample(text, "kvserve_kv_cache_blocks{state=\"free\"}"), 5.0);
  EXPECT_EQ(sample(text, "kvserve_kv_cache_blocks{state=\"cached\"}"), 3.0);
  EXPECT_EQ(sample(text, "kvserve_kv_cache_blocks{state=\"locked\"}"), 2.0);
  EXPECT_EQ(sample(text, "kvserve_prefix_cache_queries_tokens_total"), 150.0);
  EXPECT_EQ(sample(text, "kvserve_prefix_cache_hits_tokens_total"), 60.0);
  EXPECT_EQ(sample(text, "kvserve_kv_cache_evictions_total{reason=\"capacity\"}"), 9.0);
  EXPECT_EQ(sample(text, "kvserve_kv_cache_evictions_total{reason=\"salt_expired\"}"), 1.0);
  EXPECT_EQ(sample(text, "kvserve_num_preemptions_total"), 1.0);
}

TEST(prometheus_observer, steps_and_finished_requests_fill_histograms_and_counters) {
  prometheus_observer obs;
  obs.on_step({step_kind::kPrefill, 0.004, 2, 30, 2});
  obs.on_step({step_kind::kDecode, 0.001, 2, 0, 2});
  request_report r;
  r.finish_reason = "stop";
  r.prompt_tokens = 15;
  r.completion_tokens = 2;
  r.queue_time_seconds = 0.002;
  r.time_to_first_token_seconds = 0.005;
  r.e2e_latency_seconds = 0.01;
  r.inter_token_latencies_seconds = {0.001};
  obs.on_request_finished(r);
  r.finish_reason = "cancelled";
  r.time_to_first_token_seconds = -1;
  r.inter_token_latencies_seconds.clear();
  obs.on_request_finished(r);
  std::string text = obs.render();
  EXPECT_EQ(sample(text, "kvserve_prompt_tokens_total"), 30.0);
  EXPECT_EQ(sample(text, "kvserve_generation_tokens_total"), 4.0);
  EXPECT_EQ(sample(text, "kvserve_requests_finished_total{reason=\"stop\"}"), 1.0);
  EXPECT_EQ(sample(text, "kvserve_requests_finished_total{reason=\"cancelled\"}"), 1.0);
  EXPECT_EQ(sample(text, "kvserve_requests_finished_total{reason=\"length\"}"), 0.0);
  EXPECT_EQ(sample(text, "kvserve_time_to_first_token_seconds_count"), 1.0);
  EXPECT_EQ(sample(text, "kvserve_e2e_request_latency_seconds_count"), 2.0);
  EXPECT_EQ(sample(text, "kvserve_inter_token_latency_seconds_count"), 1.0);
  EXPECT_EQ(sample(text, "kvserve_step_duration_seconds_count{kind=\"prefill\"}"), 1.0);
  EXPECT_EQ(sample(text, "kvserve_step_duration_seconds_count{kind=\"decode\"}"), 1.0);
  EXPECT_EQ(sample(text, "kvserve_step_batch_size_sum"), 4.0);
  EXPECT_EQ(sample(text, "kvserve_step_batch_size_bucket{le=\"2\"}"), 2.0);
}

TEST(prometheus_observer, counts_each_requests_prompt_once_however_often_it_was_computed) {
  // A request of 100 prompt tokens, 60 of them cached at admission, preempted once and
  // recomputed: the steps compute 40 + 100 prompt tokens, the request ends once.
  prometheus_observer obs;
  obs.on_step({step_kind::kPrefill, 0.004, 1, 40, 1});
  obs.on_step({step_kind::kPrefill, 0.004, 1, 100, 1});
  request_report r;
  r.finish_reason = "length";
  r.prompt_tokens = 100;
  r.cached_prompt_tokens = 60;
  r.completion_tokens = 2;
  obs.on_request_finished(r);
  r.prompt_tokens = 7;  // a second request without a hit
  r.cached_prompt_tokens = 0;
  obs.on_request_finished(r);
  std::string text = obs.render();
  EXPECT_EQ(sample(text, "kvserve_prompt_tokens_total"), 140.0);
  EXPECT_EQ(sample(text, "kvserve_request_prompt_tokens_total"), 107.0);
  EXPECT_EQ(sample(text, "kvserve_request_cached_prompt_tokens_total"), 60.0);
}

TEST(prometheus_observer, is_safe_to_call_from_several_threads) {
  prometheus_observer obs;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&obs, t] {
      engine_stats s;
      for (int i = 1; i <= 1000; ++i) {
        obs.on_step({step_kind::kDecode, 0.001, 1, 0, 1});
        s.prefix_cache_queries_tokens = static_cast<std::uint64_t>(i);
        if (t == 0) obs.on_stats(s);
        if (i % 100 == 0) (void)obs.render();
      }
    });
  }
  for (auto& th : threads) th.join();
  std::string text = obs.render();
  EXPECT_EQ(sample(text, "kvserve_generation_tokens_total"), 4000.0);
  EXPECT_EQ(sample(text, "kvserve_prefix_cache_queries_tokens_total"), 1000.0);
}

}  // namespace
}  // namespace kvserve
