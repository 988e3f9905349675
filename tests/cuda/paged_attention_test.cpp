// Paged decode and prefill attention against a float64 CPU reference: every block size, head
// dims 64 and 128, GQA ratios 1, 3, 4, 8 (and 12, 16), shuffled block tables, ragged batches.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "cuda/kernels.hpp"
#include "tests/cuda/gpu_test_util.hpp"

namespace kvserve::cuda::test {
namespace {

struct paged_world {
  int block_size, head_dim, num_kv_heads, num_heads, num_blocks, width;
  std::vector<float> k, v;  // bf16-exact values, pool layout
  std::vector<std::vector<std::int32_t>> tables;
  device_buffer<bf16> d_k, d_v;
  device_buffer<std::int32_t> d_tables;

  // Gives each sequence enough blocks for `lens`, from a shuffled pool.
  paged_world(int bs, int hd, int nkv, int group, const std::vector<int>& lens, std::mt19937& rng)
      : block_size(bs), head_dim(hd), num_kv_heads(nkv), num_heads(nkv * group) {
    int needed = 0;
    width = 1;
    for (int l : lens) {
      needed += (l + bs - 1) / bs;
      width = std::max(width, (l + bs - 1) / bs);
    }
    num_blocks = needed + 3;
    std::vector<std::int32_t> ids(num_blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    int next = 0;
    std::vector<std::int32_t> flat;
    for (int l : lens) {
      std::vector<std::int32_t> t(width, 0);
      for (int b = 0; b < (l + bs - 1) / bs; ++b) t[b] = ids[next++];
      tables.push_back(t);
      flat.insert(flat.end(), t.begin(), t.end());
    }
    const std::size_t n = static_cast<std::size_t>(num_blocks) * nkv * bs * hd;
    k = random_floats(n, rng);
    v = random_floats(n, rng);
    for (auto& x : k) x = round_bf16(x);
    for (auto& x : v) x = round_bf16(x);
    d_k = upload(to_bf16(k));
    d_v = upload(to_bf16(v));
    d_tables = upload(flat);
  }
  paged_kv_view view() const { return {d_k.get(), d_v.get(), num_kv_heads, block_size, head_dim}; }
  std::size_t index(int seq, int pos, int kvh, int d) const {
    const std::size_t blk = tables[seq][pos / block_size];
    return ((blk * num_kv_heads + kvh) * block_size + pos % block_size) * head_dim + d;
  }
  // Attention of one query row over positions [0, ctx) of `seq`, in float64.
  std::vector<double> reference(const float* q, int seq, int head, int ctx, double scale) const {
    const int kvh = head / (num_heads / num_kv_heads);
    std::vector<double> s(ctx), out(head_dim, 0.0);
    double mx = -1e300;
    for (int t = 0; t < ctx; ++t) {
      double dot = 0;
      for (int d = 0; d < head_dim; ++d)
        dot += static_cast<double>(q[d]) * k[index(seq, t, kvh, d)];
      s[t] = dot * scale;
      mx = std::max(mx, s[t]);
    }
    double sum = 0;
    for (int t = 0; t < ctx; ++t) sum += (s[t] = std::exp(s[t] - mx));
    for (int t = 0; t < ctx; ++t)
      for (int d = 0; d < head_dim; ++d) out[d] += s[t] / sum * v[index(seq, t, kvh, d)];
    return out;
  }
};

using attention_param = std::tuple<int, int, int>;  // block size, head dim, group

class CudaDecodeAttention : public ::testing::TestWithParam<attention_param> {};

TEST_P(CudaDecodeAttention, MatchesReferenceForAnySplit) {
  KVSERVE_SKIP_WITHOUT_GPU();
  const auto [bs, hd, group] = GetParam();
  std::mt19937 rng(bs * 1000 + hd * 10 + group);
  const std::vector<int> lens = {1, 7, 3 * bs + 1, 300, 0, 1100};  // 0: a padding row
  paged_world w(bs, hd, 2, group, lens, rng);
  const int S = static_cast<int>(lens.size()), H = w.num_heads;
  auto q = random_floats(S * H * hd, rng, -2, 2);
  auto d_q = upload(q);
  auto d_lens = upload(std::vector<std::int32_t>(lens.begin(), lens.end()));
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  std::vector<std::vector<double>> refs(S * H, std::vector<double>(hd, 0.0));
  for (int s = 0; s < S; ++s)
    for (int h = 0; h < H; ++h)
      if (lens[s] > 0)
        refs[s * H + h] = w.reference(q.data() + (s * H + h) * hd, s, h, lens[s], scale);
  for (int splits : {1, 5, 32}) {
    device_buffer<float> d_po, d_pml;
    device_buffer<bf16> d_out;
    ASSERT_TRUE(d_po.allocate(S * H * splits * hd).is_ok());
    ASSERT_TRUE(d_pml.allocate(S * H * splits * 2).is_ok());
    ASSERT_TRUE(d_out.allocate(S * H * hd).is_ok());
    decode_attention_args a;
    a.q = d_q.get();
    a.kv = w.view();
    a.block_tables = w.d_tables.get();
    a.context_lens = d_lens.get();
    a.num_seqs = S;
    a.num_heads = H;
    a.max_blocks_per_seq = w.width;
    a.num_splits = splits;
    a.scale = static_cast<float>(scale);
    a.partial_out = d_po.get();
    a.partial_ml = d_pml.get();
    a.out = d_out.get();
    KVSERVE_ASSERT_CUDA(launch_decode_attention(a, nullptr));
    auto out = download(d_out, S * H * hd);
    for (int s = 0; s < S; ++s)
      for (int h = 0; h < H; ++h) {
        const auto& ref = refs[s * H + h];
        for (int d = 0; d < hd; ++d)
          ASSERT_NEAR(__bfloat162float(out[(s * H + h) * hd + d]), ref[d],
                      4e-3 + 8e-3 * std::abs(ref[d]))
              << "seq " << s << " head " << h << " dim " << d << " splits " << splits;
      }
  }
}

INSTANTIATE_TEST_SUITE_P(AllShapes, CudaDecodeAttention,
                         ::testing::Combine(::testing::Values(2, 4, 8, 16, 32, 64),
                                            ::testing::Values(64, 128),
                                            ::testing::Values(1, 3, 4, 8, 12)));

class CudaPrefillAttention : public ::testing::TestWithParam<attention_param> {};

TEST_P(CudaPrefillAttention, CausalOverCachedPrefixAndChunk) {
  KVSERVE_SKIP_WITHOUT_GPU();
  const auto [bs, hd, group] = GetParam();
  std::mt19937 rng(bs * 3000 + hd * 10 + group);
  // (cached prefix, new chunk) per sequence: a fresh prompt, a prefix hit, a one-token chunk.
  const std::vector<std::pair<int, int>> seqs = {{0, 37}, {2 * bs, 21}, {150, 1}, {5, 70}};
  std::vector<int> lens;
  for (auto [p, n] : seqs) lens.push_back(p + n);
  paged_world w(bs, hd, 2, group, lens, rng);
  const int H = w.num_heads;
  std::vector<std::int32_t> positions;
  std::vector<prefill_work_item> items;
  std::vector<int> seq_of;
  for (int i = 0; i < static_cast<int>(seqs.size()); ++i) {
    const auto [p, n] = seqs[i];
    const int first = static_cast<int>(positions.size());
    for (int j = 0; j < n; ++j) {
      positions.push_back(p + j);
      seq_of.push_back(i);
    }
    if (group >= kPrefillRowsPerItem) {
      for (int j = 0; j < n; ++j)
        for (int h = 0; h < group; h += kPrefillRowsPerItem)
          items.push_back({i, first + j, 1, h, std::min(kPrefillRowsPerItem, group - h)});
    } else {
      const int per = kPrefillRowsPerItem / group;
      for (int j = 0; j < n; j += per)
        items.push_back({i, first + j, std::min(per, n - j), 0, group});
    }
  }
  const int T = static_cast<int>(positions.size());
  auto q = random_floats(T * H * hd, rng, -2, 2);
  auto d_q = upload(q);
  auto d_pos = upload(positions);
  auto d_items = upload(items);
  device_buffer<bf16> d_out;
  ASSERT_TRUE(d_out.allocate(T * H * hd).is_ok());
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  prefill_attention_args a;
  a.q = d_q.get();
  a.kv = w.view();
  a.block_tables = w.d_tables.get();
  a.positions = d_pos.get();
  a.items = d_items.get();
  a.num_items = static_cast<int>(items.size());
  a.num_heads = H;
  a.max_blocks_per_seq = w.width;
  a.scale = static_cast<float>(scale);
  a.out = d_out.get();
  KVSERVE_ASSERT_CUDA(launch_prefill_attention(a, nullptr));
  auto out = download(d_out, T * H * hd);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h) {
      auto ref = w.reference(q.data() + (t * H + h) * hd, seq_of[t], h, positions[t] + 1, scale);
      for (int d = 0; d < hd; ++d)
        ASSERT_NEAR(__bfloat162float(out[(t * H + h) * hd + d]), ref[d],
                    4e-3 + 8e-3 * std::abs(ref[d]))
            << "token " << t << " head " << h << " dim " << d;
    }
}

INSTANTIATE_TEST_SUITE_P(AllShapes, CudaPrefillAttention,
                         ::testing::Combine(::testing::Values(2, 4, 8, 16, 32, 64),
                                            ::testing::Values(64, 128),
                                            ::testing::Values(1, 3, 4, 8, 16)));

}  // namespace
}  // namespace kvserve::cuda::test
