// Paged decode and prefill attention against a float64 CPU reference: every block size, head
// dims 64 and 128, GQA ratios 1, 3, 4, 8 (and 12, 16), shuffled block tables, ragged batches;
// bf16 pools and 8-bit (FP8 E4M3, INT8) pools, whose reference is the host dequantization
// (model/kv_quantize.hpp) of the very codes and scales the kernels read.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "cuda/kernels.hpp"
#include "model/kv_quantize.hpp"
#include "tests/cuda/gpu_test_util.hpp"

namespace kvserve::cuda::test {
namespace {

kv_storage storage_of(kv_cache_dtype d) {
  return d == kv_cache_dtype::kFp8E4m3 ? kv_storage::kFp8E4m3
         : d == kv_cache_dtype::kInt8  ? kv_storage::kInt8
                                       : kv_storage::kBf16;
}

struct paged_world {
  int block_size, head_dim, num_kv_heads, num_heads, num_blocks, width;
  kv_cache_dtype dtype;
  std::vector<float> k, v;  // the values the pools represent (bf16-exact or dequantized)
  std::vector<std::vector<std::int32_t>> tables;
  device_buffer<bf16> d_k, d_v;               // bf16 pools
  device_buffer<std::uint8_t> d_k8, d_v8;     // 8-bit codes
  device_buffer<float> d_k_scale, d_v_scale;  // 8-bit scales, one per (block, head, offset)
  device_buffer<std::int32_t> d_tables;

