// libFuzzer target: the default model's tokenizer (built once) on arbitrary bytes. Checks:
// every id is in range; unless the input holds a byte the vocabulary lacks (SmolLM2 has no
// token for 21 bytes, e.g. 0x04, 0xC0, 0xF5-0xFF: they become UNK), the raw pieces of the ids
// give back the input exactly and decode() is the input with invalid UTF-8 replaced (HF's lossy
// decoding); the incremental detokenizer streams
// exactly decode()'s text, with and without special tokens, and stops right before the first
// occurrence of a stop string taken from the input.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "model/gguf_file.hpp"
#include "model/gguf_loader.hpp"
#include "model/incremental_detokenizer.hpp"
#include "model/utf8.hpp"

namespace {

std::shared_ptr<const kvserve::tokenizer> g_tok;
std::array<bool, 256> g_byte_known{};  // the byte encodes to a token of its own

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "tokenizer_fuzzer: property violated: %s\n", what);
    std::abort();
  }
}

std::string stream(const std::vector<std::int32_t>& ids, std::vector<std::string> stops,
                   bool skip_special, bool& stopped) {
  kvserve::incremental_detokenizer detok(g_tok, std::move(stops), skip_special);
  std::string out;
  for (std::int32_t id : ids) out += detok.push(id).text;
  out += detok.finish().text;
  check(out == detok.text(), "streamed deltas == text()");
  stopped = detok.stopped();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* path = std::getenv("KVSERVE_MODEL");
  auto file = kvserve::gguf_file::open(path ? path : "models/SmolLM2-135M-Instruct.Q4_1.gguf");
  if (!file) {
    std::fprintf(stderr, "tokenizer_fuzzer: %s\n", file.error().message().c_str());
    std::abort();
  }
  auto spec = kvserve::tokenizer_spec_from_gguf(*file);
  if (!spec) std::abort();
  auto tok = kvserve::tokenizer::create(*spec);
  if (!tok) std::abort();
  g_tok = *tok;
  for (int b = 0; b < 256; ++b) {
    const std::string one(1, static_cast<char>(b));
    const auto ids = g_tok->encode(one, false);
    g_byte_known[static_cast<std::size_t>(b)] =
        ids.size() == 1 && g_tok->token_piece(ids[0]) == one;
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto ids = g_tok->encode(text, false);
  std::string raw;
  for (std::int32_t id : ids) {
    check(id >= 0 && id < g_tok->vocab_size(), "id in range");
    raw += g_tok->token_piece(id);
  }
  bool all_known = true;
  for (unsigned char ch : text) all_known &= g_byte_known[ch];
  const std::string full = g_tok->decode(ids, false);
  if (all_known) {
    check(raw == text, "pieces == input");
    check(full == kvserve::utf8_sanitize(text), "decode == lossy input");
  }

  bool stopped = false;
  check(stream(ids, {}, false, stopped) == full && !stopped, "stream == decode");
  check(stream(ids, {}, true, stopped) == g_tok->decode(ids, true) && !stopped,
        "stream == decode, skipping specials");

  // A stop string from the middle of the (lossy) text: the stream ends right before its first
  // occurrence.
  if (full.size() >= 2) {
    const std::size_t at = full.size() / 2, len = 1 + full.size() % 3;
    const std::string stop = full.substr(at, len);
    if (kvserve::utf8_sanitize(stop) == stop) {
      const std::string out = stream(ids, {stop, ""}, false, stopped);
      check(stopped, "stop string found");
      check(out == full.substr(0, full.find(stop)), "stream stops before the stop string");
    }
  }
  // An ill-formed stop string (half an emoji) matches bytes: only the stream's consistency.
  (void)stream(ids, {"\xF0\x9F"}, false, stopped);
  return 0;
}
