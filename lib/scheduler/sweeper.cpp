#include "lib/scheduler/sweeper.hpp"

namespace retentiond::scheduler {

Result<SweepReport> Sweeper::run_to_completion(const actions::Actor& actor) {
  const auto start = std::chrono::steady_clock::now();
  SweepReport report;
  // One pass over the due range: the cursor moves past held records and
  // records this build cannot progress, so each is seen once.
  actions::SweepCursor cursor;
  while (!cursor.done) {
    auto batch = m_service.sweep_batch(m_max_batch, actor, cursor);
    if (!batch) return std::move(batch).error();
    ++report.batches;
    report.counts += *batch;
  }
  // Purged and anonymised values must not survive in the WAL.
  if (report.counts.actions() > 0) m_service.scrub();
  report.duration_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  report.finished_at = m_service.clock().now();
  m_last = report;
  return report;
}

}  // namespace retentiond::scheduler
