// The CUDA backend: device memory sizing, the forward pass over the paged KV pool, CUDA-graph
// decode per batch-size bucket, on-device sampling, and results back to the host.
#include "cuda/cuda_backend.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <string>

#include "cuda/cuda_check.hpp"
#include "cuda/device_memory.hpp"
#include "cuda/device_weights.hpp"
#include "cuda/gemm.hpp"
#include "cuda/kernels.hpp"
#include "cuda/sampling.hpp"
#include "cuda/step_inputs.hpp"
#include "cuda/step_kernels.hpp"
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

std::size_t align16(std::size_t x) { return (x + 15) / 16 * 16; }

/// Byte offsets of a step's input arrays in one packed buffer (16-byte aligned sections, in
/// this order). A decode-shaped step's offsets depend only on its row count (the token lists
/// come last), so the graph captured for a row bucket and a slot finds them every time.
struct pack_layout {
  std::size_t tokens = 0, gather_src = 0, positions = 0, slots = 0, context_lens = 0,
              logits_rows = 0, sampling = 0, items = 0, block_tables = 0, token_lists = 0,
              bytes = 0;
};

pack_layout layout_of(std::size_t rows, std::size_t context_lens, std::size_t logits_rows,
                      std::size_t sampling, std::size_t items, std::size_t table_ints,
                      std::size_t token_lists) {
  pack_layout l;
  std::size_t at = 0;
  auto put = [&](std::size_t& field, std::size_t bytes) {
    field = at;
    at = align16(at + bytes);
  };
  const std::size_t i32 = sizeof(std::int32_t);
  put(l.tokens, rows * i32);
  put(l.gather_src, rows * i32);
  put(l.positions, rows * i32);
  put(l.slots, rows * i32);
  put(l.context_lens, context_lens * i32);
  put(l.logits_rows, logits_rows * i32);
  put(l.sampling, sampling * sizeof(device_sampling_row));
  put(l.items, items * sizeof(prefill_work_item));
  put(l.block_tables, table_ints * i32);
  put(l.token_lists, token_lists * i32);
  l.bytes = at;
  return l;
}

