#pragma once
/// The engine flags of DESIGN.md's table, shared by every subcommand that runs the engine
/// (generate, chat, serve), and the wiring from flags to a running engine: load the model,
/// pick the backend (CPU or CUDA), size the KV pool, start the actors.

#include <cstdint>
#include <memory>
#include <string>

#include "actors/engine.hpp"
#include "model/status.hpp"

namespace CLI {
class App;
}

namespace kvserve {

struct engine_flags {
  std::string model;  ///< empty: the embedded default model
  std::string load_format = "auto";
  std::string device = "auto";
  int block_size = 16;
  double gpu_memory_utilization = 0.90;
  std::string kv_cache_memory = "1GiB";
  std::string kv_cache_dtype = "auto";
  int max_model_len = 0;
  int max_num_seqs = 0;  ///< 0: 256 on the GPU, 32 on the CPU
  int max_num_batched_tokens = 2048;
  int max_waiting_requests = 1024;
  bool no_enable_prefix_caching = false;
  std::string prefix_commit = "early";
  std::string eviction_policy = "dependent-lru";
  std::string scheduling_policy = "fcfs";
  bool no_kv_cache = false;
  std::string async_scheduling = "auto";  ///< auto|on|off
  bool enforce_eager = false;
  std::uint64_t seed = 0;
  int num_threads = 0;  ///< CPU backend threads; 0: all cores
  bool measure_actor_cpu = false;
};

/// Adds the engine flags to a subcommand, bound to `flags`.
void add_engine_flags(CLI::App& command, engine_flags& flags);

/// Parses sizes such as "1GiB", "512MiB", "64MB" or a plain number of bytes.
result<std::uint64_t> parse_byte_size(const std::string& text);

/// Loads the model, builds the backend the flags ask for and starts the engine. Logs what it
/// chose (backend, KV blocks and tokens that fit) to stderr. `chat_template_out`, when given,
/// receives the model's chat template (the server renders chat prompts for /tokenize with it).
result<std::unique_ptr<engine>> start_engine(
    const engine_flags& flags, std::shared_ptr<observer> engine_observer,
    std::shared_ptr<const chat_template>* chat_template_out = nullptr);

}  // namespace kvserve
