// GPU benchmark of the quantized KV cache (issue 10): for bf16, FP8 E4M3 and INT8 pools,
//   attention  decode attention alone at long context (Llama-3-8B heads): time, bytes moved,
//              bandwidth against the measured copy bandwidth;
//   capacity   the KV pool the backend allocates at --gpu-memory-utilization 0.90 (blocks,
//              tokens, bytes measured by cudaMemGetInfo), Llama-3-8B dummy weights;
//   decode     end-to-end decode steps at batch 64 and 128 with CUDA graphs, same backends;
//   accuracy   logit error and top-1 agreement of 8-bit caches against bf16 over a long greedy
//              generation on a random-weight model (teacher-forced), and where free-running
//              greedy output first diverges.
// Prints markdown table rows. Needs a CUDA build and a GPU.
//   cuda_kv_dtype_bench [all|attention|capacity|accuracy] [accuracy tokens]
#include <cstdio>
#include <cstring>
#include <string>

#ifndef KVSERVE_HAVE_CUDA
int main() {
  std::puts("cuda_kv_dtype_bench: built without CUDA");
  return 0;
}
#else
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <vector>

#include "bench/cuda_bench_util.hpp"
#include "cuda/cuda_backend.hpp"
#include "cuda/device_memory.hpp"
#include "cuda/kernels.hpp"
#include "model/dummy_weights.hpp"
#include "model/kv_cache_dtype.hpp"
#include "model/kv_quantize.hpp"

namespace {

using namespace kvserve;
using namespace kvserve::cuda;
using namespace kvserve::bench;

const kv_cache_dtype kDtypes[] = {kv_cache_dtype::kBf16, kv_cache_dtype::kFp8E4m3,
                                  kv_cache_dtype::kInt8};

kv_storage storage_of(kv_cache_dtype d) {
  return d == kv_cache_dtype::kFp8E4m3 ? kv_storage::kFp8E4m3
         : d == kv_cache_dtype::kInt8  ? kv_storage::kInt8
                                       : kv_storage::kBf16;
}

double g_copy_bw = 3.0e12;

void bench_copy(cudaStream_t s) { g_copy_bw = measure_copy_bandwidth(s); }

// Random valid codes (no FP8 NaN), generated on the host in chunks.
void fill_codes(std::uint8_t* dst, std::size_t n, kv_cache_dtype d, std::uint64_t seed) {
  std::vector<std::uint8_t> chunk(std::min<std::size_t>(n, 64u << 20));
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (std::size_t off = 0; off < n; off += chunk.size()) {
    const std::size_t m = std::min(chunk.size(), n - off);
    for (std::size_t i = 0; i < m; i += 8) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      std::uint64_t w = x;
      if (d == kv_cache_dtype::kFp8E4m3) w &= 0xF7F7F7F7F7F7F7F7ull;  // exponent <= 14
      std::memcpy(chunk.data() + i, &w, std::min<std::size_t>(8, m - i));
    }
    CHECK_CUDA(cudaMemcpy(dst + off, chunk.data(), m, cudaMemcpyHostToDevice));
  }
}

