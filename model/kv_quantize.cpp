#include "model/kv_quantize.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace kvserve {
namespace {

// 2^e for -9 <= e <= 8, exactly, in a constant expression.
constexpr float exp2i(int e) {
  float r = 1.0f;
  for (; e > 0; --e) r *= 2.0f;
  for (; e < 0; ++e) r *= 0.5f;
  return r;
}

constexpr float fp8_e4m3_value(std::uint8_t code) {
  const int exponent = (code >> 3) & 0xF;
  const int mantissa = code & 7;
  float magnitude = 0.0f;
  if (exponent == 15 && mantissa == 7) {
    magnitude = std::numeric_limits<float>::quiet_NaN();
  } else if (exponent == 0) {
    magnitude = static_cast<float>(mantissa) * exp2i(-9);  // subnormal: m x 2^-9
  } else {
    magnitude = static_cast<float>(8 + mantissa) * exp2i(exponent - 10);  // 1.m x 2^(e-7)
  }
  return (code & 0x80) ? -magnitude : magnitude;
}

constexpr std::array<float, 256> make_fp8_table() {
  std::array<float, 256> table{};
  for (int c = 0; c < 256; ++c) table[c] = fp8_e4m3_value(static_cast<std::uint8_t>(c));
  return table;
}

constexpr std::array<float, 256> kFp8Table = make_fp8_table();

// Rounds a non-negative value below 2^31 to the nearest integer, ties to even, independently
// of the floating-point rounding mode.
std::uint32_t round_half_even(float a) {
  const auto whole = static_cast<std::uint32_t>(a);      // truncation
  const float fraction = a - static_cast<float>(whole);  // exact for a < 2^24
  if (fraction > 0.5f || (fraction == 0.5f && (whole & 1))) return whole + 1;
  return whole;
}

float abs_max(const float* x, int n) {
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  return amax;
}

}  // namespace

std::uint16_t bf16_encode(float x) {
  const auto u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040);
  return static_cast<std::uint16_t>((u + 0x7FFFu + ((u >> 16) & 1)) >> 16);
}

float bf16_decode(std::uint16_t bits) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

float bf16_round(float x) { return bf16_decode(bf16_encode(x)); }

std::uint8_t fp8_e4m3_encode(float x) {
  const auto u = std::bit_cast<std::uint32_t>(x);
  const auto sign = static_cast<std::uint8_t>((u >> 24) & 0x80);
  const std::uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return sign | 0x7F;  // NaN
  const float magnitude = std::bit_cast<float>(a);
  if (magnitude > kFp8E4m3Max) return sign | 0x7E;  // saturate (infinity included)
  if (magnitude < 0x1p-6f) {
    // Subnormal range: codes m x 2^-9, m = 0..7; m = 8 is the smallest normal, code 0x08.
    return sign | static_cast<std::uint8_t>(round_half_even(magnitude * 512.0f));
  }
  // Normal: keep 3 of fp32's 23 mantissa bits, rounding to nearest even; a carry moves into
  // the exponent. fp32 biased exponents 121..135 map to E4M3 exponents 1..15.
  const std::uint32_t rounded = a + 0x7FFFFu + ((a >> 20) & 1);
  const std::uint32_t exponent = (rounded >> 23) - 120;
  const std::uint32_t mantissa = (rounded >> 20) & 7;
  return sign | static_cast<std::uint8_t>((exponent << 3) | mantissa);
}

float fp8_e4m3_decode(std::uint8_t code) { return kFp8Table[code]; }

std::int8_t int8_encode(float x) {
  if (std::isnan(x)) return 0;
  const float clamped = std::clamp(x, -kInt8Max, kInt8Max);
  const auto magnitude = static_cast<std::int32_t>(round_half_even(std::fabs(clamped)));
  return static_cast<std::int8_t>(clamped < 0 ? -magnitude : magnitude);
}

float kv_dtype_max_value(kv_cache_dtype dtype) {
  switch (dtype) {
    case kv_cache_dtype::kFp8E4m3:
      return kFp8E4m3Max;
    case kv_cache_dtype::kInt8:
      return kInt8Max;
    default:
      return 0.0f;
  }
}

float quantize_head(kv_cache_dtype dtype, const float* x, int head_dim, std::uint8_t* codes) {
  switch (dtype) {
    case kv_cache_dtype::kFp32:
      std::memcpy(codes, x, static_cast<std::size_t>(head_dim) * sizeof(float));
      return 1.0f;
    case kv_cache_dtype::kBf16:
      for (int i = 0; i < head_dim; ++i) {
        const std::uint16_t bits = bf16_encode(x[i]);
        std::memcpy(codes + 2 * static_cast<std::size_t>(i), &bits, sizeof(bits));
      }
      return 1.0f;
    case kv_cache_dtype::kFp8E4m3:
    case kv_cache_dtype::kInt8: {
      const float amax = abs_max(x, head_dim);
      if (!(amax >= kKvMinAmax)) {
        std::fill(codes, codes + head_dim, std::uint8_t{0});
        return 0.0f;
      }
      const float max_value = kv_dtype_max_value(dtype);
      const float scale = amax / max_value;
      const float inv = max_value / amax;
      if (dtype == kv_cache_dtype::kFp8E4m3) {
        for (int i = 0; i < head_dim; ++i) codes[i] = fp8_e4m3_encode(x[i] * inv);
      } else {
        for (int i = 0; i < head_dim; ++i) {
          codes[i] = static_cast<std::uint8_t>(int8_encode(x[i] * inv));
        }
      }
      return scale;
    }
    case kv_cache_dtype::kAuto:
      break;
  }
  return 0.0f;
}

void dequantize_head(kv_cache_dtype dtype, const std::uint8_t* codes, float scale, int head_dim,
                     float* out) {
  switch (dtype) {
    case kv_cache_dtype::kFp32:
      std::memcpy(out, codes, static_cast<std::size_t>(head_dim) * sizeof(float));
      return;
    case kv_cache_dtype::kBf16:
      for (int i = 0; i < head_dim; ++i) {
        std::uint16_t bits;
        std::memcpy(&bits, codes + 2 * static_cast<std::size_t>(i), sizeof(bits));
        out[i] = bf16_decode(bits);
      }
      return;
    case kv_cache_dtype::kFp8E4m3:
      for (int i = 0; i < head_dim; ++i) out[i] = kFp8Table[codes[i]] * scale;
      return;
    case kv_cache_dtype::kInt8:
      for (int i = 0; i < head_dim; ++i) {
        out[i] = static_cast<float>(static_cast<std::int8_t>(codes[i])) * scale;
      }
      return;
    case kv_cache_dtype::kAuto:
      return;
  }
}

}  // namespace kvserve
