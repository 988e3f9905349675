#include "model/hf_tokenizer.hpp"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace kvserve {
namespace {

using json = nlohmann::json;

/// Unused ids a tokenizer may leave between and after its defined tokens.
constexpr std::int64_t kMaxUnusedTokenIds = 1 << 16;

/// The pre-tokenizer setup, found by walking a (possibly nested) Sequence.
struct pre_info {
  bool byte_level = false;
  bool byte_level_regex = true;
  bool digits = false;
  std::string split_regex;
  bool unknown = false;
  std::string unknown_type;
};

void walk_pre(const json& p, pre_info& info) {
  if (!p.is_object()) return;
  const std::string type = p.value("type", std::string());
  if (type == "Sequence") {
    for (const auto& inner : p.value("pretokenizers", json::array())) walk_pre(inner, info);
  } else if (type == "ByteLevel") {
    info.byte_level = true;
    info.byte_level_regex = p.value("use_regex", true);
    if (p.value("add_prefix_space", false)) {
      info.unknown = true;
      info.unknown_type = "ByteLevel(add_prefix_space)";
    }
  } else if (type == "Digits") {
    info.digits = p.value("individual_digits", false);
    if (!info.digits) {
      info.unknown = true;
      info.unknown_type = "Digits(individual_digits=false)";
    }
  } else if (type == "Split") {
    if (p.contains("pattern") && p["pattern"].is_object() && p["pattern"].contains("Regex")) {
      info.split_regex = p["pattern"]["Regex"].get<std::string>();
    } else {
      info.unknown = true;
      info.unknown_type = "Split";
    }
  } else {
    info.unknown = true;
    info.unknown_type = type;
  }
}

/// Token text of a tokenizer_config.json entry: a string or {"content": ...}.
std::string token_text(const json& j, const char* key) {
  if (!j.contains(key)) return {};
  const json& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return {};
}

/// Finds the TemplateProcessing `single` template and reads the special tokens around $A.
void read_post_processor(const json& p, const json& vocab_of_specials, tokenizer_spec& spec) {
  if (!p.is_object()) return;
  const std::string type = p.value("type", std::string());
  if (type == "Sequence") {
    for (const auto& inner : p.value("processors", json::array())) {
      read_post_processor(inner, vocab_of_specials, spec);
    }
    return;
  }
  if (type != "TemplateProcessing" || !p.contains("single") || !p["single"].is_array()) return;
  bool seen_sequence = false;
  for (const auto& item : p["single"]) {
    if (item.contains("Sequence")) {
      seen_sequence = true;
    } else if (item.contains("SpecialToken")) {
      const std::string name = item["SpecialToken"].value("id", std::string());
      std::optional<std::int32_t> id;
      if (p.contains("special_tokens") && p["special_tokens"].contains(name)) {
        const auto& ids = p["special_tokens"][name].value("ids", json::array());
        if (!ids.empty() && ids[0].is_number_integer()) id = ids[0].get<std::int32_t>();
      }
      if (!id) continue;
      if (seen_sequence) {
        spec.add_eos = true;
        spec.eos_token_id = spec.eos_token_id.value_or(*id);
      } else {
        spec.add_bos = true;
        spec.bos_token_id = *id;
      }
    }
  }
}

result<hf_tokenizer_info> parse(std::string_view tokenizer_json, std::string_view config_json,
                                const std::string& origin) {
  auto unsupported = [&](const std::string& what) {
    return status(status_code::kUnsupported, origin + ": " + what);
  };
  auto corrupt = [&](const std::string& what) {
    return status(status_code::kCorruptData, origin + ": " + what);
  };
  const json tj = json::parse(tokenizer_json.begin(), tokenizer_json.end(), nullptr, false);
  if (tj.is_discarded() || !tj.is_object()) return corrupt("tokenizer.json is not JSON");
  json cj = json::object();
  if (!config_json.empty()) {
    cj = json::parse(config_json.begin(), config_json.end(), nullptr, false);
    if (cj.is_discarded() || !cj.is_object()) return corrupt("tokenizer_config.json is not JSON");
  }
  const json& model = tj.contains("model") ? tj["model"] : json();
  if (!model.is_object() || model.value("type", std::string()) != "BPE") {
    return unsupported("tokenizer model is not BPE");
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) return corrupt("no vocab");

  hf_tokenizer_info info;
  tokenizer_spec& spec = info.spec;
  std::int64_t max_id = -1;
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    if (!it.value().is_number_integer()) return corrupt("vocab id of '" + it.key() + "'");
    max_id = std::max<std::int64_t>(max_id, it.value().get<std::int64_t>());
  }
  const json added = tj.value("added_tokens", json::array());
  for (const auto& a : added) {
    if (a.contains("id") && a["id"].is_number_integer()) {
      max_id = std::max<std::int64_t>(max_id, a["id"].get<std::int64_t>());
    }
  }
  // Token ids are dense in real tokenizers: a few unused ids between the vocabulary and the
  // added tokens are fine, an id far beyond everything defined is corrupt data (and would
  // otherwise size the token table by that id).
  const std::int64_t num_defined =
      static_cast<std::int64_t>(model["vocab"].size()) + static_cast<std::int64_t>(added.size());
  if (max_id < 0) return corrupt("empty vocabulary");
  if (max_id >= num_defined + kMaxUnusedTokenIds) {
    return corrupt("token id " + std::to_string(max_id) + " is far beyond the " +
                   std::to_string(num_defined) + " tokens defined");
  }
  spec.tokens.assign(static_cast<std::size_t>(max_id + 1), std::string());
  spec.kinds.assign(spec.tokens.size(), token_kind::kUnused);
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    const auto id = it.value().get<std::int64_t>();
    if (id < 0) return corrupt("negative vocab id");
    spec.tokens[static_cast<std::size_t>(id)] = it.key();
    spec.kinds[static_cast<std::size_t>(id)] = token_kind::kNormal;
  }
  for (const auto& a : added) {
    if (!a.contains("id") || !a.contains("content") || !a["content"].is_string()) continue;
    const auto id = a["id"].get<std::int64_t>();
    if (id < 0) return corrupt("negative added token id");
    spec.tokens[static_cast<std::size_t>(id)] = a["content"].get<std::string>();
    spec.kinds[static_cast<std::size_t>(id)] =
        a.value("special", false) ? token_kind::kControl : token_kind::kUserDefined;
  }
  for (std::size_t i = 0; i < spec.tokens.size(); ++i) {
    // Ids no entry names: give them a string nothing can produce.
    if (spec.kinds[i] == token_kind::kUnused) spec.tokens[i] = "<unused_" + std::to_string(i) + ">";
  }
  for (const auto& m : model.value("merges", json::array())) {
    if (m.is_string()) {
      spec.merges.push_back(m.get<std::string>());
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      spec.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    } else {
      return corrupt("malformed merge");
    }
  }
  if (model.value("byte_fallback", false)) return unsupported("BPE with byte_fallback");

  if (tj.contains("normalizer") && !tj["normalizer"].is_null()) {
    const std::string type = tj["normalizer"].value("type", std::string());
    const bool empty_sequence =
        type == "Sequence" && tj["normalizer"].value("normalizers", json::array()).empty();
    if (type != "NFC" && !empty_sequence) return unsupported("normalizer " + type);
  }
  pre_info pre;
  if (tj.contains("pre_tokenizer")) walk_pre(tj["pre_tokenizer"], pre);
  if (pre.unknown) return unsupported("pre-tokenizer " + pre.unknown_type);
  if (!pre.byte_level) return unsupported("not a byte-level BPE (no ByteLevel pre-tokenizer)");
  if (!pre.split_regex.empty()) {
    if (pre.byte_level_regex) return unsupported("Split and a ByteLevel regex together");
    if (pre.split_regex.find("\\p{N}{1,3}") != std::string::npos) {
      spec.pretokenizer = pretokenizer_kind::kLlama3;
    } else if (pre.split_regex.find("\\p{N}") != std::string::npos &&
               pre.split_regex.find("\\p{L}+") != std::string::npos) {
      spec.pretokenizer = pretokenizer_kind::kQwen2;
    } else {
      return unsupported("pre-tokenizer regex " + pre.split_regex);
    }
  } else if (!pre.byte_level_regex) {
    return unsupported("ByteLevel without a regex");
  } else {
    spec.pretokenizer = pretokenizer_kind::kGpt2;
  }
  spec.individual_digits = pre.digits;

  auto id_of = [&](const std::string& text) -> std::optional<std::int32_t> {
    if (text.empty()) return std::nullopt;
    for (std::size_t i = 0; i < spec.tokens.size(); ++i) {
      if (spec.tokens[i] == text) return static_cast<std::int32_t>(i);
    }
    return std::nullopt;
  };
  info.bos_text = token_text(cj, "bos_token");
  info.eos_text = token_text(cj, "eos_token");
  spec.bos_token_id = id_of(info.bos_text);
  spec.eos_token_id = id_of(info.eos_text);
  if (auto unk =
          id_of(model.value("unk_token", json()).is_string() ? model["unk_token"].get<std::string>()
                                                             : std::string())) {
    spec.unknown_token_id = unk;
  }
  if (tj.contains("post_processor")) read_post_processor(tj["post_processor"], json(), spec);
  if (cj.contains("add_bos_token") && cj["add_bos_token"].is_boolean()) {
    spec.add_bos = cj["add_bos_token"].get<bool>() && spec.bos_token_id.has_value();
  }
  if (cj.contains("chat_template")) {
    const json& ct = cj["chat_template"];
    if (ct.is_string()) {
      info.chat_template = ct.get<std::string>();
    } else if (ct.is_array()) {
      for (const auto& t : ct) {
        if (t.value("name", std::string()) == "default" && t.contains("template")) {
          info.chat_template = t["template"].get<std::string>();
        }
      }
    }
  }
  return info;
}

