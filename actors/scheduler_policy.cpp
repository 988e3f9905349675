#include "actors/scheduler_policy.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace kvserve {

namespace {
constexpr std::uint64_t kProbeIntervalSteps = 16;

template <class T>
void erase_value(std::vector<T>& v, const T& x) {
  auto it = std::find(v.begin(), v.end(), x);
  if (it != v.end()) v.erase(it);
}
}  // namespace

scheduler_policy::scheduler_policy(scheduler_config config) : config_(std::move(config)) {
  if (config_.no_kv_cache) config_.enable_prefix_caching = false;
}

status scheduler_policy::add(sequence_submission sub, clock::time_point now) {
  const int prompt_len = static_cast<int>(sub.prompt.size());
  if (prompt_len == 0) return {status_code::kInvalidArgument, "the prompt is empty"};
  if (sub.stop.max_tokens < 1) {
    return {status_code::kInvalidArgument, "max_tokens must be at least 1"};
  }
  if (config_.vocab_size > 0) {
    for (std::int32_t t : sub.prompt) {
      if (t < 0 || t >= config_.vocab_size) {
        return {status_code::kInvalidArgument, "prompt token id " + std::to_string(t) +
                                                   " is outside the vocabulary [0, " +
                                                   std::to_string(config_.vocab_size) + ")"};
      }
    }
  }
  const int total = prompt_len + sub.stop.max_tokens;
  if (total > config_.max_model_len) {
    return {status_code::kInvalidArgument,
            "prompt (" + std::to_string(prompt_len) + " tokens) + max_tokens (" +
                std::to_string(sub.stop.max_tokens) + ") exceeds max_model_len (" +
                std::to_string(config_.max_model_len) + ")"};
  }
  if (config_.num_blocks > 0) {
    const int blocks = (total + config_.block_size - 1) / config_.block_size;
    if (blocks > config_.num_blocks) {
      return {status_code::kInvalidArgument, "the request needs " + std::to_string(blocks) +
                                                 " KV blocks but the pool has " +
                                                 std::to_string(config_.num_blocks)};
    }
  }
  if (index_.count(sub.id) != 0) {
    return {status_code::kInvalidArgument, "request id " + std::to_string(sub.id) + " is live"};
  }
  if (static_cast<int>(waiting_.size()) >= config_.max_waiting_requests) {
    return {status_code::kOverloaded, "the waiting queue is full (" +
                                          std::to_string(config_.max_waiting_requests) +
                                          " requests); try again later"};
  }
  slot_index slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<slot_index>(slots_.size());
    slots_.emplace_back();
  }
  sequence& s = slots_[slot];
  // A fresh sequence that keeps the capacity of the slot's vectors.
  std::vector<std::int32_t> tokens = std::move(s.tokens);
  std::vector<std::int32_t> table = std::move(s.block_table);
  s = sequence{};
  tokens.assign(sub.prompt.begin(), sub.prompt.end());
  table.clear();
  s.tokens = std::move(tokens);
  s.block_table = std::move(table);
  s.table_epoch = ++num_table_epochs_;
  s.flat_tokens = sub.sampling.logprobs < 0 && sub.prompt_logprobs < 0;
  s.sub = std::move(sub);
  s.live = true;
  s.arrival = now;
  s.order = next_order_++;
  index_.emplace(s.sub.id, slot);
  waiting_.push_back(slot);
  return status::ok();
}

scheduler_policy::sequence* scheduler_policy::find(seq_id id) {
  auto it = index_.find(id);
  return it == index_.end() ? nullptr : &slots_[it->second];
}

const scheduler_policy::sequence* scheduler_policy::find(seq_id id) const {
  auto it = index_.find(id);
  return it == index_.end() ? nullptr : &slots_[it->second];
}

