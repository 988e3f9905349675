#pragma once
/// How the kvserve executable reports a failure: one line on stderr, a non-zero exit code.

#include <cstdio>
#include <string>

#include "model/status.hpp"

namespace kvserve {

inline int fail_with(const std::string& message) {
  std::fprintf(stderr, "kvserve: error: %s\n", message.c_str());
  return 1;
}

inline int fail_with(const status& error) {
  return fail_with(std::string(to_string(error.code())) + ": " + error.message());
}

}  // namespace kvserve
