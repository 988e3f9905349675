#pragma once
/// Weights of a Hugging Face folder: model.safetensors, or shards listed by
/// model.safetensors.index.json; F32, F16 and BF16 tensors converted to fp32.

#include <string>

#include "model/model_config.hpp"
#include "model/model_weights.hpp"
#include "model/status.hpp"

namespace kvserve {

/// Loads every tensor `config` needs (HF names, `model.layers.N.self_attn.q_proj.weight`...)
/// and checks its shape. `lm_head.weight` is ignored when the embeddings are tied. kNotFound
/// when the folder has no safetensors; kCorruptData for a corrupt file, an index naming a
/// missing shard or tensor, or a shape that does not match config.json; kUnsupported for other
/// dtypes.
result<model_weights> load_hf_weights(const std::string& folder, const model_config& config);

}  // namespace kvserve
