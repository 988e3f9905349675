#include "model/safetensors_file.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

#include "model/dequantize.hpp"

namespace kvserve {
namespace {

constexpr std::uint64_t kMaxHeaderBytes = 100ull << 20;

struct dtype_row {
  const char* name;
  safetensors_dtype dtype;
  std::uint64_t size;
};

constexpr dtype_row kDtypes[] = {
    {"F32", safetensors_dtype::kF32, 4},       {"F16", safetensors_dtype::kF16, 2},
    {"BF16", safetensors_dtype::kBF16, 2},     {"F64", safetensors_dtype::kOther, 8},
    {"I64", safetensors_dtype::kOther, 8},     {"I32", safetensors_dtype::kOther, 4},
    {"I16", safetensors_dtype::kOther, 2},     {"I8", safetensors_dtype::kOther, 1},
    {"U8", safetensors_dtype::kOther, 1},      {"U16", safetensors_dtype::kOther, 2},
    {"U32", safetensors_dtype::kOther, 4},     {"U64", safetensors_dtype::kOther, 8},
    {"BOOL", safetensors_dtype::kOther, 1},    {"F8_E4M3", safetensors_dtype::kOther, 1},
    {"F8_E5M2", safetensors_dtype::kOther, 1},
};

}  // namespace

result<safetensors_file> safetensors_file::open(const std::string& path) {
  auto mapped = mapped_file::open(path);
  if (!mapped) return mapped.error();
  safetensors_file f;
  f.map_ = std::move(mapped).value();
  f.bytes_ = f.map_.bytes();
  f.name_ = path;
  return parse_image(std::move(f));
}

result<safetensors_file> safetensors_file::parse(std::span<const std::uint8_t> bytes,
                                                 std::string name) {
  safetensors_file f;
  f.owned_.assign(bytes.begin(), bytes.end());
  f.bytes_ = f.owned_;
  f.name_ = std::move(name);
  return parse_image(std::move(f));
}

result<safetensors_file> safetensors_file::parse_image(safetensors_file f) {
  auto corrupt = [&](const std::string& what) {
    return status(status_code::kCorruptData, f.name_ + ": " + what);
  };
  if (f.bytes_.size() < 8) return corrupt("too short for a safetensors header");
  std::uint64_t header_len = 0;
  std::memcpy(&header_len, f.bytes_.data(), 8);
  if (header_len > kMaxHeaderBytes || header_len > f.bytes_.size() - 8) {
    return corrupt("header length " + std::to_string(header_len) + " exceeds the file");
  }
  f.data_offset_ = 8 + header_len;
  const std::uint64_t data_size = f.bytes_.size() - f.data_offset_;
  const char* text = reinterpret_cast<const char*>(f.bytes_.data() + 8);
  nlohmann::json header = nlohmann::json::parse(text, text + header_len, nullptr, false);
  if (header.is_discarded() || !header.is_object()) return corrupt("header is not a JSON object");

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (v.is_object()) {
        for (auto m = v.begin(); m != v.end(); ++m) {
          if (m.value().is_string()) f.metadata_[m.key()] = m.value().get<std::string>();
        }
      }
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets") || !v["dtype"].is_string() || !v["shape"].is_array() ||
        !v["data_offsets"].is_array() || v["data_offsets"].size() != 2) {
      return corrupt("tensor '" + name + "' has a malformed entry");
    }
    safetensors_tensor_info t;
    t.name = name;
    t.dtype_name = v["dtype"].get<std::string>();
    std::uint64_t elem_size = 0;
    for (const dtype_row& row : kDtypes) {
      if (t.dtype_name == row.name) {
        t.dtype = row.dtype;
        elem_size = row.size;
      }
    }
    if (elem_size == 0) return corrupt("tensor '" + name + "' has unknown dtype " + t.dtype_name);
    std::uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) return corrupt("tensor '" + name + "' has an invalid shape");
      const auto dim = d.get<std::uint64_t>();
      if (dim > (1ull << 40) ||
          (dim != 0 && numel > std::numeric_limits<std::uint64_t>::max() / (dim * elem_size))) {
        return corrupt("tensor '" + name + "' has an invalid shape");
      }
      numel *= dim;
      t.shape.push_back(static_cast<std::int64_t>(dim));
    }
    const auto& off = v["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      return corrupt("tensor '" + name + "' has invalid data offsets");
    }
    t.begin = off[0].get<std::uint64_t>();
    t.end = off[1].get<std::uint64_t>();
    if (t.begin > t.end || t.end > data_size) {
      return corrupt("tensor '" + name + "' lies past the end of the file (truncated?)");
    }
    if (t.end - t.begin != numel * elem_size) {
      return corrupt("tensor '" + name + "' byte range does not match its dtype and shape");
    }
    f.tensors_.push_back(std::move(t));
  }
  // Tensors may not overlap (the format forbids it; a crafted file could alias them).
  std::vector<const safetensors_tensor_info*> order;
  for (const auto& t : f.tensors_) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const auto* a, const auto* b) { return a->begin < b->begin; });
  for (std::size_t i = 1; i < order.size(); ++i) {
    if (order[i]->begin < order[i - 1]->end) {
      return corrupt("tensors '" + order[i - 1]->name + "' and '" + order[i]->name + "' overlap");
    }
  }
  for (std::size_t i = 0; i < f.tensors_.size(); ++i) f.index_.emplace(f.tensors_[i].name, i);
  return f;
}

const safetensors_tensor_info* safetensors_file::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

result<tensor_f32> safetensors_file::read_f32(const safetensors_tensor_info& info) const {
  if (info.dtype == safetensors_dtype::kOther) {
    return status(status_code::kUnsupported, name_ + ": tensor '" + info.name + "' has dtype " +
                                                 info.dtype_name +
                                                 " (kvserve reads F32, F16, BF16)");
  }
  tensor_f32 t;
  t.shape = info.shape;
  const std::uint8_t* src = bytes_.data() + data_offset_ + info.begin;
  const std::size_t bytes = static_cast<std::size_t>(info.end - info.begin);
  const std::size_t n = info.dtype == safetensors_dtype::kF32 ? bytes / 4 : bytes / 2;
  t.data.resize(n);
  if (info.dtype == safetensors_dtype::kF32) {
    std::memcpy(t.data.data(), src, bytes);
  } else {
    for (std::size_t i = 0; i < n; ++i) {
      const auto h = static_cast<std::uint16_t>(src[2 * i] | (src[2 * i + 1] << 8));
      t.data[i] = info.dtype == safetensors_dtype::kF16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
    }
  }
  return t;
}

}  // namespace kvserve
