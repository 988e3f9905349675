// The CPU backend on small random models: against an independent double-precision forward
// pass, batch invariance and paging (bit-identical logits), plan validation and results.

#include "model/cpu_backend.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <ostream>
#include <random>
#include <vector>

#include "model/dummy_weights.hpp"
#include "tests/model/cpu_backend_test_models.hpp"

namespace kvserve {
namespace {

using namespace cpu_test;

// ---- an independent, straightforward double-precision forward pass ------------------------

std::vector<std::vector<double>> naive_logits(const model_config& c, const model_weights& w,
                                              const std::vector<std::int32_t>& tokens) {
  const int T = static_cast<int>(tokens.size());
  const int H = c.hidden_size, hd = c.head_dim, I = c.intermediate_size;
  using mat = std::vector<std::vector<double>>;
  auto linear = [](const std::vector<double>& x, const tensor_f32& wt, const tensor_f32& b,
                   int out) {
    const int in = static_cast<int>(x.size());
    std::vector<double> y(out);
    for (int r = 0; r < out; ++r) {
      double s = b.empty() ? 0.0 : b.data[r];
      for (int i = 0; i < in; ++i) s += static_cast<double>(wt.data[r * in + i]) * x[i];
      y[r] = s;
    }
    return y;
  };
  auto norm = [&](const std::vector<double>& x, const tensor_f32& wt) {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double r = 1.0 / std::sqrt(ss / x.size() + c.rms_norm_eps);
    std::vector<double> y(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] * r * wt.data[i];
    return y;
  };
  // Inverse frequencies with the scaling rules written out again.
  std::vector<double> inv(hd / 2);
  for (int i = 0; i < hd / 2; ++i) {
    double f = 1.0 / std::pow(static_cast<double>(c.rope_theta), 2.0 * i / hd);
    const auto& s = c.rope_scaling;
    if (s.type == rope_scaling_config::kind::kLinear) f /= s.factor;
    if (s.type == rope_scaling_config::kind::kLlama3) {
      const double wavelen = 2 * M_PI / f;
      const double lo = s.original_max_position_embeddings / s.low_freq_factor;
      const double hi = s.original_max_position_embeddings / s.high_freq_factor;
      if (wavelen > lo) {
        f /= s.factor;
      } else if (wavelen >= hi) {
        const double smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) /
                              (s.high_freq_factor - s.low_freq_factor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
    }
    inv[i] = f;
  }
  auto rope = [&](std::vector<double>& v, int offset, int pos) {
    for (int i = 0; i < hd / 2; ++i) {
      const double a = pos * inv[i], x1 = v[offset + i], x2 = v[offset + i + hd / 2];
      v[offset + i] = x1 * std::cos(a) - x2 * std::sin(a);
      v[offset + i + hd / 2] = x2 * std::cos(a) + x1 * std::sin(a);
    }
  };
  mat x(T, std::vector<double>(H));
  for (int t = 0; t < T; ++t) {
    for (int i = 0; i < H; ++i) x[t][i] = w.token_embedding.data[tokens[t] * H + i];
  }
  const tensor_f32 none;
  for (const layer_weights& l : w.layers) {
    mat q(T), k(T), v(T);
    for (int t = 0; t < T; ++t) {
      auto xn = norm(x[t], l.attn_norm);
      q[t] = linear(xn, l.wq, l.bq, c.q_size());
      k[t] = linear(xn, l.wk, l.bk, c.kv_size());
      v[t] = linear(xn, l.wv, l.bv, c.kv_size());
      for (int h = 0; h < c.num_heads; ++h) rope(q[t], h * hd, t);
      for (int h = 0; h < c.num_kv_heads; ++h) rope(k[t], h * hd, t);
    }
    for (int t = 0; t < T; ++t) {
      std::vector<double> attn(c.q_size(), 0.0);
      for (int h = 0; h < c.num_heads; ++h) {
        const int kvh = h / (c.num_heads / c.num_kv_heads);
        std::vector<double> s(t + 1);
        double m = -1e300;
        for (int j = 0; j <= t; ++j) {
          double d = 0;
          for (int i = 0; i < hd; ++i) d += q[t][h * hd + i] * k[j][kvh * hd + i];
          s[j] = d / std::sqrt(static_cast<double>(hd));
          m = std::max(m, s[j]);
        }
        double z = 0;
        for (double& e : s) z += (e = std::exp(e - m));
        for (int j = 0; j <= t; ++j) {
          for (int i = 0; i < hd; ++i) attn[h * hd + i] += s[j] / z * v[j][kvh * hd + i];
        }
      }
      auto o = linear(attn, l.wo, none, H);
      for (int i = 0; i < H; ++i) x[t][i] += o[i];
      auto xn = norm(x[t], l.ffn_norm);
      auto g = linear(xn, l.w_gate, none, I);
      auto u = linear(xn, l.w_up, none, I);
      for (int i = 0; i < I; ++i) g[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
      auto d = linear(g, l.w_down, none, H);
      for (int i = 0; i < H; ++i) x[t][i] += d[i];
    }
  }
  mat logits(T);
  for (int t = 0; t < T; ++t)
    logits[t] = linear(norm(x[t], w.final_norm), w.output_matrix(), none, c.vocab_size);
  return logits;
}

// ---- tests --------------------------------------------------------------------------------

// A config with a readable name in test listings.
struct named_config {
  model_config config;
};
void PrintTo(const named_config& c, std::ostream* os) { *os << c.config.name; }

class CpuBackendModels : public ::testing::TestWithParam<named_config> {};

TEST_P(CpuBackendModels, MatchesADoublePrecisionForwardPass) {
  const model_config c = GetParam().config;
  auto b = make_backend(c, 4, 64);
  ASSERT_TRUE(b);
  const auto tokens = random_tokens(40, c.vocab_size, 17);
  const auto want = naive_logits(c, test_weights(c, 1), tokens);
  // A prefill chunk of 25 then single-token decode steps, through a scattered block table.
  std::vector<std::int32_t> table = {9, 3, 60, 0, 17, 42, 5, 33, 21, 11};
  std::vector<std::vector<float>> got =
      run_alone(*b, {tokens.begin(), tokens.begin() + 25}, 25, table);
  for (int pos = 25; pos < 40; ++pos) {
    step_plan plan;
    plan.seqs.push_back(chunk_step(1, tokens, pos, 1, table));
    auto r = b->execute(plan);
    ASSERT_TRUE(r.is_ok()) << r.error().message();
    got.push_back(r->seqs[0].logits);
  }
  ASSERT_EQ(got.size(), want.size());
  double max_logit = 0, max_err = 0;
  for (std::size_t p = 0; p < want.size(); ++p) {
    for (int v = 0; v < c.vocab_size; ++v) {
      max_logit = std::max(max_logit, std::abs(want[p][v]));
      max_err = std::max(max_err, std::abs(want[p][v] - got[p][v]));
    }
  }
  EXPECT_GT(max_logit, 0.5);  // the test model is not trivially flat
  EXPECT_LE(max_err, 1e-4 * max_logit) << "max |logit| " << max_logit;
}

INSTANTIATE_TEST_SUITE_P(Configs, CpuBackendModels,
                         ::testing::Values(named_config{gqa_config()}, named_config{mqa_config()},
                                           named_config{odd_config()}),
                         [](const auto& info) {
                           std::string n = info.param.config.name;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(CpuBackend, BatchInvariantAcrossChunkingBlockSizesAndBatches) {
  const model_config c = mqa_config();
  const auto tokens = random_tokens(110, c.vocab_size, 5);
  auto b16 = make_backend(c, 16, 80);
  ASSERT_TRUE(b16);
  const auto want = run_alone(*b16, tokens, 110, iota_table(8, 3));
  for (int chunk : {1, 7, 64}) {
    expect_bit_identical(want, run_alone(*b16, tokens, chunk, iota_table(8, 40)),
                         "chunk " + std::to_string(chunk));
  }
  // Every block size, with the sequence's blocks shuffled over the pool.
  for (int bs : {2, 4, 8, 16, 32, 64}) {
    const int needed = (110 + bs - 1) / bs;
    const int pool = needed * 3;
    auto b = make_backend(c, bs, pool);
    ASSERT_TRUE(b);
    std::vector<std::int32_t> table = iota_table(pool);
    std::shuffle(table.begin(), table.end(), std::mt19937(bs));
    table.resize(needed);
    expect_bit_identical(want, run_alone(*b, tokens, 7, table), "block size " + std::to_string(bs));
  }
  // One thread instead of two.
  auto b1 = make_backend(c, 16, 80, 1);
  expect_bit_identical(want, run_alone(*b1, tokens, 7, iota_table(8)), "one thread");
}

TEST(CpuBackend, BatchInvariantInABatchOfEight) {
  const model_config c = gqa_config();
  const int bs = 8;
  auto b = make_backend(c, bs, 8 * 16);
  ASSERT_TRUE(b);
  const auto tokens = random_tokens(110, c.vocab_size, 5);
  const auto want = run_alone(*b, tokens, 110, iota_table(14));
  // The target sequence in chunks of 7 next to seven others (prefills and decodes of their
  // own), at a different index in the plan each step.
  std::mt19937 rng(3);
  struct other {
    std::vector<std::int32_t> tokens;
    std::vector<std::int32_t> table;
    int done = 0;
  };
  std::vector<other> others(7);
  for (int i = 0; i < 7; ++i) {
    others[i].tokens = random_tokens(120, c.vocab_size, 100 + i);
    others[i].table = iota_table(16, 16 * (i + 1));
  }
  const std::vector<std::int32_t> target_table = iota_table(14);
  std::vector<std::vector<float>> got;
  for (int start = 0, step = 0; start < 110; start += 7, ++step) {
    step_plan plan;
    for (int i = 0; i < 7; ++i) {
      other& o = others[i];
      const int len = std::min<int>(1 + rng() % 9, 120 - o.done);
      if (len <= 0) continue;
      sequence_step s = chunk_step(10 + i, o.tokens, o.done, len, o.table);
      s.return_logits = (rng() % 2) ? logits_mode::kLast : logits_mode::kNone;
      s.sample = rng() % 2;
      plan.seqs.push_back(s);
      o.done += len;
    }
    const int len = std::min(7, 110 - start);
    sequence_step target = chunk_step(1, tokens, start, len, target_table);
    plan.seqs.insert(plan.seqs.begin() + step % (plan.seqs.size() + 1), target);
    auto r = b->execute(plan);
    ASSERT_TRUE(r.is_ok()) << r.error().message();
    for (const auto& s : r->seqs) {
      if (s.id != 1) continue;
      for (int i = 0; i < len; ++i) {
        got.emplace_back(s.logits.begin() + i * c.vocab_size,
                         s.logits.begin() + (i + 1) * c.vocab_size);
      }
    }
  }
  expect_bit_identical(want, got, "batch of 8");
}

TEST(CpuBackend, SampledTokensDependOnlyOnSeedAndPosition) {
  const model_config c = gqa_config();
  auto b = make_backend(c, 4, 64);
  const auto tokens = random_tokens(30, c.vocab_size, 8);
  auto plan_for = [&](int other_seqs) {
    step_plan plan;
    for (int i = 0; i < other_seqs; ++i) {
      sequence_step o = chunk_step(100 + i, random_tokens(5 + i, c.vocab_size, i), 0, 5 + i,
                                   iota_table(4, 20 + 4 * i));
      o.return_logits = logits_mode::kNone;
      plan.seqs.push_back(o);
    }
    sequence_step s = chunk_step(1, tokens, 0, 30, iota_table(8));
    s.return_logits = logits_mode::kNone;
    s.sample = true;
    s.sampling.temperature = 1.5f;
    s.sampling.top_k = 40;
    s.sampling.seed = 77;
    s.sampling.logprobs = 3;
    plan.seqs.push_back(s);
    return plan;
  };
  auto alone = b->execute(plan_for(0));
  auto batched = b->execute(plan_for(5));
  ASSERT_TRUE(alone.is_ok() && batched.is_ok());
  const auto& a = alone->seqs.back();
  const auto& d = batched->seqs.back();
  ASSERT_TRUE(a.sampled_token && d.sampled_token);
  EXPECT_EQ(*a.sampled_token, *d.sampled_token);
  ASSERT_TRUE(a.sampled_logprobs && d.sampled_logprobs);
  EXPECT_EQ(a.sampled_logprobs->chosen.token, *a.sampled_token);
  EXPECT_EQ(a.sampled_logprobs->top.size(), 3u);
  EXPECT_EQ(a.sampled_logprobs->chosen.logprob, d.sampled_logprobs->chosen.logprob);
  EXPECT_TRUE(a.logits.empty());
}

TEST(CpuBackend, ReturnsLogitsAndPromptLogprobsAsAsked) {
  const model_config c = gqa_config();
  auto b = make_backend(c, 4, 64);
  const auto tokens = random_tokens(12, c.vocab_size, 4);
  step_plan plan;
  sequence_step s = chunk_step(7, tokens, 0, 10, iota_table(3));
  s.prompt_logprobs = 2;
  s.next_prompt_token = tokens[10];
  s.return_logits = logits_mode::kLast;
  s.sample = true;
  s.sampling.temperature = 0.0f;
  plan.seqs.push_back(s);
  plan.step_index = 42;
  auto r = b->execute(plan);
  ASSERT_TRUE(r.is_ok()) << r.error().message();
  EXPECT_EQ(r->step_index, 42u);
  const auto& out = r->seqs[0];
  EXPECT_EQ(out.id, 7u);
  ASSERT_EQ(out.logits.size(), static_cast<std::size_t>(c.vocab_size));
  const int argmax =
      static_cast<int>(std::max_element(out.logits.begin(), out.logits.end()) - out.logits.begin());
  EXPECT_EQ(out.sampled_token, argmax);
  ASSERT_EQ(out.prompt_logprobs.size(), 10u);
  // The last position's target is next_prompt_token; its logprob is the log-softmax of the
  // returned last row.
  const auto& last = out.prompt_logprobs.back();
  EXPECT_EQ(last.chosen.token, tokens[10]);
  double z = 0;
  const float m = out.logits[argmax];
  for (float l : out.logits) z += std::exp(static_cast<double>(l) - m);
  EXPECT_NEAR(last.chosen.logprob, out.logits[tokens[10]] - m - std::log(z), 1e-5);
  ASSERT_EQ(last.top.size(), 2u);
  EXPECT_EQ(last.top[0].token, argmax);
  for (int j = 0; j < 9; ++j) EXPECT_EQ(out.prompt_logprobs[j].chosen.token, tokens[j + 1]);
}

TEST(CpuBackend, RejectsBadConfigsAndWeights) {
  const model_config c = gqa_config();
  cpu_backend_config bc;
  bc.num_kv_blocks = 8;
  for (int bs : {0, 3, 12, 128}) {
    bc.block_size = bs;
    auto b = cpu_backend::create(bc, c, test_weights(c, 1));
    ASSERT_FALSE(b.is_ok());
    EXPECT_EQ(b.error().code(), status_code::kInvalidArgument);
    EXPECT_NE(b.error().message().find("block size"), std::string::npos);
  }
  bc.block_size = 16;
  bc.num_kv_blocks = 0;
  EXPECT_FALSE(cpu_backend::create(bc, c, test_weights(c, 1)).is_ok());
  bc.num_kv_blocks = 8;
  model_weights w = test_weights(c, 1);
  w.layers[1].w_up.data.pop_back();
  auto b = cpu_backend::create(bc, c, std::move(w));
  ASSERT_FALSE(b.is_ok());
  EXPECT_EQ(b.error().code(), status_code::kCorruptData);
  model_config bad = c;
  bad.num_kv_heads = 3;
  EXPECT_FALSE(cpu_backend::create(bc, bad, test_weights(bad, 1)).is_ok());
}

TEST(CpuBackend, KvPoolSizing) {
  const model_config c = gqa_config();
  EXPECT_EQ(cpu_kv_bytes_per_token(c), 2u * 2 * 32 * sizeof(float));
  EXPECT_EQ(cpu_kv_blocks_for_memory(c, 16, 16 * 512 * 10 + 5), 10);
  EXPECT_EQ(cpu_kv_blocks_for_memory(c, 16, 100), 0);
  auto b = make_backend(c, 32, cpu_kv_blocks_for_memory(c, 32, 1 << 20));
  ASSERT_TRUE(b);
  EXPECT_EQ(b->num_kv_blocks(), 64);
  EXPECT_EQ(b->block_size(), 32);
  EXPECT_EQ(b->kv_bytes_per_token(), cpu_kv_bytes_per_token(c));
  EXPECT_EQ(b->name(), "cpu");
}

TEST(CpuBackend, BadPlansAreErrorsNotCrashes) {
  const model_config c = gqa_config();
  auto b = make_backend(c, 4, 16);
  ASSERT_TRUE(b);
  const auto tokens = random_tokens(8, c.vocab_size, 1);
  auto good = [&] {
    step_plan plan;
    plan.seqs.push_back(chunk_step(1, tokens, 0, 8, {0, 1}));
    return plan;
  };
  std::vector<std::pair<std::string, step_plan>> bad;
  auto add = [&](std::string what, auto edit) {
    step_plan p = good();
    edit(p.seqs[0]);
    bad.emplace_back(std::move(what), std::move(p));
  };
  add("block id past the pool", [](sequence_step& s) { s.block_table[1] = 16; });
  add("negative block id", [](sequence_step& s) { s.block_table[0] = -1; });
  add("block table too short", [](sequence_step& s) { s.block_table.pop_back(); });
  add("position past the context", [&](sequence_step& s) {
    s.start_position = c.max_position_embeddings - 4;
    s.block_table = iota_table(c.max_position_embeddings / 4 + 1, 0);
    for (auto& id : s.block_table) id %= 16;
  });
  add("token past the vocabulary", [&](sequence_step& s) { s.tokens[3] = c.vocab_size; });
  add("negative token", [](sequence_step& s) { s.tokens[0] = -5; });
  add("no tokens", [](sequence_step& s) { s.tokens.clear(); });
  add("negative start", [](sequence_step& s) { s.start_position = -1; });
  add("placeholder token", [](sequence_step& s) { s.input_from_last_sample = true; });
  add("bad top_p", [](sequence_step& s) {
    s.sample = true;
    s.sampling.top_p = 0.0f;
  });
  add("suppressed token past the vocabulary", [&](sequence_step& s) {
    s.sample = true;
    s.suppressed_tokens = {c.vocab_size + 3};
  });
  add("next prompt token past the vocabulary", [&](sequence_step& s) {
    s.prompt_logprobs = 0;
    s.next_prompt_token = c.vocab_size;
  });
  for (const auto& [what, plan] : bad) {
    auto r = b->execute(plan);
    ASSERT_FALSE(r.is_ok()) << what;
    EXPECT_EQ(r.error().code(), status_code::kInvalidArgument) << what;
    EXPECT_FALSE(r.error().message().empty()) << what;
  }
  // Still usable, and an empty plan is fine.
  EXPECT_TRUE(b->execute(good()).is_ok());
  auto empty = b->execute(step_plan{});
  ASSERT_TRUE(empty.is_ok());
  EXPECT_TRUE(empty->seqs.empty());
}

}  // namespace
}  // namespace kvserve
