#include "net/tokenizer_codec.hpp"

namespace kvserve::net {

text_codec make_text_codec(const tokenizer& tok, const chat_template* chat) {
  text_codec codec;
  codec.encode = [&tok](const std::string& text, bool add_special_tokens) {
    return tok.encode(text, add_special_tokens);
  };
  codec.decode = [&tok](const std::vector<std::int32_t>& ids) {
    return tok.decode(ids, /*skip_special_tokens=*/true);
  };
  // As vLLM shows logprob tokens: the decoded text of the single token (an incomplete UTF-8
  // piece becomes U+FFFD).
  codec.token_text = [&tok](std::int32_t id) {
    std::int32_t one[1] = {id};
    return tok.decode(one, /*skip_special_tokens=*/false);
  };
  if (chat) {
    codec.render_chat = [chat](const std::vector<chat_message>& messages, bool gen) {
      return chat->apply(messages, gen);
    };
  }
  return codec;
}

}  // namespace kvserve::net