scheduler_policy::slot_index scheduler_policy::resolve(const std::vector<slot_index>& slots,
                                                       std::size_t i, seq_id id) const {
  if (i < slots.size()) {
    const sequence& s = slots_[slots[i]];
    if (s.live && s.sub.id == id) return slots[i];
  }
  auto it = index_.find(id);
  return it == index_.end() ? kNoSlot : it->second;
}

bool scheduler_policy::before(const sequence& a, const sequence& b) const {
  if (a.sub.priority != b.sub.priority) return a.sub.priority < b.sub.priority;
  return a.order < b.order;
}

void scheduler_policy::ordered_waiting(clock::time_point now, std::vector<slot_index>& ids) const {
  ids.assign(waiting_.begin(), waiting_.end());
  if (config_.policy == scheduling_policy::kFcfs) {
    std::sort(ids.begin(), ids.end(),
              [&](slot_index a, slot_index b) { return before(slots_[a], slots_[b]); });
    return;
  }
  // lpm: a request older than the age bound goes first (oldest first), so nobody starves;
  // then priority, then the longest cached prefix, then arrival.
  auto aged = [&](const sequence& s) { return now - s.arrival >= config_.lpm_age_bound; };
  std::sort(ids.begin(), ids.end(), [&](slot_index ia, slot_index ib) {
    const sequence& a = slots_[ia];
    const sequence& b = slots_[ib];
    const bool aa = aged(a), ab = aged(b);
    if (aa != ab) return aa;
    if (aa) return a.order < b.order;
    if (a.sub.priority != b.sub.priority) return a.sub.priority < b.sub.priority;
    if (a.cached_estimate != b.cached_estimate) return a.cached_estimate > b.cached_estimate;
    return a.order < b.order;
  });
}

void scheduler_policy::insert_running(slot_index slot) {
  const sequence& s = slots_[slot];
  auto it = std::find_if(running_.begin(), running_.end(),
                         [&](slot_index other) { return before(s, slots_[other]); });
  running_.insert(it, slot);
}

void scheduler_policy::erase_running(slot_index slot) { erase_value(running_, slot); }
void scheduler_policy::erase_waiting(slot_index slot) { erase_value(waiting_, slot); }

sequence_event scheduler_policy::finished_event(seq_id id, std::string reason,
                                                std::string stop_reason) {
  sequence_event e;
  e.type = sequence_event::kind::kFinished;
  e.id = id;
  e.finish_reason = std::move(reason);
  e.stop_reason = std::move(stop_reason);
  return e;
}

sequence_event scheduler_policy::error_event(seq_id id, status error) {
  sequence_event e;
  e.type = sequence_event::kind::kError;
  e.id = id;
  e.error = std::move(error);
  return e;
}

void scheduler_policy::finish(slot_index slot, sequence_event final_event, bool commit,
                              std::vector<sequence_event>& immediate) {
  sequence& s = slots_[slot];
  if (!s.live) return;
  const seq_id id = s.sub.id;
  if (!s.block_table.empty()) {
    const int full = s.num_computed / config_.block_size;
    // Finish mode: the blocks sent so far were deferred; this commit inserts all of them.
    const bool deferred = !config_.prefix_commit_early && s.num_committed_blocks > 0;
    if (commit && config_.enable_prefix_caching && (full > s.num_committed_blocks || deferred)) {
      pending_commits_.push_back(make_commit(s));
    }
    pending_releases_.push_back(id);
    pending_finals_.push_back(std::move(final_event));
  } else if (std::find(pending_releases_.begin(), pending_releases_.end(), id) !=
             pending_releases_.end()) {
    pending_finals_.push_back(std::move(final_event));  // no_kv_cache: temporary blocks
  } else {
    immediate.push_back(std::move(final_event));
  }
  erase_running(slot);
  erase_waiting(slot);
  index_.erase(id);
  s.live = false;
  s.running = false;
  s.in_alloc = false;
  s.num_exec = 0;
  s.removal.reset();
  free_slots_.push_back(slot);
}

