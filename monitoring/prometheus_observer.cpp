#include "monitoring/prometheus_observer.hpp"

#include <map>
#include <mutex>
#include <sstream>
#include <utility>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

namespace kvserve {

namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

// Latency buckets reach well below vLLM's (which start at 1 ms) so CPU-backend steps and
// sub-millisecond inter-token gaps of small models still fall into distinct buckets.
const Histogram::BucketBoundaries kLatencyBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,
    0.5,    0.75,  1.0,    2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0};
const Histogram::BucketBoundaries kStepBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                  0.005,  0.01,    0.025,  0.05,  0.1,
                                                  0.25,   0.5,     1.0,    2.5,   5.0};
const Histogram::BucketBoundaries kBatchBuckets = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};

// Snapshots may arrive out of order (engine threads and /metrics both report): a total older
// than the last one seen adds nothing and does not move the mark back.
void add_delta(Counter& counter, std::uint64_t now, std::uint64_t& last) {
  if (now <= last) return;
  counter.Increment(static_cast<double>(now - last));
  last = now;
}

}  // namespace

struct prometheus_observer::impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();

  Family<Gauge>& running_f = prometheus::BuildGauge()
                                 .Name("kvserve_num_requests_running")
                                 .Help("Requests in the running batch.")
                                 .Register(*registry);
  Family<Gauge>& waiting_f = prometheus::BuildGauge()
                                 .Name("kvserve_num_requests_waiting")
                                 .Help("Requests waiting to be scheduled.")
                                 .Register(*registry);
  Family<Gauge>& usage_f = prometheus::BuildGauge()
                               .Name("kvserve_kv_cache_usage_ratio")
                               .Help("Share of KV blocks locked by live sequences (0..1).")
                               .Register(*registry);
  Family<Gauge>& blocks_f = prometheus::BuildGauge()
                                .Name("kvserve_kv_cache_blocks")
                                .Help("KV blocks by state: free, cached (evictable), locked.")
                                .Register(*registry);
  Family<Counter>& queries_f = prometheus::BuildCounter()
                                   .Name("kvserve_prefix_cache_queries_tokens_total")
                                   .Help("Prompt tokens looked up in the prefix cache.")
                                   .Register(*registry);
  Family<Counter>& hits_f = prometheus::BuildCounter()
                                .Name("kvserve_prefix_cache_hits_tokens_total")
                                .Help("Prompt tokens served from the prefix cache.")
                                .Register(*registry);
  Family<Counter>& evictions_f = prometheus::BuildCounter()
                                     .Name("kvserve_kv_cache_evictions_total")
                                     .Help("Cached KV blocks evicted, by reason.")
                                     .Register(*registry);
  Family<Counter>& actor_cpu_f =
      prometheus::BuildCounter()
          .Name("kvserve_actor_cpu_seconds_total")
          .Help("CPU time spent handling messages, by actor (with --measure-actor-cpu).")
          .Register(*registry);
  Family<Counter>& preemptions_f = prometheus::BuildCounter()
                                       .Name("kvserve_num_preemptions_total")
                                       .Help("Sequences preempted to free KV blocks.")
                                       .Register(*registry);
  Family<Counter>& prompt_tokens_f = prometheus::BuildCounter()
                                         .Name("kvserve_prompt_tokens_total")
                                         .Help("Prompt (prefill) tokens computed.")
                                         .Register(*registry);
  Family<Counter>& generation_tokens_f = prometheus::BuildCounter()
                                             .Name("kvserve_generation_tokens_total")
                                             .Help("Tokens generated.")
                                             .Register(*registry);
  // Per request, counted once when it ends (vLLM's `prompt_tokens` definition): a preempted
  // request's recompute and its repeated prefix lookup do not count twice here.
  Family<Counter>& request_prompt_tokens_f =
      prometheus::BuildCounter()
          .Name("kvserve_request_prompt_tokens_total")
          .Help("Prompt tokens of the requests that ended, each request's prompt once.")
          .Register(*registry);
  Family<Counter>& request_cached_tokens_f =
      prometheus::BuildCounter()
          .Name("kvserve_request_cached_prompt_tokens_total")
          .Help("Cached prompt tokens of the requests that ended (their usage, first admission).")
          .Register(*registry);
  Family<Counter>& finished_f = prometheus::BuildCounter()
                                    .Name("kvserve_requests_finished_total")
                                    .Help("Requests that ended, by finish reason.")
                                    .Register(*registry);
  Family<Counter>& accepted_f = prometheus::BuildCounter()
                                    .Name("kvserve_requests_accepted_total")
                                    .Help("Requests the engine accepted.")
                                    .Register(*registry);
  Family<Counter>& rejected_f = prometheus::BuildCounter()
                                    .Name("kvserve_requests_rejected_total")
                                    .Help("Requests the engine rejected (bad input, overload).")
                                    .Register(*registry);
  Family<Counter>& graph_f = prometheus::BuildCounter()
                                 .Name("kvserve_cuda_graph_replays_total")
                                 .Help("Decode steps run by replaying a captured CUDA graph.")
                                 .Register(*registry);
  Family<Histogram>& ttft_f = prometheus::BuildHistogram()
                                  .Name("kvserve_time_to_first_token_seconds")
                                  .Help("Time from submission to the first token.")
                                  .Register(*registry);
  Family<Histogram>& itl_f = prometheus::BuildHistogram()
                                 .Name("kvserve_inter_token_latency_seconds")
                                 .Help("Time between consecutive tokens of a request.")
                                 .Register(*registry);
  Family<Histogram>& e2e_f = prometheus::BuildHistogram()
                                 .Name("kvserve_e2e_request_latency_seconds")
                                 .Help("Time from submission to the end of a request.")
                                 .Register(*registry);
  Family<Histogram>& queue_f = prometheus::BuildHistogram()
                                   .Name("kvserve_request_queue_time_seconds")
                                   .Help("Time from submission to first scheduling.")
                                   .Register(*registry);
  Family<Histogram>& step_f = prometheus::BuildHistogram()
                                  .Name("kvserve_step_duration_seconds")
                                  .Help("Worker execution time of a step, by kind.")
                                  .Register(*registry);
  Family<Histogram>& batch_f = prometheus::BuildHistogram()
                                   .Name("kvserve_step_batch_size")
                                   .Help("Sequences per step.")
                                   .Register(*registry);

  Gauge& running = running_f.Add({});
  Gauge& waiting = waiting_f.Add({});
  Gauge& usage = usage_f.Add({});
  Gauge& blocks_free = blocks_f.Add({{"state", "free"}});
  Gauge& blocks_cached = blocks_f.Add({{"state", "cached"}});
  Gauge& blocks_locked = blocks_f.Add({{"state", "locked"}});
  Counter& queries = queries_f.Add({});
  Counter& hits = hits_f.Add({});
  Counter& preemptions = preemptions_f.Add({});
  Counter& prompt_tokens = prompt_tokens_f.Add({});
  Counter& generation_tokens = generation_tokens_f.Add({});
  Counter& request_prompt_tokens = request_prompt_tokens_f.Add({});
  Counter& request_cached_tokens = request_cached_tokens_f.Add({});
  Counter& accepted = accepted_f.Add({});
  Counter& rejected = rejected_f.Add({});
  Counter& graph_replays = graph_f.Add({});
  Histogram& ttft = ttft_f.Add({}, kLatencyBuckets);
  Histogram& itl = itl_f.Add({}, kLatencyBuckets);
  Histogram& e2e = e2e_f.Add({}, kLatencyBuckets);
  Histogram& queue_time = queue_f.Add({}, kLatencyBuckets);
  Histogram& batch = batch_f.Add({}, kBatchBuckets);

  // Families with labels known up front: present (at zero) from the first scrape, so every
  // dashboard query has a series before the first eviction or finished request.
  impl() {
    for (const char* reason : {"stop", "length", "cancelled", "error", "timeout"}) {
      finished_f.Add({{"reason", reason}});
    }
    for (step_kind k : {step_kind::kPrefill, step_kind::kDecode, step_kind::kMixed}) {
      step_f.Add({{"kind", to_string(k)}}, kStepBuckets);
    }
    evictions_f.Add({{"reason", "capacity"}});
  }

  // The KV memory budget (on_kv_capacity): constant for the engine's life.
  Family<Gauge>& bytes_per_token_f =
      prometheus::BuildGauge()
          .Name("kvserve_kv_cache_bytes_per_token")
          .Help("KV bytes one token costs over all layers (K and V, scales included), by dtype.")
          .Register(*registry);
  Family<Gauge>& bytes_per_token_no_gqa_f =
      prometheus::BuildGauge()
          .Name("kvserve_kv_cache_bytes_per_token_without_gqa")
          .Help("What one token would cost with as many KV heads as query heads (no GQA).")
          .Register(*registry);
  Family<Gauge>& info_f =
      prometheus::BuildGauge()
          .Name("kvserve_kv_cache_info")
          .Help("Always 1; labels: the factors of the bytes per token and the block size.")
          .Register(*registry);
  Family<Gauge>& blocks_total_f = prometheus::BuildGauge()
                                      .Name("kvserve_kv_cache_blocks_total")
                                      .Help("KV blocks in the pool.")
                                      .Register(*registry);
  Family<Gauge>& tokens_capacity_f = prometheus::BuildGauge()
                                         .Name("kvserve_kv_cache_tokens_capacity")
                                         .Help("Tokens the KV pool holds (blocks x block size).")
                                         .Register(*registry);
  Family<Gauge>& memory_f = prometheus::BuildGauge()
                                .Name("kvserve_kv_cache_memory_bytes")
                                .Help("Bytes of the KV pool (tokens x bytes per token).")
                                .Register(*registry);
  Family<Gauge>& max_sequences_f =
      prometheus::BuildGauge()
          .Name("kvserve_kv_cache_max_sequences")
          .Help("Sequences of `context` tokens the KV pool holds at once (no prefix sharing).")
          .Register(*registry);
  Family<Gauge>& max_model_len_f = prometheus::BuildGauge()
                                       .Name("kvserve_max_model_len")
                                       .Help("Longest prompt + output the engine accepts.")
                                       .Register(*registry);

  std::mutex mu;  // guards the snapshot below (prometheus-cpp metrics are thread-safe)
  engine_stats last;
  std::vector<std::pair<Family<Gauge>*, Gauge*>> capacity_series;  // guarded by mu
};

