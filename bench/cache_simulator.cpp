// Trace-driven KV cache simulator: a multi-tenant chatbot workload replayed through
// kv_cache_manager at several pool sizes and block sizes, reporting the prefix hit rate in
// tokens for each eviction policy (dependent-first LRU, lru-any, dependent-first LFU, and
// dependent-first LRU with the system prompts retained at top priority: "pinned").
//
// Workload: a few system prompts ("apps") of different lengths, chosen by Zipf popularity;
// conversations arrive as a Poisson process; each has several turns whose prompt is the
// system prompt + the whole history + the new user message; a turn's next message comes a
// think time after the reply finished. Requests hold their blocks (prompt + reply) while they
// run (reply_tokens x decode time); the prompt is committed when prefill ends (early reuse), the
// reply when the request finishes.
//
// Usage: cache_simulator [--json FILE] [--csv FILE] [--trace-out FILE] [--seed N]
//                        [--conversations N] [--quick] [--no-retention-aware-admission]

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "cache/kv_cache_manager.hpp"

namespace kvserve {
namespace {

struct workload_config {
  std::uint64_t seed = 2026;
  int num_conversations = 1500;
  double arrival_rate_per_s = 1.0;  // new conversations
  double think_time_mean_s = 20.0;
  double decode_s_per_token = 0.025;
  double zipf_exponent = 1.1;
  int max_turns = 4;  // keeps every request's private blocks under 0.2x the system prompts
  double turn_continue_probability = 0.65;
  int user_tokens_min = 16, user_tokens_max = 128;
  int reply_tokens_min = 32, reply_tokens_max = 256;
  // Multiples of 64, so that every block size splits them into whole blocks.
  std::vector<int> system_prompt_tokens{4096, 3072, 2048, 2048, 1024, 1024, 512, 512, 256, 256};
  int max_num_seqs = 16;
  /// While anything runs, admit a request only if it fits without evicting retained blocks.
  bool retention_aware_admission = true;
};

struct turn {
  int prompt_tokens = 0;  // prefix of the conversation's stream
  int reply_tokens = 0;
  double think_s = 0;  // after the previous reply (0 for the first turn)
};

struct conversation {
  int system_prompt = 0;
  double arrival_s = 0;
  std::vector<turn> turns;
  std::vector<std::int32_t> stream;  // system prompt, user 0, reply 0, user 1, reply 1, ...
};

struct trace {
  workload_config config;
  std::vector<conversation> conversations;
  int pinned_tokens = 0;  // sum of the system prompt lengths
};

trace make_trace(const workload_config& c) {
  trace t;
  t.config = c;
  std::mt19937_64 rng(c.seed);
  std::uniform_int_distribution<std::int32_t> vocab(0, 49151);
  std::vector<std::vector<std::int32_t>> systems;
  for (int len : c.system_prompt_tokens) {
    std::vector<std::int32_t> s(static_cast<std::size_t>(len));
    for (auto& x : s) x = vocab(rng);
    systems.push_back(std::move(s));
    t.pinned_tokens += len;
  }
  std::vector<double> weights;
  for (std::size_t k = 0; k < systems.size(); ++k) {
    weights.push_back(1.0 / std::pow(static_cast<double>(k + 1), c.zipf_exponent));
  }
  std::discrete_distribution<int> zipf(weights.begin(), weights.end());
  std::exponential_distribution<double> gap(c.arrival_rate_per_s);
  std::exponential_distribution<double> think(1.0 / c.think_time_mean_s);
  std::uniform_int_distribution<int> user(c.user_tokens_min, c.user_tokens_max);
  std::uniform_int_distribution<int> reply(c.reply_tokens_min, c.reply_tokens_max);
  std::bernoulli_distribution more(c.turn_continue_probability);
  double now = 0;
  for (int i = 0; i < c.num_conversations; ++i) {
    conversation conv;
    now += gap(rng);
    conv.arrival_s = now;
    conv.system_prompt = zipf(rng);
    conv.stream = systems[static_cast<std::size_t>(conv.system_prompt)];
    for (int k = 0; k < c.max_turns; ++k) {
      turn tr;
      int u = user(rng);
      for (int j = 0; j < u; ++j) conv.stream.push_back(vocab(rng));
      tr.prompt_tokens = static_cast<int>(conv.stream.size());
      tr.reply_tokens = reply(rng);
      for (int j = 0; j < tr.reply_tokens; ++j) conv.stream.push_back(vocab(rng));
      tr.think_s = k == 0 ? 0.0 : think(rng);
      conv.turns.push_back(tr);
      if (!more(rng)) break;
    }
    t.conversations.push_back(std::move(conv));
  }
  return t;
}

enum class sim_policy { kDependentLru, kLruAny, kDependentLfu, kPinnedSystemPrompts };
const char* name(sim_policy p) {
  switch (p) {
    case sim_policy::kDependentLru:
      return "dependent-lru";
    case sim_policy::kLruAny:
      return "lru-any";
    case sim_policy::kDependentLfu:
      return "dependent-lfu";
    case sim_policy::kPinnedSystemPrompts:
      return "dependent-lru+pinned";
  }
  return "?";
}

struct sim_result {
  sim_policy policy{};
  int block_size = 0;
  int pool_blocks = 0;
  double pool_over_pinned = 0;
  std::uint64_t requests = 0;
  std::uint64_t query_tokens = 0, hit_tokens = 0;
  // System-prompt part of requests whose system prompt had been served before ("warm").
  std::uint64_t sys_query_tokens = 0, sys_hit_tokens = 0;
  std::uint64_t warm_requests = 0, warm_requests_full_sys_hit = 0;
  // Everything after the system prompt (history + new message), all requests.
  std::uint64_t other_query_tokens = 0, other_hit_tokens = 0;
  std::uint64_t forced_admissions = 0, dropped = 0;
  kv_cache_stats stats;
  double makespan_s = 0;
  double mean_queue_s = 0;

