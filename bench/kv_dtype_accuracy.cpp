// What a quantized KV cache costs in accuracy, on the CPU backend and the default model
// (issue 10; results in docs/KV_QUANTIZATION.md):
//  (a) a long greedy generation with the bf16 cache as the reference, then the same tokens
//      teacher-forced through fp32, FP8 and INT8 caches: logit error against bf16 per range of
//      positions, top-1 agreement, and the first generated token where free-running greedy
//      output would diverge (exact, not estimated: the CPU backend is chunking-invariant, so a
//      teacher-forced position computes the very logits a free-running decode step would,
//      until the first differing token; --verify reruns free-running greedy to show it);
//  (b) the perplexity of a fixed English text (Debian's GPL-3 by default) under each dtype,
//      in windows of --window tokens, each evaluated from position 0;
//  (c) capacity, measured: a pool sized for --capacity-mib MiB in each dtype, every slot
//      written, and the growth of the process's resident memory over it (a model with the
//      loaded model's KV shapes -- layers, KV heads, head_dim -- and a tiny rest, so that
//      filling is quick).
// Prints markdown tables. Usage:
//   kv_dtype_accuracy [--model PATH] [--threads N] [--gen N] [--ppl-tokens N] [--window W]
//                     [--text PATH] [--block-size B] [--no-verify] [--capacity-mib M]
//                     [--only-generation | --only-perplexity | --only-capacity]

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "model/cpu_backend.hpp"
#include "model/dummy_weights.hpp"
#include "model/kv_cache_dtype.hpp"
#include "model/model_loader.hpp"
#include "model/tokenizer.hpp"

namespace {

using namespace kvserve;
using clock_type = std::chrono::steady_clock;

struct options {
  std::string model;
  std::string text = "/usr/share/common-licenses/GPL-3";
  int threads = 0;
  int gen = 512;          // greedy tokens generated after the prompt
  int ppl_tokens = 2048;  // tokens of the text scored
  int window = 1024;      // perplexity window (positions 0..window-1)
  int block_size = 16;
  int chunk = 128;  // tokens per teacher-forced step
  bool verify = true;
  int capacity_mib = 256;
};

constexpr kv_cache_dtype kDtypes[] = {kv_cache_dtype::kFp32, kv_cache_dtype::kBf16,
                                      kv_cache_dtype::kFp8E4m3, kv_cache_dtype::kInt8};

// The prompt of part (a), in SmolLM2-Instruct's ChatML.
constexpr const char* kPrompt =
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n<|im_start|>user\nWrite a long, detailed essay about the history of "
    "printing, from woodblocks and movable type to the digital age.<|im_end|>\n"
    "<|im_start|>assistant\n";

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "kv_dtype_accuracy: %s\n", message.c_str());
  std::exit(1);
}

std::unique_ptr<cpu_backend> make_backend(const loaded_model& m, kv_cache_dtype dtype,
                                          int max_tokens, const options& o) {
  cpu_backend_config bc;
  bc.block_size = o.block_size;
  bc.num_kv_blocks = (max_tokens + o.block_size - 1) / o.block_size;
  bc.num_threads = o.threads;
  bc.kv_dtype = dtype;
  auto made = cpu_backend::create(bc, m.config, m.weights);  // copies the weights
  if (!made) fail(made.error().message());
  return std::move(made).value();
}

std::vector<std::int32_t> table_for(int tokens, int block_size) {
  std::vector<std::int32_t> table((tokens + block_size - 1) / block_size);
  for (std::size_t i = 0; i < table.size(); ++i) table[i] = static_cast<std::int32_t>(i);
  return table;
}

// Greedy choice: the largest logit, lowest id on ties, never a stop token (so that the
// generation runs its full length).
std::int32_t greedy(const float* logits, int vocab, const std::vector<std::int32_t>& stop) {
  std::int32_t best = -1;
  for (int v = 0; v < vocab; ++v) {
    if (std::binary_search(stop.begin(), stop.end(), v)) continue;
    if (best < 0 || logits[v] > logits[best]) best = v;
  }
  return best;
}

// One step computing tokens[start, start + len) of a sequence at positions start.., with the
// logits of every position (kAll) or of the last (kLast).
std::vector<float> run_step(cpu_backend& b, const std::vector<std::int32_t>& tokens, int start,
                            int len, const std::vector<std::int32_t>& table, logits_mode mode) {
  step_plan plan;
  sequence_step s;
  s.id = 1;
  s.tokens.assign(tokens.begin() + start, tokens.begin() + start + len);
  s.start_position = start;
  s.block_table = table;
  s.return_logits = mode;
  plan.seqs.push_back(std::move(s));
  auto r = b.execute(plan);
  if (!r) fail(r.error().message());
  return std::move(r->seqs[0].logits);
}

