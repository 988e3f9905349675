#pragma once
/// Device side of the 8-bit KV formats (model/kv_quantize.hpp is the host reference): encoding
/// one head vector per warp with its own scale, and decoding codes to floats in the attention
/// kernels. Encoding uses the reference's expressions (amax, scale = amax / M, inv = M / amax,
/// encode(x * inv)) with IEEE division, so codes and scales match it bit for bit.

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "cuda/device_math.cuh"
#include "cuda/kernels.hpp"

namespace kvserve::cuda {

/// Largest code value M: 448 for E4M3, 127 for INT8.
template <kv_storage S>
__host__ __device__ constexpr float kv_max_value() {
  return S == kv_storage::kFp8E4m3 ? 448.0f : 127.0f;
}
/// Heads with amax below this (model/kv_quantize.hpp's kKvMinAmax) store scale 0, zero codes.
inline constexpr float kKvMinAmaxDevice = 0x1p-100f;

/// One already scaled value to its code: E4M3 with round to nearest even and saturation to
/// +-448; INT8 clamped to +-127 and rounded to nearest even.
template <kv_storage S>
__device__ __forceinline__ std::uint8_t kv_encode(float x) {
  if constexpr (S == kv_storage::kFp8E4m3) {
    return static_cast<std::uint8_t>(__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3));
  } else {
    const int r = __float2int_rn(fminf(fmaxf(x, -127.0f), 127.0f));
    return static_cast<std::uint8_t>(static_cast<std::int8_t>(r));
  }
}

/// Quantizes a head vector spread over a warp (N values per lane; every lane of the warp
/// calls it). Returns the scale; writes the lane's codes.
template <kv_storage S, int N>
__device__ __forceinline__ float kv_quantize_warp(const float (&x)[N], std::uint8_t (&codes)[N]) {
  float amax = 0.0f;
#pragma unroll
  for (int i = 0; i < N; ++i) amax = fmaxf(amax, fabsf(x[i]));
  amax = warp_max(amax);
  if (!(amax >= kKvMinAmaxDevice)) {
#pragma unroll
    for (int i = 0; i < N; ++i) codes[i] = 0;
    return 0.0f;
  }
  constexpr float M = kv_max_value<S>();
  const float scale = __fdiv_rn(amax, M);
  const float inv = __fdiv_rn(M, amax);
#pragma unroll
  for (int i = 0; i < N; ++i) codes[i] = kv_encode<S>(__fmul_rn(x[i], inv));
  return scale;
}

/// Four codes (one 32-bit word, lowest byte first) to floats, unscaled.
template <kv_storage S>
__device__ __forceinline__ void kv_decode4(std::uint32_t w, float* out) {
  if constexpr (S == kv_storage::kFp8E4m3) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const auto pair = static_cast<__nv_fp8x2_storage_t>(w >> (16 * i));
      const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(pair, __NV_E4M3);
      const float2 f = __half22float2(__half2(h));
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  } else {
    // Bias each byte to unsigned, place it in the mantissa of 2^23, subtract 2^23 + 128: exact.
    const std::uint32_t u = w ^ 0x80808080u;
    out[0] = __int_as_float(__byte_perm(u, 0x4B000000u, 0x7650)) - 8388736.0f;
    out[1] = __int_as_float(__byte_perm(u, 0x4B000000u, 0x7651)) - 8388736.0f;
    out[2] = __int_as_float(__byte_perm(u, 0x4B000000u, 0x7652)) - 8388736.0f;
    out[3] = __int_as_float(__byte_perm(u, 0x4B000000u, 0x7653)) - 8388736.0f;
  }
}

}  // namespace kvserve::cuda
