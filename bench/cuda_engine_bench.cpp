// GPU benchmark of decode through the whole engine (request hub, scheduler, cache-manager and
// worker actors over the CUDA backend), Llama-3-8B shapes with dummy bf16 weights (issue 8's
// idle time between decode steps, measured where the server runs them):
//   `batch` requests of `prompt` random token ids (distinct, so nothing is shared) and exactly
//   `output` tokens each (EOS ignored), greedy, submitted at once. Once every request decodes,
//   the batch runs `output` minus the prefill's steps at full size; over the last `tail` pairs
//   of consecutive full-batch decode steps:
//   - the GPU's idle time between consecutive steps, from device timestamps (the GPU's global
//     timer at the first and last kernel of each step; cuda_backend_config::record_step_gaps)
//     and from CUDA events;
//   - the engine's period per step (time between consecutive step reports) and tokens/s.
//   Each round runs asynchronous steps on and off (a fresh engine and backend each).
// Prints markdown table rows. Needs a CUDA build and a GPU.
//   cuda_engine_bench [--batch 64] [--prompt 1024] [--output 200] [--tail 100] [--rounds 2]
//                     [--modes on,off] [--label new]
#include <cstdio>

#ifndef KVSERVE_HAVE_CUDA
int main() {
  std::puts("cuda_engine_bench: built without CUDA");
  return 0;
}
#else
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "actors/engine.hpp"
#include "actors/observer.hpp"
#include "bench/cuda_bench_util.hpp"
#include "cuda/cuda_backend.hpp"

namespace {

using namespace kvserve;
using clock_type = std::chrono::steady_clock;

struct options {
  int batch = 64;
  int prompt = 1024;
  int output = 200;
  int tail = 100;
  int rounds = 2;
  std::vector<std::string> modes = {"on", "off"};
  std::string label = "new";
};

/// Every step report in order (one per step the backend ran), and when it arrived.
class step_clock : public observer {
 public:
  struct step {
    bool full = false;  // a decode step of the whole batch
    clock_type::time_point at;
  };
  explicit step_clock(int batch) : batch_(batch) {}
  void on_step(const step_report& r) override {
    std::lock_guard<std::mutex> lock(mu_);
    steps_.push_back({r.kind == step_kind::kDecode && r.batch_size == batch_, clock_type::now()});
  }
  std::vector<step> steps() {
    std::lock_guard<std::mutex> lock(mu_);
    return steps_;
  }

 private:
  int batch_;
  std::mutex mu_;
  std::vector<step> steps_;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5)];
}

template <class T>
std::vector<double> last(const std::vector<T>& v, int n) {
  const std::size_t k = std::min(v.size(), static_cast<std::size_t>(n));
  return std::vector<double>(v.end() - static_cast<std::ptrdiff_t>(k), v.end());
}

