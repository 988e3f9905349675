// Embedding kvserve through actors/engine.hpp (no CAF in sight): load a model, build the CPU
// backend, create an engine, then stream one chat request by pulling events and run three
// requests at once through callbacks.
//
//   embed_engine [MODEL]     (default: models/SmolLM2-135M-Instruct.Q4_1.gguf)

#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>

#include "actors/engine.hpp"
#include "model/cpu_backend.hpp"
#include "model/model_loader.hpp"

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  auto path = argc > 1 ? kvserve::result<std::string>(std::string(argv[1]))
                       : kvserve::find_default_model(argv[0]);
  if (!path) {
    std::cerr << path.error().message() << "\n";
    return 1;
  }
  auto model = kvserve::load_model(path.value(), kvserve::load_format::kAuto);
  if (!model) {
    std::cerr << "cannot load " << path.value() << ": " << model.error().message() << "\n";
    return 1;
  }
  kvserve::engine_config config;  // block size 16, fcfs, prefix caching on
  kvserve::cpu_backend_config backend_config;
  backend_config.block_size = config.block_size;
  backend_config.num_kv_blocks =
      kvserve::cpu_kv_blocks_for_memory(model->config, config.block_size, 256u << 20);
  auto backend =
      kvserve::cpu_backend::create(backend_config, model->config, std::move(model->weights));
  if (!backend) {
    std::cerr << backend.error().message() << "\n";
    return 1;
  }
  kvserve::engine_parts parts;
  parts.model_backend = std::move(backend.value());
  parts.model_tokenizer = model->tokenizer;
  parts.model_chat_template = model->chat_template;
  auto engine = kvserve::make_engine(config, std::move(parts));
  if (!engine) {
    std::cerr << engine.error().message() << "\n";
    return 1;
  }

  // 1. Pull form: one chat request, streamed to stdout.
  kvserve::generate_request request;
  request.prompt = std::vector<kvserve::chat_message>{{"user", "What is the capital of France?"}};
  request.max_tokens = 40;
  request.sampling.temperature = 0.0f;
  auto stream = (*engine)->submit(request);
  while (auto event = stream->next(120s)) {
    if (auto* t = std::get_if<kvserve::token_event>(&*event)) {
      std::cout << t->text << std::flush;
    } else if (auto* f = std::get_if<kvserve::finished_event>(&*event)) {
      std::cout << "\n[finished: " << f->finish_reason << ", " << f->usage.completion_tokens
                << " tokens]\n";
    } else if (auto* e = std::get_if<kvserve::error_event>(&*event)) {
      std::cerr << "error: " << e->error.message() << "\n";
    }
  }

  // 2. Callback form: three requests share the system prompt; the later ones reuse its KV.
  std::mutex mu;
  std::atomic<int> done{0};
  const char* questions[] = {"Name a colour.", "Name a fruit.", "Name an animal."};
  for (const char* q : questions) {
    kvserve::generate_request r;
    r.prompt = std::vector<kvserve::chat_message>{
        {"system", "You are a terse assistant. Answer with one word."}, {"user", q}};
    r.max_tokens = 8;
    r.sampling.temperature = 0.0f;
    (*engine)->submit(r, [&, q](kvserve::request_id id, const kvserve::generation_event& e) {
      std::lock_guard<std::mutex> lock(mu);
      if (auto* a = std::get_if<kvserve::accepted_event>(&e)) {
        std::cout << "request " << id << " (" << q << "): " << a->cached_prompt_tokens << " of "
                  << a->prompt_tokens << " prompt tokens cached\n";
      } else if (auto* f = std::get_if<kvserve::finished_event>(&e)) {
        std::cout << "request " << id << " finished: " << f->finish_reason << "\n";
        ++done;
      } else if (std::holds_alternative<kvserve::error_event>(e)) {
        ++done;
      }
    });
  }
  (*engine)->shutdown(120s);  // waits for the three to finish
  const kvserve::engine_stats stats = (*engine)->stats();
  std::cout << "prefix cache hits: " << stats.prefix_cache_hits_tokens << " of "
            << stats.prefix_cache_queries_tokens << " prompt tokens; locked blocks now "
            << stats.num_blocks_locked << "\n";
  return done == 3 ? 0 : 1;
}