  double rate(std::uint64_t h, std::uint64_t q) const {
    return q == 0 ? 0.0 : static_cast<double>(h) / static_cast<double>(q);
  }
};

struct event {
  double time;
  std::uint64_t order;
  bool finish;  // else arrival
  int conv;
  int turn;
  bool operator>(const event& o) const { return time != o.time ? time > o.time : order > o.order; }
};

sim_result replay(const trace& t, sim_policy policy, int block_size, int pool_blocks) {
  sim_result r;
  r.policy = policy;
  r.block_size = block_size;
  r.pool_blocks = pool_blocks;
  r.pool_over_pinned = static_cast<double>(pool_blocks) * block_size / t.pinned_tokens;
  manual_clock clock;
  kv_cache_config config;
  config.num_blocks = pool_blocks;
  config.block_size = block_size;
  config.eviction_policy = policy == sim_policy::kLruAny ? eviction_policy_kind::kLruAny
                           : policy == sim_policy::kDependentLfu
                               ? eviction_policy_kind::kDependentLfu
                               : eviction_policy_kind::kDependentLru;
  config.clock = clock.clock();
  auto created = kv_cache_manager::create(config);
  if (!created) {
    std::cerr << created.error().message() << "\n";
    std::exit(2);
  }
  auto& m = **created;
  const bool pinned = policy == sim_policy::kPinnedSystemPrompts;
  const auto& sys_len = t.config.system_prompt_tokens;

  std::priority_queue<event, std::vector<event>, std::greater<>> events;
  std::uint64_t order = 0;
  for (std::size_t i = 0; i < t.conversations.size(); ++i) {
    events.push({t.conversations[i].arrival_s, order++, false, static_cast<int>(i), 0});
  }
  struct waiting {
    int conv, turn;
    double since;
  };
  std::deque<waiting> queue;
  std::vector<bool> sys_seen(sys_len.size(), false);
  int running = 0;
  double now = 0, queue_time_sum = 0;
  auto id_of = [](int conv, int turn) {
    return (static_cast<seq_id>(conv) << 8) | static_cast<seq_id>(turn);
  };

  auto try_admit = [&] {
    while (!queue.empty() && running < t.config.max_num_seqs) {
      const waiting w = queue.front();
      const conversation& c = t.conversations[static_cast<std::size_t>(w.conv)];
      const turn& tr = c.turns[static_cast<std::size_t>(w.turn)];
      const int sys = sys_len[static_cast<std::size_t>(c.system_prompt)];
      sequence_request req;
      req.id = id_of(w.conv, w.turn);
      req.tokens =
          std::span<const std::int32_t>(c.stream).first(static_cast<std::size_t>(tr.prompt_tokens));
      req.num_tokens = tr.prompt_tokens + tr.reply_tokens;
      if (pinned) req.retention = retention_config{sys, kMaxRetentionPriority, std::nullopt};
      allocation_plan plan = m.plan_allocation(std::span<const sequence_request>(&req, 1));
      const sequence_allocation& a = plan.seqs[0];
      if (a.status == admission_status::kNeverFits) {
        ++r.dropped;
        queue.pop_front();
        continue;
      }
      if (!a.admitted()) break;
      // Retention-aware admission: wait rather than evict retained blocks while anything
      // runs (a no-op for the policies without retention).
      auto st = m.stats();
      int lock_cost = 0;
      for (std::int32_t b : a.cached_blocks) {
        block_id id = to_block_id(b);
        if (m.tree().lock_count(id) == 0 && m.tree().priority(id) <= kDefaultRetentionPriority) {
          ++lock_cost;
        }
      }
      std::int64_t unretained =
          st.num_blocks_free + st.num_blocks_cached - st.num_blocks_cached_retained;
      if (t.config.retention_aware_admission && a.num_new_blocks + lock_cost > unretained) {
        if (running > 0) break;
        ++r.forced_admissions;
      }
      if (!m.apply(plan)) std::abort();
      queue.pop_front();
      queue_time_sum += now - w.since;
      ++r.requests;
      r.query_tokens += static_cast<std::uint64_t>(tr.prompt_tokens);
      r.hit_tokens += static_cast<std::uint64_t>(a.num_cached_tokens);
      int sys_hit = std::min(a.num_cached_tokens, sys);
      if (sys_seen[static_cast<std::size_t>(c.system_prompt)]) {
        ++r.warm_requests;
        r.sys_query_tokens += static_cast<std::uint64_t>(sys);
        r.sys_hit_tokens += static_cast<std::uint64_t>(sys_hit);
        if (sys_hit == sys) ++r.warm_requests_full_sys_hit;
      }
      sys_seen[static_cast<std::size_t>(c.system_prompt)] = true;
      r.other_query_tokens += static_cast<std::uint64_t>(tr.prompt_tokens - sys);
      r.other_hit_tokens += static_cast<std::uint64_t>(a.num_cached_tokens - sys_hit);
      // Prefill is taken as instantaneous: the prompt's full blocks are committed at once.
      if (!m.commit(req.id, req.tokens)) std::abort();
      ++running;
      events.push(
          {now + tr.reply_tokens * t.config.decode_s_per_token, order++, true, w.conv, w.turn});
    }
  };

  while (!events.empty()) {
    event e = events.top();
    events.pop();
    now = e.time;
    clock.set(std::chrono::nanoseconds(static_cast<std::int64_t>(now * 1e9)));
    const conversation& c = t.conversations[static_cast<std::size_t>(e.conv)];
    if (e.finish) {
      const turn& tr = c.turns[static_cast<std::size_t>(e.turn)];
      seq_id id = id_of(e.conv, e.turn);
      auto all = std::span<const std::int32_t>(c.stream).first(
          static_cast<std::size_t>(tr.prompt_tokens + tr.reply_tokens));
      if (!m.commit(id, all)) std::abort();
      if (!m.release(id)) std::abort();
      --running;
      if (static_cast<std::size_t>(e.turn + 1) < c.turns.size()) {
        events.push({now + c.turns[static_cast<std::size_t>(e.turn + 1)].think_s, order++, false,
                     e.conv, e.turn + 1});
      }
    } else {
      queue.push_back({e.conv, e.turn, now});
    }
    try_admit();
  }
  if (auto st = m.check_invariants(); !st) {
    std::cerr << "invariants: " << st.message() << "\n";
    std::exit(3);
  }
  r.stats = m.stats();
  r.makespan_s = now;
  r.mean_queue_s = r.requests ? queue_time_sum / static_cast<double>(r.requests) : 0;
  return r;
}

std::string csv_header() {
  return "policy,block_size,pool_blocks,pool_tokens,pool_over_pinned,requests,hit_rate,"
         "sys_hit_rate_warm,warm_full_sys_hit_fraction,other_hit_rate,query_tokens,hit_tokens,"
         "evictions,evictions_retained,orphaned_total,forced_admissions,dropped,mean_queue_s";
}

std::string csv_row(const sim_result& r) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "%s,%d,%d,%d,%.3f,%llu,%.6f,%.6f,%.6f,%.6f,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%.3f",
                name(r.policy), r.block_size, r.pool_blocks, r.pool_blocks * r.block_size,
                r.pool_over_pinned, static_cast<unsigned long long>(r.requests),
                r.rate(r.hit_tokens, r.query_tokens), r.rate(r.sys_hit_tokens, r.sys_query_tokens),
                r.rate(r.warm_requests_full_sys_hit, r.warm_requests),
                r.rate(r.other_hit_tokens, r.other_query_tokens),
                static_cast<unsigned long long>(r.query_tokens),
                static_cast<unsigned long long>(r.hit_tokens),
                static_cast<unsigned long long>(r.stats.num_evictions()),
                static_cast<unsigned long long>(r.stats.evictions_by(eviction_reason::kRetained)),
                static_cast<unsigned long long>(r.stats.num_blocks_orphaned_total),
                static_cast<unsigned long long>(r.forced_admissions),
                static_cast<unsigned long long>(r.dropped), r.mean_queue_s);
  return buf;
}

