#include "app/terminal_stream.hpp"

#include <chrono>
#include <type_traits>

namespace kvserve {

result<terminal_answer> stream_to_terminal(engine& eng, generate_request request, std::FILE* out) {
  auto stream = eng.submit(std::move(request));
  terminal_answer answer;
  for (;;) {
    auto event = stream->next(std::chrono::milliseconds(1000));
    if (!event) continue;  // still running
    bool done = false;
    status failure;
    std::visit(
        [&](const auto& e) {
          using event_type = std::decay_t<decltype(e)>;
          if constexpr (std::is_same_v<event_type, token_event>) {
            answer.text += e.text;
            std::fwrite(e.text.data(), 1, e.text.size(), out);
            std::fflush(out);
          } else if constexpr (std::is_same_v<event_type, finished_event>) {
            answer.finished = e;
            done = true;
          } else if constexpr (std::is_same_v<event_type, error_event>) {
            failure = e.error;
            done = true;
          }
        },
        *event);
    if (!failure.is_ok()) return failure;
    if (done) return answer;
  }
}

}  // namespace kvserve
