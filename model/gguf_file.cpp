#include "model/gguf_file.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "model/dequantize.hpp"

namespace kvserve {
namespace {

constexpr std::uint32_t kMagic = 0x46554747;  // "GGUF" read little-endian
constexpr std::uint64_t kMaxDims = 4;         // GGML_MAX_DIMS

/// Bounds-checked little-endian reader over the file image. Every read either succeeds or
/// records the first error; callers check ok() at the points where it matters.
class cursor {
 public:
  cursor(std::span<const std::uint8_t> bytes, const std::string& name)
      : bytes_(bytes), name_(name) {}

  bool ok() const { return err_.is_ok(); }
  const status& error() const { return err_; }
  std::uint64_t pos() const { return pos_; }
  std::uint64_t remaining() const { return bytes_.size() - pos_; }

  void fail(status_code code, const std::string& what) {
    if (err_.is_ok()) {
      err_ = status(code, name_ + ": " + what + " (at byte " + std::to_string(pos_) + ")");
    }
  }

  bool take(void* out, std::uint64_t n, const char* what) {
    if (!ok()) return false;
    if (n > bytes_.size() - pos_) {
      fail(status_code::kCorruptData, std::string("truncated file while reading ") + what);
      return false;
    }
    std::memcpy(out, bytes_.data() + pos_, n);
    pos_ += n;
    return true;
  }

  template <class T>
  T read(const char* what) {
    T v{};
    take(&v, sizeof(T), what);
    return v;
  }

  bool skip(std::uint64_t n, const char* what) {
    if (!ok()) return false;
    if (n > bytes_.size() - pos_) {
      fail(status_code::kCorruptData, std::string("truncated file while reading ") + what);
      return false;
    }
    pos_ += n;
    return true;
  }

  std::string read_string(const char* what, std::uint64_t max_bytes) {
    const auto len = read<std::uint64_t>(what);
    if (!ok()) return {};
    if (len > max_bytes) {
      fail(status_code::kCorruptData,
           std::string(what) + " of " + std::to_string(len) + " bytes exceeds the limit");
      return {};
    }
    if (len > bytes_.size() - pos_) {
      fail(status_code::kCorruptData, std::string("truncated file while reading ") + what);
      return {};
    }
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return s;
  }

