#include "model/kv_cache_dtype.hpp"

#include <string>

namespace kvserve {

result<kv_cache_dtype> parse_kv_cache_dtype(std::string_view text) {
  if (text == "auto") return kv_cache_dtype::kAuto;
  if (text == "fp32") return kv_cache_dtype::kFp32;
  if (text == "bf16") return kv_cache_dtype::kBf16;
  if (text == "fp8" || text == "fp8_e4m3") return kv_cache_dtype::kFp8E4m3;
  if (text == "int8") return kv_cache_dtype::kInt8;
  return status(status_code::kInvalidArgument,
                "--kv-cache-dtype '" + std::string(text) + "': expected auto, bf16, fp8 or int8");
}

const char* to_string(kv_cache_dtype dtype) {
  switch (dtype) {
    case kv_cache_dtype::kAuto:
      return "auto";
    case kv_cache_dtype::kFp32:
      return "fp32";
    case kv_cache_dtype::kBf16:
      return "bf16";
    case kv_cache_dtype::kFp8E4m3:
      return "fp8_e4m3";
    case kv_cache_dtype::kInt8:
      return "int8";
  }
  return "unknown";
}

std::size_t kv_element_bytes(kv_cache_dtype dtype) {
  switch (dtype) {
    case kv_cache_dtype::kFp32:
      return 4;
    case kv_cache_dtype::kBf16:
      return 2;
    case kv_cache_dtype::kFp8E4m3:
    case kv_cache_dtype::kInt8:
      return 1;
    case kv_cache_dtype::kAuto:
      return 0;
  }
  return 0;
}

std::size_t kv_bytes_per_token(const model_config& config, kv_cache_dtype dtype) {
  const std::size_t scale_bytes = kv_dtype_has_scales(dtype) ? sizeof(float) : 0;
  const std::size_t per_head =
      static_cast<std::size_t>(config.head_dim) * kv_element_bytes(dtype) + scale_bytes;
  if (dtype == kv_cache_dtype::kAuto) return 0;
  return 2 * static_cast<std::size_t>(config.num_layers) * config.num_kv_heads * per_head;
}

}  // namespace kvserve
