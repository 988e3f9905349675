// The engine facade end to end (request, scheduler, cache-manager and worker actors) over the
// fake backend: concurrency, prefix reuse, cancellation, failures, overload, streams.

#include "actors/engine.hpp"

#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "test_support.hpp"

namespace kvserve {
namespace {

using namespace std::chrono_literals;
using testing::fake_backend;
using testing::make_prompt;

/// Collects every request's events.
class collector {
 public:
  struct record {
    std::vector<generation_event> events;
    std::vector<std::int32_t> tokens;
    std::string text;
    int num_final = 0;
    int cached = -1;
    std::string reason;
    status error;
  };

  event_callback callback() {
    return [this](request_id id, const generation_event& e) {
      std::lock_guard<std::mutex> lock(mu_);
      record& r = records_[id];
      r.events.push_back(e);
      if (auto* a = std::get_if<accepted_event>(&e)) r.cached = a->cached_prompt_tokens;
      if (auto* t = std::get_if<token_event>(&e)) {
        r.tokens.insert(r.tokens.end(), t->token_ids.begin(), t->token_ids.end());
        r.text += t->text;
      }
      if (auto* f = std::get_if<finished_event>(&e)) {
        ++r.num_final;
        r.reason = f->finish_reason;
      }
      if (auto* x = std::get_if<error_event>(&e)) {
        ++r.num_final;
        r.reason = "error";
        r.error = x->error;
      }
      cv_.notify_all();
    };
  }

  bool wait_final(request_id id, std::chrono::seconds timeout = 30s) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return records_[id].num_final > 0; });
  }
  bool wait_tokens(request_id id, std::size_t n, std::chrono::seconds timeout = 30s) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return records_[id].tokens.size() >= n; });
  }
  bool wait_accepted(request_id id, std::chrono::seconds timeout = 30s) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return records_[id].cached >= 0; });
  }
  record get(request_id id) {
    std::lock_guard<std::mutex> lock(mu_);
    return records_[id];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<request_id, record> records_;
};

struct counting_observer : observer {
  std::atomic<int> steps{0}, finished{0}, stats{0};
  void on_step(const step_report&) override { ++steps; }
  void on_request_finished(const request_report&) override { ++finished; }
  void on_stats(const engine_stats&) override { ++stats; }
};

struct fixture {
  explicit fixture(engine_config config = {}, int num_blocks = 256, int vocab = 200) {
    if (config.block_size == 16) config.block_size = 4;
    auto b = std::make_unique<fake_backend>(vocab, config.block_size, num_blocks);
    fake = b.get();
    obs = std::make_shared<counting_observer>();
    engine_parts parts;
    parts.model_backend = std::move(b);
    parts.model_tokenizer = testing::make_byte_tokenizer();
    parts.engine_observer = obs;
    auto e = make_engine(config, std::move(parts));
    EXPECT_TRUE(e.is_ok()) << (e ? "" : e.error().message());
    if (e) eng = std::move(e.value());
  }
  fake_backend* fake = nullptr;
  std::shared_ptr<counting_observer> obs;
  std::unique_ptr<engine> eng;
  collector events;
};

generate_request token_request(std::vector<std::int32_t> prompt, int max_tokens) {
  generate_request r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0.0f;
  r.sampling.ignore_eos = true;
  return r;
}

std::vector<std::int32_t> alone(const generate_request& r, engine_config config = {}) {
  fixture f(config);
  const request_id id = f.eng->submit(r, f.events.callback());
  EXPECT_TRUE(f.events.wait_final(id));
  return f.events.get(id).tokens;
}

