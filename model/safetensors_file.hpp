#pragma once
/// A validated, memory-mapped safetensors file: an 8-byte header length, a JSON header naming
/// each tensor's dtype, shape and byte range, then the data. Every range is checked against the
/// file at open(), so a corrupt or truncated file is an error, never a crash.

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/mapped_file.hpp"
#include "model/model_weights.hpp"
#include "model/status.hpp"

namespace kvserve {

/// Element types of the format; kvserve converts F32, F16 and BF16 to fp32.
enum class safetensors_dtype { kF32, kF16, kBF16, kOther };

struct safetensors_tensor_info {
  std::string name;
  std::string dtype_name;  ///< as written: "F32", "BF16", "I64", ...
  safetensors_dtype dtype = safetensors_dtype::kOther;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  ///< byte range within the data section
  std::uint64_t end = 0;
};

class safetensors_file {
 public:
  /// kNotFound, kCorruptData (header length past the file, bad JSON, offsets out of range or
  /// not matching dtype x shape, overlapping tensors).
  static result<safetensors_file> open(const std::string& path);
  /// Validates an in-memory image (tests, fuzzing); the bytes are copied.
  static result<safetensors_file> parse(std::span<const std::uint8_t> bytes,
                                        std::string name = "<memory>");

  const std::string& path() const { return name_; }
  const std::vector<safetensors_tensor_info>& tensors() const { return tensors_; }
  const safetensors_tensor_info* find(std::string_view name) const;
  /// `__metadata__` string entries.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  /// The tensor converted to fp32 (row-major, its own shape). kUnsupported for dtypes other
  /// than F32, F16 and BF16.
  result<tensor_f32> read_f32(const safetensors_tensor_info& info) const;

 private:
  safetensors_file() = default;
  static result<safetensors_file> parse_image(safetensors_file file);

  mapped_file map_;
  std::vector<std::uint8_t> owned_;
  std::span<const std::uint8_t> bytes_;
  std::string name_;
  std::uint64_t data_offset_ = 0;
  std::vector<safetensors_tensor_info> tensors_;
  std::map<std::string, std::size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace kvserve
