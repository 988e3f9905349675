// The cache-manager actor: a thin shell around step_allocator (which wraps kv_cache_manager).

#include <exception>
#include <memory>
#include <string>
#include <utility>

#include "actors/protocol.hpp"
#include "actors/step_allocator.hpp"

namespace kvserve {

namespace {

struct cache_manager_state {
  std::shared_ptr<step_allocator> allocator;
  std::shared_ptr<actor_cpu_meter> meter;
  static inline const char* name = "kvserve.cache_manager";
};

cache_manager_actor::behavior_type cache_manager(
    cache_manager_actor::stateful_pointer<cache_manager_state> self,
    std::shared_ptr<step_allocator> allocator, std::shared_ptr<actor_cpu_meter> meter) {
  self->state.allocator = std::move(allocator);
  self->state.meter = std::move(meter);
  return {
      [self](allocate_atom, const cache_step_request& request) -> cache_step_reply {
        // Exceptions never leave the actor: the allocator releases every live sequence and
        // the scheduler fails the requests that held blocks, then keeps serving.
        actor_cpu_meter::scope measured(self->state.meter.get(), engine_actor::kCacheManager);
        try {
          return self->state.allocator->apply(request);
        } catch (const std::exception& e) {
          return self->state.allocator->fail(
              request,
              {status_code::kInternal, std::string("cache manager exception: ") + e.what()});
        } catch (...) {
          return self->state.allocator->fail(request,
                                             {status_code::kInternal, "cache manager exception"});
        }
      },
      [self](stats_atom) -> cache_stats_snapshot {
        try {
          return self->state.allocator->stats();
        } catch (...) {
          return {};
        }
      },
  };
}

}  // namespace

cache_manager_actor spawn_cache_manager(caf::actor_system& sys,
                                        std::shared_ptr<step_allocator> allocator,
                                        std::shared_ptr<actor_cpu_meter> meter) {
  return sys.spawn(cache_manager, std::move(allocator), std::move(meter));
}

}  // namespace kvserve
