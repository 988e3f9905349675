// The on-device sampler against the CPU sampler (model/sampler.hpp): same tokens for the same
// logits, parameters, seed and position.
#include <algorithm>

#include "cuda/sampling.hpp"
#include "model/sampler.hpp"
#include "tests/cuda/gpu_test_util.hpp"

namespace kvserve::cuda::test {
namespace {

struct sampling_case {
  const char* name;
  sampling_params params;
};

std::vector<sampling_case> cases() {
  std::vector<sampling_case> v;
  auto add = [&](const char* name, auto edit) {
    sampling_params p;
    p.temperature = 0.8f;
    edit(p);
    v.push_back({name, p});
  };
  add("greedy", [](sampling_params& p) { p.temperature = 0.0f; });
  add("temperature", [](sampling_params&) {});
  add("hot", [](sampling_params& p) { p.temperature = 2.5f; });
  add("top_k_1", [](sampling_params& p) { p.top_k = 1; });
  add("top_k_40", [](sampling_params& p) { p.top_k = 40; });
  add("top_p_0.9", [](sampling_params& p) { p.top_p = 0.9f; });
  add("top_p_0.3", [](sampling_params& p) { p.top_p = 0.3f; });
  add("min_p", [](sampling_params& p) { p.min_p = 0.05f; });
  add("all_filters", [](sampling_params& p) {
    p.top_k = 100;
    p.top_p = 0.8f;
    p.min_p = 0.01f;
  });
  add("penalties", [](sampling_params& p) {
    p.repetition_penalty = 1.3f;
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.4f;
  });
  add("greedy_penalties", [](sampling_params& p) {
    p.temperature = 0.0f;
    p.repetition_penalty = 2.0f;
  });
  return v;
}

TEST(CudaSampling, MatchesCpuSampler) {
  KVSERVE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(11);
  for (int vocab : {1000, 49152}) {
    const auto all = cases();
    constexpr int kDraws = 12;  // positions / seeds per case
    const int rows = static_cast<int>(all.size()) * kDraws;
    std::vector<float> logits(static_cast<std::size_t>(rows) * vocab);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    for (auto& x : logits) x = nd(rng);
    // A few exact ties and a row with a dominant token.
    logits[5] = logits[6] = 20.0f;
    std::vector<std::int32_t> prompt = {1, 2, 3, 3, 999}, output = {3, 3, 7, 1, 4000};
    std::vector<std::int32_t> suppressed = {0, 17};
    std::vector<std::int32_t> lists;
    std::vector<device_sampling_row> drows;
    std::vector<std::int32_t> want;
    sampler cpu;
    for (int c = 0; c < static_cast<int>(all.size()); ++c) {
      for (int d = 0; d < kDraws; ++d) {
        const int row = c * kDraws + d;
        sampling_params p = all[c].params;
        p.seed = 1234 + d * 7919;
        device_sampling_row r;
        r.seed = p.seed;
        r.position = 10 + d;
        r.logits_row = row;
        r.temperature = p.temperature;
        r.top_k = p.top_k;
        r.top_p = p.top_p;
        r.min_p = p.min_p;
        r.repetition_penalty = p.repetition_penalty;
        r.presence_penalty = p.presence_penalty;
        r.frequency_penalty = p.frequency_penalty;
        r.prompt_begin = static_cast<int>(lists.size());
        r.prompt_count = static_cast<int>(prompt.size());
        lists.insert(lists.end(), prompt.begin(), prompt.end());
        r.output_begin = static_cast<int>(lists.size());
        r.output_count = static_cast<int>(output.size());
        lists.insert(lists.end(), output.begin(), output.end());
        r.suppressed_begin = static_cast<int>(lists.size());
        r.suppressed_count = d % 2 ? static_cast<int>(suppressed.size()) : 0;
        lists.insert(lists.end(), suppressed.begin(), suppressed.end());
        drows.push_back(r);
        sampling_context ctx;
        ctx.prompt_tokens = prompt;
        ctx.output_tokens = output;
        if (d % 2) ctx.suppressed_tokens = suppressed;
        ctx.position = r.position;
        want.push_back(cpu.sample({logits.data() + static_cast<std::size_t>(row) * vocab,
                                   static_cast<std::size_t>(vocab)},
                                  p, ctx)
                           .token);
      }
    }
    auto d_logits = upload(logits);
    auto d_rows = upload(drows);
    auto d_lists = upload(lists);
    device_buffer<float> d_work;
    device_buffer<unsigned int> d_counts;
    device_buffer<std::int32_t> d_sampled;
    ASSERT_TRUE(d_work.allocate(logits.size()).is_ok());
    ASSERT_TRUE(d_counts.allocate(logits.size()).is_ok());
    ASSERT_TRUE(d_sampled.allocate(rows).is_ok());
    KVSERVE_ASSERT_CUDA(cudaMemset(d_counts.get(), 0, d_counts.bytes()));
    KVSERVE_ASSERT_CUDA(launch_sample(d_logits.get(), d_work.get(), d_counts.get(), d_rows.get(),
                                      rows, d_lists.get(), vocab, d_sampled.get(), nullptr));
    auto got = download(d_sampled, rows);
    for (int i = 0; i < rows; ++i)
      EXPECT_EQ(got[i], want[i]) << "vocab " << vocab << " case " << all[i / kDraws].name
                                 << " draw " << i % kDraws;
    // The counts scratch is clean again for the next step.
    auto counts = download(d_counts, logits.size());
    EXPECT_TRUE(std::all_of(counts.begin(), counts.end(), [](unsigned c) { return c == 0; }));
  }
}

}  // namespace
}  // namespace kvserve::cuda::test
