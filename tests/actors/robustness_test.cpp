// Failures inside the scheduler actor and the cache-manager actor (exceptions injected through
// their fault hooks): the affected requests end with an explicit error, every block comes
// back, and the actors keep serving later requests with unchanged outputs. The actors are
// spawned one by one through protocol.hpp, with test actors as sequence clients.

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "actors/protocol.hpp"
#include "test_support.hpp"

namespace kvserve {
namespace {

using namespace std::chrono_literals;
using testing::fake_backend;
using testing::make_prompt;

constexpr int kBlockSize = 4;
constexpr int kNumBlocks = 64;

/// Every client's events, filled by the client actors.
class outcomes {
 public:
  struct record {
    std::vector<std::int32_t> tokens;
    int num_final = 0;
    std::string reason;
    status error;
  };

  void tokens(request_id id, const std::vector<std::int32_t>& t) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& r = records_[id];
    r.tokens.insert(r.tokens.end(), t.begin(), t.end());
    cv_.notify_all();
  }
  void final(request_id id, std::string reason, status error) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& r = records_[id];
    ++r.num_final;
    r.reason = std::move(reason);
    r.error = std::move(error);
    cv_.notify_all();
  }
  bool wait_final(request_id id, std::chrono::seconds timeout = 20s) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return records_[id].num_final > 0; });
  }
  bool wait_tokens(request_id id, std::size_t n, std::chrono::seconds timeout = 20s) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return records_[id].tokens.size() >= n; });
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

sequence_client_actor::behavior_type client_fn(sequence_client_actor::pointer self, outcomes* out) {
  return {
      [](accepted_atom, request_id, std::int32_t, std::int32_t) {},
      [out](tokens_atom, const token_delta& d) { out->tokens(d.id, d.tokens); },
      [out, self](finished_atom, request_id id, const std::string& reason, const std::string&) {
        out->final(id, reason, status::ok());
        self->quit();
      },
      [out, self](failed_atom, request_id id, const error_info& e) {
        out->final(id, "error", e.to_status());
        self->quit();
      },
  };
}

scheduler_config base_config() {
  scheduler_config sc;
  sc.block_size = kBlockSize;
  sc.num_blocks = kNumBlocks;
  sc.vocab_size = 200;
  sc.max_model_len = 4096;
  sc.max_num_seqs = 8;
  sc.max_num_batched_tokens = 32;
  return sc;
}

/// The engine's three long-lived actors with fault hooks, in their own actor system.
struct actor_world {
  using hook = std::function<void(const char*)>;