std::vector<sequence_event> scheduler_policy::remove(seq_id id, const std::string& reason,
                                                     const std::string& stop_reason) {
  std::vector<sequence_event> immediate;
  auto it = index_.find(id);
  if (it == index_.end()) return immediate;
  sequence& s = slots_[it->second];
  if (s.busy()) {
    if (!s.removal) s.removal = std::make_pair(reason, stop_reason);
    return immediate;
  }
  finish(it->second, finished_event(id, reason, stop_reason), /*commit=*/true, immediate);
  return immediate;
}

bool scheduler_policy::has_work() const {
  return !running_.empty() || !waiting_.empty() || !pending_commits_.empty() ||
         !pending_releases_.empty() || !pending_finals_.empty();
}

std::optional<int> scheduler_policy::num_generated(seq_id id) const {
  const sequence* s = find(id);
  if (s == nullptr) return std::nullopt;
  return s->num_generated();
}

cache_step_request scheduler_policy::plan_allocations(clock::time_point now) {
  cache_step_request req;
  req.step_index = ++step_index_;
  req.commits = std::move(pending_commits_);
  pending_commits_.clear();
  req.releases = std::move(pending_releases_);
  pending_releases_.clear();
  for (auto& e : pending_finals_) inflight_finals_.push_back(std::move(e));
  pending_finals_.clear();
  step_grows_.clear();
  step_admits_.clear();
  step_probes_.clear();

  auto make_admit = [&](const sequence& s) {
    block_request b;
    b.id = s.sub.id;
    b.tokens = s.tokens;
    b.cache_namespace = s.sub.cache_salt;
    if (s.sub.prompt_logprobs >= 0) {
      // Prompt logprobs need every prompt position computed: a namespace of its own keeps
      // this sequence from matching (and others from matching it).
      b.cache_namespace = "\x01prompt-logprobs:" + std::to_string(s.sub.id);
    }
    b.retention_num_tokens = s.sub.retention_num_tokens;
    b.retention_priority = s.sub.retention_priority;
    b.retention_duration_ms = s.sub.retention_duration_ms;
    return b;
  };

  int budget = config_.max_num_batched_tokens;
  int count = 0;
  bool room = true;
  if (config_.no_kv_cache) {
    // Every step recomputes whole sequences in temporary blocks: running ones are admitted
    // afresh, unchunked; at least one runs even when it exceeds the budget.
    for (slot_index slot : running_) {
      sequence& s = slots_[slot];
      const int need = static_cast<int>(s.tokens.size());
      if (count > 0 && need > budget) {
        room = false;
        break;
      }
      req.admits.push_back(make_admit(s));
      step_admits_.push_back(slot);
      s.in_alloc = true;
      budget -= need;
      ++count;
    }
  } else {
    req.running.reserve(running_.size());
    for (slot_index slot : running_) {
      sequence& s = slots_[slot];
      // Overlap: a sequence in the running step is sized for the token it will sample, and
      // left out when that token surely ends it (no blocks grown for nothing), or when it was
      // removed (it ends once that step's result is applied).
      int num_tokens = static_cast<int>(s.tokens.size());
      int num_computed = s.num_computed;
      if (s.in_exec()) {
        if (s.removal) continue;
        num_computed += s.exec_chunks();
        const int pending = s.exec_samples();
        if (pending > 0) {
          if (s.num_generated() + pending >= s.sub.stop.max_tokens ||
              num_tokens + pending >= config_.max_model_len) {
            ++count;
            continue;
          }
          num_tokens += pending;
        }
      }
      req.running.push_back(s.sub.id);
      const int num_known_blocks = static_cast<int>(s.block_table.size());
      if (num_tokens > num_known_blocks * config_.block_size) {
        block_request b;
        b.id = s.sub.id;
        b.num_tokens = num_tokens;
        b.num_known_blocks = num_known_blocks;
        req.grows.push_back(std::move(b));
        step_grows_.push_back(slot);
      }
      s.in_alloc = true;
      budget -= std::min(num_tokens - num_computed, std::max(budget, 0));
      ++count;
    }
  }
  if (room && budget > 0 && !waiting_.empty() && count < config_.max_num_seqs) {
    ordered_waiting(now, waiting_scratch_);
    for (slot_index slot : waiting_scratch_) {
      if (count >= config_.max_num_seqs || budget <= 0) break;
      sequence& s = slots_[slot];
      if (s.busy()) continue;  // already part of a request whose reply is not applied yet
      const int need = static_cast<int>(s.tokens.size());
      if (config_.no_kv_cache && count > 0 && need > budget) break;
      req.admits.push_back(make_admit(s));
      step_admits_.push_back(slot);
      s.in_alloc = true;
      budget -= std::min(need, budget);
      ++count;
    }
  }
  if (config_.policy == scheduling_policy::kLpm && config_.enable_prefix_caching) {
    for (slot_index slot : waiting_) {
      if (static_cast<int>(req.probes.size()) >= config_.lpm_probes_per_step) break;
      sequence& s = slots_[slot];
      if (s.busy() || s.sub.prompt_logprobs >= 0) continue;
      if (s.probed_step != 0 && req.step_index - s.probed_step < kProbeIntervalSteps) continue;
      s.probed_step = req.step_index;
      req.probes.push_back(make_admit(s));
      step_probes_.push_back(slot);
    }
  }
  return req;
}