TEST(engine, hundred_concurrent_requests_match_running_alone) {
  engine_config config;
  config.max_num_seqs = 32;
  config.max_num_batched_tokens = 64;
  fixture f(config);
  std::vector<generate_request> requests;
  std::vector<request_id> ids;
  for (int i = 0; i < 100; ++i) {
    requests.push_back(token_request(make_prompt(3 + i % 17, i), 4 + i % 9));
    ids.push_back(f.eng->submit(requests.back(), f.events.callback()));
  }
  for (request_id id : ids) ASSERT_TRUE(f.events.wait_final(id));
  // Reference: the same requests one at a time through the plain scheduler.
  for (int i = 0; i < 100; ++i) {
    const auto r = f.events.get(ids[i]);
    EXPECT_EQ(r.num_final, 1);
    EXPECT_EQ(r.reason, "length");
    scheduler_config sc;
    sc.block_size = 4;
    sc.num_blocks = 256;
    sc.max_model_len = 1 << 20;
    testing::plain_engine ref(sc);
    auto sub = testing::make_submission(1, std::get<std::vector<std::int32_t>>(requests[i].prompt),
                                        requests[i].max_tokens);
    ASSERT_TRUE(ref.add(sub).is_ok());
    ref.run();
    EXPECT_EQ(r.tokens, ref.outputs[1].tokens) << "request " << i;
  }
  // A few also alone through a fresh engine.
  for (int i : {0, 41, 99}) EXPECT_EQ(f.events.get(ids[i]).tokens, alone(requests[i], config));
  f.eng->shutdown(0ms);
  const engine_stats s = f.eng->stats();
  EXPECT_EQ(s.num_blocks_locked, 0);
  EXPECT_EQ(s.num_requests_accepted, 100u);
  EXPECT_GT(f.obs->steps.load(), 0);
  EXPECT_EQ(f.obs->finished.load(), 100);
}

TEST(engine, stats_show_the_whole_free_pool_before_the_first_request) {
  fixture f({}, 96);
  const engine_stats s = f.eng->stats();
  EXPECT_EQ(s.num_blocks_total, 96);
  EXPECT_EQ(s.num_blocks_free, 96);
  EXPECT_EQ(s.num_blocks_locked, 0);
  EXPECT_GE(f.obs->stats.load(), 1);
}

TEST(engine, second_request_reuses_the_system_prompt) {
  fixture f;
  auto system = make_prompt(22, 5);  // 22 shared tokens, block size 4: 20 cached
  auto p1 = system, p2 = system;
  p1.insert(p1.end(), {1, 2, 3});
  p2.insert(p2.end(), {9, 8});
  const request_id a = f.eng->submit(token_request(p1, 6), f.events.callback());
  ASSERT_TRUE(f.events.wait_final(a));
  const request_id b = f.eng->submit(token_request(p2, 6), f.events.callback());
  ASSERT_TRUE(f.events.wait_final(b));
  EXPECT_EQ(f.events.get(a).cached, 0);
  EXPECT_EQ(f.events.get(b).cached, 20);
  engine_config no_cache;
  no_cache.enable_prefix_caching = false;
  EXPECT_EQ(f.events.get(b).tokens, alone(token_request(p2, 6), no_cache));
  EXPECT_GE(f.eng->stats().prefix_cache_hits_tokens, 20u);
}

void early_reuse_case(bool early) {
  engine_config config;
  config.prefix_commit_early = early;
  fixture f(config);
  testing::gate gate, after_b;
  gate.close();
  after_b.close();
  std::atomic<bool> armed{true};
  std::atomic<request_id> b_id{0};
  std::atomic<bool> b_left{false};
  // Held once, at a step where a alone decodes its third token: its prompt blocks are full.
  // After that, each step takes 1 ms, so a's 200 tokens outlast b's admission however late b
  // reaches the scheduler on a loaded machine; and the first step after b's final event has
  // reached the test is held until the test has looked, so a cannot end before the test
  // thread wakes up. (b's final comes after its blocks are returned, a step or two after its
  // last token, so the backend cannot tell from the plans alone.)
  f.fake->on_execute = [&](const step_plan& p) {
    if (armed) {
      if (p.seqs.size() == 1 && p.seqs[0].start_position >= 19) {
        armed = false;
        gate.pass();
      }
      return;
    }
    if (!b_left && f.events.get(b_id).num_final > 0) {
      b_left = true;
      after_b.pass();
      return;
    }
    std::this_thread::sleep_for(1ms);
  };
  auto system = make_prompt(16, 3);
  auto p1 = system, p2 = system;
  p1.push_back(1);
  p2.push_back(2);
  const request_id a = f.eng->submit(token_request(p1, 200), f.events.callback());
  ASSERT_TRUE(gate.wait_blocked());
  const request_id b = f.eng->submit(token_request(p2, 3), f.events.callback());
  b_id = b;
  std::this_thread::sleep_for(20ms);  // b reaches the scheduler while a is held (not required)
  gate.open();
  ASSERT_TRUE(f.events.wait_final(b));
  EXPECT_EQ(f.events.get(a).num_final, 0) << "a must still be generating";
  EXPECT_EQ(f.events.get(b).cached, early ? 16 : 0);
  f.eng->cancel(a);
  after_b.open();
  ASSERT_TRUE(f.events.wait_final(a));
}

