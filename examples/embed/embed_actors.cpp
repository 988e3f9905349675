// Embedding kvserve through its actor protocol (actors/protocol.hpp), for programs that use
// CAF themselves: spawn the engine's actors in your own actor system and talk to the
// scheduler directly from a scoped_actor acting as the sequence client.
//
//   embed_actors [MODEL]     (default: models/SmolLM2-135M-Instruct.Q4_1.gguf)

#include <chrono>
#include <iostream>
#include <string>

#include "actors/protocol.hpp"
#include "model/cpu_backend.hpp"
#include "model/model_loader.hpp"

int main(int argc, char** argv) {
  using namespace kvserve;
  auto path = argc > 1 ? result<std::string>(std::string(argv[1])) : find_default_model(argv[0]);
  if (!path) {
    std::cerr << path.error().message() << "\n";
    return 1;
  }
  auto model = load_model(path.value(), load_format::kAuto);
  if (!model) {
    std::cerr << model.error().message() << "\n";
    return 1;
  }
  engine_config config;
  cpu_backend_config backend_config;
  backend_config.block_size = config.block_size;
  backend_config.num_kv_blocks =
      cpu_kv_blocks_for_memory(model->config, config.block_size, 128u << 20);
  auto backend = cpu_backend::create(backend_config, model->config, std::move(model->weights));
  if (!backend) {
    std::cerr << backend.error().message() << "\n";
    return 1;
  }

  caf::actor_system_config cfg;
  add_message_types(cfg);
  caf::actor_system sys{cfg};
  auto actors = spawn_engine_actors(sys, config, std::move(backend.value()), nullptr, nullptr);
  if (!actors) {
    std::cerr << actors.error().message() << "\n";
    return 1;
  }

  // The client tokenises itself: the scheduler takes token ids.
  const auto& tok = *model->tokenizer;
  sequence_submission sub;
  sub.id = 1;
  sub.prompt = tok.encode(
      model->chat_template->apply({{"user", "Write a haiku about caches."}}, true), false);
  sub.sampling.temperature = 0.0f;
  sub.stop.max_tokens = 48;
  sub.stop.eos_token_ids = tok.stop_token_ids();

  caf::scoped_actor self{sys};
  self->send(actors->scheduler, submit_atom::value, sub,
             caf::actor_cast<sequence_client_actor>(self));
  std::vector<std::int32_t> output;
  bool done = false;
  int status_code = 0;
  while (!done) {
    self->receive(
        [&](accepted_atom, request_id, std::int32_t prompt_tokens, std::int32_t cached) {
          std::cout << "[accepted: " << prompt_tokens << " prompt tokens, " << cached
                    << " cached]\n";
        },
        [&](tokens_atom, const token_delta& delta) {
          output.insert(output.end(), delta.tokens.begin(), delta.tokens.end());
        },
        [&](finished_atom, request_id, const std::string& reason, const std::string&) {
          std::cout << tok.decode(output, true) << "\n[finished: " << reason << "]\n";
          done = true;
        },
        [&](failed_atom, request_id, const error_info& error) {
          std::cerr << "failed: " << error.message << "\n";
          status_code = 1;
          done = true;
        });
  }
  self->request(actors->scheduler, std::chrono::seconds(10), stats_atom::value)
      .receive(
          [&](const engine_stats& s) {
            std::cout << "locked blocks: " << s.num_blocks_locked
                      << ", cached blocks: " << s.num_blocks_cached << "\n";
          },
          [&](const caf::error& e) { std::cerr << sys.render(e) << "\n"; });
  self->send_exit(actors->scheduler, caf::exit_reason::user_shutdown);
  self->send_exit(actors->cache_manager, caf::exit_reason::user_shutdown);
  self->send_exit(actors->worker, caf::exit_reason::user_shutdown);
  return status_code;
}