pack_layout layout_of(const step_inputs& in) {
  return layout_of(in.tokens.size(), in.context_lens.size(), in.logits_rows.size(),
                   in.sampling.size(), in.items.size(), in.block_tables.size(),
                   in.token_lists.size());
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
    if (config_.small_step_max_tokens < 0 || config_.small_step_max_seq_tokens < 0 ||
        config_.small_step_max_context_reads < 0)
      return {status_code::kInvalidArgument, "small_step_max_* limits must be >= 0"};
    max_rows_ =
        std::max(config_.max_num_seqs, std::min(config_.small_step_max_tokens, max_tokens_));
    max_blocks_per_seq_ = (max_model_len_ + config_.block_size - 1) / config_.block_size;
    KVSERVE_CUDA_TRY(cudaSetDevice(config_.device));
    KVSERVE_CUDA_TRY(
        cudaDeviceGetAttribute(&num_sms_, cudaDevAttrMultiProcessorCount, config_.device));
    KVSERVE_STATUS_TRY(stream_.create());
    KVSERVE_STATUS_TRY(upload_stream_.create());
    KVSERVE_STATUS_TRY(download_stream_.create());
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
      for (auto& e : gap_begin_) KVSERVE_STATUS_TRY(e.create());
      for (auto& e : gap_end_) KVSERVE_STATUS_TRY(e.create());
      KVSERVE_STATUS_TRY(stamps_.allocate(2 * kStampRing));
      KVSERVE_STATUS_TRY(stamp_counter_.allocate(1));
      KVSERVE_CUDA_TRY(cudaMemset(stamp_counter_.get(), 0, sizeof(unsigned int)));
    }
    if (config_.tune_gemm) KVSERVE_STATUS_TRY(tune_gemm());
    return status::ok();
  }

  status upload(const model_weights& w) { return weights_.upload(model_, w, stream_.get()); }
  status dummy(std::uint64_t seed) { return weights_.make_dummy(model_, seed, stream_.get()); }

  std::string name() const override { return "cuda"; }
  std::size_t kv_pool_bytes() const { return kv_pool_bytes_; }
  const std::vector<float>& step_gaps_us() const { return step_gaps_us_; }
  std::vector<float> step_gaps_device_us() const {
    std::vector<float> gaps;
    if (!config_.record_step_gaps) return gaps;
    unsigned int count = 0;
    std::vector<unsigned long long> ring(2 * kStampRing);
    if (cudaSetDevice(config_.device) != cudaSuccess ||
        cudaStreamSynchronize(stream_.get()) != cudaSuccess ||
        cudaMemcpy(&count, stamp_counter_.get(), sizeof count, cudaMemcpyDeviceToHost) !=
            cudaSuccess ||
        cudaMemcpy(ring.data(), stamps_.get(), ring.size() * sizeof(ring[0]),
                   cudaMemcpyDeviceToHost) != cudaSuccess)
      return gaps;
    const unsigned int first = count > kStampRing ? count - kStampRing + 1 : 1;
    for (unsigned int c = first; c < count; ++c) {
      const unsigned long long end = ring[2 * ((c - 1) % kStampRing) + 1];
      const unsigned long long begin = ring[2 * (c % kStampRing)];
      gaps.push_back(static_cast<float>(static_cast<double>(begin - end) * 1e-3));
    }
    return gaps;
  }
  const model_config& config() const override { return model_; }
  int block_size() const override { return config_.block_size; }
  int num_kv_blocks() const override { return num_kv_blocks_; }
  std::size_t kv_bytes_per_token() const override {
    return kvserve::kv_bytes_per_token(model_, dtype_);
  }
  kv_cache_dtype kv_dtype() const override { return dtype_; }
  backend_stats stats() const override { return stats_; }
  bool queues_steps() const override { return true; }

  result<step_result> execute(const step_plan& plan) override;
  status submit(const step_plan& plan) override;
  result<step_result> collect() override;

 private:
  // Device pointers of one step's inputs (in its slot's packed buffer) and outputs.
  struct step_ptrs {
    const std::int32_t* tokens = nullptr;
    const std::int32_t* gather_src = nullptr;
    const std::int32_t* positions = nullptr;
    const std::int32_t* slots = nullptr;
    const std::int32_t* context_lens = nullptr;
    const std::int32_t* logits_rows = nullptr;
    const device_sampling_row* sampling = nullptr;
    const prefill_work_item* items = nullptr;
    const std::int32_t* block_tables = nullptr;
    const std::int32_t* token_lists = nullptr;
    std::int32_t* sampled = nullptr;             // this step's sampled tokens
    const std::int32_t* prev_sampled = nullptr;  // the previous step's (the other slot's)
  };
  // One of the two steps that can be in flight: packed inputs (pinned host and device), the
  // sampled tokens (device and pinned host), the events that order the three streams, and
  // what collect() needs to build the result.
  struct step_slot {
    pinned_buffer<unsigned char> h_pack;
    device_buffer<unsigned char> d_pack;
    device_buffer<std::int32_t> d_sampled;
    pinned_buffer<std::int32_t> h_sampled;
    cuda_event inputs_ready, forward_done, results_ready;
    step_inputs in;
    std::vector<seq_id> ids;
    std::optional<step_result> done;  // steps with host logits: built at submit
    std::uint64_t step_index = 0;
    int gap_index = -1;  // record_step_gaps: events of this step, and of the one before
    int prev_gap_index = -1;
  };

  step_ptrs pointers(int slot, const pack_layout& l) const {
    const unsigned char* base = slots_[slot].d_pack.get();
    auto at = [&](std::size_t off) { return base + off; };
    step_ptrs p;
    p.tokens = reinterpret_cast<const std::int32_t*>(at(l.tokens));
    p.gather_src = reinterpret_cast<const std::int32_t*>(at(l.gather_src));
    p.positions = reinterpret_cast<const std::int32_t*>(at(l.positions));
    p.slots = reinterpret_cast<const std::int32_t*>(at(l.slots));
    p.context_lens = reinterpret_cast<const std::int32_t*>(at(l.context_lens));
    p.logits_rows = reinterpret_cast<const std::int32_t*>(at(l.logits_rows));
    p.sampling = reinterpret_cast<const device_sampling_row*>(at(l.sampling));
    p.items = reinterpret_cast<const prefill_work_item*>(at(l.items));
    p.block_tables = reinterpret_cast<const std::int32_t*>(at(l.block_tables));
    p.token_lists = reinterpret_cast<const std::int32_t*>(at(l.token_lists));
    p.sampled = slots_[slot].d_sampled.get();
    p.prev_sampled = slots_[1 - slot].d_sampled.get();
    return p;
  }

  // Decode attention's K/V ring depth and split-KV count per padded decode batch (occupancy
  // queries: cached).
  const decode_attention_plan& decode_plan(int rows) {
    auto it = attention_plans_.find(rows);
    if (it == attention_plans_.end())
      it = attention_plans_
               .emplace(rows, plan_decode_attention(rows, model_.num_heads, model_.num_kv_heads,
                                                    model_.head_dim, num_sms_, storage_))
               .first;
    return it->second;
  }

  status allocate_workspace();
  status allocate_kv_pool();
  status tune_gemm();
  status forward(const step_inputs& in, const step_ptrs& p);
  // record_step_gaps: the device timestamp at a step's first (end = false) or last kernel.
  status stamp(bool end) {
    if (!config_.record_step_gaps) return status::ok();
    KVSERVE_CUDA_TRY(
        launch_step_stamp(stamps_.get(), stamp_counter_.get(), end, kStampRing, stream_.get()));
    return status::ok();
  }
  status run_decode(const step_inputs& in, int slot, const step_ptrs& p);
  status run_general(const step_inputs& in, const step_ptrs& p, std::vector<float>& host_logits);
  step_result build_result(const step_plan& plan, const step_inputs& in,
                           const std::int32_t* sampled, const std::vector<float>& host_logits);
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

  cuda_stream stream_;           // the steps' device work
  cuda_stream upload_stream_;    // packed inputs to the device, ahead of their step
  cuda_stream download_stream_;  // sampled tokens back, while the next step runs
  gemm_runner gemm_;
  device_weights weights_;
  device_buffer<float> inv_freq_;
  device_buffer<std::uint8_t> k_cache_, v_cache_;  // codes, all layers
  device_buffer<float> k_scale_, v_scale_;         // 8-bit types only

  // Activations.
  device_buffer<float> residual_, delta_, qkv_, q_, gate_up_, logits_, sample_work_;
  device_buffer<float> partial_out_, partial_ml_;
  device_buffer<float> prefill_partial_out_, prefill_partial_ml_;  // split prefill attention
  device_buffer<bf16> normed_, attn_out_, act_;
  device_buffer<unsigned int> sample_counts_;
  pinned_buffer<float> h_logits_;

  // Steps in flight: slot (next_slot_ + k) % 2 for the k-th oldest; submission order.
  step_slot slots_[2];
  int next_slot_ = 0;
  std::deque<int> in_flight_;
  // The last submitted step's sample rows by sequence id (input_from_last_sample).
  std::vector<std::pair<seq_id, std::int32_t>> prev_rows_;
  bool have_prev_step_ = false;  // a step was submitted before (its slot is 1 - next_slot_)

  // record_step_gaps: events just before and after each step's device work (a ring: two
  // steps in flight plus the one before them), and the measured gaps.
  cuda_event gap_begin_[4], gap_end_[4];
  // ... and device timestamps of each step's first and last kernel (ring of kStampRing steps).
  static constexpr unsigned int kStampRing = 4096;
  device_buffer<unsigned long long> stamps_;
  device_buffer<unsigned int> stamp_counter_;
  int gap_counter_ = 0;
  std::vector<float> step_gaps_us_;

  std::map<int, cuda_graph_exec> graphs_;                 // 2 * decode bucket + slot -> graph
  std::map<int, decode_attention_plan> attention_plans_;  // decode rows -> ring depth, splits
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
    partial_rows = std::max(partial_rows, static_cast<std::size_t>(b) * decode_plan(b).num_splits);
    const int next = decode_bucket(b + 1, R);
    if (next == b) break;
    b = next;
  }
  KVSERVE_STATUS_TRY(partial_out_.allocate(partial_rows * m.num_heads * m.head_dim));
  KVSERVE_STATUS_TRY(partial_ml_.allocate(partial_rows * m.num_heads * 2));
  const std::size_t split_rows =
      std::min<std::size_t>(T, kSplitPrefillMaxTokens) * m.num_heads * kMaxPrefillSplits;
  KVSERVE_STATUS_TRY(prefill_partial_out_.allocate(split_rows * m.head_dim));
  KVSERVE_STATUS_TRY(prefill_partial_ml_.allocate(split_rows * 2));
  // Packed step inputs: room for the largest general step and the largest decode-shaped one.
  const int group = m.num_heads / m.num_kv_heads;
  const std::size_t rows = std::max<std::size_t>(T, R);
  const pack_layout most = layout_of(
      rows, R, T + S, R, T * std::max(1, (group + kPrefillRowsPerItem - 1) / kPrefillRowsPerItem),
      static_cast<std::size_t>(R) * max_blocks_per_seq_, token_list_capacity_);
  for (auto& slot : slots_) {
    KVSERVE_STATUS_TRY(slot.h_pack.allocate(most.bytes));
    KVSERVE_STATUS_TRY(slot.d_pack.allocate(most.bytes));
    KVSERVE_STATUS_TRY(slot.d_sampled.allocate(R));
    KVSERVE_CUDA_TRY(
        cudaMemsetAsync(slot.d_sampled.get(), 0, slot.d_sampled.bytes(), stream_.get()));
    KVSERVE_STATUS_TRY(slot.h_sampled.allocate(R));
    KVSERVE_STATUS_TRY(slot.inputs_ready.create(cudaEventDisableTiming));
    KVSERVE_STATUS_TRY(slot.forward_done.create(cudaEventDisableTiming));
    KVSERVE_STATUS_TRY(slot.results_ready.create(cudaEventDisableTiming));
  }
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