std::string read_text(const std::filesystem::path& p, bool& found) {
  std::ifstream in(p, std::ios::binary);
  found = static_cast<bool>(in);
  std::stringstream ss;
  if (found) ss << in.rdbuf();
  return ss.str();
}

}  // namespace

result<hf_tokenizer_info> hf_tokenizer_from_json(std::string_view tokenizer_json,
                                                 std::string_view tokenizer_config_json,
                                                 const std::string& origin) {
  try {
    return parse(tokenizer_json, tokenizer_config_json, origin);
  } catch (const json::exception& e) {  // a field of the wrong JSON type
    return status(status_code::kCorruptData, origin + ": " + e.what());
  }
}

result<hf_tokenizer_info> read_hf_tokenizer(const std::string& folder) {
  namespace fs = std::filesystem;
  bool found = false;
  const std::string tj = read_text(fs::path(folder) / "tokenizer.json", found);
  if (!found) {
    return status(status_code::kNotFound, folder +
                                              ": no tokenizer.json (kvserve needs the "
                                              "byte-level BPE tokenizer.json)");
  }
  bool config_found = false;
  const std::string cj = read_text(fs::path(folder) / "tokenizer_config.json", config_found);
  return hf_tokenizer_from_json(tj, cj, folder);
}

}  // namespace kvserve