// Greedy generation of `gen` tokens after `prompt`: returns prompt + generated tokens, and
// (when `logits_out` is set) the logits of every computed position.
std::vector<std::int32_t> generate(cpu_backend& b, const std::vector<std::int32_t>& prompt, int gen,
                                   const std::vector<std::int32_t>& stop,
                                   std::vector<float>* logits_out) {
  const int vocab = b.config().vocab_size;
  std::vector<std::int32_t> tokens = prompt;
  const auto table = table_for(static_cast<int>(prompt.size()) + gen, b.block_size());
  std::vector<float> logits = run_step(b, tokens, 0, static_cast<int>(prompt.size()), table,
                                       logits_out ? logits_mode::kAll : logits_mode::kLast);
  if (logits_out) logits_out->insert(logits_out->end(), logits.begin(), logits.end());
  for (int i = 0; i < gen; ++i) {
    const float* last = logits.data() + logits.size() - vocab;
    tokens.push_back(greedy(last, vocab, stop));
    if (i + 1 == gen) break;
    logits = run_step(b, tokens, static_cast<int>(tokens.size()) - 1, 1, table, logits_mode::kLast);
    if (logits_out) logits_out->insert(logits_out->end(), logits.begin(), logits.end());
  }
  return tokens;
}

struct range_error {
  double max_abs = 0;
  double sum_mean_abs = 0;  // sum over positions of the mean |error| over the vocabulary
  int agree = 0;
  int positions = 0;
};

