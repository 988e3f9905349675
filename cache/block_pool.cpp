#include "cache/block_pool.hpp"

#include <cassert>

namespace kvserve {

block_pool::block_pool(int num_blocks) : in_use_(static_cast<std::size_t>(num_blocks), 0) {
  free_.reserve(static_cast<std::size_t>(num_blocks));
  // A stack: push in reverse so that block 0 is handed out first.
  for (int i = num_blocks - 1; i >= 0; --i) free_.push_back(i);
}

std::optional<block_id> block_pool::allocate() {
  if (free_.empty()) return std::nullopt;
  std::int32_t b = free_.back();
  free_.pop_back();
  in_use_[static_cast<std::size_t>(b)] = 1;
  return to_block_id(b);
}

void block_pool::free(block_id b) {
  auto i = static_cast<std::size_t>(to_index(b));
  assert(in_use_[i] && "block freed twice");
  if (!in_use_[i]) return;
  in_use_[i] = 0;
  free_.push_back(to_index(b));
}

std::size_t block_pool::memory_bytes() const {
  return free_.capacity() * sizeof(std::int32_t) + in_use_.capacity();
}

}  // namespace kvserve
