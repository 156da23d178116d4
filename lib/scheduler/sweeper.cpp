#include "lib/scheduler/sweeper.hpp"

#include <spdlog/spdlog.h>

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
  report.duration_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  report.finished_at = m_service.clock().now();
  m_last = report;
  // One summary line per sweep that found anything, never one per record.
  if (report.counts.actions() > 0 || report.counts.held > 0 || report.counts.stuck > 0) {
    spdlog::info("sweep.done actor={} archived={} anonymised={} purged={} held={} stuck={} batches={} ms={}", actor.name,
                 report.counts.archived, report.counts.anonymised, report.counts.purged, report.counts.held,
                 report.counts.stuck, report.batches, report.duration_ms);
  }
  return report;
}

}  // namespace retentiond::scheduler
