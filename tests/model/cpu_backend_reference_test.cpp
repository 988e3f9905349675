// The CPU backend on the real default model (SmolLM2-135M-Instruct, Q4_1 GGUF) against
// reference outputs of Hugging Face transformers (fp32) in tests/data/reference_logits.*,
// made by scripts/make_reference_logits.py: the greedy continuation of 64 tokens on each chat
// prompt, logits within 1e-3 x max |logit| at every position, and batch invariance.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "model/cpu_backend.hpp"
#include "model/model_loader.hpp"
#include "test_model_path.hpp"

namespace kvserve {
namespace {

constexpr double kRelativeTolerance = 1e-3;

struct reference_data {
  nlohmann::json doc;
  std::vector<float> full;  // [rows, vocab]
};

const reference_data& reference() {
  static const reference_data data = [] {
    reference_data d;
    std::ifstream f(std::string(KVSERVE_TEST_DATA_DIR) + "/reference_logits.json");
    if (f) d.doc = nlohmann::json::parse(f);
    std::ifstream b(std::string(KVSERVE_TEST_DATA_DIR) + "/reference_logits_full.bin",
                    std::ios::binary | std::ios::ate);
    if (b) {
      d.full.resize(static_cast<std::size_t>(b.tellg()) / sizeof(float));
      b.seekg(0);
      b.read(reinterpret_cast<char*>(d.full.data()), d.full.size() * sizeof(float));
    }
    return d;
  }();
  return data;
}

class CpuBackendReference : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = testing_support::default_model_path();
    auto m = load_model(path, load_format::kGguf);
    if (!m) {
      load_error_ = new std::string(m.error().message());
      return;
    }
    config_ = new model_config(m->config);
    cpu_backend_config bc;
    bc.block_size = 16;
    bc.num_kv_blocks = 64;
    auto b = cpu_backend::create(bc, m->config, std::move(m->weights));
    if (!b) {
      load_error_ = new std::string(b.error().message());
      return;
    }
    backend_ = std::move(b).value().release();
  }
  static void TearDownTestSuite() {
    delete backend_;
    delete config_;
    delete load_error_;
    backend_ = nullptr;
    config_ = nullptr;
    load_error_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(load_error_ == nullptr) << *load_error_;
    ASSERT_TRUE(backend_ != nullptr) << "default model missing: run scripts/fetch_model";
    ASSERT_FALSE(reference().doc.is_null()) << "tests/data/reference_logits.json missing";
  }

  static cpu_backend* backend_;
  static model_config* config_;
  static std::string* load_error_;
};

cpu_backend* CpuBackendReference::backend_ = nullptr;
model_config* CpuBackendReference::config_ = nullptr;
std::string* CpuBackendReference::load_error_ = nullptr;

// Checks one logits row against a recorded position; returns max |diff| / max |logit|.
double check_position(const std::vector<float>& row, const nlohmann::json& rec,
                      const std::vector<int>& probes, const std::string& where) {
  const double max_abs = rec["max_abs"].get<double>();
  const double tol = kRelativeTolerance * max_abs;
  double worst = 0;
  auto compare = [&](int id, double want) {
    const double diff = std::abs(row[id] - want);
    worst = std::max(worst, diff);
    EXPECT_LE(diff, tol) << where << ": token " << id << " logit " << row[id] << " vs " << want;
  };
  for (const auto& t : rec["top"]) compare(t[0].get<int>(), t[1].get<double>());
  for (std::size_t i = 0; i < probes.size(); ++i) compare(probes[i], rec["probe"][i].get<double>());
  double got_max = 0;
  for (float v : row) got_max = std::max(got_max, static_cast<double>(std::abs(v)));
  EXPECT_LE(std::abs(got_max - max_abs), tol) << where << ": max |logit|";
  return worst / max_abs;
}

int argmax(const std::vector<float>& row) {
  return static_cast<int>(std::max_element(row.begin(), row.end()) - row.begin());
}

std::vector<std::int32_t> table(int n) {
  std::vector<std::int32_t> t(n);
  std::iota(t.begin(), t.end(), 0);
  return t;
}

