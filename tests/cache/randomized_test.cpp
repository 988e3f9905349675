// Randomised operation sequences against a deliberately naive reference model: plain vectors,
// linear scans, no hashing, no heap. After every operation the manager's invariants are checked
// and its tree, lock counts, block counts and decisions are compared with the model's.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <tuple>

#include "cache_test_util.hpp"

namespace kvserve {
namespace {

using namespace std::chrono_literals;

constexpr int kNumBlocks = 8;

/// The naive model. Semantics as documented in kv_cache_manager.hpp and prefix_tree.hpp.
class reference_cache {
 public:
  struct node {
    int parent = -1;  // block id, -1 at the root or when cut off
    int ns = 0;
    std::vector<std::int32_t> tokens;
    int lock = 0;
    std::uint64_t tick = 0;
    int priority = kDefaultRetentionPriority;
    std::optional<std::int64_t> expiry;
    std::uint32_t hits = 0;
    bool orphan = false;
  };
  struct seq {
    std::vector<int> table;
    std::vector<int> path;
    int ns = 0;
    std::optional<retention_config> retention;
  };

  reference_cache(int bs, eviction_policy_kind policy, bool caching)
      : bs_(bs), policy_(policy), caching_(caching) {}

  std::map<int, node> nodes;  // by block id
  std::map<seq_id, seq> seqs;
  int num_free = kNumBlocks;

  int num_unlocked() const {
    int n = 0;
    for (auto& [b, x] : nodes) n += x.lock == 0;
    return n;
  }

  int find_child(int parent, int ns, std::span<const std::int32_t> t) const {
    for (auto& [b, x] : nodes) {
      if (x.orphan || x.parent != parent) continue;
      if (parent < 0 && x.ns != ns) continue;
      if (std::equal(t.begin(), t.end(), x.tokens.begin(), x.tokens.end())) return b;
    }
    return -1;
  }

  std::vector<int> match(int ns, std::span<const std::int32_t> tokens, int max_blocks) const {
    std::vector<int> out;
    int cur = -1;
    for (int i = 0; i < max_blocks && (i + 1) * bs_ <= static_cast<int>(tokens.size()); ++i) {
      int c = find_child(
          cur, ns,
          tokens.subspan(static_cast<std::size_t>(i * bs_), static_cast<std::size_t>(bs_)));
      if (c < 0) break;
      out.push_back(c);
      cur = c;
    }
    return out;
  }

  int effective_priority(const node& x, std::int64_t now) const {
    return x.expiry && *x.expiry <= now ? kDefaultRetentionPriority : x.priority;
  }

  /// Evicts one block by scanning; returns it.
  int evict_one(std::int64_t now) {
    int best = -1;
    std::tuple<int, std::uint32_t, std::uint64_t, int> best_key;
    for (auto& [b, x] : nodes) {
      if (x.lock != 0) continue;
      bool has_child = false;
      for (auto& [c, y] : nodes) has_child |= y.parent == b;
      if (is_dependent_first(policy_) && has_child) continue;
      std::uint32_t lfu = policy_ == eviction_policy_kind::kDependentLfu
                              ? std::min<std::uint32_t>(x.hits, (1u << 24) - 1)
                              : 0;
      auto key = std::make_tuple(effective_priority(x, now), lfu, x.tick, b);
      if (best < 0 || key < best_key) best = b, best_key = key;
    }
    if (best < 0) return -1;
    // Cut off every descendant (lru-any only; dependent-first evicts leaves).
    std::vector<int> stack;
    for (auto& [c, y] : nodes) {
      if (y.parent == best) {
        y.parent = -1;
        stack.push_back(c);
      }
    }
    while (!stack.empty()) {
      int c = stack.back();
      stack.pop_back();
      nodes[c].orphan = true;
      for (auto& [d, z] : nodes) {
        if (z.parent == c) stack.push_back(d);
      }
    }
    nodes.erase(best);
    ++num_free;
    return best;
  }

