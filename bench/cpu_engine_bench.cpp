// CPU end-to-end throughput through the engine (in-process API, all four actors, CPU backend).
//
//   cpu_engine_bench [--model PATH] [--concurrency 1,8,32] [--prompt 128] [--output 64]
//                    [--threads 2] [--synthetic]
//
// For each concurrency C: C greedy requests of `prompt` random token ids (distinct per
// request, so the prefix cache serves nothing) and exactly `output` tokens each (EOS ignored)
// are submitted at once; the clock runs from the first submit to the last final event.
// Prints output tokens/s, all (prompt + output) tokens/s, the same per CPU-second of the
// process, mean time to first token and mean inter-token latency.
// --model defaults to models/SmolLM2-135M-Instruct.Q4_1.gguf (relative to the working
// directory: run from the repository root) or $KVSERVE_MODEL; --synthetic uses random weights
// at SmolLM2-135M's shapes instead (the same arithmetic, no file needed).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "actors/engine.hpp"
#include "model/cpu_backend.hpp"
#include "model/dummy_weights.hpp"
#include "model/model_loader.hpp"

namespace {

using namespace kvserve;
using clock_type = std::chrono::steady_clock;

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

model_config smollm2_135m_shapes() {
  model_config c;
  c.name = "smollm2-135m-synthetic";
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
  return c;
}

struct run_result {
  double wall_seconds = 0;
  double cpu_seconds = 0;
  double mean_ttft = 0;
  double mean_itl = 0;
  int num_errors = 0;
  long output_tokens = 0;
};

run_result run(engine& eng, int concurrency, int prompt_len, int output_len, int vocab,
               std::uint32_t seed) {
  std::mt19937 rng(seed);
  // Token ids away from the ends of the vocabulary (special tokens sit at the start).
  std::uniform_int_distribution<std::int32_t> pick(300, vocab - 300);
  std::vector<generate_request> requests;
  for (int i = 0; i < concurrency; ++i) {
    generate_request r;
    std::vector<std::int32_t> prompt(prompt_len);
    for (auto& t : prompt) t = pick(rng);
    r.prompt = std::move(prompt);
    r.max_tokens = output_len;
    r.sampling.temperature = 0.0f;
    r.sampling.ignore_eos = true;
    requests.push_back(std::move(r));
  }
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  run_result out;
  double ttft_sum = 0, itl_sum = 0;
  long itl_count = 0;
  const double cpu0 = cpu_seconds();
  const auto start = clock_type::now();
  for (auto& r : requests) {
    eng.submit(std::move(r), [&](request_id, const generation_event& e) {
      std::lock_guard<std::mutex> lock(mu);
      if (auto* f = std::get_if<finished_event>(&e)) {
        out.output_tokens += f->usage.completion_tokens;
        ttft_sum += f->time_to_first_token_seconds;
        for (double x : f->inter_token_latencies_seconds) itl_sum += x;
        itl_count += static_cast<long>(f->inter_token_latencies_seconds.size());
        ++done;
        cv.notify_all();
      } else if (auto* x = std::get_if<error_event>(&e)) {
        std::fprintf(stderr, "error: %s\n", x->error.message().c_str());
        ++out.num_errors;
        ++done;
        cv.notify_all();
      }
    });
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done == concurrency; });
  out.wall_seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  out.cpu_seconds = cpu_seconds() - cpu0;
  const int ok = concurrency - out.num_errors;
  out.mean_ttft = ok > 0 ? ttft_sum / ok : 0;
  out.mean_itl = itl_count > 0 ? itl_sum / static_cast<double>(itl_count) : 0;
  return out;
}

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::atoi(item.c_str()));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (const char* env = std::getenv("KVSERVE_MODEL")) model_path = env;
  std::vector<int> concurrency = {1, 8, 32};
  int prompt_len = 128, output_len = 64, threads = 2;
  bool synthetic = false;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (flag == "--model") {
      model_path = value();
    } else if (flag == "--concurrency") {
      concurrency = parse_list(value());
    } else if (flag == "--prompt") {
      prompt_len = std::atoi(value().c_str());
    } else if (flag == "--output") {
      output_len = std::atoi(value().c_str());
    } else if (flag == "--threads") {
      threads = std::atoi(value().c_str());
    } else if (flag == "--synthetic") {
      synthetic = true;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  model_config config;
  model_weights weights;
  if (synthetic) {
    config = smollm2_135m_shapes();
    weights = make_dummy_weights(config, 1);
  } else {
    auto loaded = load_model(model_path, load_format::kAuto);
    if (!loaded) {
      std::fprintf(stderr, "%s (run scripts/fetch_model, or pass --synthetic)\n",
                   loaded.error().message().c_str());
      return 1;
    }
    config = loaded->config;
    weights = std::move(loaded->weights);
  }
  const int max_c = *std::max_element(concurrency.begin(), concurrency.end());
  engine_config ec;
  ec.max_num_seqs = std::max(max_c, 1);
  ec.max_num_batched_tokens = 2048;
  const int blocks_per_seq = (prompt_len + output_len + ec.block_size - 1) / ec.block_size + 1;
  std::printf("model %s, prompt %d, output %d, %d backend threads, block size %d\n",
              synthetic ? "synthetic SmolLM2-135M shapes" : model_path.c_str(), prompt_len,
              output_len, threads, ec.block_size);
  std::printf("%11s  %8s  %12s  %12s  %16s  %9s  %9s\n", "concurrency", "wall_s", "output_tok/s",
              "total_tok/s", "output_tok/cpu-s", "ttft_ms", "itl_ms");
  for (int c : concurrency) {
    cpu_backend_config bc;
    bc.block_size = ec.block_size;
    bc.num_kv_blocks = blocks_per_seq * std::max(c, 1) + 16;
    bc.num_threads = threads;
    model_weights copy = weights;
    auto backend = cpu_backend::create(bc, config, std::move(copy));
    if (!backend) {
      std::fprintf(stderr, "%s\n", backend.error().message().c_str());
      return 1;
    }
    engine_parts parts;
    parts.model_backend = std::move(backend.value());
    auto eng = make_engine(ec, std::move(parts));
    if (!eng) {
      std::fprintf(stderr, "%s\n", eng.error().message().c_str());
      return 1;
    }
    const run_result r = run(**eng, c, prompt_len, output_len, config.vocab_size, 1234 + c);
    (*eng)->shutdown(std::chrono::milliseconds(0));
    const double total = static_cast<double>(c) * prompt_len + static_cast<double>(r.output_tokens);
    std::printf("%11d  %8.2f  %12.1f  %12.1f  %16.1f  %9.1f  %9.1f%s\n", c, r.wall_seconds,
                static_cast<double>(r.output_tokens) / r.wall_seconds, total / r.wall_seconds,
                static_cast<double>(r.output_tokens) / r.cpu_seconds, 1e3 * r.mean_ttft,
                1e3 * r.mean_itl, r.num_errors > 0 ? "  (errors)" : "");
    std::fflush(stdout);
  }
  return 0;
}
