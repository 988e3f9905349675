#include "model/hf_weights.hpp"

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "model/safetensors_file.hpp"

namespace kvserve {
namespace {

namespace fs = std::filesystem;

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

/// Tensor name -> the shard holding it.
class shard_set {
 public:
  static result<shard_set> open(const std::string& folder) {
    shard_set set;
    const fs::path index = fs::path(folder) / "model.safetensors.index.json";
    const fs::path single = fs::path(folder) / "model.safetensors";
    std::error_code ec;
    if (fs::exists(index, ec)) {
      std::ifstream in(index);
      std::stringstream ss;
      ss << in.rdbuf();
      const auto j = nlohmann::json::parse(ss.str(), nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") ||
          !j["weight_map"].is_object()) {
        return status(status_code::kCorruptData, index.string() + ": no weight_map object");
      }
      for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
        if (!it.value().is_string()) {
          return status(status_code::kCorruptData, index.string() + ": bad entry " + it.key());
        }
        const std::string file = it.value().get<std::string>();
        if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..") {
          return status(status_code::kCorruptData,
                        index.string() + ": shard name '" + file + "' is not a file name");
        }
        set.where_[it.key()] = file;
        if (!set.files_.count(file)) {
          auto f = safetensors_file::open((fs::path(folder) / file).string());
          if (!f) {
            return status(f.error().code() == status_code::kNotFound ? status_code::kCorruptData
                                                                     : f.error().code(),
                          index.string() + " lists shard '" + file + "': " + f.error().message());
          }
          set.files_.emplace(file, std::make_unique<safetensors_file>(std::move(f).value()));
        }
      }
      set.origin_ = index.string();
    } else if (fs::exists(single, ec)) {
      auto f = safetensors_file::open(single.string());
      if (!f) return f.error();
      for (const auto& t : f->tensors()) set.where_[t.name] = "model.safetensors";
      set.files_.emplace("model.safetensors",
                         std::make_unique<safetensors_file>(std::move(f).value()));
      set.origin_ = single.string();
    } else {
      return status(status_code::kNotFound,
                    folder + ": no model.safetensors or model.safetensors.index.json");
    }
    return set;
  }

  bool contains(const std::string& name) const { return where_.count(name) != 0; }

  result<tensor_f32> read(const std::string& name, const std::vector<std::int64_t>& shape) const {
    auto w = where_.find(name);
    if (w == where_.end()) {
      return status(status_code::kCorruptData, origin_ + ": missing tensor '" + name + "'");
    }
    const safetensors_file& f = *files_.at(w->second);
    const safetensors_tensor_info* info = f.find(name);
    if (info == nullptr) {
      return status(status_code::kCorruptData,
                    f.path() + ": tensor '" + name + "' listed in the index is not in the shard");
    }
    if (info->shape != shape) {
      return status(status_code::kCorruptData, f.path() + ": tensor '" + name + "' has shape " +
                                                   shape_str(info->shape) +
                                                   ", config.json implies " + shape_str(shape));
    }
    return f.read_f32(*info);
  }

 private:
  std::map<std::string, std::string> where_;
  std::map<std::string, std::unique_ptr<safetensors_file>> files_;
  std::string origin_;
};

}  // namespace

result<model_weights> load_hf_weights(const std::string& folder, const model_config& c) {
  auto shards = shard_set::open(folder);
  if (!shards) return shards.error();
  const std::int64_t hidden = c.hidden_size, inter = c.intermediate_size;
  const std::int64_t q = c.q_size(), kv = c.kv_size(), vocab = c.vocab_size;
  model_weights w;
  auto get = [&](const std::string& name, std::vector<std::int64_t> shape,
                 tensor_f32& dst) -> status {
    auto t = shards->read(name, shape);
    if (!t) return t.error();
    dst = std::move(t).value();
    return status::ok();
  };
  if (status s = get("model.embed_tokens.weight", {vocab, hidden}, w.token_embedding); !s) return s;
  if (status s = get("model.norm.weight", {hidden}, w.final_norm); !s) return s;
  if (!c.tie_word_embeddings) {
    if (status s = get("lm_head.weight", {vocab, hidden}, w.lm_head); !s) return s;
  }
  w.layers.resize(static_cast<std::size_t>(c.num_layers));
  for (int i = 0; i < c.num_layers; ++i) {
    layer_weights& l = w.layers[static_cast<std::size_t>(i)];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    const struct {
      std::string name;
      std::vector<std::int64_t> shape;
      tensor_f32* dst;
    } items[] = {
        {p + "input_layernorm.weight", {hidden}, &l.attn_norm},
        {p + "self_attn.q_proj.weight", {q, hidden}, &l.wq},
        {p + "self_attn.k_proj.weight", {kv, hidden}, &l.wk},
        {p + "self_attn.v_proj.weight", {kv, hidden}, &l.wv},
        {p + "self_attn.o_proj.weight", {hidden, q}, &l.wo},
        {p + "post_attention_layernorm.weight", {hidden}, &l.ffn_norm},
        {p + "mlp.gate_proj.weight", {inter, hidden}, &l.w_gate},
        {p + "mlp.up_proj.weight", {inter, hidden}, &l.w_up},
        {p + "mlp.down_proj.weight", {hidden, inter}, &l.w_down},
    };
    for (const auto& it : items) {
      if (status s = get(it.name, it.shape, *it.dst); !s) return s;
    }
    if (c.attention_bias) {
      if (status s = get(p + "self_attn.q_proj.bias", {q}, l.bq); !s) return s;
      if (status s = get(p + "self_attn.k_proj.bias", {kv}, l.bk); !s) return s;
      if (status s = get(p + "self_attn.v_proj.bias", {kv}, l.bv); !s) return s;
    }
  }
  return w;
}

}  // namespace kvserve