// Part (a).
void generation_accuracy(const loaded_model& m, const options& o) {
  const int vocab = m.config.vocab_size;
  const std::vector<std::int32_t> prompt = m.tokenizer->encode(kPrompt, false);
  std::vector<std::int32_t> stop = m.tokenizer->stop_token_ids();
  std::sort(stop.begin(), stop.end());
  const int P = static_cast<int>(prompt.size());
  const int total = P + o.gen;

  auto start = clock_type::now();
  std::vector<float> ref_logits;  // [P + gen - 1, vocab], bf16 cache
  std::vector<std::int32_t> tokens;
  {
    auto bf16 = make_backend(m, kv_cache_dtype::kBf16, total, o);
    tokens = generate(*bf16, prompt, o.gen, stop, &ref_logits);
  }
  const int computed = total - 1;  // positions with logits: the last token is never fed
  std::fprintf(stderr, "generated %d tokens after a %d-token prompt with the bf16 cache (%.1f s)\n",
               o.gen, P, seconds_since(start));
  std::vector<std::int32_t> ref_top1(computed);
  double max_logit = 0;
  for (int p = 0; p < computed; ++p) {
    const float* row = ref_logits.data() + static_cast<std::size_t>(p) * vocab;
    ref_top1[p] = greedy(row, vocab, stop);
    for (int v = 0; v < vocab; ++v) max_logit = std::max(max_logit, std::fabs(double(row[v])));
  }

  // Ranges: the prompt, then the generation in quarters.
  std::vector<std::pair<int, int>> ranges = {{0, P}};
  const int quarter = (computed - P + 3) / 4;
  for (int b = P; b < computed; b += quarter)
    ranges.push_back({b, std::min(computed, b + quarter)});

  std::printf(
      "\n### (a) Greedy generation, %d tokens after a %d-token prompt (reference: bf16)\n\n", o.gen,
      P);
  std::printf(
      "Largest |logit| in the reference: %.2f. Errors are |logit - bf16 logit|; "
      "mean = mean over positions of the mean over the %d-token vocabulary.\n\n",
      max_logit, vocab);
  std::printf("| cache | positions | max abs err | mean abs err | top-1 agree |\n");
  std::printf("|---|---|---|---|---|\n");
  std::vector<std::pair<kv_cache_dtype, int>> divergence;
  for (kv_cache_dtype dtype : kDtypes) {
    if (dtype == kv_cache_dtype::kBf16) continue;
    start = clock_type::now();
    auto b = make_backend(m, dtype, total, o);
    const auto table = table_for(total, o.block_size);
    std::vector<range_error> errors(ranges.size());
    range_error all;
    int first_diverged = -1;  // index into the generated tokens
    for (int c = 0; c < computed; c += o.chunk) {
      const int len = std::min(o.chunk, computed - c);
      const std::vector<float> logits = run_step(*b, tokens, c, len, table, logits_mode::kAll);
      for (int i = 0; i < len; ++i) {
        const int p = c + i;
        const float* got = logits.data() + static_cast<std::size_t>(i) * vocab;
        const float* want = ref_logits.data() + static_cast<std::size_t>(p) * vocab;
        double max_abs = 0, sum_abs = 0;
        for (int v = 0; v < vocab; ++v) {
          const double e = std::fabs(double(got[v]) - double(want[v]));
          max_abs = std::max(max_abs, e);
          sum_abs += e;
        }
        const bool agree = greedy(got, vocab, stop) == ref_top1[p];
        if (!agree && p >= P - 1 && first_diverged < 0) first_diverged = p - (P - 1);
        for (std::size_t r = 0; r < ranges.size(); ++r) {
          if (p < ranges[r].first || p >= ranges[r].second) continue;
          for (range_error* e : {&errors[r], &all}) {
            e->max_abs = std::max(e->max_abs, max_abs);
            e->sum_mean_abs += sum_abs / vocab;
            e->agree += agree;
            ++e->positions;
          }
        }
      }
    }
    auto row = [&](const std::string& what, const range_error& e) {
      std::printf("| %s | %s | %.4f | %.5f | %.1f%% (%d/%d) |\n", to_string(dtype), what.c_str(),
                  e.max_abs, e.sum_mean_abs / std::max(e.positions, 1),
                  100.0 * e.agree / std::max(e.positions, 1), e.agree, e.positions);
    };
    for (std::size_t r = 0; r < ranges.size(); ++r) {
      row((r == 0 ? "prompt " : "") + std::to_string(ranges[r].first) + "-" +
              std::to_string(ranges[r].second - 1),
          errors[r]);
    }
    row("all", all);
    divergence.push_back({dtype, first_diverged});
    std::fprintf(stderr, "%s: teacher-forced in %.1f s\n", to_string(dtype), seconds_since(start));
  }

  std::printf(
      "\nFirst generated token where free-running greedy output leaves the bf16 "
      "reference (1 = the first token after the prompt):\n\n");
  std::printf(
      "| cache | first divergence | bf16's top-1 minus top-2 logit there | checked by "
      "free-running greedy |\n|---|---|---|---|\n");
  for (const auto& [dtype, first] : divergence) {
    std::string check = "no (--no-verify or diverges late)";
    if (o.verify && first >= 0 && first < 200) {
      auto b = make_backend(m, dtype, total, o);
      const std::vector<std::int32_t> free_run = generate(*b, prompt, first + 1, stop, nullptr);
      const bool same_before = std::equal(free_run.begin(), free_run.end() - 1, tokens.begin());
      const bool differs_at = free_run.back() != tokens[P + first];
      check = same_before && differs_at ? "yes: same tokens before, differs there"
                                        : "MISMATCH (the teacher-forced position is wrong)";
    }
    if (first < 0) {
      std::printf("| %s | none in %d tokens | - | - |\n", to_string(dtype), o.gen);
    } else {
      // How close the reference's own choice was: the gap to its runner-up.
      const float* row = ref_logits.data() + static_cast<std::size_t>(P - 1 + first) * vocab;
      const std::int32_t top = ref_top1[P - 1 + first];
      float second = -std::numeric_limits<float>::infinity();
      for (int v = 0; v < vocab; ++v) {
        if (v != top && !std::binary_search(stop.begin(), stop.end(), v)) {
          second = std::max(second, row[v]);
        }
      }
      std::printf("| %s | token %d | %.4f | %s |\n", to_string(dtype), first + 1, row[top] - second,
                  check.c_str());
    }
  }
  const std::vector<std::int32_t> generated(tokens.begin() + P, tokens.end());
  std::string text = m.tokenizer->decode(generated, true);
  if (text.size() > 300) text = text.substr(0, 300) + "...";
  for (char& ch : text) {
    if (ch == '\n') ch = ' ';
  }
  std::printf("\nReference output begins: \"%s\"\n", text.c_str());
}

