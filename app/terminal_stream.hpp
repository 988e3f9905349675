#pragma once
/// Runs one request on the engine and streams its text to a terminal as it is produced.

#include <cstdio>
#include <string>

#include "actors/engine.hpp"

namespace kvserve {

/// What a streamed request produced.
struct terminal_answer {
  std::string text;
  finished_event finished;
};

/// Submits `request`, writes every text delta to `out` at once (flushed), and returns the
/// whole answer, or the error the engine reported.
result<terminal_answer> stream_to_terminal(engine& eng, generate_request request, std::FILE* out);

}  // namespace kvserve
