// Element-wise kernels, GEMMs and RoPE + KV append against CPU references on random inputs.
#include <cmath>
#include <numeric>

#include "cuda/gemm.hpp"
#include "cuda/kernels.hpp"
#include "model/rope.hpp"
#include "tests/cuda/gpu_test_util.hpp"

namespace kvserve::cuda::test {
namespace {

TEST(CudaLayerKernels, AddRmsNormMatchesReference) {
  KVSERVE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(1);
  const int rows = 5, hidden = 576;
  auto res = random_floats(rows * hidden, rng, -2, 2);
  auto delta = random_floats(rows * hidden, rng);
  auto weight = random_floats(hidden, rng, 0.5f, 1.5f);
  std::vector<std::int32_t> gather = {3, 0, 4};
  auto d_res = upload(res);
  auto d_delta = upload(delta);
  auto d_w = upload(weight);
  auto d_rows = upload(gather);
  device_buffer<bf16> d_out;
  ASSERT_TRUE(d_out.allocate(rows * hidden).is_ok());
  // Gathered rows, residual untouched.
  KVSERVE_ASSERT_CUDA(launch_add_rms_norm(d_res.get(), d_delta.get(), d_w.get(), d_rows.get(), 3,
                                          hidden, 1e-5f, false, d_out.get(), nullptr));
  auto out = download(d_out, 3 * hidden);
  for (int i = 0; i < 3; ++i) {
    const int r = gather[i];
    double ss = 0;
    for (int j = 0; j < hidden; ++j) {
      const double x = res[r * hidden + j] + delta[r * hidden + j];
      ss += x * x;
    }
    const double inv = 1.0 / std::sqrt(ss / hidden + 1e-5);
    for (int j = 0; j < hidden; ++j) {
      const double want = (res[r * hidden + j] + delta[r * hidden + j]) * inv * weight[j];
      EXPECT_NEAR(__bfloat162float(out[i * hidden + j]), want, 1e-2 * std::abs(want) + 1e-3);
    }
  }
  EXPECT_EQ(download(d_res, rows * hidden), res);
  // All rows, residual updated in place.
  KVSERVE_ASSERT_CUDA(launch_add_rms_norm(d_res.get(), d_delta.get(), d_w.get(), nullptr, rows,
                                          hidden, 1e-5f, true, d_out.get(), nullptr));
  auto new_res = download(d_res, rows * hidden);
  for (int i = 0; i < rows * hidden; ++i) EXPECT_FLOAT_EQ(new_res[i], res[i] + delta[i]);
}

TEST(CudaLayerKernels, SwigluAndEmbedding) {
  KVSERVE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(2);
  const int tokens = 3, inter = 1000;
  auto gu = random_floats(tokens * 2 * inter, rng, -4, 4);
  auto d_gu = upload(gu);
  device_buffer<bf16> d_out;
  ASSERT_TRUE(d_out.allocate(tokens * inter).is_ok());
  KVSERVE_ASSERT_CUDA(launch_swiglu(d_gu.get(), tokens, inter, d_out.get(), nullptr));
  auto out = download(d_out, tokens * inter);
  for (int t = 0; t < tokens; ++t)
    for (int i = 0; i < inter; ++i) {
      const double g = gu[t * 2 * inter + i], u = gu[t * 2 * inter + inter + i];
      const double want = g / (1 + std::exp(-g)) * u;
      EXPECT_NEAR(__bfloat162float(out[t * inter + i]), want, 1e-2 * std::abs(want) + 1e-4);
    }
  const int vocab = 50, hidden = 72;
  auto table = random_floats(vocab * hidden, rng);
  auto d_table = upload(to_bf16(table));
  std::vector<std::int32_t> ids = {49, 0, 7, 7};
  auto d_ids = upload(ids);
  device_buffer<float> d_emb;
  ASSERT_TRUE(d_emb.allocate(ids.size() * hidden).is_ok());
  KVSERVE_ASSERT_CUDA(
      launch_embedding_gather(d_table.get(), d_ids.get(), 4, hidden, d_emb.get(), nullptr));
  auto emb = download(d_emb, ids.size() * hidden);
  for (int t = 0; t < 4; ++t)
    for (int j = 0; j < hidden; ++j)
      EXPECT_EQ(emb[t * hidden + j], round_bf16(table[ids[t] * hidden + j]));
}

class CudaGemm : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(CudaGemm, BothPathsMatchReference) {
  KVSERVE_SKIP_WITHOUT_GPU();
  const auto [m, path] = GetParam();
  std::mt19937 rng(3 + m);
  for (auto [n, k] : {std::pair{200, 576}, std::pair{1536, 64}, std::pair{72, 1544}}) {
    auto x = random_floats(m * k, rng);
    auto w = random_floats(n * k, rng);
    for (auto& v : x) v = round_bf16(v);
    for (auto& v : w) v = round_bf16(v);
    auto d_x = upload(to_bf16(x));
    auto d_w = upload(to_bf16(w));
    device_buffer<float> d_y;
    ASSERT_TRUE(d_y.allocate(m * n).is_ok());
    gemm_runner g;
    ASSERT_TRUE(g.init().is_ok());
    g.force_path(path);
    ASSERT_TRUE(g.run(d_x.get(), d_w.get(), m, n, k, d_y.get(), nullptr).is_ok());
    auto y = download(d_y, m * n);
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < n; ++c) {
        double want = 0;
        for (int i = 0; i < k; ++i) want += static_cast<double>(x[r * k + i]) * w[c * k + i];
        ASSERT_NEAR(y[r * n + c], want, 1e-4 * std::sqrt(k)) << "m=" << m << " n=" << n;
      }
  }
}

INSTANTIATE_TEST_SUITE_P(RowsAndPaths, CudaGemm,
                         ::testing::Combine(::testing::Values(1, 2, 3, 5, 8, 13, 64),
                                            ::testing::Values(1, 2)));

// The batch-1 GEMV shapes a benchmark can pick, with k that leaves threads idle (64), with a
// partial last stride (1544, 3080) and several full ones (4096).
TEST(CudaGemv, BatchOneVariantsMatchReference) {
  KVSERVE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(11);
  for (auto [n, k] : {std::pair{200, 576}, std::pair{1537, 64}, std::pair{73, 1544},
                      std::pair{130, 4096}, std::pair{9, 3080}}) {
    auto x = random_floats(k, rng);
    auto w = random_floats(n * k, rng);
    for (auto& v : x) v = round_bf16(v);
    for (auto& v : w) v = round_bf16(v);
    auto d_x = upload(to_bf16(x));
    auto d_w = upload(to_bf16(w));
    device_buffer<float> d_y;
    ASSERT_TRUE(d_y.allocate(n).is_ok());
    for (int variant : {0, 1, 2, 3, 4}) {
      set_gemv_variant(variant);
      KVSERVE_ASSERT_CUDA(cudaMemset(d_y.get(), 0xff, n * sizeof(float)));  // NaN: unwritten
      KVSERVE_ASSERT_CUDA(launch_gemv(d_x.get(), d_w.get(), 1, n, k, d_y.get(), nullptr));
      auto y = download(d_y, n);
      for (int c = 0; c < n; ++c) {
        double want = 0;
        for (int i = 0; i < k; ++i) want += static_cast<double>(x[i]) * w[c * k + i];
        ASSERT_NEAR(y[c], want, 1e-4 * std::sqrt(k))
            << "variant " << variant << " n=" << n << " k=" << k << " column " << c;
      }
    }
    set_gemv_variant(0);
  }
}

// Norm -> GEMV -> norm -> GEMV enqueued back to back on a stream, so the kernels launch with
// programmatic dependent launch: each GEMV must see the norm before it (it streams its weights
// before waiting), and the second norm must not overwrite x while the first GEMV reads it.
TEST(CudaGemv, DependentLaunchesSeeTheirInputs) {
  KVSERVE_SKIP_WITHOUT_GPU();
  std::mt19937 rng(12);
  const int hidden = 4096, n = 6144, rounds = 6;
  auto res = random_floats(hidden, rng, -2, 2);
  auto w = random_floats(static_cast<std::size_t>(n) * hidden, rng);
  for (auto& v : w) v = round_bf16(v);
  std::vector<std::vector<float>> norm_w;
  for (int r = 0; r < rounds; ++r) norm_w.push_back(random_floats(hidden, rng, 0.5f, 1.5f));
  auto d_res = upload(res);
  auto d_w = upload(to_bf16(w));
  std::vector<device_buffer<float>> d_nw;
  for (auto& v : norm_w) d_nw.push_back(upload(v));
  device_buffer<bf16> d_x;
  device_buffer<float> d_y;
  ASSERT_TRUE(d_x.allocate(hidden).is_ok());
  ASSERT_TRUE(d_y.allocate(static_cast<std::size_t>(n) * rounds).is_ok());
  cuda_stream stream;
  ASSERT_TRUE(stream.create().is_ok());
  for (int r = 0; r < rounds; ++r) {
    KVSERVE_ASSERT_CUDA(launch_add_rms_norm(d_res.get(), nullptr, d_nw[r].get(), nullptr, 1, hidden,
                                            1e-5f, false, d_x.get(), stream.get()));
    KVSERVE_ASSERT_CUDA(
        launch_gemv(d_x.get(), d_w.get(), 1, n, hidden, d_y.get() + r * n, stream.get()));
  }
  KVSERVE_ASSERT_CUDA(cudaStreamSynchronize(stream.get()));
  auto y = download(d_y, static_cast<std::size_t>(n) * rounds);
  double ss = 0;
  for (float v : res) ss += static_cast<double>(v) * v;
  const double inv = 1.0 / std::sqrt(ss / hidden + 1e-5);
  for (int r = 0; r < rounds; ++r) {
    std::vector<double> x(hidden);
    for (int j = 0; j < hidden; ++j)
      x[j] = round_bf16(static_cast<float>(res[j] * inv * norm_w[r][j]));
    for (int c = 0; c < n; c += 7) {
      double want = 0;
      for (int j = 0; j < hidden; ++j) want += x[j] * w[static_cast<std::size_t>(c) * hidden + j];
      ASSERT_NEAR(y[r * n + c], want, 2e-2 + 1e-2 * std::abs(want))
          << "round " << r << " col " << c;
    }
  }
}

class CudaRopeKv : public ::testing::TestWithParam<std::tuple<int, int, bool>> {};

TEST_P(CudaRopeKv, RotatesAndAppendsToSlots) {
  KVSERVE_SKIP_WITHOUT_GPU();
  const auto [block_size, head_dim, llama3] = GetParam();
  model_config c;
  c.head_dim = head_dim;
  c.num_heads = 6;
  c.num_kv_heads = 2;
  c.rope_theta = 500000.0f;
  if (llama3) {
    c.rope_scaling.type = rope_scaling_config::kind::kLlama3;
    c.rope_scaling.factor = 8.0f;
    c.rope_scaling.original_max_position_embeddings = 8192;
  }
  rotary_embedding rope(c);
  std::mt19937 rng(block_size * 7 + head_dim);
  const int T = 5, num_blocks = 6;
  const int width = (c.num_heads + 2 * c.num_kv_heads) * head_dim;
  auto qkv = random_floats(T * width, rng);
  auto bias = random_floats(width, rng);
  std::vector<std::int32_t> pos = {0, 1, 17, 4000, 100000};
  std::vector<std::int32_t> slots = {3, block_size * 5 + 1, -1, block_size * 2, 0};
  const std::size_t pool = static_cast<std::size_t>(num_blocks) * 2 * block_size * head_dim;
  std::vector<float> poison(pool, 7.0f);
  auto d_k = upload(to_bf16(poison));
  auto d_v = upload(to_bf16(poison));
  auto d_qkv = upload(qkv);
  auto d_bias = upload(bias);
  auto d_pos = upload(pos);
  auto d_slots = upload(slots);
  auto d_freq = upload(rope.inv_freq());
  device_buffer<float> d_q;
  ASSERT_TRUE(d_q.allocate(T * c.num_heads * head_dim).is_ok());
  rope_kv_args a;
  a.qkv = d_qkv.get();
  a.bias = d_bias.get();
  a.positions = d_pos.get();
  a.slot_mapping = d_slots.get();
  a.inv_freq = d_freq.get();
  a.num_tokens = T;
  a.num_heads = c.num_heads;
  a.q_out = d_q.get();
  a.kv = {d_k.get(), d_v.get(), 2, block_size, head_dim};
  KVSERVE_ASSERT_CUDA(launch_rope_kv_append(a, nullptr));
  auto q = download(d_q, T * c.num_heads * head_dim);
  auto k = download(d_k, pool);
  auto v = download(d_v, pool);
  std::vector<float> cos_t(head_dim / 2), sin_t(head_dim / 2);
  std::vector<bool> written(pool, false);
  for (int t = 0; t < T; ++t) {
    rope.cos_sin(pos[t], cos_t.data(), sin_t.data());
    std::vector<float> row(width);
    for (int j = 0; j < width; ++j) row[j] = qkv[t * width + j] + bias[j];
    for (int h = 0; h < c.num_heads + c.num_kv_heads; ++h)
      rope.apply(row.data() + h * head_dim, cos_t.data(), sin_t.data());
    for (int j = 0; j < c.num_heads * head_dim; ++j)
      ASSERT_NEAR(q[t * c.num_heads * head_dim + j], row[j], 2e-5) << "t=" << t;
    if (slots[t] < 0) continue;
    const int blk = slots[t] / block_size, off = slots[t] % block_size;
    for (int h = 0; h < 2; ++h)
      for (int d = 0; d < head_dim; ++d) {
        const std::size_t idx =
            ((static_cast<std::size_t>(blk) * 2 + h) * block_size + off) * head_dim + d;
        written[idx] = true;
        const float kw = row[(c.num_heads + h) * head_dim + d];
        const float vw = row[(c.num_heads + 2 + h) * head_dim + d];
        ASSERT_NEAR(__bfloat162float(k[idx]), kw, 1e-2 * std::abs(kw) + 1e-5);
        ASSERT_EQ(__bfloat162float(v[idx]), round_bf16(vw));
      }
  }
  for (std::size_t i = 0; i < pool; ++i) {
    if (written[i]) continue;
    ASSERT_EQ(__bfloat162float(k[i]), 7.0f) << "stray K write at " << i;
    ASSERT_EQ(__bfloat162float(v[i]), 7.0f) << "stray V write at " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(BlockSizesHeadDims, CudaRopeKv,
                         ::testing::Combine(::testing::Values(2, 16, 64),
                                            ::testing::Values(64, 128), ::testing::Bool()));

}  // namespace
}  // namespace kvserve::cuda::test
