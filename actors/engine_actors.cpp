// Wiring of the engine's long-lived actors: config checks, message types, spawning.

#include <memory>
#include <utility>

#include "actors/protocol.hpp"
#include "actors/stats_board.hpp"
#include "actors/step_allocator.hpp"
#include "cache/eviction_policy.hpp"

namespace kvserve {

void add_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<error_info>("kvserve::error_info");
  cfg.add_message_type<status>("kvserve::status");
  cfg.add_message_type<sampling_params>("kvserve::sampling_params");
  cfg.add_message_type<stop_criteria>("kvserve::stop_criteria");
  cfg.add_message_type<sequence_submission>("kvserve::sequence_submission");
  cfg.add_message_type<token_logprob>("kvserve::token_logprob");
  cfg.add_message_type<position_logprobs>("kvserve::position_logprobs");
  cfg.add_message_type<token_delta>("kvserve::token_delta");
  cfg.add_message_type<token_batch>("kvserve::token_batch");
  cfg.add_message_type<sequence_step>("kvserve::sequence_step");
  cfg.add_message_type<step_plan>("kvserve::step_plan");
  cfg.add_message_type<sequence_result>("kvserve::sequence_result");
  cfg.add_message_type<step_result>("kvserve::step_result");
  cfg.add_message_type<worker_outcome>("kvserve::worker_outcome");
  cfg.add_message_type<block_request>("kvserve::block_request");
  cfg.add_message_type<block_commit>("kvserve::block_commit");
  cfg.add_message_type<cache_step_request>("kvserve::cache_step_request");
  cfg.add_message_type<block_grant>("kvserve::block_grant");
  cfg.add_message_type<cache_stats_snapshot>("kvserve::cache_stats_snapshot");
  cfg.add_message_type<cache_step_reply>("kvserve::cache_step_reply");
  cfg.add_message_type<engine_stats>("kvserve::engine_stats");
}

namespace {
status invalid(std::string message) { return {status_code::kInvalidArgument, std::move(message)}; }
}  // namespace

result<scheduler_config> make_scheduler_config(const engine_config& config,
                                               const backend& model_backend) {
  scheduler_config sc;
  const int bs = config.block_size;
  if (bs != 2 && bs != 4 && bs != 8 && bs != 16 && bs != 32 && bs != 64) {
    return invalid("block size " + std::to_string(config.block_size) +
                   " is not one of 2, 4, 8, 16, 32, 64");
  }
  if (model_backend.block_size() != config.block_size) {
    return invalid("the backend was built for block size " +
                   std::to_string(model_backend.block_size()) + ", the engine for " +
                   std::to_string(config.block_size));
  }
  if (model_backend.num_kv_blocks() <= 0) return invalid("the backend has no KV blocks");
  const int model_len = model_backend.config().max_position_embeddings;
  if (config.max_model_len < 0 || config.max_model_len > model_len) {
    return invalid("max_model_len " + std::to_string(config.max_model_len) +
                   " exceeds the model's context of " + std::to_string(model_len));
  }
  if (config.max_num_seqs < 1) return invalid("max_num_seqs must be at least 1");
  if (config.max_num_batched_tokens < 1) return invalid("max_num_batched_tokens must be >= 1");
  if (config.max_waiting_requests < 1) return invalid("max_waiting_requests must be >= 1");
  if (config.scheduling_policy == "fcfs") {
    sc.policy = scheduling_policy::kFcfs;
  } else if (config.scheduling_policy == "lpm") {
    sc.policy = scheduling_policy::kLpm;
  } else {
    return invalid("scheduling policy \"" + config.scheduling_policy + "\" is not fcfs or lpm");
  }
  if (!parse_eviction_policy(config.eviction_policy)) {
    return invalid("eviction policy \"" + config.eviction_policy +
                   "\" is not dependent-lru, dependent-lfu or lru-any");
  }
  sc.block_size = config.block_size;
  sc.num_blocks = model_backend.num_kv_blocks();
  sc.vocab_size = model_backend.config().vocab_size;
  sc.max_model_len = config.max_model_len > 0 ? config.max_model_len : model_len;
  sc.max_num_seqs = config.max_num_seqs;
  sc.max_num_batched_tokens = config.max_num_batched_tokens;
  sc.max_waiting_requests = config.max_waiting_requests;
  sc.lpm_age_bound = config.lpm_age_bound;
  sc.no_kv_cache = config.no_kv_cache;
  sc.enable_prefix_caching = config.enable_prefix_caching && !config.no_kv_cache;
  sc.prefix_commit_early = config.prefix_commit_early;
  sc.async_steps = async_steps_enabled(config, model_backend);
  return sc;
}

bool async_steps_enabled(const engine_config& config, const backend& model_backend) {
  if (config.no_kv_cache) return false;
  return config.async_scheduling == async_scheduling_mode::kOn ||
         (config.async_scheduling == async_scheduling_mode::kAuto && model_backend.queues_steps());
}

result<engine_actors> spawn_engine_actors(caf::actor_system& sys, const engine_config& config,
                                          std::unique_ptr<backend> model_backend,
                                          std::shared_ptr<observer> obs,
                                          std::shared_ptr<stats_board> board) {
  if (!model_backend) return invalid("no backend");
  auto sc = make_scheduler_config(config, *model_backend);
  if (!sc) return sc.error();
  kv_cache_config kc;
  kc.num_blocks = sc->num_blocks;
  kc.block_size = sc->block_size;
  kc.eviction_policy = *parse_eviction_policy(config.eviction_policy);
  kc.enable_prefix_caching = sc->enable_prefix_caching;
  auto allocator = step_allocator::create(kc);
  if (!allocator) return allocator.error();
  engine_actors actors;
  if (config.measure_actor_cpu) actors.cpu_meter = std::make_shared<actor_cpu_meter>();
  actors.cache_manager = spawn_cache_manager(
      sys, std::shared_ptr<step_allocator>(std::move(allocator.value())), actors.cpu_meter);
  actors.worker = spawn_worker(sys, std::make_shared<step_executor>(std::move(model_backend)),
                               actors.cpu_meter);
  actors.scheduler =
      spawn_scheduler(sys, std::move(sc.value()), actors.cache_manager, actors.worker,
                      std::move(obs), std::move(board), actors.cpu_meter);
  return actors;
}

}  // namespace kvserve
