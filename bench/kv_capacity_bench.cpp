// KV capacity per dtype, measured through the engine on the CPU backend: for each memory size
// and KV dtype, the sequences and tokens the pool actually held at once (see
// kv_capacity_measure.hpp), and the ratio of tokens to bf16's at the same memory.
//
//   kv_capacity_bench [--model PATH | --tiny] [--memory 16MiB,64MiB] [--context 32]
//                     [--block-size 16] [--threads 0] [--timeout 120]
//
// Each sequence grows to --context KV tokens. --tiny uses a one-layer dummy model (head_dim 64)
// instead of the default SmolLM2 GGUF. Prints a markdown table; a dtype the backend refuses is
// listed with its error.

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "bench/kv_capacity_measure.hpp"
#include "model/dummy_weights.hpp"
#include "model/kv_capacity.hpp"
#include "model/model_loader.hpp"

namespace {

using namespace kvserve;

std::uint64_t parse_size(const std::string& text) {
  std::size_t pos = 0;
  const double v = std::stod(text, &pos);
  const std::string unit = text.substr(pos);
  double scale = 1;
  if (unit == "KiB" || unit == "k") scale = 1024.0;
  if (unit == "MiB" || unit == "m") scale = 1024.0 * 1024;
  if (unit == "GiB" || unit == "g") scale = 1024.0 * 1024 * 1024;
  return static_cast<std::uint64_t>(v * scale);
}

std::string size_text(std::uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

model_config tiny_model() {
  model_config c;
  c.name = "tiny-dummy";
  c.vocab_size = 257;
  c.hidden_size = 64;
  c.intermediate_size = 64;
  c.num_layers = 1;
  c.num_heads = 2;
  c.num_kv_heads = 1;
  c.head_dim = 64;
  c.max_position_embeddings = 4096;
  c.tie_word_embeddings = true;
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_path;
  bool tiny = false;
  std::string memories = "16MiB";
  capacity::setup s;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--model") {
      model_path = next();
    } else if (a == "--tiny") {
      tiny = true;
    } else if (a == "--memory") {
      memories = next();
    } else if (a == "--context") {
      s.context_len = std::atoi(next().c_str());
    } else if (a == "--block-size") {
      s.block_size = std::atoi(next().c_str());
    } else if (a == "--threads") {
      s.num_threads = std::atoi(next().c_str());
    } else if (a == "--timeout") {
      s.timeout = std::chrono::seconds(std::atoi(next().c_str()));
    } else {
      std::fprintf(stderr,
                   "usage: %s [--model PATH | --tiny] [--memory 16MiB,64MiB] [--context N] "
                   "[--block-size N] [--threads N] [--timeout SECONDS]\n",
                   argv[0]);
      return 2;
    }
  }

  std::string model_name;
  model_weights real_weights;
  if (tiny) {
    s.model = tiny_model();
    s.make_weights = [m = s.model] { return make_dummy_weights(m, 7); };
    s.model_tokenizer = capacity::make_byte_tokenizer();
    model_name = "tiny dummy (1 layer, 2 heads / 1 KV head, head_dim 64)";
  } else {
    if (model_path.empty()) {
      auto found = find_default_model(argv[0]);
      if (!found) {
        std::fprintf(stderr, "%s\n", found.error().message().c_str());
        return 1;
      }
      model_path = found.value();
    }
    auto loaded = load_model(model_path, load_format::kAuto);
    if (!loaded) {
      std::fprintf(stderr, "%s\n", loaded.error().message().c_str());
      return 1;
    }
    s.model = loaded.value().config;
    s.model_tokenizer = loaded.value().tokenizer;
    real_weights = std::move(loaded.value().weights);
    s.make_weights = [&real_weights] { return real_weights; };  // a copy per backend
    model_name = model_path.substr(model_path.find_last_of('/') + 1);
  }

  std::printf(
      "model: %s; sequences of %d KV tokens (%d-token prompts, %d output tokens, EOS ignored), "
      "block size %d, prefix caching off\n\n",
      model_name.c_str(), s.context_len, s.context_len - capacity::kDecodeSteps,
      capacity::kDecodeSteps + 1, s.block_size);
  std::printf(
      "| memory | dtype | bytes/token | blocks | sequences held | tokens held | tokens vs bf16 | "
      "computed tokens | KV tokens written, fullest step | blocks used | preemptions |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::stringstream list(memories);
  std::string item;
  while (std::getline(list, item, ',')) {
    const std::uint64_t memory = parse_size(item);
    std::int64_t bf16_tokens = 0;
    for (kv_cache_dtype d : {kv_cache_dtype::kBf16, kv_cache_dtype::kFp32, kv_cache_dtype::kFp8E4m3,
                             kv_cache_dtype::kInt8}) {
      const capacity::measurement m = capacity::measure(s, d, memory);
      if (!m.error.is_ok()) {
        std::printf("| %s | %s | - | - | - | - | - | - | - | - | %s |\n", size_text(memory).c_str(),
                    to_string(d), m.error.message().c_str());
        continue;
      }
      if (d == kv_cache_dtype::kBf16) bf16_tokens = m.tokens_held();
      const std::int64_t computed =
          kv_max_sequences(m.num_blocks, s.block_size, s.context_len) * s.context_len;
      char ratio[32] = "-";
      if (bf16_tokens > 0) {
        std::snprintf(ratio, sizeof ratio, "%.2fx",
                      static_cast<double>(m.tokens_held()) / static_cast<double>(bf16_tokens));
      }
      std::printf("| %s | %s | %zu | %d | %d | %lld | %s | %lld | %lld | %lld%s | %llu |\n",
                  size_text(memory).c_str(), to_string(d), m.bytes_per_token, m.num_blocks,
                  m.peak_sequences, static_cast<long long>(m.tokens_held()), ratio,
                  static_cast<long long>(computed), static_cast<long long>(m.peak_tokens),
                  static_cast<long long>(m.peak_blocks), m.pool_bound() ? "" : " (not pool-bound)",
                  static_cast<unsigned long long>(m.num_preemptions));
      if (m.num_errors > 0) {
        std::printf("(%d requests failed: %s)\n", m.num_errors, m.first_error.c_str());
      }
      std::fflush(stdout);
    }
  }
  return 0;
}
