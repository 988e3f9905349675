// The CUDA backend: device memory sizing, the forward pass over the paged KV pool, CUDA-graph
// decode per batch-size bucket, on-device sampling, and results back to the host.
#include "cuda/cuda_backend.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>

#include "cuda/cuda_check.hpp"
#include "cuda/device_memory.hpp"
#include "cuda/device_weights.hpp"
#include "cuda/gemm.hpp"
#include "cuda/kernels.hpp"
#include "cuda/sampling.hpp"
#include "cuda/step_inputs.hpp"
#include "model/rope.hpp"
#include "model/sampler.hpp"

namespace kvserve {

bool cuda_device_available() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return count > 0;
}

result<std::string> cuda_device_name(int ordinal) {
  cudaDeviceProp prop{};
  KVSERVE_CUDA_TRY(cudaGetDeviceProperties(&prop, ordinal));
  return std::string(prop.name);
}

namespace cuda {
namespace {

/// Decode batch-size buckets: 1, 2, 4, 8, then multiples of 8, capped at max_num_seqs.
int decode_bucket(int n, int max_num_seqs) {
  int b = n <= 1 ? 1 : n <= 2 ? 2 : n <= 4 ? 4 : n <= 8 ? 8 : (n + 7) / 8 * 8;
  return std::min(b, std::max(max_num_seqs, n));
}

bool is_power_of_two_block(int bs) {
  return bs == 2 || bs == 4 || bs == 8 || bs == 16 || bs == 32 || bs == 64;
}

class cuda_backend final : public backend {
 public:
  cuda_backend(const cuda_backend_config& config, model_config model)
      : config_(config), model_(std::move(model)) {}

  status init_common() {
    const auto& m = model_;
    if (!is_power_of_two_block(config_.block_size))
      return {status_code::kInvalidArgument, "block size must be 2, 4, 8, 16, 32 or 64"};
    dtype_ = resolve(config_.kv_dtype, kv_cache_dtype::kBf16);
    switch (dtype_) {
      case kv_cache_dtype::kBf16:
        storage_ = kv_storage::kBf16;
        break;
      case kv_cache_dtype::kFp8E4m3:
        storage_ = kv_storage::kFp8E4m3;
        break;
      case kv_cache_dtype::kInt8:
        storage_ = kv_storage::kInt8;
        break;
      default:
        return {status_code::kUnsupported,
                std::string("the CUDA backend stores the KV cache as bf16, fp8 or int8, not ") +
                    to_string(dtype_)};
    }
    if (m.head_dim != 64 && m.head_dim != 128)
      return {status_code::kUnsupported,
              "the CUDA backend supports head dims 64 and 128, not " + std::to_string(m.head_dim)};
    if (m.num_kv_heads <= 0 || m.num_heads % m.num_kv_heads != 0)
      return {status_code::kInvalidArgument, "num_heads must be a multiple of num_kv_heads"};
    if (m.hidden_size % 8 != 0 || m.intermediate_size % 8 != 0)
      return {status_code::kUnsupported, "hidden and intermediate sizes must be multiples of 8"};
    if (config_.gpu_memory_utilization <= 0.0 || config_.gpu_memory_utilization > 1.0)
      return {status_code::kInvalidArgument, "--gpu-memory-utilization must be in (0, 1]"};
    if (config_.max_num_seqs <= 0)
      return {status_code::kInvalidArgument, "max_num_seqs must be positive"};
    max_model_len_ = config_.max_model_len > 0 ? config_.max_model_len : m.max_position_embeddings;
    if (max_model_len_ <= 0) return {status_code::kInvalidArgument, "max_model_len must be > 0"};
    max_tokens_ = std::max(config_.max_num_batched_tokens, config_.max_num_seqs);
    if (config_.small_step_max_tokens < 0)
      return {status_code::kInvalidArgument, "small_step_max_tokens must be >= 0"};
    max_rows_ =
        std::max(config_.max_num_seqs, std::min(config_.small_step_max_tokens, max_tokens_));
    max_blocks_per_seq_ = (max_model_len_ + config_.block_size - 1) / config_.block_size;
    KVSERVE_CUDA_TRY(cudaSetDevice(config_.device));
    KVSERVE_CUDA_TRY(
        cudaDeviceGetAttribute(&num_sms_, cudaDevAttrMultiProcessorCount, config_.device));
    KVSERVE_STATUS_TRY(stream_.create());
    KVSERVE_STATUS_TRY(gemm_.init());
    rotary_embedding rope(m);
    KVSERVE_STATUS_TRY(inv_freq_.allocate(rope.inv_freq().size()));
    KVSERVE_CUDA_TRY(cudaMemcpy(inv_freq_.get(), rope.inv_freq().data(),
                                rope.inv_freq().size() * sizeof(float), cudaMemcpyHostToDevice));
    return status::ok();
  }