block_commit scheduler_policy::make_commit(const sequence& s) const {
  block_commit c;
  c.id = s.sub.id;
  c.start = s.num_committed_blocks * config_.block_size;
  c.tokens.assign(s.tokens.begin() + c.start, s.tokens.begin() + s.num_computed);
  return c;
}

void scheduler_policy::reset_table(sequence& s) {
  s.block_table.clear();
  s.table_epoch = ++num_table_epochs_;
}

void scheduler_policy::fill_step(sequence_step& st, const sequence& s, int computed, int pending,
                                 int chunk, const plan_entry* known) const {
  // Every field is set: `st` may be a recycled entry of an earlier plan (its vectors keep
  // their capacity, so a steady decode batch allocates nothing here).
  // A step in flight (planned ahead of its result) moves the start, and the token it samples
  // is this step's input, which the backend takes from it.
  const int known_tokens = static_cast<int>(s.tokens.size());
  st.id = s.sub.id;
  st.input_from_last_sample = computed >= known_tokens;
  if (st.input_from_last_sample) {
    st.tokens.resize(1);
    st.tokens[0] = 0;       // placeholder
  } else if (chunk == 1) {  // decode: no call into vector's range assignment
    st.tokens.resize(1);
    st.tokens[0] = s.tokens[static_cast<std::size_t>(computed)];
  } else {
    st.tokens.assign(s.tokens.begin() + computed, s.tokens.begin() + computed + chunk);
  }
  st.start_position = computed;
  if (known != nullptr && known->id == s.sub.id && known->table_epoch == s.table_epoch &&
      known->table_size <= s.block_table.size() && st.block_table.size() == known->table_size) {
    // The entry holds this sequence's table of an earlier step: tables only grow at the end
    // until reset (which changes the epoch), so only the new blocks are copied.
    if (known->table_size < s.block_table.size()) {
      st.block_table.insert(st.block_table.end(), s.block_table.begin() + known->table_size,
                            s.block_table.end());
    }
  } else {
    st.block_table.assign(s.block_table.begin(), s.block_table.end());
  }
  const int end = computed + chunk;
  const int generated = s.num_generated() + pending;
  st.sample = end == known_tokens + pending;
  st.sampling = s.sub.sampling;
  st.penalty_prompt_tokens.clear();
  st.penalty_output_tokens.clear();
  if (st.sampling.uses_penalties()) {
    // Without the pending token: the backend appends it (model/backend.hpp).
    st.penalty_prompt_tokens.assign(s.sub.prompt.begin(), s.sub.prompt.end());
    st.penalty_output_tokens.assign(s.tokens.begin() + s.sub.prompt.size(), s.tokens.end());
  }
  st.suppressed_tokens.clear();
  if (st.sample && generated < s.sub.stop.min_tokens) {
    st.suppressed_tokens = s.sub.stop.suppressed_tokens(generated);
  }
  st.return_logits = logits_mode::kNone;
  st.prompt_logprobs = -1;
  st.next_prompt_token.reset();
  const int prompt_len = static_cast<int>(s.sub.prompt.size());
  if (s.sub.prompt_logprobs >= 0 && generated == 0 && computed < prompt_len) {
    st.prompt_logprobs = s.sub.prompt_logprobs;
    if (end < prompt_len) st.next_prompt_token = s.sub.prompt[end];
  }
}

