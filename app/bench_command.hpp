#pragma once
/// `kvserve bench serve`: the serving benchmark (bench/serve/) as a subcommand.

namespace CLI {
class App;
}

namespace kvserve {

/// Adds `bench` with its subcommand `serve` to the application.
void add_bench_command(CLI::App& app);

}  // namespace kvserve
