// 8-bit KV formats on the device against the host reference (model/kv_quantize.hpp): the
// encoding bit for bit (codes and scales) on random heads, rounding ties, the subnormal range,
// saturation and zero heads; and the RoPE + KV-append kernel writing codes and scales into the
// paged slots (V and unrotated K exactly; rotated K within the format's rounding).
#include <bit>
#include <cmath>

#include "cuda/kernels.hpp"
#include "model/kv_quantize.hpp"
#include "model/rope.hpp"
#include "tests/cuda/gpu_test_util.hpp"

namespace kvserve::cuda::test {
namespace {

kv_storage storage_of(kv_cache_dtype d) {
  return d == kv_cache_dtype::kFp8E4m3 ? kv_storage::kFp8E4m3 : kv_storage::kInt8;
}

// Heads that probe the encoder: random magnitudes over many decades, heads whose largest value
// is exactly M (scale 1) with the others on rounding ties between adjacent codes, tiny heads
// (below and above the zero threshold), a zero head and a head with a single non-zero value.
std::vector<float> probe_heads(kv_cache_dtype dtype, int hd, int num_random, std::mt19937& rng) {
  std::vector<float> x;
  std::uniform_real_distribution<float> u(-1.0f, 1.0f), decade(-20.0f, 20.0f);
  for (int h = 0; h < num_random; ++h) {
    const float m = std::pow(10.0f, decade(rng));
    for (int d = 0; d < hd; ++d) x.push_back(u(rng) * m);
  }
  const float max_value = kv_dtype_max_value(dtype);
  std::uniform_int_distribution<int> code(0, 255);
  for (int h = 0; h < 64; ++h) {
    for (int d = 0; d < hd; ++d) {
      float lo, hi;
      if (dtype == kv_cache_dtype::kFp8E4m3) {
        int c = code(rng) & 0x7F;
        if (c >= 0x7E) c = 0x7D;  // keep c + 1 finite
        lo = fp8_e4m3_decode(static_cast<std::uint8_t>(c));
        hi = fp8_e4m3_decode(static_cast<std::uint8_t>(c + 1));
      } else {
        lo = static_cast<float>(code(rng) % 127);
        hi = lo + 1.0f;
      }
      float v = (lo + hi) * 0.5f;  // a tie: exact in fp32
      if (d % 3 == 0) v = lo;      // and some exact codes
      x.push_back((d & 1) ? -v : v);
    }
    x[x.size() - hd + (h % hd)] = (h & 1) ? -max_value : max_value;
  }
  for (float m : {0.0f, 0x1p-101f, 0x1p-99f, 1e-30f, 3e30f}) {
    for (int d = 0; d < hd; ++d) x.push_back(m * u(rng));
  }
  for (int d = 0; d < hd; ++d) x.push_back(d == 5 ? -2.5f : 0.0f);
  return x;
}

class CudaKvQuantize : public ::testing::TestWithParam<std::tuple<kv_cache_dtype, int>> {};

TEST_P(CudaKvQuantize, DeviceEncodingEqualsHostReference) {
  KVSERVE_SKIP_WITHOUT_GPU();
  const auto [dtype, hd] = GetParam();
  std::mt19937 rng(11 + hd + static_cast<int>(dtype));
  const auto x = probe_heads(dtype, hd, 2000, rng);
  const int n = static_cast<int>(x.size() / hd);
  auto d_x = upload(x);
  device_buffer<std::uint8_t> d_codes;
  device_buffer<float> d_scales;
  ASSERT_TRUE(d_codes.allocate(x.size()).is_ok());
  ASSERT_TRUE(d_scales.allocate(n).is_ok());
  KVSERVE_ASSERT_CUDA(launch_quantize_heads(d_x.get(), n, hd, storage_of(dtype), d_codes.get(),
                                            d_scales.get(), nullptr));
  KVSERVE_ASSERT_CUDA(cudaDeviceSynchronize());
  const auto codes = download(d_codes, x.size());
  const auto scales = download(d_scales, n);
  std::vector<std::uint8_t> want(hd);
  int zero_heads = 0;
  for (int h = 0; h < n; ++h) {
    const float scale = quantize_head(dtype, &x[static_cast<std::size_t>(h) * hd], hd, want.data());
    zero_heads += scale == 0.0f;
    ASSERT_EQ(std::bit_cast<std::uint32_t>(scales[h]), std::bit_cast<std::uint32_t>(scale))
        << "head " << h << ": " << scales[h] << " vs " << scale;
    for (int d = 0; d < hd; ++d)
      ASSERT_EQ(codes[static_cast<std::size_t>(h) * hd + d], want[d])
          << "head " << h << " dim " << d << " x " << x[static_cast<std::size_t>(h) * hd + d];
  }
  EXPECT_EQ(zero_heads, 2);  // the zero head and the one below the threshold
}

INSTANTIATE_TEST_SUITE_P(TypesAndHeadDims, CudaKvQuantize,
                         ::testing::Combine(::testing::Values(kv_cache_dtype::kFp8E4m3,
                                                              kv_cache_dtype::kInt8),
                                            ::testing::Values(64, 128)));

class CudaRopeKv8Bit : public ::testing::TestWithParam<std::tuple<int, int, kv_cache_dtype>> {};

TEST_P(CudaRopeKv8Bit, AppendsCodesAndScalesToSlots) {
  KVSERVE_SKIP_WITHOUT_GPU();
  const auto [block_size, head_dim, dtype] = GetParam();
  model_config c;
  c.head_dim = head_dim;
  c.num_heads = 6;
  c.num_kv_heads = 2;
  c.rope_theta = 500000.0f;
  rotary_embedding rope(c);
  std::mt19937 rng(block_size * 7 + head_dim + static_cast<int>(dtype));
  const int T = 6, num_blocks = 6, nkv = 2;
  const int width = (c.num_heads + 2 * nkv) * head_dim;
  auto qkv = random_floats(T * width, rng, -3, 3);
  auto bias = random_floats(width, rng);
  // Position 0 leaves K unrotated (cos 1, sin 0), so its codes must match exactly too.
  std::vector<std::int32_t> pos = {0, 1, 17, 4000, 0, 9};
  std::vector<std::int32_t> slots = {
      3, block_size * 5 + 1, -1, block_size * 2, 0, block_size * 4 + block_size - 1};
  const std::size_t rows = static_cast<std::size_t>(num_blocks) * nkv * block_size;
  const std::size_t pool = rows * head_dim;
  auto d_k = upload(std::vector<std::uint8_t>(pool, 0x5A));
  auto d_v = upload(std::vector<std::uint8_t>(pool, 0x5A));
  auto d_ks = upload(std::vector<float>(rows, 7.0f));
  auto d_vs = upload(std::vector<float>(rows, 7.0f));
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
  a.kv = {d_k.get(), d_v.get(),         nkv,        block_size,
          head_dim,  storage_of(dtype), d_ks.get(), d_vs.get()};
  KVSERVE_ASSERT_CUDA(launch_rope_kv_append(a, nullptr));
  const auto q = download(d_q, T * c.num_heads * head_dim);
  const auto k = download(d_k, pool);
  const auto v = download(d_v, pool);
  const auto ks = download(d_ks, rows);
  const auto vs = download(d_vs, rows);
  std::vector<float> cos_t(head_dim / 2), sin_t(head_dim / 2);
  std::vector<bool> written(rows, false);
  std::vector<std::uint8_t> want(head_dim);
  std::vector<float> deq(head_dim);
  const double step = dtype == kv_cache_dtype::kFp8E4m3 ? 0.0625 : 0.0;  // relative rounding
  for (int t = 0; t < T; ++t) {
    rope.cos_sin(pos[t], cos_t.data(), sin_t.data());
    std::vector<float> row(width);
    for (int j = 0; j < width; ++j) row[j] = qkv[t * width + j] + bias[j];
    std::vector<float> unrotated = row;
    for (int h = 0; h < c.num_heads + nkv; ++h)
      rope.apply(row.data() + h * head_dim, cos_t.data(), sin_t.data());
    for (int j = 0; j < c.num_heads * head_dim; ++j)
      ASSERT_NEAR(q[t * c.num_heads * head_dim + j], row[j], 2e-5) << "t=" << t;
    if (slots[t] < 0) continue;
    const int blk = slots[t] / block_size, off = slots[t] % block_size;
    for (int h = 0; h < nkv; ++h) {
      const std::size_t r = (static_cast<std::size_t>(blk) * nkv + h) * block_size + off;
      written[r] = true;
      // V: exactly the host reference's codes and scale.
      const float* vx = unrotated.data() + (c.num_heads + nkv + h) * head_dim;
      const float v_scale = quantize_head(dtype, vx, head_dim, want.data());
      ASSERT_EQ(vs[r], v_scale) << "t=" << t << " head " << h;
      for (int d = 0; d < head_dim; ++d) ASSERT_EQ(v[r * head_dim + d], want[d]) << "V d=" << d;
      // K: exactly at position 0; elsewhere within the format's rounding of the host rotation.
      const float* kx =
          (pos[t] == 0 ? unrotated.data() : row.data()) + (c.num_heads + h) * head_dim;
      const float k_scale = quantize_head(dtype, kx, head_dim, want.data());
      if (pos[t] == 0) {
        ASSERT_EQ(ks[r], k_scale) << "t=" << t << " head " << h;
        for (int d = 0; d < head_dim; ++d) ASSERT_EQ(k[r * head_dim + d], want[d]) << "K d=" << d;
      } else {
        ASSERT_NEAR(ks[r], k_scale, 1e-5 * k_scale);
        dequantize_head(dtype, &k[r * head_dim], ks[r], head_dim, deq.data());
        for (int d = 0; d < head_dim; ++d) {
          const double bound = dtype == kv_cache_dtype::kInt8
                                   ? 0.5 * k_scale + 1e-4 * std::abs(kx[d]) + 1e-6
                                   : (step + 1e-4) * std::abs(kx[d]) + k_scale / 1024 + 1e-6;
          ASSERT_NEAR(deq[d], kx[d], bound) << "t=" << t << " head " << h << " d=" << d;
        }
      }
    }
  }
  for (std::size_t r = 0; r < rows; ++r) {
    if (written[r]) continue;
    ASSERT_EQ(ks[r], 7.0f) << "stray K scale write at row " << r;
    ASSERT_EQ(vs[r], 7.0f) << "stray V scale write at row " << r;
    for (int d = 0; d < head_dim; ++d) {
      ASSERT_EQ(k[r * head_dim + d], 0x5A) << "stray K write at row " << r;
      ASSERT_EQ(v[r * head_dim + d], 0x5A) << "stray V write at row " << r;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    BlockSizesHeadDimsTypes, CudaRopeKv8Bit,
    ::testing::Combine(::testing::Values(2, 16, 64), ::testing::Values(64, 128),
                       ::testing::Values(kv_cache_dtype::kFp8E4m3, kv_cache_dtype::kInt8)));

}  // namespace
}  // namespace kvserve::cuda::test