void scheduler_policy::recycle(step_plan&& plan) {
  if (plan.step_index == applied_step_ && plan.seqs.size() == applied_entries_.size()) {
    // The plan applied last: its entries are known, so the next plan updates them.
    recycled_ = std::move(plan);
    recycled_entries_.swap(applied_entries_);
  } else if (plan.seqs.size() > recycled_.seqs.size()) {
    recycled_ = std::move(plan);
    recycled_entries_.clear();
  }
  applied_entries_.clear();
}

void scheduler_policy::retire_oldest_step() {
  inflight_step& oldest = inflight_[0];
  applied_step_ = oldest.step;
  applied_entries_.swap(oldest.entries);
  std::swap(inflight_[0], inflight_[1]);
  --num_inflight_;
}

void scheduler_policy::preempt(slot_index slot, std::vector<sequence_event>& immediate) {
  sequence& s = slots_[slot];
  if (!s.live || !s.running) return;
  // Recompute later: the committed blocks stay cached, so the recompute mostly hits.
  erase_running(slot);
  s.running = false;
  s.in_alloc = false;
  s.num_computed = 0;
  s.num_committed_blocks = 0;
  reset_table(s);
  s.probed_step = 0;
  ++num_preemptions_;
  if (s.removal) {
    auto [reason, stop_reason] = *s.removal;
    finish(slot, finished_event(s.sub.id, reason, stop_reason), false, immediate);
  } else {
    waiting_.push_back(slot);
  }
}

