#pragma once

// CPU time spent inside each of the engine's actors (opt-in: engine_config::measure_actor_cpu).
// Each measured message handler reads the calling thread's CPU clock on entry and exit, so
// the figures exclude time spent waiting in mailboxes or for a core, and what CAF itself
// spends between handlers. Costs two clock reads per handled message when enabled, nothing
// when the meter is absent.

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace kvserve {

enum class engine_actor { kScheduler, kCacheManager, kWorker, kRequestHub };

class actor_cpu_meter {
 public:
  /// Adds the calling thread's CPU time between construction and destruction to `actor`.
  /// A null meter measures nothing.
  class scope {
   public:
    scope(actor_cpu_meter* meter, engine_actor actor);
    ~scope();
    scope(const scope&) = delete;
    scope& operator=(const scope&) = delete;

   private:
    actor_cpu_meter* meter_;
    engine_actor actor_;
    std::int64_t start_ns_ = 0;
  };

  /// Seconds per actor ("scheduler", "cache_manager", "worker", "request_hub") since start.
  std::map<std::string, double> seconds() const;

 private:
  static constexpr std::size_t kNumActors = 4;
  std::array<std::atomic<std::int64_t>, kNumActors> ns_{};
};

}  // namespace kvserve
