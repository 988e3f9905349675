#include "cache/kv_cache_manager.hpp"

#include <algorithm>
#include <cassert>
#include <unordered_set>

namespace kvserve {

const char* to_string(admission_status s) {
  switch (s) {
    case admission_status::kAdmitted:
      return "admitted";
    case admission_status::kOutOfBlocks:
      return "out_of_blocks";
    case admission_status::kNeverFits:
      return "never_fits";
    case admission_status::kDuplicate:
      return "duplicate";
    case admission_status::kInvalid:
      return "invalid";
    case admission_status::kNotConsidered:
      return "not_considered";
  }
  return "unknown";
}

cache_result<std::unique_ptr<kv_cache_manager>> kv_cache_manager::create(kv_cache_config config) {
  if (auto s = validate(config); !s) return s;
  if (!config.clock) config.clock = steady_cache_clock();
  return std::unique_ptr<kv_cache_manager>(new kv_cache_manager(std::move(config)));
}

kv_cache_manager::kv_cache_manager(kv_cache_config config)
    : config_(std::move(config)),
      pool_(config_.num_blocks),
      tree_(prefix_tree_config{config_.enable_prefix_caching ? config_.num_blocks : 0,
                               config_.block_size, config_.eviction_policy}) {
  namespaces_.emplace("", 0);
}

int kv_cache_manager::num_available_blocks() const {
  return pool_.num_free() + tree_.num_unlocked();
}

namespace_id kv_cache_manager::intern_namespace(const std::string& key) {
  auto [it, inserted] = namespaces_.emplace(key, static_cast<namespace_id>(namespaces_.size()));
  return it->second;
}

std::optional<namespace_id> kv_cache_manager::find_namespace(const std::string& key) const {
  auto it = namespaces_.find(key);
  if (it == namespaces_.end()) return std::nullopt;
  return it->second;
}

// ---- admission -----------------------------------------------------------------------------

allocation_plan kv_cache_manager::plan_allocation(std::span<const sequence_request> batch,
                                                  admission_order order) const {
  allocation_plan plan;
  plan.version = version_;
  plan.seqs.reserve(batch.size());
  int budget = num_available_blocks();
  std::unordered_set<std::int32_t> newly_locked;
  std::unordered_set<seq_id> ids;
  std::vector<block_id> matched;
  bool stopped = false;
  for (const sequence_request& req : batch) {
    sequence_allocation a;
    a.id = req.id;
    a.num_prompt_tokens = static_cast<int>(req.tokens.size());
    a.cache_namespace = req.cache_namespace;
    a.retention = req.retention;
    auto finish = [&](admission_status st) {
      a.status = st;
      if (st != admission_status::kAdmitted) plan.not_served.push_back(a.id);
      plan.seqs.push_back(std::move(a));
    };
    if (stopped) {
      finish(admission_status::kNotConsidered);
      continue;
    }
    bool duplicate = contains(req.id) || !ids.insert(req.id).second;
    int num_tokens = req.num_tokens < 0 ? static_cast<int>(req.tokens.size()) : req.num_tokens;
    if (duplicate || (req.retention && !is_valid(*req.retention))) {
      finish(duplicate ? admission_status::kDuplicate : admission_status::kInvalid);
      if (order == admission_order::kStopAtFirstFailure) stopped = true;
      continue;
    }
    matched.clear();
    if (config_.enable_prefix_caching && !req.tokens.empty()) {
      if (auto ns = find_namespace(req.cache_namespace)) {
        // Leave at least the last token to compute, so the step yields its logits.
        int max_blocks = (static_cast<int>(req.tokens.size()) - 1) / config_.block_size;
        max_blocks = std::min(max_blocks, num_tokens / config_.block_size);
        tree_.match(*ns, req.tokens, max_blocks, &matched);
      }
    }
    int total = std::max(blocks_for_tokens(num_tokens), static_cast<int>(matched.size()));
    if (total > config_.num_blocks) {
      finish(admission_status::kNeverFits);
      if (order == admission_order::kStopAtFirstFailure) stopped = true;
      continue;
    }
    int lock_cost = 0;  // matched blocks that stop being evictable once locked
    for (block_id b : matched) {
      if (tree_.lock_count(b) == 0 && !newly_locked.count(to_index(b))) ++lock_cost;
    }
    int new_blocks = total - static_cast<int>(matched.size());
    a.cached_blocks.reserve(matched.size());
    for (block_id b : matched) a.cached_blocks.push_back(to_index(b));
    a.num_cached_tokens = static_cast<int>(matched.size()) * config_.block_size;
    a.num_new_blocks = new_blocks;
    if (lock_cost + new_blocks > budget) {
      finish(admission_status::kOutOfBlocks);
      if (order == admission_order::kStopAtFirstFailure) stopped = true;
      continue;
    }
    budget -= lock_cost + new_blocks;
    for (block_id b : matched) newly_locked.insert(to_index(b));
    plan.num_blocks_to_allocate += new_blocks;
    finish(admission_status::kAdmitted);
  }
  plan.num_blocks_to_evict = std::max(0, plan.num_blocks_to_allocate - pool_.num_free());
  return plan;
}

cache_status kv_cache_manager::apply(const allocation_plan& plan) {
  if (plan.version != version_) {
    return {cache_errc::kStalePlan, "the cache changed after the plan was made"};
  }
  tree_.expire_retention(now());
  ++tick_;
  // Lock every matched path first, so that evicting for one sequence never takes blocks
  // another sequence of the batch matched.
  for (const sequence_allocation& a : plan.seqs) {
    if (!a.admitted()) continue;
    sequence_state s;
    s.ns = config_.enable_prefix_caching ? intern_namespace(a.cache_namespace) : 0;
    s.retention = a.retention;
    s.num_cached_tokens = a.num_cached_tokens;
    s.block_table = a.cached_blocks;
    s.path = a.cached_blocks;
    for (std::size_t i = 0; i < s.path.size(); ++i) {
      tree_.lock(to_block_id(s.path[i]));
      tree_.touch(to_block_id(s.path[i]), tick_, true);
      apply_retention(s, s.path[i], static_cast<int>(i));
    }
    if (config_.enable_prefix_caching) {
      counters_.prefix_queries_tokens += static_cast<std::uint64_t>(a.num_prompt_tokens);
      counters_.prefix_hits_tokens += static_cast<std::uint64_t>(a.num_cached_tokens);
    }
    seqs_.emplace(a.id, std::move(s));
  }
  cache_status result = cache_status::ok();
  for (const sequence_allocation& a : plan.seqs) {
    if (!a.admitted() || a.num_new_blocks == 0) continue;
    auto st = allocate_blocks(a.num_new_blocks, &seqs_[a.id].block_table);
    if (!st && result) {  // the plan's accounting makes this unreachable
      result = {cache_errc::kInvariantViolated, "apply: " + st.message()};
    }
  }
  return mutated(std::move(result));
}

allocation_plan kv_cache_manager::allocate(std::span<const sequence_request> batch,
                                           admission_order order) {
  allocation_plan plan = plan_allocation(batch, order);
  (void)apply(plan);  // cannot be stale: nothing ran in between
  return plan;
}

void kv_cache_manager::apply_retention(const sequence_state& s, std::int32_t node,
                                       int block_index) {
  if (!s.retention) return;
  if ((block_index + 1) * config_.block_size > s.retention->num_tokens) return;
  auto t = now();
  std::optional<std::chrono::nanoseconds> expiry;
  if (s.retention->duration) expiry = t + *s.retention->duration;
  tree_.retain(to_block_id(node), s.retention->priority, expiry, t);
}

cache_status kv_cache_manager::allocate_blocks(int n, std::vector<std::int32_t>* out) {
  if (n > num_available_blocks()) {
    return {cache_errc::kOutOfBlocks, "need " + std::to_string(n) + " blocks, " +
                                          std::to_string(num_available_blocks()) + " available"};
  }
  while (pool_.num_free() < n) {
    auto e = tree_.evict_one();
    if (!e) return {cache_errc::kInvariantViolated, "no eviction candidate"};
    pool_.free(e->block);
    ++counters_.evictions[static_cast<int>(e->reason)];
  }
  for (int i = 0; i < n; ++i) out->push_back(to_index(*pool_.allocate()));
  return cache_status::ok();
}

// ---- running sequences ---------------------------------------------------------------------

int kv_cache_manager::blocks_needed_to_grow(seq_id seq, int num_tokens) const {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return -1;
  return std::max(0,
                  blocks_for_tokens(num_tokens) - static_cast<int>(it->second.block_table.size()));
}

cache_status kv_cache_manager::grow(seq_id seq, int num_tokens) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) {
    return {cache_errc::kUnknownSequence, "grow: unknown sequence " + std::to_string(seq)};
  }
  int need = blocks_for_tokens(num_tokens) - static_cast<int>(it->second.block_table.size());
  if (need <= 0) return cache_status::ok();
  tree_.expire_retention(now());
  auto st = allocate_blocks(need, &it->second.block_table);
  if (!st) return st;
  return mutated();
}

