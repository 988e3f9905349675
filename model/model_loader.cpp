#include "model/model_loader.hpp"

#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <vector>

#include "model/dummy_weights.hpp"
#include "model/gguf_file.hpp"
#include "model/gguf_loader.hpp"
#include "model/hf_config.hpp"
#include "model/hf_tokenizer.hpp"
#include "model/hf_weights.hpp"

namespace kvserve {

namespace fs = std::filesystem;

result<load_format> parse_load_format(std::string_view text) {
  if (text == "auto") return load_format::kAuto;
  if (text == "gguf") return load_format::kGguf;
  if (text == "safetensors") return load_format::kSafetensors;
  if (text == "dummy") return load_format::kDummy;
  return status(status_code::kInvalidArgument, "unknown load format '" + std::string(text) +
                                                   "' (expected auto, gguf, safetensors or dummy)");
}

const char* to_string(load_format format) {
  switch (format) {
    case load_format::kAuto:
      return "auto";
    case load_format::kGguf:
      return "gguf";
    case load_format::kSafetensors:
      return "safetensors";
    case load_format::kDummy:
      return "dummy";
  }
  return "unknown";
}

result<std::string> find_default_model(const std::string& executable_path) {
  if (const char* env = std::getenv("KVSERVE_MODEL"); env != nullptr && *env != '\0') {
    std::error_code ec;
    if (fs::exists(env, ec)) return std::string(env);
    return status(status_code::kNotFound,
                  std::string("KVSERVE_MODEL is set to '") + env + "', which does not exist");
  }
  std::vector<fs::path> starts;
  std::error_code ec;
  fs::path exe =
      executable_path.empty() ? fs::read_symlink("/proc/self/exe", ec) : fs::path(executable_path);
  if (!exe.empty()) starts.push_back(fs::absolute(exe, ec).parent_path());
  fs::path cwd = fs::current_path(ec);
  if (!ec) starts.push_back(cwd);
  for (const fs::path& start : starts) {
    fs::path dir = start;
    for (int up = 0; up < 6 && !dir.empty(); ++up) {
      fs::path candidate = dir / "models" / std::string(kDefaultModelFileName);
      if (fs::is_regular_file(candidate, ec)) return candidate.lexically_normal().string();
      if (dir == dir.parent_path()) break;
      dir = dir.parent_path();
    }
  }
  return status(status_code::kNotFound,
                "default model models/" + std::string(kDefaultModelFileName) +
                    " not found beside the build tree; run scripts/fetch_model, set "
                    "KVSERVE_MODEL, or pass --model PATH");
}

}  // namespace kvserve

namespace kvserve {
namespace {

/// Tokenizer and chat template of a GGUF file.
status gguf_tokenizer_and_template(const gguf_file& file, loaded_model& out) {
  auto spec = tokenizer_spec_from_gguf(file);
  if (!spec) return spec.error();
  auto tok = tokenizer::create(std::move(spec).value());
  if (!tok) return status(tok.error().code(), file.path() + ": " + tok.error().message());
  out.tokenizer = std::move(tok).value();
  const std::string jinja = file.get_string("tokenizer.chat_template").value_or("");
  auto text_of = [&](std::optional<std::int32_t> id) {
    return id ? out.tokenizer->token_text(*id) : std::string();
  };
  auto tmpl = chat_template::from_jinja(jinja, text_of(out.tokenizer->bos_token_id()),
                                        text_of(out.tokenizer->eos_token_id()));
  // A template of no known family falls back to plain ChatML rather than refusing the model.
  out.chat_template = std::make_shared<const chat_template>(
      tmpl ? std::move(tmpl).value()
           : chat_template(chat_template_family::kChatMl, std::nullopt,
                           text_of(out.tokenizer->bos_token_id()),
                           text_of(out.tokenizer->eos_token_id())));
  return status::ok();
}

/// Where a model's weights come from: its file, random values on the host, or nowhere (the
/// backend makes its own).
enum class weight_source { kFile, kDummy, kNone };

result<loaded_model> load_gguf(const std::string& path, weight_source source, std::uint64_t seed) {
  auto file = gguf_file::open(path);
  if (!file) return file.error();
  loaded_model out;
  auto config = model_config_from_gguf(*file);
  if (!config) return config.error();
  out.config = std::move(config).value();
  if (out.config.name.empty()) out.config.name = fs::path(path).stem().string();
  if (status s = gguf_tokenizer_and_template(*file, out); !s) return s;
  if (source == weight_source::kDummy) {
    out.weights = make_dummy_weights(out.config, seed);
  } else if (source == weight_source::kFile) {
    auto weights = load_gguf_weights(*file, out.config);
    if (!weights) return weights.error();
    out.weights = std::move(weights).value();
  }
  return out;
}

result<loaded_model> load_hf_folder(const std::string& path, weight_source source,
                                    std::uint64_t seed) {
  loaded_model out;
  auto config = read_hf_config(path);
  if (!config) return config.error();
  out.config = std::move(config).value();
  if (out.config.name.empty()) {
    out.config.name = fs::path(path).lexically_normal().filename().string();
    if (out.config.name.empty()) out.config.name = fs::path(path).parent_path().filename().string();
  }
  auto tok_info = read_hf_tokenizer(path);
  if (!tok_info) return tok_info.error();
  auto tok = tokenizer::create(std::move(tok_info->spec));
  if (!tok) return status(tok.error().code(), path + ": " + tok.error().message());
  out.tokenizer = std::move(tok).value();
  if (out.tokenizer->vocab_size() > out.config.vocab_size) {
    return status(status_code::kCorruptData,
                  path + ": tokenizer.json has more tokens than config.json's vocab_size");
  }
  auto tmpl =
      chat_template::from_jinja(tok_info->chat_template, tok_info->bos_text, tok_info->eos_text);
  out.chat_template = std::make_shared<const chat_template>(
      tmpl ? std::move(tmpl).value()
           : chat_template(chat_template_family::kChatMl, std::nullopt, tok_info->bos_text,
                           tok_info->eos_text));
  if (source == weight_source::kDummy) {
    out.weights = make_dummy_weights(out.config, seed);
  } else if (source == weight_source::kFile) {
    auto weights = load_hf_weights(path, out.config);
    if (!weights) return weights.error();
    out.weights = std::move(weights).value();
  }
  return out;
}

result<loaded_model> load_any(const std::string& path, load_format format, weight_source source,
                              std::uint64_t seed) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    return status(status_code::kNotFound, "model path '" + path + "' does not exist");
  }
  const bool is_dir = fs::is_directory(path, ec);
  load_format kind = format;
  if (format == load_format::kAuto || format == load_format::kDummy) {
    kind = is_dir ? load_format::kSafetensors : load_format::kGguf;
  }
  if (kind == load_format::kGguf) {
    if (is_dir) {
      return status(status_code::kInvalidArgument,
                    "'" + path + "' is a folder; --load-format gguf needs a .gguf file");
    }
    return load_gguf(path, source, seed);
  }
  if (!is_dir) {
    return status(status_code::kInvalidArgument,
                  "'" + path + "' is a file; --load-format safetensors needs an HF model folder");
  }
  return load_hf_folder(path, source, seed);
}

}  // namespace

result<loaded_model> load_model(const std::string& path, load_format format,
                                std::uint64_t dummy_seed) {
  return load_any(path, format,
                  format == load_format::kDummy ? weight_source::kDummy : weight_source::kFile,
                  dummy_seed);
}

result<loaded_model> load_model_without_weights(const std::string& path, load_format format) {
  return load_any(path, format, weight_source::kNone, 0);
}

}  // namespace kvserve
