#pragma once
/// The pool of physical KV blocks: a fixed number of block ids, each free or in use. It holds
/// no KV (the backend owns device memory and sees only block ids) and no policy: the prefix
/// tree and the manager decide what a used block is for.

#include <cstdint>
#include <optional>
#include <vector>

#include "cache/block_id.hpp"

namespace kvserve {

class block_pool {
 public:
  /// A pool of `num_blocks` blocks, all free. Blocks are handed out in increasing id order
  /// at first, then most recently freed first.
  explicit block_pool(int num_blocks);

  int num_blocks() const { return static_cast<int>(in_use_.size()); }
  int num_free() const { return static_cast<int>(free_.size()); }
  int num_used() const { return num_blocks() - num_free(); }

  /// A free block, now in use; nullopt when none is free.
  std::optional<block_id> allocate();
  /// Returns a block in use to the pool. Freeing a free block is a bug (asserted in debug
  /// builds, ignored otherwise).
  void free(block_id b);
  /// Whether a block is in use.
  bool in_use(block_id b) const { return in_use_[static_cast<std::size_t>(to_index(b))] != 0; }

  /// Bytes of metadata the pool holds.
  std::size_t memory_bytes() const;

 private:
  std::vector<std::int32_t> free_;    // stack of free block indices
  std::vector<std::uint8_t> in_use_;  // per block
};

}  // namespace kvserve
