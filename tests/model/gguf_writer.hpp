#pragma once
// Test helper: writes GGUF images in memory (version 3, little-endian), so tests can make small
// models of every tensor type and corrupt them at will.

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace kvserve::testing_support {

class gguf_writer {
 public:
  explicit gguf_writer(std::uint32_t version = 3, std::uint64_t alignment = 32)
      : version_(version), alignment_(alignment) {}

  void add_u32(const std::string& key, std::uint32_t v) { kv(key, 4, pod(v)); }
  void add_i32(const std::string& key, std::int32_t v) { kv(key, 5, pod(v)); }
  void add_f32(const std::string& key, float v) { kv(key, 6, pod(v)); }
  void add_bool(const std::string& key, bool v) { kv(key, 7, {static_cast<std::uint8_t>(v)}); }
  void add_u64(const std::string& key, std::uint64_t v) { kv(key, 10, pod(v)); }
  void add_i64(const std::string& key, std::int64_t v) { kv(key, 11, pod(v)); }
  void add_f64(const std::string& key, double v) { kv(key, 12, pod(v)); }
  void add_u8(const std::string& key, std::uint8_t v) { kv(key, 0, {v}); }
  void add_i8(const std::string& key, std::int8_t v) { kv(key, 1, pod(v)); }
  void add_u16(const std::string& key, std::uint16_t v) { kv(key, 2, pod(v)); }
  void add_i16(const std::string& key, std::int16_t v) { kv(key, 3, pod(v)); }
  void add_string(const std::string& key, const std::string& v) { kv(key, 8, str(v)); }
  void add_string_array(const std::string& key, const std::vector<std::string>& v) {
    std::vector<std::uint8_t> b = pod(std::uint32_t{8});
    append(b, pod(static_cast<std::uint64_t>(v.size())));
    for (const auto& s : v) append(b, str(s));
    kv(key, 9, b);
  }
  void add_i32_array(const std::string& key, const std::vector<std::int32_t>& v) {
    std::vector<std::uint8_t> b = pod(std::uint32_t{5});
    append(b, pod(static_cast<std::uint64_t>(v.size())));
    for (auto x : v) append(b, pod(x));
    kv(key, 9, b);
  }
  void add_f32_array(const std::string& key, const std::vector<float>& v) {
    std::vector<std::uint8_t> b = pod(std::uint32_t{6});
    append(b, pod(static_cast<std::uint64_t>(v.size())));
    for (auto x : v) append(b, pod(x));
    kv(key, 9, b);
  }
  /// Raw metadata entry (for corrupt-type tests).
  void add_raw(const std::string& key, std::uint32_t type, const std::vector<std::uint8_t>& v) {
    kv(key, type, v);
  }

  /// A tensor with GGUF dims (fastest first) and its raw bytes.
  void add_tensor(const std::string& name, std::vector<std::uint64_t> dims, std::uint32_t type,
                  std::vector<std::uint8_t> bytes) {
    tensors_.push_back({name, std::move(dims), type, std::move(bytes)});
  }

  std::vector<std::uint8_t> bytes() const {
    std::vector<std::uint8_t> out;
    append(out, pod(std::uint32_t{0x46554747}));
    append(out, pod(version_));
    append(out, pod(static_cast<std::uint64_t>(tensors_.size())));
    append(out, pod(static_cast<std::uint64_t>(num_kv_)));
    append(out, kv_bytes_);
    std::uint64_t offset = 0;
    std::vector<std::uint64_t> offsets;
    for (const auto& t : tensors_) {
      append(out, str(t.name));
      append(out, pod(static_cast<std::uint32_t>(t.dims.size())));
      for (auto d : t.dims) append(out, pod(d));
      append(out, pod(t.type));
      append(out, pod(offset));
      offsets.push_back(offset);
      offset += (t.bytes.size() + alignment_ - 1) / alignment_ * alignment_;
    }
    while (out.size() % alignment_ != 0) out.push_back(0);
    for (const auto& t : tensors_) {
      append(out, t.bytes);
      while (out.size() % alignment_ != 0) out.push_back(0);
    }
    return out;
  }

 private:
  struct tensor {
    std::string name;
    std::vector<std::uint64_t> dims;
    std::uint32_t type;
    std::vector<std::uint8_t> bytes;
  };
  template <class T>
  static std::vector<std::uint8_t> pod(T v) {
    std::vector<std::uint8_t> b(sizeof(T));
    std::memcpy(b.data(), &v, sizeof(T));
    return b;
  }
  static std::vector<std::uint8_t> str(const std::string& s) {
    std::vector<std::uint8_t> b(8 + s.size());
    const auto n = static_cast<std::uint64_t>(s.size());
    std::memcpy(b.data(), &n, 8);
    if (!s.empty()) std::memcpy(b.data() + 8, s.data(), s.size());
    return b;
  }
  static void append(std::vector<std::uint8_t>& a, const std::vector<std::uint8_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
  }
  void kv(const std::string& key, std::uint32_t type, const std::vector<std::uint8_t>& value) {
    append(kv_bytes_, str(key));
    append(kv_bytes_, pod(type));
    append(kv_bytes_, value);
    ++num_kv_;
  }

  std::uint32_t version_;
  std::uint64_t alignment_;
  std::vector<std::uint8_t> kv_bytes_;
  std::size_t num_kv_ = 0;
  std::vector<tensor> tensors_;
};

}  // namespace kvserve::testing_support
