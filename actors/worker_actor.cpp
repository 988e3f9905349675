// The worker actor: owns the backend (through step_executor) and runs on its own thread
// (detached), so a long backend call never blocks the scheduler or CAF's worker threads.

#include <memory>
#include <utility>

#include "actors/protocol.hpp"
#include "actors/step_executor.hpp"

namespace kvserve {

namespace {

struct worker_state {
  std::shared_ptr<step_executor> executor;
  std::shared_ptr<actor_cpu_meter> meter;
  static inline const char* name = "kvserve.worker";
};

worker_actor::behavior_type worker(worker_actor::stateful_pointer<worker_state> self,
                                   std::shared_ptr<step_executor> executor,
                                   std::shared_ptr<actor_cpu_meter> meter) {
  self->state.executor = std::move(executor);
  self->state.meter = std::move(meter);
  return {
      [self](submit_atom, step_plan& plan) {
        actor_cpu_meter::scope measured(self->state.meter.get(), engine_actor::kWorker);
        self->state.executor->submit(std::move(plan));  // never throws
      },
      [self](collect_atom) -> worker_outcome {
        actor_cpu_meter::scope measured(self->state.meter.get(), engine_actor::kWorker);
        try {
          return self->state.executor->collect();
        } catch (...) {  // collect() catches backend exceptions; this is the last guard
          worker_outcome out;
          out.error = {status_code::kInternal, "worker exception"};
          return out;
        }
      },
  };
}

}  // namespace

worker_actor spawn_worker(caf::actor_system& sys, std::shared_ptr<step_executor> executor,
                          std::shared_ptr<actor_cpu_meter> meter) {
  return sys.spawn<caf::detached>(worker, std::move(executor), std::move(meter));
}

}  // namespace kvserve
