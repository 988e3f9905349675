#include "cache/prefix_tree.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <functional>
#include <string>

#include "cache/retention.hpp"

namespace kvserve {
namespace {

constexpr std::uint64_t kMul1 = 0x9E3779B97F4A7C15ull;
constexpr std::uint64_t kMul2 = 0xC2B2AE3D27D4EB4Full;

std::uint64_t mix64(std::uint64_t x) {  // splitmix64 finaliser
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x;
}

std::uint64_t slot_node_plus_one(std::uint64_t slot) { return slot & 0xFFFFFFFFull; }
std::uint32_t slot_tag(std::uint64_t slot) { return static_cast<std::uint32_t>(slot >> 32); }
std::uint32_t hash_tag(std::uint64_t hash) { return static_cast<std::uint32_t>(hash >> 32); }
// The home slot comes from the tag, so that deletion can find an entry's home without reading
// its node (the index has at most 2^30 slots).
std::uint64_t home_of_tag(std::uint32_t tag, std::uint64_t mask) { return tag & mask; }

cache_status broken(const std::string& what) {
  return {cache_errc::kInvariantViolated, "prefix_tree: " + what};
}

}  // namespace

prefix_tree::prefix_tree(const prefix_tree_config& config)
    : block_size_(config.block_size),
      policy_(config.eviction_policy),
      nodes_(static_cast<std::size_t>(config.num_blocks)),
      tokens_(static_cast<std::size_t>(config.num_blocks) *
              static_cast<std::size_t>(config.block_size)) {
  for (auto& n : nodes_) n.priority = static_cast<std::int8_t>(kDefaultRetentionPriority);
  std::uint64_t capacity = std::bit_ceil(
      std::max<std::uint64_t>(16, 2 * static_cast<std::uint64_t>(std::max(config.num_blocks, 1))));
  index_.assign(capacity, 0);
  index_mask_ = capacity - 1;
  heap_.reserve(static_cast<std::size_t>(config.num_blocks));
}

// ---- hashing and the index -----------------------------------------------------------------

std::uint64_t prefix_tree::chain_hash(std::uint64_t seed,
                                      std::span<const std::int32_t> tokens) const {
  std::uint64_t h = seed;
  std::size_t i = 0;
  for (; i + 2 <= tokens.size(); i += 2) {
    std::uint64_t w = static_cast<std::uint32_t>(tokens[i]) |
                      (static_cast<std::uint64_t>(static_cast<std::uint32_t>(tokens[i + 1])) << 32);
    h = (std::rotl(h ^ (w * kMul1), 29)) * kMul2;
  }
  if (i < tokens.size())
    h = (std::rotl(h ^ (static_cast<std::uint32_t>(tokens[i]) * kMul1), 29)) * kMul2;
  return mix64(h);
}

std::uint64_t prefix_tree::root_seed(namespace_id ns) const {
  return mix64(0x6B7673657276650Aull + ns);
}

std::int32_t prefix_tree::find_child(std::int32_t parent, namespace_id ns, std::uint64_t hash,
                                     std::span<const std::int32_t> tokens) const {
  const std::uint32_t tag = hash_tag(hash);
  const auto bs = static_cast<std::size_t>(block_size_);
  for (std::uint64_t i = home_of_tag(tag, index_mask_);; i = (i + 1) & index_mask_) {
    std::uint64_t slot = index_[i];
    if (slot == 0) return -1;
    if (slot_tag(slot) != tag) continue;
    auto n = static_cast<std::int32_t>(slot_node_plus_one(slot) - 1);
    const node& c = nodes_[static_cast<std::size_t>(n)];
    if (c.hash != hash || c.parent != parent) continue;
    if (parent < 0 && c.ns != ns) continue;
    if (std::memcmp(&tokens_[static_cast<std::size_t>(n) * bs], tokens.data(),
                    bs * sizeof(std::int32_t)) != 0) {
      continue;
    }
    return n;
  }
}

void prefix_tree::index_insert(std::int32_t n) {
  std::uint64_t hash = nodes_[static_cast<std::size_t>(n)].hash;
  std::uint64_t i = home_of_tag(hash_tag(hash), index_mask_);
  while (index_[i] != 0) i = (i + 1) & index_mask_;
  index_[i] =
      (static_cast<std::uint64_t>(hash_tag(hash)) << 32) | static_cast<std::uint64_t>(n + 1);
}

void prefix_tree::index_erase(std::int32_t n) {
  std::uint64_t hash = nodes_[static_cast<std::size_t>(n)].hash;
  std::uint64_t i = home_of_tag(hash_tag(hash), index_mask_);
  while (slot_node_plus_one(index_[i]) != static_cast<std::uint64_t>(n + 1)) {
    i = (i + 1) & index_mask_;
  }
  // Backward-shift deletion keeps every probe chain unbroken without tombstones.
  std::uint64_t j = i;
  for (;;) {
    j = (j + 1) & index_mask_;
    std::uint64_t slot = index_[j];
    if (slot == 0) break;
    std::uint64_t home = home_of_tag(slot_tag(slot), index_mask_);
    // Move slot j into the hole at i unless its home lies cyclically in (i, j].
    bool home_in_range = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
    if (!home_in_range) {
      index_[i] = slot;
      i = j;
    }
  }
  index_[i] = 0;
}

// ---- matching and inserting ----------------------------------------------------------------

int prefix_tree::match(namespace_id ns, std::span<const std::int32_t> tokens, int max_blocks,
                       std::vector<block_id>* out) const {
  const auto bs = static_cast<std::size_t>(block_size_);
  int limit = std::min(max_blocks, static_cast<int>(tokens.size() / bs));
  if (limit <= 0) return 0;
  // The chained hashes depend only on the tokens, so they are computed first and the index
  // slots prefetched, letting the memory system work on all blocks at once.
  std::uint64_t stack_hashes[256];
  std::vector<std::uint64_t> heap_hashes;
  std::uint64_t* hashes = stack_hashes;
  if (limit > 256) {
    heap_hashes.resize(static_cast<std::size_t>(limit));
    hashes = heap_hashes.data();
  }
  std::uint64_t h = root_seed(ns);
  for (int i = 0; i < limit; ++i) {
    h = chain_hash(h, tokens.subspan(static_cast<std::size_t>(i) * bs, bs));
    hashes[i] = h;
    __builtin_prefetch(&index_[home_of_tag(hash_tag(h), index_mask_)]);
  }
  std::int32_t parent = -1;
  int matched = 0;
  for (; matched < limit; ++matched) {
    std::int32_t c = find_child(parent, ns, hashes[matched],
                                tokens.subspan(static_cast<std::size_t>(matched) * bs, bs));
    if (c < 0) break;
    out->push_back(to_block_id(c));
    parent = c;
  }
  return matched;
}

insert_result prefix_tree::insert_and_lock(std::optional<block_id> parent, namespace_id ns,
                                           std::span<const std::int32_t> tokens, block_id b,
                                           std::uint64_t tick) {
  const auto bs = static_cast<std::size_t>(block_size_);
  std::int32_t p = parent ? to_index(*parent) : -1;
  namespace_id node_ns = p >= 0 ? nodes_[static_cast<std::size_t>(p)].ns : ns;
  std::uint64_t seed = p >= 0 ? nodes_[static_cast<std::size_t>(p)].hash : root_seed(ns);
  std::uint64_t hash = chain_hash(seed, tokens.first(bs));
  std::int32_t existing = find_child(p, node_ns, hash, tokens.first(bs));
  if (existing >= 0) {
    lock(to_block_id(existing));
    touch(to_block_id(existing), tick, false);
    return {to_block_id(existing), false};
  }
  std::int32_t n = to_index(b);
  node& x = nodes_[static_cast<std::size_t>(n)];
  x = node{};
  x.hash = hash;
  x.last_access = tick;
  x.parent = p;
  x.lock_ref = 1;
  x.ns = node_ns;
  x.priority = static_cast<std::int8_t>(kDefaultRetentionPriority);
  x.flags = kInTree;
  std::memcpy(&tokens_[static_cast<std::size_t>(n) * bs], tokens.data(), bs * sizeof(std::int32_t));
  if (p >= 0) {
    node& pn = nodes_[static_cast<std::size_t>(p)];
    x.next_sibling = pn.first_child;
    if (pn.first_child >= 0) nodes_[static_cast<std::size_t>(pn.first_child)].prev_sibling = n;
    pn.first_child = n;
    update_candidacy(p);
  }
  index_insert(n);
  ++num_nodes_;
  return {b, true};
}

// ---- locks, access, retention --------------------------------------------------------------

void prefix_tree::lock(block_id b) {
  node& x = nodes_[static_cast<std::size_t>(to_index(b))];
  if (x.lock_ref++ == 0) {
    --num_unlocked_;
    if (x.priority > kDefaultRetentionPriority) --num_unlocked_retained_;
    if (x.heap_pos >= 0) heap_erase(to_index(b));
  }
}

void prefix_tree::unlock(block_id b) {
  node& x = nodes_[static_cast<std::size_t>(to_index(b))];
  if (--x.lock_ref == 0) {
    ++num_unlocked_;
    if (x.priority > kDefaultRetentionPriority) ++num_unlocked_retained_;
    update_candidacy(to_index(b));
  }
}

void prefix_tree::touch(block_id b, std::uint64_t tick, bool hit) {
  node& x = nodes_[static_cast<std::size_t>(to_index(b))];
  x.last_access = std::max(x.last_access, tick);
  if (hit) ++x.hit_count;
  if (x.heap_pos >= 0) heap_update(to_index(b));
}

void prefix_tree::set_priority(std::int32_t n, int priority) {
  node& x = nodes_[static_cast<std::size_t>(n)];
  bool was = x.priority > kDefaultRetentionPriority;
  x.priority = static_cast<std::int8_t>(priority);
  bool is = x.priority > kDefaultRetentionPriority;
  num_retained_ += static_cast<int>(is) - static_cast<int>(was);
  if (x.lock_ref == 0) num_unlocked_retained_ += static_cast<int>(is) - static_cast<int>(was);
  if (x.heap_pos >= 0) heap_update(n);
}

void prefix_tree::retain(block_id b, int priority, std::optional<std::chrono::nanoseconds> expiry,
                         std::chrono::nanoseconds now) {
  std::int32_t n = to_index(b);
  node& x = nodes_[static_cast<std::size_t>(n)];
  if (expiry && *expiry <= now) return;                    // an empty window changes nothing
  if (x.expiry != kNoExpiry && x.expiry <= now.count()) {  // lapsed, not yet expired
    x.expiry = kNoExpiry;
    set_priority(n, kDefaultRetentionPriority);
  }
  std::int64_t at = expiry ? expiry->count() : kNoExpiry;
  bool unset = x.priority == kDefaultRetentionPriority && x.expiry == kNoExpiry;
  if (priority > x.priority || unset) {
    x.expiry = priority == kDefaultRetentionPriority ? kNoExpiry : at;
    set_priority(n, priority);
  } else if (priority == x.priority) {
    x.expiry = std::max(x.expiry, at);
  } else {
    return;
  }
  if (x.expiry != kNoExpiry) {
    expiries_.push_back({x.expiry, n});
    std::push_heap(expiries_.begin(), expiries_.end(), std::greater<>{});
  }
  // Stale entries (overridden or evicted) are skipped when popped; rebuild if they pile up.
  if (expiries_.size() > 2 * nodes_.size() + 64) {
    expiries_.clear();
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      if ((nodes_[i].flags & kInTree) && nodes_[i].expiry != kNoExpiry) {
        expiries_.push_back({nodes_[i].expiry, static_cast<std::int32_t>(i)});
      }
    }
    std::make_heap(expiries_.begin(), expiries_.end(), std::greater<>{});
  }
}

