#pragma once
// The metrics method's text and GET /metrics: every metric the daemon
// exports, named retentiond_..., documented in docs/operations.md
// ("Metrics").

#include <optional>
#include <string>
#include <vector>

#include "lib/actions/service.hpp"
#include "lib/scheduler/scheduler.hpp"

namespace retentiond::protocol {

// What the event loop knows and the store does not.
struct DaemonFacts {
  std::string version;
  std::string policy_hash;
  std::vector<std::string> categories;  // the policy's, so that every series exists from the start
  calendar::Instant started_at;
  std::optional<std::string> paused;  // the reason, e.g. "reload_guard"
  const scheduler::Scheduler::Stats* sweeps = nullptr;
  int consecutive_failures = 0;
};

// Every pause reason a daemon can report (status.paused): each has its
// series, 0 or 1.
inline const std::vector<std::string> kPauseReasons = {"reload_guard", "clock_guard"};

std::string metrics_text(const actions::MetricsSnapshot& store, const DaemonFacts& daemon);

}  // namespace retentiond::protocol