prometheus_observer::prometheus_observer() : impl_(std::make_unique<impl>()) {}
prometheus_observer::~prometheus_observer() = default;

void prometheus_observer::on_step(const step_report& r) {
  impl& m = *impl_;
  m.step_f.Add({{"kind", to_string(r.kind)}}, kStepBuckets).Observe(r.duration_seconds);
  m.batch.Observe(r.batch_size);
  if (r.num_prompt_tokens > 0) m.prompt_tokens.Increment(r.num_prompt_tokens);
  if (r.num_generated_tokens > 0) m.generation_tokens.Increment(r.num_generated_tokens);
}

void prometheus_observer::on_request_finished(const request_report& r) {
  impl& m = *impl_;
  // Before the histograms: a client that waits for the TTFT count to move then also sees these.
  if (r.prompt_tokens > 0) m.request_prompt_tokens.Increment(r.prompt_tokens);
  if (r.cached_prompt_tokens > 0) m.request_cached_tokens.Increment(r.cached_prompt_tokens);
  m.finished_f.Add({{"reason", r.finish_reason.empty() ? "unknown" : r.finish_reason}}).Increment();
  if (r.time_to_first_token_seconds >= 0) m.ttft.Observe(r.time_to_first_token_seconds);
  for (double t : r.inter_token_latencies_seconds) m.itl.Observe(t);
  m.e2e.Observe(r.e2e_latency_seconds);
  m.queue_time.Observe(r.queue_time_seconds);
}

