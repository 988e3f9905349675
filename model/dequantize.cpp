#include "model/dequantize.hpp"

#include <array>
#include <bit>
#include <cstring>
#include <limits>

namespace kvserve {
namespace {

struct type_row {
  std::uint32_t id;
  ggml_type_traits traits;
};

// Block layouts of ggml's types (ggml.c's type_traits); ids 4, 5 and 31-33 are retired.
constexpr std::array<type_row, 30> kTypes = {{
    {0, {"F32", 1, 4}},         {1, {"F16", 1, 2}},         {2, {"Q4_0", 32, 18}},
    {3, {"Q4_1", 32, 20}},      {6, {"Q5_0", 32, 22}},      {7, {"Q5_1", 32, 24}},
    {8, {"Q8_0", 32, 34}},      {9, {"Q8_1", 32, 36}},      {10, {"Q2_K", 256, 84}},
    {11, {"Q3_K", 256, 110}},   {12, {"Q4_K", 256, 144}},   {13, {"Q5_K", 256, 176}},
    {14, {"Q6_K", 256, 210}},   {15, {"Q8_K", 256, 292}},   {16, {"IQ2_XXS", 256, 66}},
    {17, {"IQ2_XS", 256, 74}},  {18, {"IQ3_XXS", 256, 98}}, {19, {"IQ1_S", 256, 50}},
    {20, {"IQ4_NL", 32, 18}},   {21, {"IQ3_S", 256, 110}},  {22, {"IQ2_S", 256, 82}},
    {23, {"IQ4_XS", 256, 136}}, {24, {"I8", 1, 1}},         {25, {"I16", 1, 2}},
    {26, {"I32", 1, 4}},        {27, {"I64", 1, 8}},        {28, {"F64", 1, 8}},
    {29, {"IQ1_M", 256, 56}},   {30, {"BF16", 1, 2}},       {35, {"TQ2_0", 256, 66}},
}};

std::uint16_t load_u16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}
float load_f16(const std::uint8_t* p) { return fp16_to_fp32(load_u16(p)); }

void dequant_q4_0(const std::uint8_t* b, float* y) {
  const float d = load_f16(b);
  const std::uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
    y[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
  }
}

void dequant_q4_1(const std::uint8_t* b, float* y) {
  const float d = load_f16(b);
  const float m = load_f16(b + 2);
  const std::uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
    y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
  }
}

void dequant_q5(const std::uint8_t* b, float* y, bool has_min) {
  const float d = load_f16(b);
  const float m = has_min ? load_f16(b + 2) : 0.0f;
  const std::uint8_t* p = b + (has_min ? 4 : 2);
  std::uint32_t qh = 0;
  std::memcpy(&qh, p, 4);  // little-endian hosts only, as GGUF itself
  const std::uint8_t* qs = p + 4;
  const int offset = has_min ? 0 : 16;
  for (int j = 0; j < 16; ++j) {
    const int hi0 = static_cast<int>((qh >> j) & 1u) << 4;
    const int hi1 = static_cast<int>((qh >> (j + 16)) & 1u) << 4;
    y[j] = static_cast<float>(((qs[j] & 0x0F) | hi0) - offset) * d + m;
    y[j + 16] = static_cast<float>(((qs[j] >> 4) | hi1) - offset) * d + m;
  }
}

void dequant_q8_0(const std::uint8_t* b, float* y) {
  const float d = load_f16(b);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<std::int8_t>(b[2 + j])) * d;
}