// Checks a row of full logits, if the reference recorded one for (prompt, position).
void check_full_row(const std::vector<float>& row, std::size_t prompt, std::size_t pos,
                    const nlohmann::json& rec, const std::string& where) {
  const int vocab = static_cast<int>(row.size());
  for (const auto& full : reference().doc["full_rows"]) {
    if (full["prompt"].get<std::size_t>() != prompt || full["position"].get<std::size_t>() != pos) {
      continue;
    }
    const std::size_t index = full["row"].get<std::size_t>();
    ASSERT_LE((index + 1) * vocab, reference().full.size());
    const float* want = reference().full.data() + index * vocab;
    const double tol = kRelativeTolerance * rec["max_abs"].get<double>();
    int bad = 0;
    for (int v = 0; v < vocab; ++v) bad += std::abs(row[v] - want[v]) > tol;
    EXPECT_EQ(bad, 0) << where << ": full logits row";
  }
}

// A divergence from the reference's greedy token is accepted only at a near-tie: each logit
// may be off by the tolerance, so the top-2 difference by twice that.
bool near_tie(const nlohmann::json& rec) {
  return rec["margin"].get<double>() <= 2 * kRelativeTolerance * rec["max_abs"].get<double>();
}

// Every prompt + its reference continuation in one step (teacher forcing; chunking does not
// change a bit, see BatchInvariantOnTheRealModel and cpu_backend_test.cpp): the logits at
// every position within tolerance and the greedy choice equal to the reference's at each of
// the 64 steps.
TEST_F(CpuBackendReference, MatchesReferenceLogitsAndGreedyChoices) {
  const auto& doc = reference().doc;
  ASSERT_EQ(doc["vocab_size"].get<int>(), config_->vocab_size);
  const std::vector<int> probes = doc["probe_ids"].get<std::vector<int>>();
  const int vocab = config_->vocab_size;
  ASSERT_GE(doc["prompts"].size(), 5u);
  double worst = 0;
  int divergences = 0;
  for (std::size_t pi = 0; pi < doc["prompts"].size(); ++pi) {
    const auto& p = doc["prompts"][pi];
    const auto prompt = p["prompt_ids"].get<std::vector<std::int32_t>>();
    const auto continuation = p["continuation_ids"].get<std::vector<std::int32_t>>();
    const auto& positions = p["positions"];
    ASSERT_EQ(continuation.size(), 64u);
    ASSERT_EQ(positions.size(), prompt.size() - 1 + continuation.size());
    const std::string name = "prompt " + std::to_string(pi);

    step_plan plan;
    sequence_step s;
    s.id = pi;
    s.tokens = prompt;
    s.tokens.insert(s.tokens.end(), continuation.begin(), continuation.end() - 1);
    s.block_table = table(64);
    s.return_logits = logits_mode::kAll;
    plan.seqs.push_back(s);
    auto r = backend_->execute(plan);
    ASSERT_TRUE(r) << r.error().message();
    const auto& all = r->seqs[0].logits;
    ASSERT_EQ(all.size(), positions.size() * vocab);
    for (std::size_t pos = 0; pos < positions.size(); ++pos) {
      const std::string where = name + " position " + std::to_string(pos);
      const auto& rec = positions[pos];
      std::vector<float> row(all.begin() + pos * vocab, all.begin() + (pos + 1) * vocab);
      worst = std::max(worst, check_position(row, rec, probes, where));
      check_full_row(row, pi, pos, rec, where);
      if (pos + 1 < prompt.size()) continue;
      const std::size_t step = pos + 1 - prompt.size();
      const std::int32_t want = continuation[step];
      ASSERT_EQ(rec["next"].get<std::int32_t>(), want);
      const int got = argmax(row);
      if (got != want) {
        ++divergences;
        EXPECT_TRUE(near_tie(rec))
            << where << ": greedy token " << got << " but the reference chose " << want
            << " with margin " << rec["margin"];
      }
    }
  }
  RecordProperty("worst_relative_logit_error", std::to_string(worst));
  RecordProperty("accepted_divergences", divergences);
  std::printf("worst |dlogit| / max|logit| = %.2e, accepted near-tie divergences: %d\n", worst,
              divergences);
}

