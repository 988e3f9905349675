#include "model/dequantize.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <limits>

namespace kvserve {
namespace {

using bytes = std::vector<std::uint8_t>;

void put_u16(bytes& b, std::size_t at, std::uint16_t v) {
  b[at] = static_cast<std::uint8_t>(v & 0xFF);
  b[at + 1] = static_cast<std::uint8_t>(v >> 8);
}

std::vector<float> run(ggml_type type, const bytes& src, std::size_t n) {
  std::vector<float> out(n);
  status s = dequantize(static_cast<std::uint32_t>(type), src, out);
  EXPECT_TRUE(s) << s.message();
  return out;
}

TEST(Dequantize, HalfAndBfloat16) {
  EXPECT_EQ(fp16_to_fp32(0x3C00), 1.0f);
  EXPECT_EQ(fp16_to_fp32(0xC000), -2.0f);
  EXPECT_EQ(fp16_to_fp32(0x7BFF), 65504.0f);
  EXPECT_EQ(fp16_to_fp32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(fp16_to_fp32(0x03FF), std::ldexp(1023.0f, -24));
  EXPECT_EQ(fp16_to_fp32(0x3555), 0.333251953125f);
  EXPECT_TRUE(std::isinf(fp16_to_fp32(0x7C00)));
  EXPECT_TRUE(std::isnan(fp16_to_fp32(0x7E00)));
  EXPECT_TRUE(std::signbit(fp16_to_fp32(0x8000)));
  EXPECT_EQ(bf16_to_fp32(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_fp32(0xC0A0), -5.0f);
}

TEST(Dequantize, FloatTypes) {
  bytes f32(8);
  const float v[2] = {1.5f, -3.0f};
  std::memcpy(f32.data(), v, 8);
  EXPECT_EQ(run(ggml_type::kF32, f32, 2), (std::vector<float>{1.5f, -3.0f}));
  bytes f16(4);
  put_u16(f16, 0, 0x3E00);  // 1.5
  put_u16(f16, 2, 0xC200);  // -3
  EXPECT_EQ(run(ggml_type::kF16, f16, 2), (std::vector<float>{1.5f, -3.0f}));
  bytes bf16(4);
  put_u16(bf16, 0, 0x3FC0);
  put_u16(bf16, 2, 0xC040);
  EXPECT_EQ(run(ggml_type::kBF16, bf16, 2), (std::vector<float>{1.5f, -3.0f}));
}

TEST(Dequantize, Q8_0) {
  bytes b(34);
  put_u16(b, 0, 0x3000);  // d = 0.125
  for (int j = 0; j < 32; ++j)
    b[2 + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(j * 8 - 128));
  const auto y = run(ggml_type::kQ8_0, b, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], (j * 8 - 128) * 0.125f) << j;
}

TEST(Dequantize, Q4_0AndQ4_1) {
  bytes b0(18), b1(20);
  put_u16(b0, 0, 0x3800);  // d = 0.5
  put_u16(b1, 0, 0x3400);  // d = 0.25
  put_u16(b1, 2, 0xBC00);  // m = -1
  for (int j = 0; j < 16; ++j) {
    const int lo = j, hi = 15 - j;
    b0[2 + j] = static_cast<std::uint8_t>(lo | (hi << 4));
    b1[4 + j] = static_cast<std::uint8_t>(lo | (hi << 4));
  }
  const auto y0 = run(ggml_type::kQ4_0, b0, 32);
  const auto y1 = run(ggml_type::kQ4_1, b1, 32);
  for (int j = 0; j < 16; ++j) {
    // Low nibbles fill the first half of the block, high nibbles the second.
    EXPECT_EQ(y0[j], (j - 8) * 0.5f);
    EXPECT_EQ(y0[j + 16], (15 - j - 8) * 0.5f);
    EXPECT_EQ(y1[j], j * 0.25f - 1.0f);
    EXPECT_EQ(y1[j + 16], (15 - j) * 0.25f - 1.0f);
  }
}

TEST(Dequantize, Q5_0AndQ5_1) {
  bytes b0(22), b1(24);
  put_u16(b0, 0, 0x3C00);  // d = 1
  put_u16(b1, 0, 0x3C00);
  put_u16(b1, 2, 0x4000);  // m = 2
  const std::uint32_t qh = 0xA5A5F00Fu;
  std::memcpy(b0.data() + 2, &qh, 4);
  std::memcpy(b1.data() + 4, &qh, 4);
  for (int j = 0; j < 16; ++j) {
    b0[6 + j] = static_cast<std::uint8_t>(j | ((j ^ 5) << 4));
    b1[8 + j] = static_cast<std::uint8_t>(j | ((j ^ 5) << 4));
  }
  const auto y0 = run(ggml_type::kQ5_0, b0, 32);
  const auto y1 = run(ggml_type::kQ5_1, b1, 32);
  for (int j = 0; j < 16; ++j) {
    const int lo = j | (((qh >> j) & 1) << 4);
    const int hi = (j ^ 5) | (((qh >> (j + 16)) & 1) << 4);
    EXPECT_EQ(y0[j], static_cast<float>(lo - 16));
    EXPECT_EQ(y0[j + 16], static_cast<float>(hi - 16));
    EXPECT_EQ(y1[j], static_cast<float>(lo + 2));
    EXPECT_EQ(y1[j + 16], static_cast<float>(hi + 2));
  }
}

// Random blocks of every quantised type, checked against the gguf Python package's values
// (scripts/make_dequant_fixtures.py).
TEST(Dequantize, MatchesGgufPackageBlockByBlock) {
  std::ifstream in(std::string(KVSERVE_TEST_DATA_DIR) + "/dequant_blocks.json");
  ASSERT_TRUE(in) << "missing tests/data/dequant_blocks.json";
  const nlohmann::json data = nlohmann::json::parse(in);
  int types = 0;
  for (const auto& t : data.at("types")) {
    const std::string hex = t.at("hex").get<std::string>();
    bytes raw(hex.size() / 2);
    for (std::size_t i = 0; i < raw.size(); ++i) {
      raw[i] = static_cast<std::uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
    }
    const auto expected = t.at("values").get<std::vector<float>>();
    std::vector<float> got(expected.size());
    const auto type = t.at("type_id").get<std::uint32_t>();
    ASSERT_TRUE(dequantize(type, raw, got)) << t.at("type");
    for (std::size_t i = 0; i < got.size(); ++i) {
      ASSERT_NEAR(got[i], expected[i], 1e-6f * std::max(1.0f, std::fabs(expected[i])))
          << t.at("type") << " element " << i;
    }
    ++types;
  }
  EXPECT_EQ(types, 7);
}

TEST(Dequantize, UnsupportedTypeIsNamed) {
  bytes b(176);
  std::vector<float> out(256);
  status s = dequantize(13, b, out);  // Q5_K
  EXPECT_EQ(s.code(), status_code::kUnsupported);
  EXPECT_NE(s.message().find("Q5_K"), std::string::npos);
  EXPECT_FALSE(can_dequantize(13));
  EXPECT_EQ(dequantize(777, b, out).code(), status_code::kUnsupported);
  EXPECT_EQ(ggml_type_name(777), "type 777");
}

TEST(Dequantize, SizeMismatchIsAnError) {
  bytes b(33);
  std::vector<float> out(32);
  EXPECT_EQ(dequantize(8, b, out).code(), status_code::kInvalidArgument);
  std::vector<float> partial(16);
  bytes ok(34);
  EXPECT_EQ(dequantize(8, ok, partial).code(), status_code::kInvalidArgument);
}

TEST(Dequantize, TensorBytes) {
  EXPECT_EQ(ggml_tensor_bytes(0, 10), 40u);
  EXPECT_EQ(ggml_tensor_bytes(8, 64), 68u);
  EXPECT_EQ(ggml_tensor_bytes(12, 512), 288u);
  EXPECT_FALSE(ggml_tensor_bytes(8, 33).has_value());
  EXPECT_FALSE(ggml_tensor_bytes(0, std::numeric_limits<std::uint64_t>::max()).has_value());
  EXPECT_FALSE(ggml_tensor_bytes(99, 1).has_value());
}

}  // namespace
}  // namespace kvserve
