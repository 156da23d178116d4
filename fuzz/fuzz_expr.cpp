// Fuzz target: lib/policy/expr, the `at` expression language: parse, then
// evaluate against dates drawn from the input.
//
// Input: the expression, then optionally a NUL byte followed by bytes that
// choose the dates (8 per date name in first-mention order, the top bit of
// the first byte leaving the date undefined) and the fiscal year end.
// Properties checked beyond "no crash, no UB":
//  - a rejection is invalid_params/bad_config with data.offset inside the text;
//  - the canonical text parses back to the same canonical text, the same
//    date names and the same value for the same dates;
//  - the value is undefined exactly when the expression cannot be evaluated
//    (a plain date that is missing), and min/max give one of their
//    arguments' values.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "fuzz/check.hpp"
#include "lib/policy/expr.hpp"

namespace cal = retentiond::calendar;
using retentiond::policy::Dates;
using retentiond::policy::Expr;

namespace {

std::string describe(const std::optional<cal::Instant>& t) { return t ? cal::format_instant(*t) : "undefined"; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t nul = input.find('\0');
  const std::string_view text = input.substr(0, nul);
  std::string_view rest = nul == std::string_view::npos ? std::string_view() : input.substr(nul + 1);

  auto parsed = Expr::parse(text);
  if (!parsed) {
    const auto& e = parsed.error();
    FUZZ_CHECK(e.code == retentiond::ErrorCode::invalid_params && e.reason == "bad_config", e.message);
    FUZZ_CHECK(!e.message.empty(), "empty message");
    FUZZ_CHECK(e.data.contains("offset") && e.data["offset"].is_number_unsigned(), e.data.dump());
    FUZZ_CHECK(e.data["offset"].get<std::size_t>() <= text.size(), e.data.dump());
    return 0;
  }
  const Expr& expr = *parsed;

  // The dates: every name the expression mentions, defined or not.
  Dates dates;
  const auto names = expr.date_names();
  for (std::size_t i = 0; i < names.size(); ++i) {
    std::uint64_t raw = 0x9e3779b97f4a7c15ULL * (i + 1);  // a spread of dates when the input has no bytes left
    if (rest.size() >= 8) {
      std::memcpy(&raw, rest.data(), 8);
      rest.remove_prefix(8);
      if ((raw & 0x80) != 0) continue;  // undefined
    }
    dates[names[i]] = cal::Instant{static_cast<std::int64_t>(raw % static_cast<std::uint64_t>(cal::kMaxInstant.seconds + 1))};
  }
  cal::MonthDay fye;
  if (rest.size() >= 2) {
    fye.month = static_cast<unsigned char>(rest[0]) % 12 + 1;
    fye.day = static_cast<unsigned char>(rest[1]) % cal::days_in_month(2001, fye.month) + 1;
  }

  const auto value = expr.evaluate(dates, fye);
  const std::string canonical = expr.canonical();
  FUZZ_CHECK(!canonical.empty(), std::string(text));
  FUZZ_CHECK(!expr.describe().empty(), canonical);
  for (const auto& n : names) FUZZ_CHECK(canonical.find(n) != std::string::npos, n + " not in " + canonical);

  auto again = Expr::parse(canonical);
  FUZZ_CHECK(again.ok(), canonical + ": " + (again.ok() ? "" : again.error().message));
  FUZZ_CHECK(again->canonical() == canonical, canonical + " became " + again->canonical());
  FUZZ_CHECK(again->date_names() == names, canonical);
  const auto value_again = again->evaluate(dates, fye);
  FUZZ_CHECK(value_again == value, canonical + ": " + describe(value) + " vs " + describe(value_again));

  // Defined when every date is; undefined when none is.
  if (dates.size() == names.size()) FUZZ_CHECK(value.has_value(), canonical);
  if (dates.empty()) FUZZ_CHECK(!value.has_value(), canonical);
  // With a single date: min(x, x) == max(x, x) == x, and wrapping the whole
  // expression in min/max changes nothing.
  // An expression already at the nesting limit (64) cannot be wrapped: the
  // parser must then say so, not fail otherwise or accept it.
  const auto at_limit = [](const auto& r) {
    return !r.ok() && r.error().message.find("nested too deeply") != std::string::npos;
  };
  auto wrapped = Expr::parse("max(" + canonical + ")");
  FUZZ_CHECK(at_limit(wrapped) || (wrapped.ok() && wrapped->evaluate(dates, fye) == value), canonical);
  auto both = Expr::parse("min(" + canonical + ", " + canonical + ")");
  FUZZ_CHECK(at_limit(both) || (both.ok() && both->evaluate(dates, fye) == value), canonical);
  FUZZ_CHECK(at_limit(wrapped) == at_limit(both), canonical);
  return 0;
}