void run_once(const options& o, const std::string& mode) {
  const model_config model = bench::llama3_8b();
  cuda_backend_config cfg = bench::llama3_8b_step_config();
  cfg.record_step_gaps = true;
  auto made = make_cuda_backend_dummy(cfg, model, 1);
  if (!made) {
    std::fprintf(stderr, "backend: %s\n", made.error().message().c_str());
    std::exit(1);
  }
  const backend* gpu = made->get();
  engine_config ec;
  ec.block_size = cfg.block_size;
  ec.max_model_len = cfg.max_model_len;
  ec.max_num_seqs = cfg.max_num_seqs;
  ec.max_num_batched_tokens = cfg.max_num_batched_tokens;
  ec.async_scheduling = mode == "on" ? async_scheduling_mode::kOn : async_scheduling_mode::kOff;
  auto clock = std::make_shared<step_clock>(o.batch);
  engine_parts parts;
  parts.model_backend = std::move(*made);
  parts.engine_observer = clock;
  auto eng = make_engine(ec, std::move(parts));
  if (!eng) {
    std::fprintf(stderr, "engine: %s\n", eng.error().message().c_str());
    std::exit(1);
  }
  std::mutex mu;
  std::condition_variable cv;
  int num_done = 0, num_tokens = 0, num_errors = 0;
  std::vector<std::vector<std::int32_t> > outputs(static_cast<std::size_t>(o.batch));
  const auto start = clock_type::now();
  for (int i = 0; i < o.batch; ++i) {
    generate_request r;
    std::vector<std::int32_t> prompt(static_cast<std::size_t>(o.prompt));
    for (int j = 0; j < o.prompt; ++j)
      prompt[static_cast<std::size_t>(j)] =
          static_cast<std::int32_t>((i * 7919 + j * 131 + 17) % model.vocab_size);
    r.prompt = std::move(prompt);
    r.max_tokens = o.output;
    r.sampling.temperature = 0.0f;
    r.sampling.ignore_eos = true;
    (*eng)->submit(std::move(r), [&, i](request_id, const generation_event& e) {
      std::lock_guard<std::mutex> lock(mu);
      if (auto* t = std::get_if<token_event>(&e)) {
        num_tokens += static_cast<int>(t->token_ids.size());
        auto& out = outputs[static_cast<std::size_t>(i)];
        out.insert(out.end(), t->token_ids.begin(), t->token_ids.end());
      }
      if (auto* x = std::get_if<error_event>(&e)) {
        ++num_errors;
        std::fprintf(stderr, "request failed: %s\n", x->error.message().c_str());
      }
      if (std::holds_alternative<finished_event>(e) || std::holds_alternative<error_event>(e)) {
        ++num_done;
        cv.notify_all();
      }
    });
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::minutes(5), [&] { return num_done >= o.batch; });
  }
  const double wall = std::chrono::duration<double>(clock_type::now() - start).count();
  const std::vector<float> device_gaps = cuda_step_gaps_device_us(*gpu);
  const std::vector<float> event_gaps = cuda_step_gaps_us(*gpu);
  // Only gaps and periods between two full-batch decode steps count: the prefills are
  // staggered (2,048 tokens per step), so requests start and end decoding at different steps,
  // and a smaller batch may capture a new graph first. Gap i lies between steps i and i + 1
  // (the backend keeps the last 4,096).
  const auto steps = clock->steps();
  std::vector<double> dev_all, ev_all, periods;
  const std::size_t n = steps.size();
  for (std::size_t i = 1; i < n; ++i) {
    if (!steps[i - 1].full || !steps[i].full) continue;
    periods.push_back(
        std::chrono::duration<double, std::milli>(steps[i].at - steps[i - 1].at).count());
    const std::size_t back = n - i;  // gaps counted from the end
    if (back <= device_gaps.size()) dev_all.push_back(device_gaps[device_gaps.size() - back]);
    if (back <= event_gaps.size()) ev_all.push_back(event_gaps[event_gaps.size() - back]);
  }
  const auto dev = last(dev_all, o.tail);
  const auto ev = last(ev_all, o.tail);
  const auto per = last(periods, o.tail);
  // A digest of every request's tokens, to compare the modes (greedy; the same schedule
  // gives the same tokens).
  std::uint64_t digest = 1469598103934665603ull;
  for (const auto& out : outputs)
    for (std::int32_t t : out) digest = (digest ^ static_cast<std::uint64_t>(t)) * 1099511628211ull;
  std::printf(
      "| %s | %s | %d | %zu | %.1f | %.1f | %.1f | %.1f | %.3f | %.0f | %.2f | %d | %016llx |\n",
      o.label.c_str(), mode.c_str(), o.batch, dev.size(), percentile(dev, 0.5),
      percentile(dev, 0.1), percentile(dev, 0.9), percentile(ev, 0.5), percentile(per, 0.5),
      percentile(per, 0.5) > 0 ? o.batch * 1000.0 / percentile(per, 0.5) : 0.0, wall,
      num_errors + (num_tokens == o.batch * o.output ? 0 : 1),
      static_cast<unsigned long long>(digest));
  std::fflush(stdout);
  (*eng)->shutdown(std::chrono::milliseconds(0));
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--batch")
      o.batch = std::atoi(v.c_str());
    else if (k == "--prompt")
      o.prompt = std::atoi(v.c_str());
    else if (k == "--output")
      o.output = std::atoi(v.c_str());
    else if (k == "--tail")
      o.tail = std::atoi(v.c_str());
    else if (k == "--rounds")
      o.rounds = std::atoi(v.c_str());
    else if (k == "--modes")
      o.modes = split(v);
    else if (k == "--label")
      o.label = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  std::printf(
      "| binary | async | batch | steps | GPU idle median us (device) | p10 | p90 | median us "
      "(events) | engine ms/step | output tok/s | wall s | failed | tokens digest |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int r = 0; r < o.rounds; ++r)
    for (const std::string& mode : o.modes) run_once(o, mode);
  return 0;
}
#endif