 private:
  std::span<const std::uint8_t> bytes_;
  const std::string& name_;
  std::uint64_t pos_ = 0;
  status err_;
};

bool valid_value_type(std::uint32_t t) { return t <= 12; }

std::uint64_t scalar_size(gguf_value_type t) {
  switch (t) {
    case gguf_value_type::kUint8:
    case gguf_value_type::kInt8:
    case gguf_value_type::kBool:
      return 1;
    case gguf_value_type::kUint16:
    case gguf_value_type::kInt16:
      return 2;
    case gguf_value_type::kUint32:
    case gguf_value_type::kInt32:
    case gguf_value_type::kFloat32:
      return 4;
    case gguf_value_type::kUint64:
    case gguf_value_type::kInt64:
    case gguf_value_type::kFloat64:
      return 8;
    default:
      return 0;
  }
}

/// Reads one scalar of a numeric or bool type into the matching variant alternative.
void read_scalar(cursor& c, gguf_value_type t, gguf_value& out) {
  switch (t) {
    case gguf_value_type::kUint8:
      out.data = std::uint64_t{c.read<std::uint8_t>("value")};
      break;
    case gguf_value_type::kInt8:
      out.data = std::int64_t{c.read<std::int8_t>("value")};
      break;
    case gguf_value_type::kUint16:
      out.data = std::uint64_t{c.read<std::uint16_t>("value")};
      break;
    case gguf_value_type::kInt16:
      out.data = std::int64_t{c.read<std::int16_t>("value")};
      break;
    case gguf_value_type::kUint32:
      out.data = std::uint64_t{c.read<std::uint32_t>("value")};
      break;
    case gguf_value_type::kInt32:
      out.data = std::int64_t{c.read<std::int32_t>("value")};
      break;
    case gguf_value_type::kUint64:
      out.data = c.read<std::uint64_t>("value");
      break;
    case gguf_value_type::kInt64:
      out.data = c.read<std::int64_t>("value");
      break;
    case gguf_value_type::kFloat32:
      out.data = double{c.read<float>("value")};
      break;
    case gguf_value_type::kFloat64:
      out.data = c.read<double>("value");
      break;
    case gguf_value_type::kBool: {
      const auto b = c.read<std::uint8_t>("value");
      if (b > 1) c.fail(status_code::kCorruptData, "bool value " + std::to_string(b));
      out.data = b != 0;
      break;
    }
    default:
      c.fail(status_code::kCorruptData, "not a scalar type");
  }
}

void read_value(cursor& c, gguf_value_type t, gguf_value& out, const gguf_limits& limits,
                int depth);

void read_array(cursor& c, gguf_value& out, const gguf_limits& limits, int depth) {
  const auto et = c.read<std::uint32_t>("array element type");
  const auto n = c.read<std::uint64_t>("array length");
  if (!c.ok()) return;
  if (!valid_value_type(et)) {
    c.fail(status_code::kCorruptData, "invalid array element type " + std::to_string(et));
    return;
  }
  if (n > limits.max_array_elements) {
    c.fail(status_code::kCorruptData, "array of " + std::to_string(n) + " elements is too long");
    return;
  }
  out.element_type = static_cast<gguf_value_type>(et);
  out.array_size = n;
  switch (out.element_type) {
    case gguf_value_type::kString: {
      std::vector<std::string> v;
      // Each string takes at least its 8-byte length: never reserve more than the file holds.
      v.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(n, c.remaining() / 8)));
      for (std::uint64_t i = 0; i < n && c.ok(); ++i) {
        v.push_back(c.read_string("array string", limits.max_string_bytes));
      }
      out.data = std::move(v);
      break;
    }
    case gguf_value_type::kArray: {
      if (depth + 1 > limits.max_array_depth) {
        c.fail(status_code::kCorruptData, "arrays nested too deep");
        return;
      }
      for (std::uint64_t i = 0; i < n && c.ok(); ++i) {
        gguf_value inner;
        inner.type = gguf_value_type::kArray;
        read_array(c, inner, limits, depth + 1);
      }
      out.data = std::monostate{};
      break;
    }
    case gguf_value_type::kFloat32:
    case gguf_value_type::kFloat64: {
      const std::uint64_t size = scalar_size(out.element_type);
      std::vector<double> v;
      if (!c.skip(0, "array")) return;
      // Check the whole array fits before allocating.
      cursor probe = c;
      if (!probe.skip(n * size, "float array")) {
        c.skip(n * size, "float array");
        return;
      }
      v.reserve(static_cast<std::size_t>(n));
      gguf_value tmp;
      for (std::uint64_t i = 0; i < n; ++i) {
        read_scalar(c, out.element_type, tmp);
        v.push_back(*tmp.as_float());
      }
      out.data = std::move(v);
      break;
    }
    default: {
      const std::uint64_t size = scalar_size(out.element_type);
      cursor probe = c;
      if (!probe.skip(n * size, "integer array")) {
        c.skip(n * size, "integer array");
        return;
      }
      std::vector<std::int64_t> v;
      v.reserve(static_cast<std::size_t>(n));
      gguf_value tmp;
      for (std::uint64_t i = 0; i < n && c.ok(); ++i) {
        read_scalar(c, out.element_type, tmp);
        if (auto* u = std::get_if<std::uint64_t>(&tmp.data)) {
          v.push_back(static_cast<std::int64_t>(*u));
        } else if (auto* b = std::get_if<bool>(&tmp.data)) {
          v.push_back(*b ? 1 : 0);
        } else {
          v.push_back(std::get<std::int64_t>(tmp.data));
        }
      }
      out.data = std::move(v);
      break;
    }
  }
}

void read_value(cursor& c, gguf_value_type t, gguf_value& out, const gguf_limits& limits,
                int depth) {
  out.type = t;
  if (t == gguf_value_type::kString) {
    out.data = c.read_string("string value", limits.max_string_bytes);
  } else if (t == gguf_value_type::kArray) {
    read_array(c, out, limits, depth);
  } else {
    read_scalar(c, t, out);
  }
}

}  // namespace

const char* to_string(gguf_value_type type) {
  switch (type) {
    case gguf_value_type::kUint8:
      return "uint8";
    case gguf_value_type::kInt8:
      return "int8";
    case gguf_value_type::kUint16:
      return "uint16";
    case gguf_value_type::kInt16:
      return "int16";
    case gguf_value_type::kUint32:
      return "uint32";
    case gguf_value_type::kInt32:
      return "int32";
    case gguf_value_type::kFloat32:
      return "float32";
    case gguf_value_type::kBool:
      return "bool";
    case gguf_value_type::kString:
      return "string";
    case gguf_value_type::kArray:
      return "array";
    case gguf_value_type::kUint64:
      return "uint64";
    case gguf_value_type::kInt64:
      return "int64";
    case gguf_value_type::kFloat64:
      return "float64";
  }
  return "unknown";
}