void prometheus_observer::on_stats(const engine_stats& s) {
  impl& m = *impl_;
  m.running.Set(s.num_requests_running);
  m.waiting.Set(s.num_requests_waiting);
  m.usage.Set(s.kv_cache_usage_ratio);
  m.blocks_free.Set(static_cast<double>(s.num_blocks_free));
  m.blocks_cached.Set(static_cast<double>(s.num_blocks_cached));
  m.blocks_locked.Set(static_cast<double>(s.num_blocks_locked));
  std::lock_guard lock(m.mu);
  add_delta(m.queries, s.prefix_cache_queries_tokens, m.last.prefix_cache_queries_tokens);
  add_delta(m.hits, s.prefix_cache_hits_tokens, m.last.prefix_cache_hits_tokens);
  add_delta(m.preemptions, s.num_preemptions, m.last.num_preemptions);
  add_delta(m.graph_replays, s.cuda_graph_replays, m.last.cuda_graph_replays);
  add_delta(m.accepted, s.num_requests_accepted, m.last.num_requests_accepted);
  add_delta(m.rejected, s.num_requests_rejected, m.last.num_requests_rejected);
  for (const auto& [reason, total] : s.evictions_by_reason) {
    add_delta(m.evictions_f.Add({{"reason", reason}}), total, m.last.evictions_by_reason[reason]);
  }
  for (const auto& [actor, seconds] : s.actor_cpu_seconds) {
    double& last = m.last.actor_cpu_seconds[actor];
    if (seconds <= last) continue;
    m.actor_cpu_f.Add({{"actor", actor}}).Increment(seconds - last);
    last = seconds;
  }
}