// Free-running greedy generation (prefill, then 64 decode steps that feed back the backend's
// own sampled token) reproduces the reference continuation.
TEST_F(CpuBackendReference, GeneratesTheReferenceContinuation) {
  const auto& p = reference().doc["prompts"][0];
  const auto prompt = p["prompt_ids"].get<std::vector<std::int32_t>>();
  const auto continuation = p["continuation_ids"].get<std::vector<std::int32_t>>();
  const auto& positions = p["positions"];
  step_plan plan;
  sequence_step s;
  s.id = 9;
  s.tokens = prompt;
  s.block_table = table(64);
  s.sample = true;
  s.sampling.temperature = 0.0f;
  plan.seqs.push_back(s);
  std::vector<std::int32_t> generated;
  for (std::size_t step = 0; step < continuation.size(); ++step) {
    auto r = backend_->execute(plan);
    ASSERT_TRUE(r) << r.error().message();
    ASSERT_TRUE(r->seqs[0].sampled_token.has_value());
    const std::int32_t got = *r->seqs[0].sampled_token;
    generated.push_back(got);
    if (got != continuation[step]) {
      // Past an accepted near-tie the two continuations legitimately differ.
      EXPECT_TRUE(near_tie(positions[prompt.size() - 1 + step]))
          << "step " << step << ": generated " << got << ", reference " << continuation[step];
      break;
    }
    auto& q = plan.seqs[0];
    q.start_position += static_cast<int>(q.tokens.size());
    q.tokens = {got};
  }
  EXPECT_EQ(generated.size(), continuation.size()) << "stopped at a near-tie";
}

// The same prompt alone in one chunk at block size 16, and in chunks of 7 next to another
// sequence through shuffled blocks of a block-size-4 backend: bit-identical logits.
TEST_F(CpuBackendReference, BatchInvariantOnTheRealModel) {
  const auto& p = reference().doc["prompts"][1];
  auto tokens = p["prompt_ids"].get<std::vector<std::int32_t>>();
  const auto continuation = p["continuation_ids"].get<std::vector<std::int32_t>>();
  tokens.insert(tokens.end(), continuation.begin(), continuation.begin() + 4);
  const int n = static_cast<int>(tokens.size());
  const int vocab = config_->vocab_size;

  step_plan plan;
  sequence_step s;
  s.id = 1;
  s.tokens = tokens;
  s.block_table = table(64);
  s.return_logits = logits_mode::kAll;
  plan.seqs.push_back(s);
  auto want = backend_->execute(plan);
  ASSERT_TRUE(want) << want.error().message();

  auto m = load_model(testing_support::default_model_path(), load_format::kGguf);
  ASSERT_TRUE(m) << m.error().message();
  cpu_backend_config bc;
  bc.block_size = 4;
  bc.num_kv_blocks = 96;
  auto b = cpu_backend::create(bc, m->config, std::move(m->weights));
  ASSERT_TRUE(b) << b.error().message();
  std::vector<std::int32_t> blocks = table(96);
  std::shuffle(blocks.begin(), blocks.end(), std::mt19937(4));
  const std::vector<std::int32_t> mine(blocks.begin(), blocks.begin() + 48);
  const std::vector<std::int32_t> other_blocks(blocks.begin() + 48, blocks.end());
  const auto other = reference().doc["prompts"][2]["prompt_ids"].get<std::vector<std::int32_t>>();
  std::vector<float> got;
  for (int start = 0, other_done = 0; start < n; start += 7) {
    step_plan step;
    const int len = std::min(7, n - start);
    sequence_step t;
    t.id = 1;
    t.tokens.assign(tokens.begin() + start, tokens.begin() + start + len);
    t.start_position = start;
    t.block_table = mine;
    t.return_logits = logits_mode::kAll;
    const int olen = std::min<int>(5, static_cast<int>(other.size()) - other_done);
    if (olen > 0) {
      sequence_step o;
      o.id = 2;
      o.tokens.assign(other.begin() + other_done, other.begin() + other_done + olen);
      o.start_position = other_done;
      o.block_table = other_blocks;
      o.sample = true;
      step.seqs.push_back(o);
      other_done += olen;
    }
    step.seqs.push_back(t);
    auto r = (*b)->execute(step);
    ASSERT_TRUE(r) << r.error().message();
    const auto& l = r->seqs.back().logits;
    ASSERT_EQ(l.size(), static_cast<std::size_t>(len) * vocab);
    got.insert(got.end(), l.begin(), l.end());
  }
  const auto& expected = want->seqs[0].logits;
  ASSERT_EQ(got.size(), expected.size());
  for (int pos = 0; pos < n; ++pos) {
    ASSERT_EQ(0, std::memcmp(got.data() + pos * vocab, expected.data() + pos * vocab,
                             vocab * sizeof(float)))
        << "logits differ at position " << pos;
  }
}

}  // namespace
}  // namespace kvserve
