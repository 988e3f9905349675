#pragma once
namespace CLI {
class App;
}
namespace kvserve {
/// `kvserve generate`: one prompt in, the streamed answer on stdout.
void add_generate_command(CLI::App& app);
}  // namespace kvserve