TEST(engine, early_commit_reuses_blocks_of_a_running_request) { early_reuse_case(true); }
TEST(engine, finish_commit_does_not_reuse_running_blocks) { early_reuse_case(false); }

TEST(engine, cancel_at_every_stage_returns_every_block) {
  engine_config config;
  config.max_num_seqs = 2;
  config.max_num_batched_tokens = 8;
  fixture f(config);
  testing::gate gate;
  gate.close();
  // The backend holds the step that carries the prefill's chunk at position 28 or later (a
  // few chunks in, 100 tokens to go), whenever the test thread gets to run: a loaded machine
  // cannot let the prefill finish before the hold. Other steps take 1 ms each, so the decode
  // (500 tokens) is still running then.
  std::atomic<bool> hold_prefill{false};
  f.fake->on_execute = [&](const step_plan& p) {
    if (hold_prefill) {
      for (const sequence_step& s : p.seqs) {
        if (s.tokens.size() > 1 && s.start_position >= 28) {
          hold_prefill = false;
          gate.pass();
          return;
        }
      }
    }
    std::this_thread::sleep_for(1ms);
  };
  const request_id decode =
      f.eng->submit(token_request(make_prompt(3, 2), 500), f.events.callback());
  ASSERT_TRUE(f.events.wait_tokens(decode, 1));
  // Decode takes 1 token of each step's budget of 8; the prefill's 120 tokens take the rest.
  hold_prefill = true;
  const request_id prefill =
      f.eng->submit(token_request(make_prompt(120, 1), 50), f.events.callback());
  ASSERT_TRUE(gate.wait_blocked());
  ASSERT_TRUE(f.events.wait_accepted(prefill));
  // Both slots are taken: this one waits in the queue.
  const request_id queued =
      f.eng->submit(token_request(make_prompt(3, 3), 50), f.events.callback());
  std::this_thread::sleep_for(20ms);
  f.eng->cancel(queued);
  ASSERT_TRUE(f.events.wait_final(queued));  // while the step is still held: it held no blocks
  EXPECT_EQ(f.events.get(queued).cached, -1) << "never admitted";
  EXPECT_TRUE(f.events.get(prefill).tokens.empty()) << "still in prefill (120 tokens, 8 per step)";
  EXPECT_FALSE(f.events.get(decode).tokens.empty());
  f.eng->cancel(prefill);
  f.eng->cancel(decode);
  gate.open();
  for (request_id id : {prefill, decode, queued}) {
    ASSERT_TRUE(f.events.wait_final(id));
    EXPECT_EQ(f.events.get(id).reason, "cancelled");
    EXPECT_EQ(f.events.get(id).num_final, 1);
  }
  EXPECT_EQ(f.eng->stats().num_blocks_locked, 0);
}

TEST(engine, failing_backend_errors_that_step_and_keeps_serving) {
  engine_config config;
  config.max_num_seqs = 1;
  config.enable_prefix_caching = false;  // each request's first step carries its whole prompt
  fixture f(config);
  std::atomic<int> calls{0};
  f.fake->fail_if = [&](const step_plan& p) {
    if (p.seqs[0].tokens.size() == 7 && calls++ == 0) {
      return status{status_code::kInternal, "injected failure"};
    }
    return status::ok();
  };
  std::atomic<bool> throw_once{true};
  f.fake->on_execute = [&](const step_plan& p) {
    if (p.seqs[0].tokens.size() == 9 && throw_once.exchange(false)) {
      throw std::runtime_error("injected exception");
    }
  };
  const request_id bad = f.eng->submit(token_request(make_prompt(7, 1), 5), f.events.callback());
  const request_id worse = f.eng->submit(token_request(make_prompt(9, 2), 5), f.events.callback());
  const request_id good = f.eng->submit(token_request(make_prompt(5, 3), 5), f.events.callback());
  for (request_id id : {bad, worse, good}) ASSERT_TRUE(f.events.wait_final(id));
  EXPECT_EQ(f.events.get(bad).reason, "error");
  EXPECT_EQ(f.events.get(bad).error.code(), status_code::kInternal);
  EXPECT_EQ(f.events.get(worse).reason, "error");
  EXPECT_NE(f.events.get(worse).error.message().find("injected exception"), std::string::npos);
  EXPECT_EQ(f.events.get(good).reason, "length");
  EXPECT_EQ(f.events.get(good).tokens.size(), 5u);
  EXPECT_EQ(f.eng->stats().num_blocks_locked, 0);
}

