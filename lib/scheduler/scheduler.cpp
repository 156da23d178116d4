#include "lib/scheduler/scheduler.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace retentiond::scheduler {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

std::int64_t ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

}  // namespace

Scheduler::Scheduler(asio::io_context& io, Writer& writer, actions::Service& service, SchedulerOptions options)
    : m_io(io), m_writer(writer), m_service(service), m_options(options), m_timer(io) {}

void Scheduler::start() {
  m_stopped = false;
  // The catch-up pass is queued before anything else the loop will do, so
  // its first turn runs before the first request is read.
  if (paused()) arm(m_options.check_interval);
  else begin(actions::Actor{"scheduler"}, {}, true);
}

void Scheduler::stop() {
  m_stopped = true;
  m_timer.cancel();
  m_armed_for.reset();
  m_queued.clear();
  m_writer.cancel_background();
  m_pass.reset();
}

void Scheduler::set_paused(std::optional<Pause> pause) {
  m_pause = pause;
  if (!pause && !m_stopped) arm(Clock::duration::zero());
}

Scheduler::Pause Scheduler::clock_pause(const actions::ClockCheck& check) {
  return Pause{check.newly_due, check.guard, "clock_guard", check.last_seen, check.now};
}

void Scheduler::clock_confirmed() {
  if (paused_by("clock_guard")) set_paused(std::nullopt);
}

Error Scheduler::paused_error() const {
  nlohmann::json data = {{"newly_due", m_pause->newly_due}, {"guard", m_pause->guard}, {"paused", m_pause->reason}};
  if (m_pause->reason == "clock_guard") {
    data["last_seen"] = m_pause->last_seen ? nlohmann::json(calendar::format_instant(*m_pause->last_seen)) : nlohmann::json();
    data["now"] = m_pause->now ? nlohmann::json(calendar::format_instant(*m_pause->now)) : nlohmann::json();
    return Error{ErrorCode::confirmation_required, "confirmation_required",
                 "the daemon is paused by the clock guard: the clock jumped ahead and would make " +
                     std::to_string(m_pause->newly_due) + " records due at once; check the clock, then confirm it "
                     "(clock.confirm, retentionctl confirm-clock)",
                 data};
  }
  return Error{ErrorCode::confirmation_required, "confirmation_required",
               "the daemon is paused by the reload guard: confirm the policy (config.reload with confirm) first", data};
}

void Scheduler::clock_tripped(const actions::ClockCheck& check) {
  Pass pass = std::move(*m_pass);
  m_pass.reset();
  const bool already = paused_by("clock_guard");
  m_pause = clock_pause(check);
  if (!already) {
    spdlog::warn("clock_guard.tripped last_seen={} now={} newly_due={} guard={}; disposal paused until the clock is "
                 "confirmed (clock.confirm, retentionctl confirm-clock, or --confirm-clock)",
                 check.last_seen ? calendar::format_instant(*check.last_seen) : "-", calendar::format_instant(check.now),
                 check.newly_due, check.guard);
  }
  const Result<SweepReport> refused = paused_error();
  for (auto& done : pass.waiters) done(refused);
  for (auto& [actor, done] : m_queued) done(refused);
  m_queued.clear();
  arm(m_options.check_interval);
  if (on_pass_end) on_pass_end();
}

void Scheduler::arm(Clock::duration delay) {
  if (m_stopped) return;
  const auto when = Clock::now() + delay;
  m_armed_for = when;
  m_timer.expires_at(when);
  m_timer.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) on_timer();
  });
}

// The next wake-up: the earliest due time still ahead, capped at the check
// interval. Due times already past belong to records the last pass skipped
// (held) or that arrived overdue: the check interval takes them, without
// spinning on them.
void Scheduler::arm_next() {
  auto delay = Clock::duration(m_options.check_interval);
  if (auto next = m_service.next_due(m_service.clock().now()); next && *next) {
    const auto until = std::chrono::seconds((**next).seconds - m_service.clock().now().seconds);
    // Compared in seconds: a due time centuries ahead overflows the timer's nanoseconds.
    if (until > std::chrono::seconds::zero() && until < m_options.check_interval) delay = until;
  }
  arm(delay);
}

