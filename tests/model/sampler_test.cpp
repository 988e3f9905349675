#include "model/sampler.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <vector>

namespace kvserve {
namespace {

sampling_params greedy() {
  sampling_params p;
  p.temperature = 0.0f;
  return p;
}

std::vector<float> log_probs(const std::vector<double>& probs) {
  std::vector<float> out;
  for (double p : probs) out.push_back(static_cast<float>(std::log(p)));
  return out;
}

// Counts of each token over `draws` positions.
std::vector<int> histogram(const std::vector<float>& logits, const sampling_params& p, int draws) {
  sampler s;
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < draws; ++i) {
    sampling_context ctx;
    ctx.position = i;
    ++counts[s.sample(logits, p, ctx).token];
  }
  return counts;
}

// Pearson chi-square of `counts` against `expected` probabilities (bins with p > 0).
double chi_square(const std::vector<int>& counts, const std::vector<double>& expected) {
  double total = 0;
  for (int c : counts) total += c;
  double chi = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (expected[i] <= 0) continue;
    const double e = expected[i] * total;
    chi += (counts[i] - e) * (counts[i] - e) / e;
  }
  return chi;
}

TEST(Sampler, GreedyTakesArgmaxLowestIdOnTies) {
  sampler s;
  std::vector<float> logits = {0.1f, 3.0f, -2.0f, 3.0f};
  EXPECT_EQ(s.sample(logits, greedy(), {}).token, 1);
  logits[3] = 3.5f;
  EXPECT_EQ(s.sample(logits, greedy(), {}).token, 3);
}

TEST(Sampler, SuppressedTokensAreNeverChosen) {
  sampler s;
  std::vector<float> logits = {0.1f, 3.0f, -2.0f, 2.0f};
  std::vector<std::int32_t> suppressed = {1};
  sampling_context ctx;
  ctx.suppressed_tokens = suppressed;
  EXPECT_EQ(s.sample(logits, greedy(), ctx).token, 3);
  sampling_params p;  // temperature 1
  for (int i = 0; i < 500; ++i) {
    ctx.position = i;
    EXPECT_NE(s.sample(logits, p, ctx).token, 1);
  }
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegativeOnce) {
  std::vector<float> logits = {2.0f, -2.0f, 4.0f, 1.0f};
  sampling_params p;
  p.repetition_penalty = 2.0f;
  std::vector<std::int32_t> prompt = {0, 0, 1};
  std::vector<std::int32_t> output = {1, 2};
  sampling_context ctx;
  ctx.prompt_tokens = prompt;
  ctx.output_tokens = output;
  apply_penalties(logits, p, ctx);
  EXPECT_FLOAT_EQ(logits[0], 1.0f);   // in the prompt twice: divided once
  EXPECT_FLOAT_EQ(logits[1], -4.0f);  // negative: multiplied
  EXPECT_FLOAT_EQ(logits[2], 2.0f);   // in the output
  EXPECT_FLOAT_EQ(logits[3], 1.0f);   // unseen
}

TEST(Sampler, PresenceAndFrequencyPenaltiesCountOutputTokensOnly) {
  std::vector<float> logits = {1.0f, 1.0f, 1.0f, 1.0f};
  sampling_params p;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  std::vector<std::int32_t> prompt = {3, 3, 3};
  std::vector<std::int32_t> output = {0, 0, 0, 1};
  sampling_context ctx;
  ctx.prompt_tokens = prompt;
  ctx.output_tokens = output;
  apply_penalties(logits, p, ctx);
  EXPECT_FLOAT_EQ(logits[0], 1.0f - 0.75f - 0.5f);
  EXPECT_FLOAT_EQ(logits[1], 1.0f - 0.25f - 0.5f);
  EXPECT_FLOAT_EQ(logits[2], 1.0f);
  EXPECT_FLOAT_EQ(logits[3], 1.0f);  // prompt tokens are not penalised
}

TEST(Sampler, PenaltiesChangeTheGreedyChoice) {
  sampler s;
  std::vector<float> logits = {2.0f, 1.9f};
  sampling_params p = greedy();
  p.frequency_penalty = 1.0f;
  std::vector<std::int32_t> output = {0};
  sampling_context ctx;
  ctx.output_tokens = output;
  EXPECT_EQ(s.sample(logits, p, ctx).token, 1);
}

TEST(Sampler, SameSeedAndPositionGiveTheSameToken) {
  std::vector<float> logits(50);
  for (int i = 0; i < 50; ++i) logits[i] = 0.1f * static_cast<float>(i % 7);
  sampling_params p;
  p.seed = 1234;
  sampler a, b;
  int differs_from_other_seed = 0;
  for (int pos = 0; pos < 200; ++pos) {
    sampling_context ctx;
    ctx.position = pos;
    const int t = a.sample(logits, p, ctx).token;
    EXPECT_EQ(t, b.sample(logits, p, ctx).token);
    EXPECT_EQ(t, a.sample(logits, p, ctx).token);  // no hidden state between calls
    sampling_params q = p;
    q.seed = 99;
    differs_from_other_seed += a.sample(logits, q, ctx).token != t;
  }
  EXPECT_GT(differs_from_other_seed, 100);
}

