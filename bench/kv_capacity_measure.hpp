#pragma once
/// Measures how many tokens a KV pool of a given memory actually holds, per KV dtype, on the
/// CPU backend through the real engine (issue 10: "at the same memory, the 8-bit caches hold
/// about twice the tokens of bf16 (measured, not computed)").
///
/// The pool is sized from the memory the way `kvserve --kv-cache-memory` sizes it
/// (cpu_kv_blocks_for_memory). Then far more requests than can fit are submitted at once, each
/// growing to `context_len` KV tokens (a prompt of context_len - kDecodeSteps tokens, then
/// kDecodeSteps + 1 output tokens, EOS ignored), prefix caching off and a token budget large
/// enough that only the KV pool limits admission. The first step is held until every request
/// is queued, so the next step admits as many sequences as the pool takes; they stay resident
/// through their decode steps (with or without the scheduler's step overlap), and what is
/// still waiting afterwards is cancelled. A wrapper around the backend records, for every
/// executed step, the sequences in it, the KV tokens they hold after it (written positions)
/// and the distinct pool blocks their block tables use; the maxima are the measurement.
///
/// Shared by bench/kv_capacity_bench.cpp and tests/monitoring/kv_capacity_measure_test.cpp.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "actors/engine.hpp"
#include "model/backend.hpp"
#include "model/cpu_backend.hpp"
#include "model/kv_cache_dtype.hpp"
#include "model/model_config.hpp"
#include "model/model_weights.hpp"
#include "model/tokenizer.hpp"

namespace kvserve::capacity {

/// Decode steps each measured sequence runs after its prefill (it stays resident meanwhile).
inline constexpr int kDecodeSteps = 3;

/// What one pool held at its fullest.
struct measurement {
  kv_cache_dtype dtype = kv_cache_dtype::kAuto;
  std::uint64_t memory_bytes = 0;   ///< --kv-cache-memory
  int num_blocks = 0;               ///< blocks the backend was built with for that memory
  std::size_t bytes_per_token = 0;  ///< what the backend says one token costs
  int context_len = 0;
  int num_requests = 0;          ///< submitted at once
  int peak_sequences = 0;        ///< most sequences in one step
  std::int64_t peak_tokens = 0;  ///< most KV tokens written, summed over one step
  std::int64_t peak_blocks = 0;  ///< most distinct pool blocks in one step's tables
  int num_steps = 0;
  std::uint64_t num_preemptions = 0;
  int num_errors = 0;           ///< requests that ended with an error
  std::string first_error;      ///< the message of the first
  std::string trace;            ///< per step: sequences/KV tokens/blocks
  status error = status::ok();  ///< the backend refused the dtype, or the run failed
  /// Tokens the pool held: the most sequences resident at once, each of which grew to
  /// context_len tokens in its own blocks without preemption.
  std::int64_t tokens_held() const {
    return static_cast<std::int64_t>(peak_sequences) * context_len;
  }
  /// The fullest step left no room for one more sequence: the pool, not the arrival of
  /// requests, bounded it.
  bool pool_bound() const {
    const int per_seq = block_size > 0 ? (context_len + block_size - 1) / block_size : 0;
    return peak_blocks + per_seq > num_blocks;
  }
  int block_size = 0;
};

/// Wraps a backend: holds the first step until open() and records the fullest step.
class recording_backend : public backend {
 public:
  struct record {
    std::mutex mu;
    std::condition_variable cv;
    bool open = false;
    int steps = 0;
    int peak_step = 0;  ///< the step that first had peak_sequences
    int peak_sequences = 0;
    std::int64_t peak_tokens = 0;
    std::int64_t peak_blocks = 0;
    std::string trace;  ///< per step: sequences/tokens/blocks
  };

  recording_backend(std::unique_ptr<backend> inner, std::shared_ptr<record> rec)
      : inner_(std::move(inner)), rec_(std::move(rec)) {}

  std::string name() const override { return inner_->name(); }
  const model_config& config() const override { return inner_->config(); }
  int block_size() const override { return inner_->block_size(); }
  int num_kv_blocks() const override { return inner_->num_kv_blocks(); }
  std::size_t kv_bytes_per_token() const override { return inner_->kv_bytes_per_token(); }
  kv_cache_dtype kv_dtype() const override { return inner_->kv_dtype(); }
  backend_stats stats() const override { return inner_->stats(); }

