#include "model/model_loader.hpp"

#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <vector>

#include "model/dummy_weights.hpp"

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

result<loaded_model> load_model(const std::string& path, load_format format,
                                std::uint64_t dummy_seed) {
  return status(status_code::kUnsupported, "load_model: not implemented yet (" + path + ")");
}

}  // namespace kvserve