void bench_attention(cudaStream_t s) {
  std::printf(
      "\n| decode attention (32 q / 8 kv heads, hd 128) | KV dtype | block | batch | context | "
      "tokens/iter x dims/lane | us | MB read | TB/s | of copy BW | vs bf16 time |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|\n");
  const int nh = 32, nkv = 8, hd = 128;
  int sms = 0;
  CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  struct shape {
    int bs, batch, ctx;
  };
  const shape shapes[] = {{16, 8, 16384}, {16, 8, 32768}, {16, 16, 32768}, {16, 64, 4096},
                          {16, 8, 4096},  {2, 8, 32768},  {64, 8, 32768}};
  for (const auto& sh : shapes) {
    const int blocks_per_seq = sh.ctx / sh.bs;
    const std::size_t num_blocks = static_cast<std::size_t>(sh.batch) * blocks_per_seq;
    const std::size_t rows = num_blocks * nkv * sh.bs;
    const std::size_t elems = rows * hd;
    std::vector<std::int32_t> t(num_blocks);
    for (std::size_t i = 0; i < num_blocks; ++i)
      t[i] = static_cast<std::int32_t>((i * 7919) % num_blocks);
    device_buffer<std::int32_t> tables, lens;
    CHECK_OK(tables.allocate(num_blocks));
    CHECK_CUDA(cudaMemcpy(tables.get(), t.data(), num_blocks * 4, cudaMemcpyHostToDevice));
    std::vector<std::int32_t> l(sh.batch, sh.ctx);
    CHECK_OK(lens.allocate(sh.batch));
    CHECK_CUDA(cudaMemcpy(lens.get(), l.data(), sh.batch * 4, cudaMemcpyHostToDevice));
    device_buffer<float> q;
    device_buffer<bf16> out;
    CHECK_OK(q.allocate(std::size_t{1} * sh.batch * nh * hd));
    std::vector<float> hq(q.size());
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (auto& x : hq) x = u(rng);
    CHECK_CUDA(cudaMemcpy(q.get(), hq.data(), hq.size() * 4, cudaMemcpyHostToDevice));
    CHECK_OK(out.allocate(std::size_t{1} * sh.batch * nh * hd));
    double bf16_us = 0;
    for (auto dtype : kDtypes) {
      const bool eight = dtype != kv_cache_dtype::kBf16;
      device_buffer<std::uint8_t> k, v;
      device_buffer<float> ks, vs;
      const std::size_t code_bytes = elems * (eight ? 1 : 2);
      CHECK_OK(k.allocate(code_bytes));
      CHECK_OK(v.allocate(code_bytes));
      if (eight) {
        fill_codes(k.get(), code_bytes, dtype, 5);
        fill_codes(v.get(), code_bytes, dtype, 6);
        CHECK_OK(ks.allocate(rows));
        CHECK_OK(vs.allocate(rows));
        CHECK_CUDA(launch_fill_f32(ks.get(), static_cast<std::int64_t>(rows), 0.004f, s));
        CHECK_CUDA(launch_fill_f32(vs.get(), static_cast<std::int64_t>(rows), 0.004f, s));
      } else {
        CHECK_CUDA(launch_fill_uniform_bf16(reinterpret_cast<bf16*>(k.get()),
                                            static_cast<std::int64_t>(elems), 5, 1.0f, s));
        CHECK_CUDA(launch_fill_uniform_bf16(reinterpret_cast<bf16*>(v.get()),
                                            static_cast<std::int64_t>(elems), 6, 1.0f, s));
      }
      // The backend's plan: ring depth (bf16), then the split count for it.
      const decode_attention_plan plan =
          plan_decode_attention(sh.batch, nh, nkv, hd, sms, storage_of(dtype));
      const int splits = plan.num_splits;
      device_buffer<float> po, pml;
      CHECK_OK(po.allocate(std::size_t{1} * sh.batch * nh * splits * hd));
      CHECK_OK(pml.allocate(std::size_t{1} * sh.batch * nh * splits * 2));
      decode_attention_args a;
      a.q = q.get();
      a.kv = {k.get(), v.get(), nkv, sh.bs, hd, storage_of(dtype), ks.get(), vs.get()};
      a.block_tables = tables.get();
      a.context_lens = lens.get();
      a.num_seqs = sh.batch;
      a.num_heads = nh;
      a.max_blocks_per_seq = blocks_per_seq;
      a.num_splits = splits;
      a.kv_stages = plan.kv_stages;
      a.scale = 0.088f;
      a.partial_out = po.get();
      a.partial_ml = pml.get();
      a.out = out.get();
      const double bytes = 2.0 * (code_bytes + (eight ? rows * 4.0 : 0.0));
      const std::vector<std::pair<int, int> > variants =
          eight ? std::vector<std::pair<int, int> >{{4, 8}, {8, 8}, {2, 16}, {4, 16}}
                : std::vector<std::pair<int, int> >{{4, 8}};
      for (const auto& [per_iter, dims] : variants) {
        a.tokens_per_iter = eight ? per_iter : 0;
        a.dims_per_lane = eight ? dims : 0;
        const double ms = time_ms([&](int) { CHECK_CUDA(launch_decode_attention(a, s)); }, s, 20);
        if (!eight) bf16_us = ms * 1e3;
        std::printf(
            "| decode attention | %s | %d | %d | %d | %d x %d | %.1f | %.0f | %.2f | %.0f%% | "
            "%.2fx |\n",
            to_string(dtype), sh.bs, sh.batch, sh.ctx, per_iter, dims, ms * 1e3, bytes / 1e6,
            bytes / (ms * 1e-3) / 1e12, 100.0 * bytes / (ms * 1e-3) / g_copy_bw,
            ms * 1e3 / bf16_us);
      }
    }
  }
}