TEST(Sampler, TemperatureOneFollowsTheSoftmax) {
  const std::vector<double> probs = {0.5, 0.3, 0.15, 0.05};
  sampling_params p;
  p.seed = 7;
  auto counts = histogram(log_probs(probs), p, 20000);
  EXPECT_LT(chi_square(counts, probs), 21.1);  // df = 3, p = 1e-4
}

TEST(Sampler, TemperatureSharpensAndFlattens) {
  const std::vector<double> probs = {0.5, 0.3, 0.15, 0.05};
  for (double temperature : {0.5, 2.0}) {
    std::vector<double> expected;
    double total = 0;
    for (double q : probs) total += std::pow(q, 1.0 / temperature);
    for (double q : probs) expected.push_back(std::pow(q, 1.0 / temperature) / total);
    sampling_params p;
    p.temperature = static_cast<float>(temperature);
    p.seed = 11;
    auto counts = histogram(log_probs(probs), p, 20000);
    EXPECT_LT(chi_square(counts, expected), 21.1) << "temperature " << temperature;
  }
}

TEST(Sampler, TopKKeepsTheKMostLikely) {
  const std::vector<double> probs = {0.1, 0.4, 0.3, 0.2};
  sampling_params p;
  p.top_k = 2;
  p.seed = 3;
  auto counts = histogram(log_probs(probs), p, 20000);
  EXPECT_EQ(counts[0], 0);
  EXPECT_EQ(counts[3], 0);
  EXPECT_LT(chi_square(counts, {0, 4.0 / 7, 3.0 / 7, 0}), 15.1);  // df = 1, p = 1e-4
}

TEST(Sampler, TopPKeepsTheSmallestSetReachingP) {
  const std::vector<double> probs = {0.05, 0.5, 0.15, 0.3};
  sampling_params p;
  p.top_p = 0.75f;  // 0.5 + 0.3 reaches it
  p.seed = 5;
  auto counts = histogram(log_probs(probs), p, 20000);
  EXPECT_EQ(counts[0], 0);
  EXPECT_EQ(counts[2], 0);
  EXPECT_LT(chi_square(counts, {0, 0.5 / 0.8, 0, 0.3 / 0.8}), 15.1);
  p.top_p = 0.85f;  // needs the third token too
  counts = histogram(log_probs(probs), p, 20000);
  EXPECT_EQ(counts[0], 0);
  EXPECT_GT(counts[2], 0);
}

TEST(Sampler, MinPDropsTokensBelowAShareOfTheMax) {
  const std::vector<double> probs = {0.5, 0.3, 0.15, 0.05};
  sampling_params p;
  p.min_p = 0.2f;  // threshold 0.1
  p.seed = 9;
  auto counts = histogram(log_probs(probs), p, 20000);
  EXPECT_EQ(counts[3], 0);
  EXPECT_LT(chi_square(counts, {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0}),
            18.4);  // df = 2, p = 1e-4
}

TEST(Sampler, LogprobsAreOfTheRawLogits) {
  sampler s;
  std::vector<float> logits = {1.0f, 2.0f, 0.5f, 2.0f};
  sampling_params p = greedy();
  p.logprobs = 2;
  p.repetition_penalty = 3.0f;  // changes the choice, not the reported logprobs
  std::vector<std::int32_t> output = {1};
  sampling_context ctx;
  ctx.output_tokens = output;
  sampled_token t = s.sample(logits, p, ctx);
  EXPECT_EQ(t.token, 3);
  ASSERT_TRUE(t.logprobs.has_value());
  double norm = 0;
  for (float l : logits) norm += std::exp(l);
  EXPECT_NEAR(t.logprobs->chosen.logprob, 2.0 - std::log(norm), 1e-6);
  EXPECT_EQ(t.logprobs->chosen.token, 3);
  ASSERT_EQ(t.logprobs->top.size(), 2u);
  EXPECT_EQ(t.logprobs->top[0].token, 1);  // tie at 2.0: lowest id first
  EXPECT_EQ(t.logprobs->top[1].token, 3);
  EXPECT_NEAR(t.logprobs->top[0].logprob, 2.0 - std::log(norm), 1e-6);
}

TEST(Sampler, ComputeLogprobsSumsToOne) {
  std::vector<float> logits = {3.0f, -1.0f, 0.25f, 7.5f, 2.0f};
  position_logprobs lp = compute_logprobs(logits, 2, 5);
  ASSERT_EQ(lp.top.size(), 5u);
  double total = 0;
  for (const auto& t : lp.top) total += std::exp(static_cast<double>(t.logprob));
  EXPECT_NEAR(total, 1.0, 1e-6);
  EXPECT_EQ(lp.top[0].token, 3);
  EXPECT_EQ(lp.chosen.token, 2);
}

TEST(Sampler, RejectsInvalidParameters) {
  sampling_params p;
  EXPECT_TRUE(validate_sampling_params(p).is_ok());
  p.temperature = -1.0f;
  EXPECT_EQ(validate_sampling_params(p).code(), status_code::kInvalidArgument);
  p = {};
  p.top_p = 0.0f;
  EXPECT_FALSE(validate_sampling_params(p).is_ok());
  p = {};
  p.min_p = 1.5f;
  EXPECT_FALSE(validate_sampling_params(p).is_ok());
  p = {};
  p.repetition_penalty = 0.0f;
  EXPECT_FALSE(validate_sampling_params(p).is_ok());
  p = {};
  p.temperature = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(validate_sampling_params(p).is_ok());
}

}  // namespace
}  // namespace kvserve