TEST(engine, rejects_bad_input_before_returning) {
  engine_config config;
  config.max_model_len = 64;
  fixture f(config);
  auto check = [&](generate_request r, status_code code) {
    const request_id id = f.eng->submit(std::move(r), f.events.callback());
    const auto rec = f.events.get(id);  // no waiting: it must be there already
    ASSERT_EQ(rec.num_final, 1);
    EXPECT_EQ(rec.error.code(), code) << rec.error.message();
  };
  check(token_request({}, 4), status_code::kInvalidArgument);
  check(token_request({1, 2, 999}, 4), status_code::kInvalidArgument);
  check(token_request(make_prompt(60, 1), 10), status_code::kInvalidArgument);
  generate_request text;
  text.prompt = std::string();
  check(text, status_code::kInvalidArgument);
  EXPECT_GE(f.eng->stats().num_requests_rejected, 4u);
}

TEST(engine, overload_is_rejected) {
  engine_config config;
  config.max_num_seqs = 1;
  config.max_waiting_requests = 2;
  fixture f(config);
  testing::gate gate;
  gate.close();
  f.fake->on_execute = [&](const step_plan&) { gate.pass(); };
  // At most one request is admitted while the first step is held, so the fourth finds two
  // requests not yet admitted and is rejected before submit returns.
  std::vector<request_id> ids;
  for (int i = 0; i < 4; ++i) {
    ids.push_back(f.eng->submit(token_request(make_prompt(4, i), 2), f.events.callback()));
  }
  EXPECT_EQ(f.events.get(ids[3]).error.code(), status_code::kOverloaded);
  EXPECT_NE(f.events.get(ids[3]).error.message().find("waiting queue is full"), std::string::npos);
  gate.open();
  for (request_id id : ids) {
    ASSERT_TRUE(f.events.wait_final(id));
    const auto r = f.events.get(id);
    if (r.reason != "error") {
      EXPECT_EQ(r.reason, "length");
    }
  }
  EXPECT_GE(f.eng->stats().num_requests_rejected, 1u);
}

TEST(engine, pull_stream_and_timeout) {
  fixture f;
  auto stream = f.eng->submit(token_request(make_prompt(5, 1), 3));
  std::vector<generation_event> events;
  while (auto e = stream->next(10s)) events.push_back(*e);
  ASSERT_GE(events.size(), 3u);
  EXPECT_TRUE(std::holds_alternative<accepted_event>(events.front()));
  ASSERT_TRUE(std::holds_alternative<finished_event>(events.back()));
  EXPECT_EQ(std::get<finished_event>(events.back()).usage.completion_tokens, 3);
  // One latency per token after the first, however the tokens were coalesced.
  EXPECT_EQ(std::get<finished_event>(events.back()).inter_token_latencies_seconds.size(), 2u);
  EXPECT_FALSE(stream->next(10ms).has_value());

  // The first step is held past the 50 ms deadline; after it, steps take 2 ms, so the 500
  // tokens would take a second: the timeout ends the request however late its timer message
  // is handled on a loaded machine.
  testing::gate gate;
  gate.close();
  std::atomic<bool> held{true};
  f.fake->on_execute = [&](const step_plan&) {
    if (held) {
      gate.pass();
    } else {
      std::this_thread::sleep_for(2ms);
    }
  };
  auto r = token_request(make_prompt(5, 2), 500);
  r.timeout = 50ms;
  const request_id id = f.eng->submit(r, f.events.callback());
  ASSERT_TRUE(gate.wait_blocked());
  std::this_thread::sleep_for(100ms);  // past the deadline (a lower bound, not a sync)
  held = false;
  gate.open();
  ASSERT_TRUE(f.events.wait_final(id));
  EXPECT_EQ(f.events.get(id).reason, "timeout");
  EXPECT_EQ(f.eng->stats().num_blocks_locked, 0);
}

