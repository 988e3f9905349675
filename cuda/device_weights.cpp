#include "cuda/device_weights.hpp"

#include <algorithm>
#include <string>

namespace kvserve::cuda {

device_weights::layout device_weights::plan_layout(const model_config& c) {
  layout l;
  const std::size_t h = c.hidden_size, v = c.vocab_size, inter = c.intermediate_size;
  const std::size_t q = c.q_size(), kv = c.kv_size();
  std::size_t m = 0, f = 0;
  l.embedding = m;
  m += v * h;
  l.lm_head = l.embedding;
  if (!c.tie_word_embeddings) {
    l.lm_head = m;
    m += v * h;
  }
  l.final_norm = f;
  f += h;
  for (int i = 0; i < c.num_layers; ++i) {
    layout::layer x{};
    x.attn_norm = f;
    f += h;
    x.ffn_norm = f;
    f += h;
    x.bq = f;  // biases are contiguous: Q, K, V
    x.bk = x.bq + q;
    x.bv = x.bk + kv;
    if (c.attention_bias) f += q + 2 * kv;
    x.wq = m;  // Q, K, V rows contiguous: one [q + 2 kv, hidden] matrix
    x.wk = x.wq + q * h;
    x.wv = x.wk + kv * h;
    m += (q + 2 * kv) * h;
    x.wo = m;
    m += h * q;
    x.w_gate = m;  // gate rows then up rows: one [2 inter, hidden] matrix
    x.w_up = x.w_gate + inter * h;
    m += 2 * inter * h;
    x.w_down = m;
    m += h * inter;
    l.layers.push_back(x);
  }
  l.mats = m;
  l.vecs = f;
  return l;
}

status device_weights::allocate(const model_config& c) {
  layout_ = plan_layout(c);
  KVSERVE_STATUS_TRY(mats_.allocate(layout_.mats, "allocating the bf16 weights"));
  KVSERVE_STATUS_TRY(vecs_.allocate(layout_.vecs, "allocating the norm weights"));
  embedding_ = mats_.get() + layout_.embedding;
  lm_head_ = mats_.get() + layout_.lm_head;
  final_norm_ = vecs_.get() + layout_.final_norm;
  layers_.clear();
  for (const auto& x : layout_.layers) {
    device_layer d;
    d.attn_norm = vecs_.get() + x.attn_norm;
    d.ffn_norm = vecs_.get() + x.ffn_norm;
    d.bqkv = c.attention_bias ? vecs_.get() + x.bq : nullptr;
    d.wqkv = mats_.get() + x.wq;
    d.wo = mats_.get() + x.wo;
    d.w_gate_up = mats_.get() + x.w_gate;
    d.w_down = mats_.get() + x.w_down;
    layers_.push_back(d);
  }
  return status::ok();
}

status device_weights::upload(const model_config& c, const model_weights& w, cudaStream_t stream) {
  if (static_cast<int>(w.layers.size()) != c.num_layers)
    return {status_code::kCorruptData, "weights have " + std::to_string(w.layers.size()) +
                                           " layers, the config " + std::to_string(c.num_layers)};
  KVSERVE_STATUS_TRY(allocate(c));
  const std::size_t h = c.hidden_size, v = c.vocab_size, inter = c.intermediate_size;
  const std::size_t q = c.q_size(), kv = c.kv_size();
  // fp32 staging on the device, converted to bf16 in chunks.
  constexpr std::size_t kChunk = std::size_t{16} << 20;
  device_buffer<float> staging;
  KVSERVE_STATUS_TRY(staging.allocate(kChunk, "allocating the weight staging buffer"));
  auto put_bf16 = [&](const tensor_f32& t, std::size_t expect, std::size_t offset,
                      const char* name) -> status {
    if (t.numel() != expect)
      return {status_code::kCorruptData, std::string("weight ") + name + " has " +
                                             std::to_string(t.numel()) + " elements, expected " +
                                             std::to_string(expect)};
    for (std::size_t done = 0; done < expect; done += kChunk) {
      const std::size_t n = std::min(kChunk, expect - done);
      KVSERVE_CUDA_TRY(cudaMemcpyAsync(staging.get(), t.data.data() + done, n * sizeof(float),
                                       cudaMemcpyHostToDevice, stream));
      KVSERVE_CUDA_TRY(launch_f32_to_bf16(staging.get(), static_cast<std::int64_t>(n),
                                          mats_.get() + offset + done, stream));
    }
    // The host tensor may be freed by the caller: finish before returning.
    KVSERVE_CUDA_TRY(cudaStreamSynchronize(stream));
    return status::ok();
  };
  auto put_f32 = [&](const tensor_f32& t, std::size_t expect, std::size_t offset,
                     const char* name) -> status {
    if (t.numel() != expect)
      return {status_code::kCorruptData, std::string("weight ") + name + " has " +
                                             std::to_string(t.numel()) + " elements, expected " +
                                             std::to_string(expect)};
    KVSERVE_CUDA_TRY(cudaMemcpyAsync(vecs_.get() + offset, t.data.data(), expect * sizeof(float),
                                     cudaMemcpyHostToDevice, stream));
    KVSERVE_CUDA_TRY(cudaStreamSynchronize(stream));
    return status::ok();
  };
  KVSERVE_STATUS_TRY(put_bf16(w.token_embedding, v * h, layout_.embedding, "token_embedding"));
  if (!c.tie_word_embeddings) {
    KVSERVE_STATUS_TRY(put_bf16(w.output_matrix(), v * h, layout_.lm_head, "lm_head"));
  }
  KVSERVE_STATUS_TRY(put_f32(w.final_norm, h, layout_.final_norm, "final_norm"));
  for (int i = 0; i < c.num_layers; ++i) {
    const auto& src = w.layers[i];
    const auto& x = layout_.layers[i];
    KVSERVE_STATUS_TRY(put_f32(src.attn_norm, h, x.attn_norm, "attn_norm"));
    KVSERVE_STATUS_TRY(put_f32(src.ffn_norm, h, x.ffn_norm, "ffn_norm"));
    KVSERVE_STATUS_TRY(put_bf16(src.wq, q * h, x.wq, "wq"));
    KVSERVE_STATUS_TRY(put_bf16(src.wk, kv * h, x.wk, "wk"));
    KVSERVE_STATUS_TRY(put_bf16(src.wv, kv * h, x.wv, "wv"));
    KVSERVE_STATUS_TRY(put_bf16(src.wo, h * q, x.wo, "wo"));
    KVSERVE_STATUS_TRY(put_bf16(src.w_gate, inter * h, x.w_gate, "w_gate"));
    KVSERVE_STATUS_TRY(put_bf16(src.w_up, inter * h, x.w_up, "w_up"));
    KVSERVE_STATUS_TRY(put_bf16(src.w_down, h * inter, x.w_down, "w_down"));
    if (c.attention_bias) {
      KVSERVE_STATUS_TRY(put_f32(src.bq, q, x.bq, "bq"));
      KVSERVE_STATUS_TRY(put_f32(src.bk, kv, x.bk, "bk"));
      KVSERVE_STATUS_TRY(put_f32(src.bv, kv, x.bv, "bv"));
    }
  }
  return status::ok();
}

status device_weights::make_dummy(const model_config& c, std::uint64_t seed, cudaStream_t stream) {
  KVSERVE_STATUS_TRY(allocate(c));
  // Uniform in [-a, a) has std a / sqrt(3): a = 0.02 * sqrt(3) gives std 0.02.
  const float a = 0.02f * 1.7320508f;
  KVSERVE_CUDA_TRY(launch_fill_uniform_bf16(mats_.get(), static_cast<std::int64_t>(layout_.mats),
                                            seed, a, stream));
  KVSERVE_CUDA_TRY(
      launch_fill_f32(vecs_.get(), static_cast<std::int64_t>(layout_.vecs), 1.0f, stream));
  if (c.attention_bias) {
    for (const auto& x : layout_.layers)
      KVSERVE_CUDA_TRY(
          launch_fill_f32(vecs_.get() + x.bq, c.q_size() + 2 * c.kv_size(), 0.0f, stream));
  }
  KVSERVE_CUDA_TRY(cudaStreamSynchronize(stream));
  return status::ok();
}

}  // namespace kvserve::cuda
