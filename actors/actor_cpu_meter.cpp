#include "actors/actor_cpu_meter.hpp"

#include <ctime>

namespace kvserve {

namespace {

std::int64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

actor_cpu_meter::scope::scope(actor_cpu_meter* meter, engine_actor actor)
    : meter_(meter), actor_(actor) {
  if (meter_ != nullptr) start_ns_ = thread_cpu_ns();
}

actor_cpu_meter::scope::~scope() {
  if (meter_ == nullptr) return;
  meter_->ns_[static_cast<std::size_t>(actor_)].fetch_add(thread_cpu_ns() - start_ns_,
                                                          std::memory_order_relaxed);
}

std::map<std::string, double> actor_cpu_meter::seconds() const {
  static constexpr const char* kNames[kNumActors] = {"scheduler", "cache_manager", "worker",
                                                     "request_hub"};
  std::map<std::string, double> out;
  for (std::size_t i = 0; i < kNumActors; ++i) {
    out[kNames[i]] = 1e-9 * static_cast<double>(ns_[i].load(std::memory_order_relaxed));
  }
  return out;
}

}  // namespace kvserve