void prefix_tree::expire_retention(std::chrono::nanoseconds now) {
  while (!expiries_.empty() && expiries_.front().at <= now.count()) {
    expiry_entry e = expiries_.front();
    std::pop_heap(expiries_.begin(), expiries_.end(), std::greater<>{});
    expiries_.pop_back();
    node& x = nodes_[static_cast<std::size_t>(e.node)];
    if ((x.flags & kInTree) && x.expiry == e.at) {
      x.expiry = kNoExpiry;
      set_priority(e.node, kDefaultRetentionPriority);
    }
  }
}

// ---- eviction ------------------------------------------------------------------------------

bool prefix_tree::is_candidate_eligible(std::int32_t n) const {
  const node& x = nodes_[static_cast<std::size_t>(n)];
  if (!(x.flags & kInTree) || x.lock_ref != 0) return false;
  return !is_dependent_first(policy_) || x.first_child < 0;
}

void prefix_tree::update_candidacy(std::int32_t n) {
  bool eligible = is_candidate_eligible(n);
  bool in_heap = nodes_[static_cast<std::size_t>(n)].heap_pos >= 0;
  if (eligible && !in_heap) heap_push(n);
  if (!eligible && in_heap) heap_erase(n);
}

void prefix_tree::detach(std::int32_t n) {
  node& x = nodes_[static_cast<std::size_t>(n)];
  if (x.prev_sibling >= 0) {
    nodes_[static_cast<std::size_t>(x.prev_sibling)].next_sibling = x.next_sibling;
  } else if (x.parent >= 0) {
    nodes_[static_cast<std::size_t>(x.parent)].first_child = x.next_sibling;
  }
  if (x.next_sibling >= 0) {
    nodes_[static_cast<std::size_t>(x.next_sibling)].prev_sibling = x.prev_sibling;
  }
  x.prev_sibling = x.next_sibling = -1;
  x.parent = -1;
}