  status init_rest() {
    KVSERVE_STATUS_TRY(allocate_workspace());
    KVSERVE_STATUS_TRY(allocate_kv_pool());
    if (config_.record_step_gaps) {
      KVSERVE_STATUS_TRY(step_begin_.create());
      KVSERVE_STATUS_TRY(step_end_[0].create());
      KVSERVE_STATUS_TRY(step_end_[1].create());
    }
    if (config_.tune_gemm) KVSERVE_STATUS_TRY(tune_gemm());
    return status::ok();
  }

  status upload(const model_weights& w) { return weights_.upload(model_, w, stream_.get()); }
  status dummy(std::uint64_t seed) { return weights_.make_dummy(model_, seed, stream_.get()); }

  std::string name() const override { return "cuda"; }
  std::size_t kv_pool_bytes() const { return kv_pool_bytes_; }
  const std::vector<float>& step_gaps_us() const { return step_gaps_us_; }
  const model_config& config() const override { return model_; }
  int block_size() const override { return config_.block_size; }
  int num_kv_blocks() const override { return num_kv_blocks_; }
  std::size_t kv_bytes_per_token() const override {
    return kvserve::kv_bytes_per_token(model_, dtype_);
  }
  kv_cache_dtype kv_dtype() const override { return dtype_; }
  backend_stats stats() const override { return stats_; }

  result<step_result> execute(const step_plan& plan) override;

 private:
  // Split-KV count per padded decode batch (an occupancy query: cached).
  int decode_splits(int rows) {
    auto it = splits_.find(rows);
    if (it == splits_.end())
      it = splits_
               .emplace(rows, decode_attention_splits(rows, model_.num_heads, model_.num_kv_heads,
                                                      model_.head_dim, num_sms_, storage_))
               .first;
    return it->second;
  }

  status allocate_workspace();
  status allocate_kv_pool();
  status tune_gemm();
  status copy_inputs(const step_inputs& in);
  status forward(const step_inputs& in, int num_logits_rows, const std::int32_t* logits_rows_dev);
  status run_decode(const step_inputs& in);
  status run_general(const step_inputs& in, std::vector<float>& host_logits);
  // Layer `layer`'s slice of the pools: codes [blocks, kv heads, block size, head dim] and, for
  // the 8-bit types, scales [blocks, kv heads, block size].
  paged_kv_view kv_view(int layer) const {
    paged_kv_view v;
    const std::size_t rows =
        static_cast<std::size_t>(num_kv_blocks_) * model_.num_kv_heads * config_.block_size;
    const std::size_t code_bytes = rows * model_.head_dim * kv_element_bytes(dtype_);
    v.k = k_cache_.get() + code_bytes * layer;
    v.v = v_cache_.get() + code_bytes * layer;
    v.num_kv_heads = model_.num_kv_heads;
    v.block_size = config_.block_size;
    v.head_dim = model_.head_dim;
    v.dtype = storage_;
    if (kv_dtype_has_scales(dtype_)) {
      v.k_scale = k_scale_.get() + rows * layer;
      v.v_scale = v_scale_.get() + rows * layer;
    }
    return v;
  }

  cuda_backend_config config_;
  model_config model_;
  int max_model_len_ = 0;
  int max_tokens_ = 0;
  int max_rows_ = 0;  // rows of a decode-shaped step: max(max_num_seqs, small steps' tokens)
  int max_blocks_per_seq_ = 0;
  int max_logits_rows_ = 0;
  int token_list_capacity_ = 0;
  int num_sms_ = 0;
  int num_kv_blocks_ = 0;
  kv_cache_dtype dtype_ = kv_cache_dtype::kBf16;  // resolved config_.kv_dtype
  kv_storage storage_ = kv_storage::kBf16;
  std::size_t kv_pool_bytes_ = 0;  // device memory the pools took (cudaMemGetInfo delta)
  backend_stats stats_;