void Scheduler::on_timer() {
  m_armed_for.reset();
  if (m_pass) return;  // it re-arms when it ends
  if (paused_by("clock_guard")) {
    // Asked again: the pass's first step stops at once while the jump
    // stands, and goes on when the clock has been put right.
    begin(actions::Actor{"scheduler"}, {}, true);
    return;
  }
  if (paused()) {
    // Paused by the reload guard: no pass, but the clock is still watched,
    // so that the instant last seen does not go stale (a confirmation days
    // later is no jump). A jump found meanwhile trips at the first pass.
    m_writer.submit<Status>(
        [this]() -> Status {
          auto check = m_service.check_clock(false, actions::Actor{"scheduler"});
          if (!check) return std::move(check).error();
          return {};
        },
        [](Status) {});
    arm(m_options.check_interval);
    return;
  }
  begin(actions::Actor{"scheduler"}, {}, true);
}

void Scheduler::records_changed(std::optional<calendar::Instant> earliest_due) {
  if (m_stopped || paused()) return;
  if (!earliest_due) {
    auto next = m_service.next_due(m_service.clock().now());
    if (!next || !*next) return;
    earliest_due = **next;
  }
  const auto until = std::chrono::seconds(earliest_due->seconds - m_service.clock().now().seconds);
  // Already due: the next check (within check_interval) or an explicit sweep
  // takes it, like anything a pass skipped. A pass is not started on every
  // put of an overdue record: an import of old records is not raced, and a
  // script may put then sweep and read the counts.
  if (until <= std::chrono::seconds::zero()) return;
  if (m_pass) return;  // the pass re-arms from the store when it ends
  // Capped before it meets the timer's nanoseconds (a due time centuries
  // ahead overflows them). The cap changes no decision: nothing is ever
  // armed further ahead than the check interval or the longest back-off.
  const auto wait = std::min(until, std::max(m_options.check_interval, m_options.max_backoff));
  if (!m_armed_for || Clock::now() + wait < *m_armed_for) arm(std::min(wait, m_options.check_interval));
}

void Scheduler::sweep(const actions::Actor& actor, Done done) {
  if (m_pause) {
    done(paused_error());
    return;
  }
  if (m_pass) {
    m_queued.emplace_back(actor, std::move(done));
    return;
  }
  std::vector<Done> waiters;
  waiters.push_back(std::move(done));
  begin(actor, std::move(waiters), false);
}

void Scheduler::begin(actions::Actor actor, std::vector<Done> waiters, bool timer_driven) {
  m_timer.cancel();
  m_armed_for.reset();
  auto progress = std::make_shared<Progress>();
  progress->actor = std::move(actor);
  progress->batch_limit = m_batch_limit;
  m_pass = Pass{progress, Clock::now(), std::move(waiters), timer_driven};
  m_writer.run_background([this, progress] { return step(*progress); },
                          [this, progress] {
                            if (!m_pass || m_pass->progress != progress) return;  // stopped meanwhile
                            m_batch_limit = progress->batch_limit;
                            if (progress->clock_trip) {
                              clock_tripped(*progress->clock_trip);
                              return;
                            }
                            if (paused_by("clock_guard") && progress->clock_ok) {
                              spdlog::info("clock_guard.cleared now={} (the clock is back within the guard)",
                                           calendar::format_instant(m_service.clock().now()));
                              m_pause.reset();
                            }
                            if (progress->failure) {
                              finish(*progress->failure);
                              return;
                            }
                            progress->report.duration_ms = ms_since(m_pass->started);
                            progress->report.finished_at = m_service.clock().now();
                            finish(progress->report);
                          });
}