void prefix_tree::orphan_subtree(std::int32_t root) {
  std::vector<std::int32_t> stack{root};
  while (!stack.empty()) {
    std::int32_t n = stack.back();
    stack.pop_back();
    node& x = nodes_[static_cast<std::size_t>(n)];
    if (x.flags & kOrphan) continue;
    index_erase(n);
    x.flags |= kOrphan;
    ++num_orphaned_;
    ++num_orphaned_total_;
    for (std::int32_t c = x.first_child; c >= 0;
         c = nodes_[static_cast<std::size_t>(c)].next_sibling) {
      stack.push_back(c);
    }
  }
}

std::optional<evicted_block> prefix_tree::evict_one() {
  if (heap_.empty()) return std::nullopt;
  std::int32_t n = heap_.front().node;
  heap_erase(n);
  node& x = nodes_[static_cast<std::size_t>(n)];
  eviction_reason reason = (x.flags & kOrphan)                      ? eviction_reason::kOrphan
                           : x.priority > kDefaultRetentionPriority ? eviction_reason::kRetained
                                                                    : eviction_reason::kCapacity;
  // lru-any only: the children are cut off from the root.
  while (x.first_child >= 0) {
    std::int32_t c = x.first_child;
    orphan_subtree(c);
    detach(c);
  }
  std::int32_t p = x.parent;
  if (!(x.flags & kOrphan)) index_erase(n);
  detach(n);
  if (p >= 0) update_candidacy(p);
  if (x.flags & kOrphan) --num_orphaned_;
  if (x.priority > kDefaultRetentionPriority) {
    --num_retained_;
    --num_unlocked_retained_;
  }
  --num_nodes_;
  --num_unlocked_;
  x = node{};
  x.priority = static_cast<std::int8_t>(kDefaultRetentionPriority);
  // Evictions come in runs: start loading what evicting the next candidate will touch.
  if (!heap_.empty()) {
    const node& next = nodes_[static_cast<std::size_t>(heap_.front().node)];
    __builtin_prefetch(&index_[home_of_tag(hash_tag(next.hash), index_mask_)]);
    if (next.parent >= 0) __builtin_prefetch(&nodes_[static_cast<std::size_t>(next.parent)]);
  }
  return evicted_block{to_block_id(n), reason};
}

