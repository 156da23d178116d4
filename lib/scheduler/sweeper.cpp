#include "lib/scheduler/sweeper.hpp"

namespace retentiond::scheduler {

Result<SweepReport> Sweeper::run_to_completion(const actions::Actor& actor) {
  const auto start = std::chrono::steady_clock::now();
  SweepReport report;
  for (;;) {
    auto batch = m_service.sweep_batch(m_max_batch, actor);
    if (!batch) return std::move(batch).error();
    ++report.batches;
    // Records that cannot progress are seen again by every batch: keep the
    // last batch's count of them, not the sum.
    const std::int64_t stuck = batch->stuck;
    report.counts += *batch;
    report.counts.stuck = stuck;
    // A batch with no action means what is left cannot progress now.
    if (batch->actions() == 0) break;
  }
  report.duration_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  report.finished_at = m_service.clock().now();
  m_last = report;
  return report;
}

}  // namespace retentiond::scheduler
