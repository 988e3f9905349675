// libFuzzer target: the GGUF reader and everything the loader derives from a file (config,
// tokenizer spec, dequantised tensors) must turn any bytes into a value or an error.
#include <cstddef>
#include <cstdint>

#include "model/dequantize.hpp"
#include "model/gguf_file.hpp"
#include "model/gguf_loader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The default limits: what a user's file meets (the reader must bound its allocations by
  // the file's size, not by the limits alone).
  auto file = kvserve::gguf_file::parse({data, size}, "fuzz.gguf");
  if (!file) return 0;
  for (const auto& t : file->tensors()) {
    if (t.num_elements > (1u << 20)) continue;
    std::vector<float> out(t.num_elements);
    (void)kvserve::dequantize(t.type, file->tensor_bytes(t), out);
  }
  auto config = kvserve::model_config_from_gguf(*file);
  if (config && static_cast<std::uint64_t>(config->vocab_size) * config->hidden_size < (1u << 22) &&
      config->num_layers < 8) {
    (void)kvserve::load_gguf_weights(*file, *config);
  }
  auto spec = kvserve::tokenizer_spec_from_gguf(*file);
  if (spec) {
    auto tok = kvserve::tokenizer::create(*spec);
    if (tok) (void)(*tok)->encode("hello <|im_end|> 123", true);
  }
  return 0;
}
