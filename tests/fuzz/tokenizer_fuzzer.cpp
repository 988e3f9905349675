// libFuzzer target: the default model's tokenizer on arbitrary bytes. Encoding never fails;
// the raw pieces of the ids give back the input whenever no byte fell to UNK, and the
// streaming detokenizer emits exactly what decode() returns.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "model/gguf_file.hpp"
#include "model/gguf_loader.hpp"
#include "model/incremental_detokenizer.hpp"

namespace {
std::shared_ptr<const kvserve::tokenizer> g_tok;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* path = std::getenv("KVSERVE_MODEL");
  auto file = kvserve::gguf_file::open(path ? path : "models/SmolLM2-135M-Instruct.Q4_1.gguf");
  if (!file) std::abort();
  auto spec = kvserve::tokenizer_spec_from_gguf(*file);
  if (!spec) std::abort();
  auto tok = kvserve::tokenizer::create(*spec);
  if (!tok) std::abort();
  g_tok = *tok;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto ids = g_tok->encode(text, true);
  std::string raw;
  bool unk = false;
  for (std::int32_t id : ids) {
    if (id < 0 || id >= g_tok->vocab_size()) std::abort();
    unk |= id == 0;
    raw += g_tok->token_piece(id);
  }
  if (!unk && raw != text) std::abort();
  kvserve::incremental_detokenizer detok(g_tok, {"</s>", "\xF0\x9F"}, false);
  std::string streamed;
  for (std::int32_t id : ids) streamed += detok.push(id).text;
  streamed += detok.finish().text;
  if (!detok.stopped() && streamed != g_tok->decode(ids, false)) std::abort();
  return 0;
}
