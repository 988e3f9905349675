// libFuzzer target: the safetensors header reader, then reading every tensor it accepted.
#include <cstddef>
#include <cstdint>

#include "model/hf_config.hpp"
#include "model/safetensors_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto file = kvserve::safetensors_file::parse({data, size}, "fuzz.safetensors");
  if (file) {
    for (const auto& t : file->tensors()) {
      if (t.end - t.begin <= (1u << 22)) (void)file->read_f32(t);
    }
  }
  // The same bytes as config.json text.
  (void)kvserve::model_config_from_hf_json(
      std::string_view(reinterpret_cast<const char*>(data), size), "config.json");
  return 0;
}
