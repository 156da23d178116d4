#pragma once
// Scheduler: acts on time without being asked, and never hogs the event
// loop (Kea's expired-lease reclamation: max-reclaim-leases and
// max-reclaim-time per turn).
//
// A *pass* walks the due range once, in (due, key) order, in steps: each
// step is one Service::sweep_batch (one transaction) of at most
// max_batch_records records and max_batch_time, run on the writer thread as
// background work (writer.hpp), so a change waits for at most one batch and
// reads, answered on the event loop from a snapshot, wait for none. When a
// pass ends, no unheld record has a phase that was due when the pass
// reached it.
//
// Passes start from the timer, and from sweep() (the `sweep` method), whose
// callers are answered when their pass ends. The timer is armed for the
// earliest due time and at least every check interval, so wall-clock jumps
// and suspends are caught; records_changed() re-arms it when a change brings
// a due time closer. Records already overdue when stored (an import of old
// records, an event in the past) are left to the next check or an explicit
// sweep rather than starting a pass on every put. A
// failing turn changes nothing (its transaction rolls back); the pass ends,
// is logged (sweep.failed) and retried with exponential back-off. Several
// passes in a row that end with work left log sweep.backlog.
//
// Paused (the reload guard tripped at start-up), the timer runs no pass and
// sweep() is refused with confirmation_required.
//
// The clock guard (Service::check_clock) is asked before every step: a
// forward jump of the wall clock that makes too many records newly due ends
// the pass before the step acts, and pauses the same way (reason
// "clock_guard") until clock_confirmed(). While so paused, the timer keeps
// asking at every check interval: a clock put right again (behind the jump)
// lifts the pause by itself.
//
// A pass first destroys, in batches of its own, the records whose undo
// window ([daemon] purge_grace) has ended (Service::destroy_batch), then
// walks the due range.
//
// All calls and callbacks on the io_context's thread; the pass's steps run on
// the writer, touching only the pass's own state.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "lib/actions/service.hpp"
#include "lib/metrics/exposition.hpp"
#include "lib/scheduler/writer.hpp"
#include "lib/util/asio.hpp"

namespace retentiond::scheduler {

struct SweepReport {
  actions::SweepCounts counts;
  std::int64_t duration_ms = 0;
  std::int64_t batches = 0;
  calendar::Instant finished_at;
};

struct SchedulerOptions {
  std::size_t max_batch_records = 1000;
  std::chrono::milliseconds max_batch_time{50};
  std::chrono::seconds check_interval{60};
  std::chrono::seconds max_backoff{60};
  int unwarned_cycles = 5;  // passes in a row ending with a backlog before sweep.backlog
};

class Scheduler {
 public:
  using Done = std::function<void(const Result<SweepReport>&)>;

  Scheduler(boost::asio::io_context& io, Writer& writer, actions::Service& service, SchedulerOptions options);

  // Starts the timer with an immediate pass: catch-up of everything overdue.
  void start();
  // Cancels the timer and abandons the current pass between two turns
  // (each turn is one transaction, so nothing is half-done). Waiting
  // callers are not answered: their connections are closing.
  void stop();

  // Records changed (a put, an event, a release, a reload). The earliest
  // due time still ahead, given or looked up in the store, re-arms the timer
  // when it is closer than the one armed.
  void records_changed(std::optional<calendar::Instant> earliest_due = std::nullopt);

  // A full pass on behalf of `actor`; `done` is called when it ends. While a
  // pass is running, a fresh one follows it (the running one may already be
  // past records that became due since it started).
  void sweep(const actions::Actor& actor, Done done);

  // Why the daemon is paused: "reload_guard" (its counts at start-up) or
  // "clock_guard" (the jump: the instant last seen and the clock's now).
  struct Pause {
    std::int64_t newly_due = 0;
    std::int64_t guard = 0;
    std::string reason = "reload_guard";
    std::optional<calendar::Instant> last_seen;
    std::optional<calendar::Instant> now;
  };
  static Pause clock_pause(const actions::ClockCheck& check);
  // Pauses (with the guard's counts) or, given nullopt, resumes with a pass at once.
  void set_paused(std::optional<Pause> pause);
  bool paused() const { return m_pause.has_value(); }
  bool paused_by(std::string_view reason) const { return m_pause && m_pause->reason == reason; }
  // An administrator accepted the clock (clock.confirm): lifts a clock
  // guard pause, with a pass at once; any other pause stays.
  void clock_confirmed();
  const std::optional<Pause>& pause() const { return m_pause; }
  bool running() const { return m_pass.has_value(); }
  const std::optional<SweepReport>& last() const { return m_last; }
  // When the timer fires next; nullopt while a pass runs (it re-arms when it
  // ends) or once stopped. For tests and diagnostics: with it, a test checks
  // that the next check is at most check_interval away without waiting.
  const std::optional<std::chrono::steady_clock::time_point>& armed_for() const { return m_armed_for; }

  // What the metrics export of the passes since the daemon started.
  struct Stats {
    // Pass durations in seconds, failed passes included.
    metrics::Histogram durations{{0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600}};
    std::int64_t failed = 0;  // passes that ended with an error
    std::optional<calendar::Instant> last_success;  // when the last successful pass ended
  };
  const Stats& stats() const { return m_stats; }
  // Consecutive failed passes (0 after a success).
  int failures() const { return m_failures; }

  // Called after every pass (for sd_notify STATUS=).
  std::function<void()> on_pass_end;

 private:
  // A pass's progress, written by its steps on the writer and read on the
  // event loop once it has finished.
  struct Progress {
    actions::Actor actor;
    actions::SweepCursor cursor;
    SweepReport report;
    std::optional<Error> failure;
    std::size_t batch_limit = 1;  // records fetched per step: adapts to what max_batch_time allows
    std::optional<actions::ClockCheck> clock_trip;  // the clock guard stopped the pass before a step
    bool destroyed = false;  // the ended undo windows are done: the due records next
    bool clock_ok = false;   // a check of the clock passed (lifts a clock guard pause)
  };
  struct Pass {
    std::shared_ptr<Progress> progress;
    std::chrono::steady_clock::time_point started;
    std::vector<Done> waiters;
    bool timer_driven = false;
  };

  void arm(std::chrono::steady_clock::duration delay);
  void arm_next();
  void on_timer();
  void begin(actions::Actor actor, std::vector<Done> waiters, bool timer_driven);
  bool step(Progress& progress);
  void finish(const Result<SweepReport>& result);
  // The pass ended because the clock guard tripped: pause, answer its callers.
  void clock_tripped(const actions::ClockCheck& check);
  Error paused_error() const;
  void check_backlog();

  boost::asio::io_context& m_io;
  Writer& m_writer;
  actions::Service& m_service;
  SchedulerOptions m_options;
  boost::asio::steady_timer m_timer;
  std::optional<std::chrono::steady_clock::time_point> m_armed_for;
  std::optional<Pass> m_pass;
  std::deque<std::pair<actions::Actor, Done>> m_queued;  // explicit sweeps waiting for a fresh pass
  std::optional<Pause> m_pause;
  bool m_stopped = false;
  int m_failures = 0;      // consecutive failed passes (back-off)
  Stats m_stats;
  int m_undrained = 0;     // consecutive passes ending with a backlog
  // Records fetched per step: adapts to what max_batch_time allows (doubling
  // up to max_batch_records). It starts at one record, because the catch-up
  // pass takes its first step before the event loop runs (Writer::start):
  // a first request waits for a small batch, not for a whole one.
  std::size_t m_batch_limit = 1;
  std::optional<SweepReport> m_last;
};

}  // namespace retentiond::scheduler