TEST(engine, stop_string_truncates_text) {
  fixture f;
  for (int c = 'a'; c <= 'z'; ++c) f.fake->alphabet.push_back(c);
  auto r = token_request(make_prompt(5, 1), 30);
  const request_id first = f.eng->submit(r, f.events.callback());
  ASSERT_TRUE(f.events.wait_final(first));
  const std::string full = f.events.get(first).text;
  ASSERT_EQ(full.size(), 30u);
  const std::string stop = full.substr(10, 3);
  r.stop = {stop};
  const request_id second = f.eng->submit(r, f.events.callback());
  ASSERT_TRUE(f.events.wait_final(second));
  const auto rec = f.events.get(second);
  EXPECT_EQ(rec.reason, "stop");
  EXPECT_EQ(rec.text, full.substr(0, full.find(stop)));
  const auto& fin = std::get<finished_event>(rec.events.back());
  EXPECT_EQ(fin.stop_reason, stop);
  EXPECT_LE(fin.usage.completion_tokens, 13);
}

TEST(engine, no_kv_cache_gives_the_same_outputs) {
  engine_config config;
  config.no_kv_cache = true;
  fixture f(config);
  std::vector<request_id> ids;
  std::vector<generate_request> rs;
  for (int i = 0; i < 6; ++i) {
    rs.push_back(token_request(make_prompt(5 + i, i), 6));
    ids.push_back(f.eng->submit(rs.back(), f.events.callback()));
  }
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(f.events.wait_final(ids[i]));
    EXPECT_EQ(f.events.get(ids[i]).tokens, alone(rs[i]));
  }
  EXPECT_TRUE(f.fake->only_full_recompute.load());
  EXPECT_EQ(f.eng->stats().num_blocks_cached, 0);
  EXPECT_EQ(f.eng->stats().num_blocks_locked, 0);
}

class engine_commit_mode : public ::testing::TestWithParam<bool> {};

TEST_P(engine_commit_mode, small_pool_preempts_and_still_matches) {
  engine_config config;
  config.max_num_seqs = 8;
  config.prefix_commit_early = GetParam();  // finish mode commits a victim's blocks too
  fixture f(config, /*num_blocks=*/20);
  std::vector<request_id> ids;
  std::vector<generate_request> rs;
  for (int i = 0; i < 8; ++i) {
    rs.push_back(token_request(make_prompt(8, 10 * i), 24));
    ids.push_back(f.eng->submit(rs.back(), f.events.callback()));
  }
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(f.events.wait_final(ids[i]));
    EXPECT_EQ(f.events.get(ids[i]).tokens, alone(rs[i]));
  }
  const engine_stats s = f.eng->stats();
  EXPECT_GT(s.num_preemptions, 0u);
  EXPECT_GT(s.prefix_cache_hits_tokens, 0u);  // resumed sequences hit their own blocks
  EXPECT_EQ(s.num_blocks_locked, 0);
}

INSTANTIATE_TEST_SUITE_P(prefix_commit, engine_commit_mode, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "early" : "finish"; });

TEST(engine, cache_salt_separates_namespaces) {
  fixture f;
  const auto prompt = make_prompt(18, 9);  // block size 4: 16 tokens in whole blocks
  auto salted = [&](std::string salt) {
    auto r = token_request(prompt, 5);
    r.cache_salt = std::move(salt);
    const request_id id = f.eng->submit(r, f.events.callback());
    EXPECT_TRUE(f.events.wait_final(id));
    return f.events.get(id);
  };
  const auto a = salted("tenant-a");
  const auto b = salted("tenant-b");
  const auto a2 = salted("tenant-a");
  const auto plain = salted("");
  EXPECT_EQ(a.cached, 0);
  EXPECT_EQ(b.cached, 0) << "another salt shares nothing";
  EXPECT_EQ(a2.cached, 16) << "the same salt shares whole blocks";
  EXPECT_EQ(plain.cached, 0) << "no salt is a namespace of its own";
  EXPECT_EQ(b.tokens, a.tokens);
  EXPECT_EQ(a2.tokens, a.tokens);
  EXPECT_EQ(f.eng->stats().num_blocks_locked, 0);
}

