// The KV storage formats: every FP8 E4M3 code, rounding ties and saturation, INT8 clamping,
// bf16 rounding, and per-head quantization error bounds.

#include "model/kv_quantize.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace kvserve {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

bool is_nan_code(int c) { return (c & 0x7F) == 0x7F; }

// The nearest finite E4M3 value by exhaustive search, ties to the even code; saturating.
std::uint8_t nearest_fp8_by_search(float x) {
  const float a = std::fabs(x);
  int best = 0;
  float best_error = kInf;
  for (int c = 0; c <= 0x7E; ++c) {
    const float error = std::fabs(fp8_e4m3_decode(static_cast<std::uint8_t>(c)) - a);
    if (error < best_error || (error == best_error && (c & 1) == 0)) {
      best = c;
      best_error = error;
    }
  }
  return static_cast<std::uint8_t>(best | (std::signbit(x) ? 0x80 : 0));
}

TEST(KvQuantize, Fp8DecodesEveryCode) {
  EXPECT_EQ(fp8_e4m3_decode(0x00), 0.0f);
  EXPECT_TRUE(std::signbit(fp8_e4m3_decode(0x80)));
  EXPECT_EQ(fp8_e4m3_decode(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(fp8_e4m3_decode(0x07), std::ldexp(7.0f, -9));  // largest subnormal
  EXPECT_EQ(fp8_e4m3_decode(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_EQ(fp8_e4m3_decode(0x38), 1.0f);
  EXPECT_EQ(fp8_e4m3_decode(0x39), 1.125f);
  EXPECT_EQ(fp8_e4m3_decode(0x7E), 448.0f);
  EXPECT_EQ(fp8_e4m3_decode(0xFE), -448.0f);
  EXPECT_TRUE(std::isnan(fp8_e4m3_decode(0x7F)));
  EXPECT_TRUE(std::isnan(fp8_e4m3_decode(0xFF)));
  for (int c = 0; c < 256; ++c) {
    const float v = fp8_e4m3_decode(static_cast<std::uint8_t>(c));
    if (is_nan_code(c)) continue;
    ASSERT_TRUE(std::isfinite(v)) << c;
    EXPECT_EQ(fp8_e4m3_encode(v), c) << "code " << c << " value " << v;
    EXPECT_EQ(fp8_e4m3_decode(static_cast<std::uint8_t>(c ^ 0x80)), -v) << c;
    if (c > 0 && c <= 0x7E) {
      EXPECT_GT(v, fp8_e4m3_decode(static_cast<std::uint8_t>(c - 1))) << "not monotonic at " << c;
    }
  }
}

TEST(KvQuantize, Fp8RoundsTiesToEven) {
  for (int c = 0; c < 0x7E; ++c) {
    for (const float sign : {1.0f, -1.0f}) {
      const float lo = sign * fp8_e4m3_decode(static_cast<std::uint8_t>(c));
      const float hi = sign * fp8_e4m3_decode(static_cast<std::uint8_t>(c + 1));
      const float mid = (lo + hi) / 2;  // exact: both have few mantissa bits
      const int s = sign < 0 ? 0x80 : 0;
      const int even = (c % 2 == 0) ? c : c + 1;
      EXPECT_EQ(fp8_e4m3_encode(mid), even | s) << "tie between codes " << c << " and " << c + 1;
      EXPECT_EQ(fp8_e4m3_encode(std::nextafter(mid, hi)), (c + 1) | s) << c;
      EXPECT_EQ(fp8_e4m3_encode(std::nextafter(mid, lo)), c | s) << c;
    }
  }
}

TEST(KvQuantize, Fp8SaturatesAndNeverMakesNanFromFiniteInput) {
  EXPECT_EQ(fp8_e4m3_encode(448.0f), 0x7E);
  EXPECT_EQ(fp8_e4m3_encode(463.9f), 0x7E);
  EXPECT_EQ(fp8_e4m3_encode(464.0f), 0x7E);  // would round to 480, which E4M3FN lacks
  EXPECT_EQ(fp8_e4m3_encode(1e30f), 0x7E);
  EXPECT_EQ(fp8_e4m3_encode(std::numeric_limits<float>::max()), 0x7E);
  EXPECT_EQ(fp8_e4m3_encode(kInf), 0x7E);
  EXPECT_EQ(fp8_e4m3_encode(-kInf), 0xFE);
  EXPECT_EQ(fp8_e4m3_encode(-1e9f), 0xFE);
  EXPECT_TRUE(std::isnan(fp8_e4m3_decode(fp8_e4m3_encode(std::nanf("")))));
  // Below half the smallest subnormal: zero; exactly half: the tie goes to zero (even).
  EXPECT_EQ(fp8_e4m3_encode(std::ldexp(1.0f, -10)), 0x00);
  EXPECT_EQ(fp8_e4m3_encode(std::nextafter(std::ldexp(1.0f, -10), 1.0f)), 0x01);
  EXPECT_EQ(fp8_e4m3_encode(std::ldexp(3.0f, -10)), 0x02);
  EXPECT_EQ(fp8_e4m3_encode(std::numeric_limits<float>::denorm_min()), 0x00);
  EXPECT_EQ(fp8_e4m3_encode(-0.0f), 0x80);

  std::mt19937 rng(7);
  std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-14, 12);
  for (int i = 0; i < 20000; ++i) {
    const float x = std::ldexp(mantissa(rng), exponent(rng));
    const std::uint8_t code = fp8_e4m3_encode(x);
    ASSERT_FALSE(is_nan_code(code)) << x;
    ASSERT_EQ(code, nearest_fp8_by_search(x)) << x;
  }
}

TEST(KvQuantize, Int8RoundsAndClamps) {
  EXPECT_EQ(int8_encode(0.0f), 0);
  EXPECT_EQ(int8_encode(0.49f), 0);
  EXPECT_EQ(int8_encode(0.51f), 1);
  EXPECT_EQ(int8_encode(2.5f), 2);  // ties to even
  EXPECT_EQ(int8_encode(3.5f), 4);
  EXPECT_EQ(int8_encode(-2.5f), -2);
  EXPECT_EQ(int8_encode(-3.5f), -4);
  EXPECT_EQ(int8_encode(126.6f), 127);
  EXPECT_EQ(int8_encode(127.4f), 127);
  EXPECT_EQ(int8_encode(200.0f), 127);
  EXPECT_EQ(int8_encode(-127.6f), -127);  // symmetric: never -128
  EXPECT_EQ(int8_encode(-1e30f), -127);
  EXPECT_EQ(int8_encode(kInf), 127);
  EXPECT_EQ(int8_encode(-kInf), -127);
  EXPECT_EQ(int8_encode(std::nanf("")), 0);
  for (int v = -127; v <= 127; ++v) {
    EXPECT_EQ(int8_encode(static_cast<float>(v)), v);
    EXPECT_EQ(int8_decode(static_cast<std::int8_t>(v)), static_cast<float>(v));
  }
}

TEST(KvQuantize, Bf16RoundsToNearestEven) {
  EXPECT_EQ(bf16_encode(1.0f), 0x3F80);
  EXPECT_EQ(bf16_encode(-2.0f), 0xC000);
  EXPECT_EQ(bf16_encode(1.0f + 0x1p-8f), 0x3F80);      // tie, down to even
  EXPECT_EQ(bf16_encode(1.0f + 3 * 0x1p-8f), 0x3F82);  // tie, up to even
  EXPECT_EQ(bf16_encode(std::nextafter(1.0f + 0x1p-8f, 2.0f)), 0x3F81);
  EXPECT_EQ(bf16_decode(0x3F81), 1.0f + 0x1p-7f);
  EXPECT_EQ(bf16_encode(kInf), 0x7F80);
  EXPECT_TRUE(std::isnan(bf16_round(std::nanf(""))));
  EXPECT_TRUE(std::signbit(bf16_round(-0.0f)));
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> value(-100.0f, 100.0f);
  for (int i = 0; i < 10000; ++i) {
    const float x = value(rng);
    const float r = bf16_round(x);
    ASSERT_EQ(std::bit_cast<std::uint32_t>(r) & 0xFFFF, 0u);
    ASSERT_LE(std::fabs(r - x), std::ldexp(std::fabs(x), -8)) << x;  // half an ulp of 7 bits
    // The other neighbour is no closer.
    const float other = bf16_decode(bf16_encode(x) + (r < x ? 1 : -1));
    ASSERT_GE(std::fabs(other - x), std::fabs(r - x)) << x;
  }
}

std::vector<float> random_head(std::mt19937& rng, int n, float magnitude) {
  std::normal_distribution<float> d(0.0f, magnitude);
  std::vector<float> x(n);
  for (float& v : x) v = d(rng);
  return x;
}

class HeadQuantize : public ::testing::TestWithParam<kv_cache_dtype> {};

TEST_P(HeadQuantize, RoundTripWithinBounds) {
  const kv_cache_dtype dtype = GetParam();
  std::mt19937 rng(11);
  for (const int head_dim : {12, 64, 128}) {
    for (const float magnitude : {1e-3f, 1.0f, 37.0f, 3e4f}) {
      std::vector<float> x = random_head(rng, head_dim, magnitude);
      std::vector<std::uint8_t> codes(head_dim * kv_element_bytes(dtype));
      std::vector<float> back(head_dim);
      const float scale = quantize_head(dtype, x.data(), head_dim, codes.data());
      dequantize_head(dtype, codes.data(), scale, head_dim, back.data());
      float amax = 0;
      for (float v : x) amax = std::max(amax, std::fabs(v));
      for (int i = 0; i < head_dim; ++i) {
        const float error = std::fabs(back[i] - x[i]);
        switch (dtype) {
          case kv_cache_dtype::kFp32:
            ASSERT_EQ(back[i], x[i]);
            break;
          case kv_cache_dtype::kBf16:
            ASSERT_EQ(back[i], bf16_round(x[i]));
            break;
          case kv_cache_dtype::kFp8E4m3:
            // Half an ulp of a 3-bit mantissa, or half the smallest subnormal step, plus the
            // rounding of scale and 1/scale.
            ASSERT_LE(error, std::fabs(x[i]) * (0x1p-4f + 1e-6f) + scale * 0x1p-10f + 1e-30f)
                << i << " of " << head_dim << ", magnitude " << magnitude;
            break;
          case kv_cache_dtype::kInt8:
            ASSERT_LE(error, scale * 0.5f * (1 + 1e-5f)) << i << ", magnitude " << magnitude;
            break;
          default:
            FAIL();
        }
      }
      if (kv_dtype_has_scales(dtype)) {
        EXPECT_EQ(scale, amax / kv_dtype_max_value(dtype));
        // The largest element gets the largest code and comes back within float rounding.
        int arg = 0;
        for (int i = 0; i < head_dim; ++i) {
          if (std::fabs(x[i]) == amax) arg = i;
        }
        EXPECT_NEAR(std::fabs(back[arg]), amax, amax * 1e-6f);
      } else {
        EXPECT_EQ(scale, 1.0f);
      }
    }
  }
}

TEST(KvQuantize, ZeroAndTinyHeadsGiveZeroScale) {
  for (const kv_cache_dtype dtype : {kv_cache_dtype::kFp8E4m3, kv_cache_dtype::kInt8}) {
    SCOPED_TRACE(to_string(dtype));
    for (const float value : {0.0f, 1e-35f, -std::numeric_limits<float>::denorm_min()}) {
      std::vector<float> x(16, 0.0f);
      x[5] = value;
      std::vector<std::uint8_t> codes(16, 0xAB);
      EXPECT_EQ(quantize_head(dtype, x.data(), 16, codes.data()), 0.0f);
      for (std::uint8_t c : codes) EXPECT_EQ(c, 0);
      std::vector<float> back(16, 1.0f);
      dequantize_head(dtype, codes.data(), 0.0f, 16, back.data());
      for (float v : back) EXPECT_EQ(v, 0.0f);
    }
    // Just above the threshold: a real scale, finite codes.
    std::vector<float> x(8, 0.0f);
    x[0] = 2 * kKvMinAmax;
    x[1] = -kKvMinAmax;
    std::vector<std::uint8_t> codes(8);
    const float scale = quantize_head(dtype, x.data(), 8, codes.data());
    EXPECT_GT(scale, 0.0f);
    EXPECT_TRUE(std::isnormal(scale));
    std::vector<float> back(8);
    dequantize_head(dtype, codes.data(), scale, 8, back.data());
    EXPECT_NEAR(back[0], x[0], x[0] * 1e-5f);
    EXPECT_NEAR(back[1], x[1], x[0] * 0.01f);
  }
}

TEST_P(HeadQuantize, StoredLayout) {
  const kv_cache_dtype dtype = GetParam();
  const std::vector<float> x = {1.0f, -0.5f, 0.25f, 3.0f};
  std::vector<std::uint8_t> codes(4 * kv_element_bytes(dtype));
  const float scale = quantize_head(dtype, x.data(), 4, codes.data());
  if (dtype == kv_cache_dtype::kFp32) {
    EXPECT_EQ(std::memcmp(codes.data(), x.data(), 16), 0);
  } else if (dtype == kv_cache_dtype::kBf16) {
    EXPECT_EQ(codes[0] | (codes[1] << 8), 0x3F80);  // little-endian bit patterns
    EXPECT_EQ(codes[2] | (codes[3] << 8), 0xBF00);
  } else if (dtype == kv_cache_dtype::kFp8E4m3) {
    EXPECT_EQ(scale, 3.0f / 448.0f);
    EXPECT_EQ(codes[3], 0x7E);
    EXPECT_EQ(codes[1] & 0x80, 0x80);
  } else {
    EXPECT_EQ(scale, 3.0f / 127.0f);
    EXPECT_EQ(codes[3], 127);
    EXPECT_EQ(static_cast<std::int8_t>(codes[1]), -21);  // -0.5 * 127 / 3 = -21.17
    EXPECT_EQ(codes[0], 42);                             // 42.33
  }
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, HeadQuantize,
                         ::testing::Values(kv_cache_dtype::kFp32, kv_cache_dtype::kBf16,
                                           kv_cache_dtype::kFp8E4m3, kv_cache_dtype::kInt8),
                         [](const auto& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace kvserve