// Part (b).
void perplexity(const loaded_model& m, const options& o) {
  std::ifstream in(o.text, std::ios::binary);
  if (!in) fail("cannot read " + o.text);
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::vector<std::int32_t> tokens = m.tokenizer->encode(buffer.str(), false);
  const int available = static_cast<int>(tokens.size());
  const int n = std::min(o.ppl_tokens, available);
  tokens.resize(n);
  const int window = std::min(o.window, m.config.max_position_embeddings);

  std::printf("\n### (b) Perplexity of %s: first %d of its %d tokens, windows of %d tokens\n\n",
              o.text.c_str(), n, available, window);
  std::printf("| cache | perplexity | mean NLL (nats) | vs bf16 | tokens scored |\n");
  std::printf("|---|---|---|---|---|\n");
  double bf16_nll = 0;
  int scored_tokens = 0;
  std::vector<std::pair<kv_cache_dtype, double>> results;
  for (kv_cache_dtype dtype : kDtypes) {
    const auto start = clock_type::now();
    auto b = make_backend(m, dtype, window, o);
    double sum = 0;
    int scored = 0;
    for (int w = 0; w < n; w += window) {
      const int w_len = std::min(window, n - w);
      const auto table = table_for(w_len, o.block_size);
      for (int c = 0; c < w_len; c += o.chunk) {
        const int len = std::min(o.chunk, w_len - c);
        step_plan plan;
        sequence_step s;
        s.id = 1;
        s.tokens.assign(tokens.begin() + w + c, tokens.begin() + w + c + len);
        s.start_position = c;
        s.block_table = table;
        s.prompt_logprobs = 0;
        if (c + len < w_len) s.next_prompt_token = tokens[w + c + len];
        plan.seqs.push_back(std::move(s));
        auto r = b->execute(plan);
        if (!r) fail(r.error().message());
        for (const position_logprobs& lp : r->seqs[0].prompt_logprobs) {
          sum -= lp.chosen.logprob;
          ++scored;
        }
      }
    }
    const double nll = sum / std::max(scored, 1);
    if (dtype == kv_cache_dtype::kBf16) bf16_nll = nll;
    results.push_back({dtype, nll});
    scored_tokens = scored;
    std::fprintf(stderr, "%s: perplexity in %.1f s\n", to_string(dtype), seconds_since(start));
  }
  for (const auto& [dtype, nll] : results) {
    std::printf("| %s | %.4f | %.5f | %+.3f%% | %d |\n", to_string(dtype), std::exp(nll), nll,
                100.0 * (std::exp(nll - bf16_nll) - 1.0), scored_tokens);
  }
}

// Resident memory of this process in bytes (VmRSS), 0 if unknown.
std::size_t resident_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
  }
  return 0;
}

// Part (c).
void capacity(const loaded_model& m, const options& o) {
  model_config c = m.config;  // its KV shapes: layers, KV heads, head_dim
  c.num_heads = c.num_kv_heads;
  c.hidden_size = 64;
  c.intermediate_size = 64;
  c.vocab_size = 256;
  c.tie_word_embeddings = true;
  c.attention_bias = false;
  const model_weights weights = make_dummy_weights(c, 1);
  const std::size_t memory = static_cast<std::size_t>(o.capacity_mib) << 20;
  const int bs = o.block_size;
  std::printf(
      "\n### (c) Capacity at --kv-cache-memory %d MiB (%d layers, %d KV heads, head_dim %d, "
      "block size %d)\n\n",
      o.capacity_mib, c.num_layers, c.num_kv_heads, c.head_dim, bs);
  std::printf(
      "The pool is allocated untouched and every slot then written: measured bytes/token is "
      "the growth of resident memory over the writes divided by the tokens written (counted "
      "after the first step of 8 blocks, which also allocates the step's scratch).\n\n");
  std::printf(
      "| cache | bytes/token (computed) | blocks | tokens | bytes/token (measured) | "
      "tokens vs bf16 |\n|---|---|---|---|---|---|\n");
  int bf16_tokens = 0;
  for (kv_cache_dtype dtype : {kv_cache_dtype::kBf16, kv_cache_dtype::kFp32,
                               kv_cache_dtype::kFp8E4m3, kv_cache_dtype::kInt8}) {
    const int blocks = cpu_kv_blocks_for_memory(c, bs, memory, dtype);
    cpu_backend_config bc;
    bc.block_size = bs;
    bc.num_kv_blocks = blocks;
    bc.num_threads = o.threads;
    bc.kv_dtype = dtype;
    auto made = cpu_backend::create(bc, c, weights);
    if (!made) fail(made.error().message());
    cpu_backend& b = *made.value();
    // Sequences of one block each, 8 in the first step and 64 in the others, until every
    // block is written. The pool is
    // allocated untouched, so resident memory grows as slots are written; counting from after
    // the first step leaves out the step's own scratch, allocated then.
    std::size_t after_first_step = 0;
    int first_step_blocks = 0;
    for (int first = 0; first < blocks;) {
      const int step_blocks = std::min(blocks - first, first == 0 ? 8 : 64);
      step_plan plan;
      for (int blk = first; blk < first + step_blocks; ++blk) {
        sequence_step s;
        s.id = static_cast<seq_id>(blk);
        for (int t = 0; t < bs; ++t) s.tokens.push_back((blk * 7 + t) % c.vocab_size);
        s.block_table = {blk};
        s.return_logits = logits_mode::kNone;
        plan.seqs.push_back(std::move(s));
      }
      auto r = b.execute(plan);
      if (!r) fail(r.error().message());
      if (first == 0) {
        after_first_step = resident_bytes();
        first_step_blocks = step_blocks;
      }
      first += step_blocks;
    }
    const double grown = static_cast<double>(resident_bytes() - after_first_step);
    const int measured_tokens = (blocks - first_step_blocks) * bs;
    const int tokens = blocks * bs;
    if (dtype == kv_cache_dtype::kBf16) bf16_tokens = tokens;
    std::printf("| %s | %zu | %d | %d | %.0f | %.2fx |\n", to_string(dtype),
                cpu_kv_bytes_per_token(c, dtype), blocks, tokens,
                measured_tokens > 0 ? grown / measured_tokens : 0.0,
                static_cast<double>(tokens) / bf16_tokens);
    std::fflush(stdout);
  }
}

