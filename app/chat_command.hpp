#pragma once
namespace CLI {
class App;
}
namespace kvserve {
/// `kvserve chat`: a terminal chat; one line in, the streamed answer out, history kept.
void add_chat_command(CLI::App& app);
}  // namespace kvserve
