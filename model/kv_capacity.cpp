#include "model/kv_capacity.hpp"

#include <algorithm>
#include <cstdio>

#include "model/backend.hpp"

namespace kvserve {

namespace {

std::size_t per_token_bytes(std::size_t layers, std::size_t kv_heads, std::size_t head_dim,
                            std::size_t element_bytes, std::size_t scale_bytes) {
  return 2 * layers * kv_heads * (head_dim * element_bytes + scale_bytes);
}

std::string bytes_text(std::uint64_t bytes) {
  char buf[64];
  if (bytes >= (1ull << 30)) {
    std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1ull << 30));
  } else if (bytes >= (1ull << 20)) {
    std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(bytes) / (1ull << 20));
  } else {
    std::snprintf(buf, sizeof buf, "%llu bytes", static_cast<unsigned long long>(bytes));
  }
  return buf;
}

}  // namespace

std::int64_t kv_blocks_per_sequence(int context_len, int block_size) {
  if (context_len <= 0 || block_size <= 0) return 0;
  return (static_cast<std::int64_t>(context_len) + block_size - 1) / block_size;
}

std::int64_t kv_max_sequences(std::int64_t num_blocks, int block_size, int context_len) {
  const std::int64_t per_seq = kv_blocks_per_sequence(context_len, block_size);
  if (per_seq == 0 || num_blocks <= 0) return 0;
  return num_blocks / per_seq;
}

kv_capacity compute_kv_capacity(const model_config& model, kv_cache_dtype dtype, int block_size,
                                std::int64_t num_blocks, int max_model_len) {
  kv_capacity c;
  c.dtype = dtype;
  c.num_layers = std::max(model.num_layers, 0);
  c.num_heads = std::max(model.num_heads, 0);
  c.num_kv_heads = std::max(model.num_kv_heads, 0);
  c.head_dim = std::max(model.head_dim, 0);
  c.element_bytes = kv_element_bytes(dtype);
  c.scale_bytes = kv_dtype_has_scales(dtype) ? sizeof(float) : 0;
  c.bytes_per_token =
      per_token_bytes(c.num_layers, c.num_kv_heads, c.head_dim, c.element_bytes, c.scale_bytes);
  c.bytes_per_token_without_gqa =
      per_token_bytes(c.num_layers, c.num_heads, c.head_dim, c.element_bytes, c.scale_bytes);
  c.block_size = std::max(block_size, 0);
  c.num_blocks = std::max<std::int64_t>(num_blocks, 0);
  c.num_tokens = c.num_blocks * c.block_size;
  c.pool_bytes = static_cast<std::uint64_t>(c.num_tokens) * c.bytes_per_token;
  c.max_model_len = std::max(max_model_len, 0);

  std::vector<int> contexts;
  for (int len : kStandardContexts) {
    if (len < c.max_model_len) contexts.push_back(len);
  }
  if (c.max_model_len > 0) contexts.push_back(c.max_model_len);
  for (int len : contexts) {
    c.sequences.push_back(
        {len, kv_max_sequences(c.num_blocks, c.block_size, len), len == c.max_model_len});
  }
  return c;
}

kv_capacity describe_kv_capacity(const backend& model_backend, int max_model_len) {
  kv_capacity c =
      compute_kv_capacity(model_backend.config(), model_backend.kv_dtype(),
                          model_backend.block_size(), model_backend.num_kv_blocks(), max_model_len);
  const std::size_t reported = model_backend.kv_bytes_per_token();
  if (reported != 0 && reported != c.bytes_per_token) {
    // The backend knows its layout best (kAuto from a backend that does not say, padding).
    c.bytes_per_token = reported;
    c.pool_bytes = static_cast<std::uint64_t>(c.num_tokens) * reported;
    // Any layout costs the same per KV head: scale by query heads over KV heads.
    c.bytes_per_token_without_gqa =
        c.num_kv_heads > 0 ? reported * static_cast<std::size_t>(c.num_heads) / c.num_kv_heads : 0;
  }
  return c;
}

std::string format_kv_capacity(const kv_capacity& c) {
  std::string out = "KV cache ";
  out += to_string(c.dtype);
  out += ": " + std::to_string(c.bytes_per_token) + " bytes per token";
  const std::size_t formula =
      per_token_bytes(c.num_layers, c.num_kv_heads, c.head_dim, c.element_bytes, c.scale_bytes);
  if (c.element_bytes > 0) {
    out += formula == c.bytes_per_token ? " = " : " (formula: ";
    out += "2 (K,V) x " + std::to_string(c.num_layers) + " layers x " +
           std::to_string(c.num_kv_heads) + " KV heads x ";
    const std::string values = std::to_string(c.head_dim) + " head dim x " +
                               std::to_string(c.element_bytes) +
                               (c.element_bytes == 1 ? " byte" : " bytes");
    if (c.scale_bytes > 0) {
      out += "(" + values + " + " + std::to_string(c.scale_bytes) + " scale bytes)";
    } else {
      out += values;
    }
    if (formula != c.bytes_per_token) out += " = " + std::to_string(formula) + ")";
  }
  if (c.num_heads > c.num_kv_heads && c.bytes_per_token_without_gqa > 0) {
    char ratio[32];
    std::snprintf(ratio, sizeof ratio, "%.1fx",
                  static_cast<double>(c.num_heads) / static_cast<double>(c.num_kv_heads));
    out += " (vs " + std::to_string(c.bytes_per_token_without_gqa) +
           " without GQA: " + std::to_string(c.num_heads) + " KV heads, " + ratio + " more)";
  } else if (c.num_heads > 0 && c.num_heads == c.num_kv_heads) {
    out += " (no GQA: as many KV heads as query heads)";
  }
  out += "\nKV pool: " + std::to_string(c.num_blocks) + " blocks of " +
         std::to_string(c.block_size) + " tokens = " + std::to_string(c.num_tokens) +
         " tokens in " + bytes_text(c.pool_bytes) + "; max concurrent sequences:";
  if (c.sequences.empty()) out += " (no context length)";
  for (std::size_t i = 0; i < c.sequences.size(); ++i) {
    const kv_sequences_at_context& s = c.sequences[i];
    out += (i == 0 ? " " : ", ") + std::to_string(s.max_sequences) + " at " +
           std::to_string(s.context_len) + " tokens";
    if (s.is_max_model_len) out += " (max-model-len)";
  }
  return out;
}

}  // namespace kvserve
