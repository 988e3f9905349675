#include "bench/serve/metrics_text.hpp"

#include <gtest/gtest.h>

namespace kvserve::bench {
namespace {

constexpr const char* kScrapeBefore =
    R"(# HELP kvserve_prefix_cache_hits_tokens_total Prompt tokens served from the cache
# TYPE kvserve_prefix_cache_hits_tokens_total counter
kvserve_prefix_cache_hits_tokens_total 100
kvserve_prefix_cache_queries_tokens_total 400
kvserve_prompt_tokens_total 400
kvserve_generation_tokens_total 50
kvserve_kv_cache_evictions_total{reason="capacity"} 3
kvserve_kv_cache_evictions_total{reason="weird}label"} 1
kvserve_time_to_first_token_seconds_bucket{le="+Inf"} 7
kvserve_time_to_first_token_seconds_sum 0.7
kvserve_time_to_first_token_seconds_count 7
kvserve_kv_cache_usage_ratio 0.25 1700000000000
)";

constexpr const char* kScrapeAfter = R"(kvserve_prefix_cache_hits_tokens_total 400
kvserve_prefix_cache_queries_tokens_total 1000
kvserve_prompt_tokens_total 1000
kvserve_generation_tokens_total 250
kvserve_kv_cache_evictions_total{reason="capacity"} 10
kvserve_kv_cache_evictions_total{reason="weird}label"} 1
kvserve_num_preemptions_total 2
kvserve_time_to_first_token_seconds_sum 1.3
kvserve_time_to_first_token_seconds_count 17
)";

TEST(MetricsTextTest, ParsesSamplesLabelsAndTimestamps) {
  auto m = metrics_snapshot::parse(kScrapeBefore);
  EXPECT_EQ(m.get("kvserve_prefix_cache_hits_tokens_total"), 100.0);
  EXPECT_EQ(m.get("kvserve_kv_cache_evictions_total", R"(reason="capacity")"), 3.0);
  EXPECT_EQ(m.get("kvserve_kv_cache_evictions_total", R"(reason="weird}label")"), 1.0);
  EXPECT_EQ(m.sum("kvserve_kv_cache_evictions_total"), 4.0);
  EXPECT_EQ(m.get("kvserve_kv_cache_usage_ratio"), 0.25);
  EXPECT_EQ(m.get("kvserve_time_to_first_token_seconds_bucket", R"(le="+Inf")"), 7.0);
  EXPECT_FALSE(m.sum("kvserve_missing").has_value());
}

TEST(MetricsTextTest, SkipsMalformedLines) {
  auto m = metrics_snapshot::parse("good 1\nbad_no_value\nbad{x=\"1\" 2\nalso_bad abc\n\n");
  EXPECT_EQ(m.get("good"), 1.0);
  EXPECT_FALSE(m.get("bad_no_value").has_value());
  EXPECT_FALSE(m.sum("also_bad").has_value());
}

TEST(MetricsTextTest, CountersBetweenScrapes) {
  auto c = counters_between(metrics_snapshot::parse(kScrapeBefore),
                            metrics_snapshot::parse(kScrapeAfter));
  EXPECT_TRUE(c.available);
  EXPECT_DOUBLE_EQ(c.prefix_hits_tokens, 300);
  EXPECT_DOUBLE_EQ(c.prefix_queries_tokens, 600);
  EXPECT_DOUBLE_EQ(c.prefix_hit_rate(), 0.5);
  EXPECT_DOUBLE_EQ(c.prompt_tokens, 600);
  EXPECT_DOUBLE_EQ(c.generation_tokens, 200);
  EXPECT_DOUBLE_EQ(c.evictions, 7);
  EXPECT_DOUBLE_EQ(c.preemptions, 2);
  // TTFT of the 10 requests in between: 0.6 s in all.
  EXPECT_DOUBLE_EQ(c.ttft_count, 10);
  EXPECT_NEAR(c.mean_ttft_s(), 0.06, 1e-12);
  EXPECT_DOUBLE_EQ(c.mean_queue_time_s(), 0.0);  // not in the scrapes
}

TEST(MetricsTextTest, PerRequestCountersOnlyWhereBothScrapesHaveThem) {
  auto c = counters_between(metrics_snapshot::parse(kScrapeBefore),
                            metrics_snapshot::parse(kScrapeAfter));
  EXPECT_FALSE(c.has_request_counters);
  const std::string before = std::string(kScrapeBefore) +
                             "kvserve_request_prompt_tokens_total 400\n"
                             "kvserve_request_cached_prompt_tokens_total 100\n";
  const std::string after = std::string(kScrapeAfter) +
                            "kvserve_request_prompt_tokens_total 900\n"
                            "kvserve_request_cached_prompt_tokens_total 300\n";
  c = counters_between(metrics_snapshot::parse(before), metrics_snapshot::parse(after));
  EXPECT_TRUE(c.has_request_counters);
  EXPECT_DOUBLE_EQ(c.request_prompt_tokens, 500);
  EXPECT_DOUBLE_EQ(c.request_cached_prompt_tokens, 200);
  EXPECT_DOUBLE_EQ(c.request_hit_rate(), 0.4);
  EXPECT_DOUBLE_EQ(c.prompt_tokens, 600);  // the step counter is read as before
}

TEST(MetricsTextTest, NotAvailableWithoutPrefixCounters) {
  auto c = counters_between(metrics_snapshot::parse("x 1\n"), metrics_snapshot::parse("x 2\n"));
  EXPECT_FALSE(c.available);
  EXPECT_DOUBLE_EQ(c.prefix_hit_rate(), 0.0);
}

}  // namespace
}  // namespace kvserve::bench
