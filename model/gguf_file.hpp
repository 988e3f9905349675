#pragma once
/// A validated, memory-mapped GGUF file (versions 2 and 3): metadata of every type, arrays
/// included, and tensor infos whose offsets and sizes are checked against the file, so that a
/// truncated or corrupt file is an error at open() and never a crash later.

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "model/mapped_file.hpp"
#include "model/status.hpp"

namespace kvserve {

/// GGUF metadata value types, with the file's numbering.
enum class gguf_value_type : std::uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

const char* to_string(gguf_value_type type);

/// One metadata value. Integers widen to int64/uint64, floats to double, bools stay bool;
/// arrays of integers and bools are stored as int64 (uint64 above INT64_MAX keeps its bits),
/// arrays of floats as double, arrays of strings as strings. Arrays of arrays are read and
/// validated but their contents are not kept.
struct gguf_value {
  gguf_value_type type = gguf_value_type::kUint8;
  gguf_value_type element_type = gguf_value_type::kUint8;  ///< arrays only
  std::variant<std::monostate, std::int64_t, std::uint64_t, double, bool, std::string,
               std::vector<std::int64_t>, std::vector<double>, std::vector<std::string>>
      data;
  std::uint64_t array_size = 0;  ///< arrays only

  bool is_array() const { return type == gguf_value_type::kArray; }
  /// Any integer or bool scalar, if it fits int64.
  std::optional<std::int64_t> as_int() const;
  /// Any integer or float scalar.
  std::optional<double> as_float() const;
  std::optional<bool> as_bool() const;
  const std::string* as_string() const;
  const std::vector<std::int64_t>* as_int_array() const;
  const std::vector<double>* as_float_array() const;
  const std::vector<std::string>* as_string_array() const;
};

/// Where a tensor lies; dims in GGUF order (dims[0] is the fastest-varying, i.e. a
/// [out, in] HF matrix has dims {in, out}).
struct gguf_tensor_info {
  std::string name;
  std::vector<std::uint64_t> dims;
  std::uint32_t type = 0;    ///< ggml type id (see dequantize.hpp)
  std::uint64_t offset = 0;  ///< from the start of the data section
  std::uint64_t num_elements = 0;
  std::uint64_t num_bytes = 0;
};

/// Limits that keep a hostile file from exhausting memory.
struct gguf_limits {
  std::uint64_t max_string_bytes = 64ull << 20;
  std::uint64_t max_array_elements = 1ull << 26;
  std::uint64_t max_tensors = 1ull << 20;
  std::uint64_t max_kv = 1ull << 20;
  int max_array_depth = 4;
};

/// Immutable after open(); tensor bytes are views into the mapping it owns.
class gguf_file {
 public:
  /// Maps and validates `path`. kNotFound, kCorruptData (bad magic, truncation, offsets out of
  /// bounds, misaligned tensors, duplicate names, sizes not a whole number of blocks),
  /// kUnsupported (version 1 or > 3, big-endian files, unknown tensor types).
  static result<gguf_file> open(const std::string& path, const gguf_limits& limits = {});
  /// Validates an in-memory image (for tests and fuzzing); the bytes are copied.
  static result<gguf_file> parse(std::span<const std::uint8_t> bytes, std::string name = "<memory>",
                                 const gguf_limits& limits = {});

  std::uint32_t version() const { return version_; }
  std::uint64_t alignment() const { return alignment_; }
  const std::string& path() const { return name_; }

  const std::map<std::string, gguf_value, std::less<>>& metadata() const { return metadata_; }
  const gguf_value* find(std::string_view key) const;
  std::optional<std::int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;

  const std::vector<gguf_tensor_info>& tensors() const { return tensors_; }
  const gguf_tensor_info* find_tensor(std::string_view name) const;
  /// The tensor's bytes (validated to lie inside the file).
  std::span<const std::uint8_t> tensor_bytes(const gguf_tensor_info& info) const;

 private:
  gguf_file() = default;
  static result<gguf_file> parse_image(gguf_file file, const gguf_limits& limits);

  mapped_file map_;
  std::vector<std::uint8_t> owned_;  ///< image when parsed from memory
  std::span<const std::uint8_t> bytes_;
  std::string name_;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = 32;
  std::uint64_t data_offset_ = 0;
  std::map<std::string, gguf_value, std::less<>> metadata_;
  std::vector<gguf_tensor_info> tensors_;
  std::map<std::string, std::size_t, std::less<>> tensor_index_;
};

}  // namespace kvserve