void prometheus_observer::on_kv_capacity(const kv_capacity& c) {
  impl& m = *impl_;
  std::lock_guard lock(m.mu);
  for (auto& [family, gauge] : m.capacity_series) family->Remove(gauge);
  m.capacity_series.clear();
  auto set = [&](Family<Gauge>& family, const std::map<std::string, std::string>& labels,
                 double value) {
    Gauge& g = family.Add(labels);
    g.Set(value);
    m.capacity_series.emplace_back(&family, &g);
  };
  const std::string dtype = to_string(c.dtype);
  set(m.bytes_per_token_f, {{"dtype", dtype}}, static_cast<double>(c.bytes_per_token));
  if (c.bytes_per_token_without_gqa > 0) {
    set(m.bytes_per_token_no_gqa_f, {{"dtype", dtype}},
        static_cast<double>(c.bytes_per_token_without_gqa));
  }
  set(m.info_f,
      {{"dtype", dtype},
       {"layers", std::to_string(c.num_layers)},
       {"heads", std::to_string(c.num_heads)},
       {"kv_heads", std::to_string(c.num_kv_heads)},
       {"head_dim", std::to_string(c.head_dim)},
       {"element_bytes", std::to_string(c.element_bytes)},
       {"scale_bytes", std::to_string(c.scale_bytes)},
       {"block_size", std::to_string(c.block_size)}},
      1.0);
  set(m.blocks_total_f, {}, static_cast<double>(c.num_blocks));
  set(m.tokens_capacity_f, {}, static_cast<double>(c.num_tokens));
  set(m.memory_f, {}, static_cast<double>(c.pool_bytes));
  for (const kv_sequences_at_context& s : c.sequences) {
    set(m.max_sequences_f, {{"context", std::to_string(s.context_len)}},
        static_cast<double>(s.max_sequences));
  }
  set(m.max_model_len_f, {}, static_cast<double>(c.max_model_len));
}

std::string prometheus_observer::render() const {
  std::ostringstream os;
  prometheus::TextSerializer{}.Serialize(os, impl_->registry->Collect());
  return os.str();
}

}  // namespace kvserve