planned_step scheduler_policy::apply_allocations(const cache_step_reply& reply) {
  if (num_inflight_ >= 2) {
    throw std::logic_error("apply_allocations with two steps in flight");
  }
  planned_step out;
  out.events = std::move(inflight_finals_);
  inflight_finals_.clear();
  std::vector<sequence_event>& immediate = out.events;

  for (std::size_t i = 0; i < reply.grows.size(); ++i) {
    const block_grant& g = reply.grows[i];
    const slot_index slot = resolve(step_grows_, i, g.id);
    if (slot == kNoSlot) continue;
    sequence& s = slots_[slot];
    if (g.status == grant_status::kGranted) {
      s.block_table.insert(s.block_table.end(), g.block_table.begin(), g.block_table.end());
    } else if (g.status == grant_status::kPreempted) {
      preempt(slot, immediate);
    } else {
      s.in_alloc = false;
      reset_table(s);  // the cache holds nothing for it after a failed growth
      finish(slot,
             error_event(g.id, {status_code::kInternal, "KV cache growth failed: " + g.message}),
             false, immediate);
    }
  }
  for (seq_id id : reply.preempted) {
    auto it = index_.find(id);
    if (it != index_.end()) preempt(it->second, immediate);
  }

  for (std::size_t i = 0; i < reply.admits.size(); ++i) {
    const block_grant& g = reply.admits[i];
    const slot_index slot = resolve(step_admits_, i, g.id);
    if (slot == kNoSlot) continue;
    sequence& s = slots_[slot];
    if (g.status == grant_status::kGranted) {
      if (!s.running) {
        erase_waiting(slot);
        insert_running(slot);
        s.running = true;
      }
      s.num_computed = g.num_cached_tokens;
      s.num_committed_blocks = g.num_cached_tokens / config_.block_size;
      s.block_table = g.block_table;
      s.table_epoch = ++num_table_epochs_;
      s.admitted_now = true;
      if (!s.accepted_sent) {
        s.accepted_sent = true;
        s.num_cached_prompt_tokens = g.num_cached_tokens;
        sequence_event e;
        e.type = sequence_event::kind::kAccepted;
        e.id = g.id;
        e.prompt_tokens = static_cast<int>(s.sub.prompt.size());
        e.cached_prompt_tokens = g.num_cached_tokens;
        immediate.push_back(std::move(e));
      }
    } else if (g.status == grant_status::kFailed) {
      s.in_alloc = false;
      reset_table(s);
      finish(slot, error_event(g.id, {status_code::kInvalidArgument, g.message}), false, immediate);
    } else {
      s.in_alloc = false;
    }
  }

  for (std::size_t i = 0; i < reply.probes.size(); ++i) {
    const slot_index slot = resolve(step_probes_, i, reply.probes[i].id);
    if (slot != kNoSlot) slots_[slot].cached_estimate = reply.probes[i].num_cached_tokens;
  }

  // Build the plan: sequences already running first (decode before new prefill), then the
  // ones admitted now, each in running order.
  int budget = config_.max_num_batched_tokens;
  inflight_step& planned = inflight_[static_cast<std::size_t>(num_inflight_)];
  planned.slots.clear();
  out.plan.seqs = std::move(recycled_.seqs);  // entries are overwritten, then trimmed
  recycled_.seqs.clear();
  entries_scratch_.clear();
  std::size_t used = 0;
  auto consider = [&](slot_index slot) {
    sequence& s = slots_[slot];
    if (!s.live || !s.in_alloc) return;
    const seq_id id = s.sub.id;
    if (s.removal) {
      s.in_alloc = false;
      if (s.in_exec()) return;  // finished when its step's result is applied
      auto [reason, stop_reason] = *s.removal;
      finish(slot, finished_event(id, reason, stop_reason), true, immediate);
      return;
    }
    // Past the step in flight, if any (asynchronous steps).
    const int computed = s.num_computed + s.exec_chunks();
    const int pending = s.exec_samples();
    const int remaining = static_cast<int>(s.tokens.size()) + pending - computed;
    int chunk = std::min(remaining, budget);
    if (config_.no_kv_cache) {
      chunk = remaining;
      if (used > 0 && chunk > budget) chunk = 0;
    }
    if (chunk <= 0) {
      s.in_alloc = false;
      if (config_.no_kv_cache && !s.block_table.empty()) {
        pending_releases_.push_back(id);
        reset_table(s);
        s.num_computed = 0;
      }
      return;
    }
    s.admitted_now = false;
    if (used == out.plan.seqs.size()) out.plan.seqs.emplace_back();
    sequence_step& step = out.plan.seqs[used++];
    fill_step(step, s, computed, pending, chunk,
              used - 1 < recycled_entries_.size() ? &recycled_entries_[used - 1] : nullptr);
    entries_scratch_.push_back(
        plan_entry{id, s.table_epoch, static_cast<std::uint32_t>(s.block_table.size())});
    const int prompt_len = static_cast<int>(s.sub.prompt.size());
    out.num_prompt_tokens += std::clamp(prompt_len - computed, 0, chunk);
    if (chunk == 1 && step.sample && step.start_position > 0) ++out.num_decode_seqs;
    s.in_alloc = false;
    s.exec[static_cast<std::size_t>(s.num_exec++)] =
        sequence::exec_entry{step_index_, chunk, step.sample};
    budget -= chunk;
    planned.slots.push_back(slot);
  };
  // consider() may finish a sequence (erasing it from running_): iterate over a copy (a
  // member, so its capacity is kept from step to step).
  order_scratch_.assign(running_.begin(), running_.end());
  admitted_scratch_.clear();
  for (slot_index slot : order_scratch_) {
    const sequence& s = slots_[slot];
    if (!s.live) continue;
    if (s.admitted_now) {
      admitted_scratch_.push_back(slot);
    } else {
      consider(slot);
    }
  }
  for (slot_index slot : admitted_scratch_) {
    sequence& s = slots_[slot];
    if (!s.live) continue;
    s.admitted_now = false;
    consider(slot);
  }
  // A deferred or preempted sequence may still carry a removal request.
  for (slot_index slot : step_admits_) {
    sequence& s = slots_[slot];
    if (s.live && s.removal && !s.busy()) {
      auto [reason, stop_reason] = *s.removal;
      finish(slot, finished_event(s.sub.id, reason, stop_reason), true, immediate);
    }
  }

  if (used == 0) {
    // Nothing to run: keep the memory for later. Entries may have been overwritten.
    recycled_.seqs = std::move(out.plan.seqs);
    out.plan.seqs.clear();
    recycled_entries_.clear();
  } else {
    out.plan.seqs.resize(used);
    planned.step = step_index_;
    planned.entries.swap(entries_scratch_);
    ++num_inflight_;
    recycled_entries_.clear();
  }
  out.plan.step_index = step_index_;
  return out;
}

