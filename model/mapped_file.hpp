#pragma once
/// A read-only memory map of a whole file (GGUF and safetensors loaders read tensors in place).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "model/status.hpp"

namespace kvserve {

/// Owns the mapping; movable, not copyable. An empty file maps to an empty span.
class mapped_file {
 public:
  /// kNotFound if the path does not exist, kInvalidArgument if it is not a regular file.
  static result<mapped_file> open(const std::string& path);

  mapped_file() = default;
  mapped_file(mapped_file&& other) noexcept;
  mapped_file& operator=(mapped_file&& other) noexcept;
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  ~mapped_file();

  std::span<const std::uint8_t> bytes() const { return {data_, size_}; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void reset();

  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  void* map_ = nullptr;  ///< mmap base, nullptr for an empty file
  std::string path_;
};

}  // namespace kvserve