std::unique_ptr<backend> make_8b(kv_cache_dtype dtype, int block_size, int max_seqs) {
  cuda_backend_config cfg;
  cfg.block_size = block_size;
  cfg.max_num_seqs = max_seqs;
  cfg.max_model_len = 8192;
  cfg.max_num_batched_tokens = 2048;
  cfg.gpu_memory_utilization = 0.90;
  cfg.kv_dtype = dtype;
  cfg.record_step_gaps = true;
  auto b = make_cuda_backend_dummy(cfg, llama3_8b(), 1);
  if (!b) {
    std::fprintf(stderr, "backend: %s\n", b.error().message().c_str());
    std::exit(1);
  }
  return std::move(*b);
}

// Median host wall time of decode steps of `batch` sequences at `ctx` tokens of context.
double decode_ms(backend& b, int batch, int ctx, int steps = 25) {
  const model_config& c = b.config();
  const int bs = b.block_size();
  const int blocks = (ctx + 64) / bs + 1;
  step_plan p;
  for (int s = 0; s < batch; ++s) {
    sequence_step q;
    q.id = s;
    q.tokens = {static_cast<std::int32_t>((s * 31) % c.vocab_size)};
    q.start_position = ctx;
    q.block_table.resize(blocks);
    for (int i = 0; i < blocks; ++i) q.block_table[i] = (s * blocks + i) % b.num_kv_blocks();
    q.sample = true;
    q.sampling.temperature = 0.0f;
    p.seqs.push_back(q);
  }
  std::vector<double> times;
  for (int it = 0; it < steps; ++it) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = b.execute(p);
    const auto t1 = std::chrono::steady_clock::now();
    if (!r) {
      std::fprintf(stderr, "execute: %s\n", r.error().message().c_str());
      std::exit(1);
    }
    for (int s = 0; s < batch; ++s) {
      p.seqs[s].tokens = {*r->seqs[s].sampled_token};
      ++p.seqs[s].start_position;
      if (p.seqs[s].start_position >= ctx + 60) p.seqs[s].start_position = ctx;
    }
    if (it >= 5) times.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  return median(times);
}

// Median host wall time of one prefill step of an n-token prompt (the LM head on its last token).
double prefill_ms(backend& b, int n) {
  const model_config& c = b.config();
  step_plan p;
  sequence_step q;
  q.tokens.resize(n);
  for (int i = 0; i < n; ++i) q.tokens[i] = (i * 17) % c.vocab_size;
  q.block_table.resize(n / b.block_size() + 1);
  for (std::size_t i = 0; i < q.block_table.size(); ++i) q.block_table[i] = static_cast<int>(i);
  q.sample = true;
  q.sampling.temperature = 0.0f;
  p.seqs.push_back(q);
  std::vector<double> times;
  for (int it = 0; it < 6; ++it) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = b.execute(p);
    const auto t1 = std::chrono::steady_clock::now();
    if (!r) {
      std::fprintf(stderr, "execute: %s\n", r.error().message().c_str());
      std::exit(1);
    }
    if (it >= 1) times.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  return median(times);
}

