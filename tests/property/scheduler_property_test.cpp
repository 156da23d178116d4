// Wall-clock jumps under the Scheduler (issue 5, item 6). The Service reads
// a ManualClock that the test moves backwards and forwards, between passes
// and between two turns of a running pass; the Scheduler's timer runs on
// the real steady clock, as in the daemon. Properties:
// - no phase of any record is run twice (one audit entry per action per
//   record, checked after every pass and in full at the end), none before it
//   is due at the instant it runs, and phases run in order;
// - after every pass the timer is armed at most one check interval ahead
//   (Scheduler::armed_for), so a jump is caught by the next check; and
//   when that check fires (for real, check_interval = 1 s, waited for as a
//   condition on the event loop), it leaves nothing due behind.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include "lib/scheduler/scheduler.hpp"
#include "tests/property/world.hpp"

namespace retentiond::property {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr std::uint64_t kRecords = 400;
constexpr std::uint64_t kSteps = 60;
constexpr int kTimerChecks = 6;  // real timer firings (each waits up to check_interval)

class SchedulerProperty : public ::testing::Test {
 protected:
  void make(std::chrono::seconds check_interval, std::int64_t start) {
    spdlog::set_level(spdlog::level::warn);  // one sweep.done per pass is noise here; failures still show
    options.max_batch_records = 7;  // many turns per pass: room to jump between them
    options.max_batch_time = std::chrono::minutes(10);
    options.check_interval = check_interval;
    options.max_backoff = check_interval;
    world = std::make_unique<World>(seed, ref::FiscalYearEnd{12, 31}, start);
    ASSERT_TRUE(world->ok()) << world->error();
    writer = std::make_unique<scheduler::Writer>(io, scheduler::Writer::Mode::io);
    scheduler = std::make_unique<scheduler::Scheduler>(io, *writer, *world->service, options);
    scheduler->on_pass_end = [this] {
      ++passes;
      if (!scheduler->last() || scheduler->running()) return;
      // Idle after a pass: the next check is armed, at most one interval away.
      ASSERT_TRUE(scheduler->armed_for()) << "no check armed after pass " << passes;
      EXPECT_LE(ms_ahead(), to_ms(options.check_interval))
          << "the next check is more than check_interval away after pass " << passes;
    };
  }

  static std::int64_t to_ms(SteadyClock::duration d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  }
  // How far ahead the armed check is, in milliseconds.
  std::int64_t ms_ahead() const { return to_ms(*scheduler->armed_for() - SteadyClock::now()); }

  // Runs event-loop handlers until `done()`; `between` runs after each one.
  // A loop left with nothing to do (no timer armed, no pass) or silent for
  // a minute fails the test instead of hanging it.
  void run_until(const std::function<bool()>& done, const std::function<void()>& between = {}) {
    while (!done()) {
      if (io.stopped()) io.restart();
      ASSERT_NE(io.run_one_for(std::chrono::minutes(1)), 0U)
          << "the event loop has nothing to do or did nothing for a minute: no timer armed?";
      if (between) between();
    }
  }

  // Checks the audit entries appended since the last call: each (record,
  // phase) new, in phase order, and due at the instant it ran.
  void check_new_entries() {
    auto entries = world->audit_after(last_seq);
    ASSERT_TRUE(entries) << entries.error().message;
    for (const auto& e : *entries) {
      last_seq = e.seq;
      if (!e.key || !e.phase) continue;
      ASSERT_TRUE(ran.emplace(*e.key, *e.phase).second)
          << "seed " << hex(seed) << ": " << *e.key << " phase " << *e.phase << " (" << e.action
          << ") run twice; entry " << e.seq;
      const vault::Record& row = rows.at(*e.key);
      const auto due = world->reference_due(row, static_cast<std::size_t>(*e.phase));
      ASSERT_TRUE(due && *due <= e.at.seconds)
          << "seed " << hex(seed) << ": " << *e.key << " phase " << *e.phase << " run at " << iso(e.at.seconds)
          << ", due " << (due ? iso(*due) : "never");
      for (int p = 0; p < *e.phase; ++p) {
        ASSERT_TRUE(ran.count({*e.key, p})) << *e.key << " phase " << *e.phase << " ran before phase " << p;
      }
      ++entries_seen;
    }
  }

  // The phases the spec has run by now for every record, had every check
  // happened: from the first, while due by `now`, up to a purge.
  std::set<std::pair<std::string, int>> owed(std::int64_t now) const {
    std::set<std::pair<std::string, int>> out;
    for (const auto& [key, row] : rows) {
      const auto& phases = world->category(row.category).phases;
      for (std::size_t i = 0; i < phases.size(); ++i) {
        const auto due = world->reference_due(row, i);
        if (!due || *due > now) break;
        out.emplace(key, static_cast<int>(i));
        if (phases[i].action == policy::Action::purge) break;
      }
    }
    return out;
  }