  actor_world(hook scheduler_hook, hook cache_hook, int max_num_seqs = 8) : sys(cfg) {
    scheduler_config sc = base_config();
    sc.max_num_seqs = max_num_seqs;
    sc.fault_hook = std::move(scheduler_hook);
    kv_cache_config kc;
    kc.num_blocks = kNumBlocks;
    kc.block_size = kBlockSize;
    auto alloc = std::shared_ptr<step_allocator>(std::move(step_allocator::create(kc).value()));
    alloc->set_fault_hook(std::move(cache_hook));
    cache = spawn_cache_manager(sys, alloc);
    auto b = std::make_unique<fake_backend>(200, kBlockSize, kNumBlocks);
    fake = b.get();
    worker = spawn_worker(sys, std::make_shared<step_executor>(std::move(b)));
    scheduler = spawn_scheduler(sys, sc, cache, worker, nullptr, nullptr);
  }
  ~actor_world() {
    caf::anon_send_exit(scheduler, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(cache, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(worker, caf::exit_reason::user_shutdown);
  }

  void submit(request_id id, std::vector<std::int32_t> prompt, int max_tokens) {
    auto client = sys.spawn(client_fn, &results);
    caf::anon_send(scheduler, submit_atom::value,
                   testing::make_submission(id, std::move(prompt), max_tokens), client);
  }

  /// Returns once the scheduler has handled every message the test sent it before: its
  /// mailbox is first in, first out, so a stats request queued after the submissions is
  /// answered after they were handled. False if no answer came.
  bool sync_scheduler() {
    caf::scoped_actor self{sys};
    bool answered = false;
    self->request(scheduler, 30s, stats_atom::value)
        .receive([&](engine_stats&) { answered = true; }, [](caf::error&) {});
    return answered;
  }

  cache_stats_snapshot cache_stats() {
    caf::scoped_actor self{sys};
    cache_stats_snapshot out;
    self->request(cache, 10s, stats_atom::value)
        .receive([&](cache_stats_snapshot& s) { out = s; }, [](caf::error&) {});
    return out;
  }

  caf::actor_system_config cfg;
  caf::actor_system sys;
  cache_manager_actor cache;
  worker_actor worker;
  scheduler_actor scheduler;
  fake_backend* fake = nullptr;
  outcomes results;
};

std::vector<std::int32_t> reference(std::vector<std::int32_t> prompt, int max_tokens) {
  testing::plain_engine e(base_config());
  EXPECT_TRUE(e.add(testing::make_submission(1, std::move(prompt), max_tokens)).is_ok());
  e.run();
  return e.outputs[1].tokens;
}

/// Throws at the `nth` call of point `where` (counting from 1), once.
actor_world::hook throw_at(std::string where, int nth, std::shared_ptr<std::atomic<int>> count) {
  return [where = std::move(where), nth, count](const char* point) {
    if (where == point && ++*count == nth) throw std::runtime_error("injected at " + where);
  };
}

/// The engine keeps serving after the failure: new requests complete as if run alone, and
/// no block stays locked.
void expect_keeps_serving(actor_world& w) {
  for (request_id id : {101, 102}) {
    w.submit(id, make_prompt(6 + static_cast<int>(id % 2), static_cast<int>(id)), 10);
  }
  for (request_id id : {101, 102}) {
    ASSERT_TRUE(w.results.wait_final(id));
    const auto r = w.results.get(id);
    EXPECT_EQ(r.reason, "length") << r.error.message();
    EXPECT_EQ(r.tokens,
              reference(make_prompt(6 + static_cast<int>(id % 2), static_cast<int>(id)), 10));
  }
  EXPECT_EQ(w.cache_stats().num_blocks_locked, 0);
}

class scheduler_fault : public ::testing::TestWithParam<const char*> {};

TEST_P(scheduler_fault, every_live_request_fails_and_the_engine_keeps_serving) {
  const std::string where = GetParam();
  auto count = std::make_shared<std::atomic<int>>(0);
  // "submit": the third submission throws, while the first two are live.
  actor_world w(throw_at(where, where == "submit" ? 3 : 4, count), nullptr);
  // The first step is held in the backend while the three requests arrive, so all of them
  // are live when the failure happens (for "submit", with that step still in flight).
  testing::gate gate;
  gate.close();
  std::atomic<bool> hold{true};
  w.fake->on_execute = [&](const step_plan&) {
    if (hold) gate.pass();
  };
  for (request_id id : {1, 2, 3}) w.submit(id, make_prompt(9, static_cast<int>(id)), 40);
  // ("submit" may fail before the first step reaches the backend.)
  if (where != "submit") {
    ASSERT_TRUE(gate.wait_blocked());
  }
  EXPECT_TRUE(w.sync_scheduler());  // the submissions reached the scheduler
  hold = false;
  gate.open();
  for (request_id id : {1, 2, 3}) {
    ASSERT_TRUE(w.results.wait_final(id)) << id;
    const auto r = w.results.get(id);
    EXPECT_EQ(r.num_final, 1);
    EXPECT_EQ(r.reason, "error") << id;
    EXPECT_EQ(r.error.code(), status_code::kInternal);
    EXPECT_NE(r.error.message().find("injected at " + where), std::string::npos)
        << r.error.message();
  }
  EXPECT_EQ(w.cache_stats().num_blocks_locked, 0);
  expect_keeps_serving(w);
}

INSTANTIATE_TEST_SUITE_P(points, scheduler_fault,
                         ::testing::Values("submit", "plan", "allocated", "executed"));

class cache_fault : public ::testing::TestWithParam<const char*> {};

TEST_P(cache_fault, requests_holding_blocks_fail_and_the_engine_keeps_serving) {
  const std::string where = GetParam();
  auto count = std::make_shared<std::atomic<int>>(0);
  std::atomic<bool> armed{false};
  actor_world w(
      nullptr,
      [&armed, where, count](const char* point) {
        if (armed && where == point && ++*count == 1) {
          throw std::runtime_error("injected at " + where);
        }
      },
      /*max_num_seqs=*/2);
  // Two requests decode; the third waits for a slot (max_num_seqs 2) and holds no blocks.
  // The backend holds the first step in which both decode with two tokens out already, set
  // before the submissions: fast steps would let both end (200 tokens in a few ms) before a
  // test thread woken late on a loaded machine could hold them. Until the second one shows
  // up, steps take 1 ms, so the first cannot end before it.
  testing::gate gate;
  std::atomic<bool> hold{true};
  std::atomic<bool> second_seen{false};
  gate.close();
  w.fake->on_execute = [&](const step_plan& p) {
    if (!hold) return;
    bool first = false, second = false;
    for (const sequence_step& s : p.seqs) {
      if (s.id == 2) second_seen = true;
      first = first || (s.id == 1 && s.start_position >= 9 + 1);
      second = second || (s.id == 2 && s.start_position >= 7 + 1);
    }
    if (first && second) {
      gate.pass();
    } else if (!second_seen) {
      std::this_thread::sleep_for(1ms);
    }
  };
  w.submit(1, make_prompt(9, 1), 200);
  w.submit(2, make_prompt(7, 2), 200);
  // (Their tokens may still wait in the scheduler's coalescing buffer while the step is held.)
  ASSERT_TRUE(gate.wait_blocked());
  w.submit(3, make_prompt(5, 3), 12);
  EXPECT_TRUE(w.sync_scheduler());  // the submission reached the scheduler
  armed = true;
  hold = false;
  gate.open();
  for (request_id id : {1, 2}) {
    ASSERT_TRUE(w.results.wait_final(id)) << id;
    const auto r = w.results.get(id);
    EXPECT_EQ(r.num_final, 1);
    EXPECT_EQ(r.reason, "error");
    EXPECT_EQ(r.error.code(), status_code::kInternal);
    EXPECT_NE(r.error.message().find("cache manager exception: injected at " + where),
              std::string::npos)
        << r.error.message();
  }
  // The waiting request was not affected: it is served afterwards, unchanged.
  ASSERT_TRUE(w.results.wait_final(3));
  EXPECT_EQ(w.results.get(3).reason, "length");
  EXPECT_EQ(w.results.get(3).tokens, reference(make_prompt(5, 3), 12));
  EXPECT_EQ(w.cache_stats().num_blocks_locked, 0);
  expect_keeps_serving(w);
}

INSTANTIATE_TEST_SUITE_P(points, cache_fault, ::testing::Values("commits", "grows", "admits"));

}  // namespace
}  // namespace kvserve