  result<step_result> execute(const step_plan& plan) override {
    {
      // Bounded: a test never hangs on a gate nobody opens.
      std::unique_lock<std::mutex> lock(rec_->mu);
      rec_->cv.wait_for(lock, std::chrono::seconds(30), [&] { return rec_->open; });
    }
    auto out = inner_->execute(plan);
    if (!out) return out;
    const int bs = inner_->block_size();
    std::int64_t tokens = 0;
    std::set<std::int32_t> blocks;
    for (const sequence_step& s : plan.seqs) {
      const int end = s.start_position + static_cast<int>(s.tokens.size());
      tokens += end;
      const int used = (end + bs - 1) / bs;
      for (int i = 0; i < used && i < static_cast<int>(s.block_table.size()); ++i) {
        blocks.insert(s.block_table[i]);
      }
    }
    {
      std::lock_guard<std::mutex> lock(rec_->mu);
      ++rec_->steps;
      rec_->trace += std::to_string(plan.seqs.size()) + "/" + std::to_string(tokens) + "/" +
                     std::to_string(blocks.size()) + " ";
      rec_->peak_tokens = std::max(rec_->peak_tokens, tokens);
      if (static_cast<int>(plan.seqs.size()) > rec_->peak_sequences) {
        rec_->peak_sequences = static_cast<int>(plan.seqs.size());
        rec_->peak_step = rec_->steps;
      }
      rec_->peak_blocks = std::max(rec_->peak_blocks, static_cast<std::int64_t>(blocks.size()));
    }
    rec_->cv.notify_all();
    return out;
  }

