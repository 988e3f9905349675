#include "actors/observer.hpp"

namespace kvserve {

const char* to_string(step_kind kind) {
  switch (kind) {
    case step_kind::kPrefill:
      return "prefill";
    case step_kind::kDecode:
      return "decode";
    case step_kind::kMixed:
      return "mixed";
  }
  return "unknown";
}

}  // namespace kvserve
