#include "actors/step_allocator.hpp"

#include <algorithm>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace kvserve {

status to_status(const cache_status& s) {
  switch (s.code()) {
    case cache_errc::kOk:
      return status::ok();
    case cache_errc::kOutOfBlocks:
      return {status_code::kOutOfMemory, s.message()};
    case cache_errc::kInvalidConfig:
    case cache_errc::kInvalidArgument:
      return {status_code::kInvalidArgument, s.message()};
    default:
      return {status_code::kInternal, s.message()};
  }
}

result<std::unique_ptr<step_allocator>> step_allocator::create(kv_cache_config config) {
  auto cache = kv_cache_manager::create(std::move(config));
  if (!cache) return to_status(cache.error());
  return std::unique_ptr<step_allocator>(new step_allocator(std::move(cache.value())));
}

block_grant step_allocator::granted(seq_id id, int num_cached_tokens, int from_block) const {
  block_grant g;
  g.id = id;
  g.status = grant_status::kGranted;
  g.num_cached_tokens = num_cached_tokens;
  auto table = cache_->block_table(id);
  const std::size_t from =
      std::min(table.size(), static_cast<std::size_t>(std::max(from_block, 0)));
  g.block_table.assign(table.begin() + from, table.end());
  return g;
}

namespace {
std::optional<retention_config> retention_of(const block_request& r) {
  if (r.retention_num_tokens <= 0) return std::nullopt;
  retention_config c;
  c.num_tokens = r.retention_num_tokens;
  c.priority = r.retention_priority;
  if (r.retention_duration_ms >= 0) c.duration = std::chrono::milliseconds(r.retention_duration_ms);
  return c;
}

sequence_request to_sequence_request(const block_request& r) {
  sequence_request q;
  q.id = r.id;
  q.tokens = std::span<const std::int32_t>(r.tokens);
  q.num_tokens = -1;
  q.cache_namespace = r.cache_namespace;
  q.retention = retention_of(r);
  return q;
}
}  // namespace

void step_allocator::commit_deferred_and_release(seq_id id) {
  auto it = seqs_.find(id);
  if (it != seqs_.end()) {
    const sequence_info& info = it->second;
    // --prefix-commit finish: the victim's computed full blocks enter the tree now, so its
    // recompute (and anyone else) can match them, as in early mode.
    if (info.deferred && info.num_computed <= static_cast<int>(info.tokens.size())) {
      (void)cache_->commit(id,
                           std::span<const std::int32_t>(info.tokens.data(), info.num_computed));
    }
    seqs_.erase(it);
  }
  if (cache_->contains(id)) (void)cache_->release(id);
}

cache_step_reply step_allocator::fail(const cache_step_request& request, status error) noexcept {
  cache_step_reply reply;
  reply.step_index = request.step_index;
  reply.error = std::move(error);
  try {
    for (auto& [id, info] : seqs_) {
      if (cache_->contains(id)) (void)cache_->release(id);
    }
    seqs_.clear();
    for (const auto* list : {&request.grows, &request.admits}) {
      for (const block_request& r : *list) {
        if (cache_->contains(r.id)) (void)cache_->release(r.id);
      }
    }
    for (seq_id id : request.running) {
      if (cache_->contains(id)) (void)cache_->release(id);
    }
    reply.stats = stats();
  } catch (...) {
    // Nothing more can be done here; the reply still carries the error.
  }
  return reply;
}