// ---- the candidate heap (4-ary, keys inline so sifting stays in few cache lines) ----------

namespace {
bool entry_less(std::uint32_t amaj, std::uint64_t amin, std::int32_t an, std::uint32_t bmaj,
                std::uint64_t bmin, std::int32_t bn) {
  if (amaj != bmaj) return amaj < bmaj;
  if (amin != bmin) return amin < bmin;
  return an < bn;
}
}  // namespace

prefix_tree::heap_entry prefix_tree::make_entry(std::int32_t n) const {
  const node& x = nodes_[static_cast<std::size_t>(n)];
  eviction_rank r = make_eviction_rank(policy_, x.priority, x.hit_count, x.last_access);
  return {r.minor, r.major, n};
}

void prefix_tree::heap_push(std::int32_t n) {
  heap_.push_back(make_entry(n));
  nodes_[static_cast<std::size_t>(n)].heap_pos = static_cast<std::int32_t>(heap_.size() - 1);
  sift_up(heap_.size() - 1);
}

void prefix_tree::heap_erase(std::int32_t n) {
  auto pos = static_cast<std::size_t>(nodes_[static_cast<std::size_t>(n)].heap_pos);
  nodes_[static_cast<std::size_t>(n)].heap_pos = -1;
  std::size_t last = heap_.size() - 1;
  if (pos != last) {
    heap_[pos] = heap_[last];
    nodes_[static_cast<std::size_t>(heap_[pos].node)].heap_pos = static_cast<std::int32_t>(pos);
    heap_.pop_back();
    sift_up(pos);
    sift_down(pos);
  } else {
    heap_.pop_back();
  }
}

