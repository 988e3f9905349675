#pragma once
/// Turns a validated GGUF file into kvserve's model config, fp32 weights (HF layout) and
/// tokenizer spec. Supported architectures: "llama" (Llama 2/3, Mistral, SmolLM2) and "qwen2".

#include "model/gguf_file.hpp"
#include "model/model_config.hpp"
#include "model/model_weights.hpp"
#include "model/status.hpp"
#include "model/tokenizer.hpp"

namespace kvserve {

/// Config from `{arch}.*` metadata: GQA, rope theta and scaling (linear from metadata, Llama-3
/// from the `rope_freqs.weight` tensor), RMS eps, context length, tied embeddings when
/// `output.weight` is absent, QKV bias when `attn_q.bias` is present. kUnsupported for other
/// architectures, partial rotary, or YaRN scaling; kCorruptData for missing or invalid keys.
result<model_config> model_config_from_gguf(const gguf_file& file);

/// All weights of `config`, dequantised to fp32; shapes are checked against the config. For
/// the "llama" architecture the rows of Q and K (and their biases) are un-permuted from
/// llama.cpp's interleaved-RoPE order back to HF's `rotate_half` order.
result<model_weights> load_gguf_weights(const gguf_file& file, const model_config& config);

/// Reverses llama.cpp's converter permutation of one Q or K matrix (or bias, cols = 1) of
/// `num_heads` heads, in place: HF row h*d + s*d/2 + i comes from GGUF row h*d + 2*i + s.
void unpermute_rope_rows(tensor_f32& t, int num_heads);

/// Tokenizer spec from `tokenizer.ggml.*` metadata (model "gpt2", i.e. byte-level BPE);
/// kUnsupported for other tokenizer models (e.g. SentencePiece "llama").
result<tokenizer_spec> tokenizer_spec_from_gguf(const gguf_file& file);

}  // namespace kvserve