std::string json_row(const sim_result& r) {
  char buf[768];
  std::snprintf(buf, sizeof buf,
                "{\"policy\":\"%s\",\"block_size\":%d,\"pool_blocks\":%d,\"pool_tokens\":%d,"
                "\"pool_over_pinned\":%.3f,\"requests\":%llu,\"hit_rate\":%.6f,"
                "\"sys_hit_rate_warm\":%.6f,\"warm_full_sys_hit_fraction\":%.6f,"
                "\"other_hit_rate\":%.6f,\"evictions\":%llu,\"evictions_retained\":%llu,"
                "\"orphaned_total\":%llu,\"forced_admissions\":%llu,\"dropped\":%llu,"
                "\"mean_queue_s\":%.3f}",
                name(r.policy), r.block_size, r.pool_blocks, r.pool_blocks * r.block_size,
                r.pool_over_pinned, static_cast<unsigned long long>(r.requests),
                r.rate(r.hit_tokens, r.query_tokens), r.rate(r.sys_hit_tokens, r.sys_query_tokens),
                r.rate(r.warm_requests_full_sys_hit, r.warm_requests),
                r.rate(r.other_hit_tokens, r.other_query_tokens),
                static_cast<unsigned long long>(r.stats.num_evictions()),
                static_cast<unsigned long long>(r.stats.evictions_by(eviction_reason::kRetained)),
                static_cast<unsigned long long>(r.stats.num_blocks_orphaned_total),
                static_cast<unsigned long long>(r.forced_admissions),
                static_cast<unsigned long long>(r.dropped), r.mean_queue_s);
  return buf;
}