void bench_capacity_and_decode() {
  const model_config c = llama3_8b();
  std::printf(
      "\n| KV pool, Llama-3-8B dummy, --gpu-memory-utilization 0.90, block 16 | KV dtype | bytes "
      "per token | blocks | tokens | allocated GiB (measured) | tokens vs bf16 | sequences of "
      "8192 |\n|---|---|---|---|---|---|---|---|\n");
  struct row {
    kv_cache_dtype dtype;
    double ms[4];
    double gap_median_us, gap_p10_us, gap_p90_us;
    double prefill_ms;
  };
  const std::pair<int, int> loads[] = {{64, 1024}, {64, 4096}, {128, 1024}, {128, 2048}};
  std::vector<row> rows;
  double bf16_tokens = 0;
  for (auto dtype : kDtypes) {
    auto b = make_8b(dtype, 16, 128);
    const double tokens = static_cast<double>(b->num_kv_blocks()) * b->block_size();
    if (dtype == kv_cache_dtype::kBf16) bf16_tokens = tokens;
    std::printf("| KV pool | %s | %zu | %d | %.0f | %.2f | %.2fx | %.0f |\n", to_string(dtype),
                b->kv_bytes_per_token(), b->num_kv_blocks(), tokens,
                cuda_kv_pool_bytes(*b) / 1073741824.0, tokens / bf16_tokens,
                std::floor(tokens / 8192));
    row r{dtype, {}, 0, 0, 0, 0};
    for (int i = 0; i < 4; ++i) {
      const std::size_t before = cuda_step_gaps_us(*b).size();
      // Batch 64: also the GPU's idle time between consecutive decode steps, over 200 steps.
      r.ms[i] = decode_ms(*b, loads[i].first, loads[i].second, i == 0 ? 206 : 25);
      if (i == 0) {
        const auto all = cuda_step_gaps_us(*b);
        std::vector<double> g(all.begin() + static_cast<std::ptrdiff_t>(before) + 6, all.end());
        std::sort(g.begin(), g.end());
        r.gap_median_us = g.empty() ? 0 : g[g.size() / 2];
        r.gap_p10_us = g.empty() ? 0 : g[g.size() / 10];
        r.gap_p90_us = g.empty() ? 0 : g[g.size() * 9 / 10];
      }
    }
    r.prefill_ms = prefill_ms(*b, 2048);
    rows.push_back(r);
  }
  std::printf(
      "\n| decode step, Llama-3-8B dummy bf16 weights, graphs, block 16 | batch | context | KV "
      "dtype | ms/step | floor ms | floor/time | tokens/s | vs bf16 |\n"
      "|---|---|---|---|---|---|---|---|---|\n");
  for (int i = 0; i < 4; ++i) {
    for (const auto& r : rows) {
      const double kv =
          static_cast<double>(loads[i].first) * loads[i].second * kv_bytes_per_token(c, r.dtype);
      const double floor_ms = (weight_bytes(c) + kv) / g_copy_bw * 1e3;
      std::printf("| decode | %d | %d | %s | %.2f | %.2f | %.0f%% | %.0f | %.2fx |\n",
                  loads[i].first, loads[i].second, to_string(r.dtype), r.ms[i], floor_ms,
                  100.0 * floor_ms / r.ms[i], loads[i].first / (r.ms[i] * 1e-3),
                  rows[0].ms[i] / r.ms[i]);
    }
  }
  std::printf(
      "\n| prefill of one 2,048-token prompt, Llama-3-8B dummy, block 16 | KV dtype | ms | vs "
      "bf16 |\n|---|---|---|---|\n");
  for (const auto& r : rows)
    std::printf("| prefill | %s | %.2f | %.2fx |\n", to_string(r.dtype), r.prefill_ms,
                rows[0].prefill_ms / r.prefill_ms);
  std::printf(
      "\n| GPU idle between consecutive decode steps (batch 64, ctx 1024, graphs; CUDA events "
      "around each step's device work, 200 steps, bench loop on the host) | KV dtype | median us | "
      "p10 us | p90 us |\n|---|---|---|---|---|\n");
  for (const auto& r : rows)
    std::printf("| idle gap | %s | %.1f | %.1f | %.1f |\n", to_string(r.dtype), r.gap_median_us,
                r.gap_p10_us, r.gap_p90_us);
}

