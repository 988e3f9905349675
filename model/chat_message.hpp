#pragma once
#include <string>

namespace kvserve {

/// One turn of a conversation: role is "system", "user" or "assistant".
struct chat_message {
  std::string role;
  std::string content;
};

}  // namespace kvserve