std::optional<std::int64_t> gguf_value::as_int() const {
  if (auto* i = std::get_if<std::int64_t>(&data)) return *i;
  if (auto* u = std::get_if<std::uint64_t>(&data)) {
    if (*u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return static_cast<std::int64_t>(*u);
    }
    return std::nullopt;
  }
  if (auto* b = std::get_if<bool>(&data)) return *b ? 1 : 0;
  return std::nullopt;
}

std::optional<double> gguf_value::as_float() const {
  if (auto* d = std::get_if<double>(&data)) return *d;
  if (auto* i = std::get_if<std::int64_t>(&data)) return static_cast<double>(*i);
  if (auto* u = std::get_if<std::uint64_t>(&data)) return static_cast<double>(*u);
  return std::nullopt;
}

std::optional<bool> gguf_value::as_bool() const {
  if (auto* b = std::get_if<bool>(&data)) return *b;
  if (auto i = as_int()) return *i != 0;
  return std::nullopt;
}

const std::string* gguf_value::as_string() const { return std::get_if<std::string>(&data); }
const std::vector<std::int64_t>* gguf_value::as_int_array() const {
  return std::get_if<std::vector<std::int64_t>>(&data);
}
const std::vector<double>* gguf_value::as_float_array() const {
  return std::get_if<std::vector<double>>(&data);
}
const std::vector<std::string>* gguf_value::as_string_array() const {
  return std::get_if<std::vector<std::string>>(&data);
}

result<gguf_file> gguf_file::open(const std::string& path, const gguf_limits& limits) {
  auto mapped = mapped_file::open(path);
  if (!mapped) return mapped.error();
  gguf_file f;
  f.map_ = std::move(mapped).value();
  f.bytes_ = f.map_.bytes();
  f.name_ = path;
  return parse_image(std::move(f), limits);
}

result<gguf_file> gguf_file::parse(std::span<const std::uint8_t> bytes, std::string name,
                                   const gguf_limits& limits) {
  gguf_file f;
  f.owned_.assign(bytes.begin(), bytes.end());
  f.bytes_ = f.owned_;
  f.name_ = std::move(name);
  return parse_image(std::move(f), limits);
}