/// Two system prompts are cached, then one long request needs all but four blocks of the
/// pool. Without retention the older system prompt is evicted (LRU); with retention on it,
/// the unretained newer one goes instead.
void retention_case(bool retain) {
  fixture f({}, /*num_blocks=*/32);
  const auto system = make_prompt(16, 1);  // 4 blocks
  const auto other = make_prompt(16, 50);  // 4 blocks
  auto run = [&](std::vector<std::int32_t> prompt, int max_tokens, bool with_retention) {
    auto r = token_request(std::move(prompt), max_tokens);
    if (with_retention) r.retention = retention_spec{16, 100, std::nullopt};
    const request_id id = f.eng->submit(r, f.events.callback());
    EXPECT_TRUE(f.events.wait_final(id));
    return f.events.get(id);
  };
  auto with_tail = [](std::vector<std::int32_t> p, std::int32_t t) {
    p.insert(p.end(), {t, t});
    return p;
  };
  run(with_tail(system, 3), 2, retain);
  run(with_tail(other, 4), 2, false);
  // 100 + 12 tokens: 28 blocks of the 32, so four cached blocks must go.
  const auto pressure = run(make_prompt(100, 120), 12, false);
  EXPECT_EQ(pressure.reason, "length");
  // (other first: being newer than the pressure's blocks, it would not be evicted by this.)
  const auto other_again = run(with_tail(other, 6), 2, false);
  const auto system_again = run(with_tail(system, 5), 2, false);
  EXPECT_EQ(system_again.cached, retain ? 16 : 0);
  EXPECT_EQ(other_again.cached, retain ? 0 : 16);
  EXPECT_EQ(f.eng->stats().num_blocks_locked, 0);
}

TEST(engine, retained_system_prompt_survives_pressure) { retention_case(true); }
TEST(engine, without_retention_the_older_prompt_is_evicted) { retention_case(false); }

// Late step overlap: with slow steps, the next step's cache request goes out near the end of
// the running step, so a request that arrives just after a step started joins the very next
// step. (Sent when the step starts, as before, it would wait for one step more.)
TEST(engine, request_arriving_during_a_slow_step_joins_the_next_step) {
  const std::vector<std::int32_t> prompt_b = make_prompt(6, 120);
  bool joined_next = false;
  for (int attempt = 0; attempt < 3 && !joined_next; ++attempt) {
    fixture f;
    std::mutex mu;
    std::condition_variable cv;
    int started = 0;        // executes begun
    int first_with_b = -1;  // the execute (1-based) that first carried B
    f.fake->on_execute = [&](const step_plan& plan) {
      {
        std::lock_guard<std::mutex> lock(mu);
        ++started;
        for (const auto& s : plan.seqs)
          if (first_with_b < 0 && s.start_position == 0 && !s.tokens.empty() &&
              s.tokens[0] == prompt_b[0])
            first_with_b = started;
        cv.notify_all();
      }
      std::this_thread::sleep_for(80ms);
    };
    const request_id a = f.eng->submit(token_request(make_prompt(8, 10), 12), f.events.callback());
    ASSERT_TRUE(f.events.wait_tokens(a, 3));
    int running = 0;
    {
      std::unique_lock<std::mutex> lock(mu);
      const int seen = started;
      ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return started > seen; }));
      running = started;  // this step has just begun and sleeps 80 ms
    }
    const request_id b = f.eng->submit(token_request(prompt_b, 2), f.events.callback());
    ASSERT_TRUE(f.events.wait_final(b));
    ASSERT_TRUE(f.events.wait_final(a));
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_GT(first_with_b, running);  // B cannot be in a step that began before it arrived
    joined_next = first_with_b == running + 1;
  }
  EXPECT_TRUE(joined_next) << "in 3 attempts, a request arriving at the start of an 80 ms step "
                              "never joined the next step";
}

TEST(engine, invalid_config_is_an_error) {
  engine_config config;
  config.scheduling_policy = "random";
  engine_parts parts;
  parts.model_backend = std::make_unique<fake_backend>(100, 16, 8);
  auto e = make_engine(config, std::move(parts));
  ASSERT_FALSE(e.is_ok());
  EXPECT_EQ(e.error().code(), status_code::kInvalidArgument);
}

}  // namespace
}  // namespace kvserve
