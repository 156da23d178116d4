// Properties of due times, over a million random cases (issue 5, item 6):
// lib/calendar's arithmetic and lib/policy's `at` expressions give exactly
// what an independent reference written from the spec gives (so a due time
// is never earlier, nor later, than the rule allows), are monotone in their
// anchor dates, and min/max lie on the right side of each operand.
//
// Anchors range over 1900..2400 with month ends, 28/29 February and fiscal
// year ends over-represented; durations over every unit and spelling of the
// spec's grammar (long, compact, ISO 8601), terms up to 100000.
//
// Seed and count: see property_support.hpp. A failure prints the seed, the
// case number and the smallest failing input the shrinker found.

#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lib/calendar/calendar.hpp"
#include "lib/policy/expr.hpp"
#include "tests/property/property_support.hpp"
#include "tests/property/reference.hpp"

namespace retentiond::property {
namespace {

using ref::DateMap;
using ref::FiscalYearEnd;
using ref::Node;
using ref::Span;

constexpr std::uint64_t kCases = 1'000'000;

constexpr std::int64_t Span::*kParts[7] = {&Span::years, &Span::months,  &Span::weeks,  &Span::days,
                                           &Span::hours, &Span::minutes, &Span::seconds};

calendar::Duration to_duration(const Span& s) {
  return calendar::Duration{s.years, s.months, s.weeks, s.days, s.hours, s.minutes, s.seconds};
}

policy::Dates to_dates(const DateMap& dates) {
  policy::Dates out;
  for (const auto& [name, t] : dates) out.emplace(name, calendar::Instant{t});
  return out;
}

// Our own formatting (from the reference), so that a message never depends
// on the code under test; negative years print as they are.
std::string show(std::int64_t t) {
  const ref::Date d = ref::date(ref::day_of(t));
  const std::int64_t sod = t - ref::day_of(t) * ref::kDay;
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04lld-%02d-%02dT%02lld:%02lld:%02lldZ (%lld)", static_cast<long long>(d.y), d.m,
                d.d, static_cast<long long>(sod / 3600), static_cast<long long>(sod / 60 % 60),
                static_cast<long long>(sod % 60), static_cast<long long>(t));
  return buf;
}
std::string show(const std::optional<std::int64_t>& t) { return t ? show(*t) : "undefined"; }
std::string show(const std::optional<calendar::Instant>& t) {
  return t ? show(t->seconds) : std::string("undefined");
}
std::string show(const Span& s) {
  std::ostringstream os;
  os << "{y=" << s.years << " mo=" << s.months << " w=" << s.weeks << " d=" << s.days << " h=" << s.hours
     << " min=" << s.minutes << " s=" << s.seconds << "}";
  return os.str();
}

// Greedy shrinking: take the first simpler variant that still fails, until
// none does (or the budget is spent).
template <typename Case>
Case shrink(Case c, const std::function<std::optional<std::string>(const Case&)>& check,
            const std::function<std::vector<Case>(const Case&)>& variants) {
  int budget = 20000;
  for (bool progress = true; progress && budget > 0;) {
    progress = false;
    for (auto& v : variants(c)) {
      if (--budget <= 0) break;
      if (check(v)) {
        c = std::move(v);
        progress = true;
        break;
      }
    }
  }
  return c;
}

// Simpler spans: one part zeroed or halved.
std::vector<Span> span_variants(const Span& s) {
  std::vector<Span> out;
  for (auto part : kParts) {
    if (s.*part == 0) continue;
    Span z = s;
    z.*part = 0;
    out.push_back(z);
    if (s.*part > 1) {
      Span h = s;
      h.*part /= 2;
      out.push_back(h);
    }
  }
  return out;
}

// Simpler instants: at midnight, then closer to 2000-01-01.
std::vector<std::int64_t> instant_variants(std::int64_t t, bool keep_time_of_day) {
  std::vector<std::int64_t> out;
  const std::int64_t sod = t - ref::day_of(t) * ref::kDay;
  if (sod != 0 && !keep_time_of_day) out.push_back(t - sod);
  ref::Date d = ref::date(ref::day_of(t));
  if (d.y != 2000) {
    d.y = 2000 + (d.y - 2000) / 2;
    d.d = std::min(d.d, ref::month_length(d.y, d.m));
    out.push_back(ref::at_midnight(d) + sod);
  }
  return out;
}

// ---- The reference itself ----------------------------------------------------------

TEST(ReferenceCalendar, AgreesWithADayByDayWalkFrom1900To2401) {
  ref::Date d{1900, 1, 1};
  std::int64_t n = -25567;  // 1900-01-01: 2208988800 s before the epoch
  while (d.y < 2401) {
    ASSERT_EQ(ref::days(d), n) << d.y << "-" << d.m << "-" << d.d;
    ASSERT_EQ(ref::date(n), d) << n;
    // The naive calendar: 30 days hath September..., leap years by the rule.
    const int length = d.m == 2 ? ((d.y % 4 == 0 && d.y % 100 != 0) || d.y % 400 == 0 ? 29 : 28)
                       : (d.m == 4 || d.m == 6 || d.m == 9 || d.m == 11) ? 30
                                                                          : 31;
    if (++d.d > length) {
      d.d = 1;
      if (++d.m > 12) {
        d.m = 1;
        ++d.y;
      }
    }
    ++n;
  }
  EXPECT_EQ(n, 157420);  // 2401-01-01
}

TEST(ReferenceCalendar, KnownDayNumbers) {
  // From Python's datetime.date, an implementation independent of both.
  EXPECT_EQ(ref::days({1970, 1, 1}), 0);
  EXPECT_EQ(ref::days({2000, 3, 1}), 11017);
  EXPECT_EQ(ref::days({2038, 1, 19}), 24855);
  EXPECT_EQ(ref::days({2100, 3, 1}), 47541);
  EXPECT_EQ(ref::days({2400, 2, 29}), 157113);
  EXPECT_EQ(ref::days({1, 1, 1}), -719162);
  EXPECT_EQ(ref::days({9999, 12, 31}), 2932896);
  EXPECT_EQ(ref::date(2932896), (ref::Date{9999, 12, 31}));
  EXPECT_EQ(ref::date(-719162), (ref::Date{1, 1, 1}));
  EXPECT_EQ(ref::date(-719163), (ref::Date{0, 12, 31}));  // year 0 is a leap year
  EXPECT_EQ(ref::date(-719162 - 366), (ref::Date{0, 1, 1}));
}

TEST(ReferenceCalendar, TheSpecsWorkedExamples) {
  const auto t = [](std::int64_t y, int m, int d) { return ref::at_midnight({y, m, d}); };
  EXPECT_EQ(ref::add(t(2023, 1, 31), Span{0, 1}), t(2023, 2, 28));
  EXPECT_EQ(ref::add(t(2024, 1, 31), Span{0, 1}), t(2024, 2, 29));
  EXPECT_EQ(ref::add(t(2024, 2, 29), Span{1}), t(2025, 2, 28));
  EXPECT_EQ(ref::add(t(2024, 3, 31), Span{0, 1}, -1), t(2024, 2, 29));
  EXPECT_EQ(ref::add(t(2023, 1, 31), Span{0, 1, 0, 1}), t(2023, 3, 1));  // months first, then days
  EXPECT_EQ(ref::fiscal_year_end(t(2023, 5, 10), 12, 31), t(2024, 1, 1));
  EXPECT_EQ(ref::fiscal_year_end(t(2023, 12, 31) + 18 * 3600, 12, 31), t(2024, 1, 1));
  EXPECT_EQ(ref::fiscal_year_end(t(2024, 1, 1), 12, 31), t(2025, 1, 1));
  EXPECT_EQ(ref::fiscal_year_end(t(2023, 5, 10), 6, 30), t(2023, 7, 1));
  EXPECT_EQ(ref::end_of_month(t(2024, 2, 10) + 5), t(2024, 3, 1));
  EXPECT_EQ(ref::end_of_year(t(2023, 12, 31) + 86399), t(2024, 1, 1));
  EXPECT_EQ(ref::end_of_day(t(1969, 12, 31) + 1), t(1970, 1, 1));
}

// ---- calendar::add / subtract / parse_duration -------------------------------------

struct AddCase {
  std::int64_t anchor = 0;
  Span span;
  std::int64_t later = 0;  // a second anchor, >= anchor
  FiscalYearEnd fye;
  std::uint64_t spelling = 0;
};

std::string describe(const AddCase& c) {
  Rng spelling(c.spelling);
  return "anchor " + show(c.anchor) + ", duration '" + ref::render_span(c.span, spelling) + "' " + show(c.span) +
         ", later anchor " + show(c.later) + ", fiscal_year_end " + std::to_string(c.fye.month) + "-" +
         std::to_string(c.fye.day);
}

std::optional<std::string> check(const AddCase& c) {
  Rng spelling(c.spelling);
  const std::string text = ref::render_span(c.span, spelling);
  const auto parsed = calendar::parse_duration(text);
  if (!parsed) return "parse_duration rejected '" + text + "': " + parsed.error().message;
  if (!(*parsed == to_duration(c.span))) return "parse_duration('" + text + "') is not " + show(c.span);

  const calendar::Instant anchor{c.anchor};
  const std::int64_t plus = calendar::add(anchor, *parsed).seconds;
  const std::int64_t minus = calendar::subtract(anchor, *parsed).seconds;
  if (plus != ref::add(c.anchor, c.span)) {
    return "add: got " + show(plus) + ", the spec gives " + show(ref::add(c.anchor, c.span));
  }
  if (minus != ref::add(c.anchor, c.span, -1)) {
    return "subtract: got " + show(minus) + ", the spec gives " + show(ref::add(c.anchor, c.span, -1));
  }
  // Lower bound: adding a duration never goes back, subtracting never forward.
  if (plus < c.anchor) return "add went back: " + show(plus);
  if (minus > c.anchor) return "subtract went forward: " + show(minus);

  // Monotone in the anchor. The month step keeps the time of day, so two
  // anchors on days that clamp to one target day may swap by less than a day
  // (2023-01-30T23:00 + 1 month = 02-28T23:00 > 2023-01-31T01:00 + 1 month);
  // with the same time of day, or no month step, the order is kept exactly.
  const std::int64_t plus_later = calendar::add(calendar::Instant{c.later}, *parsed).seconds;
  const std::int64_t minus_later = calendar::subtract(calendar::Instant{c.later}, *parsed).seconds;
  const bool exact = (c.later - c.anchor) % ref::kDay == 0 || !c.span.has_calendar_units();
  const std::int64_t slack = exact ? 0 : ref::kDay - 1;
  if (plus > plus_later + slack || minus > minus_later + slack) {
    return "not monotone: the later anchor gives " + show(plus_later) + " / " + show(minus_later) +
           ", the earlier " + show(plus) + " / " + show(minus);
  }

  const calendar::MonthDay fye{c.fye.month, c.fye.day};
  const std::pair<const char*, std::pair<std::int64_t, std::int64_t>> functions[] = {
      {"fiscal_year_end", {calendar::fiscal_year_end(anchor, fye).seconds,
                           ref::fiscal_year_end(c.anchor, c.fye.month, c.fye.day)}},
      {"end_of_month", {calendar::end_of_month(anchor).seconds, ref::end_of_month(c.anchor)}},
      {"end_of_year", {calendar::end_of_year(anchor).seconds, ref::end_of_year(c.anchor)}},
      {"end_of_day", {calendar::end_of_day(anchor).seconds, ref::end_of_day(c.anchor)}},
  };
  for (const auto& [name, values] : functions) {
    if (values.first != values.second) {
      return std::string(name) + ": got " + show(values.first) + ", the spec gives " + show(values.second);
    }
    if (values.first <= c.anchor) return std::string(name) + " is not after its argument: " + show(values.first);
  }
  return std::nullopt;
}

std::vector<AddCase> variants(const AddCase& c) {
  std::vector<AddCase> out;
  for (const auto& s : span_variants(c.span)) {
    AddCase v = c;
    v.span = s;
    out.push_back(v);
  }
  for (auto t : instant_variants(c.anchor, false)) {
    if (t > c.later) continue;
    AddCase v = c;
    v.anchor = t;
    out.push_back(v);
  }
  if (c.later != c.anchor) {
    AddCase v = c;
    v.later = c.anchor + (c.later - c.anchor) / 2;
    out.push_back(v);
  }
  if (c.fye.month != 12 || c.fye.day != 31) {
    AddCase v = c;
    v.fye = {12, 31};
    out.push_back(v);
  }
  return out;
}

AddCase random_add_case(Rng& rng) {
  AddCase c;
  c.anchor = ref::at_midnight(ref::random_date(rng));
  if (rng.chance(50)) c.anchor += ref::random_time_of_day(rng);
  c.span = ref::random_span(rng, ref::Shape{});
  const auto r = rng.range(0, 99);
  c.later = c.anchor + (r < 30   ? ref::kDay * rng.range(0, 3)
                        : r < 60 ? rng.range(0, 3 * ref::kDay)
                        : r < 85 ? ref::kDay * rng.range(0, 400)
                                 : rng.range(0, 200LL * 365 * ref::kDay));
  c.fye = ref::random_fiscal_year_end(rng);
  c.spelling = rng.next();
  return c;
}

TEST(CalendarProperty, AddSubtractAndTheEndFunctionsMatchTheSpecOnRandomAnchors) {
  const std::uint64_t seed = property_seed(), cases = property_cases(kCases);
  announce("CalendarProperty.AddSubtractAndTheEndFunctionsMatchTheSpecOnRandomAnchors", seed, cases);
  for (std::uint64_t i = 0; i < cases; ++i) {
    Rng rng = Rng::for_case(seed, i);
    const AddCase c = random_add_case(rng);
    if (auto failure = check(c)) {
      const AddCase small = shrink<AddCase>(
          c, [](const AddCase& x) { return check(x); }, [](const AddCase& x) { return variants(x); });
      FAIL() << "seed " << hex(seed) << ", case " << i << ": " << *failure << "\n  input: " << describe(c)
             << "\n  smallest failing input: " << describe(small) << "\n  which fails with: " << *check(small);
    }
  }
}

// ---- `at` expressions ---------------------------------------------------------------

// What a case may vary, and so which monotonicity holds exactly:
// - dates: anchors at midnight, whole-day durations (years..days): every
//   expression is monotone in each date;
// - elapsed: any time of day, no years or months: monotone too;
// - general: anything (the swap of less than a day described above can
//   compound through nested months, so only equality with the reference and
//   the min/max/shift bounds are asserted).
enum class Mode { dates, elapsed, general };

struct ExprCase {
  Mode mode = Mode::general;
  Node expr;
  DateMap dates;
  FiscalYearEnd fye;
  std::uint64_t spelling = 0;
  std::string later_name;  // monotonicity: the same record with this date moved later
  std::int64_t later_value = 0;
};

std::string render(const Node& n, std::uint64_t spelling) {
  Rng rng(spelling);
  return ref::render(n, rng);
}

std::string describe(const ExprCase& c) {
  std::string out = "at = \"" + render(c.expr, c.spelling) + "\", dates {";
  for (const auto& [name, t] : c.dates) out += " " + name + "=" + show(t);
  out += " }, fiscal_year_end " + std::to_string(c.fye.month) + "-" + std::to_string(c.fye.day);
  if (!c.later_name.empty()) out += ", later " + c.later_name + "=" + show(c.later_value);
  return out;
}

std::optional<std::string> check(const ExprCase& c) {
  const std::string text = render(c.expr, c.spelling);
  const auto parsed = policy::Expr::parse(text);
  if (!parsed) return "Expr::parse rejected \"" + text + "\": " + parsed.error().message;
  const calendar::MonthDay fye{c.fye.month, c.fye.day};
  const policy::Dates dates = to_dates(c.dates);
  const auto got = parsed->evaluate(dates, fye);
  const auto want = ref::eval(c.expr, c.dates, c.fye);
  if (got.has_value() != want.has_value() || (got && got->seconds != *want)) {
    return "due " + show(got) + ", the spec gives " + show(want);
  }

  // min/max against each operand, and a shift against its base, each
  // evaluated by the library on its own.
  const auto lib_eval = [&](const Node& n, std::uint64_t spelling) -> std::optional<std::optional<calendar::Instant>> {
    const auto e = policy::Expr::parse(render(n, spelling));
    if (!e) return std::nullopt;
    return e->evaluate(dates, fye);
  };
  const Node& root = c.expr;
  if (root.kind == Node::Kind::min || root.kind == Node::Kind::max) {
    bool any = false, hit = false;
    for (std::size_t i = 0; i < root.args.size(); ++i) {
      const auto operand = lib_eval(root.args[i], c.spelling + 1 + i);
      if (!operand) return "operand " + std::to_string(i) + " does not parse alone";
      if (!*operand) continue;
      any = true;
      if (!got) return "undefined although operand " + std::to_string(i) + " is " + show(*operand);
      if (root.kind == Node::Kind::max ? *got < **operand : *got > **operand) {
        return std::string(root.kind == Node::Kind::max ? "max " : "min ") + show(got) + " is on the wrong side of operand " +
               std::to_string(i) + " " + show(*operand);
      }
      hit = hit || *got == **operand;
    }
    if (any != got.has_value()) return "defined although every operand is undefined";
    if (any && !hit) return "equals none of its operands";
  } else if (root.kind == Node::Kind::shift) {
    const auto base = lib_eval(root.args[0], c.spelling + 1);
    if (!base) return "the base does not parse alone";
    if (base->has_value() != got.has_value()) return "defined differs from its base";
    if (got && (root.minus ? *got > **base : *got < **base)) {
      return "a shift by " + show(root.span) + (root.minus ? " back went forward" : " forward went back") +
             ": base " + show(*base);
    }
  }

  if (!c.later_name.empty()) {
    policy::Dates later = dates;
    later[c.later_name] = calendar::Instant{c.later_value};
    const auto got_later = parsed->evaluate(later, fye);
    DateMap later_ref = c.dates;
    later_ref[c.later_name] = c.later_value;
    const auto want_later = ref::eval(c.expr, later_ref, c.fye);
    if (got_later.has_value() != want_later.has_value() || (got_later && got_later->seconds != *want_later)) {
      return "with the later date: due " + show(got_later) + ", the spec gives " + show(want_later);
    }
    if (got.has_value() != got_later.has_value()) return "a later date changed whether the rule is defined";
    if (got && *got_later < *got) {
      return "not monotone: moving " + c.later_name + " later moved the due time from " + show(got) + " back to " +
             show(got_later);
    }
  }
  return std::nullopt;
}

void node_variants(const Node& n, std::vector<Node>& out) {
  for (const auto& a : n.args) out.push_back(a);
  if ((n.kind == Node::Kind::min || n.kind == Node::Kind::max) && n.args.size() > 1) {
    for (std::size_t i = 0; i < n.args.size(); ++i) {
      Node v = n;
      v.args.erase(v.args.begin() + static_cast<std::ptrdiff_t>(i));
      out.push_back(std::move(v));
    }
  }
  if (n.paren) {
    Node v = n;
    v.paren = false;
    out.push_back(std::move(v));
  }
  if (n.kind == Node::Kind::shift) {
    for (const auto& s : span_variants(n.span)) {
      Node v = n;
      v.span = s;
      out.push_back(std::move(v));
    }
    if (n.minus) {
      Node v = n;
      v.minus = false;
      out.push_back(std::move(v));
    }
  }
  for (std::size_t i = 0; i < n.args.size(); ++i) {
    std::vector<Node> sub;
    node_variants(n.args[i], sub);
    for (auto& s : sub) {
      Node v = n;
      v.args[i] = std::move(s);
      out.push_back(std::move(v));
    }
  }
}

std::vector<ExprCase> variants(const ExprCase& c) {
  std::vector<ExprCase> out;
  std::vector<Node> nodes;
  node_variants(c.expr, nodes);
  for (auto& n : nodes) {
    ExprCase v = c;
    v.expr = std::move(n);
    out.push_back(std::move(v));
  }
  for (const auto& [name, t] : c.dates) {
    if (name != c.later_name) {
      ExprCase v = c;
      v.dates.erase(name);
      out.push_back(std::move(v));
    }
    for (auto simpler : instant_variants(t, c.mode == Mode::dates)) {
      ExprCase v = c;
      const std::int64_t delta = c.later_value - t;
      v.dates[name] = simpler;
      if (name == c.later_name) v.later_value = simpler + delta;
      out.push_back(std::move(v));
    }
  }
  if (!c.later_name.empty() && c.later_value != c.dates.at(c.later_name)) {
    ExprCase v = c;
    const std::int64_t delta = (c.later_value - c.dates.at(c.later_name)) / 2;
    v.later_value = c.dates.at(c.later_name) + (c.mode == Mode::dates ? delta - delta % ref::kDay : delta);
    out.push_back(std::move(v));
  }
  if (c.fye.month != 12 || c.fye.day != 31) {
    ExprCase v = c;
    v.fye = {12, 31};
    out.push_back(std::move(v));
  }
  for (std::uint64_t s : {0ULL, 1ULL}) {
    if (c.spelling == s) continue;
    ExprCase v = c;
    v.spelling = s;
    out.push_back(std::move(v));
  }
  return out;
}

const std::vector<std::string> kNames = {"collected", "last_contact", "issued", "left", "contract_end",
                                         "consent_withdrawn"};

ExprCase random_expr_case(Rng& rng) {
  ExprCase c;
  const auto m = rng.range(0, 99);
  c.mode = m < 40 ? Mode::dates : m < 60 ? Mode::elapsed : Mode::general;
  const ref::Shape shape{c.mode != Mode::elapsed, c.mode != Mode::dates};
  c.expr = ref::random_node(rng, static_cast<int>(rng.range(0, 3)), kNames, shape);
  if (rng.chance(20)) {  // more min/max at the root, where their bounds are checked
    Node wrap;
    wrap.kind = rng.chance(50) ? Node::Kind::min : Node::Kind::max;
    wrap.args.push_back(std::move(c.expr));
    for (auto k = rng.range(1, 3); k > 0; --k) {
      wrap.args.push_back(ref::random_node(rng, static_cast<int>(rng.range(0, 2)), kNames, shape));
    }
    c.expr = std::move(wrap);
  }
  for (const auto& name : kNames) {
    if (!rng.chance(85)) continue;  // a missing date: event-based rules wait for it
    std::int64_t t = ref::at_midnight(ref::random_date(rng));
    if (c.mode != Mode::dates && rng.chance(60)) t += ref::random_time_of_day(rng);
    c.dates[name] = t;
  }
  c.fye = ref::random_fiscal_year_end(rng);
  c.spelling = rng.next();
  if (c.mode != Mode::general) {
    std::vector<std::string> candidates;
    for (const auto& [name, t] : c.dates) {
      if (ref::mentions(c.expr, name)) candidates.push_back(name);
    }
    if (!candidates.empty()) {
      c.later_name = rng.pick(candidates);
      const auto r = rng.range(0, 99);
      std::int64_t delta = 0;
      if (c.mode == Mode::dates) {
        delta = ref::kDay * (r < 40 ? rng.range(0, 3) : r < 80 ? rng.range(0, 62) : rng.range(0, 40000));
      } else {
        delta = r < 40 ? rng.range(0, 3 * ref::kDay) : r < 80 ? rng.range(0, 62 * ref::kDay)
                                                            : rng.range(0, 40000 * ref::kDay);
      }
      c.later_value = c.dates[c.later_name] + delta;
    }
  }
  return c;
}

TEST(AtExpressionProperty, DueTimesMatchTheSpecAreMonotoneAndMinMaxBoundTheirOperands) {
  const std::uint64_t seed = property_seed(), cases = property_cases(kCases);
  announce("AtExpressionProperty.DueTimesMatchTheSpecAreMonotoneAndMinMaxBoundTheirOperands", seed, cases);
  std::uint64_t undefined = 0, monotone = 0, bounded = 0;
  for (std::uint64_t i = 0; i < cases; ++i) {
    Rng rng = Rng::for_case(seed, i);
    const ExprCase c = random_expr_case(rng);
    if (auto failure = check(c)) {
      const ExprCase small = shrink<ExprCase>(
          c, [](const ExprCase& x) { return check(x); }, [](const ExprCase& x) { return variants(x); });
      FAIL() << "seed " << hex(seed) << ", case " << i << ": " << *failure << "\n  input: " << describe(c)
             << "\n  smallest failing input: " << describe(small) << "\n  which fails with: " << *check(small);
    }
    undefined += ref::eval(c.expr, c.dates, c.fye) ? 0 : 1;
    monotone += c.later_name.empty() ? 0 : 1;
    bounded += c.expr.kind == Node::Kind::min || c.expr.kind == Node::Kind::max || c.expr.kind == Node::Kind::shift;
  }
  std::printf("[ property ] %llu expressions: %llu waiting (a date missing), %llu with a monotonicity check\n",
              static_cast<unsigned long long>(cases), static_cast<unsigned long long>(undefined),
              static_cast<unsigned long long>(monotone));
  // The generator does reach every kind of case (a test that can fail).
  EXPECT_GT(undefined, cases / 100);
  EXPECT_GT(monotone, cases / 4);
  EXPECT_GT(bounded, cases / 3);
}

// The one place where "monotone in the anchor" does not hold, by the spec's
// own rule that month arithmetic keeps the time of day: two instants whose
// days clamp to the same target day keep their times, so the earlier one
// can come out later, by less than a day. Pinned so that the exception the
// property tests allow is the one the spec makes, no wider.
TEST(AtExpressionProperty, MonthArithmeticKeepsTheTimeOfDaySoTwoAnchorsOfOneTargetDayMaySwap) {
  const auto parsed = policy::Expr::parse("collected + 1 month");
  ASSERT_TRUE(parsed);
  const auto at = [&](std::int64_t t) {
    return parsed->evaluate(policy::Dates{{"collected", calendar::Instant{t}}}, calendar::MonthDay{})->seconds;
  };
  const std::int64_t jan30_2300 = ref::at_midnight({2023, 1, 30}) + 23 * 3600;
  const std::int64_t jan31_0100 = ref::at_midnight({2023, 1, 31}) + 1 * 3600;
  EXPECT_EQ(at(jan30_2300), ref::at_midnight({2023, 2, 28}) + 23 * 3600);
  EXPECT_EQ(at(jan31_0100), ref::at_midnight({2023, 2, 28}) + 1 * 3600);
  EXPECT_LT(jan30_2300, jan31_0100);
  EXPECT_GT(at(jan30_2300), at(jan31_0100));
  EXPECT_LT(at(jan30_2300) - at(jan31_0100), ref::kDay);
}

}  // namespace
}  // namespace retentiond::property