result<gguf_file> gguf_file::parse_image(gguf_file f, const gguf_limits& limits) {
  cursor c(f.bytes_, f.name_);
  const auto magic = c.read<std::uint32_t>("magic");
  if (!c.ok()) return status(status_code::kCorruptData, f.name_ + ": not a GGUF file (too short)");
  if (magic != kMagic) {
    return status(status_code::kCorruptData, f.name_ + ": not a GGUF file (bad magic)");
  }
  f.version_ = c.read<std::uint32_t>("version");
  if (!c.ok()) return c.error();
  if (f.version_ == 1) {
    return status(status_code::kUnsupported,
                  f.name_ + ": GGUF version 1 is not supported (convert it to version 3)");
  }
  if (f.version_ != 2 && f.version_ != 3) {
    const bool swapped = (f.version_ & 0xFFFFu) == 0 && f.version_ != 0;
    return status(status_code::kUnsupported,
                  f.name_ + (swapped ? ": big-endian GGUF files are not supported"
                                     : ": unsupported GGUF version " + std::to_string(f.version_)));
  }
  const auto num_tensors = c.read<std::uint64_t>("tensor count");
  const auto num_kv = c.read<std::uint64_t>("metadata count");
  if (!c.ok()) return c.error();
  if (num_tensors > limits.max_tensors || num_kv > limits.max_kv) {
    return status(status_code::kCorruptData, f.name_ + ": implausible counts (" +
                                                 std::to_string(num_tensors) + " tensors, " +
                                                 std::to_string(num_kv) + " metadata entries)");
  }

  for (std::uint64_t i = 0; i < num_kv; ++i) {
    std::string key = c.read_string("metadata key", limits.max_string_bytes);
    const auto type = c.read<std::uint32_t>("metadata type");
    if (!c.ok()) return c.error();
    if (!valid_value_type(type)) {
      c.fail(status_code::kCorruptData,
             "metadata '" + key + "' has invalid type " + std::to_string(type));
      return c.error();
    }
    gguf_value value;
    read_value(c, static_cast<gguf_value_type>(type), value, limits, 0);
    if (!c.ok()) return c.error();
    if (!f.metadata_.emplace(key, std::move(value)).second) {
      return status(status_code::kCorruptData, f.name_ + ": duplicate metadata key '" + key + "'");
    }
  }

  if (const gguf_value* a = f.find("general.alignment")) {
    auto v = a->as_int();
    if (!v || *v <= 0 || (*v & (*v - 1)) != 0 || *v > (1 << 20)) {
      return status(status_code::kCorruptData,
                    f.name_ + ": general.alignment must be a power of two");
    }
    f.alignment_ = static_cast<std::uint64_t>(*v);
  }

  // A tensor info takes at least 32 bytes: never reserve more than the file could describe.
  f.tensors_.reserve(
      static_cast<std::size_t>(std::min<std::uint64_t>(num_tensors, c.remaining() / 32)));
  for (std::uint64_t i = 0; i < num_tensors; ++i) {
    gguf_tensor_info t;
    t.name = c.read_string("tensor name", limits.max_string_bytes);
    const auto n_dims = c.read<std::uint32_t>("tensor dimension count");
    if (!c.ok()) return c.error();
    if (n_dims == 0 || n_dims > kMaxDims) {
      return status(status_code::kCorruptData, f.name_ + ": tensor '" + t.name + "' has " +
                                                   std::to_string(n_dims) + " dimensions");
    }
    t.num_elements = 1;
    for (std::uint32_t d = 0; d < n_dims; ++d) {
      const auto dim = c.read<std::uint64_t>("tensor dimension");
      if (!c.ok()) return c.error();
      if (dim == 0 || dim > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
          t.num_elements > std::numeric_limits<std::uint64_t>::max() / dim) {
        return status(status_code::kCorruptData,
                      f.name_ + ": tensor '" + t.name + "' has an invalid shape");
      }
      t.num_elements *= dim;
      t.dims.push_back(dim);
    }
    t.type = c.read<std::uint32_t>("tensor type");
    t.offset = c.read<std::uint64_t>("tensor offset");
    if (!c.ok()) return c.error();
    auto info = ggml_type_info(t.type);
    if (!info) {
      return status(
          status_code::kUnsupported,
          f.name_ + ": tensor '" + t.name + "' has unknown ggml type " + std::to_string(t.type));
    }
    if (t.dims[0] % static_cast<std::uint64_t>(info->block_size) != 0) {
      return status(status_code::kCorruptData,
                    f.name_ + ": tensor '" + t.name + "' row of " + std::to_string(t.dims[0]) +
                        " is not a whole number of " + info->name + " blocks");
    }
    auto bytes = ggml_tensor_bytes(t.type, t.num_elements);
    if (!bytes) {
      return status(status_code::kCorruptData,
                    f.name_ + ": tensor '" + t.name + "' has an invalid size");
    }
    t.num_bytes = *bytes;
    if (t.offset % f.alignment_ != 0) {
      return status(status_code::kCorruptData,
                    f.name_ + ": tensor '" + t.name + "' offset is not aligned");
    }
    if (!f.tensor_index_.emplace(t.name, f.tensors_.size()).second) {
      return status(status_code::kCorruptData, f.name_ + ": duplicate tensor '" + t.name + "'");
    }
    f.tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment.
  const std::uint64_t header_end = c.pos();
  const std::uint64_t rem = header_end % f.alignment_;
  f.data_offset_ = header_end + (rem == 0 ? 0 : f.alignment_ - rem);
  const std::uint64_t file_size = f.bytes_.size();
  if (!f.tensors_.empty() && f.data_offset_ > file_size) {
    return status(status_code::kCorruptData, f.name_ + ": truncated before the tensor data");
  }
  const std::uint64_t data_size = f.data_offset_ <= file_size ? file_size - f.data_offset_ : 0;
  for (const gguf_tensor_info& t : f.tensors_) {
    if (t.offset > data_size || t.num_bytes > data_size - t.offset) {
      return status(status_code::kCorruptData, f.name_ + ": tensor '" + t.name +
                                                   "' lies past the end of the file (truncated?)");
    }
  }
  return f;
}

const gguf_value* gguf_file::find(std::string_view key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

std::optional<std::int64_t> gguf_file::get_int(std::string_view key) const {
  const gguf_value* v = find(key);
  return v ? v->as_int() : std::nullopt;
}

std::optional<double> gguf_file::get_float(std::string_view key) const {
  const gguf_value* v = find(key);
  return v ? v->as_float() : std::nullopt;
}

std::optional<bool> gguf_file::get_bool(std::string_view key) const {
  const gguf_value* v = find(key);
  return v ? v->as_bool() : std::nullopt;
}

std::optional<std::string> gguf_file::get_string(std::string_view key) const {
  const gguf_value* v = find(key);
  if (v == nullptr || v->as_string() == nullptr) return std::nullopt;
  return *v->as_string();
}

const gguf_tensor_info* gguf_file::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const std::uint8_t> gguf_file::tensor_bytes(const gguf_tensor_info& info) const {
  return bytes_.subspan(static_cast<std::size_t>(data_offset_ + info.offset),
                        static_cast<std::size_t>(info.num_bytes));
}

}  // namespace kvserve
