#pragma once
// Instants, durations and calendar arithmetic, exactly as the policy spec
// (shared/spec/policy.md, "Times" and "Durations") defines them.
//
// An Instant is a count of seconds since 1970-01-01T00:00:00Z, UTC, no leap
// seconds. Inputs are limited to years 1970..9999; computed values (a due
// time 100000 years ahead) may lie outside that range and are kept exact, so
// that `(x + 10000 years) - 9999 years` still means what it says.
//
// All functions are pure and thread-safe.

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "lib/util/result.hpp"

namespace retentiond::calendar {

struct Instant {
  std::int64_t seconds = 0;  // since the Unix epoch, UTC
  auto operator<=>(const Instant&) const = default;
};

inline constexpr Instant kMinInstant{0};                // 1970-01-01T00:00:00Z
inline constexpr Instant kMaxInstant{253402300799};     // 9999-12-31T23:59:59Z
inline constexpr std::int64_t kSecondsPerDay = 86400;

// A proleptic Gregorian date; `year` may be far outside 1970..9999.
struct CivilDate {
  std::int64_t year = 1970;
  int month = 1;  // 1..12
  int day = 1;    // 1..days_in_month
  auto operator<=>(const CivilDate&) const = default;
};

bool is_leap_year(std::int64_t year);
int days_in_month(std::int64_t year, int month);
std::int64_t days_from_civil(const CivilDate& date);
CivilDate civil_from_days(std::int64_t days);
CivilDate civil_date(Instant t);
std::int64_t seconds_of_day(Instant t);
Instant midnight(const CivilDate& date);

// True for 1970-01-01T00:00:00Z..9999-12-31T23:59:59Z.
bool in_range(Instant t);

// Parses `YYYY-MM-DD` (midnight UTC) or RFC 3339
// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`; fractions are truncated.
// Returns the instant, or an Error with reason "bad_time" whose message says
// precisely what is wrong (impossible date, year out of range, bad offset...).
Result<Instant> parse_instant(std::string_view text);

// Always `YYYY-MM-DDTHH:MM:SSZ`. Values before year 0 (only reachable by
// subtracting absurd durations) print as 0000-01-01T00:00:00Z.
std::string format_instant(Instant t);

// A duration in calendar units. Each part is 0..100000 when parsed;
// `negate()` flips every part (subtraction is addition of the negation).
struct Duration {
  std::int64_t years = 0;
  std::int64_t months = 0;
  std::int64_t weeks = 0;
  std::int64_t days = 0;
  std::int64_t hours = 0;
  std::int64_t minutes = 0;
  std::int64_t seconds = 0;

  Duration negate() const;
  bool operator==(const Duration&) const = default;
};

// Parses every spelling the spec allows: `13 months`, `4 months 30 days`,
// compact `13mo`, `4mo30d`, `24h`, and ISO 8601 `P3Y`, `P4M30D`, `PT24H`,
// `P1Y2M10DT2H30M`. Returns an Error with reason "bad_duration" naming the
// offending term otherwise (unknown or ambiguous unit, repeated unit, number
// out of 0..100000, empty text).
Result<Duration> parse_duration(std::string_view text);

// A short elapsed time (a timeout, a lease) in seconds: a duration from 1
// second to 1 day without years or months (their length varies). Else an
// Error with reason "bad_duration".
Result<std::int64_t> parse_short_duration(std::string_view text);

// Canonical long form, largest unit first: "1 year 2 months 10 days"; "0 days"
// for the zero duration.
std::string format_duration(const Duration& d);

// Adds per the spec: (1) years*12+months to year and month, clamping the day
// to the target month's last day, time of day kept; (2) weeks*7+days days;
// (3) hours, minutes, seconds as elapsed time.
Instant add(Instant t, const Duration& d);
inline Instant subtract(Instant t, const Duration& d) { return add(t, d.negate()); }

// Midnight UTC starting the day after t's day / the first day of the next
// month / 1 January of the next year.
Instant end_of_day(Instant t);
Instant end_of_month(Instant t);
Instant end_of_year(Instant t);

// A fiscal year end, "MM-DD". 02-29 is not valid (it does not exist every year).
struct MonthDay {
  int month = 12;
  int day = 31;
  bool operator==(const MonthDay&) const = default;
};

// Parses "MM-DD"; Error (reason "bad_config") for anything else.
Result<MonthDay> parse_month_day(std::string_view text);
std::string format_month_day(MonthDay md);

// Midnight UTC of the day after the first fiscal-year-end date falling on or
// after t's day.
Instant fiscal_year_end(Instant t, MonthDay fye);

}  // namespace retentiond::calendar
