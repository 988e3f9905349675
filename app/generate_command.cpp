#include "app/generate_command.hpp"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

#include "app/engine_flags.hpp"
#include "app/exit_codes.hpp"
#include "app/sampling_flags.hpp"
#include "app/terminal_stream.hpp"

namespace kvserve {
namespace {

struct generate_options {
  engine_flags engine;
  sampling_flags sampling;
  std::string prompt;
  std::string system;
  bool raw = false;
};

int run_generate(const generate_options& options) {
  if (options.prompt.empty()) return fail_with("the prompt is empty (--prompt TEXT)");
  auto started = start_engine(options.engine, nullptr);
  if (!started) return fail_with(started.error());
  engine& eng = *started.value();

  generate_request request;
  if (options.raw) {
    request.prompt = options.system.empty() ? options.prompt : options.system + options.prompt;
  } else {
    std::vector<chat_message> messages;
    if (!options.system.empty()) messages.push_back({"system", options.system});
    messages.push_back({"user", options.prompt});
    request.prompt = std::move(messages);
  }
  apply_sampling_flags(options.sampling, request);
  auto answer = stream_to_terminal(eng, std::move(request), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  eng.shutdown(std::chrono::milliseconds(0));
  if (!answer) return fail_with(answer.error());
  return 0;
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto options = std::make_shared<generate_options>();
  auto* command = app.add_subcommand("generate", "Generate an answer to one prompt on stdout");
  command->add_option("--prompt", options->prompt, "The user's message")->required();
  command->add_option("--system", options->system, "System prompt");
  command->add_flag("--raw", options->raw, "Send the prompt as plain text, without chat template");
  add_sampling_flags(*command, options->sampling);
  add_engine_flags(*command, options->engine);
  command->callback([options] { throw CLI::RuntimeError(run_generate(*options)); });
}

}  // namespace kvserve