// The layers over in.num_rows tokens (embedding rows whose gather_src is set take the previous
// step's sampled token), up to the residual stream before the final norm.
status cuda_backend::forward(const step_inputs& in, const step_ptrs& p) {
  const auto& m = model_;
  cudaStream_t s = stream_.get();
  const int T = in.num_rows, H = m.hidden_size, I = m.intermediate_size;
  const int qkv_n = m.q_size() + 2 * m.kv_size();
  const float scale = 1.0f / std::sqrt(static_cast<float>(m.head_dim));
  // A short chunk over a long context has few prefill items: split their keys (kernels.hpp).
  // Decode steps: the attention plan of their row bucket, looked up once for all layers.
  const decode_attention_plan decode = in.decode_only ? decode_plan(T) : decode_attention_plan{};
  int prefill_splits = 1;
  if (!in.decode_only) {
    int max_context = 0;
    for (const std::int32_t pos : in.positions) max_context = std::max(max_context, pos + 1);
    prefill_splits = prefill_attention_splits(T, static_cast<int>(in.items.size()), m.num_kv_heads,
                                              max_context, num_sms_);
  }
  KVSERVE_CUDA_TRY(launch_embedding_gather_from(weights_.embedding(), p.tokens, p.gather_src,
                                                p.prev_sampled, T, H, residual_.get(), s));
  for (int li = 0; li < m.num_layers; ++li) {
    const device_layer& L = weights_.layers()[li];
    KVSERVE_CUDA_TRY(launch_add_rms_norm(residual_.get(), li == 0 ? nullptr : delta_.get(),
                                         L.attn_norm, nullptr, T, H, m.rms_norm_eps, true,
                                         normed_.get(), s));
    KVSERVE_STATUS_TRY(gemm_.run(normed_.get(), L.wqkv, T, qkv_n, H, qkv_.get(), s));
    rope_kv_args r;
    r.qkv = qkv_.get();
    r.bias = L.bqkv;
    r.positions = p.positions;
    r.slot_mapping = p.slots;
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
      a.block_tables = p.block_tables;
      a.context_lens = p.context_lens;
      a.num_seqs = T;
      a.num_heads = m.num_heads;
      a.max_blocks_per_seq = max_blocks_per_seq_;
      a.num_splits = decode.num_splits;
      a.kv_stages = decode.kv_stages;
      a.scale = scale;
      a.partial_out = partial_out_.get();
      a.partial_ml = partial_ml_.get();
      a.out = attn_out_.get();
      KVSERVE_CUDA_TRY(launch_decode_attention(a, s));
    } else {
      prefill_attention_args a;
      a.q = q_.get();
      a.kv = kv_view(li);
      a.block_tables = p.block_tables;
      a.positions = p.positions;
      a.items = p.items;
      a.num_items = static_cast<int>(in.items.size());
      a.num_heads = m.num_heads;
      a.max_blocks_per_seq = max_blocks_per_seq_;
      a.scale = scale;
      a.out = attn_out_.get();
      a.num_splits = prefill_splits;
      a.num_tokens = T;
      a.partial_out = prefill_partial_out_.get();
      a.partial_ml = prefill_partial_ml_.get();
      KVSERVE_CUDA_TRY(launch_prefill_attention(a, s));
    }
    KVSERVE_STATUS_TRY(gemm_.run(attn_out_.get(), L.wo, T, H, m.q_size(), delta_.get(), s));
    KVSERVE_CUDA_TRY(launch_add_rms_norm(residual_.get(), delta_.get(), L.ffn_norm, nullptr, T, H,
                                         m.rms_norm_eps, true, normed_.get(), s));
    KVSERVE_STATUS_TRY(gemm_.run(normed_.get(), L.w_gate_up, T, 2 * I, H, gate_up_.get(), s));
    KVSERVE_CUDA_TRY(launch_swiglu(gate_up_.get(), T, I, act_.get(), s));
    KVSERVE_STATUS_TRY(gemm_.run(act_.get(), L.w_down, T, H, I, delta_.get(), s));
  }
  return status::ok();
}

