// Service: the clock guard (docs/operations.md, "Clock guard"). A wall clock
// that jumps years ahead (an RTC reset, a bad NTP step, a what-if --now on a
// copy) would make the daemon dispose, correctly by its own clock, of
// everything due by then. The latest instant the clock has shown is kept in
// the store; a forward jump beyond clock_guard that makes more records newly
// due than the reload guard allows pauses disposal until an administrator
// confirms. The count decides, not the gap alone: a daemon stopped for a
// week comes back with a handful due and is not paused.

#include <spdlog/spdlog.h>

#include <numeric>
#include <utility>

#include "lib/actions/reload.hpp"
#include "lib/actions/service.hpp"

namespace retentiond::actions {

using calendar::Instant;

namespace {

constexpr const char* kClockSeen = "clock_seen";
// While the clock runs steadily, what was seen is written at most this often:
// a lag this short changes no decision of a guard counted in days.
constexpr std::int64_t kPersistEverySeconds = 60;

std::int64_t total(const std::map<std::string, std::int64_t>& by_category) {
  return std::accumulate(by_category.begin(), by_category.end(), std::int64_t{0},
                         [](std::int64_t n, const auto& kv) { return n + kv.second; });
}

}  // namespace

std::string_view to_string(ClockCheck::Verdict v) {
  switch (v) {
    case ClockCheck::Verdict::first: return "first";
    case ClockCheck::Verdict::steady: return "steady";
    case ClockCheck::Verdict::backward: return "backward";
    case ClockCheck::Verdict::accepted: return "accepted";
    case ClockCheck::Verdict::tripped: return "tripped";
    case ClockCheck::Verdict::confirmed: return "confirmed";
  }
  return "?";
}

Result<ClockCheck> Service::check_clock(bool confirm_now, const Actor& caller, const std::string& why) {
  using Verdict = ClockCheck::Verdict;
  // A confirmation given at start-up while the reload guard held it applies
  // to the first check after, only.
  bool confirm = confirm_now;
  Actor actor = caller;
  std::string reason = why;
  if (auto pending = std::exchange(m_pending_clock_confirm, std::nullopt); pending && !confirm) {
    confirm = true;
    actor = Actor{"scheduler"};
    reason = std::move(*pending);
  }
  const auto policy = this->policy();
  store::Store& store = m_vault.store();
  ClockCheck out;
  out.now = m_clock.now();
  if (!m_clock_seen) {
    auto kept = store.get_meta(kClockSeen);
    if (!kept) return std::move(kept).error();
    if (!*kept) {
      m_clock_seen.emplace(std::nullopt);
    } else {
      auto at = calendar::parse_instant(**kept);
      if (!at) return Error::storage("the latest instant seen kept in the database is damaged: '" + **kept + "'");
      m_clock_seen.emplace(*at);
    }
  }
  out.last_seen = *m_clock_seen;
  const auto record = [&](Instant now) -> Status {
    if (auto st = store.set_meta(kClockSeen, calendar::format_instant(now)); !st) return st;
    *m_clock_seen = now;
    return {};
  };
  if (!out.last_seen) {
    out.verdict = Verdict::first;
    if (auto st = record(out.now); !st) return std::move(st).error();
    return out;
  }
  const Instant seen = *out.last_seen;
  if (out.now < seen) {
    out.verdict = Verdict::backward;
    // Nothing recorded: what was seen stays the mark, so the clock coming
    // back past it is steady, and no action is repeated or undone (what is
    // done is recorded in the records themselves).
    if (!m_backward_logged) {
      spdlog::warn("clock.backward last_seen={} now={} (the clock is behind the latest instant it has shown; "
                   "nothing is undone, and records are disposed of as the clock reaches their due times)",
                   calendar::format_instant(seen), calendar::format_instant(out.now));
      m_backward_logged = true;
    }
    return out;
  }
  m_backward_logged = false;
  if (out.now <= calendar::add(seen, policy->daemon.clock_guard)) {
    out.verdict = Verdict::steady;
    if (out.now.seconds - seen.seconds >= kPersistEverySeconds) {
      if (auto st = record(out.now); !st) return std::move(st).error();
    }
    return out;
  }
  auto guard = guard_in_force(store, policy->daemon.reload_guard);
  if (!guard) return std::move(guard).error();
  out.guard = *guard;
  // Due now but not at the instant seen: the kept per-day due counts, never
  // a scan of the records. Records already due then (a backlog, held ones)
  // count on both sides.
  auto due_now = store.due_by_category(out.now);
  if (!due_now) return std::move(due_now).error();
  auto due_then = store.due_by_category(seen);
  if (!due_then) return std::move(due_then).error();
  // And the undo windows the jump would end: their destruction is as final
  // as a purge.
  auto windows = store.count_retired(seen, out.now);
  if (!windows) return std::move(windows).error();
  out.newly_due = std::max<std::int64_t>(0, total(*due_now) - total(*due_then)) + *windows;
  if (out.newly_due <= out.guard) {
    out.verdict = Verdict::accepted;
    if (auto st = record(out.now); !st) return std::move(st).error();
    return out;
  }
  if (!confirm) {
    out.verdict = Verdict::tripped;
    return out;
  }
  out.verdict = Verdict::confirmed;
  Status st = m_vault.transaction([&]() -> Status {
    if (auto s = store.set_meta(kClockSeen, calendar::format_instant(out.now)); !s) return s;
    audit::Entry e = entry(*policy, "clock.confirm", actor);
    e.reason = "clock jumped from " + calendar::format_instant(seen) + " to " + calendar::format_instant(out.now) +
               "; newly due: " + std::to_string(out.newly_due) + "; guard: " + std::to_string(out.guard) +
               (reason.empty() ? "" : "; " + reason);
    auto appended = m_audit.append(e);
    if (!appended) return std::move(appended).error();
    return {};
  });
  if (!st) return std::move(st).error();
  *m_clock_seen = out.now;
  return out;
}

}  // namespace retentiond::actions
