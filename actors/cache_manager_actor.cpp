// The cache-manager actor: a thin shell around step_allocator (which wraps kv_cache_manager).

#include <memory>
#include <utility>

#include "actors/protocol.hpp"
#include "actors/step_allocator.hpp"

namespace kvserve {

namespace {

struct cache_manager_state {
  std::shared_ptr<step_allocator> allocator;
  static inline const char* name = "kvserve.cache_manager";
};

cache_manager_actor::behavior_type cache_manager(
    cache_manager_actor::stateful_pointer<cache_manager_state> self,
    std::shared_ptr<step_allocator> allocator) {
  self->state.allocator = std::move(allocator);
  return {
      [self](allocate_atom, const cache_step_request& request) -> cache_step_reply {
        return self->state.allocator->apply(request);
      },
      [self](stats_atom) -> cache_stats_snapshot { return self->state.allocator->stats(); },
  };
}

}  // namespace

cache_manager_actor spawn_cache_manager(caf::actor_system& sys,
                                        std::shared_ptr<step_allocator> allocator) {
  return sys.spawn(cache_manager, std::move(allocator));
}

}  // namespace kvserve