  cuda_stream stream_;
  gemm_runner gemm_;
  device_weights weights_;
  device_buffer<float> inv_freq_;
  device_buffer<std::uint8_t> k_cache_, v_cache_;  // codes, all layers
  device_buffer<float> k_scale_, v_scale_;         // 8-bit types only

  // Activations.
  device_buffer<float> residual_, delta_, qkv_, q_, gate_up_, logits_, sample_work_;
  device_buffer<float> partial_out_, partial_ml_;
  device_buffer<bf16> normed_, attn_out_, act_;
  device_buffer<unsigned int> sample_counts_;
  // Static step inputs (the graphs read them) and their pinned host mirrors.
  device_buffer<std::int32_t> d_tokens_, d_positions_, d_slots_, d_context_lens_, d_block_tables_,
      d_logits_rows_, d_token_lists_, d_sampled_;
  device_buffer<prefill_work_item> d_items_;
  device_buffer<device_sampling_row> d_sampling_;
  pinned_buffer<std::int32_t> h_sampled_;
  pinned_buffer<float> h_logits_;

  // record_step_gaps: events at the start of this step's device work and at the end of the
  // last two steps' (alternating), and the measured gaps.
  cuda_event step_begin_, step_end_[2];
  int step_parity_ = 0;
  bool have_prev_step_ = false;
  std::vector<float> step_gaps_us_;

