#pragma once
namespace CLI {
class App;
}
namespace kvserve {
/// `kvserve serve`: the engine behind one port (WebSocket, OpenAI HTTP, /metrics, playground).
/// SIGTERM or SIGINT stop accepting, let in-flight generations finish for up to
/// --shutdown-grace seconds, cancel the rest, and exit 0.
void add_serve_command(CLI::App& app);
}  // namespace kvserve