void prefix_tree::heap_update(std::int32_t n) {
  auto pos = static_cast<std::size_t>(nodes_[static_cast<std::size_t>(n)].heap_pos);
  heap_entry e = make_entry(n);
  heap_[pos] = e;
  sift_up(pos);
  sift_down(static_cast<std::size_t>(nodes_[static_cast<std::size_t>(n)].heap_pos));
}

void prefix_tree::sift_up(std::size_t pos) {
  heap_entry e = heap_[pos];
  while (pos > 0) {
    std::size_t parent = (pos - 1) / 4;
    const heap_entry& p = heap_[parent];
    if (!entry_less(e.major, e.minor, e.node, p.major, p.minor, p.node)) break;
    heap_[pos] = p;
    nodes_[static_cast<std::size_t>(p.node)].heap_pos = static_cast<std::int32_t>(pos);
    pos = parent;
  }
  heap_[pos] = e;
  nodes_[static_cast<std::size_t>(e.node)].heap_pos = static_cast<std::int32_t>(pos);
}

void prefix_tree::sift_down(std::size_t pos) {
  heap_entry e = heap_[pos];
  const std::size_t size = heap_.size();
  for (;;) {
    std::size_t first = 4 * pos + 1;
    if (first >= size) break;
    std::size_t best = first;
    std::size_t end = std::min(first + 4, size);
    for (std::size_t c = first + 1; c < end; ++c) {
      const heap_entry& a = heap_[c];
      const heap_entry& b = heap_[best];
      if (entry_less(a.major, a.minor, a.node, b.major, b.minor, b.node)) best = c;
    }
    const heap_entry& b = heap_[best];
    if (!entry_less(b.major, b.minor, b.node, e.major, e.minor, e.node)) break;
    heap_[pos] = b;
    nodes_[static_cast<std::size_t>(b.node)].heap_pos = static_cast<std::int32_t>(pos);
    pos = best;
  }
  heap_[pos] = e;
  nodes_[static_cast<std::size_t>(e.node)].heap_pos = static_cast<std::int32_t>(pos);
}

// ---- queries -------------------------------------------------------------------------------

bool prefix_tree::contains(block_id b) const {
  return (nodes_[static_cast<std::size_t>(to_index(b))].flags & kInTree) != 0;
}
bool prefix_tree::is_reachable(block_id b) const {
  std::uint8_t f = nodes_[static_cast<std::size_t>(to_index(b))].flags;
  return (f & kInTree) && !(f & kOrphan);
}
int prefix_tree::lock_count(block_id b) const {
  return nodes_[static_cast<std::size_t>(to_index(b))].lock_ref;
}
std::optional<block_id> prefix_tree::parent(block_id b) const {
  std::int32_t p = nodes_[static_cast<std::size_t>(to_index(b))].parent;
  if (p < 0) return std::nullopt;
  return to_block_id(p);
}
std::span<const std::int32_t> prefix_tree::tokens(block_id b) const {
  return {&tokens_[static_cast<std::size_t>(to_index(b)) * static_cast<std::size_t>(block_size_)],
          static_cast<std::size_t>(block_size_)};
}
int prefix_tree::priority(block_id b) const {
  return nodes_[static_cast<std::size_t>(to_index(b))].priority;
}
std::uint64_t prefix_tree::last_access(block_id b) const {
  return nodes_[static_cast<std::size_t>(to_index(b))].last_access;
}

std::size_t prefix_tree::memory_bytes_without_tokens() const {
  return nodes_.capacity() * sizeof(node) + index_.capacity() * sizeof(std::uint64_t) +
         heap_.capacity() * sizeof(heap_entry) + expiries_.capacity() * sizeof(expiry_entry);
}
std::size_t prefix_tree::memory_bytes_of_tokens() const {
  return tokens_.capacity() * sizeof(std::int32_t);
}