cache_step_reply step_allocator::apply(const cache_step_request& request) {
  if (request.release_all) return fail(request, status::ok());
  cache_step_reply reply;
  reply.step_index = request.step_index;
  if (fault_hook_) fault_hook_("commits");
  for (const block_commit& c : request.commits) {
    auto it = seqs_.find(c.id);
    if (it == seqs_.end() || !cache_->contains(c.id)) continue;
    sequence_info& info = it->second;
    if (!cache_->config().enable_prefix_caching) continue;
    std::vector<std::int32_t>& known = info.tokens;
    if (static_cast<std::size_t>(c.start) > known.size()) continue;  // a gap: skip, never guess
    known.resize(c.start);
    known.insert(known.end(), c.tokens.begin(), c.tokens.end());
    info.num_computed = static_cast<int>(known.size());
    if (c.defer) {
      info.deferred = true;
    } else {
      (void)cache_->commit(c.id, known);
      info.deferred = false;
    }
  }
  for (seq_id id : request.releases) {
    if (cache_->contains(id)) (void)cache_->release(id);
    seqs_.erase(id);
  }
  if (fault_hook_) fault_hook_("grows");

  // Growth, most important first; when blocks run out, preempt from the back of the running
  // order. Sequences that need no block are not in `grows` but may still be victims.
  const std::size_t n = request.grows.size();
  order_.clear();
  if (request.running.empty()) {
    for (const block_request& r : request.grows) order_.push_back(r.id);
  } else {
    order_.assign(request.running.begin(), request.running.end());
  }
  // Indices >= tail of order_ are preempted, those below are not: victims always come from
  // the back, and a sequence preempts itself only when nobody behind it is left.
  std::size_t tail = order_.size();
  std::size_t pos = 0;  // position in order_ of the current grow
  bool any_preempted = false;
  auto preempt = [&](seq_id id) {
    commit_deferred_and_release(id);
    any_preempted = true;
  };
  auto preempted_grant = [](seq_id id) {
    block_grant g;
    g.id = id;
    g.status = grant_status::kPreempted;
    return g;
  };
  reply.grows.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const block_request& r = request.grows[i];
    while (pos < order_.size() && order_[pos] != r.id) ++pos;
    if (pos == order_.size()) {
      // Not in the running order (a malformed request): grow it, never pick it as a victim.
      pos = 0;
    } else if (pos >= tail) {
      reply.grows.push_back(preempted_grant(r.id));  // preempted already as a victim
      continue;
    }
    const bool ordered = pos < order_.size() && order_[pos] == r.id;
    for (;;) {
      cache_status st = cache_->grow(r.id, r.num_tokens);
      if (st) {
        reply.grows.push_back(granted(r.id, 0, r.num_known_blocks));
        break;
      }
      if (st.code() != cache_errc::kOutOfBlocks) {
        if (cache_->contains(r.id)) (void)cache_->release(r.id);
        seqs_.erase(r.id);
        block_grant g;
        g.id = r.id;
        g.status = grant_status::kFailed;
        g.message = st.message();
        reply.grows.push_back(std::move(g));
        break;
      }
      if (ordered && tail > pos + 1) {
        --tail;
        const seq_id victim = order_[tail];
        preempt(victim);
        // A victim further down `grows` gets its kPreempted grant when the loop reaches it.
        bool in_grows = false;
        for (std::size_t j = i + 1; j < n && !in_grows; ++j) {
          in_grows = request.grows[j].id == victim;
        }
        if (!in_grows) reply.preempted.push_back(victim);
        continue;
      }
      if (ordered) tail = pos;
      preempt(r.id);
      reply.grows.push_back(preempted_grant(r.id));
      break;
    }
  }

  // Admissions, unless this step had to preempt: no newcomer overtakes a victim.
  if (fault_hook_) fault_hook_("admits");
  reply.admits.reserve(request.admits.size());
  if (any_preempted || request.admits.empty()) {
    for (const block_request& r : request.admits) {
      block_grant g;
      g.id = r.id;
      g.status = grant_status::kDeferred;
      reply.admits.push_back(std::move(g));
    }
  } else {
    std::vector<sequence_request> batch;
    batch.reserve(request.admits.size());
    for (const block_request& r : request.admits) batch.push_back(to_sequence_request(r));
    allocation_plan plan = cache_->allocate(batch, admission_order::kStopAtFirstFailure);
    for (std::size_t i = 0; i < request.admits.size(); ++i) {
      const sequence_allocation& a = plan.seqs[i];
      block_grant g;
      g.id = request.admits[i].id;
      switch (a.status) {
        case admission_status::kAdmitted: {
          g = granted(g.id, a.num_cached_tokens);
          sequence_info& info = seqs_[g.id];
          info = sequence_info{};
          if (cache_->config().enable_prefix_caching) info.tokens = request.admits[i].tokens;
          info.num_computed = a.num_cached_tokens;
          break;
        }
        case admission_status::kOutOfBlocks:
        case admission_status::kNotConsidered:
          g.status = grant_status::kDeferred;
          break;
        default:
          g.status = grant_status::kFailed;
          g.message = std::string("cannot allocate KV blocks: ") + to_string(a.status);
          break;
      }
      reply.admits.push_back(std::move(g));
    }
  }

  reply.probes.reserve(request.probes.size());
  for (const block_request& r : request.probes) {
    sequence_request q = to_sequence_request(r);
    allocation_plan plan = cache_->plan_allocation(std::span<const sequence_request>(&q, 1));
    block_grant g;
    g.id = r.id;
    g.status = grant_status::kDeferred;
    g.num_cached_tokens = plan.seqs.empty() ? 0 : plan.seqs[0].num_cached_tokens;
    reply.probes.push_back(std::move(g));
  }
  reply.stats = stats();
  return reply;
}

cache_stats_snapshot step_allocator::stats() const {
  const kv_cache_stats s = cache_->stats();
  cache_stats_snapshot out;
  out.num_blocks_total = s.num_blocks_total;
  out.num_blocks_free = s.num_blocks_free;
  out.num_blocks_cached = s.num_blocks_cached;
  out.num_blocks_locked = s.num_blocks_locked;
  out.prefix_queries_tokens = s.prefix_queries_tokens;
  out.prefix_hits_tokens = s.prefix_hits_tokens;
  out.evictions_capacity = s.evictions_by(eviction_reason::kCapacity);
  out.evictions_retained = s.evictions_by(eviction_reason::kRetained);
  out.evictions_orphan = s.evictions_by(eviction_reason::kOrphan);
  out.evictions_reset = s.evictions_by(eviction_reason::kReset);
  return out;
}

}  // namespace kvserve
