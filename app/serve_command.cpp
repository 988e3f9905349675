#include "app/serve_command.hpp"

#include <pthread.h>
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include "app/engine_flags.hpp"
#include "app/exit_codes.hpp"
#include "monitoring/prometheus_observer.hpp"
#include "net/server.hpp"
#include "net/tokenizer_codec.hpp"

namespace kvserve {
namespace {

struct serve_options {
  engine_flags engine;
  server_config server;
  int port = 8000;
  double shutdown_grace_seconds = 10;
};

int run_serve(serve_options options) {
  // Block the stop signals before any thread starts, so that every engine and I/O thread
  // inherits the mask and only sigwait() below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto metrics = std::make_shared<prometheus_observer>();
  std::shared_ptr<const chat_template> chat;
  auto started = start_engine(options.engine, metrics, &chat);
  if (!started) return fail_with(started.error());
  engine& eng = *started.value();

  server_config& config = options.server;
  config.port = static_cast<std::uint16_t>(options.port);
  config.metrics_text = [metrics, &eng] {
    metrics->on_stats(eng.stats());  // fresh gauges even while the engine is idle
    return metrics->render();
  };
  config.codec = net::make_text_codec(eng.get_tokenizer(), chat.get());
  server srv(config, eng);
  if (status st = srv.start(); !st) {
    eng.shutdown(std::chrono::milliseconds{0});
    return fail_with(st);
  }
  std::fprintf(stderr,
               "kvserve: serving %s on http://%s:%u (playground: http://%s:%u/, WebSocket "
               "ws://%s:%u/v1/ws, OpenAI API http://%s:%u/v1)\n",
               eng.model().name.c_str(), config.host.c_str(), srv.port(), config.host.c_str(),
               srv.port(), config.host.c_str(), srv.port(), config.host.c_str(), srv.port());
  std::fflush(stderr);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::fprintf(stderr, "kvserve: %s: no new connections; finishing %d in-flight generations\n",
               signal_number == SIGTERM ? "SIGTERM" : "SIGINT", srv.num_active_generations());
  auto grace =
      std::chrono::milliseconds(static_cast<std::int64_t>(options.shutdown_grace_seconds * 1000));
  srv.stop_accepting();
  srv.stop(grace);  // waits up to `grace`, then cancels what still runs and closes sockets
  eng.shutdown(std::chrono::milliseconds{0});
  std::fprintf(stderr, "kvserve: stopped\n");
  return 0;
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto options = std::make_shared<serve_options>();
  auto* command = app.add_subcommand(
      "serve",
      "Serve the engine: WebSocket streaming, OpenAI-compatible HTTP, /metrics and "
      "the playground page at /");
  server_config& s = options->server;
  server_limits& l = s.limits;
  command->add_option("--host", s.host, "Address to listen on")->capture_default_str();
  command->add_option("--port", options->port, "Port (0: any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  command->add_option("--api-key", s.api_key,
                      "Require 'Authorization: Bearer KEY' on every endpoint but / and /health");
  command->add_option("--served-model-name", s.served_model_name,
                      "Model name in the OpenAI API (default: the model's own)");
  command->add_option("--server-threads", s.num_threads, "I/O threads")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  command->add_option("--max-connections", l.max_connections, "Open connections at most")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  command->add_option("--max-request-bytes", l.max_request_bytes, "Largest HTTP request body")
      ->check(CLI::Range(1024, 1 << 30))
      ->capture_default_str();
  command->add_option("--max-frame-bytes", l.max_frame_bytes, "Largest WebSocket message")
      ->check(CLI::Range(1024, 1 << 30))
      ->capture_default_str();
  command
      ->add_option("--max-streams-per-connection", l.max_streams_per_connection,
                   "Concurrent generations on one WebSocket")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  command
      ->add_option("--shutdown-grace", options->shutdown_grace_seconds,
                   "Seconds in-flight generations may finish after SIGTERM before they "
                   "are cancelled")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  add_engine_flags(*command, options->engine);
  command->callback([options] { throw CLI::RuntimeError(run_serve(*options)); });
}

}  // namespace kvserve