std::vector<sequence_event> scheduler_policy::apply_result(const step_result& result) {
  std::vector<sequence_event> events;
  tokens_scratch_.clear();
  std::vector<sequence_event> others;
  apply_result(result, tokens_scratch_, others);
  events.reserve(tokens_scratch_.size() + others.size());
  for (const token_output& t : tokens_scratch_) {
    sequence_event e;
    e.type = sequence_event::kind::kTokens;
    e.id = t.id;
    e.tokens.push_back(t.token);
    events.push_back(std::move(e));
  }
  for (sequence_event& e : others) events.push_back(std::move(e));
  return events;
}

int scheduler_policy::apply_result(const step_result& result, std::vector<token_output>& tokens,
                                   std::vector<sequence_event>& events) {
  int num_sampled = 0;
  if (num_inflight_ == 0) return num_sampled;
  const inflight_step& step = inflight_[0];
  for (std::size_t i = 0; i < result.seqs.size(); ++i) {
    const sequence_result& r = result.seqs[i];
    if (r.sampled_token) ++num_sampled;
    const slot_index slot = resolve(step.slots, i, r.id);
    if (slot == kNoSlot) continue;
    sequence& s = slots_[slot];
    if (!s.in_exec() || s.exec[0].step != step.step) continue;
    // A sequence preempted since this step was planned (asynchronous steps) lost its KV but
    // keeps the token, which was computed with valid KV; it recomputes from there.
    if (s.running) s.num_computed += s.exec[0].chunk;
    s.pop_exec();
    if (s.removal) {
      auto [reason, stop_reason] = *s.removal;
      finish(slot, finished_event(r.id, reason, stop_reason), true, events);
      continue;
    }
    std::optional<finish_decision> fin;
    if (s.flat_tokens) {
      if (r.sampled_token) {
        s.tokens.push_back(*r.sampled_token);
        tokens.push_back(token_output{r.id, *r.sampled_token, slot});
      }
    } else {
      sequence_event e;
      e.type = sequence_event::kind::kTokens;
      e.id = r.id;
      if (s.sub.prompt_logprobs >= 0 && !r.prompt_logprobs.empty()) {
        const int prompt_len = static_cast<int>(s.sub.prompt.size());
        for (const auto& lp : r.prompt_logprobs) {
          if (s.num_prompt_logprobs_sent >= prompt_len - 1) break;
          e.prompt_logprobs.push_back(lp);
          ++s.num_prompt_logprobs_sent;
        }
      }
      if (r.sampled_token) {
        s.tokens.push_back(*r.sampled_token);
        e.tokens.push_back(*r.sampled_token);
        if (r.sampled_logprobs) e.logprobs.push_back(*r.sampled_logprobs);
      }
      if (!e.tokens.empty() || !e.prompt_logprobs.empty()) events.push_back(std::move(e));
    }
    if (r.sampled_token) {
      fin = s.sub.stop.check(*r.sampled_token, s.num_generated());
      if (!fin && static_cast<int>(s.tokens.size()) >= config_.max_model_len) {
        fin = finish_decision{"length", ""};
      }
    }
    if (fin) {
      // A step planned ahead that holds it computes one more token, which is dropped.
      finish(slot, finished_event(r.id, fin->reason, fin->stop_reason), true, events);
      continue;
    }
    if (!s.running) continue;  // preempted: nothing to commit
    if (config_.no_kv_cache) {
      pending_releases_.push_back(r.id);
      reset_table(s);
      s.num_computed = 0;
    } else if (config_.enable_prefix_caching) {
      // Early reuse: every block this step filled enters the prefix tree right away. With
      // --prefix-commit finish the cache manager only records it (deferred), and inserts it
      // if the sequence is preempted or when it finishes.
      const int full = s.num_computed / config_.block_size;
      if (full > s.num_committed_blocks) {
        pending_commits_.push_back(make_commit(s));
        pending_commits_.back().defer = !config_.prefix_commit_early;
        s.num_committed_blocks = full;
      }
    }
  }
  for (slot_index slot : step.slots) {  // sequences the backend returned no result for
    sequence& s = slots_[slot];
    if (!s.live || !s.in_exec() || s.exec[0].step != step.step) continue;
    finish(slot, error_event(s.sub.id, {status_code::kInternal, "the backend returned no result"}),
           false, events);
  }
  retire_oldest_step();
  last_step_failed_ = false;
  return num_sampled;
}

