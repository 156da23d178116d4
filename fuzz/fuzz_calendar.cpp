// Fuzz target: lib/calendar, the parsers of user text (times, durations,
// fiscal year ends) and the calendar arithmetic run on what they return.
//
// The whole input is given to parse_instant, parse_duration and
// parse_month_day. Properties checked beyond "no crash, no UB":
//  - a rejection is an invalid_params Error with the documented reason and a
//    message;
//  - an accepted time is in 1970..9999 and survives format -> parse;
//  - an accepted duration has every part in 0..100000 and survives
//    format_duration -> parse_duration; adding it never goes back in time,
//    subtracting it never forward;
//  - an accepted "MM-DD" formats back to the same text;
//  - end_of_day/month/year and fiscal_year_end land on a later midnight of
//    the right day, within the period's length.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/check.hpp"
#include "lib/calendar/calendar.hpp"

namespace cal = retentiond::calendar;

namespace {

void check_rejection(const retentiond::Error& e, const char* reason) {
  FUZZ_CHECK(e.code == retentiond::ErrorCode::invalid_params, e.message);
  FUZZ_CHECK(e.reason == reason, e.reason + ": " + e.message);
  FUZZ_CHECK(!e.message.empty(), reason);
}

bool is_midnight(cal::Instant t) { return cal::seconds_of_day(t) == 0; }

void check_instant_arithmetic(cal::Instant t, cal::MonthDay fye) {
  const std::string at = cal::format_instant(t);
  const cal::CivilDate c = cal::civil_date(t);
  FUZZ_CHECK(cal::civil_from_days(cal::days_from_civil(c)) == c, at);
  FUZZ_CHECK(c.month >= 1 && c.month <= 12 && c.day >= 1 && c.day <= cal::days_in_month(c.year, c.month), at);
  const std::int64_t sod = cal::seconds_of_day(t);
  FUZZ_CHECK(sod >= 0 && sod < cal::kSecondsPerDay, at);
  FUZZ_CHECK(cal::midnight(c).seconds + sod == t.seconds, at);

  const cal::Instant eod = cal::end_of_day(t);
  FUZZ_CHECK(eod > t && is_midnight(eod) && eod.seconds - t.seconds <= cal::kSecondsPerDay, at);

  const cal::Instant eom = cal::end_of_month(t);
  FUZZ_CHECK(eom > t && is_midnight(eom) && cal::civil_date(eom).day == 1, at);
  FUZZ_CHECK(eom.seconds - t.seconds <= 31 * cal::kSecondsPerDay, at);

  const cal::Instant eoy = cal::end_of_year(t);
  const cal::CivilDate y = cal::civil_date(eoy);
  FUZZ_CHECK(eoy > t && is_midnight(eoy) && y.month == 1 && y.day == 1 && y.year == c.year + 1, at);

  const cal::Instant fy = cal::fiscal_year_end(t, fye);
  const cal::CivilDate last = cal::civil_date(cal::Instant{fy.seconds - cal::kSecondsPerDay});
  FUZZ_CHECK(fy > t && is_midnight(fy), at + " " + cal::format_month_day(fye));
  FUZZ_CHECK(last.month == fye.month && last.day == fye.day, at + " " + cal::format_month_day(fye));
  FUZZ_CHECK(fy.seconds - t.seconds <= 366 * cal::kSecondsPerDay, at + " " + cal::format_month_day(fye));
}

void check_duration_arithmetic(cal::Instant t, const cal::Duration& d) {
  const std::string what = cal::format_instant(t) + " and " + cal::format_duration(d);
  FUZZ_CHECK(cal::add(t, d) >= t, what);
  FUZZ_CHECK(cal::subtract(t, d) <= t, what);
  // A whole number of days (no month part) is exact elapsed time.
  if (d.years == 0 && d.months == 0) {
    const std::int64_t secs = (d.weeks * 7 + d.days) * cal::kSecondsPerDay + d.hours * 3600 + d.minutes * 60 + d.seconds;
    FUZZ_CHECK(cal::add(t, d).seconds == t.seconds + secs, what);
    FUZZ_CHECK(cal::subtract(t, d).seconds == t.seconds - secs, what);
  }
  (void)cal::format_instant(cal::add(t, d));
  (void)cal::format_instant(cal::subtract(t, d));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  std::vector<cal::Instant> instants = {cal::kMinInstant, cal::kMaxInstant};
  if (size >= 8) {
    std::uint64_t raw = 0;
    std::memcpy(&raw, data, sizeof raw);
    instants.push_back(cal::Instant{static_cast<std::int64_t>(raw % static_cast<std::uint64_t>(cal::kMaxInstant.seconds + 1))});
  }

  if (auto t = cal::parse_instant(text)) {
    const std::string formatted = cal::format_instant(*t);
    FUZZ_CHECK(cal::in_range(*t), formatted);
    auto back = cal::parse_instant(formatted);
    FUZZ_CHECK(back.ok() && *back == *t, formatted);
    if (size == 10) FUZZ_CHECK(is_midnight(*t), formatted);
    instants.push_back(*t);
  } else {
    check_rejection(t.error(), "bad_time");
  }

  cal::MonthDay fye{static_cast<int>(size > 0 ? data[0] % 12 + 1 : 12), 1};
  const int last_day = cal::days_in_month(2001, fye.month);
  fye.day = size > 1 ? data[1] % last_day + 1 : last_day;
  if (auto md = cal::parse_month_day(text)) {
    FUZZ_CHECK(cal::format_month_day(*md) == text, cal::format_month_day(*md));
    FUZZ_CHECK(!(md->month == 2 && md->day == 29), "02-29");
    FUZZ_CHECK(md->day >= 1 && md->day <= cal::days_in_month(2001, md->month), cal::format_month_day(*md));
    fye = *md;
  } else {
    check_rejection(md.error(), "bad_config");
  }

  for (const auto t : instants) check_instant_arithmetic(t, fye);

  if (auto d = cal::parse_duration(text)) {
    for (const std::int64_t part : {d->years, d->months, d->weeks, d->days, d->hours, d->minutes, d->seconds}) {
      FUZZ_CHECK(part >= 0 && part <= 100000, cal::format_duration(*d));
    }
    const std::string formatted = cal::format_duration(*d);
    auto back = cal::parse_duration(formatted);
    FUZZ_CHECK(back.ok() && *back == *d, formatted);
    for (const auto t : instants) check_duration_arithmetic(t, *d);
  } else {
    check_rejection(d.error(), "bad_duration");
  }
  return 0;
}
