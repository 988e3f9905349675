#include "bench/serve/load_runner.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cmath>
#include <deque>
#include <exception>
#include <memory>
#include <thread>

#include "bench/serve/arrival_schedule.hpp"
#include "bench/serve/client_transport.hpp"
#include "bench/serve/progress_bar.hpp"
#include "bench/serve/workload.hpp"

namespace kvserve::bench {

namespace asio = boost::asio;

namespace {

/// A counting semaphore for coroutines on one single-threaded io_context.
class async_semaphore {
 public:
  async_semaphore(asio::any_io_executor ex, int count) : ex_(std::move(ex)), count_(count) {}

  asio::awaitable<void> acquire() {
    if (count_ > 0) {
      --count_;
      co_return;
    }
    auto waiter = std::make_shared<asio::steady_timer>(ex_, asio::steady_timer::time_point::max());
    waiters_.push_back(waiter);
    boost::system::error_code ec;
    co_await waiter->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    // Woken by release(), which handed its slot over.
  }

  void release() {
    if (waiters_.empty()) {
      ++count_;
      return;
    }
    auto waiter = waiters_.front();
    waiters_.pop_front();
    waiter->cancel();
  }

 private:
  asio::any_io_executor ex_;
  int count_;
  std::deque<std::shared_ptr<asio::steady_timer>> waiters_;
};

bench_clock::duration seconds(double s) {
  return std::chrono::duration_cast<bench_clock::duration>(std::chrono::duration<double>(s));
}

class runner {
 public:
  runner(const bench_config& config, std::vector<bench_session> sessions)
      : config_(config),
        sessions_(std::move(sessions)),
        slots_(ioc_.get_executor(), config.max_concurrency > 0 ? config.max_concurrency : 1 << 30),
        progress_(count_requests(sessions_), config.progress) {
    ctx_.address = config.address;
    ctx_.api_key = config.api_key;
    ctx_.tcp_quickack = config.tcp_quickack;
  }

