#pragma once
/// The server's text services (server_config::codec) backed by the model's tokenizer.

#include <memory>

#include "model/chat_template.hpp"
#include "model/tokenizer.hpp"
#include "net/server.hpp"

namespace kvserve::net {

/// encode/decode/token_text from `tok`; render_chat from `chat` when given. `tok` (and `chat`)
/// must outlive the codec.
text_codec make_text_codec(const tokenizer& tok, const chat_template* chat = nullptr);

}  // namespace kvserve::net