// Decode-only steps: everything from the embedding to the sampled tokens, over the padded
// rows, so that a graph captured once per bucket replays it.
status cuda_backend::run_decode(const step_inputs& in, int slot, const step_ptrs& p) {
  const auto& m = model_;
  cudaStream_t s = stream_.get();
  const int B = in.num_rows;
  auto body = [&]() -> status {
    KVSERVE_STATUS_TRY(stamp(false));
    KVSERVE_STATUS_TRY(forward(in, p));
    KVSERVE_CUDA_TRY(launch_add_rms_norm(residual_.get(), delta_.get(), weights_.final_norm(),
                                         nullptr, B, m.hidden_size, m.rms_norm_eps, false,
                                         normed_.get(), s));
    KVSERVE_STATUS_TRY(gemm_.run(normed_.get(), weights_.lm_head(), B, m.vocab_size, m.hidden_size,
                                 logits_.get(), s));
    KVSERVE_CUDA_TRY(launch_sample(logits_.get(), sample_work_.get(), sample_counts_.get(),
                                   p.sampling, B, p.token_lists, m.vocab_size, p.sampled, s));
    return stamp(true);
  };
  if (config_.enforce_eager) return body();
  const int key = 2 * B + slot;
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    KVSERVE_CUDA_TRY(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    status st = body();
    cuda_graph graph;
    const cudaError_t end = cudaStreamEndCapture(s, graph.out());
    KVSERVE_STATUS_TRY(st);
    KVSERVE_CUDA_TRY(end);
    cudaGraphExec_t exec = nullptr;
    KVSERVE_CUDA_TRY(cudaGraphInstantiate(&exec, graph.get(), 0));
    it = graphs_.emplace(key, cuda_graph_exec{}).first;
    it->second.reset(exec);
  }
  KVSERVE_CUDA_TRY(cudaGraphLaunch(it->second.get(), s));
  ++stats_.cuda_graph_replays;
  return status::ok();
}