cache_status kv_cache_manager::commit(seq_id seq, std::span<const std::int32_t> tokens) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) {
    return {cache_errc::kUnknownSequence, "commit: unknown sequence " + std::to_string(seq)};
  }
  sequence_state& s = it->second;
  const auto bs = static_cast<std::size_t>(config_.block_size);
  std::size_t full = tokens.size() / bs;
  if (tokens.size() > s.block_table.size() * bs) {
    return {cache_errc::kInvalidArgument,
            "commit: " + std::to_string(tokens.size()) + " tokens exceed the sequence's blocks"};
  }
  if (!config_.enable_prefix_caching || full <= s.path.size()) return cache_status::ok();
  ++tick_;
  for (std::size_t i = s.path.size(); i < full; ++i) {
    std::optional<block_id> parent;
    if (!s.path.empty()) parent = to_block_id(s.path.back());
    insert_result r = tree_.insert_and_lock(parent, s.ns, tokens.subspan(i * bs, bs),
                                            to_block_id(s.block_table[i]), tick_);
    if (r.inserted) ++counters_.num_blocks_committed;
    s.path.push_back(to_index(r.node));
    apply_retention(s, to_index(r.node), static_cast<int>(i));
  }
  return mutated();
}

cache_status kv_cache_manager::release(seq_id seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) {
    return {cache_errc::kUnknownSequence, "release: unknown sequence " + std::to_string(seq)};
  }
  const sequence_state& s = it->second;
  // Leaf first, so that under lru-any no interior block is briefly the only candidate.
  for (std::size_t i = s.path.size(); i-- > 0;) tree_.unlock(to_block_id(s.path[i]));
  for (std::size_t i = 0; i < s.block_table.size(); ++i) {
    if (i < s.path.size() && s.block_table[i] == s.path[i]) continue;  // in the tree
    pool_.free(to_block_id(s.block_table[i]));
  }
  seqs_.erase(it);
  return mutated();
}