void write_trace(const trace& t, const std::string& path) {
  std::ofstream out(path);
  for (std::size_t i = 0; i < t.conversations.size(); ++i) {
    const auto& c = t.conversations[i];
    for (std::size_t k = 0; k < c.turns.size(); ++k) {
      out << "{\"conversation\":" << i << ",\"turn\":" << k
          << ",\"system_prompt\":" << c.system_prompt
          << ",\"conversation_arrival_s\":" << c.arrival_s << ",\"think_s\":" << c.turns[k].think_s
          << ",\"prompt_tokens\":" << c.turns[k].prompt_tokens
          << ",\"reply_tokens\":" << c.turns[k].reply_tokens << "}\n";
    }
  }
}

int run(int argc, char** argv) {
  workload_config wc;
  std::string json_path, csv_path, trace_path;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--json")
      json_path = next();
    else if (a == "--csv")
      csv_path = next();
    else if (a == "--trace-out")
      trace_path = next();
    else if (a == "--seed")
      wc.seed = std::stoull(next());
    else if (a == "--conversations")
      wc.num_conversations = std::stoi(next());
    else if (a == "--quick")
      quick = true;
    else if (a == "--no-retention-aware-admission")
      wc.retention_aware_admission = false;
    else {
      std::cerr << "usage: cache_simulator [--json FILE] [--csv FILE] [--trace-out FILE] "
                   "[--seed N] [--conversations N] [--quick] "
                   "[--no-retention-aware-admission]\n";
      return a == "--help" ? 0 : 2;
    }
  }
  if (quick) wc.num_conversations = std::min(wc.num_conversations, 200);
  trace t = make_trace(wc);
  if (!trace_path.empty()) write_trace(t, trace_path);
  std::size_t num_requests = 0;
  for (auto& c : t.conversations) num_requests += c.turns.size();
  std::cerr << "workload: " << t.conversations.size() << " conversations, " << num_requests
            << " requests, " << wc.system_prompt_tokens.size() << " system prompts ("
            << t.pinned_tokens << " tokens)\n";

  const std::vector<double> multiples =
      quick ? std::vector<double>{1.2, 2, 4, 8}
            : std::vector<double>{1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 12, 16, 24};
  const std::vector<int> block_sizes = quick ? std::vector<int>{16} : std::vector<int>{4, 16, 64};
  const std::vector<sim_policy> policies{sim_policy::kDependentLru, sim_policy::kLruAny,
                                         sim_policy::kDependentLfu,
                                         sim_policy::kPinnedSystemPrompts};
  std::vector<sim_result> results;
  for (int bs : block_sizes) {
    for (double x : multiples) {
      int blocks = static_cast<int>(std::lround(x * t.pinned_tokens / bs));
      for (sim_policy p : policies) {
        results.push_back(replay(t, p, bs, blocks));
        std::cout << csv_row(results.back()) << "\n";
      }
    }
  }
  if (!csv_path.empty()) {
    std::ofstream out(csv_path);
    out << csv_header() << "\n";
    for (auto& r : results) out << csv_row(r) << "\n";
  }
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << "{\"workload\":{\"seed\":" << wc.seed << ",\"conversations\":" << wc.num_conversations
        << ",\"requests\":" << num_requests << ",\"arrival_rate_per_s\":" << wc.arrival_rate_per_s
        << ",\"think_time_mean_s\":" << wc.think_time_mean_s
        << ",\"decode_s_per_token\":" << wc.decode_s_per_token
        << ",\"zipf_exponent\":" << wc.zipf_exponent << ",\"max_turns\":" << wc.max_turns
        << ",\"max_num_seqs\":" << wc.max_num_seqs << ",\"pinned_tokens\":" << t.pinned_tokens
        << ",\"system_prompt_tokens\":[";
    for (std::size_t i = 0; i < wc.system_prompt_tokens.size(); ++i) {
      out << (i ? "," : "") << wc.system_prompt_tokens[i];
    }
    out << "]},\n\"results\":[\n";
    for (std::size_t i = 0; i < results.size(); ++i) {
      out << json_row(results[i]) << (i + 1 < results.size() ? ",\n" : "\n");
    }
    out << "]}\n";
  }
  return 0;
}

}  // namespace
}  // namespace kvserve

int main(int argc, char** argv) { return kvserve::run(argc, argv); }