int parse_int(const char* text, const char* flag) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v < 1 || v > 1 << 20) {
    fail(std::string(flag) + ": expected a positive integer, got '" + text + "'");
  }
  return static_cast<int>(v);
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  bool run_generation = true, run_perplexity = true, run_capacity = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&] {
      if (i + 1 >= argc) fail(a + " needs a value");
      return argv[++i];
    };
    if (a == "--model") {
      o.model = value();
    } else if (a == "--text") {
      o.text = value();
    } else if (a == "--threads") {
      o.threads = parse_int(value(), "--threads");
    } else if (a == "--gen") {
      o.gen = parse_int(value(), "--gen");
    } else if (a == "--ppl-tokens") {
      o.ppl_tokens = parse_int(value(), "--ppl-tokens");
    } else if (a == "--window") {
      o.window = parse_int(value(), "--window");
    } else if (a == "--block-size") {
      o.block_size = parse_int(value(), "--block-size");
    } else if (a == "--no-verify") {
      o.verify = false;
    } else if (a == "--capacity-mib") {
      o.capacity_mib = parse_int(value(), "--capacity-mib");
    } else if (a == "--only-generation") {
      run_perplexity = run_capacity = false;
    } else if (a == "--only-perplexity") {
      run_generation = run_capacity = false;
    } else if (a == "--only-capacity") {
      run_generation = run_perplexity = false;
    } else {
      std::fprintf(
          stderr,
          "usage: kv_dtype_accuracy [--model PATH] [--threads N] [--gen N] "
          "[--ppl-tokens N] [--window W] [--text PATH] [--block-size B] [--no-verify] "
          "[--capacity-mib M] [--only-generation | --only-perplexity | --only-capacity]\n");
      return a == "--help" ? 0 : 2;
    }
  }
  if (o.model.empty()) {
    auto found = find_default_model(argc > 0 ? argv[0] : "");
    if (!found) fail(found.error().message());
    o.model = found.value();
  }
  const auto start = clock_type::now();
  auto loaded = load_model(o.model, load_format::kAuto);
  if (!loaded) fail(loaded.error().message());
  const loaded_model& m = loaded.value();
  if (!m.tokenizer) fail("the model has no tokenizer");
  std::string model_name = o.model.substr(o.model.find_last_of('/') + 1);
  std::printf("## KV cache dtype accuracy: %s on the CPU backend\n\n", model_name.c_str());
  std::printf("Block size %d, %d threads. KV bytes per token:", o.block_size,
              o.threads > 0 ? o.threads : static_cast<int>(std::thread::hardware_concurrency()));
  for (kv_cache_dtype dtype : kDtypes) {
    std::printf(" %s %zu%s", to_string(dtype), cpu_kv_bytes_per_token(m.config, dtype),
                dtype == kv_cache_dtype::kInt8 ? ".\n" : ",");
  }
  if (run_capacity) capacity(m, o);
  if (run_generation) generation_accuracy(m, o);
  if (run_perplexity) perplexity(m, o);
  std::fprintf(stderr, "total %.1f s\n", seconds_since(start));
  return 0;
}
