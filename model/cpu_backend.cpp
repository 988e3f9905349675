#include "model/cpu_backend.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <string>
#include <utility>

#include "model/cpu_kernels.hpp"
#include "model/kv_quantize.hpp"

namespace kvserve {
namespace {

status invalid(std::string message) { return {status_code::kInvalidArgument, std::move(message)}; }

// Moves a tensor's data out after checking its size; `what` names it in the error.
status take(tensor_f32& tensor, std::size_t expected, const std::string& what,
            std::vector<float>& out) {
  if (tensor.numel() != expected) {
    return {status_code::kCorruptData, "weight " + what + " has " + std::to_string(tensor.numel()) +
                                           " values, expected " + std::to_string(expected)};
  }
  out = std::move(tensor.data);
  tensor.data = {};
  return status::ok();
}

// Appends a tensor's rows to `out` after checking its size, then frees it.
status append(tensor_f32& tensor, std::size_t expected, const std::string& what,
              std::vector<float>& out) {
  std::vector<float> data;
  if (status s = take(tensor, expected, what, data); !s) return s;
  out.insert(out.end(), data.begin(), data.end());
  return status::ok();
}

status validate_model(const model_config& m) {
  if (m.vocab_size <= 0 || m.hidden_size <= 0 || m.intermediate_size <= 0 || m.num_layers <= 0 ||
      m.num_heads <= 0 || m.num_kv_heads <= 0 || m.head_dim <= 0) {
    return invalid("model config has a non-positive size");
  }
  if (m.num_heads % m.num_kv_heads != 0) {
    return invalid("num_heads (" + std::to_string(m.num_heads) +
                   ") is not a multiple of num_kv_heads (" + std::to_string(m.num_kv_heads) + ")");
  }
  if (m.head_dim % 2 != 0) return invalid("head_dim must be even for RoPE");
  if (m.max_position_embeddings <= 0) return invalid("max_position_embeddings must be > 0");
  return status::ok();
}

}  // namespace

std::size_t cpu_kv_bytes_per_token(const model_config& config, kv_cache_dtype dtype) {
  if (config.num_layers <= 0 || config.num_kv_heads <= 0 || config.head_dim <= 0) return 0;
  return kv_bytes_per_token(config, resolve(dtype, kv_cache_dtype::kFp32));
}

int cpu_kv_blocks_for_memory(const model_config& config, int block_size,
                             std::size_t kv_cache_memory, kv_cache_dtype dtype) {
  const std::size_t per_block = cpu_kv_bytes_per_token(config, dtype) * std::max(block_size, 0);
  if (per_block == 0) return 0;
  return static_cast<int>(std::min<std::size_t>(kv_cache_memory / per_block, 1 << 30));
}

cpu_backend::cpu_backend(const cpu_backend_config& config, model_config model)
    : model_(std::move(model)),
      block_size_(config.block_size),
      num_kv_blocks_(config.num_kv_blocks),
      kv_dtype_(resolve(config.kv_dtype, kv_cache_dtype::kFp32)),
      row_bytes_(static_cast<std::size_t>(model_.head_dim) * kv_element_bytes(kv_dtype_)),
      pool_(config.num_threads),
      rope_(model_) {}

result<std::unique_ptr<cpu_backend>> cpu_backend::create(const cpu_backend_config& config,
                                                         model_config model,
                                                         model_weights weights) {
  if (!is_supported_block_size(config.block_size)) {
    return invalid("unsupported block size " + std::to_string(config.block_size) +
                   " (supported: 2, 4, 8, 16, 32, 64)");
  }
  if (config.num_kv_blocks <= 0) {
    return invalid("the KV pool needs at least one block (num_kv_blocks = " +
                   std::to_string(config.num_kv_blocks) + ")");
  }
  if (status s = validate_model(model); !s) return s;
  if (static_cast<int>(weights.layers.size()) != model.num_layers) {
    return status{status_code::kCorruptData,
                  "weights have " + std::to_string(weights.layers.size()) + " layers, config " +
                      std::to_string(model.num_layers)};
  }

  std::unique_ptr<cpu_backend> b(new cpu_backend(config, std::move(model)));
  const model_config& m = b->model_;
  const std::size_t hidden = m.hidden_size;
  const std::size_t vocab = m.vocab_size;
  const std::size_t q = m.q_size();
  const std::size_t kv = m.kv_size();
  const std::size_t inter = m.intermediate_size;

  if (status s =
          take(weights.token_embedding, vocab * hidden, "token_embedding", b->token_embedding_);
      !s) {
    return s;
  }
  if (!weights.lm_head.empty()) {
    if (status s = take(weights.lm_head, vocab * hidden, "lm_head", b->lm_head_); !s) return s;
  }
  if (status s = take(weights.final_norm, hidden, "final_norm", b->final_norm_); !s) return s;
  b->layers_.resize(m.num_layers);
  for (int i = 0; i < m.num_layers; ++i) {
    layer_weights& w = weights.layers[i];
    layer& l = b->layers_[i];
    const std::string p = "layers." + std::to_string(i) + ".";
    status s = take(w.attn_norm, hidden, p + "attn_norm", l.attn_norm);
    if (s) s = append(w.wq, q * hidden, p + "wq", l.wqkv);
    if (s) s = append(w.wk, kv * hidden, p + "wk", l.wqkv);
    if (s) s = append(w.wv, kv * hidden, p + "wv", l.wqkv);
    if (s && m.attention_bias) {
      s = append(w.bq, q, p + "bq", l.bqkv);
      if (s) s = append(w.bk, kv, p + "bk", l.bqkv);
      if (s) s = append(w.bv, kv, p + "bv", l.bqkv);
    }
    if (s) s = take(w.wo, hidden * q, p + "wo", l.wo);
    if (s) s = take(w.ffn_norm, hidden, p + "ffn_norm", l.ffn_norm);
    if (s) s = append(w.w_gate, inter * hidden, p + "w_gate", l.w_gate_up);
    if (s) s = append(w.w_up, inter * hidden, p + "w_up", l.w_gate_up);
    if (s) s = take(w.w_down, hidden * inter, p + "w_down", l.w_down);
    if (!s) return s;
  }

  // Uninitialised on purpose: a large new[] is backed by zero pages committed on first write,
  // and attention only reads slots that a step has written.
  const std::size_t pool_rows =
      static_cast<std::size_t>(m.num_layers) * b->num_kv_blocks_ * m.num_kv_heads * b->block_size_;
  const std::size_t pool_floats = (pool_rows * b->row_bytes_ + sizeof(float) - 1) / sizeof(float);
  const bool has_scales = kv_dtype_has_scales(b->kv_dtype_);
  bool allocated = true;
  for (kv_pool* pool : {&b->k_cache_, &b->v_cache_}) {
    pool->data.reset(new (std::nothrow) float[pool_floats]);
    if (has_scales) pool->scales.reset(new (std::nothrow) float[pool_rows]);
    allocated = allocated && pool->data && (!has_scales || pool->scales);
  }
  if (!allocated) {
    return status{
        status_code::kOutOfMemory,
        "cannot allocate the KV pool (" +
            std::to_string(2 * pool_rows * (b->row_bytes_ + (has_scales ? 4 : 0)) / (1 << 20)) +
            " MiB)"};
  }
  b->scores_.assign(b->pool_.size(), std::vector<float>(m.max_position_embeddings));
  if (b->kv_dtype_ != kv_cache_dtype::kFp32) {
    b->kv_scratch_.assign(
        b->pool_.size(), std::vector<float>(static_cast<std::size_t>(b->block_size_) * m.head_dim));
  }
  b->samplers_.resize(b->pool_.size());
  return b;
}

status cpu_backend::validate(const step_plan& plan) const {
  const int vocab = model_.vocab_size;
  auto in_vocab = [&](std::int32_t t) { return t >= 0 && t < vocab; };
  for (std::size_t i = 0; i < plan.seqs.size(); ++i) {
    const sequence_step& s = plan.seqs[i];
    const std::string who = "sequence " + std::to_string(s.id) + ": ";
    if (s.tokens.empty()) return invalid(who + "no tokens to compute");
    if (s.input_from_last_sample) {
      return invalid(who + "input_from_last_sample is set (the worker must fill tokens[0])");
    }
    if (s.start_position < 0) return invalid(who + "negative start_position");
    const std::int64_t end = static_cast<std::int64_t>(s.start_position) + s.tokens.size();
    if (end > model_.max_position_embeddings) {
      return invalid(who + "position " + std::to_string(end - 1) +
                     " is past the model's context (" +
                     std::to_string(model_.max_position_embeddings) + " tokens)");
    }
    const std::int64_t blocks_needed = (end + block_size_ - 1) / block_size_;
    if (static_cast<std::int64_t>(s.block_table.size()) < blocks_needed) {
      return invalid(who + "block table has " + std::to_string(s.block_table.size()) +
                     " blocks, positions up to " + std::to_string(end - 1) + " need " +
                     std::to_string(blocks_needed));
    }
    for (std::int64_t b = 0; b < blocks_needed; ++b) {
      if (s.block_table[b] < 0 || s.block_table[b] >= num_kv_blocks_) {
        return invalid(who + "block id " + std::to_string(s.block_table[b]) +
                       " outside the pool of " + std::to_string(num_kv_blocks_) + " blocks");
      }
    }
    for (std::int32_t t : s.tokens) {
      if (!in_vocab(t))
        return invalid(who + "token id " + std::to_string(t) + " outside the vocabulary");
    }
    if (s.next_prompt_token && !in_vocab(*s.next_prompt_token)) {
      return invalid(who + "next_prompt_token outside the vocabulary");
    }
    if (s.sample) {
      if (status st = validate_sampling_params(s.sampling); !st) return invalid(who + st.message());
      for (const auto* list :
           {&s.penalty_prompt_tokens, &s.penalty_output_tokens, &s.suppressed_tokens}) {
        for (std::int32_t t : *list) {
          if (!in_vocab(t)) {
            return invalid(who + "penalty or suppressed token id " + std::to_string(t) +
                           " outside the vocabulary");
          }
        }
      }
    }
  }
  return status::ok();
}

void cpu_backend::store_row(kv_pool& pool, std::size_t head, int slot, const float* x) {
  const int hd = model_.head_dim;
  const std::size_t row = head * block_size_ + slot;
  if (kv_dtype_ == kv_cache_dtype::kFp32) {
    std::copy_n(x, hd, pool.data.get() + row * hd);
    return;
  }
  auto* bytes = reinterpret_cast<std::uint8_t*>(pool.data.get()) + row * row_bytes_;
  const float scale = quantize_head(kv_dtype_, x, hd, bytes);
  if (pool.scales) pool.scales[row] = scale;
}

const float* cpu_backend::load_rows(const kv_pool& pool, std::size_t head, int rows,
                                    float* scratch) const {
  const int hd = model_.head_dim;
  const std::size_t first = head * block_size_;
  if (kv_dtype_ == kv_cache_dtype::kFp32) return pool.data.get() + first * hd;
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(pool.data.get()) + first * row_bytes_;
  for (int r = 0; r < rows; ++r) {
    const float scale = pool.scales ? pool.scales[first + r] : 1.0f;
    dequantize_head(kv_dtype_, bytes + r * row_bytes_, scale, hd,
                    scratch + static_cast<std::size_t>(r) * hd);
  }
  return scratch;
}

void cpu_backend::attention(const step_plan& plan, int layer_index) {
  const int hd = model_.head_dim;
  const int heads = model_.num_heads;
  const int group = heads / model_.num_kv_heads;
  const int qkv_width = model_.q_size() + 2 * model_.kv_size();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int num_tasks = static_cast<int>(tokens_.size()) * heads;
  std::int64_t work = 0;
  for (const token_ref& t : tokens_) work += static_cast<std::int64_t>(t.position + 1) * heads * hd;
  pool_.parallel_for(
      num_tasks,
      [&](int task, int thread) {
        const int t = task / heads;
        const int h = task % heads;
        const token_ref ref = tokens_[t];
        const std::vector<std::int32_t>& table = plan.seqs[ref.seq].block_table;
        const float* q = qkv_.data() + static_cast<std::size_t>(t) * qkv_width + h * hd;
        const int kv_head = h / group;
        float* scores = scores_[thread].data();
        float* scratch = kv_scratch_.empty() ? nullptr : kv_scratch_[thread].data();
        const int n = ref.position + 1;
        // Scores over positions 0..pos in position order, a block's rows at a time; the block
        // table only says where each row lives, and dequantizing a row depends on nothing but
        // its codes and scale, so the arithmetic is the same for every block size and layout.
        float max_score = -INFINITY;
        for (int j0 = 0; j0 < n; j0 += block_size_) {
          const int rows = std::min(block_size_, n - j0);
          const float* k = load_rows(
              k_cache_, head_index(layer_index, table[j0 / block_size_], kv_head), rows, scratch);
          for (int r = 0; r < rows; ++r) {
            const float s = dot(q, k + static_cast<std::size_t>(r) * hd, hd) * scale;
            scores[j0 + r] = s;
            max_score = std::max(max_score, s);
          }
        }
        double sum = 0.0;
        for (int j = 0; j < n; ++j) {
          const float e = std::exp(scores[j] - max_score);
          scores[j] = e;
          sum += e;
        }
        const float inv_sum = static_cast<float>(1.0 / sum);
        float* out = attn_out_.data() + static_cast<std::size_t>(t) * model_.q_size() + h * hd;
        std::fill(out, out + hd, 0.0f);
        for (int j0 = 0; j0 < n; j0 += block_size_) {
          const int rows = std::min(block_size_, n - j0);
          const float* v = load_rows(
              v_cache_, head_index(layer_index, table[j0 / block_size_], kv_head), rows, scratch);
          for (int r = 0; r < rows; ++r) {
            axpy(scores[j0 + r] * inv_sum, v + static_cast<std::size_t>(r) * hd, hd, out);
          }
        }
      },
      work >= (1 << 15));
}

void cpu_backend::forward(const step_plan& plan) {
  const int num_tokens = static_cast<int>(tokens_.size());
  const std::size_t hidden = model_.hidden_size;
  const int q_size = model_.q_size();
  const int kv_size = model_.kv_size();
  const int qkv_width = q_size + 2 * kv_size;
  const int inter = model_.intermediate_size;
  const int hd = model_.head_dim;
  const int half = hd / 2;
  const std::size_t nt = num_tokens;
  // Per-token elementwise work is worth spreading over threads only for a few tokens or more.
  const bool per_token_parallel = num_tokens >= 4;

  rope_cos_.resize(nt * half);
  rope_sin_.resize(nt * half);
  x_.resize(nt * hidden);
  xn_.resize(nt * hidden);
  qkv_.resize(nt * qkv_width);
  attn_out_.resize(nt * q_size);
  gate_up_.resize(nt * 2 * inter);
  act_.resize(nt * inter);

  pool_.parallel_for(
      num_tokens,
      [&](int t, int) {
        const token_ref ref = tokens_[t];
        const std::int32_t token =
            plan.seqs[ref.seq].tokens[ref.position - plan.seqs[ref.seq].start_position];
        std::copy_n(token_embedding_.data() + static_cast<std::size_t>(token) * hidden, hidden,
                    x_.data() + t * hidden);
        rope_.cos_sin(ref.position, rope_cos_.data() + static_cast<std::size_t>(t) * half,
                      rope_sin_.data() + static_cast<std::size_t>(t) * half);
      },
      per_token_parallel);

  for (int li = 0; li < model_.num_layers; ++li) {
    const layer& l = layers_[li];
    pool_.parallel_for(num_tokens, [&](int t, int) {
      rms_norm(x_.data() + t * hidden, l.attn_norm.data(), static_cast<int>(hidden),
               model_.rms_norm_eps, xn_.data() + t * hidden);
    });
    matmul(xn_.data(), num_tokens, static_cast<int>(hidden), l.wqkv.data(), qkv_width,
           static_cast<int>(hidden), qkv_.data(), qkv_width, false, pool_);
    // Bias, RoPE, and the K/V of every token into its slot before any attention reads it.
    pool_.parallel_for(
        num_tokens,
        [&](int t, int) {
          float* row = qkv_.data() + static_cast<std::size_t>(t) * qkv_width;
          if (!l.bqkv.empty()) {
            for (int i = 0; i < qkv_width; ++i) row[i] += l.bqkv[i];
          }
          const float* c = rope_cos_.data() + static_cast<std::size_t>(t) * half;
          const float* s = rope_sin_.data() + static_cast<std::size_t>(t) * half;
          for (int h = 0; h < model_.num_heads; ++h) rope_.apply(row + h * hd, c, s);
          float* k = row + q_size;
          const float* v = row + q_size + kv_size;
          const token_ref ref = tokens_[t];
          const int block = plan.seqs[ref.seq].block_table[ref.position / block_size_];
          const int slot = ref.position % block_size_;
          for (int h = 0; h < model_.num_kv_heads; ++h) {
            rope_.apply(k + h * hd, c, s);
            store_row(k_cache_, head_index(li, block, h), slot, k + h * hd);
            store_row(v_cache_, head_index(li, block, h), slot, v + h * hd);
          }
        },
        per_token_parallel);
    attention(plan, li);
    matmul(attn_out_.data(), num_tokens, q_size, l.wo.data(), static_cast<int>(hidden), q_size,
           x_.data(), static_cast<int>(hidden), true, pool_);
    pool_.parallel_for(num_tokens, [&](int t, int) {
      rms_norm(x_.data() + t * hidden, l.ffn_norm.data(), static_cast<int>(hidden),
               model_.rms_norm_eps, xn_.data() + t * hidden);
    });
    matmul(xn_.data(), num_tokens, static_cast<int>(hidden), l.w_gate_up.data(), 2 * inter,
           static_cast<int>(hidden), gate_up_.data(), 2 * inter, false, pool_);
    pool_.parallel_for(
        num_tokens,
        [&](int t, int) {
          const float* g = gate_up_.data() + static_cast<std::size_t>(t) * 2 * inter;
          silu_mul(g, g + inter, inter, act_.data() + static_cast<std::size_t>(t) * inter);
        },
        per_token_parallel);
    matmul(act_.data(), num_tokens, inter, l.w_down.data(), static_cast<int>(hidden), inter,
           x_.data(), static_cast<int>(hidden), true, pool_);
  }
}

result<step_result> cpu_backend::execute(const step_plan& plan) {
  if (status s = validate(plan); !s) return s;
  step_result result;
  result.step_index = plan.step_index;
  result.seqs.resize(plan.seqs.size());
  if (plan.seqs.empty()) return result;

  tokens_.clear();
  seq_first_token_.assign(plan.seqs.size(), 0);
  for (std::size_t i = 0; i < plan.seqs.size(); ++i) {
    const sequence_step& s = plan.seqs[i];
    seq_first_token_[i] = static_cast<int>(tokens_.size());
    for (std::size_t j = 0; j < s.tokens.size(); ++j) {
      tokens_.push_back({static_cast<int>(i), s.start_position + static_cast<int>(j)});
    }
  }
  forward(plan);

  // Which rows need logits: all of a sequence's for kAll or prompt logprobs, else its last one
  // when it samples or asks for kLast.
  const std::size_t hidden = model_.hidden_size;
  const std::size_t vocab = model_.vocab_size;
  std::vector<int> row_token;                            // flat token index of each logits row
  std::vector<int> seq_first_row(plan.seqs.size(), -1);  // first logits row of each sequence
  for (std::size_t i = 0; i < plan.seqs.size(); ++i) {
    const sequence_step& s = plan.seqs[i];
    const int first = seq_first_token_[i];
    const int n = static_cast<int>(s.tokens.size());
    if (s.return_logits == logits_mode::kAll || s.prompt_logprobs >= 0) {
      seq_first_row[i] = static_cast<int>(row_token.size());
      for (int j = 0; j < n; ++j) row_token.push_back(first + j);
    } else if (s.return_logits == logits_mode::kLast || s.sample) {
      seq_first_row[i] = static_cast<int>(row_token.size());
      row_token.push_back(first + n - 1);
    }
  }
  const int num_rows = static_cast<int>(row_token.size());
  std::vector<float> normed(static_cast<std::size_t>(num_rows) * hidden);
  std::vector<float> logits(static_cast<std::size_t>(num_rows) * vocab);
  pool_.parallel_for(num_rows, [&](int r, int) {
    rms_norm(x_.data() + static_cast<std::size_t>(row_token[r]) * hidden, final_norm_.data(),
             static_cast<int>(hidden), model_.rms_norm_eps, normed.data() + r * hidden);
  });
  const std::vector<float>& head = lm_head_.empty() ? token_embedding_ : lm_head_;
  matmul(normed.data(), num_rows, static_cast<int>(hidden), head.data(), static_cast<int>(vocab),
         static_cast<int>(hidden), logits.data(), static_cast<int>(vocab), false, pool_);
  auto row = [&](int r) {
    return std::span<const float>(logits.data() + static_cast<std::size_t>(r) * vocab, vocab);
  };

  // Prompt logprobs: one work item per (sequence, position with a target).
  std::vector<std::pair<int, int>> prompt_items;
  for (std::size_t i = 0; i < plan.seqs.size(); ++i) {
    const sequence_step& s = plan.seqs[i];
    if (s.prompt_logprobs < 0) continue;
    const int n = static_cast<int>(s.tokens.size());
    const int with_target = s.next_prompt_token ? n : n - 1;
    result.seqs[i].prompt_logprobs.resize(with_target);
    for (int j = 0; j < with_target; ++j) prompt_items.emplace_back(static_cast<int>(i), j);
  }
  pool_.parallel_for(static_cast<int>(prompt_items.size()), [&](int item, int) {
    const auto [i, j] = prompt_items[item];
    const sequence_step& s = plan.seqs[i];
    const std::int32_t target =
        j + 1 < static_cast<int>(s.tokens.size()) ? s.tokens[j + 1] : *s.next_prompt_token;
    result.seqs[i].prompt_logprobs[j] =
        compute_logprobs(row(seq_first_row[i] + j), target, s.prompt_logprobs);
  });

  pool_.parallel_for(static_cast<int>(plan.seqs.size()), [&](int i, int thread) {
    const sequence_step& s = plan.seqs[i];
    sequence_result& out = result.seqs[i];
    out.id = s.id;
    if (seq_first_row[i] < 0) return;
    const int n = static_cast<int>(s.tokens.size());
    const bool all_rows = s.return_logits == logits_mode::kAll || s.prompt_logprobs >= 0;
    const int last_row = seq_first_row[i] + (all_rows ? n - 1 : 0);
    if (s.return_logits == logits_mode::kAll) {
      auto begin = logits.begin() + static_cast<std::ptrdiff_t>(seq_first_row[i]) * vocab;
      out.logits.assign(begin, begin + static_cast<std::ptrdiff_t>(n) * vocab);
    } else if (s.return_logits == logits_mode::kLast) {
      auto r = row(last_row);
      out.logits.assign(r.begin(), r.end());
    }
    if (s.sample) {
      sampling_context context;
      context.prompt_tokens = s.penalty_prompt_tokens;
      context.output_tokens = s.penalty_output_tokens;
      context.suppressed_tokens = s.suppressed_tokens;
      context.position = static_cast<std::int64_t>(s.start_position) + n;
      sampled_token st = samplers_[thread].sample(row(last_row), s.sampling, context);
      out.sampled_token = st.token;
      out.sampled_logprobs = std::move(st.logprobs);
    }
  });
  ++stats_.steps_executed;
  return result;
}

}  // namespace kvserve