  std::uint64_t seed = property_seed();
  scheduler::SchedulerOptions options;
  boost::asio::io_context io;
  std::unique_ptr<World> world;
  std::unique_ptr<scheduler::Writer> writer;
  std::unique_ptr<scheduler::Scheduler> scheduler;
  int passes = 0;
  std::int64_t last_seq = 0;
  std::int64_t entries_seen = 0;
  std::map<std::string, vault::Record> rows;  // as put: their dates never change here
  std::set<std::pair<std::string, int>> ran;
};

TEST_F(SchedulerProperty, ClockJumpsCauseNoDoubleActionAndTheNextCheckCatchesUp) {
  const std::uint64_t records = scaled(kRecords), steps = scaled(kSteps);
  announce("SchedulerProperty.ClockJumpsCauseNoDoubleActionAndTheNextCheckCatchesUp", seed, steps);
  make(std::chrono::seconds(1), midnight(2030, 1, 1));
  if (HasFatalFailure()) return;
  Rng rng(seed ^ 0x5C4EDULL);
  auto& clock = world->clock;
  const auto jump = [&] {
    const auto r = rng.range(0, 99);
    const std::int64_t by = r < 40 ? rng.range(0, 3 * 365 * ref::kDay)
                            : r < 75 ? -rng.range(0, 3 * 365 * ref::kDay)
                                     : rng.range(-2 * ref::kDay, 2 * ref::kDay);
    clock.set(calendar::Instant{std::max<std::int64_t>(clock.now().seconds + by, midnight(1990, 1, 1))});
  };

  for (std::uint64_t i = 0; i < records; ++i) {
    const std::string key = "rec-" + std::to_string(i);
    auto put = world->put(world->random_record(rng, key, 1995, 2045));
    ASSERT_TRUE(put) << put.error().message;
    rows.emplace(key, *put);
  }

  // The start-up catch-up pass, with jumps between its turns.
  scheduler->start();
  run_until([&] { return passes >= 1 && !scheduler->running(); }, [&] {
    if (rng.chance(15)) jump();
  });
  check_new_entries();
  if (HasFatalFailure()) return;

  int timer_checks = 0;
  for (std::uint64_t step = 0; step < steps; ++step) {
    if (step % (steps / kTimerChecks + 1) == 0 && timer_checks < kTimerChecks) {
      // A jump while idle: the check armed before it comes within one
      // interval. Every other time the clock jumps again while that check's
      // pass runs, which may leave records due behind its cursor (or stop
      // it early, backwards): the check after it takes them. Either way
      // nothing is left due.
      ++timer_checks;
      jump();
      ASSERT_TRUE(scheduler->armed_for());
      EXPECT_LE(ms_ahead(), to_ms(options.check_interval)) << "step " << step;
      const bool jump_during = timer_checks % 2 == 0;
      bool jumped = false;
      const int before = passes;
      run_until([&] { return passes > before && !scheduler->running(); }, [&] {
        if (jump_during && scheduler->running() && rng.chance(20)) {
          jump();
          jumped = true;
        }
      });
      if (HasFatalFailure()) return;
      if (jumped) {
        const int again = passes;
        run_until([&] { return passes > again && !scheduler->running(); });
        if (HasFatalFailure()) return;
      }
      auto walk = world->service->count_due();
      ASSERT_TRUE(walk);
      const auto due = walk->due_records;
      EXPECT_EQ(due, 0) << "seed " << hex(seed) << ", step " << step << ": records still due at "
                         << iso(clock.now().seconds) << " after the check that followed the jump";
    } else {
      // An explicit sweep, the clock jumping between its turns.
      if (rng.chance(50)) jump();
      bool answered = false;
      scheduler->sweep(actions::Actor{"uid:0"}, [&](const Result<scheduler::SweepReport>& r) {
        EXPECT_TRUE(r) << r.error().message;
        answered = true;
      });
      run_until([&] { return answered && !scheduler->running(); }, [&] {
        if (rng.chance(20)) jump();
      });
    }
    if (HasFatalFailure()) return;
    check_new_entries();
    if (HasFatalFailure()) return;
  }

  // Far ahead: the next check runs everything that will ever run, exactly once.
  clock.set(calendar::Instant{midnight(2300, 1, 1)});
  const int before = passes;
  run_until([&] { return passes > before && !scheduler->running(); });
  if (HasFatalFailure()) return;
  check_new_entries();
  if (HasFatalFailure()) return;
  EXPECT_EQ(ran, owed(clock.now().seconds)) << "seed " << hex(seed) << ": the audit log differs from one entry "
                                            << "per phase the spec has run by " << iso(clock.now().seconds);
  auto chain = audit::verify(*world->store);
  ASSERT_TRUE(chain);
  EXPECT_TRUE(chain->ok);
  std::printf("[ property ] %zu records, %llu steps, %d passes (%d on the timer after a jump): %lld phases run\n",
              rows.size(), static_cast<unsigned long long>(steps), passes, timer_checks,
              static_cast<long long>(entries_seen));
  EXPECT_GT(entries_seen, static_cast<std::int64_t>(records));  // the walk did run phases
}

// A record whose due time is further ahead than a steady_clock duration in
// nanoseconds can hold (292 years): converting the wait to the timer's
// nanoseconds overflows. The next check must still be one interval away,
// neither at once (a busy loop of empty passes) nor never.
TEST_F(SchedulerProperty, ADueTimeCenturiesAheadStillArmsTheNextCheckOneIntervalAway) {
  make(std::chrono::seconds(3600), midnight(2030, 1, 1));
  if (HasFatalFailure()) return;
  auto put = world->put({{"key", "far"},
                        {"subject", "s"},
                                  {"category", "cookie"},
                                  {"dates", {{"collected", "8999-01-01"}}}});  // purge due 9000-02-01
  ASSERT_TRUE(put) << put.error().message;
  scheduler->start();
  run_until([&] { return passes >= 1 && !scheduler->running(); });
  if (HasFatalFailure()) return;
  ASSERT_TRUE(scheduler->armed_for());
  // Armed about an hour ahead; half an hour of margin for a slow machine.
  EXPECT_GT(ms_ahead(), to_ms(std::chrono::minutes(30)));
  EXPECT_LE(ms_ahead(), to_ms(options.check_interval));

  // The same through records_changed(), the path of every put.
  scheduler->records_changed();
  ASSERT_TRUE(scheduler->armed_for());
  EXPECT_GT(ms_ahead(), to_ms(std::chrono::minutes(30)));
  EXPECT_LE(ms_ahead(), to_ms(options.check_interval));
}

// The clock guard under the running scheduler: a jump of twenty years while
// idle, over more records than the guard allows, is caught by the next
// check before its first step acts. Paused, explicit sweeps are refused and
// the timer keeps asking; the clock put right lifts the pause by itself;
// jumped again and confirmed, the policy runs exactly.
TEST_F(SchedulerProperty, AClockJumpBeyondTheGuardPausesBeforeAnyActionUntilConfirmed) {
  make(std::chrono::seconds(1), midnight(2030, 1, 1));
  if (HasFatalFailure()) return;
  ASSERT_TRUE(world->store->set_meta("reload_guard", "5"));  // the guard in force
  for (int i = 0; i < 8; ++i) {
    // Cookies purged 13 months after collection: 2031-02-01.
    ASSERT_TRUE(world->put({{"key", "c" + std::to_string(i)}, {"subject", "s"}, {"category", "cookie"},
                            {"dates", {{"collected", "2030-01-01"}}}}));
  }
  scheduler->start();
  run_until([&] { return passes >= 1 && !scheduler->running(); });
  if (HasFatalFailure()) return;
  EXPECT_FALSE(scheduler->paused());

  world->clock.set(calendar::Instant{midnight(2050, 1, 1)});
  run_until([&] { return scheduler->paused(); });
  if (HasFatalFailure()) return;
  const auto pause = *scheduler->pause();
  EXPECT_EQ(pause.reason, "clock_guard");
  EXPECT_EQ(pause.newly_due, 8);
  EXPECT_EQ(pause.guard, 5);
  EXPECT_EQ(pause.last_seen, calendar::Instant{midnight(2030, 1, 1)});
  EXPECT_EQ(pause.now, calendar::Instant{midnight(2050, 1, 1)});
  auto entries = world->audit_after(0);
  ASSERT_TRUE(entries);
  EXPECT_TRUE(entries->empty()) << "acted on a jump the guard stopped";
  std::optional<Result<scheduler::SweepReport>> refused;
  scheduler->sweep(actions::Actor{"uid:0"}, [&](const Result<scheduler::SweepReport>& r) { refused = r; });
  ASSERT_TRUE(refused && !*refused);
  EXPECT_EQ(refused->error().code, ErrorCode::confirmation_required);
  EXPECT_EQ(refused->error().data["paused"], "clock_guard");

  // Put right: the next check (within a second) finds it steady and goes on.
  world->clock.set(calendar::Instant{midnight(2030, 1, 1) + 3600});
  run_until([&] { return !scheduler->paused(); });
  if (HasFatalFailure()) return;

  // Jumped again, then confirmed: everything due is purged, nothing twice.
  world->clock.set(calendar::Instant{midnight(2050, 1, 1)});
  run_until([&] { return scheduler->paused(); });
  if (HasFatalFailure()) return;
  auto confirmed = world->service->check_clock(true, actions::Actor{"uid:0"});
  ASSERT_TRUE(confirmed);
  EXPECT_EQ(confirmed->verdict, actions::ClockCheck::Verdict::confirmed);
  scheduler->clock_confirmed();
  EXPECT_FALSE(scheduler->paused());
  run_until([&] {
    auto all = world->audit_after(0);
    return all && all->size() == 9;  // clock.confirm, then 8 purges
  });
  if (HasFatalFailure()) return;
  entries = world->audit_after(0);
  ASSERT_TRUE(entries);
  EXPECT_EQ((*entries)[0].action, "clock.confirm");
  std::set<std::string> purged;
  for (std::size_t i = 1; i < entries->size(); ++i) {
    EXPECT_EQ((*entries)[i].action, "purge");
    EXPECT_TRUE(purged.insert(*(*entries)[i].key).second);
  }
  EXPECT_EQ(purged.size(), 8u);
}

}  // namespace
}  // namespace retentiond::property