  // Gives each sequence enough blocks for `lens`, from a shuffled pool.
  paged_world(int bs, int hd, int nkv, int group, const std::vector<int>& lens, std::mt19937& rng,
              kv_cache_dtype dt = kv_cache_dtype::kBf16)
      : block_size(bs), head_dim(hd), num_kv_heads(nkv), num_heads(nkv * group), dtype(dt) {
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
    d_tables = upload(flat);
    if (dtype == kv_cache_dtype::kBf16) {
      for (auto& x : k) x = round_bf16(x);
      for (auto& x : v) x = round_bf16(x);
      d_k = upload(to_bf16(k));
      d_v = upload(to_bf16(v));
      return;
    }
    // Rows of varied magnitude (x 1e-2 to 1e1), then quantized row by row.
    const std::size_t rows = n / hd;
    std::uniform_real_distribution<float> mag(-2.0f, 1.0f);
    std::vector<std::uint8_t> kc(n), vc(n);
    std::vector<float> ks(rows), vs(rows);
    for (std::size_t r = 0; r < rows; ++r) {
      const float km = std::pow(10.0f, mag(rng)), vm = std::pow(10.0f, mag(rng));
      for (int d = 0; d < hd; ++d) {
        k[r * hd + d] *= km;
        v[r * hd + d] *= vm;
      }
      ks[r] = quantize_head(dtype, &k[r * hd], hd, &kc[r * hd]);
      vs[r] = quantize_head(dtype, &v[r * hd], hd, &vc[r * hd]);
      dequantize_head(dtype, &kc[r * hd], ks[r], hd, &k[r * hd]);
      dequantize_head(dtype, &vc[r * hd], vs[r], hd, &v[r * hd]);
    }
    d_k8 = upload(kc);
    d_v8 = upload(vc);
    d_k_scale = upload(ks);
    d_v_scale = upload(vs);
  }
  paged_kv_view view() const {
    if (dtype == kv_cache_dtype::kBf16)
      return {d_k.get(), d_v.get(), num_kv_heads, block_size, head_dim};
    return {d_k8.get(), d_v8.get(),        num_kv_heads,    block_size,
            head_dim,   storage_of(dtype), d_k_scale.get(), d_v_scale.get()};
  }
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

// block size, head dim, group, KV dtype
using attention_param = std::tuple<int, int, int, kv_cache_dtype>;

class CudaDecodeAttention : public ::testing::TestWithParam<attention_param> {};

TEST_P(CudaDecodeAttention, MatchesReferenceForAnySplit) {
  KVSERVE_SKIP_WITHOUT_GPU();
  const auto [bs, hd, group, dtype] = GetParam();
  std::mt19937 rng(bs * 1000 + hd * 10 + group + 7 * static_cast<int>(dtype));
  const std::vector<int> lens = {1, 7, 3 * bs + 1, 300, 0, 1100};  // 0: a padding row
  paged_world w(bs, hd, 2, group, lens, rng, dtype);
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
  // 8-bit pools also run every other (tokens per iteration, dimensions per lane) variant; bf16
  // every K/V ring depth (1: none) and shortest split (pieces of 32 tokens up to whole
  // contexts).
  struct variant {
    int tokens_per_iter, dims_per_lane, kv_stages, min_split_tokens;
  };
  const std::vector<variant> variants =
      dtype == kv_cache_dtype::kBf16
          ? std::vector<variant>{{0, 0, 0, 0},
                                 {0, 0, 1, 0},
                                 {0, 0, 2, 32},
                                 {0, 0, 3, 0},
                                 {0, 0, 4, 2048}}
          : std::vector<variant>{
                {0, 0, 0, 0}, {4, 8, 0, 0}, {8, 8, 0, 0}, {2, 16, 0, 0}, {4, 16, 0, 32}};
  for (const auto [tokens_per_iter, dims_per_lane, kv_stages, min_split] : variants)
    for (int splits : {1, 5, 32, 64}) {
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
      a.tokens_per_iter = tokens_per_iter;
      a.dims_per_lane = dims_per_lane;
      a.kv_stages = kv_stages;
      a.min_split_tokens = min_split;
      // Poison: NaN in every output and workspace element nothing writes.
      KVSERVE_ASSERT_CUDA(cudaMemset(d_out.get(), 0xff, d_out.bytes()));
      KVSERVE_ASSERT_CUDA(cudaMemset(d_po.get(), 0xff, d_po.bytes()));
      KVSERVE_ASSERT_CUDA(cudaMemset(d_pml.get(), 0xff, d_pml.bytes()));
      KVSERVE_ASSERT_CUDA(launch_decode_attention(a, nullptr));
      auto out = download(d_out, S * H * hd);
      for (int s = 0; s < S; ++s)
        for (int h = 0; h < H; ++h) {
          const auto& ref = refs[s * H + h];
          for (int d = 0; d < hd; ++d)
            ASSERT_NEAR(__bfloat162float(out[(s * H + h) * hd + d]), ref[d],
                        4e-3 + 8e-3 * std::abs(ref[d]))
                << "seq " << s << " head " << h << " dim " << d << " splits " << splits
                << " tokens/iter " << tokens_per_iter << " dims/lane " << dims_per_lane
                << " stages " << kv_stages << " min split " << min_split;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(AllShapes, CudaDecodeAttention,
                         ::testing::Combine(::testing::Values(2, 4, 8, 16, 32, 64),
                                            ::testing::Values(64, 128),
                                            ::testing::Values(1, 3, 4, 8, 12),
                                            ::testing::Values(kv_cache_dtype::kBf16)));
INSTANTIATE_TEST_SUITE_P(EightBit, CudaDecodeAttention,
                         ::testing::Combine(::testing::Values(2, 4, 8, 16, 32, 64),
                                            ::testing::Values(64, 128), ::testing::Values(1, 4, 12),
                                            ::testing::Values(kv_cache_dtype::kFp8E4m3,
                                                              kv_cache_dtype::kInt8)));

// The ring depth follows the wave: Llama-3-8B heads on a 132-SM Hopper card (the 2-deep kernel
// runs 3 blocks per SM there, 396 a wave): 8 rows fill one wave of it (6 splits, 384 blocks),
// 64 rows (512 blocks unsplit) do not; 8-bit pools have no ring.
TEST(CudaDecodeAttentionPlan, RingDepthFollowsTheWave) {
  KVSERVE_SKIP_WITHOUT_GPU();
  EXPECT_EQ(decode_attention_stages(8, 32, 8, 128, 132), 2);
  EXPECT_EQ(decode_attention_splits(8, 32, 8, 128, 132, kv_storage::kBf16, 2), 6);
  EXPECT_EQ(decode_attention_stages(1, 32, 8, 128, 132), 2);
  EXPECT_EQ(decode_attention_stages(64, 32, 8, 128, 132), 3);
  EXPECT_EQ(decode_attention_stages(128, 32, 8, 128, 132), 3);
  EXPECT_EQ(decode_attention_stages(8, 32, 8, 128, 132, kv_storage::kInt8), 0);
  EXPECT_EQ(decode_attention_stages(8, 32, 8, 128, 132, kv_storage::kFp8E4m3), 0);
}

class CudaPrefillAttention : public ::testing::TestWithParam<attention_param> {};

// The float64 reference of one prefill row and, per dimension, the tolerance for the tensor-core
// kernel: 4e-3 + 8e-3 |ref| as for the other kernels, plus a bound of the two bf16 roundings its
// MMAs need (u = 2^-8, twice bf16's unit roundoff). P rounded before P V (relative u per
// element; the softmax sum uses the unrounded P) moves the output by at most u sum_j p_j |v_j|;
// Q rounded before Q K^T moves score j by at most e_j = u scale sum_d |q_d k_jd|, hence the
// output by at most sum_j p_j e_j |v_j - out| (p normalised). The bound grows with |v| and |k|:
// the 8-bit grid's rows of magnitude up to 10 need it (errors up to 6.6x the plain tolerance in
// a float emulation of the kernel's arithmetic, at most 0.38x of this one); the bf16 grid stays
// within the plain tolerance. A wrong mask, scale or tile still misses by O(|v|).
struct prefill_expectation {
  std::vector<double> out, tol;
};
prefill_expectation prefill_reference(const paged_world& w, const float* q, int seq, int head,
                                      int ctx, double scale) {
  const int hd = w.head_dim;
  const int kvh = head / (w.num_heads / w.num_kv_heads);
  const double u = 0x1p-8;
  prefill_expectation r{w.reference(q, seq, head, ctx, scale), std::vector<double>(hd, 0.0)};
  std::vector<double> s(ctx), e(ctx);
  double mx = -1e300;
  for (int t = 0; t < ctx; ++t) {
    double dot = 0, mag = 0;
    for (int d = 0; d < hd; ++d) {
      const double k = w.k[w.index(seq, t, kvh, d)];
      dot += q[d] * k;
      mag += std::abs(q[d] * k);
    }
    s[t] = dot * scale;
    e[t] = u * scale * mag;
    mx = std::max(mx, s[t]);
  }
  double sum = 0;
  for (int t = 0; t < ctx; ++t) sum += (s[t] = std::exp(s[t] - mx));
  for (int d = 0; d < hd; ++d) {
    double bound = 0;
    for (int t = 0; t < ctx; ++t) {
      const double v = w.v[w.index(seq, t, kvh, d)];
      bound += s[t] / sum * (u * std::abs(v) + e[t] * std::abs(v - r.out[d]));
    }
    r.tol[d] = 4e-3 + 8e-3 * std::abs(r.out[d]) + bound;
  }
  return r;
}

// Work items as cuda/step_inputs.cpp builds them, with at most `rows_per_item` rows each.
std::vector<prefill_work_item> make_items(const std::vector<std::pair<int, int>>& seqs, int group,
                                          int rows_per_item) {
  std::vector<prefill_work_item> items;
  int first = 0;
  for (int i = 0; i < static_cast<int>(seqs.size()); ++i) {
    const int n = seqs[i].second;
    if (group >= rows_per_item) {
      for (int j = 0; j < n; ++j)
        for (int h = 0; h < group; h += rows_per_item)
          items.push_back({i, first + j, 1, h, std::min(rows_per_item, group - h)});
    } else {
      const int per = rows_per_item / group;
      for (int j = 0; j < n; j += per)
        items.push_back({i, first + j, std::min(per, n - j), 0, group});
    }
    first += n;
  }
  return items;
}

TEST_P(CudaPrefillAttention, CausalOverCachedPrefixAndChunk) {
  KVSERVE_SKIP_WITHOUT_GPU();
  const auto [bs, hd, group, dtype] = GetParam();
  std::mt19937 rng(bs * 3000 + hd * 10 + group + 7 * static_cast<int>(dtype));
  // (cached prefix, new chunk) per sequence: a fresh prompt, a prefix hit, a one-token chunk, a
  // chunk after a prefix that spans several key tiles.
  const std::vector<std::pair<int, int>> seqs = {
      {0, 37}, {2 * bs, 21}, {150, 1}, {5, 70}, {190, 75}};
  std::vector<int> lens;
  for (auto [p, n] : seqs) lens.push_back(p + n);
  paged_world w(bs, hd, 2, group, lens, rng, dtype);
  const int H = w.num_heads;
  std::vector<std::int32_t> positions;
  std::vector<int> seq_of;
  for (int i = 0; i < static_cast<int>(seqs.size()); ++i)
    for (int j = 0; j < seqs[i].second; ++j) {
      positions.push_back(seqs[i].first + j);
      seq_of.push_back(i);
    }
  const int T = static_cast<int>(positions.size());
  auto q = random_floats(T * H * hd, rng, -2, 2);
  auto d_q = upload(q);
  auto d_pos = upload(positions);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  std::vector<prefill_expectation> refs(T * H);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h)
      refs[t * H + h] =
          prefill_reference(w, q.data() + (t * H + h) * hd, seq_of[t], h, positions[t] + 1, scale);
  // Full items as the backend builds them, and small ones (partly empty warps, a head range
  // that starts inside the group); keys in one run, or split into 3 or 8 runs merged through
  // the workspace (8: some runs of the shorter contexts hold no tile).
  for (int rows_per_item : {kPrefillRowsPerItem, 5})
    for (int splits : {1, 3, 8}) {
      const auto items = make_items(seqs, group, rows_per_item);
      auto d_items = upload(items);
      device_buffer<bf16> d_out;
      device_buffer<float> d_po, d_pml;
      ASSERT_TRUE(d_out.allocate(T * H * hd).is_ok());
      ASSERT_TRUE(d_po.allocate(std::size_t{1} * T * H * splits * hd).is_ok());
      ASSERT_TRUE(d_pml.allocate(std::size_t{1} * T * H * splits * 2).is_ok());
      KVSERVE_ASSERT_CUDA(cudaMemset(d_out.get(), 0xff, d_out.bytes()));  // NaN where unwritten
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
      a.num_splits = splits;
      a.num_tokens = T;
      a.partial_out = d_po.get();
      a.partial_ml = d_pml.get();
      KVSERVE_ASSERT_CUDA(launch_prefill_attention(a, nullptr));
      auto out = download(d_out, T * H * hd);
      for (int t = 0; t < T; ++t)
        for (int h = 0; h < H; ++h) {
          const auto& ref = refs[t * H + h];
          for (int d = 0; d < hd; ++d)
            ASSERT_NEAR(__bfloat162float(out[(t * H + h) * hd + d]), ref.out[d], ref.tol[d])
                << "token " << t << " head " << h << " dim " << d << " rows/item " << rows_per_item
                << " splits " << splits;
        }
    }
}

// Splits for the backend's short steps: Llama-3-8B heads on 132 SMs.
TEST(CudaPrefillAttentionPlan, SplitsFillTheDeviceForShortChunksOverLongContexts) {
  // A 32-token chunk: 2 items per KV head, 16 blocks; 2,080 keys allow 16 runs of 2 tiles.
  EXPECT_EQ(prefill_attention_splits(32, 2, 8, 2080, 132), kMaxPrefillSplits);
  // Keys for only 3 runs of two 64-key tiles.
  EXPECT_EQ(prefill_attention_splits(32, 2, 8, 400, 132), 3);
  // Enough items to fill the device alone, or a step too long for the workspace.
  EXPECT_EQ(prefill_attention_splits(128, 17, 8, 4096, 132), 1);
  EXPECT_EQ(prefill_attention_splits(kSplitPrefillMaxTokens + 1, 2, 8, 4096, 132), 1);
}

INSTANTIATE_TEST_SUITE_P(AllShapes, CudaPrefillAttention,
                         ::testing::Combine(::testing::Values(2, 4, 8, 16, 32, 64),
                                            ::testing::Values(64, 128),
                                            ::testing::Values(1, 3, 4, 8, 16),
                                            ::testing::Values(kv_cache_dtype::kBf16)));
INSTANTIATE_TEST_SUITE_P(EightBit, CudaPrefillAttention,
                         ::testing::Combine(::testing::Values(2, 4, 8, 16, 32, 64),
                                            ::testing::Values(64, 128), ::testing::Values(1, 4, 16),
                                            ::testing::Values(kv_cache_dtype::kFp8E4m3,
                                                              kv_cache_dtype::kInt8)));

}  // namespace
}  // namespace kvserve::cuda::test
