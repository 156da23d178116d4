#pragma once
// Sweeper: drains what is due in bounded batches (at most max_batch_records
// records per transaction), the way Kea reclaims expired leases.
//
// run_to_completion() walks the due range once, batch after batch, so that
// on return no unheld record has a due phase it could run. Not
// thread-safe; used from the daemon's io_context thread.

#include <chrono>
#include <cstdint>
#include <optional>

#include "lib/actions/service.hpp"

namespace retentiond::scheduler {

struct SweepReport {
  actions::SweepCounts counts;
  std::int64_t duration_ms = 0;
  std::int64_t batches = 0;
  calendar::Instant finished_at;
};

class Sweeper {
 public:
  Sweeper(actions::Service& service, std::size_t max_batch_records)
      : m_service(service), m_max_batch(max_batch_records) {}

  // Runs batches until drained. On success, no record has a due phase this
  // build can run; on failure, the failing batch changed nothing and earlier
  // batches stay committed.
  Result<SweepReport> run_to_completion(const actions::Actor& actor);

  const std::optional<SweepReport>& last() const { return m_last; }

 private:
  actions::Service& m_service;
  std::size_t m_max_batch;
  std::optional<SweepReport> m_last;
};

}  // namespace retentiond::scheduler
