/// The kvserve executable: subcommands generate, chat, serve and bench; flags as in DESIGN.md.

#include <CLI/CLI.hpp>
#include <cstdio>

#include "app/bench_command.hpp"
#include "app/chat_command.hpp"
#include "app/generate_command.hpp"
#include "app/serve_command.hpp"

int main(int argc, char** argv) {
  CLI::App app{"kvserve: an LLM inference server and engine built around KV-cache reuse"};
  app.require_subcommand(1);
  kvserve::add_generate_command(app);
  kvserve::add_chat_command(app);
  kvserve::add_serve_command(app);
  kvserve::add_bench_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::RuntimeError& done) {
    return done.get_exit_code();
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }
  return 0;
}
