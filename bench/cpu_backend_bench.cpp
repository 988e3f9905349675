// Prefill and decode throughput of the CPU backend on the default model (or any model path,
// or random weights at its shapes with --dummy, or at SmolLM2-135M shapes without any file
// with --synthetic). Prints one line per case; see
// docs/BENCHMARKS.md. Usage: cpu_backend_bench [--model PATH] [--dummy] [--threads N]
//                                             [--block-size B] [--quick]

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "model/cpu_backend.hpp"
#include "model/cpu_kernels.hpp"
#include "model/dummy_weights.hpp"
#include "model/model_loader.hpp"

namespace {

using namespace kvserve;
using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

// CPU seconds of the whole process (all threads): on a shared machine the work itself,
// whatever the wall clock says.
double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct rates {
  double prefill_wall = 0, prefill_cpu = 0, decode_wall = 0, decode_cpu = 0;  // tokens/s
};

struct bench_seq {
  std::vector<std::int32_t> tokens;
  std::vector<std::int32_t> block_table;
};

// Prefills `batch` sequences of `prompt` tokens (one step, all sequences together), then runs
// `steps` decode steps for all of them; returns tokens per wall second and per CPU second.
rates run_case(cpu_backend& b, int batch, int prompt, int steps, std::mt19937& rng) {
  const int bs = b.block_size();
  const int blocks_per_seq = (prompt + steps + bs - 1) / bs;
  std::vector<bench_seq> seqs(batch);
  for (int i = 0; i < batch; ++i) {
    for (int j = 0; j < prompt; ++j) {
      seqs[i].tokens.push_back(static_cast<std::int32_t>(rng() % b.config().vocab_size));
    }
    for (int j = 0; j < blocks_per_seq; ++j) seqs[i].block_table.push_back(i * blocks_per_seq + j);
  }
  step_plan plan;
  for (int i = 0; i < batch; ++i) {
    sequence_step s;
    s.id = i;
    s.tokens = seqs[i].tokens;
    s.block_table = seqs[i].block_table;
    s.sample = true;
    s.sampling.temperature = 0.0f;
    plan.seqs.push_back(std::move(s));
  }
  auto start = clock_type::now();
  double cpu_start = process_cpu_seconds();
  auto r = b.execute(plan);
  const double prefill_s = seconds_since(start);
  const double prefill_cpu = process_cpu_seconds() - cpu_start;
  if (!r.is_ok()) {
    std::fprintf(stderr, "error: %s\n", r.error().message().c_str());
    std::exit(1);
  }
  start = clock_type::now();
  cpu_start = process_cpu_seconds();
  for (int step = 0; step < steps; ++step) {
    for (int i = 0; i < batch; ++i) {
      sequence_step& s = plan.seqs[i];
      s.start_position += static_cast<int>(s.tokens.size());
      s.tokens = {*r->seqs[i].sampled_token};
    }
    r = b.execute(plan);
    if (!r.is_ok()) {
      std::fprintf(stderr, "error: %s\n", r.error().message().c_str());
      std::exit(1);
    }
  }
  const double decode_s = seconds_since(start);
  const double decode_cpu = process_cpu_seconds() - cpu_start;
  return {batch * prompt / prefill_s, batch * prompt / prefill_cpu, batch * steps / decode_s,
          batch * steps / decode_cpu};
}

}  // namespace

int run_all(const model_config& config, model_weights weights, const char* source, double load_s,
            int threads, int block_size, bool quick) {
  cpu_backend_config bc;
  bc.block_size = block_size;
  bc.num_threads = threads;
  bc.num_kv_blocks = cpu_kv_blocks_for_memory(config, block_size, std::size_t{1} << 30);
  auto backend = cpu_backend::create(bc, config, std::move(weights));
  if (!backend.is_ok()) {
    std::fprintf(stderr, "error: %s\n", backend.error().message().c_str());
    return 1;
  }
  cpu_backend& b = *backend.value();
  std::printf("model %s (%s), load %.2f s, %d threads, block size %d, avx2 %s\n",
              config.name.c_str(), source, load_s, b.num_threads(), block_size,
              cpu_kernels_use_avx2() ? "yes" : "no");
  std::printf("%6s %7s %7s %14s %16s %14s %16s\n", "batch", "prompt", "steps", "prefill tok/s",
              "prefill tok/cpu-s", "decode tok/s", "decode tok/cpu-s");
  std::mt19937 rng(1);
  run_case(b, 1, 16, 4, rng);  // warm-up: page in weights and KV
  struct bench_case {
    int batch, prompt, steps;
  };
  std::vector<bench_case> cases = {{1, 128, 64}, {8, 128, 32}, {32, 64, 16}, {1, 512, 16}};
  if (quick) cases = {{1, 64, 16}, {8, 64, 8}};
  for (const auto& c : cases) {
    const rates r = run_case(b, c.batch, c.prompt, c.steps, rng);
    std::printf("%6d %7d %7d %14.1f %16.1f %14.1f %16.1f\n", c.batch, c.prompt, c.steps,
                r.prefill_wall, r.prefill_cpu, r.decode_wall, r.decode_cpu);
    std::fflush(stdout);
  }
  return 0;
}

int main(int argc, char** argv) {
  std::string model_path;
  bool dummy = false, quick = false, synthetic = false;
  int threads = 0, block_size = 16;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--model" && i + 1 < argc) {
      model_path = argv[++i];
    } else if (a == "--dummy") {
      dummy = true;
    } else if (a == "--synthetic") {
      synthetic = true;
    } else if (a == "--quick") {
      quick = true;
    } else if (a == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (a == "--block-size" && i + 1 < argc) {
      block_size = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "usage: %s [--model PATH] [--dummy | --synthetic] [--threads N] [--block-size "
                   "B] [--quick]\n",
                   argv[0]);
      return 2;
    }
  }
  if (synthetic) {
    // SmolLM2-135M's shapes with random weights: no model file needed (for other machines).
    model_config c;
    c.name = "SmolLM2-135M shapes";
    c.vocab_size = 49152;
    c.hidden_size = 576;
    c.intermediate_size = 1536;
    c.num_layers = 30;
    c.num_heads = 9;
    c.num_kv_heads = 3;
    c.head_dim = 64;
    c.max_position_embeddings = 8192;
    c.rope_theta = 100000.0f;
    c.tie_word_embeddings = true;
    return run_all(c, make_dummy_weights(c, 1), "synthetic", 0.0, threads, block_size, quick);
  }
  if (model_path.empty()) {
    auto found = find_default_model();
    if (!found.is_ok()) {
      std::fprintf(stderr, "error: %s\n", found.error().message().c_str());
      return 1;
    }
    model_path = found.value();
  }
  auto start = clock_type::now();
  auto loaded = load_model(model_path, dummy ? load_format::kDummy : load_format::kAuto);
  if (!loaded.is_ok()) {
    std::fprintf(stderr, "error: %s\n", loaded.error().message().c_str());
    return 1;
  }
  const double load_s = seconds_since(start);
  return run_all(loaded->config, std::move(loaded->weights), dummy ? "dummy weights" : "file",
                 load_s, threads, block_size, quick);
}