  void retain(int b, const retention_config& r, std::int64_t now) {
    node& x = nodes[b];
    std::optional<std::int64_t> at;
    if (r.duration) at = now + r.duration->count();
    if (at && *at <= now) return;
    if (x.expiry && *x.expiry <= now) {
      x.expiry.reset();
      x.priority = kDefaultRetentionPriority;
    }
    bool unset = x.priority == kDefaultRetentionPriority && !x.expiry;
    if (r.priority > x.priority || unset) {
      x.priority = r.priority;
      x.expiry = r.priority == kDefaultRetentionPriority ? std::nullopt : at;
    } else if (r.priority == x.priority) {
      if (!x.expiry || !at) {
        x.expiry.reset();
      } else {
        x.expiry = std::max(*x.expiry, *at);
      }
    }
  }
  void apply_retention(const seq& s, int b, int index, std::int64_t now) {
    if (s.retention && (index + 1) * bs_ <= s.retention->num_tokens) retain(b, *s.retention, now);
  }

  int bs_;
  eviction_policy_kind policy_;
  bool caching_;
  std::uint64_t tick = 0;
  std::map<std::string, int> namespaces{{"", 0}};
};

struct world_param {
  int block_size;
  eviction_policy_kind policy;
  bool caching;
  int num_ops;
};

void PrintTo(const world_param& p, std::ostream* os) {
  *os << "bs" << p.block_size << " " << to_string(p.policy) << (p.caching ? "" : " no-caching")
      << " " << p.num_ops << " ops";
}

class Randomized : public ::testing::TestWithParam<world_param> {};

TEST_P(Randomized, MatchesReferenceModel) {
  const auto [bs, policy, caching, num_ops] = GetParam();
  manual_clock clock;
  kv_cache_config config;
  config.num_blocks = kNumBlocks;
  config.block_size = bs;
  config.eviction_policy = policy;
  config.enable_prefix_caching = caching;
  config.clock = clock.clock();
  auto m = testing::make_manager(config);
  reference_cache ref(bs, policy, caching);
  std::mt19937_64 rng(0xC0FFEEull + static_cast<unsigned>(bs) * 131 +
                      static_cast<unsigned>(policy));
  auto uniform = [&](int lo, int hi) {  // [lo, hi]
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  auto random_tokens = [&](int n) {
    std::vector<std::int32_t> t(static_cast<std::size_t>(n));
    for (auto& x : t) x = uniform(0, 2);
    return t;
  };
  // A few shared prefixes ("system prompts"), so that sequences overlap.
  std::vector<std::vector<std::int32_t>> bases;
  for (int i = 0; i < 4; ++i) bases.push_back(random_tokens(uniform(0, 3) * bs + uniform(0, 1)));

  struct live {
    std::vector<std::int32_t> tokens;  // known tokens (prompt + output)
    int computed = 0;                  // tokens whose KV is computed
  };
  std::map<seq_id, live> harness;
  seq_id next_id = 1;
  auto now = [&] { return clock.now().count(); };
  auto pick_live = [&]() -> seq_id {
    auto it = harness.begin();
    std::advance(it, uniform(0, static_cast<int>(harness.size()) - 1));
    return it->first;
  };
  // Learns the block ids the manager allocated, checking they were free in the model.
  auto learn_new_blocks = [&](seq_id id, std::size_t from) {
    auto& s = ref.seqs[id];
    auto table = m->block_table(id);
    for (std::size_t i = from; i < table.size(); ++i) {
      int b = table[i];
      ASSERT_FALSE(ref.nodes.count(b)) << "allocated a cached block " << b;
      for (auto& [oid, o] : ref.seqs) {
        ASSERT_TRUE(std::find(o.table.begin(), o.table.end(), b) == o.table.end())
            << "allocated a block in use " << b;
      }
      s.table.push_back(b);
      --ref.num_free;
    }
  };
  auto evict_for = [&](int n) {
    while (ref.num_free < n) ASSERT_GE(ref.evict_one(now()), 0);
  };

  for (int op = 0; op < num_ops; ++op) {
    int kind = uniform(0, 99);
    SCOPED_TRACE("op " + std::to_string(op) + " kind " + std::to_string(kind));
    if (kind < 30 || harness.empty()) {  // admit a batch
      int n = uniform(1, 3);
      std::vector<std::vector<std::int32_t>> prompts;
      std::vector<sequence_request> batch;
      for (int i = 0; i < n; ++i) {
        auto t = bases[static_cast<std::size_t>(uniform(0, 3))];
        auto tail = random_tokens(uniform(1, 2 * bs));
        t.insert(t.end(), tail.begin(), tail.end());
        prompts.push_back(std::move(t));
      }
      for (int i = 0; i < n; ++i) {
        sequence_request r;
        r.id = (uniform(0, 19) == 0 && !harness.empty()) ? pick_live() : next_id++;
        r.tokens = prompts[static_cast<std::size_t>(i)];
        r.num_tokens = uniform(0, 3) == 0 ? static_cast<int>(r.tokens.size()) + uniform(0, bs) : -1;
        r.cache_namespace = uniform(0, 4) == 0 ? "x" : "";
        if (uniform(0, 4) == 0) {
          retention_config rc;
          rc.num_tokens = uniform(0, static_cast<int>(r.tokens.size()));
          rc.priority = uniform(0, 100);
          if (uniform(0, 1))
            rc.duration = std::chrono::nanoseconds(std::chrono::seconds(uniform(1, 5)));
          r.retention = rc;
        }
        batch.push_back(r);
      }
      auto order =
          uniform(0, 1) ? admission_order::kStopAtFirstFailure : admission_order::kSkipFailures;
      allocation_plan plan = m->plan_allocation(batch, order);
      ASSERT_EQ(plan.seqs.size(), batch.size());
      // The model's decisions.
      int budget = ref.num_free + ref.num_unlocked();
      std::vector<int> newly;
      std::vector<seq_id> seen;
      bool stopped = false;
      std::vector<std::vector<int>> matched(batch.size());
      for (std::size_t i = 0; i < batch.size(); ++i) {
        const auto& r = batch[i];
        const auto& a = plan.seqs[i];
        admission_status want;
        bool dup = ref.seqs.count(r.id) || std::find(seen.begin(), seen.end(), r.id) != seen.end();
        seen.push_back(r.id);
        int num_tokens = r.num_tokens < 0 ? static_cast<int>(r.tokens.size()) : r.num_tokens;
        if (stopped) {
          want = admission_status::kNotConsidered;
        } else if (dup) {
          want = admission_status::kDuplicate;
        } else {
          if (caching && ref.namespaces.count(r.cache_namespace)) {
            int max_blocks =
                std::min((static_cast<int>(r.tokens.size()) - 1) / bs, num_tokens / bs);
            matched[i] = ref.match(ref.namespaces[r.cache_namespace], r.tokens, max_blocks);
          }
          int total = std::max((num_tokens + bs - 1) / bs, static_cast<int>(matched[i].size()));
          int lock_cost = 0;
          for (int b : matched[i]) {
            if (ref.nodes[b].lock == 0 && std::find(newly.begin(), newly.end(), b) == newly.end()) {
              ++lock_cost;
            }
          }
          int new_blocks = total - static_cast<int>(matched[i].size());
          if (total > kNumBlocks) {
            want = admission_status::kNeverFits;
          } else if (lock_cost + new_blocks > budget) {
            want = admission_status::kOutOfBlocks;
          } else {
            want = admission_status::kAdmitted;
            budget -= lock_cost + new_blocks;
            newly.insert(newly.end(), matched[i].begin(), matched[i].end());
          }
        }
        if (want != admission_status::kAdmitted && want != admission_status::kNotConsidered &&
            order == admission_order::kStopAtFirstFailure) {
          stopped = true;
        }
        ASSERT_EQ(a.status, want) << to_string(a.status) << " vs " << to_string(want);
        if (want == admission_status::kAdmitted) {
          ASSERT_EQ(a.num_cached_tokens, static_cast<int>(matched[i].size()) * bs);
          ASSERT_EQ(a.cached_blocks,
                    std::vector<std::int32_t>(matched[i].begin(), matched[i].end()));
        }
      }
      // Sometimes make the plan stale first.
      if (uniform(0, 49) == 0 && !harness.empty()) {
        seq_id victim = pick_live();
        KV_EXPECT_OK(m->release(victim));
        ASSERT_EQ(m->apply(plan).code(), cache_errc::kStalePlan);
        auto& s = ref.seqs[victim];
        for (std::size_t i = 0; i < s.table.size(); ++i) {
          if (i < s.path.size() && s.table[i] == s.path[i]) continue;
          ++ref.num_free;
        }
        for (int b : s.path) --ref.nodes[b].lock;
        ref.seqs.erase(victim);
        harness.erase(victim);
      } else {
        KV_EXPECT_OK(m->apply(plan));
        ++ref.tick;
        for (std::size_t i = 0; i < batch.size(); ++i) {
          if (!plan.seqs[i].admitted()) continue;
          auto& r = batch[i];
          auto& s = ref.seqs[r.id];
          if (caching) {
            s.ns =
                ref.namespaces.emplace(r.cache_namespace, static_cast<int>(ref.namespaces.size()))
                    .first->second;
          }
          s.retention = r.retention;
          s.path = matched[i];
          s.table = matched[i];
          for (std::size_t k = 0; k < s.path.size(); ++k) {
            auto& x = ref.nodes[s.path[k]];
            ++x.lock;
            x.tick = std::max(x.tick, ref.tick);
            ++x.hits;
            ref.apply_retention(s, s.path[k], static_cast<int>(k), now());
          }
          harness[r.id] = live{std::vector<std::int32_t>(r.tokens.begin(), r.tokens.end()),
                               static_cast<int>(matched[i].size()) * bs};
        }
        for (std::size_t i = 0; i < batch.size(); ++i) {
          if (!plan.seqs[i].admitted()) continue;
          evict_for(plan.seqs[i].num_new_blocks);
          learn_new_blocks(batch[i].id, ref.seqs[batch[i].id].table.size());
        }
      }
    } else if (kind < 50) {  // grow (decode or the next prefill chunk)
      seq_id id = pick_live();
      auto& h = harness[id];
      auto extra = random_tokens(uniform(1, bs + 1));
      int target = static_cast<int>(h.tokens.size() + extra.size());
      auto& s = ref.seqs[id];
      int need = (target + bs - 1) / bs - static_cast<int>(s.table.size());
      auto st = m->grow(id, target);
      if (need > ref.num_free + ref.num_unlocked()) {
        ASSERT_EQ(st.code(), cache_errc::kOutOfBlocks);
      } else {
        ASSERT_TRUE(st.is_ok()) << st.message();
        h.tokens.insert(h.tokens.end(), extra.begin(), extra.end());
        if (need > 0) {
          evict_for(need);
          learn_new_blocks(id, s.table.size());
        }
      }
    } else if (kind < 75) {  // commit computed tokens
      seq_id id = pick_live();
      auto& h = harness[id];
      auto& s = ref.seqs[id];
      int cap = std::min(static_cast<int>(h.tokens.size()), static_cast<int>(s.table.size()) * bs);
      h.computed = uniform(std::min(h.computed, cap), cap);
      auto computed =
          std::span<const std::int32_t>(h.tokens).first(static_cast<std::size_t>(h.computed));
      KV_EXPECT_OK(m->commit(id, computed));
      std::size_t full = computed.size() / static_cast<std::size_t>(bs);
      if (caching && full > s.path.size()) {
        ++ref.tick;
        for (std::size_t i = s.path.size(); i < full; ++i) {
          int parent = s.path.empty() ? -1 : s.path.back();
          auto t = computed.subspan(i * static_cast<std::size_t>(bs), static_cast<std::size_t>(bs));
          int ns = parent < 0 ? s.ns : ref.nodes[parent].ns;
          int c = ref.find_child(parent, ns, t);
          if (c >= 0) {
            ++ref.nodes[c].lock;
            ref.nodes[c].tick = std::max(ref.nodes[c].tick, ref.tick);
          } else {
            c = s.table[i];
            auto& x = ref.nodes[c];
            x.parent = parent;
            x.ns = ns;
            x.tokens.assign(t.begin(), t.end());
            x.lock = 1;
            x.tick = ref.tick;
          }
          s.path.push_back(c);
          ref.apply_retention(s, c, static_cast<int>(i), now());
        }
      }
    } else if (kind < 95) {  // release
      seq_id id = pick_live();
      KV_EXPECT_OK(m->release(id));
      auto& s = ref.seqs[id];
      for (std::size_t i = 0; i < s.table.size(); ++i) {
        if (i < s.path.size() && s.table[i] == s.path[i]) continue;
        ++ref.num_free;
      }
      for (int b : s.path) --ref.nodes[b].lock;
      ref.seqs.erase(id);
      harness.erase(id);
    } else if (kind < 99) {
      clock.advance(std::chrono::milliseconds(uniform(0, 3000)));
    } else {
      m->reset_prefix_cache();
      for (auto it = ref.nodes.begin(); it != ref.nodes.end();) {
        if (it->second.lock == 0) {
          for (auto& [c, y] : ref.nodes) {
            if (y.parent == it->first) y.parent = -1;
          }
          it = ref.nodes.erase(it);
          ++ref.num_free;
        } else {
          ++it;
        }
      }
    }

    // Compare after every operation.
    KV_ASSERT_INVARIANTS(*m);
    auto st = m->stats();
    ASSERT_EQ(st.num_blocks_free, ref.num_free);
    ASSERT_EQ(st.num_blocks_cached, ref.num_unlocked());
    ASSERT_EQ(st.num_sequences, static_cast<std::int64_t>(ref.seqs.size()));
    if (caching) {
      const prefix_tree& t = m->tree();
      ASSERT_EQ(t.num_nodes(), static_cast<int>(ref.nodes.size()));
      for (auto& [b, x] : ref.nodes) {
        block_id id = to_block_id(b);
        ASSERT_TRUE(t.contains(id)) << "block " << b;
        ASSERT_EQ(t.lock_count(id), x.lock) << "block " << b;
        ASSERT_EQ(t.is_reachable(id), !x.orphan) << "block " << b;
        ASSERT_EQ(t.parent(id).has_value() ? to_index(*t.parent(id)) : -1, x.parent);
        auto tt = t.tokens(id);
        ASSERT_TRUE(std::equal(tt.begin(), tt.end(), x.tokens.begin(), x.tokens.end()));
      }
    }
    for (auto& [id, s] : ref.seqs) {
      auto table = m->block_table(id);
      ASSERT_TRUE(std::equal(table.begin(), table.end(), s.table.begin(), s.table.end()));
    }
  }
  // After every sequence is released, nothing is locked.
  while (!harness.empty()) {
    KV_EXPECT_OK(m->release(harness.begin()->first));
    harness.erase(harness.begin());
  }
  KV_ASSERT_INVARIANTS(*m);
  auto st = m->stats();
  EXPECT_EQ(st.num_blocks_locked, 0);
  // The run must have exercised what it checks.
  if (caching) {
    EXPECT_GT(st.prefix_hits_tokens, 0u);
    EXPECT_GT(st.evictions_by(eviction_reason::kCapacity), 0u);
    EXPECT_GT(st.evictions_by(eviction_reason::kRetained), 0u);
    EXPECT_EQ(st.num_blocks_orphaned_total > 0, policy == eviction_policy_kind::kLruAny);
  }
}

std::vector<world_param> worlds() {
  std::vector<world_param> w;
  for (int bs : {2, 4, 8, 16, 32, 64}) {
    for (auto p : {eviction_policy_kind::kDependentLru, eviction_policy_kind::kDependentLfu,
                   eviction_policy_kind::kLruAny}) {
      w.push_back({bs, p, true, 40000});  // 120,000 operations per block size with caching
    }
    w.push_back({bs, eviction_policy_kind::kDependentLru, false, 5000});
  }
  return w;
}

INSTANTIATE_TEST_SUITE_P(Worlds, Randomized, ::testing::ValuesIn(worlds()), [](const auto& info) {
  std::string p = to_string(info.param.policy);
  std::replace(p.begin(), p.end(), '-', '_');
  return "bs" + std::to_string(info.param.block_size) + "_" + p +
         (info.param.caching ? "" : "_nocache");
});

}  // namespace
}  // namespace kvserve