std::vector<sequence_event> scheduler_policy::abort_allocations(const status& error) {
  std::vector<sequence_event> events = std::move(inflight_finals_);
  inflight_finals_.clear();
  for (auto& e : pending_finals_) events.push_back(std::move(e));
  pending_finals_.clear();
  pending_commits_.clear();
  pending_releases_.clear();
  std::vector<std::pair<seq_id, slot_index>> doomed;
  for (slot_index slot = 0; slot < slots_.size(); ++slot) {
    sequence& s = slots_[slot];
    if (!s.live) continue;
    if (s.running || !s.block_table.empty()) {
      doomed.emplace_back(s.sub.id, slot);
    } else {
      s.in_alloc = false;  // waiting: held nothing, stays queued
      s.admitted_now = false;
    }
  }
  std::sort(doomed.begin(), doomed.end());
  for (auto [id, slot] : doomed) {
    reset_table(slots_[slot]);  // released by the cache manager already
    finish(slot, error_event(id, error), /*commit=*/false, events);
  }
  // A step in flight stays counted: its result still comes, and finds its sequences gone.
  step_grows_.clear();
  step_admits_.clear();
  step_probes_.clear();
  return events;
}

std::vector<sequence_event> scheduler_policy::fail_step(const status& error) {
  std::vector<sequence_event> events;
  if (num_inflight_ == 0) return events;
  const inflight_step& step = inflight_[0];
  for (slot_index slot : step.slots) {
    sequence& s = slots_[slot];
    if (!s.live || !s.in_exec() || s.exec[0].step != step.step) continue;
    finish(slot, error_event(s.sub.id, error), /*commit=*/false, events);
  }
  retire_oldest_step();
  last_step_failed_ = true;
  return events;
}

}  // namespace kvserve
