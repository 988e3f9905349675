// GPU benchmark (issue 8): copy bandwidth and GEMM rate of the card, the decode matmuls (GEMV
// vs cuBLASLt), paged decode attention alone at every block size, whole decode steps of a
// Llama-3-8B-shaped dummy model (graphs and eager) and a 2,048-token prefill, each with its
// floor and the ratio. Prints markdown table rows. Needs a CUDA build and a GPU.
//   cuda_decode_bench [all|copy|matmul|attention|decode|prefill] [block_size] [prefill lengths]
// e.g. `cuda_decode_bench prefill 16 512,2048,8192`.
#include <cstdio>
#include <cstring>
#include <string>

#ifndef KVSERVE_HAVE_CUDA
int main() {
  std::puts("cuda_decode_bench: built without CUDA");
  return 0;
}
#else
#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "bench/cuda_bench_util.hpp"
#include "cuda/cuda_backend.hpp"
#include "cuda/device_memory.hpp"
#include "cuda/gemm.hpp"
#include "cuda/kernels.hpp"

namespace {

using namespace kvserve;
using namespace kvserve::cuda;
using namespace kvserve::bench;

double g_copy_bw = 3.0e12;      // bytes/s (read + write), measured below
double g_gemm_rate = 790.0e12;  // FLOP/s, measured below

void bench_copy(cudaStream_t s) {
  g_copy_bw = measure_copy_bandwidth(s);
  // bf16 GEMM rate through cuBLASLt.
  const int n = 8192;
  device_buffer<bf16> x, w;
  device_buffer<float> y;
  CHECK_OK(x.allocate(std::size_t{1} * n * n));
  CHECK_OK(w.allocate(std::size_t{1} * n * n));
  CHECK_OK(y.allocate(std::size_t{1} * n * n));
  CHECK_CUDA(launch_fill_uniform_bf16(x.get(), std::int64_t{n} * n, 1, 1.0f, s));
  CHECK_CUDA(launch_fill_uniform_bf16(w.get(), std::int64_t{n} * n, 2, 1.0f, s));
  gemm_runner g;
  CHECK_OK(g.init());
  g.force_path(2);
  const double gms =
      time_ms([&](int) { CHECK_OK(g.run(x.get(), w.get(), n, n, n, y.get(), s)); }, s, 10);
  g_gemm_rate = 2.0 * n * n * double(n) / (gms * 1e-3);
  std::printf("| bf16 GEMM 8192^3 (cuBLASLt, fp32 out) | %.3f ms | %.0f TFLOP/s |\n", gms,
              g_gemm_rate / 1e12);
}

void bench_matmul(cudaStream_t s) {
  std::printf(
      "\n| matmul (Llama-3-8B) | m | GEMV us | cuBLASLt us | best of copy BW "
      "|\n|---|---|---|---|---|\n");
  struct shape {
    const char* name;
    int n, k;
  };
  const shape shapes[] = {{"QKV 4096->6144", 6144, 4096},
                          {"O 4096->4096", 4096, 4096},
                          {"gate+up 4096->28672", 28672, 4096},
                          {"down 14336->4096", 4096, 14336},
                          {"LM head 4096->128256", 128256, 4096}};
  gemm_runner g;
  CHECK_OK(g.init());
  device_buffer<bf16> x;
  device_buffer<float> y;
  CHECK_OK(x.allocate(64 * 14336));
  CHECK_OK(y.allocate(std::size_t{64} * 128256));
  CHECK_CUDA(launch_fill_uniform_bf16(x.get(), 64 * 14336, 3, 1.0f, s));
  for (const auto& sh : shapes) {
    // Rotate over copies so the weights do not sit in L2 (>= 4 x 50 MB).
    const std::size_t elems = std::size_t{1} * sh.n * sh.k;
    const int copies = std::max<int>(2, static_cast<int>((256u << 20) / (elems * 2)) + 1);
    device_buffer<bf16> w;
    CHECK_OK(w.allocate(elems * copies));
    CHECK_CUDA(
        launch_fill_uniform_bf16(w.get(), static_cast<std::int64_t>(elems * copies), 4, 0.05f, s));
    for (int m : {1, 8, 32, 64}) {
      double t[2] = {0, 0};
      for (int path : {1, 2}) {
        if (path == 1 && m > kGemvMaxRows) continue;
        g.force_path(path);
        set_gemv_variant(0);
        t[path - 1] = time_ms(
            [&](int i) {
              CHECK_OK(g.run(x.get(), w.get() + elems * (i % copies), m, sh.n, sh.k, y.get(), s));
            },
            s);
      }
      const double best = t[0] > 0 ? std::min(t[0], t[1]) : t[1];
      const double bytes = elems * 2.0 + m * sh.k * 2.0 + m * sh.n * 4.0;
      std::printf("| %s | %d | %s | %.1f | %.0f%% |\n", sh.name, m,
                  t[0] > 0 ? std::to_string(t[0] * 1e3).substr(0, 6).c_str() : "-", t[1] * 1e3,
                  100.0 * bytes / (best * 1e-3) / g_copy_bw);
      // KVSERVE_BENCH_SWEEP=1: the batch-1 GEMV shapes (set_gemv_variant), back to back.
      if (m == 1 && std::getenv("KVSERVE_BENCH_SWEEP")) {
        g.force_path(1);
        for (int variant : {0, 1, 2, 3, 4}) {
          set_gemv_variant(variant);
          const double tv = time_ms(
              [&](int i) {
                for (int rep = 0; rep < 4; ++rep)
                  CHECK_OK(g.run(x.get(), w.get() + elems * ((4 * i + rep) % copies), m, sh.n, sh.k,
                                 y.get(), s));
              },
              s);
          std::printf("| %s | 1 | variant %d, 4 back to back: %.2f us each | | %.0f%% |\n", sh.name,
                      variant, tv * 1e3 / 4, 100.0 * bytes / (tv / 4 * 1e-3) / g_copy_bw);
        }
        set_gemv_variant(0);
      }
    }
  }
}

// Integer list from an environment variable ("1,2,4"), or `fallback` when unset.
std::vector<int> env_list(const char* name, std::vector<int> fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  std::vector<int> out;
  for (const char* p = v; *p;) {
    char* end = nullptr;
    const long n = std::strtol(p, &end, 10);
    if (end == p) break;
    out.push_back(static_cast<int>(n));
    p = *end == ',' ? end + 1 : end;
  }
  return out;
}

struct attention_timing {
  double us = 0;
  double of_copy = 0;  // KV bytes / time over the copy bandwidth
  int splits = 0;
  double us_b2b = 0;  // per launch, 4 launches back to back (as the layers of a decode step)
  double of_copy_b2b = 0;
  double us_queued = 0;  // one launch enqueued while the stream is held: GPU time only
  double of_copy_queued = 0;
};

// Paged decode attention alone (32 q / 8 kv heads, head dim 128, bf16 KV): `batch` sequences of
// `ctx` tokens over a scattered block table. splits / stages / min_split 0: the defaults.
attention_timing time_attention(int bs, int batch, int ctx, cudaStream_t s, int splits = 0,
                                int stages = 0, int min_split = 0, bool with_b2b = false) {
  const int nh = 32, nkv = 8, hd = 128;
  const int blocks_per_seq = ctx / bs;
  const std::size_t num_blocks = static_cast<std::size_t>(batch) * blocks_per_seq;
  const std::size_t elems = num_blocks * nkv * bs * hd;
  device_buffer<bf16> k, v;
  device_buffer<float> q, po, pml;
  device_buffer<bf16> out;
  device_buffer<std::int32_t> tables, lens;
  CHECK_OK(k.allocate(elems));
  CHECK_OK(v.allocate(elems));
  CHECK_CUDA(launch_fill_uniform_bf16(k.get(), elems, 5, 1.0f, s));
  CHECK_CUDA(launch_fill_uniform_bf16(v.get(), elems, 6, 1.0f, s));
  std::vector<std::int32_t> t(num_blocks);
  for (std::size_t i = 0; i < num_blocks; ++i)  // a scattered but fixed permutation
    t[i] = static_cast<std::int32_t>((i * 7919) % num_blocks);
  CHECK_OK(tables.allocate(num_blocks));
  CHECK_CUDA(cudaMemcpy(tables.get(), t.data(), num_blocks * 4, cudaMemcpyHostToDevice));
  std::vector<std::int32_t> l(batch, ctx);
  CHECK_OK(lens.allocate(batch));
  CHECK_CUDA(cudaMemcpy(lens.get(), l.data(), batch * 4, cudaMemcpyHostToDevice));
  int sms = 0;
  CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  if (stages <= 0) stages = decode_attention_stages(batch, nh, nkv, hd, sms);
  if (splits <= 0)
    splits = decode_attention_splits(batch, nh, nkv, hd, sms, kv_storage::kBf16, stages);
  CHECK_OK(q.allocate(batch * nh * hd));
  CHECK_CUDA(launch_fill_f32(q.get(), std::int64_t{batch} * nh * hd, 0.05f, s));
  CHECK_OK(po.allocate(std::size_t{1} * batch * nh * splits * hd));
  CHECK_OK(pml.allocate(std::size_t{1} * batch * nh * splits * 2));
  CHECK_OK(out.allocate(batch * nh * hd));
  decode_attention_args a;
  a.q = q.get();
  a.kv = {k.get(), v.get(), nkv, bs, hd};
  a.block_tables = tables.get();
  a.context_lens = lens.get();
  a.num_seqs = batch;
  a.num_heads = nh;
  a.max_blocks_per_seq = blocks_per_seq;
  a.num_splits = splits;
  a.scale = 0.088f;
  a.partial_out = po.get();
  a.partial_ml = pml.get();
  a.out = out.get();
  a.kv_stages = stages;
  a.min_split_tokens = min_split;
  const double ms = time_ms([&](int) { CHECK_CUDA(launch_decode_attention(a, s)); }, s, 30);
  const double bytes = 2.0 * elems * 2;
  attention_timing r{ms * 1e3, 100.0 * bytes / (ms * 1e-3) / g_copy_bw, splits};
  if (with_b2b) {
    const double ms4 = time_ms(
        [&](int) {
          for (int rep = 0; rep < 4; ++rep) CHECK_CUDA(launch_decode_attention(a, s));
        },
        s, 30);
    r.us_b2b = ms4 / 4 * 1e3;
    r.of_copy_b2b = 100.0 * bytes / (ms4 / 4 * 1e-3) / g_copy_bw;
    const double msq =
        time_ms([&](int) { CHECK_CUDA(launch_decode_attention(a, s)); }, s, 30, /*held=*/true);
    r.us_queued = msq * 1e3;
    r.of_copy_queued = 100.0 * bytes / (msq * 1e-3) / g_copy_bw;
  }
  return r;
}

void bench_attention(cudaStream_t s) {
  std::printf(
      "\n| decode attention | block | batch | context | us | of copy BW | splits | us, 4 back to "
      "back | of copy BW | us, queued | of copy BW |\n|---|---|---|---|---|---|---|---|---|---|---|"
      "\n");
  // KVSERVE_BENCH_STAGES: the bf16 ring depth of this table (default: the kernel's).
  const std::vector<int> ring = env_list("KVSERVE_BENCH_STAGES", {0});
  const int stages = ring.empty() ? 0 : ring.front();
  for (int bs : env_list("KVSERVE_BENCH_BLOCKS", {2, 4, 8, 16, 32, 64})) {
    for (auto [batch, ctx] :
         {std::pair{8, 4096}, std::pair{8, 16384}, std::pair{8, 32768}, std::pair{16, 4096},
          std::pair{32, 4096}, std::pair{64, 4096}, std::pair{1, 1024}}) {
      const attention_timing r = time_attention(bs, batch, ctx, s, 0, stages, 0, true);
      std::printf(
          "| decode attention | %d | %d | %d | %.1f | %.0f%% | %d | %.1f | %.0f%% | %.1f | "
          "%.0f%% |\n",
          bs, batch, ctx, r.us, r.of_copy, r.splits, r.us_b2b, r.of_copy_b2b, r.us_queued,
          r.of_copy_queued);
    }
  }
  // KVSERVE_BENCH_SWEEP=1: the kernel's knobs for the shapes that decide issue 8's goals: split
  // count (batch 8 x 4k at every block size, and the split counts next to the default ones of
  // batch 16-32 and 16k-32k), ring depth (1 = no ring), shortest split; one launch and 4 back
  // to back.
  if (!std::getenv("KVSERVE_BENCH_SWEEP")) return;
  std::printf(
      "\n| attention sweep | block | batch | context | stages | splits | min split | us | of copy "
      "BW | us, 4 back to back | of copy BW |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
  struct config {
    int bs, batch, ctx;
    std::vector<int> stages, splits, min_split;
  };
  std::vector<config> configs;
  for (int bs : {2, 4, 8, 16, 32, 64}) configs.push_back({bs, 8, 4096, {3}, {4, 5, 6, 8}, {0}});
  configs.push_back({16, 8, 4096, {2, 4}, {0}, {0}});
  configs.push_back({16, 8, 16384, {3}, {4, 5, 8}, {0}});
  configs.push_back({16, 8, 32768, {3}, {4, 5, 8}, {0}});
  configs.push_back({16, 16, 4096, {3}, {0, 2, 3, 4}, {0}});
  configs.push_back({16, 32, 4096, {3}, {0, 1, 2}, {0}});
  configs.push_back({16, 1, 1024, {3}, {0, 16}, {0, 128}});
  for (const config& c : configs)
    for (int stages : c.stages)
      for (int splits : c.splits)
        for (int min_split : c.min_split) {
          const attention_timing r =
              time_attention(c.bs, c.batch, c.ctx, s, splits, stages, min_split, true);
          std::printf("| sweep | %d | %d | %d | %d | %d | %d | %.1f | %.0f%% | %.1f | %.0f%% |\n",
                      c.bs, c.batch, c.ctx, stages, r.splits, min_split, r.us, r.of_copy, r.us_b2b,
                      r.of_copy_b2b);
        }
}

std::unique_ptr<backend> make_8b(int block_size, bool eager, int max_seqs) {
  cuda_backend_config cfg;
  cfg.block_size = block_size;
  cfg.enforce_eager = eager;
  cfg.max_num_seqs = max_seqs;
  cfg.max_model_len = 4096;
  cfg.max_num_batched_tokens = 2048;
  cfg.gpu_memory_utilization = 0.90;
  auto b = make_cuda_backend_dummy(cfg, llama3_8b(), 1);
  if (!b) {
    std::fprintf(stderr, "backend: %s\n", b.error().message().c_str());
    std::exit(1);
  }
  return std::move(*b);
}

void bench_decode(int block_size) {
  std::printf(
      "\n| decode step, Llama-3-8B dummy bf16, ctx 1024, block %d | batch | graphs | ms/step | "
      "floor ms | floor/time | tokens/s |\n|---|---|---|---|---|---|---|\n",
      block_size);
  const model_config c = llama3_8b();
  const int ctx = 1024;
  for (bool eager : {false, true}) {
    auto b = make_8b(block_size, eager, 128);
    for (int batch : {1, 8, 32, 64, 128}) {
      const int blocks = (ctx + 64) / block_size + 1;
      step_plan p;
      for (int s = 0; s < batch; ++s) {
        sequence_step q;
        q.id = s;
        q.tokens = {static_cast<std::int32_t>((s * 31) % c.vocab_size)};
        q.start_position = ctx;
        q.block_table.resize(blocks);
        for (int i = 0; i < blocks; ++i) q.block_table[i] = (s * blocks + i) % b->num_kv_blocks();
        q.sample = true;
        q.sampling.temperature = 0.0f;
        p.seqs.push_back(q);
      }
      std::vector<double> times;
      for (int it = 0; it < 25; ++it) {
        const auto t0 = std::chrono::steady_clock::now();
        auto r = b->execute(p);
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
      const double ms = median(times);
      const double bytes =
          weight_bytes(c) + static_cast<double>(batch) * ctx * b->kv_bytes_per_token();
      const double floor_ms = bytes / g_copy_bw * 1e3;
      std::printf("| decode | %d | %s | %.2f | %.2f | %.0f%% | %.0f |\n", batch,
                  eager ? "eager" : "graphs", ms, floor_ms, 100.0 * floor_ms / ms,
                  batch / (ms * 1e-3));
    }
    std::printf("| (graph replays: %llu) |\n",
                static_cast<unsigned long long>(b->stats().cuda_graph_replays));
  }
}

// Paged prefill attention alone (one layer, Llama-3-8B heads: 32 query / 8 KV, head dim 128):
// one fresh prompt of n tokens, items as cuda/step_inputs.cpp builds them, scattered blocks.
void bench_prefill_attention(int block_size, int n, cudaStream_t s) {
  const int nh = 32, nkv = 8, hd = 128, group = nh / nkv;
  const int blocks = (n + block_size - 1) / block_size;
  const std::size_t elems = static_cast<std::size_t>(blocks) * nkv * block_size * hd;
  device_buffer<bf16> k, v, out;
  device_buffer<float> q;
  device_buffer<std::int32_t> tables, positions;
  device_buffer<prefill_work_item> items;
  CHECK_OK(k.allocate(elems));
  CHECK_OK(v.allocate(elems));
  CHECK_CUDA(launch_fill_uniform_bf16(k.get(), static_cast<std::int64_t>(elems), 5, 1.0f, s));
  CHECK_CUDA(launch_fill_uniform_bf16(v.get(), static_cast<std::int64_t>(elems), 6, 1.0f, s));
  CHECK_OK(q.allocate(std::size_t{1} * n * nh * hd));
  CHECK_CUDA(launch_fill_f32(q.get(), std::int64_t{n} * nh * hd, 0.05f, s));
  CHECK_OK(out.allocate(std::size_t{1} * n * nh * hd));
  std::vector<std::int32_t> t(blocks), pos(n);
  for (int i = 0; i < blocks; ++i) t[i] = static_cast<std::int32_t>((i * 7919LL) % blocks);
  for (int i = 0; i < n; ++i) pos[i] = i;
  std::vector<prefill_work_item> it;
  const int per_item = std::max(1, kPrefillRowsPerItem / group);
  for (int j = 0; j < n; j += per_item) it.push_back({0, j, std::min(per_item, n - j), 0, group});
  CHECK_OK(tables.allocate(blocks));
  CHECK_OK(positions.allocate(n));
  CHECK_OK(items.allocate(it.size()));
  CHECK_CUDA(cudaMemcpy(tables.get(), t.data(), t.size() * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(positions.get(), pos.data(), pos.size() * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(items.get(), it.data(), it.size() * sizeof(prefill_work_item),
                        cudaMemcpyHostToDevice));
  prefill_attention_args a;
  a.q = q.get();
  a.kv = {k.get(), v.get(), nkv, block_size, hd};
  a.block_tables = tables.get();
  a.positions = positions.get();
  a.items = items.get();
  a.num_items = static_cast<int>(it.size());
  a.num_heads = nh;
  a.max_blocks_per_seq = blocks;
  a.scale = 1.0f / std::sqrt(float(hd));
  a.out = out.get();
  const double ms = time_ms([&](int) { CHECK_CUDA(launch_prefill_attention(a, s)); }, s, 20);
  const double flops = 4.0 * nh * hd * (n * (n + 1.0) / 2.0);  // causal QK^T and PV
  std::printf("| prefill attention, one layer | %d | %d | %.1f | %.0f | %d |\n", block_size, n,
              ms * 1e3, flops / (ms * 1e-3) / 1e12, kPrefillRowsPerItem);
}

// A whole prefill step of one n-token prompt through the backend (Llama-3-8B dummy, bf16).
void bench_prefill_step(int block_size, int n) {
  const model_config c = llama3_8b();
  cuda_backend_config cfg;
  cfg.block_size = block_size;
  cfg.max_num_seqs = 16;
  cfg.max_model_len = std::max(4096, n + 64);
  cfg.max_num_batched_tokens = std::max(2048, n);
  cfg.gpu_memory_utilization = 0.90;
  auto made = make_cuda_backend_dummy(cfg, c, 1);
  if (!made) {
    std::fprintf(stderr, "backend: %s\n", made.error().message().c_str());
    std::exit(1);
  }
  auto b = std::move(*made);
  step_plan p;
  sequence_step q;
  q.tokens.resize(n);
  for (int i = 0; i < n; ++i) q.tokens[i] = (i * 17) % c.vocab_size;
  q.block_table.resize(n / block_size + 1);
  for (std::size_t i = 0; i < q.block_table.size(); ++i) q.block_table[i] = static_cast<int>(i);
  q.sample = true;
  q.sampling.temperature = 0.0f;
  p.seqs.push_back(q);
  std::vector<double> times;
  for (int it = 0; it < 6; ++it) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = b->execute(p);
    const auto t1 = std::chrono::steady_clock::now();
    if (!r) std::exit(1);
    if (it >= 1) times.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  const double ms = median(times);
  const double flops = (weight_bytes(c) / 2.0 - c.vocab_size * double(c.hidden_size)) * 2.0 * n +
                       2.0 * c.vocab_size * c.hidden_size +  // LM head on the last token only
                       c.num_layers * 2.0 * 2.0 * c.num_heads * c.head_dim * (n * (n + 1) / 2.0);
  const double floor_ms = flops / g_gemm_rate * 1e3;
  std::printf("| prefill step | %d | %d | %.2f | %.2f | %.0f%% | %.2fx |\n", block_size, n, ms,
              floor_ms, 100.0 * floor_ms / ms, ms / floor_ms);
}

// `prefill [block_size] [n,n,...]`: the attention kernel alone, then whole steps (default 2048).
void bench_prefill(int block_size, const std::vector<int>& lengths, cudaStream_t s) {
  std::printf(
      "\n| prefill attention, Llama-3-8B heads | block | tokens | us | TFLOP/s | rows/item "
      "|\n|---|---|---|---|---|---|\n");
  for (int n : lengths) bench_prefill_attention(block_size, n, s);
  std::printf(
      "\n| prefill, Llama-3-8B dummy bf16 | block | tokens | ms | GEMM floor ms | floor/time | "
      "time/floor |\n|---|---|---|---|---|---|---|\n");
  for (int n : lengths) bench_prefill_step(block_size, n);
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // keep partial results if the run is cut short
  const std::string what = argc > 1 ? argv[1] : "all";
  const int block_size = argc > 2 ? std::atoi(argv[2]) : 16;
  std::vector<int> prefill_lengths;  // prefill mode: comma-separated prompt lengths
  for (const char* p = argc > 3 ? argv[3] : "2048"; *p;) {
    char* end = nullptr;
    const long n = std::strtol(p, &end, 10);
    if (end == p) break;
    if (n > 0) prefill_lengths.push_back(static_cast<int>(n));
    p = *end == ',' ? end + 1 : end;
  }
  if (!cuda_device_available()) {
    std::puts("cuda_decode_bench: no CUDA device");
    return 0;
  }
  auto name = cuda_device_name(0);
  std::printf("| device | %s |\n|---|---|\n", name ? name->c_str() : "?");
  cuda_stream stream;
  CHECK_OK(stream.create());
  bench_copy(stream.get());
  if (what == "all" || what == "matmul") bench_matmul(stream.get());
  if (what == "all" || what == "attention") bench_attention(stream.get());
  if (what == "all" || what == "decode") bench_decode(block_size);
  if (what == "all" || what == "prefill") bench_prefill(block_size, prefill_lengths, stream.get());
  return 0;
}
#endif
