#pragma once
/// The one entry point that turns a model path into config, weights, tokenizer and chat
/// template: GGUF files, Hugging Face folders, or random weights at a real model's shapes.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "model/chat_template.hpp"
#include "model/model_config.hpp"
#include "model/model_weights.hpp"
#include "model/status.hpp"
#include "model/tokenizer.hpp"

namespace kvserve {

/// `--load-format`: kAuto picks GGUF for a file and safetensors for a folder.
enum class load_format { kAuto, kGguf, kSafetensors, kDummy };

/// "auto", "gguf", "safetensors", "dummy"; kInvalidArgument otherwise.
result<load_format> parse_load_format(std::string_view text);
const char* to_string(load_format format);

/// A model ready for a backend. The tokenizer and template are shared with request actors.
struct loaded_model {
  model_config config;
  model_weights weights;  ///< fp32, HF layout (Q/K rows un-permuted for GGUF llama files)
  std::shared_ptr<const ::kvserve::tokenizer> tokenizer;
  std::shared_ptr<const ::kvserve::chat_template> chat_template;
};

/// Loads `path` (a .gguf file or an HF folder). kDummy reads config and tokenizer from the
/// file or folder and draws random weights from `dummy_seed` (see dummy_weights.hpp). Errors:
/// kNotFound (no such path), kCorruptData (truncated or malformed), kUnsupported (tensor type,
/// architecture or tokenizer kind that kvserve does not handle); the message names the file.
result<loaded_model> load_model(const std::string& path, load_format format,
                                std::uint64_t dummy_seed = 0);

/// Config, tokenizer and chat template of `path` as load_model reads them, with `weights` left
/// empty: for backends that draw their own weights on the device (`--load-format dummy` with
/// make_cuda_backend_dummy), so that no host copy of a large model's weights is ever made.
/// kDummy and kAuto pick the file kind as load_model does. Same errors as load_model.
result<loaded_model> load_model_without_weights(const std::string& path, load_format format);

/// The default model: `$KVSERVE_MODEL` if set (and existing), else
/// models/SmolLM2-135M-Instruct.Q4_1.gguf beside the build tree, searched in the folders above
/// the running executable (build/bin/kvserve -> ../../models) and above the working directory.
/// `executable_path` overrides /proc/self/exe (for tests). kNotFound with a message that says
/// how to fetch it (scripts/fetch_model) or pass --model.
result<std::string> find_default_model(const std::string& executable_path = "");

/// File name of the default model.
inline constexpr std::string_view kDefaultModelFileName = "SmolLM2-135M-Instruct.Q4_1.gguf";

}  // namespace kvserve
