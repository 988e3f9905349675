#pragma once
/// The storage type of the paged KV cache (`--kv-cache-dtype`) and what one token costs in it.
///
/// 8-bit caches (FP8 E4M3 and INT8) keep one fp32 scale per token and KV head, for K and for V
/// separately: the scale of a token's head is its largest magnitude over the head dimension
/// divided by the type's largest value (448 for E4M3, 127 for INT8). A per-token scale is
/// known the moment the token is written, so appending never rescales earlier tokens, a block
/// written by one request is bit-identical to the same block written by another whatever the
/// chunking, and the cost is 4 bytes per 64-128 values (3-6%).

#include <cstddef>
#include <string_view>

#include "model/model_config.hpp"
#include "model/status.hpp"

namespace kvserve {

enum class kv_cache_dtype {
  kAuto,     ///< the backend's own: fp32 on the CPU reference, bf16 on the GPU
  kFp32,     ///< CPU only (the reference's default)
  kBf16,     ///< bfloat16 (round to nearest even)
  kFp8E4m3,  ///< FP8 E4M3 with per-token-and-head fp32 scales
  kInt8,     ///< symmetric INT8 with per-token-and-head fp32 scales
};

/// "auto", "fp32", "bf16", "fp8" (or "fp8_e4m3"), "int8"; kInvalidArgument otherwise.
result<kv_cache_dtype> parse_kv_cache_dtype(std::string_view text);

/// "auto", "fp32", "bf16", "fp8_e4m3", "int8".
const char* to_string(kv_cache_dtype dtype);

/// kAuto resolved against a backend's default (kFp32 or kBf16); other values unchanged.
constexpr kv_cache_dtype resolve(kv_cache_dtype dtype, kv_cache_dtype backend_default) {
  return dtype == kv_cache_dtype::kAuto ? backend_default : dtype;
}

/// Bytes of one stored K (or V) element: 4, 2, 1 or 1. 0 for kAuto.
std::size_t kv_element_bytes(kv_cache_dtype dtype);

/// True for the 8-bit types, which store a scale per token and KV head.
constexpr bool kv_dtype_has_scales(kv_cache_dtype dtype) {
  return dtype == kv_cache_dtype::kFp8E4m3 || dtype == kv_cache_dtype::kInt8;
}

/// Bytes of K and V for one token over all layers of `config`, scales included:
/// 2 x layers x KV heads x (head_dim x element bytes + scale bytes). 0 for kAuto.
std::size_t kv_bytes_per_token(const model_config& config, kv_cache_dtype dtype);

}  // namespace kvserve
