#include "model/hf_config.hpp"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace kvserve {
namespace {

using json = nlohmann::json;

/// A positive integer field; `fallback` when absent (0: required).
result<int> int_field(const json& j, const char* key, int fallback, const std::string& origin) {
  if (!j.contains(key) || j[key].is_null()) {
    if (fallback > 0) return fallback;
    return status(status_code::kCorruptData, origin + ": missing '" + key + "'");
  }
  const json& v = j[key];
  if (!v.is_number_integer() || v.get<std::int64_t>() <= 0 || v.get<std::int64_t>() > (1 << 30)) {
    return status(status_code::kCorruptData, origin + ": '" + key + "' must be a positive integer");
  }
  return static_cast<int>(v.get<std::int64_t>());
}

result<double> float_field(const json& j, const char* key, double fallback,
                           const std::string& origin) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_number()) {
    return status(status_code::kCorruptData, origin + ": '" + key + "' must be a number");
  }
  return j[key].get<double>();
}

}  // namespace

namespace {

result<model_config> parse_config(std::string_view json_text, const std::string& origin) {
  const json j = json::parse(json_text.begin(), json_text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return status(status_code::kCorruptData, origin + ": not a JSON object");
  }
  model_config c;
  const std::string model_type = j.value("model_type", std::string());
  std::string arch_name;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string()) {
    arch_name = j["architectures"][0].get<std::string>();
  }
  if (model_type == "llama" || arch_name == "LlamaForCausalLM") {
    c.architecture = "llama";
  } else if (model_type == "mistral" || arch_name == "MistralForCausalLM") {
    c.architecture = "mistral";
  } else if (model_type == "qwen2" || arch_name == "Qwen2ForCausalLM") {
    c.architecture = "qwen2";
  } else {
    return status(status_code::kUnsupported, origin + ": architecture '" +
                                                 (arch_name.empty() ? model_type : arch_name) +
                                                 "' is not supported (Llama, Mistral, Qwen2)");
  }
  auto hidden = int_field(j, "hidden_size", 0, origin);
  auto inter = int_field(j, "intermediate_size", 0, origin);
  auto layers = int_field(j, "num_hidden_layers", 0, origin);
  auto heads = int_field(j, "num_attention_heads", 0, origin);
  auto vocab = int_field(j, "vocab_size", 0, origin);
  for (const auto* r : {&hidden, &inter, &layers, &heads, &vocab}) {
    if (!*r) return r->error();
  }
  c.hidden_size = *hidden;
  c.intermediate_size = *inter;
  c.num_layers = *layers;
  c.num_heads = *heads;
  c.vocab_size = *vocab;
  auto kv = int_field(j, "num_key_value_heads", c.num_heads, origin);
  if (!kv) return kv.error();
  c.num_kv_heads = *kv;
  if (c.num_heads % c.num_kv_heads != 0) {
    return status(status_code::kCorruptData,
                  origin + ": num_attention_heads is not a multiple of num_key_value_heads");
  }
  const int default_head_dim = c.hidden_size % c.num_heads == 0 ? c.hidden_size / c.num_heads : 0;
  auto head_dim = int_field(j, "head_dim", default_head_dim, origin);
  if (!head_dim) return head_dim.error();
  c.head_dim = *head_dim;
  if (c.head_dim % 2 != 0) return status(status_code::kCorruptData, origin + ": odd head_dim");
  auto max_pos = int_field(j, "max_position_embeddings", 2048, origin);
  if (!max_pos) return max_pos.error();
  c.max_position_embeddings = *max_pos;
  auto eps = float_field(j, "rms_norm_eps", 1e-6, origin);
  auto theta = float_field(j, "rope_theta", 10000.0, origin);
  if (!eps) return eps.error();
  if (!theta) return theta.error();
  if (!(*eps > 0 && *eps < 1) || !(*theta > 1)) {
    return status(status_code::kCorruptData, origin + ": invalid rms_norm_eps or rope_theta");
  }
  c.rms_norm_eps = static_cast<float>(*eps);
  c.rope_theta = static_cast<float>(*theta);
  if (j.value("mlp_bias", false)) {
    return status(status_code::kUnsupported, origin + ": MLP biases are not supported");
  }
  if (j.contains("partial_rotary_factor") && j["partial_rotary_factor"].is_number() &&
      j["partial_rotary_factor"].get<double>() != 1.0) {
    return status(status_code::kUnsupported, origin + ": partial rotary embeddings");
  }
  c.tie_word_embeddings = j.contains("tie_word_embeddings") && j["tie_word_embeddings"].is_boolean()
                              ? j["tie_word_embeddings"].get<bool>()
                              : false;
  const bool bias_flag = j.contains("attention_bias") && j["attention_bias"].is_boolean() &&
                         j["attention_bias"].get<bool>();
  if (bias_flag && c.architecture != "qwen2") {
    // Llama's attention_bias also puts a bias on o_proj, which kvserve's layout lacks.
    return status(status_code::kUnsupported,
                  origin + ": attention_bias (biases on q/k/v/o_proj) is not supported for " +
                      c.architecture);
  }
  c.attention_bias = c.architecture == "qwen2";
  if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    const json& rs = j["rope_scaling"];
    std::string type = rs.value("rope_type", rs.value("type", std::string("default")));
    if (type == "linear") {
      c.rope_scaling.type = rope_scaling_config::kind::kLinear;
    } else if (type == "llama3") {
      c.rope_scaling.type = rope_scaling_config::kind::kLlama3;
    } else if (type != "default") {
      return status(status_code::kUnsupported,
                    origin + ": rope_scaling type '" + type + "' is not supported");
    }
    if (c.rope_scaling.type != rope_scaling_config::kind::kNone) {
      auto factor = float_field(rs, "factor", 0, origin);
      if (!factor) return factor.error();
      if (!(*factor >= 1)) return status(status_code::kCorruptData, origin + ": rope factor < 1");
      c.rope_scaling.factor = static_cast<float>(*factor);
    }
    if (c.rope_scaling.type == rope_scaling_config::kind::kLlama3) {
      auto low = float_field(rs, "low_freq_factor", 1.0, origin);
      auto high = float_field(rs, "high_freq_factor", 4.0, origin);
      auto orig = int_field(rs, "original_max_position_embeddings", 8192, origin);
      if (!low) return low.error();
      if (!high) return high.error();
      if (!orig) return orig.error();
      if (!(*high > *low && *low > 0)) {
        return status(status_code::kCorruptData, origin + ": invalid llama3 rope frequencies");
      }
      c.rope_scaling.low_freq_factor = static_cast<float>(*low);
      c.rope_scaling.high_freq_factor = static_cast<float>(*high);
      c.rope_scaling.original_max_position_embeddings = *orig;
    }
  }
  c.name = j.value("_name_or_path", std::string());
  return c;
}

}  // namespace

result<model_config> model_config_from_hf_json(std::string_view json_text,
                                               const std::string& origin) {
  try {
    return parse_config(json_text, origin);
  } catch (const nlohmann::json::exception& e) {  // a field of the wrong JSON type
    return status(status_code::kCorruptData, origin + ": " + e.what());
  }
}

result<model_config> read_hf_config(const std::string& folder) {
  const std::string path = (std::filesystem::path(folder) / "config.json").string();
  std::ifstream in(path, std::ios::binary);
  if (!in) return status(status_code::kNotFound, path + ": cannot open (not an HF model folder?)");
  std::stringstream ss;
  ss << in.rdbuf();
  return model_config_from_hf_json(ss.str(), path);
}

}  // namespace kvserve