// A random-weight model with spread-out logits: dummy weights scaled by `gain` and rounded to
// bf16 (the GPU tests use 5 at hidden 256).
model_weights scaled_dummy(const model_config& c, float gain) {
  model_weights w = make_dummy_weights(c, 17);
  auto scale = [gain](tensor_f32& t) {
    for (auto& x : t.data) x = bf16_round(x * gain);
  };
  scale(w.token_embedding);
  scale(w.lm_head);
  for (auto& l : w.layers)
    for (auto* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) scale(*t);
  return w;
}

void bench_accuracy(const model_config& c, float gain, int gen_tokens) {
  const model_weights w = scaled_dummy(c, gain);
  const int num_seqs = 8, prompt = 32;
  const int blocks_per_seq = (prompt + gen_tokens) / 16 + 2;
  std::mt19937 rng(7);
  std::vector<std::vector<std::int32_t> > prompts(num_seqs);
  for (auto& p : prompts) {
    p.resize(prompt);
    for (auto& t : p) t = static_cast<std::int32_t>(rng() % c.vocab_size);
  }
  auto make = [&](kv_cache_dtype d) {
    cuda_backend_config g;
    g.block_size = 16;
    g.num_kv_blocks = num_seqs * blocks_per_seq;
    g.max_num_seqs = num_seqs;
    g.max_num_batched_tokens = 512;
    g.kv_dtype = d;
    g.log = false;
    auto b = make_cuda_backend(g, c, w);
    if (!b) {
      std::fprintf(stderr, "backend: %s\n", b.error().message().c_str());
      std::exit(1);
    }
    return std::move(*b);
  };
  // follow == nullptr: free-running greedy, tokens recorded; else teacher-forced on `follow`.
  auto run = [&](backend& b, const std::vector<std::vector<std::int32_t> >* follow,
                 std::vector<std::vector<std::int32_t> >& toks) {
    toks = prompts;
    std::vector<std::vector<float> > logits;
    for (int step = 0; step <= gen_tokens; ++step) {
      step_plan p;
      for (int s = 0; s < num_seqs; ++s) {
        sequence_step q;
        q.id = s;
        const int len = prompt + step;
        const auto& src = follow ? (*follow)[s] : toks[s];
        if (step == 0) {
          q.tokens = prompts[s];
        } else {
          q.tokens = {src[len - 1]};
          q.start_position = len - 1;
        }
        for (int i = 0; i < blocks_per_seq; ++i) q.block_table.push_back(s * blocks_per_seq + i);
        q.sample = true;
        q.sampling.temperature = 0.0f;
        q.return_logits = logits_mode::kLast;
        p.seqs.push_back(q);
      }
      auto r = b.execute(p);
      if (!r) {
        std::fprintf(stderr, "execute: %s\n", r.error().message().c_str());
        std::exit(1);
      }
      for (int s = 0; s < num_seqs; ++s) {
        logits.push_back(r->seqs[s].logits);
        if (step < gen_tokens) toks[s].push_back(*r->seqs[s].sampled_token);
      }
    }
    return logits;
  };
  std::vector<std::vector<std::int32_t> > ref_tokens, tmp;
  auto ref_backend = make(kv_cache_dtype::kBf16);
  const auto ref = run(*ref_backend, nullptr, ref_tokens);
  std::printf(
      "\n| accuracy vs bf16 KV (random model: hidden %d, %d layers, %d q / %d kv heads, hd %d, "
      "vocab %d, weights x%.1f; %d seqs x (%d prompt + %d generated)) | KV dtype | mean rel L2 "
      "of logits | max rel L2 | mean max-abs logit error | top-1 agreement | first "
      "free-running divergence (median over seqs) |\n|---|---|---|---|---|---|---|\n",
      c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim, c.vocab_size, gain,
      num_seqs, prompt, gen_tokens);
  for (auto dtype : {kv_cache_dtype::kFp8E4m3, kv_cache_dtype::kInt8}) {
    auto b = make(dtype);
    const auto got = run(*b, &ref_tokens, tmp);
    double sum_rel = 0, max_rel = 0, sum_abs = 0;
    int agree = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
      double num = 0, den = 0, mabs = 0;
      for (std::size_t j = 0; j < ref[i].size(); ++j) {
        const double d = static_cast<double>(got[i][j]) - ref[i][j];
        num += d * d;
        den += static_cast<double>(ref[i][j]) * ref[i][j];
        mabs = std::max(mabs, std::abs(d));
      }
      const double rel = std::sqrt(num / std::max(den, 1e-30));
      sum_rel += rel;
      max_rel = std::max(max_rel, rel);
      sum_abs += mabs;
      agree += std::max_element(got[i].begin(), got[i].end()) - got[i].begin() ==
               std::max_element(ref[i].begin(), ref[i].end()) - ref[i].begin();
    }
    // Free-running greedy with this dtype: first generated position that differs.
    auto b2 = make(dtype);
    std::vector<std::vector<std::int32_t> > free_tokens;
    run(*b2, nullptr, free_tokens);
    std::vector<int> first;
    for (int s = 0; s < num_seqs; ++s) {
      int f = gen_tokens;
      for (int j = prompt; j < prompt + gen_tokens; ++j)
        if (free_tokens[s][j] != ref_tokens[s][j]) {
          f = j - prompt;
          break;
        }
      first.push_back(f);
    }
    std::sort(first.begin(), first.end());
    const double n = static_cast<double>(ref.size());
    std::printf("| accuracy | %s | %.4f | %.4f | %.4f | %.2f%% | %d (min %d, max %d) |\n",
                to_string(dtype), sum_rel / n, max_rel, sum_abs / n, 100.0 * agree / n,
                first[first.size() / 2], first.front(), first.back());
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // keep partial results if the run is cut short
  const std::string what = argc > 1 ? argv[1] : "all";
  const int gen_tokens = argc > 2 ? std::atoi(argv[2]) : 1000;
  if (!cuda_device_available()) {
    std::puts("cuda_kv_dtype_bench: no CUDA device");
    return 0;
  }
  auto name = cuda_device_name(0);
  std::printf("| device | %s |\n|---|---|\n", name ? name->c_str() : "?");
  cuda_stream stream;
  CHECK_OK(stream.create());
  bench_copy(stream.get());
  if (what == "all" || what == "attention") bench_attention(stream.get());
  if (what == "all" || what == "accuracy") {
    // The GPU test's model (hidden 256, 2 layers) and a larger one of the same per-layer gain
    // (weights' std x sqrt(hidden) equal): random models amplify any perturbation, the more so
    // the larger the gain.
    model_config c;
    c.name = "random-small";
    c.vocab_size = 384;
    c.hidden_size = 256;
    c.intermediate_size = 512;
    c.num_layers = 2;
    c.num_heads = 8;
    c.num_kv_heads = 2;
    c.head_dim = 128;
    c.max_position_embeddings = 4096;
    bench_accuracy(c, 5.0f, gen_tokens);
    c.name = "random-1024";
    c.vocab_size = 8192;
    c.hidden_size = 1024;
    c.intermediate_size = 2816;
    c.num_layers = 8;
    c.rope_theta = 500000.0f;
    bench_accuracy(c, 2.5f, gen_tokens);
  }
  if (what == "all" || what == "capacity") bench_capacity_and_decode();
  return 0;
}
#endif
