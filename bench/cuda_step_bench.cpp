// GPU benchmark of whole backend steps outside the steady decode batch (issue 8's step gaps,
// issue 9's short-prefill TTFT floor), Llama-3-8B shapes with dummy bf16 weights:
//   short   host wall time of `backend::execute` for short prefill and mixed steps: a prompt of
//           8..128 tokens from an empty cache, a 32-token chunk over 2,048 cached tokens, and a
//           mixed step of 63 decodes (1,024 tokens of context) plus that chunk; with the
//           small-step path (decode rows, split-KV attention, graphs) and without it;
//   gaps    the GPU's idle time between consecutive decode steps at batch 64 and 1,024 tokens
//           of context (cuda_backend_config::record_step_gaps): synchronous execute, and
//           submit(N+1) before collect(N).
// Prints markdown table rows. Needs a CUDA build and a GPU.
//   cuda_step_bench [all|short|gaps] [label]
#include <cstdio>
#include <cstring>
#include <string>

#ifndef KVSERVE_HAVE_CUDA
int main() {
  std::puts("cuda_step_bench: built without CUDA");
  return 0;
}
#else
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "bench/cuda_bench_util.hpp"
#include "cuda/cuda_backend.hpp"

namespace {

using namespace kvserve;
using namespace kvserve::bench;

std::string g_label = "new";

// small_step_tokens: cuda_backend_config::small_step_max_tokens. per_seq_limits false: every
// step of at most that many tokens runs decode-shaped (the rule before the per-sequence limits).
std::unique_ptr<backend> make_8b(int small_step_tokens, bool gaps, bool per_seq_limits = true) {
  cuda_backend_config cfg = llama3_8b_step_config();
  cfg.record_step_gaps = gaps;
  cfg.small_step_max_tokens = small_step_tokens;
  if (!per_seq_limits) {
    cfg.small_step_max_seq_tokens = small_step_tokens;
    cfg.small_step_max_context_reads = std::numeric_limits<int>::max();
  }
  auto b = make_cuda_backend_dummy(cfg, llama3_8b(), 1);
  if (!b) {
    std::fprintf(stderr, "backend: %s\n", b.error().message().c_str());
    std::exit(1);
  }
  return std::move(*b);
}

// Sequence `id` with `n` tokens at `start`, its blocks [first_block, first_block + blocks).
sequence_step make_seq(const model_config& c, seq_id id, int n, int start, int first_block,
                       int blocks) {
  sequence_step q;
  q.id = id;
  q.tokens.resize(n);
  for (int i = 0; i < n; ++i)
    q.tokens[i] = static_cast<std::int32_t>((id * 131 + i * 17 + 5) % c.vocab_size);
  q.start_position = start;
  q.block_table.resize(blocks);
  for (int i = 0; i < blocks; ++i) q.block_table[i] = first_block + i;
  q.sample = true;
  q.sampling.temperature = 0.0f;
  return q;
}

void run_or_die(backend& b, const step_plan& p) {
  auto r = b.execute(p);
  if (!r) {
    std::fprintf(stderr, "execute: %s\n", r.error().message().c_str());
    std::exit(1);
  }
}

// Prefills `n` tokens of each sequence (2 KiB-token steps) so that later steps attend over
// written KV, not over uninitialised memory.
void fill(backend& b, const std::vector<sequence_step>& seqs, int n) {
  const model_config& c = b.config();
  step_plan p;
  int tokens = 0;
  for (const auto& s : seqs) {
    sequence_step q = make_seq(c, s.id, n, 0, 0, 0);
    q.block_table = s.block_table;
    q.sample = false;
    if (tokens + n > 2048 && !p.seqs.empty()) {
      run_or_die(b, p);
      p.seqs.clear();
      tokens = 0;
    }
    p.seqs.push_back(q);
    tokens += n;
  }
  if (!p.seqs.empty()) run_or_die(b, p);
}

// Median host wall time (ms) of executing `p` `reps` times after 3 warm-up runs (the first
// run of a row bucket captures its graph).
double step_ms(backend& b, const step_plan& p, int reps = 21) {
  for (int i = 0; i < 3; ++i) run_or_die(b, p);
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    run_or_die(b, p);
    t.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return median(t);
}

void bench_short() {
  const model_config c = llama3_8b();
  struct variant {
    const char* name;
    int small_tokens;
    bool per_seq_limits;
  };
  const variant variants[] = {{"general path", 0, true},
                              {"small-step path (any step <= 128 tokens)", 128, false},
                              {"default (per-sequence limits)", 128, true}};
  std::printf(
      "\n| step (Llama-3-8B dummy, block 16, greedy, host wall time of execute, median of 21) | "
      "%s build | path | ms |\n|---|---|---|---|\n",
      g_label.c_str());
  for (const auto& v : variants) {
    auto b = make_8b(v.small_tokens, false, v.per_seq_limits);
    const int bs = b->block_size();
    // Sequence 1000 holds a 2,048-token prefix in blocks [0, 2112 / bs + 1); a chunk after it
    // writes positions 2048.. (the same slots every repetition).
    const int prefix_blocks = 2112 / bs + 1;
    step_plan prefix;
    prefix.seqs.push_back(make_seq(c, 1000, 2048, 0, 0, prefix_blocks));
    run_or_die(*b, prefix);
    for (int n : {1, 8, 16, 32, 64, 128}) {
      step_plan p;
      p.seqs.push_back(make_seq(c, 1, n, 0, 200, n / bs + 1));
      std::printf("| prompt of %d tokens, empty cache | %s | %s | %.2f |\n", n, g_label.c_str(),
                  v.name, step_ms(*b, p));
    }
    for (int n : {8, 16, 32, 64}) {
      step_plan chunk;
      chunk.seqs.push_back(make_seq(c, 1000, n, 2048, 0, prefix_blocks));
      std::printf("| %d-token chunk over 2,048 cached tokens | %s | %s | %.2f |\n", n,
                  g_label.c_str(), v.name, step_ms(*b, chunk));
    }
    // 63 decodes at 1,024 tokens of context (blocks from 300 on) plus a chunk; also the first
    // 8 of them with a chunk.
    step_plan mixed;
    mixed.seqs.push_back(make_seq(c, 1000, 32, 2048, 0, prefix_blocks));
    for (int s = 0; s < 63; ++s) {
      const int blocks = 1025 / bs + 1;
      mixed.seqs.push_back(make_seq(c, s, 1, 1024, 300 + s * blocks, blocks));
    }
    fill(*b, std::vector<sequence_step>(mixed.seqs.begin() + 1, mixed.seqs.end()), 1024);
    for (int decodes : {8, 63})
      for (int n : {8, 32}) {
        step_plan m(mixed);
        m.seqs.resize(1 + decodes);
        m.seqs[0] = make_seq(c, 1000, n, 2048, 0, prefix_blocks);
        std::printf(
            "| mixed: %d decodes (1,024 ctx) + %d-token chunk over 2,048 | %s | %s | %.2f |\n",
            decodes, n, g_label.c_str(), v.name, step_ms(*b, m));
      }
    step_plan decode(mixed);
    decode.seqs.erase(decode.seqs.begin());
    std::printf("| decode only: 63 sequences at 1,024 ctx | %s | %s | %.2f |\n", g_label.c_str(),
                v.name, step_ms(*b, decode));
  }
}

struct gap_stats {
  double median = 0, p10 = 0, p90 = 0, step_ms = 0;
  std::size_t n = 0;
};

gap_stats summarize(const std::vector<float>& all, std::size_t from, double step_ms) {
  std::vector<double> g(all.begin() + static_cast<std::ptrdiff_t>(std::min(from, all.size())),
                        all.end());
  std::sort(g.begin(), g.end());
  gap_stats s;
  s.step_ms = step_ms;
  s.n = g.size();
  if (g.empty()) return s;
  s.median = g[g.size() / 2];
  s.p10 = g[g.size() / 10];
  s.p90 = g[g.size() * 9 / 10];
  return s;
}

// Batch 64 decode at 1,024 tokens of context; `steps` measured steps after 6 warm-up steps.
// async: submit(N+1) (its token taken on the device from step N's sample) before collect(N).
// Returns the gaps by CUDA events and by device timestamps.
std::pair<gap_stats, gap_stats> decode_gaps(backend& b, bool async, int steps, bool do_fill) {
  const model_config& c = b.config();
  const int bs = b.block_size(), batch = 64, ctx = 1024;
  const int blocks = (ctx + steps + 64) / bs + 1;
  step_plan p;
  for (int s = 0; s < batch; ++s) p.seqs.push_back(make_seq(c, s, 1, ctx, s * blocks, blocks));
  if (do_fill) fill(b, p.seqs, ctx);
  const int warm = 6;
  std::size_t from = 0, from_device = 0;
  std::chrono::steady_clock::time_point t0;
  if (!async) {
    for (int it = 0; it < warm + steps; ++it) {
      if (it == warm) {
        from = cuda_step_gaps_us(b).size();
        from_device = cuda_step_gaps_device_us(b).size();
        t0 = std::chrono::steady_clock::now();
      }
      auto r = b.execute(p);
      if (!r) {
        std::fprintf(stderr, "execute: %s\n", r.error().message().c_str());
        std::exit(1);
      }
      for (int s = 0; s < batch; ++s) {
        p.seqs[s].tokens = {*r->seqs[s].sampled_token};
        ++p.seqs[s].start_position;
      }
    }
  } else {
    auto check = [](const status& st) {
      if (!st.is_ok()) {
        std::fprintf(stderr, "submit: %s\n", st.message().c_str());
        std::exit(1);
      }
    };
    check(b.submit(p));
    for (auto& q : p.seqs) {
      q.input_from_last_sample = true;
      q.tokens = {0};
    }
    for (int it = 0; it < warm + steps; ++it) {
      if (it == warm) {
        from = cuda_step_gaps_us(b).size();
        from_device = cuda_step_gaps_device_us(b).size();
        t0 = std::chrono::steady_clock::now();
      }
      for (auto& q : p.seqs) ++q.start_position;
      check(b.submit(p));
      auto r = b.collect();
      if (!r) {
        std::fprintf(stderr, "collect: %s\n", r.error().message().c_str());
        std::exit(1);
      }
    }
    auto r = b.collect();
    if (!r) std::exit(1);
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
      steps;
  return {summarize(cuda_step_gaps_us(b), from, ms),
          summarize(cuda_step_gaps_device_us(b), from_device, ms)};
}

void bench_gaps() {
  auto b = make_8b(128, true);
  std::printf(
      "\n| GPU idle between consecutive decode steps (batch 64, ctx 1,024, graphs, CUDA events, "
      "%s build) | loop | measured by | steps | median us | p10 us | p90 us | host ms/step |\n"
      "|---|---|---|---|---|---|---|---|\n",
      g_label.c_str());
  for (int round = 0; round < 2; ++round) {
    for (bool async : {false, true}) {
      const auto [ev, dev] = decode_gaps(*b, async, 200, round == 0 && !async);
      const char* loop = async ? "submit(N+1) before collect(N)" : "execute (synchronous)";
      std::printf("| idle gap | %s | CUDA events | %zu | %.1f | %.1f | %.1f | %.2f |\n", loop, ev.n,
                  ev.median, ev.p10, ev.p90, ev.step_ms);
      if (dev.n > 0)
        std::printf("| idle gap | %s | device timestamps | %zu | %.1f | %.1f | %.1f | %.2f |\n",
                    loop, dev.n, dev.median, dev.p10, dev.p90, dev.step_ms);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string what = argc > 1 ? argv[1] : "all";
  if (argc > 2) g_label = argv[2];
  if (!cuda_device_available()) {
    std::puts("cuda_step_bench: no CUDA device");
    return 0;
  }
  auto name = cuda_device_name(0);
  std::printf("| device | %s |\n", name ? name->c_str() : "?");
  if (what == "all" || what == "short") bench_short();
  if (what == "all" || what == "gaps") bench_gaps();
  return 0;
}
#endif