 private:
  std::unique_ptr<backend> inner_;
  std::shared_ptr<record> rec_;
};

/// A byte-level tokenizer (256 byte tokens and an end-of-text token) for dummy models.
inline std::shared_ptr<const tokenizer> make_byte_tokenizer() {
  // GPT-2's byte-to-unicode alphabet: printable Latin-1 bytes stand for themselves, the others
  // for U+0100 and up, in byte order.
  auto utf8 = [](int cp) {
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
  };
  tokenizer_spec spec;
  int next_extra = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable =
        (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    spec.tokens.push_back(utf8(printable ? b : next_extra++));
  }
  spec.kinds.assign(256, token_kind::kNormal);
  spec.tokens.push_back("<|endoftext|>");
  spec.kinds.push_back(token_kind::kControl);
  spec.eos_token_id = 256;
  auto t = tokenizer::create(std::move(spec));
  return t ? t.value() : nullptr;
}

/// What a measurement runs on.
struct setup {
  model_config model;
  /// Fresh weights for each backend (the backend takes them).
  std::function<model_weights()> make_weights;
  std::shared_ptr<const tokenizer> model_tokenizer;
  int block_size = 16;
  int context_len = 32;  ///< KV tokens each sequence grows to (a multiple of block_size)
  int num_threads = 0;   ///< CPU backend threads
  /// Requests submitted: this factor times the sequences the pool is expected to hold.
  double oversubscription = 1.5;
  /// Bound on each wait (the fullest step, then the end of every request).
  std::chrono::seconds timeout{120};
};

/// The KV pool blocks that `memory` buys for `dtype`, as `kvserve --kv-cache-memory` sizes it.
inline int pool_blocks(const model_config& model, kv_cache_dtype dtype, int block_size,
                       std::uint64_t memory) {
  return cpu_kv_blocks_for_memory(model, block_size, memory, dtype);
}

/// Measures one dtype at one memory size. Errors (the backend refuses the dtype) come back in
/// `error`; everything else is filled in.
inline measurement measure(const setup& s, kv_cache_dtype dtype, std::uint64_t memory) {
  using namespace std::chrono_literals;
  measurement m;
  m.dtype = dtype;
  m.memory_bytes = memory;
  m.context_len = s.context_len;
  m.block_size = s.block_size;
  m.num_blocks = pool_blocks(s.model, dtype, s.block_size, memory);
  if (m.num_blocks <= 0) {
    m.error = status(status_code::kInvalidArgument, "the memory holds no KV block");
    return m;
  }
  cpu_backend_config bc;
  bc.block_size = s.block_size;
  bc.num_kv_blocks = m.num_blocks;
  bc.num_threads = s.num_threads;
  bc.kv_dtype = dtype;
  auto made = cpu_backend::create(bc, s.model, s.make_weights());
  if (!made) {
    m.error = made.error();
    return m;
  }
  m.bytes_per_token = made.value()->kv_bytes_per_token();

  const int per_seq = (s.context_len + s.block_size - 1) / s.block_size;
  const int expected = std::max(1, m.num_blocks / per_seq);
  m.num_requests = static_cast<int>(expected * s.oversubscription) + 1;

  auto rec = std::make_shared<recording_backend::record>();
  engine_config ec;
  ec.block_size = s.block_size;
  ec.max_model_len = std::min(s.model.max_position_embeddings, s.context_len + 1);
  const int prompt_len = std::max(1, s.context_len - kDecodeSteps);
  ec.max_num_seqs = m.num_requests + 1;
  ec.max_num_batched_tokens = (m.num_requests + 1) * s.context_len;
  ec.max_waiting_requests = m.num_requests + 1;
  ec.enable_prefix_caching = false;
  engine_parts parts;
  parts.model_backend = std::make_unique<recording_backend>(std::move(made.value()), rec);
  parts.model_tokenizer = s.model_tokenizer;
  auto eng = make_engine(ec, std::move(parts));
  if (!eng) {
    m.error = eng.error();
    return m;
  }

  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  int errors = 0;
  std::string first_error;
  std::vector<request_id> ids;
  const int vocab = std::max(2, std::min(s.model.vocab_size, 256));
  for (int r = 0; r < m.num_requests; ++r) {
    generate_request req;
    std::vector<std::int32_t> prompt(prompt_len);
    for (int i = 0; i < prompt_len; ++i) prompt[i] = (r * 31 + i * 7 + 1) % vocab;
    req.prompt = std::move(prompt);
    req.max_tokens = s.context_len - prompt_len + 1;  // the last sampled token is not stored
    req.sampling.ignore_eos = true;
    req.sampling.temperature = 0.0f;
    ids.push_back(eng.value()->submit(std::move(req), [&](request_id, const generation_event& e) {
      const bool err = std::holds_alternative<error_event>(e);
      if (err || std::holds_alternative<finished_event>(e)) {
        std::lock_guard<std::mutex> lock(mu);
        ++done;
        if (err && errors++ == 0) first_error = std::get<error_event>(e).error.message();
        cv.notify_all();
      }
    }));
  }
  // Submission is asynchronous past submit(): give the scheduler a moment to queue them all
  // while the first step is held. pool_bound() says whether it was enough.
  std::this_thread::sleep_for(200ms);
  {
    std::lock_guard<std::mutex> lock(rec->mu);
    rec->open = true;
  }
  rec->cv.notify_all();
  {
    // A step soon after the held one admits what the pool takes (the next one, or the one
    // after with step overlap), and those sequences decode to their full length in the next
    // kDecodeSteps steps: the rest need not run.
    std::unique_lock<std::mutex> lock(rec->mu);
    rec->cv.wait_for(lock, s.timeout, [&] {
      return rec->peak_step >= 2 && rec->steps >= rec->peak_step + kDecodeSteps;
    });
  }
  for (request_id id : ids) eng.value()->cancel(id);
  {
    std::unique_lock<std::mutex> lock(mu);
    if (!cv.wait_for(lock, s.timeout, [&] { return done == m.num_requests; })) {
      m.error = status(status_code::kInternal, "requests did not end in time");
    }
    m.num_errors = errors;
    m.first_error = first_error;
  }
  m.num_preemptions = eng.value()->stats().num_preemptions;
  eng.value()->shutdown(0ms);
  std::lock_guard<std::mutex> lock(rec->mu);
  m.peak_sequences = rec->peak_sequences;
  m.peak_tokens = rec->peak_tokens;
  m.peak_blocks = rec->peak_blocks;
  m.num_steps = rec->steps;
  m.trace = rec->trace;
  return m;
}

}  // namespace kvserve::capacity
