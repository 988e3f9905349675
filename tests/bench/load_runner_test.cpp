// run_benchmark against tests/bench/fake_kvserve.py, a stand-in server (Python standard library)
// that speaks /metrics, the OpenAI SSE endpoints and the kvserve.v1 WebSocket protocol, and
// counts prefix-cache hits in whole blocks like the engine. The real server is exercised by
// the experiments in bench/experiments/.

#include "bench/serve/load_runner.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <string>

#include "bench/serve/arrival_schedule.hpp"

namespace kvserve::bench {
namespace {

/// The fake server as a child process; it exits when its stdin closes.
class fake_server {
 public:
  fake_server() {
    int to_child[2];
    int from_child[2];
    if (pipe(to_child) != 0 || pipe(from_child) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(to_child[0], 0);
      dup2(from_child[1], 1);
      close(to_child[1]);
      close(from_child[0]);
      std::string script = std::string(KVSERVE_SOURCE_DIR) + "/tests/bench/fake_kvserve.py";
      execlp("python3", "python3", script.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    stdin_ = to_child[1];
    FILE* out = fdopen(from_child[0], "r");
    if (out && std::fscanf(out, "%d", &port_) != 1) port_ = 0;
    if (out) std::fclose(out);
  }
  ~fake_server() {
    if (stdin_ >= 0) close(stdin_);
    if (pid_ > 0) {
      int status = 0;
      for (int i = 0; i < 50 && waitpid(pid_, &status, WNOHANG) == 0; ++i) usleep(100000);
      if (waitpid(pid_, &status, WNOHANG) == 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
      }
    }
  }
  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
  int port_ = 0;
};

bench_config base_config(const fake_server& server, api_backend backend) {
  bench_config c;
  c.address.host = "127.0.0.1";
  c.address.port = static_cast<std::uint16_t>(server.port());
  c.backend = backend;
  c.progress = false;
  c.request_timeout_s = 30;
  c.max_duration_s = 60;
  return c;
}

class LoadRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (server_.port() <= 0) GTEST_SKIP() << "python3 could not start the fake server";
  }
  fake_server server_;
};

TEST_F(LoadRunnerTest, SharedPrefixOverWebSocketMatchesServerCounters) {
  bench_config c = base_config(server_, api_backend::kWebSocket);
  c.max_concurrency = 2;
  c.workload.kind = workload_kind::kSharedPrefix;
  c.workload.shared_prefix_groups = 2;
  c.workload.shared_prefix_prompts_per_group = 4;
  c.workload.shared_prefix_system_len = 48;
  c.workload.shared_prefix_question_len = 5;
  c.workload.shared_prefix_output_len = 6;
  auto run = run_benchmark(c);
  ASSERT_TRUE(run.is_ok()) << run.error().message();
  const bench_summary& s = run->summary;
  EXPECT_EQ(s.completed, 8);
  EXPECT_EQ(s.failed, 0);
  EXPECT_EQ(s.total_input_tokens, 8 * 53);
  EXPECT_EQ(s.total_output_tokens, 8 * 6);
  ASSERT_TRUE(s.server.available);
  EXPECT_TRUE(s.token_counts_match);
  // Each group's first prompt misses (at most two in flight can both miss); the rest hit 48.
  EXPECT_GE(s.total_cached_tokens, 4 * 48);
  EXPECT_NEAR(s.client_prefix_hit_rate, s.server.prefix_hit_rate(), 1e-12);
  for (const request_outcome& o : run->outcomes) {
    EXPECT_EQ(o.output_tokens, 6);
    EXPECT_EQ(o.itl_s.size(), 5u);
    EXPECT_GT(o.ttft_s, 0.0);
    EXPECT_GE(o.e2e_s, o.ttft_s);
  }
  EXPECT_EQ(s.itl_ms.count, 8u * 5u);
}

TEST_F(LoadRunnerTest, RandomOverCompletionsWithPoissonArrivals) {
  bench_config c = base_config(server_, api_backend::kOpenAICompletions);
  c.request_rate = 50;
  c.workload.kind = workload_kind::kRandom;
  c.workload.num_prompts = 5;
  c.workload.random_input_len = 20;
  c.workload.random_output_len = 4;
  auto run = run_benchmark(c);
  ASSERT_TRUE(run.is_ok()) << run.error().message();
  EXPECT_EQ(run->summary.completed, 5);
  EXPECT_EQ(run->summary.total_input_tokens, 100);
  EXPECT_EQ(run->summary.total_output_tokens, 20);
  EXPECT_TRUE(run->summary.token_counts_match);
  double latest_start = 0;
  for (const request_outcome& o : run->outcomes) latest_start = std::max(latest_start, o.start_s);
  EXPECT_GT(latest_start, 0.0);  // not all at once
}

TEST_F(LoadRunnerTest, TcpQuickAckChangesNothingButTiming) {
  // --tcp-quickack sets a socket option before every read, over both transports; every request
  // must still complete with its exact token counts.
  for (api_backend backend : {api_backend::kWebSocket, api_backend::kOpenAICompletions}) {
    bench_config c = base_config(server_, backend);
    c.tcp_quickack = true;
    c.workload.kind = workload_kind::kRandom;
    c.workload.num_prompts = 4;
    c.workload.random_input_len = 16;
    c.workload.random_output_len = 5;
    auto run = run_benchmark(c);
    ASSERT_TRUE(run.is_ok()) << run.error().message();
    EXPECT_EQ(run->summary.completed, 4);
    EXPECT_EQ(run->summary.total_output_tokens, 20);
    EXPECT_TRUE(run->summary.token_counts_match);
  }
}

TEST_F(LoadRunnerTest, MultiTurnHistoryGrowsOverWebSocket) {
  bench_config c = base_config(server_, api_backend::kWebSocket);
  c.workload.kind = workload_kind::kMultiTurn;
  c.workload.multi_turn_conversations = 2;
  c.workload.multi_turn_turns = 3;
  c.workload.multi_turn_system_len = 16;
  c.workload.multi_turn_question_len = 8;
  c.workload.multi_turn_output_len = 8;
  auto run = run_benchmark(c);
  ASSERT_TRUE(run.is_ok()) << run.error().message();
  EXPECT_EQ(run->summary.completed, 6);
  EXPECT_TRUE(run->summary.token_counts_match);
  std::map<std::pair<int, int>, request_outcome> by_turn;
  for (const request_outcome& o : run->outcomes) by_turn[{o.session, o.turn}] = o;
  for (int s = 0; s < 2; ++s) {
    // Turn t's prompt is the system prompt plus t+1 questions plus t answers.
    for (int t = 0; t < 3; ++t)
      EXPECT_EQ(by_turn[std::make_pair(s, t)].prompt_tokens, 16 + 8 * (t + 1) + 8 * t);
    // The fake server caches prompt blocks only (the engine also caches generated ones):
    // turn 1 finds the system block; turn 2 finds turn 1's first two blocks, the second of
    // which holds turn 0's answer, so the history was sent back verbatim.
    EXPECT_EQ(by_turn[std::make_pair(s, 1)].cached_prompt_tokens, 16);
    EXPECT_EQ(by_turn[std::make_pair(s, 2)].cached_prompt_tokens, 32);
  }
}

TEST_F(LoadRunnerTest, MultiTurnOverChatSendsTheAnswersBack) {
  bench_config c = base_config(server_, api_backend::kOpenAIChat);
  c.workload.kind = workload_kind::kMultiTurn;
  c.workload.multi_turn_conversations = 2;
  c.workload.multi_turn_turns = 2;
  c.workload.multi_turn_question_len = 6;
  c.workload.multi_turn_output_len = 5;
  auto run = run_benchmark(c);
  ASSERT_TRUE(run.is_ok()) << run.error().message();
  EXPECT_EQ(run->summary.completed, 4);
  EXPECT_TRUE(run->summary.token_counts_match);
  for (const request_outcome& o : run->outcomes) {
    EXPECT_TRUE(o.usage_reported);
    EXPECT_EQ(o.output_tokens, 5);
    // The fake server counts one token per word plus one per message.
    EXPECT_EQ(o.prompt_tokens, o.turn == 0 ? 7 : 7 + 6 + 7);
  }
}

TEST_F(LoadRunnerTest, MaxDurationBoundsTheRun) {
  bench_config c = base_config(server_, api_backend::kWebSocket);
  // Rate 0.5 with seed 0: the sessions after the first are due at 3.5 s, 4.8 s and later, all
  // after the 2 s bound, which leaves the first request (2 tokens) time to finish on a loaded
  // machine.
  c.request_rate = 0.5;
  c.max_duration_s = 2.0;
  c.workload.kind = workload_kind::kRandom;
  c.workload.seed = 0;
  c.workload.num_prompts = 6;
  ASSERT_GT(poisson_arrival_times(6, c.request_rate, c.workload.seed)[1], c.max_duration_s);
  c.workload.random_input_len = 8;
  c.workload.random_output_len = 2;
  auto run = run_benchmark(c);
  ASSERT_TRUE(run.is_ok()) << run.error().message();
  EXPECT_EQ(run->summary.num_requests, 6);
  EXPECT_GE(run->summary.completed, 1);  // the first session starts at once
  EXPECT_GE(run->summary.failed, 1);
  EXPECT_LT(run->summary.duration_s, 30.0);
}

class StalledServerTest : public LoadRunnerTest,
                          public ::testing::WithParamInterface<api_backend> {};

TEST_P(StalledServerTest, RequestTimeoutEndsAStalledRequest) {
  bench_config c = base_config(server_, GetParam());
  c.request_timeout_s = 1.0;
  c.workload.kind = workload_kind::kRandom;
  c.workload.num_prompts = 2;
  c.workload.random_input_len = 4;
  c.workload.random_output_len = 999;  // the fake server stalls on this length
  auto run = run_benchmark(c);
  ASSERT_TRUE(run.is_ok()) << run.error().message();
  EXPECT_EQ(run->summary.failed, 2);
  for (const request_outcome& o : run->outcomes) EXPECT_EQ(o.error, "timeout");
  EXPECT_LT(run->summary.duration_s, 10.0);
}

INSTANTIATE_TEST_SUITE_P(Backends, StalledServerTest,
                         ::testing::Values(api_backend::kWebSocket,
                                           api_backend::kOpenAICompletions));

TEST(LoadRunnerNoServerTest, UnreachableServerFailsBeforeTheLoad) {
  bench_config c;
  c.address.port = 1;  // nothing listens on port 1 of loopback
  c.progress = false;
  c.workload.num_prompts = 1;
  auto run = run_benchmark(c);
  ASSERT_FALSE(run.is_ok());
  EXPECT_NE(run.error().message().find("cannot reach"), std::string::npos);
}

TEST(LoadRunnerNoServerTest, RejectsMultiTurnOverCompletions) {
  bench_config c;
  c.backend = api_backend::kOpenAICompletions;
  c.workload.kind = workload_kind::kMultiTurn;
  EXPECT_FALSE(validate(c));
}

}  // namespace
}  // namespace kvserve::bench
