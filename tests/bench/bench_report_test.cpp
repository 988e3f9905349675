#include "bench/serve/bench_report.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "bench/serve/progress_bar.hpp"

namespace kvserve::bench {
namespace {

request_outcome ok_outcome(int prompt, int cached, int output, double ttft, double e2e) {
  request_outcome o;
  o.success = true;
  o.prompt_tokens = prompt;
  o.cached_prompt_tokens = cached;
  o.output_tokens = output;
  o.ttft_s = ttft;
  o.e2e_s = e2e;
  for (int i = 1; i < output; ++i) o.itl_s.push_back((e2e - ttft) / (output - 1));
  return o;
}

std::vector<request_outcome> sample_outcomes() {
  std::vector<request_outcome> v = {ok_outcome(100, 0, 11, 0.1, 1.1),
                                    ok_outcome(100, 80, 11, 0.02, 0.52)};
  request_outcome failed;
  failed.error = "timeout";
  v.push_back(failed);
  return v;
}

TEST(BenchReportTest, SummaryAggregatesCompletedRequests) {
  server_counters server;
  server.available = true;
  server.prompt_tokens = 200;
  server.generation_tokens = 22;
  server.prefix_hits_tokens = 80;
  server.prefix_queries_tokens = 200;
  auto s = summarize_run(sample_outcomes(), 2.0, server);
  EXPECT_EQ(s.num_requests, 3);
  EXPECT_EQ(s.completed, 2);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(s.total_input_tokens, 200);
  EXPECT_EQ(s.total_output_tokens, 22);
  EXPECT_DOUBLE_EQ(s.request_throughput, 1.0);
  EXPECT_DOUBLE_EQ(s.output_throughput, 11.0);
  EXPECT_DOUBLE_EQ(s.total_token_throughput, 111.0);
  EXPECT_DOUBLE_EQ(s.client_prefix_hit_rate, 0.4);
  EXPECT_DOUBLE_EQ(s.server.prefix_hit_rate(), 0.4);
  EXPECT_NEAR(s.ttft_ms.mean, 60.0, 1e-9);
  EXPECT_NEAR(s.tpot_ms.median, (100.0 + 50.0) / 2, 1e-9);
  EXPECT_EQ(s.itl_ms.count, 20u);
  EXPECT_TRUE(s.token_counts_match);
  ASSERT_EQ(s.first_errors.size(), 1u);
  EXPECT_EQ(s.first_errors[0], "timeout");

  EXPECT_FALSE(s.server_counts_uncached_prompt_tokens);
  server.prompt_tokens = 120;  // a server that counts only the tokens it computed
  auto uncached = summarize_run(sample_outcomes(), 2.0, server);
  EXPECT_TRUE(uncached.token_counts_match);
  EXPECT_TRUE(uncached.server_counts_uncached_prompt_tokens);
  server.prompt_tokens = 119;
  EXPECT_FALSE(summarize_run(sample_outcomes(), 2.0, server).token_counts_match);
  server.prompt_tokens = 200;
  server.generation_tokens = 21;
  EXPECT_FALSE(summarize_run(sample_outcomes(), 2.0, server).token_counts_match);
}

TEST(BenchReportTest, ChecksNeedMetricsAndNoPreemption) {
  server_counters server;
  EXPECT_EQ(summarize_run(sample_outcomes(), 2.0, server).check_verdict, "no metrics");
  server.available = true;
  server.prompt_tokens = 120;  // computed tokens: 200 prompt - 80 cached
  server.generation_tokens = 22;
  server.prefix_hits_tokens = 80;
  server.prefix_queries_tokens = 200;
  auto s = summarize_run(sample_outcomes(), 2.0, server);
  EXPECT_TRUE(s.checks_comparable);
  EXPECT_NEAR(s.hit_rate_diff_points, 0.0, 1e-12);
  EXPECT_EQ(s.check_verdict, "pass");

  server.prefix_queries_tokens = 203;  // 39.4%: 0.59 points off
  s = summarize_run(sample_outcomes(), 2.0, server);
  EXPECT_NEAR(s.hit_rate_diff_points, 100 * (0.4 - 80.0 / 203), 1e-9);
  EXPECT_EQ(s.check_verdict, "fail");
  server.prefix_queries_tokens = 201;  // 0.2 points off
  EXPECT_EQ(summarize_run(sample_outcomes(), 2.0, server).check_verdict, "pass");

  // A preempted request is looked up and computed again on re-admission: the server's
  // counters then exceed the requests' usage, and the checks say why they do not apply.
  server.preemptions = 2;
  server.prompt_tokens = 180;
  server.prefix_queries_tokens = 300;
  s = summarize_run(sample_outcomes(), 2.0, server);
  EXPECT_FALSE(s.checks_comparable);
  EXPECT_FALSE(s.token_counts_match);
  EXPECT_EQ(s.check_verdict, "not comparable: 2 preemptions");
}

TEST(BenchReportTest, PerRequestCountersKeepTheChecksDefinedUnderPreemption) {
  // A server with kvserve_request_prompt_tokens_total: each request's prompt once, with the
  // cached part its usage reports. The step and lookup counters ran ahead (a preempted request
  // was computed and looked up again), which no longer makes the run incomparable.
  server_counters server;
  server.available = true;
  server.has_request_counters = true;
  server.request_prompt_tokens = 200;  // the failed request was never admitted
  server.request_cached_prompt_tokens = 80;
  server.generation_tokens = 22;
  server.preemptions = 2;
  server.prompt_tokens = 300;
  server.prefix_queries_tokens = 400;
  server.prefix_hits_tokens = 180;
  // (The failed request reports no prompt tokens, so the client counts 200 as well.)
  auto outcomes = sample_outcomes();
  auto s = summarize_run(outcomes, 2.0, server);
  EXPECT_TRUE(s.checks_comparable);
  EXPECT_TRUE(s.token_counts_match);
  EXPECT_NEAR(s.hit_rate_diff_points, 0.0, 1e-12);
  EXPECT_NEAR(s.lookup_hit_rate_diff_points, 100 * (0.45 - 0.4), 1e-9);
  EXPECT_FALSE(s.server_counts_uncached_prompt_tokens);
  EXPECT_FALSE(s.server_counts_all_prompt_tokens);
  EXPECT_EQ(s.check_verdict, "pass (2 preemptions: lookup hit rate not compared)");

  server.request_prompt_tokens = 201;  // one prompt token too many
  EXPECT_EQ(summarize_run(outcomes, 2.0, server).check_verdict, "fail");
  server.request_prompt_tokens = 200;
  server.request_cached_prompt_tokens = 82;  // 41%: a point off
  EXPECT_EQ(summarize_run(outcomes, 2.0, server).check_verdict, "fail");

  // Without preemption the engine's lookup counters must agree as well.
  server.request_cached_prompt_tokens = 80;
  server.preemptions = 0;
  EXPECT_EQ(summarize_run(outcomes, 2.0, server).check_verdict, "fail");
  server.prefix_queries_tokens = 200;
  server.prefix_hits_tokens = 80;
  server.prompt_tokens = 120;
  s = summarize_run(outcomes, 2.0, server);
  EXPECT_EQ(s.check_verdict, "pass");
  EXPECT_TRUE(s.server_counts_uncached_prompt_tokens);
}

TEST(BenchReportTest, JsonHasConfigSummaryAndRequests) {
  bench_config config;
  config.workload.kind = workload_kind::kSharedPrefix;
  config.label = "test";
  auto outcomes = sample_outcomes();
  auto s = summarize_run(outcomes, 2.0, {});
  auto j = nlohmann::json::parse(report_json(config, s, outcomes));
  EXPECT_EQ(j["request_rate"], "inf");
  EXPECT_EQ(j["backend"], "ws");
  EXPECT_EQ(j["workload"]["name"], "shared-prefix");
  EXPECT_EQ(j["workload"]["system_len"], config.workload.shared_prefix_system_len);
  EXPECT_EQ(j["completed"], 2);
  EXPECT_EQ(j["server"]["available"], false);
  EXPECT_EQ(j["check"], "no metrics");
  EXPECT_NEAR(j["ttft_ms"]["median"].get<double>(), 60.0, 1e-9);
  ASSERT_EQ(j["requests"].size(), 3u);
  EXPECT_EQ(j["requests"][2]["error"], "timeout");
  config.save_requests = false;
  config.request_rate = 2.5;
  auto k = nlohmann::json::parse(report_json(config, s, outcomes));
  EXPECT_FALSE(k.contains("requests"));
  EXPECT_EQ(k["request_rate"], 2.5);
}

TEST(BenchReportTest, TableNamesTheMetrics) {
  bench_config config;
  auto s = summarize_run(sample_outcomes(), 2.0, {});
  std::string t = report_table(config, s);
  EXPECT_NE(t.find("Successful requests:"), std::string::npos);
  EXPECT_NE(t.find("Median TTFT (ms):"), std::string::npos);
  EXPECT_NE(t.find("P99 ITL (ms):"), std::string::npos);
  EXPECT_NE(t.find("error: timeout"), std::string::npos);
}

TEST(ProgressBarTest, RendersFraction) {
  EXPECT_EQ(progress_bar::render(5, 10, 0, 1.25, 10), "[#####     ] 5/10 1.2s");
  EXPECT_EQ(progress_bar::render(10, 10, 2, 3.0, 4), "[####] 10/10 (2 failed) 3.0s");
}

TEST(BenchConfigTest, ParsesBaseUrlsAndBackends) {
  auto a = parse_base_url("http://127.0.0.1:8123");
  ASSERT_TRUE(a.is_ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 8123);
  auto b = parse_base_url("localhost/v1");
  ASSERT_TRUE(b.is_ok());
  EXPECT_EQ(b->port, 80);
  auto c = parse_base_url("http://[::1]:9000/");
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(c->host, "::1");
  EXPECT_FALSE(parse_base_url("https://x:1").is_ok());
  EXPECT_FALSE(parse_base_url("http://x:99999").is_ok());
  EXPECT_FALSE(parse_base_url("http://x:12ab").is_ok());
  EXPECT_TRUE(parse_api_backend("openai-completions").is_ok());
  EXPECT_FALSE(parse_api_backend("grpc").is_ok());
}

}  // namespace
}  // namespace kvserve::bench
