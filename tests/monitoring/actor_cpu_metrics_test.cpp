// kvserve_actor_cpu_seconds_total follows the engine's per-actor CPU totals by deltas, and is
// absent while the engine does not measure them.

#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <string>

#include "metric_sample.hpp"
#include "monitoring/prometheus_observer.hpp"

namespace kvserve {
namespace {

using testing::sample;

TEST(actor_cpu_metrics, follow_the_per_actor_totals) {
  prometheus_observer obs;
  engine_stats s;
  obs.on_stats(s);
  EXPECT_EQ(obs.render().find("kvserve_actor_cpu_seconds_total{"), std::string::npos);
  s.actor_cpu_seconds = {{"scheduler", 0.5}, {"worker", 2.0}};
  obs.on_stats(s);
  obs.on_stats(s);  // the same totals again: no double counting
  s.actor_cpu_seconds["scheduler"] = 0.75;
  obs.on_stats(s);
  const std::string text = obs.render();
  EXPECT_DOUBLE_EQ(sample(text, "kvserve_actor_cpu_seconds_total{actor=\"scheduler\"}"), 0.75);
  EXPECT_DOUBLE_EQ(sample(text, "kvserve_actor_cpu_seconds_total{actor=\"worker\"}"), 2.0);
}

}  // namespace
}  // namespace kvserve