// On the writer: one batch. True when the pass has finished (or failed).
bool Scheduler::step(Progress& progress) {
  // The clock first: a step never acts on a jump the guard would stop.
  auto clock = m_service.check_clock(false, progress.actor);
  if (!clock) {
    progress.failure = std::move(clock).error();
    return true;
  }
  if (clock->verdict == actions::ClockCheck::Verdict::tripped) {
    progress.clock_trip = *clock;
    return true;
  }
  progress.clock_ok = true;
  if (clock->verdict == actions::ClockCheck::Verdict::accepted) {
    spdlog::info("clock.jump last_seen={} now={} newly_due={} guard={} (within the guard: nothing paused)",
                 clock->last_seen ? calendar::format_instant(*clock->last_seen) : "-",
                 calendar::format_instant(clock->now), clock->newly_due, clock->guard);
  }
  const std::size_t limit = progress.batch_limit;
  if (!progress.destroyed) {
    auto destroyed = m_service.destroy_batch(limit, progress.actor);
    if (!destroyed) {
      progress.failure = std::move(destroyed).error();
      return true;
    }
    if (*destroyed < static_cast<std::int64_t>(limit)) progress.destroyed = true;
    if (*destroyed > 0) {
      progress.report.counts.destroyed += *destroyed;
      ++progress.report.batches;
      return false;
    }
  }
  auto counts = m_service.sweep_batch(limit, progress.actor, progress.cursor, Clock::now() + m_options.max_batch_time);
  if (!counts) {
    progress.failure = std::move(counts).error();
    return true;
  }
  // Fetch about what a step can get through: a batch cut short by the time
  // bound wasted the rows it read but did not reach, and would again.
  const auto visited = static_cast<std::size_t>(counts->visited);
  if (!progress.cursor.done && visited < limit) {
    progress.batch_limit = std::max<std::size_t>(1, visited);
  } else if (visited == limit) {
    progress.batch_limit = std::min(m_options.max_batch_records, limit * 2);
  }
  ++progress.report.batches;
  progress.report.counts += *counts;
  return progress.cursor.done;
}

void Scheduler::finish(const Result<SweepReport>& result) {
  Pass pass = std::move(*m_pass);
  m_pass.reset();
  const actions::Actor& pass_actor = pass.progress->actor;
  m_stats.durations.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - pass.started).count());
  if (result) {
    m_failures = 0;
    m_last = *result;
    m_stats.last_success = result->finished_at;
    const auto& c = result->counts;
    // One summary line per pass that found anything, never one per record.
    if (c.actions() > 0 || c.held > 0 || c.stuck > 0 || c.destroyed > 0) {
      spdlog::info("sweep.done actor={} archived={} anonymised={} purged={} destroyed={} held={} stuck={} batches={} "
                   "ms={}",
                   pass_actor.name, c.archived, c.anonymised, c.purged, c.destroyed, c.held, c.stuck,
                   result->batches, result->duration_ms);
    }
  } else {
    ++m_failures;
    ++m_stats.failed;
  }
  for (auto& done : pass.waiters) done(result);
  if (m_stopped) return;

  if (!result) {
    const auto backoff = std::min<std::chrono::seconds>(std::chrono::seconds(1LL << std::min(m_failures - 1, 16)),
                                                         m_options.max_backoff);
    spdlog::error("sweep.failed actor={} error={} retry_in={}s", pass_actor.name, result.error().message,
                  backoff.count());
    // Sweeps queued behind the failed pass get its answer: they asked for a
    // pass now, and the next one is not now.
    for (auto& [actor, done] : m_queued) done(result);
    m_queued.clear();
    arm(backoff);
    if (on_pass_end) on_pass_end();
    return;
  }
  if (pass.timer_driven) check_backlog();
  if (!m_queued.empty()) {
    // One fresh pass per actor: those queued by the same actor share it.
    const actions::Actor actor = m_queued.front().first;
    std::vector<Done> waiters;
    for (auto it = m_queued.begin(); it != m_queued.end();) {
      if (it->first.name == actor.name) {
        waiters.push_back(std::move(it->second));
        it = m_queued.erase(it);
      } else {
        ++it;
      }
    }
    begin(actor, std::move(waiters), false);
  } else {
    arm_next();
  }
  if (on_pass_end) on_pass_end();
}

// Work left after a timer pass: records that became due behind its cursor,
// or more arriving than a pass can take. Held records do not count.
void Scheduler::check_backlog() {
  auto left = m_service.backlog();
  if (!left || !m_last) return;
  if (*left <= 0) {
    m_undrained = 0;
    return;
  }
  ++m_undrained;
  if (m_undrained % m_options.unwarned_cycles == 0) {
    spdlog::warn("sweep.backlog remaining={} cycles={} (records become due faster than passes drain them; "
                 "consider raising max_batch_records or max_batch_ms)",
                 *left, m_undrained);
  }
}

}  // namespace retentiond::scheduler
