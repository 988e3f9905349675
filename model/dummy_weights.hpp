#pragma once
/// Random weights at a config's shapes (`--load-format dummy`, as vLLM's): for benchmarks and
/// backend tests that need no real model.

#include <cstdint>

#include "model/model_config.hpp"
#include "model/model_weights.hpp"

namespace kvserve {

/// Weights with every tensor of `config` at its shape (HF layout, see model_weights.hpp):
/// matrices and biases drawn from a near-normal distribution (Irwin-Hall, mean 0, std 0.02),
/// RMSNorm weights 1.
/// Deterministic: the same (config, seed) gives bit-identical weights on every machine.
/// `lm_head` stays empty when `config.tie_word_embeddings`; biases are empty unless
/// `config.attention_bias`. The config is not validated: non-positive sizes give empty tensors.
model_weights make_dummy_weights(const model_config& config, std::uint64_t seed);

}  // namespace kvserve
