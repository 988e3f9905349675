#pragma once
/// The clock the cache reads for retention windows. It is injected so that tests and the
/// simulator control time. LRU order does not depend on the clock: it uses a logical access
/// counter, so it holds even when many operations share one clock reading.

#include <chrono>
#include <functional>

namespace kvserve {

/// Returns the current time as a duration since an arbitrary, fixed epoch. Must not go
/// backwards.
using cache_clock = std::function<std::chrono::nanoseconds()>;

/// The default clock: std::chrono::steady_clock.
cache_clock steady_cache_clock();

/// A clock that moves only when told to; for tests and simulations. Copies of the function
/// returned by clock() read this object, which must outlive them.
class manual_clock {
 public:
  explicit manual_clock(std::chrono::nanoseconds start = std::chrono::nanoseconds{0})
      : now_(start) {}
  std::chrono::nanoseconds now() const { return now_; }
  void advance(std::chrono::nanoseconds d) { now_ += d; }
  void set(std::chrono::nanoseconds t) { now_ = t; }
  /// A cache_clock reading this object.
  cache_clock clock() const {
    return [this] { return now_; };
  }

 private:
  std::chrono::nanoseconds now_;
};

}  // namespace kvserve