cache_status prefix_tree::check_invariants() const {
  int in_tree = 0, unlocked = 0, orphaned = 0, retained = 0, unlocked_retained = 0, in_index = 0;
  for (std::uint64_t i = 0; i <= index_mask_; ++i) {
    if (index_[i] == 0) continue;
    ++in_index;
    auto n = static_cast<std::size_t>(slot_node_plus_one(index_[i]) - 1);
    if (n >= nodes_.size()) return broken("index slot names no block");
    const node& x = nodes_[n];
    if (!(x.flags & kInTree) || (x.flags & kOrphan)) return broken("index holds a dead node");
    if (slot_tag(index_[i]) != hash_tag(x.hash)) return broken("index tag mismatch");
  }
  const auto bs = static_cast<std::size_t>(block_size_);
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    const node& x = nodes_[i];
    auto n = static_cast<std::int32_t>(i);
    if (!(x.flags & kInTree)) {
      if (x.heap_pos >= 0) return broken("free block in the candidate heap");
      continue;
    }
    ++in_tree;
    if (x.lock_ref < 0) return broken("negative lock count");
    if (x.lock_ref == 0) ++unlocked;
    if (x.priority > kDefaultRetentionPriority) {
      ++retained;
      if (x.lock_ref == 0) ++unlocked_retained;
    }
    bool orphan = (x.flags & kOrphan) != 0;
    if (orphan) ++orphaned;
    if (orphan && is_dependent_first(policy_))
      return broken("orphan under a dependent-first policy");
    if (x.parent >= 0) {
      const node& p = nodes_[static_cast<std::size_t>(x.parent)];
      if (!(p.flags & kInTree)) return broken("node outlives its parent");
      if (!orphan && (p.flags & kOrphan)) return broken("reachable node under an orphan");
      if (x.lock_ref > p.lock_ref) return broken("child locked more than its parent");
      bool found = false;
      for (std::int32_t c = p.first_child; c >= 0;
           c = nodes_[static_cast<std::size_t>(c)].next_sibling) {
        if (c == n) found = true;
      }
      if (!found) return broken("node missing from its parent's children");
    }
    for (std::int32_t c = x.first_child; c >= 0;
         c = nodes_[static_cast<std::size_t>(c)].next_sibling) {
      if (nodes_[static_cast<std::size_t>(c)].parent != n)
        return broken("child with another parent");
    }
    if (!orphan) {
      std::uint64_t seed =
          x.parent >= 0 ? nodes_[static_cast<std::size_t>(x.parent)].hash : root_seed(x.ns);
      std::span<const std::int32_t> t{&tokens_[i * bs], bs};
      if (chain_hash(seed, t) != x.hash) return broken("stale hash");
      if (x.parent >= 0 && nodes_[static_cast<std::size_t>(x.parent)].ns != x.ns) {
        return broken("namespace differs from parent's");
      }
      if (find_child(x.parent, x.ns, x.hash, t) != n) return broken("node not found by its key");
    }
    bool eligible = is_candidate_eligible(n);
    if (eligible != (x.heap_pos >= 0)) return broken("candidate heap membership is wrong");
    if (x.heap_pos >= 0) {
      auto pos = static_cast<std::size_t>(x.heap_pos);
      if (pos >= heap_.size() || heap_[pos].node != n) return broken("heap position is wrong");
      heap_entry e = make_entry(n);
      if (e.major != heap_[pos].major || e.minor != heap_[pos].minor)
        return broken("stale heap key");
    }
  }
  for (std::size_t pos = 1; pos < heap_.size(); ++pos) {
    const heap_entry& c = heap_[pos];
    const heap_entry& p = heap_[(pos - 1) / 4];
    if (entry_less(c.major, c.minor, c.node, p.major, p.minor, p.node)) return broken("heap order");
  }
  if (in_tree != num_nodes_) return broken("node count");
  if (in_index != in_tree - orphaned) return broken("index count");
  if (unlocked != num_unlocked_) return broken("unlocked count");
  if (orphaned != num_orphaned_) return broken("orphan count");
  if (retained != num_retained_) return broken("retained count");
  if (unlocked_retained != num_unlocked_retained_) return broken("unlocked retained count");
  return cache_status::ok();
}

}  // namespace kvserve