  result<bench_run> run() {
    metrics_snapshot before;
    if (config_.read_metrics) {
      auto scraped = scrape();
      if (!scraped.ok) {
        return status(status_code::kNotFound, "cannot reach the server at " + config_.address.host +
                                                  ":" + std::to_string(config_.address.port) +
                                                  ": " + scraped.error);
      }
      if (scraped.http_status == 200) {
        before = metrics_snapshot::parse(scraped.body);
      } else {
        std::fprintf(stderr, "kvserve bench: GET /metrics answered %d; no server counters\n",
                     scraped.http_status);
      }
    }

    const auto origin = bench_clock::now();
    ctx_.run_origin = clock_seconds(origin);
    run_deadline_ = origin + seconds(config_.max_duration_s);
    std::vector<double> arrivals = poisson_arrival_times(
        static_cast<int>(sessions_.size()), config_.request_rate, config_.workload.seed);
    for (std::size_t i = 0; i < sessions_.size(); ++i) {
      asio::co_spawn(ioc_, run_session(static_cast<int>(i), origin + seconds(arrivals[i])),
                     [this](std::exception_ptr e) {
                       if (e && !failure_) failure_ = e;
                     });
    }
    ioc_.run();
    ioc_.restart();
    const double duration = std::chrono::duration<double>(last_end_ - origin).count();
    progress_.finish();
    if (failure_) {
      try {
        std::rethrow_exception(failure_);
      } catch (const std::exception& e) {
        return status(status_code::kInternal, std::string("benchmark driver: ") + e.what());
      }
    }

    server_counters counters;
    if (config_.read_metrics && !before.empty()) {
      long long client_output = 0;
      long long client_first_tokens = 0;
      long long client_prompt = 0;  // of the completed requests, which the server surely ended
      for (const request_outcome& o : outcomes_) {
        client_output += o.output_tokens;
        if (o.output_tokens > 0) ++client_first_tokens;
        if (o.success) client_prompt += o.prompt_tokens;
      }
      // The server may count a request's last tokens, and observe its TTFT when the request
      // ends, a moment after it streamed them: wait (a bounded time) until its counters reach
      // what the client saw.
      for (int attempt = 0; attempt < 20; ++attempt) {
        auto scraped = scrape();
        if (!scraped.ok || scraped.http_status != 200) break;
        const metrics_snapshot after = metrics_snapshot::parse(scraped.body);
        counters = counters_between(before, after);
        const bool has_ttft = after.sum("kvserve_time_to_first_token_seconds_count").has_value();
        if (std::llround(counters.generation_tokens) >= client_output &&
            (!has_ttft || std::llround(counters.ttft_count) >= client_first_tokens) &&
            (!counters.has_request_counters ||
             std::llround(counters.request_prompt_tokens) >= client_prompt)) {
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    bench_run out;
    out.summary = summarize_run(outcomes_, duration, counters);
    out.outcomes = std::move(outcomes_);
    return out;
  }

 private:
  http_get_result scrape() {
    http_get_result out;
    asio::co_spawn(ioc_, http_get(ctx_, "/metrics", bench_clock::now() + std::chrono::seconds(10)),
                   [&out](std::exception_ptr e, http_get_result r) {
                     if (!e) out = std::move(r);
                   });
    ioc_.run();
    ioc_.restart();
    return out;
  }

  bool token_mode() const { return config_.backend != api_backend::kOpenAIChat; }

  void record(request_outcome o) {
    ++done_;
    if (!o.success) ++failed_;
    last_end_ = std::max(last_end_, bench_clock::now());
    progress_.update(done_, failed_, clock_seconds(bench_clock::now()) - ctx_.run_origin);
    outcomes_.push_back(std::move(o));
  }

  void record_unsent(int session, int turn, const std::string& why) {
    request_outcome o;
    o.session = session;
    o.turn = turn;
    o.error = why;
    record(std::move(o));
  }

  asio::awaitable<void> run_session(int index, bench_clock::time_point start_at) {
    // A session due after the end of the run is not waited for.
    asio::steady_timer timer(co_await asio::this_coro::executor, std::min(start_at, run_deadline_));
    co_await timer.async_wait(asio::use_awaitable);
    const bench_session& session = sessions_[static_cast<std::size_t>(index)];
    std::vector<std::int32_t> history_ids = session.system.token_ids;
    std::vector<chat_entry> history_messages;
    if (!session.system.text.empty()) history_messages.push_back({"system", session.system.text});
    for (std::size_t t = 0; t < session.turns.size(); ++t) {
      const bench_turn& turn = session.turns[t];
      if (bench_clock::now() >= run_deadline_) {
        record_unsent(index, static_cast<int>(t), "not sent: the run reached --max-duration");
        continue;
      }
      request_spec spec;
      spec.max_tokens = turn.output_len;
      spec.ignore_eos = config_.ignore_eos;
      spec.temperature = config_.temperature;
      spec.model = config_.model;
      if (token_mode()) {
        spec.prompt_ids = history_ids;
        spec.prompt_ids.insert(spec.prompt_ids.end(), turn.question.token_ids.begin(),
                               turn.question.token_ids.end());
      } else {
        spec.messages = history_messages;
        spec.messages.push_back({"user", turn.question.text});
      }
      if (config_.retain_system_prompt_priority >= 0 && !session.system.token_ids.empty()) {
        spec.retain_tokens = static_cast<int>(session.system.token_ids.size());
        spec.retention_priority = config_.retain_system_prompt_priority;
      }
      co_await slots_.acquire();
      auto deadline =
          std::min(bench_clock::now() + seconds(config_.request_timeout_s), run_deadline_);
      request_outcome outcome;
      if (config_.backend == api_backend::kWebSocket) {
        outcome = co_await run_ws_request(
            ctx_, "s" + std::to_string(index) + "t" + std::to_string(t), spec, deadline);
      } else {
        outcome = co_await run_openai_request(ctx_, config_.backend, spec, deadline);
      }
      slots_.release();
      outcome.session = index;
      outcome.turn = static_cast<int>(t);
      bool ok = outcome.success;
      if (ok && t + 1 < session.turns.size()) {
        if (token_mode()) {
          history_ids = std::move(spec.prompt_ids);
          history_ids.insert(history_ids.end(), outcome.output_ids.begin(),
                             outcome.output_ids.end());
        } else {
          history_messages = std::move(spec.messages);
          history_messages.push_back({"assistant", outcome.output_text});
        }
      }
      outcome.output_ids.clear();
      outcome.output_text.clear();
      record(std::move(outcome));
      if (!ok) {
        for (std::size_t rest = t + 1; rest < session.turns.size(); ++rest) {
          record_unsent(index, static_cast<int>(rest), "not sent: an earlier turn failed");
        }
        break;
      }
    }
  }

  const bench_config& config_;
  std::vector<bench_session> sessions_;
  asio::io_context ioc_;
  transport_context ctx_;
  async_semaphore slots_;
  progress_bar progress_;
  bench_clock::time_point run_deadline_;
  bench_clock::time_point last_end_{};
  std::vector<request_outcome> outcomes_;
  int done_ = 0;
  int failed_ = 0;
  std::exception_ptr failure_;
};

}  // namespace

status validate(const bench_config& config) {
  if (status s = validate(config.workload); !s) return s;
  if (config.workload.kind == workload_kind::kMultiTurn &&
      config.backend == api_backend::kOpenAICompletions) {
    return status(status_code::kInvalidArgument,
                  "the multi-turn workload needs --backend ws or openai-chat (completions do not "
                  "return the answer's token ids)");
  }
  if (std::isnan(config.request_rate) || config.request_rate <= 0) {
    return status(status_code::kInvalidArgument, "--request-rate must be > 0 (or inf)");
  }
  if (config.max_concurrency < 0) {
    return status(status_code::kInvalidArgument, "--max-concurrency must be >= 0");
  }
  if (!(config.request_timeout_s > 0) || !(config.max_duration_s > 0)) {
    return status(status_code::kInvalidArgument, "timeouts must be > 0 seconds");
  }
  if (config.retain_system_prompt_priority >= 0 && config.backend != api_backend::kWebSocket) {
    return status(status_code::kInvalidArgument,
                  "--retain-system-prompt needs --backend ws (kvserve.v1 'retention')");
  }
  if (config.retain_system_prompt_priority > 100) {
    return status(status_code::kInvalidArgument, "retention priority must be in 0..100");
  }
  return status::ok();
}

result<bench_run> run_benchmark(const bench_config& config) {
  if (status s = validate(config); !s) return s;
  runner r(config, make_workload(config.workload));
  return r.run();
}

}  // namespace kvserve::bench