// Q4_K: 8 sub-blocks of 32 with 6-bit scales and mins packed into 12 bytes.
void q4_k_scale_min(int j, const std::uint8_t* q, int& sc, int& mn) {
  if (j < 4) {
    sc = q[j] & 63;
    mn = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
    mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

void dequant_q4_k(const std::uint8_t* b, float* y) {
  const float d = load_f16(b);
  const float dmin = load_f16(b + 2);
  const std::uint8_t* scales = b + 4;
  const std::uint8_t* q = b + 16;
  for (int j = 0; j < 256; j += 64) {
    const int is = j / 32;
    int sc = 0, mn = 0;
    q4_k_scale_min(is, scales, sc, mn);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(mn);
    q4_k_scale_min(is + 1, scales, sc, mn);
    const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(mn);
    for (int l = 0; l < 32; ++l) y[j + l] = d1 * static_cast<float>(q[l] & 0x0F) - m1;
    for (int l = 0; l < 32; ++l) y[j + 32 + l] = d2 * static_cast<float>(q[l] >> 4) - m2;
    q += 32;
  }
}

// Q6_K: 4-bit low parts, 2-bit high parts, 16 int8 scales, one fp16 super-scale.
void dequant_q6_k(const std::uint8_t* b, float* y) {
  const std::uint8_t* ql = b;
  const std::uint8_t* qh = b + 128;
  const auto* sc = reinterpret_cast<const std::int8_t*>(b + 192);
  const float d = load_f16(b + 208);
  for (int n = 0; n < 256; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[n + l] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
      y[n + l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
      y[n + l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
      y[n + l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
    }
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

}  // namespace

float fp16_to_fp32(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1Fu;
  std::uint32_t mant = h & 0x3FFu;
  std::uint32_t bits = 0;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      bits = sign | (static_cast<std::uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3FFu) << 13);
    }
  } else if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

float bf16_to_fp32(std::uint16_t h) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

std::optional<ggml_type_traits> ggml_type_info(std::uint32_t type) {
  for (const type_row& row : kTypes) {
    if (row.id == type) return row.traits;
  }
  return std::nullopt;
}

std::string ggml_type_name(std::uint32_t type) {
  if (auto info = ggml_type_info(type)) return info->name;
  return "type " + std::to_string(type);
}

bool can_dequantize(std::uint32_t type) {
  switch (static_cast<ggml_type>(type)) {
    case ggml_type::kF32:
    case ggml_type::kF16:
    case ggml_type::kBF16:
    case ggml_type::kQ4_0:
    case ggml_type::kQ4_1:
    case ggml_type::kQ5_0:
    case ggml_type::kQ5_1:
    case ggml_type::kQ8_0:
    case ggml_type::kQ4_K:
    case ggml_type::kQ6_K:
      return true;
  }
  return false;
}

std::optional<std::uint64_t> ggml_tensor_bytes(std::uint32_t type, std::uint64_t num_elements) {
  auto info = ggml_type_info(type);
  if (!info) return std::nullopt;
  const auto block = static_cast<std::uint64_t>(info->block_size);
  const auto size = static_cast<std::uint64_t>(info->type_size);
  if (num_elements % block != 0) return std::nullopt;
  const std::uint64_t blocks = num_elements / block;
  if (blocks > std::numeric_limits<std::uint64_t>::max() / size) return std::nullopt;
  return blocks * size;
}

status dequantize(std::uint32_t type, std::span<const std::uint8_t> src, std::span<float> dst) {
  if (!can_dequantize(type)) {
    return status(status_code::kUnsupported,
                  "tensor type " + ggml_type_name(type) + " is not supported (kvserve reads " +
                      "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K and Q6_K)");
  }
  auto bytes = ggml_tensor_bytes(type, dst.size());
  if (!bytes || *bytes != src.size()) {
    return status(status_code::kInvalidArgument,
                  "dequantize: " + std::to_string(src.size()) + " bytes do not hold " +
                      std::to_string(dst.size()) + " elements of " + ggml_type_name(type));
  }
  const std::uint8_t* s = src.data();
  float* y = dst.data();
  const std::size_t n = dst.size();
  const auto info = *ggml_type_info(type);
  const std::size_t blocks = n / static_cast<std::size_t>(info.block_size);
  const auto bs = static_cast<std::size_t>(info.block_size);
  const auto ts = static_cast<std::size_t>(info.type_size);
  switch (static_cast<ggml_type>(type)) {
    case ggml_type::kF32:
      std::memcpy(y, s, n * sizeof(float));
      break;
    case ggml_type::kF16:
      for (std::size_t i = 0; i < n; ++i) y[i] = load_f16(s + 2 * i);
      break;
    case ggml_type::kBF16:
      for (std::size_t i = 0; i < n; ++i) y[i] = bf16_to_fp32(load_u16(s + 2 * i));
      break;
    case ggml_type::kQ4_0:
      for (std::size_t i = 0; i < blocks; ++i) dequant_q4_0(s + i * ts, y + i * bs);
      break;
    case ggml_type::kQ4_1:
      for (std::size_t i = 0; i < blocks; ++i) dequant_q4_1(s + i * ts, y + i * bs);
      break;
    case ggml_type::kQ5_0:
      for (std::size_t i = 0; i < blocks; ++i) dequant_q5(s + i * ts, y + i * bs, false);
      break;
    case ggml_type::kQ5_1:
      for (std::size_t i = 0; i < blocks; ++i) dequant_q5(s + i * ts, y + i * bs, true);
      break;
    case ggml_type::kQ8_0:
      for (std::size_t i = 0; i < blocks; ++i) dequant_q8_0(s + i * ts, y + i * bs);
      break;
    case ggml_type::kQ4_K:
      for (std::size_t i = 0; i < blocks; ++i) dequant_q4_k(s + i * ts, y + i * bs);
      break;
    case ggml_type::kQ6_K:
      for (std::size_t i = 0; i < blocks; ++i) dequant_q6_k(s + i * ts, y + i * bs);
      break;
  }
  return status::ok();
}

}  // namespace kvserve