  std::map<int, cuda_graph_exec> graphs_;  // decode bucket -> graph
  std::map<int, int> splits_;              // decode rows -> split-KV count
  step_inputs inputs_;
};

status cuda_backend::allocate_workspace() {
  const auto& m = model_;
  const std::size_t T = max_tokens_, H = m.hidden_size, I = m.intermediate_size;
  const std::size_t qkv_n = m.q_size() + 2 * m.kv_size();
  const int S = config_.max_num_seqs;
  const int R = max_rows_;
  max_logits_rows_ = std::max(R, 64);
  token_list_capacity_ = static_cast<int>(std::min<std::int64_t>(
      static_cast<std::int64_t>(S) * max_model_len_ + 65536, std::int64_t{1} << 26));
  KVSERVE_STATUS_TRY(residual_.allocate(T * H));
  KVSERVE_STATUS_TRY(delta_.allocate(T * H));
  KVSERVE_STATUS_TRY(qkv_.allocate(T * qkv_n));
  KVSERVE_STATUS_TRY(q_.allocate(T * m.q_size()));
  KVSERVE_STATUS_TRY(gate_up_.allocate(T * 2 * I));
  KVSERVE_STATUS_TRY(normed_.allocate(T * std::max(H, I)));
  KVSERVE_STATUS_TRY(attn_out_.allocate(T * m.q_size()));
  KVSERVE_STATUS_TRY(act_.allocate(T * I));
  KVSERVE_STATUS_TRY(logits_.allocate(static_cast<std::size_t>(max_logits_rows_) * m.vocab_size));
  KVSERVE_STATUS_TRY(sample_work_.allocate(static_cast<std::size_t>(R) * m.vocab_size));
  KVSERVE_STATUS_TRY(sample_counts_.allocate(static_cast<std::size_t>(R) * m.vocab_size));
  KVSERVE_CUDA_TRY(cudaMemsetAsync(sample_counts_.get(), 0, sample_counts_.bytes(), stream_.get()));
  std::size_t partial_rows = 0;
  for (int b = 1; b <= decode_bucket(R, R);) {
    partial_rows = std::max(partial_rows, static_cast<std::size_t>(b) * decode_splits(b));
    const int next = decode_bucket(b + 1, R);
    if (next == b) break;
    b = next;
  }
  KVSERVE_STATUS_TRY(partial_out_.allocate(partial_rows * m.num_heads * m.head_dim));
  KVSERVE_STATUS_TRY(partial_ml_.allocate(partial_rows * m.num_heads * 2));
  KVSERVE_STATUS_TRY(d_tokens_.allocate(T));
  KVSERVE_STATUS_TRY(d_positions_.allocate(T));
  KVSERVE_STATUS_TRY(d_slots_.allocate(T));
  KVSERVE_STATUS_TRY(d_context_lens_.allocate(R));
  KVSERVE_STATUS_TRY(d_block_tables_.allocate(static_cast<std::size_t>(R) * max_blocks_per_seq_));
  KVSERVE_STATUS_TRY(d_logits_rows_.allocate(T + S));
  KVSERVE_STATUS_TRY(d_token_lists_.allocate(token_list_capacity_));
  KVSERVE_STATUS_TRY(d_sampled_.allocate(R));
  const int group = m.num_heads / m.num_kv_heads;
  KVSERVE_STATUS_TRY(d_items_.allocate(T * std::max(1, (group + 15) / 16)));
  KVSERVE_STATUS_TRY(d_sampling_.allocate(R));
  KVSERVE_STATUS_TRY(h_sampled_.allocate(R));
  KVSERVE_STATUS_TRY(h_logits_.allocate(static_cast<std::size_t>(max_logits_rows_) * m.vocab_size));
  KVSERVE_CUDA_TRY(cudaStreamSynchronize(stream_.get()));
  return status::ok();
}

status cuda_backend::allocate_kv_pool() {
  // Codes and scales of one block over all layers, K and V (kv_bytes_per_token's formula).
  const std::size_t block_bytes = kv_bytes_per_token() * config_.block_size;
  std::size_t free_bytes = 0, total_bytes = 0;
  KVSERVE_CUDA_TRY(cudaMemGetInfo(&free_bytes, &total_bytes));
  int blocks = config_.num_kv_blocks;
  const double budget = config_.gpu_memory_utilization * static_cast<double>(total_bytes);
  const double used = static_cast<double>(total_bytes - free_bytes);
  constexpr double kReserve = 256.0 * (1 << 20);  // graphs, cuBLAS, allocator slack
  if (blocks <= 0) {
    const double left = budget - used - kReserve;
    blocks =
        left > 0 ? static_cast<int>(std::min(left / static_cast<double>(block_bytes), 2.0e9)) : 0;
    if (blocks < max_blocks_per_seq_) {
      char msg[512];
      std::snprintf(msg, sizeof msg,
                    "not enough GPU memory for the KV cache: --gpu-memory-utilization %.2f of "
                    "%.1f GiB leaves %.2f GiB after %.2f GiB of weights and workspace, and one "
                    "sequence of max_model_len %d needs %.2f GiB; raise "
                    "--gpu-memory-utilization or lower --max-model-len / --max-num-seqs",
                    config_.gpu_memory_utilization, total_bytes / 1073741824.0,
                    std::max(0.0, budget - used) / 1073741824.0, used / 1073741824.0,
                    max_model_len_,
                    static_cast<double>(block_bytes) * max_blocks_per_seq_ / 1073741824.0);
      return {status_code::kOutOfMemory, msg};
    }
  }
  num_kv_blocks_ = blocks;
  const std::size_t rows = static_cast<std::size_t>(blocks) * model_.num_layers *
                           model_.num_kv_heads * config_.block_size;
  const std::size_t code_bytes = rows * model_.head_dim * kv_element_bytes(dtype_);
  status st = k_cache_.allocate(code_bytes, "allocating the K cache");
  if (st.is_ok()) st = v_cache_.allocate(code_bytes, "allocating the V cache");
  if (st.is_ok() && kv_dtype_has_scales(dtype_)) {
    st = k_scale_.allocate(rows, "allocating the K scales");
    if (st.is_ok()) st = v_scale_.allocate(rows, "allocating the V scales");
  }
  if (!st.is_ok())
    return {st.code(), st.message() + "; lower --gpu-memory-utilization or --max-num-seqs"};
  std::size_t free_after = 0;
  KVSERVE_CUDA_TRY(cudaMemGetInfo(&free_after, &total_bytes));
  kv_pool_bytes_ = free_bytes > free_after ? free_bytes - free_after : 0;
  if (config_.log) {
    std::fprintf(stderr,
                 "kvserve cuda: weights %.2f GiB, KV cache %s, %d blocks of %d tokens = %lld "
                 "tokens (%.2f GiB allocated, %zu bytes per token: %d layers x %d KV heads x "
                 "head dim %d), max_model_len %d, graphs %s\n",
                 weights_.bytes() / 1073741824.0, to_string(dtype_), blocks, config_.block_size,
                 static_cast<long long>(blocks) * config_.block_size, kv_pool_bytes_ / 1073741824.0,
                 kv_bytes_per_token(), model_.num_layers, model_.num_kv_heads, model_.head_dim,
                 max_model_len_, config_.enforce_eager ? "off" : "on");
  }
  return status::ok();
}

status cuda_backend::tune_gemm() {
  std::vector<gemm_runner::weight_shape> shapes;
  const auto& m = model_;
  const auto& l0 = weights_.layers().front();
  shapes.push_back({l0.wqkv, m.q_size() + 2 * m.kv_size(), m.hidden_size});
  shapes.push_back({l0.wo, m.hidden_size, m.q_size()});
  shapes.push_back({l0.w_gate_up, 2 * m.intermediate_size, m.hidden_size});
  shapes.push_back({l0.w_down, m.hidden_size, m.intermediate_size});
  shapes.push_back({weights_.lm_head(), m.vocab_size, m.hidden_size});
  std::vector<int> ms;
  for (int b = 1; b <= kGemvMaxRows; ++b) ms.push_back(b);
  // Scratch: normed_ holds >= max_tokens * max(H, I) bf16; logits_ >= 64 * vocab floats, and
  // gate_up_ >= 8 * 2 * I floats; pick the output buffer large enough for each shape.
  KVSERVE_CUDA_TRY(cudaMemsetAsync(normed_.get(), 0, normed_.bytes(), stream_.get()));
  return gemm_.tune(shapes, ms, normed_.get(), logits_.get(), stream_.get());
}

status cuda_backend::copy_inputs(const step_inputs& in) {
  cudaStream_t s = stream_.get();
  auto h2d = [&](auto* dst, const auto& v) -> status {
    if (v.empty()) return status::ok();
    KVSERVE_CUDA_TRY(
        cudaMemcpyAsync(dst, v.data(), v.size() * sizeof(v[0]), cudaMemcpyHostToDevice, s));
    return status::ok();
  };
  KVSERVE_STATUS_TRY(h2d(d_tokens_.get(), in.tokens));
  KVSERVE_STATUS_TRY(h2d(d_positions_.get(), in.positions));
  KVSERVE_STATUS_TRY(h2d(d_slots_.get(), in.slot_mapping));
  KVSERVE_STATUS_TRY(h2d(d_context_lens_.get(), in.context_lens));
  KVSERVE_STATUS_TRY(h2d(d_block_tables_.get(), in.block_tables));
  KVSERVE_STATUS_TRY(h2d(d_items_.get(), in.items));
  KVSERVE_STATUS_TRY(h2d(d_logits_rows_.get(), in.logits_rows));
  KVSERVE_STATUS_TRY(h2d(d_sampling_.get(), in.sampling));
  KVSERVE_STATUS_TRY(h2d(d_token_lists_.get(), in.token_lists));
  return status::ok();
}

// The layers over in.num_rows tokens, then the final norm over `num_logits_rows` rows
// (gathered through logits_rows_dev, or all rows when it is null) and the LM head into logits_.
status cuda_backend::forward(const step_inputs& in, int num_logits_rows,
                             const std::int32_t* logits_rows_dev) {
  const auto& m = model_;
  cudaStream_t s = stream_.get();
  const int T = in.num_rows, H = m.hidden_size, I = m.intermediate_size;
  const int qkv_n = m.q_size() + 2 * m.kv_size();
  const float scale = 1.0f / std::sqrt(static_cast<float>(m.head_dim));
  KVSERVE_CUDA_TRY(
      launch_embedding_gather(weights_.embedding(), d_tokens_.get(), T, H, residual_.get(), s));
  for (int li = 0; li < m.num_layers; ++li) {
    const device_layer& L = weights_.layers()[li];
    KVSERVE_CUDA_TRY(launch_add_rms_norm(residual_.get(), li == 0 ? nullptr : delta_.get(),
                                         L.attn_norm, nullptr, T, H, m.rms_norm_eps, true,
                                         normed_.get(), s));
    KVSERVE_STATUS_TRY(gemm_.run(normed_.get(), L.wqkv, T, qkv_n, H, qkv_.get(), s));
    rope_kv_args r;
    r.qkv = qkv_.get();
    r.bias = L.bqkv;
    r.positions = d_positions_.get();
    r.slot_mapping = d_slots_.get();
    r.inv_freq = inv_freq_.get();
    r.num_tokens = T;
    r.num_heads = m.num_heads;
    r.q_out = q_.get();
    r.kv = kv_view(li);
    KVSERVE_CUDA_TRY(launch_rope_kv_append(r, s));
    if (in.decode_only) {
      decode_attention_args a;
      a.q = q_.get();
      a.kv = kv_view(li);
      a.block_tables = d_block_tables_.get();
      a.context_lens = d_context_lens_.get();
      a.num_seqs = T;
      a.num_heads = m.num_heads;
      a.max_blocks_per_seq = max_blocks_per_seq_;
      a.num_splits = decode_splits(T);
      a.scale = scale;
      a.partial_out = partial_out_.get();
      a.partial_ml = partial_ml_.get();
      a.out = attn_out_.get();
      KVSERVE_CUDA_TRY(launch_decode_attention(a, s));
    } else {
      prefill_attention_args a;
      a.q = q_.get();
      a.kv = kv_view(li);
      a.block_tables = d_block_tables_.get();
      a.positions = d_positions_.get();
      a.items = d_items_.get();
      a.num_items = static_cast<int>(in.items.size());
      a.num_heads = m.num_heads;
      a.max_blocks_per_seq = max_blocks_per_seq_;
      a.scale = scale;
      a.out = attn_out_.get();
      KVSERVE_CUDA_TRY(launch_prefill_attention(a, s));
    }
    KVSERVE_STATUS_TRY(gemm_.run(attn_out_.get(), L.wo, T, H, m.q_size(), delta_.get(), s));
    KVSERVE_CUDA_TRY(launch_add_rms_norm(residual_.get(), delta_.get(), L.ffn_norm, nullptr, T, H,
                                         m.rms_norm_eps, true, normed_.get(), s));
    KVSERVE_STATUS_TRY(gemm_.run(normed_.get(), L.w_gate_up, T, 2 * I, H, gate_up_.get(), s));
    KVSERVE_CUDA_TRY(launch_swiglu(gate_up_.get(), T, I, act_.get(), s));
    KVSERVE_STATUS_TRY(gemm_.run(act_.get(), L.w_down, T, H, I, delta_.get(), s));
  }
  (void)num_logits_rows;
  (void)logits_rows_dev;
  return status::ok();
}

// Decode-only steps: everything from the embedding to the sampled tokens, over the padded
// rows, so that a graph captured once per bucket replays it.
status cuda_backend::run_decode(const step_inputs& in) {
  const auto& m = model_;
  cudaStream_t s = stream_.get();
  const int B = in.num_rows;
  auto body = [&]() -> status {
    KVSERVE_STATUS_TRY(forward(in, B, nullptr));
    KVSERVE_CUDA_TRY(launch_add_rms_norm(residual_.get(), delta_.get(), weights_.final_norm(),
                                         nullptr, B, m.hidden_size, m.rms_norm_eps, false,
                                         normed_.get(), s));
    KVSERVE_STATUS_TRY(gemm_.run(normed_.get(), weights_.lm_head(), B, m.vocab_size, m.hidden_size,
                                 logits_.get(), s));
    KVSERVE_CUDA_TRY(launch_sample(logits_.get(), sample_work_.get(), sample_counts_.get(),
                                   d_sampling_.get(), B, d_token_lists_.get(), m.vocab_size,
                                   d_sampled_.get(), s));
    return status::ok();
  };
  if (config_.enforce_eager) return body();
  auto it = graphs_.find(B);
  if (it == graphs_.end()) {
    KVSERVE_CUDA_TRY(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    status st = body();
    cuda_graph graph;
    const cudaError_t end = cudaStreamEndCapture(s, graph.out());
    KVSERVE_STATUS_TRY(st);
    KVSERVE_CUDA_TRY(end);
    cudaGraphExec_t exec = nullptr;
    KVSERVE_CUDA_TRY(cudaGraphInstantiate(&exec, graph.get(), 0));
    it = graphs_.emplace(B, cuda_graph_exec{}).first;
    it->second.reset(exec);
  }
  KVSERVE_CUDA_TRY(cudaGraphLaunch(it->second.get(), s));
  ++stats_.cuda_graph_replays;
  return status::ok();
}

// Prefill and mixed steps, eagerly: the layers over every token, then the LM head over the
// logits rows in chunks of the logits buffer; the first chunk holds the sampled rows.
status cuda_backend::run_general(const step_inputs& in, std::vector<float>& host_logits) {
  const auto& m = model_;
  cudaStream_t s = stream_.get();
  const int rows = static_cast<int>(in.logits_rows.size());
  const int num_sampled = static_cast<int>(in.sampling.size());
  KVSERVE_STATUS_TRY(forward(in, rows, d_logits_rows_.get()));
  const bool host_rows =
      rows > num_sampled || std::any_of(in.outputs.begin(), in.outputs.end(),
                                        [](const seq_outputs& o) { return o.num_logits_rows > 0; });
  if (host_rows) host_logits.resize(static_cast<std::size_t>(rows) * m.vocab_size);
  for (int c0 = 0; c0 < rows; c0 += max_logits_rows_) {
    const int n = std::min(max_logits_rows_, rows - c0);
    KVSERVE_CUDA_TRY(launch_add_rms_norm(residual_.get(), delta_.get(), weights_.final_norm(),
                                         d_logits_rows_.get() + c0, n, m.hidden_size,
                                         m.rms_norm_eps, false, normed_.get(), s));
    KVSERVE_STATUS_TRY(gemm_.run(normed_.get(), weights_.lm_head(), n, m.vocab_size, m.hidden_size,
                                 logits_.get(), s));
    if (c0 == 0 && num_sampled > 0) {
      KVSERVE_CUDA_TRY(launch_sample(logits_.get(), sample_work_.get(), sample_counts_.get(),
                                     d_sampling_.get(), num_sampled, d_token_lists_.get(),
                                     m.vocab_size, d_sampled_.get(), s));
    }
    if (host_rows) {
      const std::size_t count = static_cast<std::size_t>(n) * m.vocab_size;
      KVSERVE_CUDA_TRY(cudaMemcpyAsync(h_logits_.get(), logits_.get(), count * sizeof(float),
                                       cudaMemcpyDeviceToHost, s));
      KVSERVE_CUDA_TRY(cudaStreamSynchronize(s));
      std::copy(h_logits_.get(), h_logits_.get() + count,
                host_logits.begin() + static_cast<std::size_t>(c0) * m.vocab_size);
    }
  }
  return status::ok();
}

result<step_result> cuda_backend::execute(const step_plan& plan) {
  step_limits lim;
  lim.vocab_size = model_.vocab_size;
  lim.num_kv_blocks = num_kv_blocks_;
  lim.block_size = config_.block_size;
  lim.max_model_len = max_model_len_;
  lim.max_num_seqs = config_.max_num_seqs;
  lim.max_num_tokens = max_tokens_;
  lim.max_rows = max_rows_;
  lim.small_step_max_tokens = config_.small_step_max_tokens;
  lim.max_blocks_per_seq = max_blocks_per_seq_;
  lim.max_logits_rows = max_logits_rows_;
  lim.token_list_capacity = token_list_capacity_;
  lim.gqa_group = model_.num_heads / model_.num_kv_heads;
  KVSERVE_STATUS_TRY(build_step_inputs(plan, lim, &decode_bucket, inputs_));
  const step_inputs& in = inputs_;
  step_result out;
  out.step_index = plan.step_index;
  out.seqs.resize(plan.seqs.size());
  if (plan.seqs.empty()) return out;
  cudaStream_t s = stream_.get();
  const std::size_t V = model_.vocab_size;
  // The current device is per host thread: the worker thread that calls execute() need not be
  // the one that created the backend.
  KVSERVE_CUDA_TRY(cudaSetDevice(config_.device));
  if (config_.record_step_gaps) KVSERVE_CUDA_TRY(cudaEventRecord(step_begin_.get(), s));
  KVSERVE_STATUS_TRY(copy_inputs(in));
  std::vector<float> host_logits;
  const int num_sample_rows = static_cast<int>(in.sampling.size());
  if (in.decode_only) {
    KVSERVE_STATUS_TRY(run_decode(in));
    // Rows the host reads: each sequence's last row, where it asked for logits or logprobs.
    bool any = false;
    for (const auto& o : in.outputs) any = any || o.num_logits_rows > 0;
    if (any) {
      host_logits.resize(static_cast<std::size_t>(in.num_rows) * V);
      for (const seq_outputs& o : in.outputs) {
        if (o.num_logits_rows == 0) continue;
        const std::size_t off = static_cast<std::size_t>(o.first_logits_row) * V;
        KVSERVE_CUDA_TRY(cudaMemcpyAsync(host_logits.data() + off, logits_.get() + off,
                                         V * sizeof(float), cudaMemcpyDeviceToHost, s));
      }
    }
  } else {
    KVSERVE_STATUS_TRY(run_general(in, host_logits));
  }
  if (num_sample_rows > 0) {
    KVSERVE_CUDA_TRY(cudaMemcpyAsync(h_sampled_.get(), d_sampled_.get(),
                                     num_sample_rows * sizeof(std::int32_t), cudaMemcpyDeviceToHost,
                                     s));
  }
  if (config_.record_step_gaps) KVSERVE_CUDA_TRY(cudaEventRecord(step_end_[step_parity_].get(), s));
  KVSERVE_CUDA_TRY(cudaStreamSynchronize(s));
  ++stats_.steps_executed;
  if (config_.record_step_gaps) {
    if (have_prev_step_) {
      float ms = 0.0f;
      KVSERVE_CUDA_TRY(
          cudaEventElapsedTime(&ms, step_end_[1 - step_parity_].get(), step_begin_.get()));
      step_gaps_us_.push_back(ms * 1000.0f);
    }
    have_prev_step_ = true;
    step_parity_ = 1 - step_parity_;
  }

  for (std::size_t i = 0; i < plan.seqs.size(); ++i) {
    const sequence_step& seq = plan.seqs[i];
    const seq_outputs& o = in.outputs[i];
    sequence_result& r = out.seqs[i];
    r.id = seq.id;
    const float* rows = o.num_logits_rows > 0
                            ? host_logits.data() + static_cast<std::size_t>(o.first_logits_row) * V
                            : nullptr;
    const int n = static_cast<int>(seq.tokens.size());
    if (seq.sample && o.sample_row >= 0) {
      r.sampled_token = h_sampled_[o.sample_row];
      if (seq.sampling.logprobs >= 0 && rows) {
        const float* last = rows + static_cast<std::size_t>(o.num_logits_rows - 1) * V;
        r.sampled_logprobs = compute_logprobs({last, V}, *r.sampled_token, seq.sampling.logprobs);
      }
    }
    if (rows && seq.return_logits == logits_mode::kLast) {
      const float* last = rows + static_cast<std::size_t>(o.num_logits_rows - 1) * V;
      r.logits.assign(last, last + V);
    } else if (rows && seq.return_logits == logits_mode::kAll) {
      r.logits.assign(rows, rows + static_cast<std::size_t>(o.num_logits_rows) * V);
    }
    if (seq.prompt_logprobs >= 0 && rows && o.num_logits_rows == n) {
      for (int j = 0; j < n; ++j) {
        std::optional<std::int32_t> target;
        if (j + 1 < n)
          target = seq.tokens[j + 1];
        else
          target = seq.next_prompt_token;
        if (!target) continue;
        r.prompt_logprobs.push_back(compute_logprobs({rows + static_cast<std::size_t>(j) * V, V},
                                                     *target, seq.prompt_logprobs));
      }
    }
  }
  return out;
}

template <class Init>
result<std::unique_ptr<backend>> make(const cuda_backend_config& config, model_config model,
                                      Init&& init_weights) {
  if (!cuda_device_available())
    return status{status_code::kUnsupported, "no CUDA device is available"};
  auto b = std::make_unique<cuda_backend>(config, std::move(model));
  KVSERVE_STATUS_TRY(b->init_common());
  status st = init_weights(*b);
  if (!st.is_ok()) {
    if (st.code() == status_code::kOutOfMemory)
      return status{st.code(), st.message() + " (the weights do not fit on the device)"};
    return st;
  }
  KVSERVE_STATUS_TRY(b->init_rest());
  return std::unique_ptr<backend>(std::move(b));
}

}  // namespace
}  // namespace cuda

result<std::unique_ptr<backend>> make_cuda_backend(const cuda_backend_config& config,
                                                   model_config model,
                                                   const model_weights& weights) {
  return cuda::make(config, std::move(model),
                    [&](cuda::cuda_backend& b) { return b.upload(weights); });
}

std::size_t cuda_kv_pool_bytes(const backend& b) {
  const auto* c = dynamic_cast<const cuda::cuda_backend*>(&b);
  return c ? c->kv_pool_bytes() : 0;
}

std::vector<float> cuda_step_gaps_us(const backend& b) {
  const auto* c = dynamic_cast<const cuda::cuda_backend*>(&b);
  return c ? c->step_gaps_us() : std::vector<float>{};
}

result<std::unique_ptr<backend>> make_cuda_backend_dummy(const cuda_backend_config& config,
                                                         model_config model, std::uint64_t seed) {
  return cuda::make(config, std::move(model), [&](cuda::cuda_backend& b) { return b.dummy(seed); });
}

}  // namespace kvserve
