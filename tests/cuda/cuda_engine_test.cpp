// The engine (request hub, scheduler, cache-manager and worker actors) over the CUDA backend,
// where asynchronous steps are on by default (the worker queues step N+1 behind step N, decode
// tokens come from the previous step's samples on the device): a request run alone gets the
// tokens and the ending it gets with synchronous steps, and a concurrent batch ends every
// request once, by its own rules, with every block back.
#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "actors/engine.hpp"
#include "cuda/cuda_backend.hpp"
#include "tests/cuda/gpu_test_util.hpp"

namespace kvserve::cuda::test {
namespace {

using namespace std::chrono_literals;

model_config engine_model() { return tiny_model_config(64, 3, false, false); }

std::unique_ptr<engine> make_gpu_engine(async_scheduling_mode mode) {
  cuda_backend_config g;
  g.block_size = 4;
  g.num_kv_blocks = 256;
  g.max_num_seqs = 16;
  g.max_num_batched_tokens = 64;
  g.max_model_len = 512;
  g.log = false;
  auto b = make_cuda_backend_dummy(g, engine_model(), 11);
  EXPECT_TRUE(b.is_ok()) << b.error().message();
  if (!b) return nullptr;
  EXPECT_TRUE((*b)->queues_steps());
  engine_config ec;
  ec.block_size = g.block_size;
  ec.max_model_len = g.max_model_len;
  ec.max_num_seqs = g.max_num_seqs;
  ec.max_num_batched_tokens = g.max_num_batched_tokens;
  ec.async_scheduling = mode;
  engine_parts parts;
  parts.model_backend = std::move(*b);
  auto e = make_engine(ec, std::move(parts));
  EXPECT_TRUE(e.is_ok()) << e.error().message();
  return e ? std::move(*e) : nullptr;
}

const std::vector<std::int32_t> kStopTokens = {3,   17,  29,  41,  53,  67,  79,  97,  101, 113,
                                               127, 139, 151, 163, 173, 191, 211, 223, 239, 251};

std::vector<generate_request> requests() {
  std::vector<generate_request> rs;
  for (int i = 0; i < 10; ++i) {
    generate_request r;
    std::vector<std::int32_t> prompt;
    for (int j = 0; j < 5 + (13 * i) % 40; ++j) prompt.push_back((i * 37 + j * 11 + 1) % 384);
    r.prompt = prompt;
    r.max_tokens = 12 + (7 * i) % 30;
    r.sampling.temperature = i % 3 == 0 ? 0.0f : 0.8f;
    r.sampling.top_p = i % 3 == 2 ? 0.9f : 1.0f;
    r.sampling.seed = 500 + i;
    r.seed_set = true;
    if (i % 2 == 1) r.stop_token_ids = kStopTokens;
    if (i == 4) r.sampling.presence_penalty = 0.7f;
    if (i == 7) r.sampling.logprobs = 2;
    rs.push_back(std::move(r));
  }
  return rs;
}

struct outcome {
  std::vector<std::int32_t> tokens;
  std::string reason, stop_reason;
  int num_final = 0;
};

/// Submits `rs` at once and waits for every final event.
std::vector<outcome> run(engine& e, const std::vector<generate_request>& rs) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<outcome> out(rs.size());
  int num_done = 0;
  for (std::size_t i = 0; i < rs.size(); ++i) {
    e.submit(rs[i], [&, i](request_id, const generation_event& ev) {
      std::lock_guard<std::mutex> lock(mu);
      outcome& o = out[i];
      if (auto* t = std::get_if<token_event>(&ev))
        o.tokens.insert(o.tokens.end(), t->token_ids.begin(), t->token_ids.end());
      if (auto* f = std::get_if<finished_event>(&ev)) {
        o.reason = f->finish_reason;
        o.stop_reason = f->stop_reason;
      }
      if (auto* x = std::get_if<error_event>(&ev)) o.reason = "error: " + x->error.message();
      if (std::holds_alternative<finished_event>(ev) || std::holds_alternative<error_event>(ev)) {
        ++o.num_final;
        ++num_done;
        cv.notify_all();
      }
    });
  }
  std::unique_lock<std::mutex> lock(mu);
  EXPECT_TRUE(cv.wait_for(lock, 60s, [&] { return num_done >= static_cast<int>(rs.size()); }));
  return out;
}

TEST(CudaEngine, AsynchronousStepsGiveTheTokensOfSynchronousOnesAlone) {
  KVSERVE_SKIP_WITHOUT_GPU();
  const auto rs = requests();
  std::map<int, std::vector<outcome>> by_mode;
  for (auto mode : {async_scheduling_mode::kAuto, async_scheduling_mode::kOff}) {
    auto e = make_gpu_engine(mode);
    ASSERT_NE(e, nullptr);
    for (const auto& r : rs) by_mode[static_cast<int>(mode)].push_back(run(*e, {r})[0]);
    e->shutdown(0ms);
    EXPECT_EQ(e->stats().num_blocks_locked, 0);
  }
  const auto& got = by_mode[static_cast<int>(async_scheduling_mode::kAuto)];
  const auto& want = by_mode[static_cast<int>(async_scheduling_mode::kOff)];
  int stopped = 0;
  for (std::size_t i = 0; i < rs.size(); ++i) {
    EXPECT_EQ(got[i].num_final, 1) << i;
    EXPECT_EQ(got[i].tokens, want[i].tokens) << "request " << i;
    EXPECT_EQ(got[i].reason, want[i].reason) << i;
    EXPECT_EQ(got[i].stop_reason, want[i].stop_reason) << i;
    stopped += got[i].reason == "stop" ? 1 : 0;
  }
  EXPECT_GT(stopped, 0) << "stop tokens end some requests early";
}

TEST(CudaEngine, ConcurrentRequestsEndOnceByTheirOwnRules) {
  KVSERVE_SKIP_WITHOUT_GPU();
  auto rs = requests();
  const auto more = requests();
  for (std::size_t i = 0; i < more.size(); ++i) {  // 20 requests, 16 at a time
    rs.push_back(more[i]);
    rs.back().sampling.seed = 900 + static_cast<std::uint64_t>(i);
  }
  auto e = make_gpu_engine(async_scheduling_mode::kAuto);
  ASSERT_NE(e, nullptr);
  const auto got = run(*e, rs);
  for (std::size_t i = 0; i < rs.size(); ++i) {
    EXPECT_EQ(got[i].num_final, 1) << i;
    if (got[i].reason == "length") {
      EXPECT_EQ(static_cast<int>(got[i].tokens.size()), rs[i].max_tokens) << i;
    } else {
      ASSERT_EQ(got[i].reason, "stop") << i;
      ASSERT_FALSE(rs[i].stop_token_ids.empty()) << i;
      ASSERT_FALSE(got[i].tokens.empty()) << i;
      const std::int32_t last = got[i].tokens.back();
      EXPECT_NE(std::find(kStopTokens.begin(), kStopTokens.end(), last), kStopTokens.end()) << i;
      EXPECT_EQ(got[i].stop_reason, std::to_string(last)) << i;
      EXPECT_LE(static_cast<int>(got[i].tokens.size()), rs[i].max_tokens) << i;
    }
  }
  e->shutdown(0ms);
  EXPECT_EQ(e->stats().num_blocks_locked, 0);
}

}  // namespace
}  // namespace kvserve::cuda::test