// Prefill and mixed steps, eagerly: the layers over every token, then the LM head over the
// logits rows in chunks of the logits buffer; the first chunk holds the sampled rows.
status cuda_backend::run_general(const step_inputs& in, const step_ptrs& p,
                                 std::vector<float>& host_logits) {
  const auto& m = model_;
  cudaStream_t s = stream_.get();
  const int rows = static_cast<int>(in.logits_rows.size());
  const int num_sampled = static_cast<int>(in.sampling.size());
  KVSERVE_STATUS_TRY(stamp(false));
  KVSERVE_STATUS_TRY(forward(in, p));
  const bool host_rows =
      rows > num_sampled || std::any_of(in.outputs.begin(), in.outputs.end(),
                                        [](const seq_outputs& o) { return o.num_logits_rows > 0; });
  if (host_rows) host_logits.resize(static_cast<std::size_t>(rows) * m.vocab_size);
  for (int c0 = 0; c0 < rows; c0 += max_logits_rows_) {
    const int n = std::min(max_logits_rows_, rows - c0);
    KVSERVE_CUDA_TRY(launch_add_rms_norm(residual_.get(), delta_.get(), weights_.final_norm(),
                                         p.logits_rows + c0, n, m.hidden_size, m.rms_norm_eps,
                                         false, normed_.get(), s));
    KVSERVE_STATUS_TRY(gemm_.run(normed_.get(), weights_.lm_head(), n, m.vocab_size, m.hidden_size,
                                 logits_.get(), s));
    if (c0 == 0 && num_sampled > 0) {
      KVSERVE_CUDA_TRY(launch_sample(logits_.get(), sample_work_.get(), sample_counts_.get(),
                                     p.sampling, num_sampled, p.token_lists, m.vocab_size,
                                     p.sampled, s));
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
  return stamp(true);
}

// Builds the results of a step from its sampled tokens and host logits rows.
step_result cuda_backend::build_result(const step_plan& plan, const step_inputs& in,
                                       const std::int32_t* sampled,
                                       const std::vector<float>& host_logits) {
  const std::size_t V = model_.vocab_size;
  step_result out;
  out.step_index = plan.step_index;
  out.seqs.resize(plan.seqs.size());
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
      r.sampled_token = sampled[o.sample_row];
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

result<step_result> cuda_backend::execute(const step_plan& plan) {
  if (!in_flight_.empty())
    return status{status_code::kInvalidArgument, "execute while submitted steps are in flight"};
  KVSERVE_STATUS_TRY(submit(plan));
  return collect();
}

// One step through three streams. Upload: the packed inputs (one copy) into the slot's device
// buffer, once the slot's previous step (two steps back, already collected) is done with it.
// Compute: waits for the inputs, runs the step (graph or eager), samples into the slot. Download:
// the sampled tokens back to pinned memory once the step is done, while the next step runs.
// Steps whose sequences read host logits rows finish inside submit.
status cuda_backend::submit(const step_plan& plan) {
  if (in_flight_.size() >= 2)
    return {status_code::kInvalidArgument, "two steps are in flight: collect one first"};
  KVSERVE_CUDA_TRY(cudaSetDevice(config_.device));
  const int si = next_slot_;
  step_slot& slot = slots_[si];
  const int prev = 1 - si;
  step_limits lim;
  lim.vocab_size = model_.vocab_size;
  lim.num_kv_blocks = num_kv_blocks_;
  lim.block_size = config_.block_size;
  lim.max_model_len = max_model_len_;
  lim.max_num_seqs = config_.max_num_seqs;
  lim.max_num_tokens = max_tokens_;
  lim.max_rows = max_rows_;
  lim.small_step_max_tokens = config_.small_step_max_tokens;
  lim.small_step_max_seq_tokens = config_.small_step_max_seq_tokens;
  lim.small_step_max_context_reads = config_.small_step_max_context_reads;
  lim.max_blocks_per_seq = max_blocks_per_seq_;
  lim.max_logits_rows = max_logits_rows_;
  lim.token_list_capacity = token_list_capacity_;
  lim.gqa_group = model_.num_heads / model_.num_kv_heads;
  // Taken, so that a failed submit leaves no previous step for the next one (backend.hpp).
  const std::vector<std::pair<seq_id, std::int32_t>> prev_rows = std::move(prev_rows_);
  prev_rows_.clear();
  last_sample_source last;
  last.rows = &prev_rows;
  last.host_token = [&](std::int32_t row) -> result<std::int32_t> {
    KVSERVE_CUDA_TRY(cudaEventSynchronize(slots_[prev].results_ready.get()));
    return slots_[prev].h_sampled[row];
  };
  // The slot's previous step was collected (at most two in flight), so its inputs may go.
  KVSERVE_STATUS_TRY(build_step_inputs(plan, lim, &decode_bucket, &last, slot.in));
  const step_inputs& in = slot.in;
  slot.step_index = plan.step_index;
  slot.ids.clear();
  for (const auto& q : plan.seqs) slot.ids.push_back(q.id);
  slot.done.reset();
  slot.gap_index = slot.prev_gap_index = -1;
  std::vector<std::pair<seq_id, std::int32_t>> rows;
  for (std::size_t i = 0; i < plan.seqs.size(); ++i)
    if (in.outputs[i].sample_row >= 0) rows.emplace_back(plan.seqs[i].id, in.outputs[i].sample_row);
  std::sort(rows.begin(), rows.end());
  if (plan.seqs.empty()) {
    slot.done = step_result{plan.step_index, {}};
  } else {
    cudaStream_t s = stream_.get();
    const pack_layout l = layout_of(in);
    unsigned char* h = slot.h_pack.get();
    auto put = [&](std::size_t off, const auto& v) {
      if (!v.empty()) std::memcpy(h + off, v.data(), v.size() * sizeof(v[0]));
    };
    put(l.tokens, in.tokens);
    put(l.gather_src, in.gather_src);
    put(l.positions, in.positions);
    put(l.slots, in.slot_mapping);
    put(l.context_lens, in.context_lens);
    put(l.logits_rows, in.logits_rows);
    put(l.sampling, in.sampling);
    put(l.items, in.items);
    put(l.block_tables, in.block_tables);
    put(l.token_lists, in.token_lists);
    KVSERVE_CUDA_TRY(cudaStreamWaitEvent(upload_stream_.get(), slot.forward_done.get(), 0));
    KVSERVE_CUDA_TRY(cudaMemcpyAsync(slot.d_pack.get(), h, l.bytes, cudaMemcpyHostToDevice,
                                     upload_stream_.get()));
    KVSERVE_CUDA_TRY(cudaEventRecord(slot.inputs_ready.get(), upload_stream_.get()));
    KVSERVE_CUDA_TRY(cudaStreamWaitEvent(s, slot.inputs_ready.get(), 0));
    if (config_.record_step_gaps) {
      slot.gap_index = gap_counter_ % 4;
      if (have_prev_step_) slot.prev_gap_index = (gap_counter_ + 3) % 4;
      KVSERVE_CUDA_TRY(cudaEventRecord(gap_begin_[slot.gap_index].get(), s));
    }
    const step_ptrs p = pointers(si, l);
    std::vector<float> host_logits;
    bool host_rows = false;
    for (const auto& o : in.outputs) host_rows = host_rows || o.num_logits_rows > 0;
    if (in.decode_only) {
      KVSERVE_STATUS_TRY(run_decode(in, si, p));
      if (config_.record_step_gaps)
        KVSERVE_CUDA_TRY(cudaEventRecord(gap_end_[slot.gap_index].get(), s));
      if (host_rows) {  // each sequence's last row, where it asked for logits or logprobs
        const std::size_t V = model_.vocab_size;
        host_logits.resize(static_cast<std::size_t>(in.num_rows) * V);
        for (const seq_outputs& o : in.outputs) {
          if (o.num_logits_rows == 0) continue;
          const std::size_t off = static_cast<std::size_t>(o.first_logits_row) * V;
          KVSERVE_CUDA_TRY(cudaMemcpyAsync(host_logits.data() + off, logits_.get() + off,
                                           V * sizeof(float), cudaMemcpyDeviceToHost, s));
        }
      }
    } else {
      KVSERVE_STATUS_TRY(run_general(in, p, host_logits));
      if (config_.record_step_gaps)
        KVSERVE_CUDA_TRY(cudaEventRecord(gap_end_[slot.gap_index].get(), s));
    }
    KVSERVE_CUDA_TRY(cudaEventRecord(slot.forward_done.get(), s));
    cudaStream_t d = download_stream_.get();
    KVSERVE_CUDA_TRY(cudaStreamWaitEvent(d, slot.forward_done.get(), 0));
    if (!in.sampling.empty()) {
      KVSERVE_CUDA_TRY(cudaMemcpyAsync(slot.h_sampled.get(), slot.d_sampled.get(),
                                       in.sampling.size() * sizeof(std::int32_t),
                                       cudaMemcpyDeviceToHost, d));
    }
    KVSERVE_CUDA_TRY(cudaEventRecord(slot.results_ready.get(), d));
    if (host_rows) {
      KVSERVE_CUDA_TRY(cudaEventSynchronize(slot.results_ready.get()));
      KVSERVE_CUDA_TRY(cudaStreamSynchronize(s));
      slot.done = build_result(plan, in, slot.h_sampled.get(), host_logits);
    }
    ++gap_counter_;
    have_prev_step_ = true;
  }
  prev_rows_ = std::move(rows);
  in_flight_.push_back(si);
  next_slot_ = 1 - si;
  return status::ok();
}

result<step_result> cuda_backend::collect() {
  if (in_flight_.empty())
    return status{status_code::kInvalidArgument, "collect: no step is in flight"};
  const int si = in_flight_.front();
  in_flight_.pop_front();
  step_slot& slot = slots_[si];
  KVSERVE_CUDA_TRY(cudaSetDevice(config_.device));
  if (!slot.ids.empty()) {
    KVSERVE_CUDA_TRY(cudaEventSynchronize(slot.results_ready.get()));
    ++stats_.steps_executed;
  }
  if (slot.gap_index >= 0 && slot.prev_gap_index >= 0) {
    float ms = 0.0f;
    KVSERVE_CUDA_TRY(cudaEventElapsedTime(&ms, gap_end_[slot.prev_gap_index].get(),
                                          gap_begin_[slot.gap_index].get()));
    step_gaps_us_.push_back(ms * 1000.0f);
  }
  if (slot.done) return std::move(*slot.done);
  step_result out;
  out.step_index = slot.step_index;
  out.seqs.resize(slot.ids.size());
  for (std::size_t i = 0; i < slot.ids.size(); ++i) {
    out.seqs[i].id = slot.ids[i];
    const int row = slot.in.outputs[i].sample_row;
    if (row >= 0) out.seqs[i].sampled_token = slot.h_sampled[row];
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

std::vector<float> cuda_step_gaps_device_us(const backend& b) {
  const auto* c = dynamic_cast<const cuda::cuda_backend*>(&b);
  return c ? c->step_gaps_device_us() : std::vector<float>{};
}

result<std::unique_ptr<backend>> make_cuda_backend_dummy(const cuda_backend_config& config,
                                                         model_config model, std::uint64_t seed) {
  return cuda::make(config, std::move(model), [&](cuda::cuda_backend& b) { return b.dummy(seed); });
}

}  // namespace kvserve