void kv_cache_manager::reset_prefix_cache() {
  while (auto e = tree_.evict_one()) {
    pool_.free(e->block);
    ++counters_.evictions[static_cast<int>(eviction_reason::kReset)];
  }
  (void)mutated();
}

cache_status kv_cache_manager::mutated(cache_status result) {
  ++version_;
  if (config_.debug_check_invariants && result) {
    cache_status st = check_invariants();
    assert(st.is_ok() && "kv_cache_manager invariant violated");
    if (!st) return st;
  }
  return result;
}

// ---- queries -------------------------------------------------------------------------------

std::span<const std::int32_t> kv_cache_manager::block_table(seq_id seq) const {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return {};
  return it->second.block_table;
}

int kv_cache_manager::num_cached_tokens(seq_id seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? 0 : it->second.num_cached_tokens;
}

int kv_cache_manager::capacity_tokens(seq_id seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? 0
                           : static_cast<int>(it->second.block_table.size()) * config_.block_size;
}

int kv_cache_manager::num_committed_tokens(seq_id seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? 0 : static_cast<int>(it->second.path.size()) * config_.block_size;
}

kv_cache_stats kv_cache_manager::stats() const {
  kv_cache_stats s = counters_;
  s.num_blocks_total = config_.num_blocks;
  s.num_blocks_free = pool_.num_free();
  s.num_blocks_cached = tree_.num_unlocked();
  s.num_blocks_locked = pool_.num_used() - tree_.num_unlocked();
  s.num_blocks_orphaned = tree_.num_orphaned();
  s.num_blocks_retained = tree_.num_retained();
  s.num_blocks_cached_retained = tree_.num_unlocked_retained();
  s.num_sequences = static_cast<std::int64_t>(seqs_.size());
  s.num_blocks_orphaned_total = tree_.num_orphaned_total();
  return s;
}

