#include "model/status.hpp"

namespace kvserve {

const char* to_string(status_code code) {
  switch (code) {
    case status_code::kOk:
      return "ok";
    case status_code::kInvalidArgument:
      return "invalid_argument";
    case status_code::kNotFound:
      return "not_found";
    case status_code::kUnsupported:
      return "unsupported";
    case status_code::kCorruptData:
      return "corrupt_data";
    case status_code::kOutOfMemory:
      return "out_of_memory";
    case status_code::kOverloaded:
      return "overloaded";
    case status_code::kCancelled:
      return "cancelled";
    case status_code::kDeadlineExceeded:
      return "deadline_exceeded";
    case status_code::kInternal:
      return "internal";
  }
  return "unknown";
}

}  // namespace kvserve
