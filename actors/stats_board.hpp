#pragma once
/// The latest engine_stats, written by the scheduler actor after every step and read by
/// engine::stats() from any thread. CAF-free.

#include <atomic>
#include <mutex>

#include "actors/observer.hpp"

namespace kvserve {

class stats_board {
 public:
  /// A copy of the latest stats, plus the requests the engine rejected before they reached
  /// the scheduler.
  engine_stats snapshot() const {
    std::lock_guard<std::mutex> lock(mu_);
    engine_stats s = stats_;
    s.num_requests_rejected += rejected_early_.load();
    return s;
  }
  void publish(const engine_stats& s) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_ = s;
  }
  void count_rejected() { ++rejected_early_; }

 private:
  mutable std::mutex mu_;
  engine_stats stats_;
  std::atomic<std::uint64_t> rejected_early_{0};
};

}  // namespace kvserve
