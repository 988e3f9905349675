#include "app/chat_command.hpp"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "app/engine_flags.hpp"
#include "app/exit_codes.hpp"
#include "app/sampling_flags.hpp"
#include "app/terminal_stream.hpp"

namespace kvserve {
namespace {

struct chat_options {
  engine_flags engine;
  sampling_flags sampling;
  std::string system;
};

int run_chat(const chat_options& options) {
  auto started = start_engine(options.engine, nullptr);
  if (!started) return fail_with(started.error());
  engine& eng = *started.value();

  std::vector<chat_message> history;
  if (!options.system.empty()) history.push_back({"system", options.system});
  std::fprintf(stderr, "kvserve chat: type a message and press Enter; end with Ctrl-D\n");
  std::string line;
  int exit_code = 0;
  for (;;) {
    std::fputs("> ", stderr);
    std::fflush(stderr);
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    history.push_back({"user", line});
    generate_request request;
    request.prompt = history;
    apply_sampling_flags(options.sampling, request);
    auto answer = stream_to_terminal(eng, std::move(request), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    if (!answer) {
      exit_code = fail_with(answer.error());
      history.pop_back();
      continue;
    }
    history.push_back({"assistant", answer.value().text});
  }
  eng.shutdown(std::chrono::milliseconds(0));
  return exit_code;
}

}  // namespace

void add_chat_command(CLI::App& app) {
  auto options = std::make_shared<chat_options>();
  auto* command = app.add_subcommand("chat", "Chat in the terminal: one line in, answer out");
  command->add_option("--system", options->system, "System prompt");
  add_sampling_flags(*command, options->sampling);
  add_engine_flags(*command, options->engine);
  command->callback([options] { throw CLI::RuntimeError(run_chat(*options)); });
}

}  // namespace kvserve
