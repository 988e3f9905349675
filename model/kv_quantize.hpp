#pragma once
/// Host reference of the KV cache storage formats (model/kv_cache_dtype.hpp): bf16, FP8 E4M3
/// and INT8 with one fp32 scale per token and KV head. The CPU backend stores its KV with these
/// functions, and GPU tests use them as the oracle for the append and attention kernels.
///
/// Quantizing one head vector x[0..head_dim) of an 8-bit type with largest value M (448 for
/// E4M3, 127 for INT8), all in fp32 arithmetic:
///   amax  = max |x[i]|
///   if amax < kKvMinAmax (zero included): scale = 0, every code 0
///   else: scale = amax / M,  inv = M / amax,  code[i] = encode(x[i] * inv)
///   decode: x'[i] = decode(code[i]) * scale
/// Each of these is one correctly rounded fp32 operation, so a kernel that computes the same
/// expressions (IEEE division, no fast-math reciprocal) produces the same codes bit for bit.
/// kKvMinAmax keeps `inv` finite and `scale` a normal number, so flushing subnormals to zero
/// (as GPU kernels may) changes nothing either.

#include <cstdint>

#include "model/kv_cache_dtype.hpp"

namespace kvserve {

/// Largest finite FP8 E4M3 value (S.1111.110).
inline constexpr float kFp8E4m3Max = 448.0f;
/// Largest INT8 code used (symmetric: -128 is never produced).
inline constexpr float kInt8Max = 127.0f;
/// A head whose largest magnitude is below this (2^-100) is stored as scale 0 and zero codes.
inline constexpr float kKvMinAmax = 0x1p-100f;

/// fp32 -> bf16 bits, round to nearest even. NaN stays NaN (quiet), infinities stay infinite;
/// finite values beyond bf16's range round to infinity as IEEE rounding does.
std::uint16_t bf16_encode(float x);
/// bf16 bits -> fp32 (exact).
float bf16_decode(std::uint16_t bits);
/// x rounded to the nearest bf16 value (ties to even), as fp32.
float bf16_round(float x);

/// fp32 -> FP8 E4M3 (OCP "E4M3FN": bias 7, no infinities, NaN = S.1111.111): round to nearest
/// even, magnitudes above 448 (infinity included) saturate to +-448. A finite input never
/// gives NaN; NaN gives 0x7F (with its sign bit). -0 gives 0x80.
std::uint8_t fp8_e4m3_encode(float x);
/// FP8 E4M3 code -> fp32 (exact); 0x7F and 0xFF are NaN.
float fp8_e4m3_decode(std::uint8_t code);

/// fp32 -> INT8: round to nearest (ties to even, as CUDA's __float2int_rn), clamp to
/// [-127, 127]. NaN gives 0.
std::int8_t int8_encode(float x);
/// INT8 -> fp32 (exact).
inline float int8_decode(std::int8_t code) { return static_cast<float>(code); }

/// M of the formula above: 448 for kFp8E4m3, 127 for kInt8, 0 for types without scales.
float kv_dtype_max_value(kv_cache_dtype dtype);

/// Stores one head vector `x` (finite values) of `head_dim` elements in `dtype` (resolved: not
/// kAuto) into `codes`, which holds head_dim x kv_element_bytes(dtype) bytes: fp32 and bf16
/// elements as little-endian bit patterns, 8-bit types one byte per element (INT8 as two's
/// complement). Returns the scale to store beside the codes for the 8-bit types (formula
/// above), and 1 for fp32 and bf16, which have none.
float quantize_head(kv_cache_dtype dtype, const float* x, int head_dim, std::uint8_t* codes);

/// The inverse of quantize_head: out[i] = decode(codes[i]) * scale for the 8-bit types, the
/// stored value for fp32 and bf16 (`scale` ignored).
void dequantize_head(kv_cache_dtype dtype, const std::uint8_t* codes, float scale, int head_dim,
                     float* out);

}  // namespace kvserve
