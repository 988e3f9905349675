#pragma once
/// ggml tensor types and their dequantisation to fp32 (GGUF tensors are dequantised at load).

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "model/status.hpp"

namespace kvserve {

/// ggml's type ids as stored in GGUF tensor infos (only the ones kvserve names).
enum class ggml_type : std::uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ4_K = 12,
  kQ6_K = 14,
  kBF16 = 30,
};

/// Layout of a ggml type: `block_size` elements take `type_size` bytes.
struct ggml_type_traits {
  const char* name;
  std::int64_t block_size;
  std::int64_t type_size;
};

/// Traits of any known ggml type id (quantised ones kvserve cannot dequantise included, so a
/// file with them can still be read and the error can name the type); nullopt for unknown ids.
std::optional<ggml_type_traits> ggml_type_info(std::uint32_t type);

/// "Q4_K", or "type 99" for an unknown id.
std::string ggml_type_name(std::uint32_t type);

/// Whether dequantize() handles the type: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K,
/// Q6_K.
bool can_dequantize(std::uint32_t type);

/// Bytes of `num_elements` of `type`, nullopt when the type is unknown, the count is not a
/// whole number of blocks, or the size overflows.
std::optional<std::uint64_t> ggml_tensor_bytes(std::uint32_t type, std::uint64_t num_elements);

/// Dequantises `dst.size()` elements from `src`, which must hold exactly their bytes.
/// kUnsupported naming the type for a type can_dequantize() rejects; kInvalidArgument when
/// the sizes do not match.
[[nodiscard]] status dequantize(std::uint32_t type, std::span<const std::uint8_t> src,
                                std::span<float> dst);

/// IEEE half and bfloat16 to float (exact).
float fp16_to_fp32(std::uint16_t h);
float bf16_to_fp32(std::uint16_t h);

}  // namespace kvserve
