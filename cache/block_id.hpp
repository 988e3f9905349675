#pragma once
/// Identifiers used by the KV cache.

#include <cstdint>

namespace kvserve {

/// A sequence, as the model layer names it (model/step_plan.hpp declares the same alias).
using seq_id = std::uint64_t;

/// A physical KV block: an index into the pool, [0, num_blocks). Block tables handed to the
/// model are plain `std::vector<std::int32_t>` of these values.
enum class block_id : std::int32_t {};

/// The index of a block, for block tables and arrays.
constexpr std::int32_t to_index(block_id b) { return static_cast<std::int32_t>(b); }
/// The block at an index.
constexpr block_id to_block_id(std::int32_t index) { return static_cast<block_id>(index); }

/// A cache namespace (model, adapter, cache salt), interned by the manager. Blocks are shared
/// only between sequences of the same namespace. 0 is the default (empty) namespace.
using namespace_id = std::uint32_t;

}  // namespace kvserve
