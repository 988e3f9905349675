// libFuzzer target: the Hugging Face tokenizer reader (tokenizer.json, tokenizer_config.json).
// The input is tokenizer.json, optionally followed by two NUL bytes and tokenizer_config.json.
// Any bytes must give a spec or an error; an accepted spec must make a tokenizer or an error,
// and that tokenizer must encode and decode without crashing, ids in range.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "model/hf_tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string_view config;
  if (const auto sep = input.find(std::string_view("\0\0", 2)); sep != std::string_view::npos) {
    config = input.substr(sep + 2);
    input = input.substr(0, sep);
  }
  auto info = kvserve::hf_tokenizer_from_json(input, config, "fuzz");
  if (!info) return 0;
  auto tok = kvserve::tokenizer::create(info->spec);
  if (!tok) return 0;
  const auto ids = (*tok)->encode("Hello wörld 12345 <|eot_id|>\n\t x\xff", true);
  for (std::int32_t id : ids) {
    if (id < 0 || id >= (*tok)->vocab_size()) std::abort();
  }
  (void)(*tok)->decode(ids, true);
  (void)(*tok)->decode(ids, false);
  return 0;
}
