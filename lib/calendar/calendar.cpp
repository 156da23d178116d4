#include "lib/calendar/calendar.hpp"

#include <algorithm>
#include <array>
#include <cstdio>

namespace retentiond::calendar {
namespace {

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

Error bad_time(std::string message) { return Error::invalid_params("bad_time", std::move(message)); }
Error bad_duration(std::string message) {
  return Error::invalid_params("bad_duration", std::move(message));
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
bool is_space(char c) { return c == ' ' || c == '\t'; }

// Reads exactly `width` digits at `pos`; false if any is not a digit.
bool read_fixed(std::string_view s, std::size_t pos, std::size_t width, int& out) {
  if (pos + width > s.size()) return false;
  int v = 0;
  for (std::size_t i = 0; i < width; ++i) {
    if (!is_digit(s[pos + i])) return false;
    v = v * 10 + (s[pos + i] - '0');
  }
  out = v;
  return true;
}

const std::array<const char*, 12> kMonthNames = {"January", "February", "March",     "April",
                                                 "May",     "June",     "July",      "August",
                                                 "September", "October", "November", "December"};

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

}  // namespace

bool is_leap_year(std::int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int days_in_month(std::int64_t year, int month) {
  static constexpr std::array<int, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && is_leap_year(year) ? 29 : kDays[static_cast<std::size_t>(month - 1)];
}

// Howard Hinnant's days_from_civil / civil_from_days, on 64-bit integers so
// that far-future due times cannot overflow.
std::int64_t days_from_civil(const CivilDate& date) {
  const std::int64_t y = date.year - (date.month <= 2 ? 1 : 0);
  const std::int64_t era = floor_div(y, 400);
  const std::int64_t yoe = y - era * 400;
  const std::int64_t mp = (date.month + 9) % 12;
  const std::int64_t doy = (153 * mp + 2) / 5 + date.day - 1;
  const std::int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

CivilDate civil_from_days(std::int64_t z) {
  z += 719468;
  const std::int64_t era = floor_div(z, 146097);
  const std::int64_t doe = z - era * 146097;
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::int64_t mp = (5 * doy + 2) / 153;
  const int d = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  const int m = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  return CivilDate{yoe + era * 400 + (m <= 2 ? 1 : 0), m, d};
}

CivilDate civil_date(Instant t) { return civil_from_days(floor_div(t.seconds, kSecondsPerDay)); }

std::int64_t seconds_of_day(Instant t) {
  return t.seconds - floor_div(t.seconds, kSecondsPerDay) * kSecondsPerDay;
}

Instant midnight(const CivilDate& date) { return Instant{days_from_civil(date) * kSecondsPerDay}; }

bool in_range(Instant t) { return t >= kMinInstant && t <= kMaxInstant; }

Result<Instant> parse_instant(std::string_view s) {
  const std::string shape =
      "expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), got " + quoted(s);
  int year = 0, month = 0, day = 0;
  if (s.size() >= 5 && std::all_of(s.begin(), s.begin() + 5, is_digit)) {
    return bad_time("year " + std::string(s.substr(0, s.find('-'))) + " in " + quoted(s) + " is out of range (1970..9999)");
  }
  if (s.size() < 10 || !read_fixed(s, 0, 4, year) || s[4] != '-' || !read_fixed(s, 5, 2, month) ||
      s[7] != '-' || !read_fixed(s, 8, 2, day)) {
    return bad_time(shape);
  }
  if (year < 1970 || year > 9999) {
    return bad_time("year " + std::to_string(year) + " in " + quoted(s) +
                    " is out of range (1970..9999)");
  }
  if (month < 1 || month > 12) {
    return bad_time("month " + std::to_string(month) + " in " + quoted(s) + " does not exist");
  }
  if (day < 1 || day > days_in_month(year, month)) {
    return bad_time(std::string(s.substr(0, 10)) + " does not exist (" +
                    kMonthNames[static_cast<std::size_t>(month - 1)] + " " + std::to_string(year) +
                    " has " + std::to_string(days_in_month(year, month)) + " days)");
  }
  const Instant date = midnight(CivilDate{year, month, day});
  if (s.size() == 10) return date;

  int hour = 0, minute = 0, second = 0;
  if (s.size() < 19 || (s[10] != 'T' && s[10] != 't') || !read_fixed(s, 11, 2, hour) ||
      s[13] != ':' || !read_fixed(s, 14, 2, minute) || s[16] != ':' ||
      !read_fixed(s, 17, 2, second)) {
    return bad_time(shape);
  }
  if (hour > 23) return bad_time("hour " + std::to_string(hour) + " in " + quoted(s) + " is out of range (00..23)");
  if (minute > 59) return bad_time("minute " + std::to_string(minute) + " in " + quoted(s) + " is out of range (00..59)");
  if (second > 59) return bad_time("second " + std::to_string(second) + " in " + quoted(s) + " is out of range (00..59; leap seconds are not supported)");

  std::size_t pos = 19;
  if (pos < s.size() && s[pos] == '.') {
    const std::size_t start = ++pos;
    while (pos < s.size() && is_digit(s[pos])) ++pos;
    if (pos == start) return bad_time("the fraction in " + quoted(s) + " has no digits");
  }
  if (pos >= s.size()) return bad_time("missing time-zone offset (Z, +HH:MM or -HH:MM) in " + quoted(s));

  std::int64_t offset = 0;
  if ((s[pos] == 'Z' || s[pos] == 'z') && pos + 1 == s.size()) {
    offset = 0;
  } else if ((s[pos] == '+' || s[pos] == '-') && pos + 6 == s.size()) {
    int oh = 0, om = 0;
    if (!read_fixed(s, pos + 1, 2, oh) || s[pos + 3] != ':' || !read_fixed(s, pos + 4, 2, om)) {
      return bad_time(shape);
    }
    if (oh > 23 || om > 59) {
      return bad_time("time-zone offset " + quoted(s.substr(pos)) + " is out of range (-23:59..+23:59)");
    }
    offset = (oh * 3600 + om * 60) * (s[pos] == '-' ? -1 : 1);
  } else {
    return bad_time(shape);
  }
  const Instant t{date.seconds + hour * 3600 + minute * 60 + second - offset};
  if (!in_range(t)) {
    return bad_time(quoted(s) + " is " + format_instant(t) +
                    " in UTC, outside 1970-01-01T00:00:00Z..9999-12-31T23:59:59Z");
  }
  return t;
}

std::string format_instant(Instant t) {
  const CivilDate d = civil_date(t);
  if (d.year < 0) return "0000-01-01T00:00:00Z";
  const std::int64_t sod = seconds_of_day(t);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04lld-%02d-%02dT%02lld:%02lld:%02lldZ",
                static_cast<long long>(d.year), d.month, d.day, static_cast<long long>(sod / 3600),
                static_cast<long long>(sod / 60 % 60), static_cast<long long>(sod % 60));
  return buf;
}

Duration Duration::negate() const {
  return Duration{-years, -months, -weeks, -days, -hours, -minutes, -seconds};
}

namespace {

constexpr std::int64_t kMaxTerm = 100000;

enum class Unit { year, month, week, day, hour, minute, second };
constexpr std::array<const char*, 7> kUnitNames = {"year",   "month",  "week",  "day",
                                                   "hour",   "minute", "second"};

std::int64_t& part(Duration& d, Unit u) {
  switch (u) {
    case Unit::year: return d.years;
    case Unit::month: return d.months;
    case Unit::week: return d.weeks;
    case Unit::day: return d.days;
    case Unit::hour: return d.hours;
    case Unit::minute: return d.minutes;
    case Unit::second: return d.seconds;
  }
  return d.seconds;
}

bool unit_from_word(std::string_view w, Unit& u) {
  struct Spelling { std::string_view text; Unit unit; };
  static constexpr std::array<Spelling, 21> kSpellings = {{
      {"year", Unit::year},     {"years", Unit::year},       {"y", Unit::year},
      {"month", Unit::month},   {"months", Unit::month},     {"mo", Unit::month},
      {"week", Unit::week},     {"weeks", Unit::week},       {"w", Unit::week},
      {"day", Unit::day},       {"days", Unit::day},         {"d", Unit::day},
      {"hour", Unit::hour},     {"hours", Unit::hour},       {"h", Unit::hour},
      {"minute", Unit::minute}, {"minutes", Unit::minute},   {"min", Unit::minute},
      {"second", Unit::second}, {"seconds", Unit::second},   {"s", Unit::second},
  }};
  for (const auto& sp : kSpellings) {
    if (sp.text == w) {
      u = sp.unit;
      return true;
    }
  }
  return false;
}

// Reads a run of digits at pos as a term value in 0..100000.
Result<std::int64_t> read_number(std::string_view s, std::size_t& pos, std::string_view whole) {
  const std::size_t start = pos;
  std::int64_t v = 0;
  while (pos < s.size() && is_digit(s[pos])) {
    v = std::min<std::int64_t>(v * 10 + (s[pos] - '0'), kMaxTerm + 1);
    ++pos;
  }
  if (pos == start) return bad_duration("expected a number at " + quoted(s.substr(start)) + " in " + quoted(whole));
  if (pos < s.size() && (s[pos] == '.' || s[pos] == ',') && pos + 1 < s.size() && is_digit(s[pos + 1])) {
    return bad_duration("fractional number " + quoted(s.substr(start, pos + 2 - start)) + "... in " +
                        quoted(whole) + ": use a smaller unit (e.g. 18 months, not 1.5 years)");
  }
  if (v > kMaxTerm) {
    return bad_duration("number " + std::string(s.substr(start, pos - start)) + " in " + quoted(whole) +
                        " is out of range (0..100000)");
  }
  return v;
}

Status set_part(Duration& d, Unit u, std::int64_t v, bool seen[7], std::string_view whole) {
  const auto i = static_cast<std::size_t>(u);
  if (seen[i]) return bad_duration("unit '" + std::string(kUnitNames[i]) + "' appears twice in " + quoted(whole));
  seen[i] = true;
  part(d, u) = v;
  return {};
}

Result<Duration> parse_iso_duration(std::string_view s) {
  // P[nY][nM][nW][nD][T[nH][nM][nS]], designators in this order, each at most once.
  Duration d;
  bool seen[7] = {};
  std::size_t pos = 1;
  bool in_time = false, any = false, any_time = false;
  int last_rank = -1;
  while (pos < s.size()) {
    if (s[pos] == 'T') {
      if (in_time) return bad_duration("'T' appears twice in " + quoted(s));
      in_time = true;
      ++pos;
      continue;
    }
    auto n = read_number(s, pos, s);
    if (!n) return std::move(n).error();
    if (pos >= s.size()) return bad_duration("number without a designator at the end of " + quoted(s));
    const char c = s[pos++];
    Unit u;
    int rank;
    if (!in_time && c == 'Y') { u = Unit::year; rank = 0; }
    else if (!in_time && c == 'M') { u = Unit::month; rank = 1; }
    else if (!in_time && c == 'W') { u = Unit::week; rank = 2; }
    else if (!in_time && c == 'D') { u = Unit::day; rank = 3; }
    else if (in_time && c == 'H') { u = Unit::hour; rank = 4; }
    else if (in_time && c == 'M') { u = Unit::minute; rank = 5; }
    else if (in_time && c == 'S') { u = Unit::second; rank = 6; }
    else {
      return bad_duration("unexpected designator '" + std::string(1, c) + "' in " + quoted(s) +
                          (in_time ? " (after T: H, M, S)" : " (before T: Y, M, W, D; hours need T, as in PT24H)"));
    }
    if (rank <= last_rank) return bad_duration("designators out of order or repeated in " + quoted(s));
    last_rank = rank;
    if (auto st = set_part(d, u, *n, seen, s); !st) return std::move(st).error();
    any = true;
    any_time = any_time || in_time;
  }
  if (!any) return bad_duration("ISO 8601 duration " + quoted(s) + " has no components");
  if (in_time && !any_time) return bad_duration("'T' with no hours, minutes or seconds after it in " + quoted(s));
  return d;
}

}  // namespace

Result<std::int64_t> parse_short_duration(std::string_view text) {
  auto d = parse_duration(text);
  if (!d) return std::move(d).error();
  const std::int64_t seconds = add(Instant{0}, *d).seconds;
  if (d->years != 0 || d->months != 0 || seconds < 1 || seconds > 86400) {
    return bad_duration("'" + std::string(text) + "' is out of range (1 second to 1 day, no months or years)");
  }
  return seconds;
}

Result<Duration> parse_duration(std::string_view text) {
  std::size_t b = 0, e = text.size();
  while (b < e && is_space(text[b])) ++b;
  while (e > b && is_space(text[e - 1])) --e;
  const std::string_view s = text.substr(b, e - b);
  if (s.empty()) return bad_duration("empty duration (write e.g. '3 years', '13mo' or 'P1Y')");
  if (s[0] == 'P') return parse_iso_duration(s);
  if (s[0] == '-' || s[0] == '+') {
    return bad_duration("a duration has no sign, got " + quoted(s) + " (write 'date - 3 years' to go back)");
  }

  Duration d;
  bool seen[7] = {};
  std::size_t pos = 0;
  while (pos < s.size()) {
    while (pos < s.size() && is_space(s[pos])) ++pos;
    auto n = read_number(s, pos, s);
    if (!n) return std::move(n).error();
    while (pos < s.size() && is_space(s[pos])) ++pos;
    const std::size_t ustart = pos;
    while (pos < s.size() && (is_lower(s[pos]) || (s[pos] >= 'A' && s[pos] <= 'Z'))) ++pos;
    const std::string_view word = s.substr(ustart, pos - ustart);
    if (word.empty()) {
      return bad_duration("missing unit after " + std::to_string(*n) + " in " + quoted(s) +
                          " (years, months, weeks, days, hours, minutes, seconds)");
    }
    Unit u;
    if (word == "m") {
      return bad_duration("ambiguous unit 'm' in " + quoted(s) + ": write 'mo' for months or 'min' for minutes");
    }
    if (!unit_from_word(word, u)) {
      return bad_duration("unknown unit " + quoted(word) + " in " + quoted(s) +
                          " (expected year(s)/y, month(s)/mo, week(s)/w, day(s)/d, hour(s)/h, "
                          "minute(s)/min, second(s)/s)");
    }
    if (auto st = set_part(d, u, *n, seen, s); !st) return std::move(st).error();
    if (pos < s.size() && !is_space(s[pos]) && !is_digit(s[pos])) {
      return bad_duration("unexpected " + quoted(s.substr(pos, 1)) + " in " + quoted(s));
    }
  }
  return d;
}

std::string format_duration(const Duration& d) {
  std::string out;
  const std::int64_t parts[7] = {d.years, d.months, d.weeks, d.days, d.hours, d.minutes, d.seconds};
  for (std::size_t i = 0; i < 7; ++i) {
    if (parts[i] == 0) continue;
    if (!out.empty()) out += ' ';
    out += std::to_string(parts[i]) + ' ' + kUnitNames[i] + (parts[i] == 1 ? "" : "s");
  }
  return out.empty() ? "0 days" : out;
}

Instant add(Instant t, const Duration& d) {
  const std::int64_t day_number = floor_div(t.seconds, kSecondsPerDay);
  const std::int64_t sod = t.seconds - day_number * kSecondsPerDay;
  const CivilDate c = civil_from_days(day_number);
  // 1. Years and months, clamping the day to the target month's last day.
  const std::int64_t total_months = c.year * 12 + (c.month - 1) + d.years * 12 + d.months;
  const std::int64_t year = floor_div(total_months, 12);
  const int month = static_cast<int>(total_months - year * 12) + 1;
  const int day = std::min(c.day, days_in_month(year, month));
  // 2. Weeks and days; 3. elapsed time.
  const std::int64_t days = days_from_civil(CivilDate{year, month, day}) + d.weeks * 7 + d.days;
  return Instant{days * kSecondsPerDay + sod + d.hours * 3600 + d.minutes * 60 + d.seconds};
}

Instant end_of_day(Instant t) {
  return Instant{(floor_div(t.seconds, kSecondsPerDay) + 1) * kSecondsPerDay};
}

Instant end_of_month(Instant t) {
  const CivilDate c = civil_date(t);
  return c.month == 12 ? midnight(CivilDate{c.year + 1, 1, 1}) : midnight(CivilDate{c.year, c.month + 1, 1});
}

Instant end_of_year(Instant t) { return midnight(CivilDate{civil_date(t).year + 1, 1, 1}); }

Result<MonthDay> parse_month_day(std::string_view s) {
  int m = 0, d = 0;
  if (s.size() != 5 || !read_fixed(s, 0, 2, m) || s[2] != '-' || !read_fixed(s, 3, 2, d)) {
    return Error::invalid_params("bad_config", "expected \"MM-DD\", got " + quoted(s));
  }
  if (m < 1 || m > 12) return Error::invalid_params("bad_config", "month " + std::to_string(m) + " does not exist");
  if (m == 2 && d == 29) {
    return Error::invalid_params("bad_config", "02-29 is not a valid fiscal year end (it does not exist every year)");
  }
  if (d < 1 || d > days_in_month(2001, m)) {
    return Error::invalid_params("bad_config", std::string(s) + " does not exist (" +
                                 kMonthNames[static_cast<std::size_t>(m - 1)] + " has " +
                                 std::to_string(days_in_month(2001, m)) + " days)");
  }
  return MonthDay{m, d};
}

std::string format_month_day(MonthDay md) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%02d-%02d", md.month, md.day);
  return buf;
}

Instant fiscal_year_end(Instant t, MonthDay fye) {
  const CivilDate c = civil_date(t);
  const bool on_or_before = c.month < fye.month || (c.month == fye.month && c.day <= fye.day);
  const CivilDate end{on_or_before ? c.year : c.year + 1, fye.month, fye.day};
  return Instant{midnight(end).seconds + kSecondsPerDay};
}

}  // namespace retentiond::calendar
