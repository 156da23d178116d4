#include "lib/calendar/clock.hpp"

namespace retentiond::calendar {

Instant SystemClock::now() const {
  const auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
  return Instant{std::chrono::floor<std::chrono::seconds>(since_epoch).count()};
}

OffsetClock::OffsetClock(Instant start) : m_start(start), m_origin(std::chrono::steady_clock::now()) {}

Instant OffsetClock::now() const {
  const auto elapsed = std::chrono::steady_clock::now() - m_origin;
  return Instant{m_start.seconds + std::chrono::floor<std::chrono::seconds>(elapsed).count()};
}

}  // namespace retentiond::calendar