std::size_t kv_cache_manager::memory_bytes_without_tokens() const {
  return sizeof(*this) + pool_.memory_bytes() + tree_.memory_bytes_without_tokens();
}

cache_status kv_cache_manager::check_invariants() const {
  auto broken = [](const std::string& what) {
    return cache_status{cache_errc::kInvariantViolated, "kv_cache_manager: " + what};
  };
  if (auto st = tree_.check_invariants(); !st) return st;
  const auto n = static_cast<std::size_t>(config_.num_blocks);
  std::vector<int> path_locks(n, 0);
  std::vector<int> owners(n, 0);
  for (const auto& [id, s] : seqs_) {
    if (s.path.size() > s.block_table.size()) return broken("path longer than block table");
    for (std::size_t i = 0; i < s.path.size(); ++i) {
      block_id b = to_block_id(s.path[i]);
      if (!tree_.contains(b) || !tree_.is_reachable(b)) return broken("path node not reachable");
      auto parent = tree_.parent(b);
      if (i == 0 ? parent.has_value() : (!parent || to_index(*parent) != s.path[i - 1])) {
        return broken("path is not a chain from the root");
      }
      ++path_locks[static_cast<std::size_t>(s.path[i])];
    }
    for (std::size_t i = 0; i < s.block_table.size(); ++i) {
      std::int32_t b = s.block_table[i];
      if (b < 0 || static_cast<std::size_t>(b) >= n) return broken("block id out of range");
      if (i < s.path.size() && b == s.path[i]) continue;
      if (config_.enable_prefix_caching && tree_.contains(to_block_id(b))) {
        return broken("private block is in the tree");
      }
      ++owners[static_cast<std::size_t>(b)];
    }
  }
  std::int64_t free = 0, cached = 0, locked = 0;
  for (std::size_t i = 0; i < n; ++i) {
    block_id b = to_block_id(static_cast<std::int32_t>(i));
    bool used = pool_.in_use(b);
    bool in_tree = config_.enable_prefix_caching && tree_.contains(b);
    if (!used) {
      if (in_tree || owners[i] != 0 || path_locks[i] != 0) return broken("free block in use");
      ++free;
    } else if (in_tree) {
      if (owners[i] != 0) return broken("tree block also private");
      if (tree_.lock_count(b) != path_locks[i]) {
        return broken("lock count " + std::to_string(tree_.lock_count(b)) + " of block " +
                      std::to_string(i) + " != " + std::to_string(path_locks[i]) +
                      " live sequences on its path");
      }
      (path_locks[i] == 0 ? cached : locked) += 1;
    } else {
      if (owners[i] != 1) return broken("block in use owned by " + std::to_string(owners[i]));
      ++locked;
    }
  }
  kv_cache_stats st = stats();
  if (free != st.num_blocks_free || cached != st.num_blocks_cached ||
      locked != st.num_blocks_locked) {
    return broken("stats disagree with the blocks");
  }
  if (free + cached + locked != st.num_blocks_total) return broken("blocks do not add up");
  if (seqs_.empty() && locked != 0) return broken("locked blocks with no live sequence");
  return cache_status::ok();
}

}  // namespace kvserve
