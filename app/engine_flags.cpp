#include "app/engine_flags.hpp"

#include <CLI/CLI.hpp>
#include <cctype>
#include <cstdio>

#include "model/cpu_backend.hpp"
#include "model/kv_capacity.hpp"
#include "model/model_loader.hpp"
#ifdef KVSERVE_HAVE_CUDA
#include "cuda/cuda_backend.hpp"
#endif

namespace kvserve {

void add_engine_flags(CLI::App& command, engine_flags& flags) {
  command.add_option("--model", flags.model,
                     "GGUF file or Hugging Face folder (default: the embedded SmolLM2 GGUF, or "
                     "$KVSERVE_MODEL)");
  command.add_option("--load-format", flags.load_format, "auto|gguf|safetensors|dummy")
      ->check(CLI::IsMember({"auto", "gguf", "safetensors", "dummy"}))
      ->capture_default_str();
  command.add_option("--device", flags.device, "auto|cpu|cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  command.add_option("--block-size", flags.block_size, "Tokens per KV block: 2, 4, 8, 16, 32, 64")
      ->check(CLI::IsMember({2, 4, 8, 16, 32, 64}))
      ->capture_default_str();
  command
      .add_option("--gpu-memory-utilization", flags.gpu_memory_utilization,
                  "Share of device memory for weights, workspace and KV")
      ->check(CLI::Range(0.05, 1.0))
      ->capture_default_str();
  command
      .add_option("--kv-cache-memory", flags.kv_cache_memory,
                  "KV pool size on the CPU backend, e.g. 1GiB or 256MiB")
      ->capture_default_str();
  command.add_option("--kv-cache-dtype", flags.kv_cache_dtype, "auto|bf16|fp8|int8")
      ->check(CLI::IsMember({"auto", "bf16", "fp8", "int8"}))
      ->capture_default_str();
  command
      .add_option("--max-model-len", flags.max_model_len,
                  "Longest prompt + output (default: the model's context)")
      ->check(CLI::Range(0, 1 << 24));
  command
      .add_option("--max-num-seqs", flags.max_num_seqs,
                  "Sequences per step (default: 256 on the GPU, 32 on the CPU)")
      ->check(CLI::Range(0, 4096));
  command
      .add_option("--max-num-batched-tokens", flags.max_num_batched_tokens,
                  "Tokens per step (chunked prefill budget)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  command
      .add_option("--max-waiting-requests", flags.max_waiting_requests,
                  "Waiting-queue bound; beyond it requests are rejected as overloaded")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  command.add_flag("--measure-actor-cpu", flags.measure_actor_cpu,
                   "Account each actor's CPU time (kvserve_actor_cpu_seconds_total)");
  command.add_flag("--no-enable-prefix-caching", flags.no_enable_prefix_caching,
                   "No prefix-cache lookups and no commits");
  command
      .add_option("--prefix-commit", flags.prefix_commit,
                  "early: commit full blocks at once; finish: only when a request ends")
      ->check(CLI::IsMember({"early", "finish"}))
      ->capture_default_str();
  command
      .add_option("--eviction-policy", flags.eviction_policy, "dependent-lru|dependent-lfu|lru-any")
      ->check(CLI::IsMember({"dependent-lru", "dependent-lfu", "lru-any"}))
      ->capture_default_str();
  command.add_option("--scheduling-policy", flags.scheduling_policy, "fcfs|lpm")
      ->check(CLI::IsMember({"fcfs", "lpm"}))
      ->capture_default_str();
  command.add_flag("--no-kv-cache", flags.no_kv_cache,
                   "Recompute the whole sequence every step and keep no KV (baseline)");
  command
      .add_option("--async-scheduling", flags.async_scheduling,
                  "Queue step N+1 on the device before step N's result is read (auto: on for "
                  "the GPU backend, off for the CPU one)")
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->capture_default_str();
  command.add_flag("--enforce-eager", flags.enforce_eager, "No CUDA graphs");
  command.add_option("--seed", flags.seed, "Default sampling seed")->capture_default_str();
  command.add_option("--num-threads", flags.num_threads, "CPU backend threads (0: all cores)")
      ->check(CLI::Range(0, 1024));
}

result<std::uint64_t> parse_byte_size(const std::string& text) {
  std::size_t digits = 0;
  while (digits < text.size() &&
         (std::isdigit(static_cast<unsigned char>(text[digits])) || text[digits] == '.')) {
    ++digits;
  }
  if (digits == 0) return status(status_code::kInvalidArgument, "not a size: '" + text + "'");
  double value = 0;
  try {
    value = std::stod(text.substr(0, digits));
  } catch (...) {
    return status(status_code::kInvalidArgument, "not a size: '" + text + "'");
  }
  std::string unit = text.substr(digits);
  for (auto& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  double scale = 0;
  if (unit.empty() || unit == "b")
    scale = 1;
  else if (unit == "kib" || unit == "k")
    scale = 1024.0;
  else if (unit == "mib" || unit == "m")
    scale = 1024.0 * 1024;
  else if (unit == "gib" || unit == "g")
    scale = 1024.0 * 1024 * 1024;
  else if (unit == "kb")
    scale = 1e3;
  else if (unit == "mb")
    scale = 1e6;
  else if (unit == "gb")
    scale = 1e9;
  else
    return status(status_code::kInvalidArgument, "unknown size unit in '" + text + "'");
  return static_cast<std::uint64_t>(value * scale);
}

}  // namespace kvserve

namespace kvserve {
namespace {

bool want_cuda(const engine_flags& flags) {
#ifdef KVSERVE_HAVE_CUDA
  if (flags.device == "cuda") return true;
  if (flags.device == "auto") return cuda_device_available();
  return false;
#else
  return false;
#endif
}

engine_config make_engine_config(const engine_flags& flags, const model_config& model,
                                 bool on_gpu) {
  engine_config config;
  config.block_size = flags.block_size;
  config.max_model_len =
      flags.max_model_len > 0 ? flags.max_model_len : model.max_position_embeddings;
  config.max_num_seqs = flags.max_num_seqs > 0 ? flags.max_num_seqs : (on_gpu ? 256 : 32);
  config.max_num_batched_tokens = flags.max_num_batched_tokens;
  config.max_waiting_requests = flags.max_waiting_requests;
  config.enable_prefix_caching = !flags.no_enable_prefix_caching && !flags.no_kv_cache;
  config.prefix_commit_early = flags.prefix_commit == "early";
  config.eviction_policy = flags.eviction_policy;
  config.scheduling_policy = flags.scheduling_policy;
  config.no_kv_cache = flags.no_kv_cache;
  config.async_scheduling = flags.async_scheduling == "on"    ? async_scheduling_mode::kOn
                            : flags.async_scheduling == "off" ? async_scheduling_mode::kOff
                                                              : async_scheduling_mode::kAuto;
  config.seed = flags.seed;
  config.measure_actor_cpu = flags.measure_actor_cpu;
  return config;
}

}  // namespace

result<std::unique_ptr<engine>> start_engine(
    const engine_flags& flags, std::shared_ptr<observer> engine_observer,
    std::shared_ptr<const chat_template>* chat_template_out) {
  std::string path = flags.model;
  if (path.empty()) {
    auto found = find_default_model();
    if (!found) return found.error();
    path = found.value();
  }
  auto format = parse_load_format(flags.load_format);
  if (!format) return format.error();
  if (flags.device == "cuda" && !want_cuda(flags)) {
    return status(status_code::kUnsupported,
                  "--device cuda: no usable CUDA device (or kvserve was built without CUDA)");
  }
  auto kv_dtype = parse_kv_cache_dtype(flags.kv_cache_dtype);
  if (!kv_dtype) return kv_dtype.error();
  const bool on_gpu = want_cuda(flags);
  // `--load-format dummy` on the GPU: the CUDA backend draws its weights on the device, so only
  // config and tokenizer are read (a host fp32 copy of Llama-3-8B would take 32 GB).
  const bool dummy_on_device = on_gpu && format.value() == load_format::kDummy;
  auto loaded = dummy_on_device ? load_model_without_weights(path, format.value())
                                : load_model(path, format.value(), flags.seed);
  if (!loaded) return loaded.error();
  loaded_model& model = loaded.value();
  engine_config config = make_engine_config(flags, model.config, on_gpu);
  if (config.max_model_len > model.config.max_position_embeddings) {
    return status(status_code::kInvalidArgument,
                  "--max-model-len " + std::to_string(config.max_model_len) +
                      " exceeds the model's context of " +
                      std::to_string(model.config.max_position_embeddings) + " tokens");
  }

  std::unique_ptr<backend> chosen;
  if (on_gpu) {
#ifdef KVSERVE_HAVE_CUDA
    cuda_backend_config cuda_config;
    cuda_config.block_size = flags.block_size;
    cuda_config.gpu_memory_utilization = flags.gpu_memory_utilization;
    cuda_config.max_num_seqs = config.max_num_seqs;
    cuda_config.max_model_len = config.max_model_len;
    cuda_config.max_num_batched_tokens = flags.max_num_batched_tokens;
    cuda_config.enforce_eager = flags.enforce_eager;
    cuda_config.kv_dtype = kv_dtype.value();
    auto made = dummy_on_device ? make_cuda_backend_dummy(cuda_config, model.config, flags.seed)
                                : make_cuda_backend(cuda_config, model.config, model.weights);
    if (!made) return made.error();
    chosen = std::move(made.value());
#endif
  } else {
    auto kv_bytes = parse_byte_size(flags.kv_cache_memory);
    if (!kv_bytes) return kv_bytes.error();
    cpu_backend_config cpu_config;
    cpu_config.block_size = flags.block_size;
    cpu_config.num_threads = flags.num_threads;
    cpu_config.kv_dtype = kv_dtype.value();
    cpu_config.num_kv_blocks = cpu_kv_blocks_for_memory(model.config, flags.block_size,
                                                        kv_bytes.value(), cpu_config.kv_dtype);
    if (cpu_config.num_kv_blocks <= 0) {
      return status(status_code::kInvalidArgument,
                    "--kv-cache-memory " + flags.kv_cache_memory + " holds no KV block");
    }
    auto made = cpu_backend::create(cpu_config, model.config, std::move(model.weights));
    if (!made) return made.error();
    chosen = std::move(made.value());
  }
  // The KV memory budget (issue 10): bytes per token with its factors, blocks, tokens and
  // concurrent sequences per context; the engine hands the same numbers to the observer.
  std::fprintf(stderr,
               "kvserve: model %s (%d layers, hidden %d, %d heads / %d KV heads), backend %s, "
               "asynchronous steps %s\n",
               path.c_str(), model.config.num_layers, model.config.hidden_size,
               model.config.num_heads, model.config.num_kv_heads, chosen->name().c_str(),
               async_steps_enabled(config, *chosen) ? "on" : "off");
  {
    const std::string budget =
        format_kv_capacity(describe_kv_capacity(*chosen, config.max_model_len));
    for (std::size_t at = 0; at != std::string::npos;) {
      const std::size_t end = budget.find('\n', at);
      std::fprintf(stderr, "kvserve: %s\n", budget.substr(at, end - at).c_str());
      at = end == std::string::npos ? end : end + 1;
    }
  }

  if (chat_template_out != nullptr) *chat_template_out = model.chat_template;
  engine_parts parts;
  parts.model_backend = std::move(chosen);
  parts.model_tokenizer = model.tokenizer;
  parts.model_chat_template = model.chat_template;
  parts.engine_observer = std::move(engine_observer);
  return make_engine(config, std::move(parts));
}

}  // namespace kvserve
