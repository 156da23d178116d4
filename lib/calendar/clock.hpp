#pragma once
// Clock: where "now" comes from. Logic never asks the system for the time;
// it is handed a Clock (leveldb's Env idea), so tests and `--now` runs can
// set it. Implementations are safe to call from any thread.

#include <atomic>
#include <chrono>

#include "lib/calendar/calendar.hpp"

namespace retentiond::calendar {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual Instant now() const = 0;
};

// The system's real-time clock.
class SystemClock final : public Clock {
 public:
  Instant now() const override;
};

// Starts at a given instant and then advances in real time (monotonic), as
// `retentiond --now` promises.
class OffsetClock final : public Clock {
 public:
  explicit OffsetClock(Instant start);
  Instant now() const override;

 private:
  Instant m_start;
  std::chrono::steady_clock::time_point m_origin;
};

// A clock that only moves when told to; for tests.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(Instant start) : m_now(start.seconds) {}
  Instant now() const override { return Instant{m_now.load()}; }
  void set(Instant t) { m_now.store(t.seconds); }
  void advance(std::int64_t seconds) { m_now.fetch_add(seconds); }

 private:
  std::atomic<std::int64_t> m_now;
};

}  // namespace retentiond::calendar
