#pragma once
// An independent reference for the policy spec's calendar and `at`
// expressions (shared/spec/policy.md, "Durations" and "The `at`
// expression"), written from the spec's words and sharing no code with
// lib/calendar or lib/policy:
//
// - dates are counted as ordinals from 0001-01-01 (the proleptic Gregorian
//   count of Python's date.toordinal), with a cumulative month table, not
//   with lib/calendar's era arithmetic (Hinnant's days_from_civil), and the
//   inverse searches year then month instead of computing them;
// - adding a duration follows the spec's three steps literally;
// - end_of_month is "the last day of the month, plus one day", and
//   fiscal_year_end compares day numbers instead of (month, day) pairs;
// - expressions are trees built by the test; render() writes them out in a
//   random one of the spellings the grammar allows, for lib/policy to parse.
//
// Self-checked against a naive day-by-day walk and known values in
// calendar_property_test.cpp (ReferenceCalendar.*).

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tests/property/property_support.hpp"

namespace retentiond::property::ref {

inline constexpr std::int64_t kDay = 86400;

inline std::int64_t fdiv(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}
inline std::int64_t fmod(std::int64_t a, std::int64_t b) { return a - fdiv(a, b) * b; }

inline bool leap(std::int64_t y) { return fmod(y, 4) == 0 && (fmod(y, 100) != 0 || fmod(y, 400) == 0); }

inline int month_length(std::int64_t y, int m) {
  static constexpr int kLength[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : kLength[m - 1];
}

struct Date {
  std::int64_t y = 1970;
  int m = 1;
  int d = 1;
  bool operator==(const Date&) const = default;
};

// Days from 0001-01-01 to 1 January of year y / to the first of month m.
inline std::int64_t days_before_year(std::int64_t y) {
  const std::int64_t p = y - 1;
  return 365 * p + fdiv(p, 4) - fdiv(p, 100) + fdiv(p, 400);
}
inline std::int64_t days_before_month(std::int64_t y, int m) {
  static constexpr int kBefore[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
  return kBefore[m - 1] + (m > 2 && leap(y) ? 1 : 0);
}
// 1970-01-01 as an ordinal from 0001-01-01 (Python: date(1970, 1, 1).toordinal() - 1).
inline constexpr std::int64_t kEpochOrdinal = 719162;

// Day number (days since 1970-01-01) of a date, and back.
inline std::int64_t days(const Date& d) {
  return days_before_year(d.y) + days_before_month(d.y, d.m) + d.d - 1 - kEpochOrdinal;
}
inline Date date(std::int64_t day) {
  const std::int64_t n = day + kEpochOrdinal;
  std::int64_t y = fdiv(n * 400, 146097);  // an estimate; the loops make it exact
  while (days_before_year(y) > n) --y;
  while (days_before_year(y + 1) <= n) ++y;
  const std::int64_t in_year = n - days_before_year(y);
  int m = 12;
  while (days_before_month(y, m) > in_year) --m;
  return Date{y, m, static_cast<int>(in_year - days_before_month(y, m)) + 1};
}

inline std::int64_t day_of(std::int64_t t) { return fdiv(t, kDay); }
inline std::int64_t at_midnight(const Date& d) { return days(d) * kDay; }

struct Span {
  std::int64_t years = 0, months = 0, weeks = 0, days = 0, hours = 0, minutes = 0, seconds = 0;
  bool has_calendar_units() const { return years != 0 || months != 0; }
  bool has_subday_units() const { return hours != 0 || minutes != 0 || seconds != 0; }
};

// The spec's addition: (1) years x 12 + months to the year and month, the day
// clamped to the target month's last day, time of day kept; (2) weeks x 7 +
// days days; (3) hours, minutes and seconds as elapsed time. Subtraction is
// the same with every part negated (sign = -1).
inline std::int64_t add(std::int64_t t, const Span& s, int sign = 1) {
  const std::int64_t sod = t - day_of(t) * kDay;
  const Date from = date(day_of(t));
  const std::int64_t month_index = from.y * 12 + (from.m - 1) + sign * (s.years * 12 + s.months);
  Date to{fdiv(month_index, 12), static_cast<int>(fmod(month_index, 12)) + 1, 1};
  to.d = std::min(from.d, month_length(to.y, to.m));
  const std::int64_t day = days(to) + sign * (s.weeks * 7 + s.days);
  return day * kDay + sod + sign * (s.hours * 3600 + s.minutes * 60 + s.seconds);
}

inline std::int64_t end_of_day(std::int64_t t) { return (day_of(t) + 1) * kDay; }
inline std::int64_t end_of_month(std::int64_t t) {
  const Date x = date(day_of(t));
  return (days(Date{x.y, x.m, month_length(x.y, x.m)}) + 1) * kDay;
}
inline std::int64_t end_of_year(std::int64_t t) { return (days(Date{date(day_of(t)).y, 12, 31}) + 1) * kDay; }
// Midnight after the first fiscal-year-end date (month fm, day fd) falling on
// or after t's day.
inline std::int64_t fiscal_year_end(std::int64_t t, int fm, int fd) {
  const std::int64_t today = day_of(t);
  Date end{date(today).y, fm, fd};
  if (days(end) < today) ++end.y;
  return (days(end) + 1) * kDay;
}

// ---- `at` expressions -------------------------------------------------------

struct Node {
  enum class Kind { date, min, max, fiscal_year_end, end_of_month, end_of_year, end_of_day, shift };
  Kind kind = Kind::date;
  std::string name;        // date
  std::vector<Node> args;  // functions; shift: args[0] is the base
  Span span;               // shift
  bool minus = false;      // shift
  bool paren = false;      // written inside brackets
};

using DateMap = std::map<std::string, std::int64_t>;

struct FiscalYearEnd {
  int month = 12;
  int day = 31;
};

inline std::optional<std::int64_t> eval(const Node& n, const DateMap& dates, FiscalYearEnd fye) {
  using Kind = Node::Kind;
  switch (n.kind) {
    case Kind::date: {
      const auto it = dates.find(n.name);
      if (it == dates.end()) return std::nullopt;
      return it->second;
    }
    case Kind::min:
    case Kind::max: {
      std::vector<std::int64_t> defined;
      for (const auto& a : n.args) {
        if (const auto v = eval(a, dates, fye)) defined.push_back(*v);
      }
      if (defined.empty()) return std::nullopt;
      return n.kind == Kind::min ? *std::min_element(defined.begin(), defined.end())
                                 : *std::max_element(defined.begin(), defined.end());
    }
    case Kind::shift: {
      const auto v = eval(n.args[0], dates, fye);
      if (!v) return std::nullopt;
      return add(*v, n.span, n.minus ? -1 : 1);
    }
    default: {
      const auto v = eval(n.args[0], dates, fye);
      if (!v) return std::nullopt;
      if (n.kind == Kind::fiscal_year_end) return fiscal_year_end(*v, fye.month, fye.day);
      if (n.kind == Kind::end_of_month) return end_of_month(*v);
      if (n.kind == Kind::end_of_year) return end_of_year(*v);
      return end_of_day(*v);
    }
  }
}

inline bool mentions(const Node& n, const std::string& name) {
  if (n.kind == Node::Kind::date) return n.name == name;
  return std::any_of(n.args.begin(), n.args.end(), [&](const Node& a) { return mentions(a, name); });
}

// The date names an expression mentions, in first-mention order.
inline void names(const Node& n, std::vector<std::string>& out) {
  if (n.kind == Node::Kind::date) {
    if (std::find(out.begin(), out.end(), n.name) == out.end()) out.push_back(n.name);
    return;
  }
  for (const auto& a : n.args) names(a, out);
}

inline std::size_t size(const Node& n) {
  std::size_t s = 1;
  for (const auto& a : n.args) s += size(a);
  return s;
}

// ---- Writing expressions in every spelling the grammar allows -----------------

// Blanks are free between tokens.
inline std::string blank(Rng& rng) {
  const auto r = rng.range(0, 99);
  if (r < 55) return "";
  if (r < 88) return " ";
  if (r < 96) return "  ";
  return "\t";
}

// A duration in long (`4 months 30 days`), compact (`4mo30d`) or ISO 8601
// (`P4M30D`) form, terms in random order where the form allows it, zero
// parts sometimes written out. Weeks go to ISO only alone (`P2W`), as ISO
// 8601 has it.
inline std::string render_span(const Span& s, Rng& rng) {
  const std::int64_t parts[7] = {s.years, s.months, s.weeks, s.days, s.hours, s.minutes, s.seconds};
  std::vector<int> shown;
  for (int i = 0; i < 7; ++i) {
    if (parts[i] != 0 || rng.chance(8)) shown.push_back(i);
  }
  if (shown.empty()) shown.push_back(static_cast<int>(rng.range(0, 6)));
  const auto form = rng.range(0, 2);  // long, compact, ISO (or a mix of long and compact)
  // ISO 8601 has weeks only alone (`P2W`).
  const bool iso = form == 2 && (s.weeks == 0 || (s.years == 0 && s.months == 0 && s.days == 0 &&
                                                  !s.has_subday_units()));
  if (iso) {
    if (s.weeks != 0) {
      shown = {2};
    } else {
      shown.erase(std::remove(shown.begin(), shown.end(), 2), shown.end());
      if (shown.empty()) shown.push_back(3);  // P0D
    }
    std::string out = "P";
    static constexpr char kDate[4] = {'Y', 'M', 'W', 'D'};
    static constexpr char kTime[3] = {'H', 'M', 'S'};
    bool t_written = false;
    for (int i : shown) {
      if (i >= 4 && !t_written) {
        out += 'T';
        t_written = true;
      }
      out += std::to_string(parts[i]) + (i < 4 ? kDate[i] : kTime[i - 4]);
    }
    return out;
  }
  for (std::size_t i = shown.size(); i > 1; --i) {  // any order outside ISO
    std::swap(shown[i - 1], shown[static_cast<std::size_t>(rng.range(0, static_cast<std::int64_t>(i) - 1))]);
  }
  static const char* const kLong[7][2] = {{"year", "years"},   {"month", "months"},   {"week", "weeks"},
                                          {"day", "days"},     {"hour", "hours"},     {"minute", "minutes"},
                                          {"second", "seconds"}};
  static const char* const kShort[7] = {"y", "mo", "w", "d", "h", "min", "s"};
  std::string out;
  for (std::size_t k = 0; k < shown.size(); ++k) {
    const int i = shown[k];
    const bool compact = form == 1 || (form == 2 && rng.chance(50));
    if (k > 0 && (!compact || rng.chance(40))) out += rng.chance(85) ? " " : "\t";
    out += std::to_string(parts[i]);
    if (compact) {
      out += kShort[i];
    } else {
      out += " ";
      out += kLong[i][parts[i] == 1 ? (rng.chance(70) ? 0 : 1) : (rng.chance(90) ? 1 : 0)];
    }
  }
  return out;
}

inline const char* function_name(Node::Kind k) {
  switch (k) {
    case Node::Kind::min: return "min";
    case Node::Kind::max: return "max";
    case Node::Kind::fiscal_year_end: return "fiscal_year_end";
    case Node::Kind::end_of_month: return "end_of_month";
    case Node::Kind::end_of_year: return "end_of_year";
    case Node::Kind::end_of_day: return "end_of_day";
    default: return "?";
  }
}

inline std::string render(const Node& n, Rng& rng) {
  std::string out;
  switch (n.kind) {
    case Node::Kind::date:
      out = n.name;
      break;
    case Node::Kind::shift:
      out = render(n.args[0], rng) + blank(rng) + (n.minus ? "-" : "+") + blank(rng) + render_span(n.span, rng);
      break;
    default:
      out = std::string(function_name(n.kind)) + blank(rng) + "(";
      for (std::size_t i = 0; i < n.args.size(); ++i) {
        if (i > 0) out += blank(rng) + "," + blank(rng);
        out += blank(rng) + render(n.args[i], rng) + blank(rng);
      }
      out += ")";
      break;
  }
  if (n.paren) out = "(" + blank(rng) + out + blank(rng) + ")";
  return out;
}

// ---- Random expressions --------------------------------------------------------

struct Shape {
  bool calendar_units = true;  // years and months
  bool subday_units = true;    // hours, minutes, seconds
};

inline std::int64_t term(Rng& rng) {
  const auto r = rng.range(0, 99);
  if (r < 70) return rng.range(0, 40);
  if (r < 92) return rng.range(0, 400);
  if (r < 99) return rng.range(0, 10000);
  return rng.range(0, 100000);  // the spec's largest term
}

inline Span random_span(Rng& rng, Shape shape) {
  Span s;
  for (int tries = 0; tries < 4; ++tries) {
    switch (rng.range(0, 6)) {
      case 0: if (shape.calendar_units) s.years = term(rng); break;
      case 1: if (shape.calendar_units) s.months = term(rng); break;
      case 2: s.weeks = term(rng); break;
      case 3: s.days = term(rng); break;
      case 4: if (shape.subday_units) s.hours = term(rng); break;
      case 5: if (shape.subday_units) s.minutes = term(rng); break;
      default: if (shape.subday_units) s.seconds = term(rng); break;
    }
    if (rng.chance(45)) break;
  }
  return s;
}

inline Node random_node(Rng& rng, int depth, const std::vector<std::string>& names, Shape shape) {
  Node n;
  const auto r = depth <= 0 ? 0 : rng.range(0, 99);
  if (r < 30) {
    n.kind = Node::Kind::date;
    n.name = rng.pick(names);
  } else if (r < 62) {
    n.kind = Node::Kind::shift;
    n.args.push_back(random_node(rng, depth - 1, names, shape));
    n.span = random_span(rng, shape);
    n.minus = rng.chance(25);
  } else if (r < 82) {
    n.kind = rng.chance(50) ? Node::Kind::min : Node::Kind::max;
    const auto count = rng.range(1, 4);
    for (std::int64_t i = 0; i < count; ++i) n.args.push_back(random_node(rng, depth - 1, names, shape));
  } else {
    static const std::vector<Node::Kind> kUnary = {Node::Kind::fiscal_year_end, Node::Kind::fiscal_year_end,
                                                   Node::Kind::end_of_month, Node::Kind::end_of_year,
                                                   Node::Kind::end_of_day};
    n.kind = rng.pick(kUnary);
    n.args.push_back(random_node(rng, depth - 1, names, shape));
  }
  n.paren = rng.chance(7);
  return n;
}

// ---- Random anchors ------------------------------------------------------------

// A day in 1900..2400, biased towards the days the arithmetic finds hard:
// month ends, 28 and 29 February, 1 March, the first of a month.
inline Date random_date(Rng& rng, std::int64_t first_year = 1900, std::int64_t last_year = 2400) {
  Date d{rng.range(first_year, last_year), static_cast<int>(rng.range(1, 12)), 1};
  const auto r = rng.range(0, 99);
  if (r < 20) {
    d.d = month_length(d.y, d.m);
  } else if (r < 30) {  // 29 February of a leap year (2000, 2400 included, 1900 and 2100 not)
    while (!leap(d.y)) d.y = rng.range(first_year, last_year);
    d.m = 2;
    d.d = 29;
  } else if (r < 36) {
    d.m = 2;
    d.d = 28;
  } else if (r < 42) {
    d.m = rng.chance(50) ? 3 : d.m;
    d.d = 1;
  } else if (r < 48) {
    d.d = month_length(d.y, d.m) - static_cast<int>(rng.range(1, 3));
  } else {
    d.d = static_cast<int>(rng.range(1, month_length(d.y, d.m)));
  }
  return d;
}

inline std::int64_t random_time_of_day(Rng& rng) {
  const auto r = rng.range(0, 99);
  if (r < 15) return kDay - 1;  // 23:59:59
  if (r < 25) return 1;
  return rng.range(0, kDay - 1);
}

inline FiscalYearEnd random_fiscal_year_end(Rng& rng) {
  if (rng.chance(40)) return {12, 31};
  if (rng.chance(25)) return {6, 30};
  FiscalYearEnd f{static_cast<int>(rng.range(1, 12)), 1};
  f.day = static_cast<int>(rng.range(1, f.month == 2 ? 28 : month_length(2001, f.month)));
  if (rng.chance(30)) f.day = f.month == 2 ? 28 : month_length(2001, f.month);
  return f;
}

}  // namespace retentiond::property::ref
