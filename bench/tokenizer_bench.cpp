// Tokenizer and model-loading throughput on the default model (SmolLM2-135M-Instruct Q4_1):
// encode of prompts of ~1k and ~10k tokens, decode, and the whole GGUF load (parse, tokenizer,
// dequantisation). Not a test; numbers go to docs/BENCHMARKS.md with the machine.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

#include "model/gguf_file.hpp"
#include "model/gguf_loader.hpp"
#include "model/model_loader.hpp"

namespace {

using namespace kvserve;

std::shared_ptr<const tokenizer> default_tokenizer() {
  static std::shared_ptr<const tokenizer> tok = [] {
    auto path = find_default_model();
    if (!path) std::abort();
    auto file = gguf_file::open(*path);
    if (!file) std::abort();
    auto spec = tokenizer_spec_from_gguf(*file);
    if (!spec) std::abort();
    return tokenizer::create(*spec).value();
  }();
  return tok;
}

std::string prompt(int repeats) {
  std::string text;
  for (int i = 0; i < repeats; ++i) {
    text += "The scheduler admits request " + std::to_string(i) +
            " and matches its longest cached prefix; déjà vu, 東京, 🚀.\n"
            "    for (int j = 0; j < n; ++j) { total += blocks[j].size(); }\n";
  }
  return text;
}

void BM_Encode(benchmark::State& state) {
  auto tok = default_tokenizer();
  const std::string text = prompt(static_cast<int>(state.range(0)));
  std::size_t tokens = 0;
  for (auto _ : state) {
    auto ids = tok->encode(text, false);
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.counters["tokens"] = static_cast<double>(tokens);
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens),
                                                  benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Encode)->Arg(20)->Arg(200)->Unit(benchmark::kMillisecond);

void BM_Decode(benchmark::State& state) {
  auto tok = default_tokenizer();
  const auto ids = tok->encode(prompt(200), false);
  for (auto _ : state) benchmark::DoNotOptimize(tok->decode(ids, false));
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(ids.size()),
                                                  benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Decode)->Unit(benchmark::kMillisecond);

void BM_LoadDefaultModel(benchmark::State& state) {
  auto path = find_default_model();
  if (!path) {
    state.SkipWithError("default model not found");
    return;
  }
  for (auto _ : state) {
    auto m = load_model(*path, load_format::kGguf);
    if (!m) state.SkipWithError(m.error().message().c_str());
    benchmark::DoNotOptimize(m);
  }
}
BENCHMARK(BM_LoadDefaultModel)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace

BENCHMARK_MAIN();
