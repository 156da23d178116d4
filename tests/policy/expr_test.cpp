// Tests for lib/policy/expr (the `at` expression of shared/spec/policy.md):
// parsing, evaluation with the spec's undefined semantics, date_names(),
// canonical() and parse errors. Every expected value is a literal worked out
// by hand from the spec, never computed by the code under test.

#include "lib/policy/expr.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace retentiond::policy {
namespace {

using calendar::Instant;
using calendar::MonthDay;

constexpr MonthDay kDec31{12, 31};
constexpr MonthDay kJun30{6, 30};

// Parses an instant the test relies on as input; fails the test when rejected.
Instant at(std::string_view text) {
  auto r = calendar::parse_instant(text);
  EXPECT_TRUE(r.ok()) << "parse_instant(\"" << text
                      << "\") failed: " << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : Instant{};
}

// Parses `text`, failing the test (and returning an empty Expr) if rejected.
Expr parse(std::string_view text) {
  auto r = Expr::parse(text);
  EXPECT_TRUE(r.ok()) << "Expr::parse(\"" << text
                      << "\") failed: " << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : Expr{};
}

// The value of `text` for `dates`, as "YYYY-MM-DDTHH:MM:SSZ", or "undefined".
std::string eval(std::string_view text, const Dates& dates, MonthDay fye = kDec31) {
  const auto v = parse(text).evaluate(dates, fye);
  return v ? calendar::format_instant(*v) : "undefined";
}

// The anchor for the helpers above: the test inputs are what they say.
TEST(ExprHelpers, InstantHelperParsesToKnownEpochSeconds) {
  EXPECT_EQ(at("2024-01-01").seconds, 1704067200);
  EXPECT_EQ(at("2023-05-10T12:34:56Z").seconds, 1683722096);
  EXPECT_EQ(calendar::format_instant(Instant{1709164800}), "2024-02-29T00:00:00Z");
}

// ---- evaluation: durations -------------------------------------------------

TEST(ExprEvaluate, CollectedPlus13MonthsKeepsTimeOfDay) {
  EXPECT_EQ(eval("collected + 13 months", {{"collected", at("2023-03-15T08:30:00Z")}}),
            "2024-04-15T08:30:00Z");
}

TEST(ExprEvaluate, CollectedPlus13MonthsClampsJan31ToLeapFebruaryEnd) {
  EXPECT_EQ(eval("collected + 13 months", {{"collected", at("2023-01-31T08:00:00Z")}}),
            "2024-02-29T08:00:00Z");
  EXPECT_EQ(eval("collected + 13 months", {{"collected", at("2022-01-31")}}),
            "2023-02-28T00:00:00Z");
}

TEST(ExprEvaluate, ContractEndPlus4Months30DaysAddsMonthsThenDays) {
  // 2023-10-31 + 4 months = 2024-02-29 (clamped), + 30 days = 2024-03-30.
  EXPECT_EQ(eval("contract_end + 4 months 30 days", {{"contract_end", at("2023-10-31T15:30:00Z")}}),
            "2024-03-30T15:30:00Z");
  // 2023-01-15 + 4 months = 2023-05-15, + 30 days = 2023-06-14.
  EXPECT_EQ(eval("contract_end + 4 months 30 days", {{"contract_end", at("2023-01-15")}}),
            "2023-06-14T00:00:00Z");
}

TEST(ExprEvaluate, SubtractingAMonthFromMarch31ClampsToFebruaryEnd) {
  EXPECT_EQ(eval("x - 1 month", {{"x", at("2023-03-31T10:00:00Z")}}), "2023-02-28T10:00:00Z");
  EXPECT_EQ(eval("x - 1 month", {{"x", at("2024-03-31")}}), "2024-02-29T00:00:00Z");
}

TEST(ExprEvaluate, NestedParenthesesApplyTheInnerShiftFirst) {
  // (2023-01-31 + 1 month) = 2023-02-28, + 1 day = 2023-03-01.
  EXPECT_EQ(eval("(a + 1 month) + 1 day", {{"a", at("2023-01-31")}}), "2023-03-01T00:00:00Z");
  // (2023-01-31 + 1 day) = 2023-02-01, + 1 month = 2023-03-01.
  EXPECT_EQ(eval("((a + 1 day)) + 1 month", {{"a", at("2023-01-31")}}), "2023-03-01T00:00:00Z");
  // 2023-01-30 + 1 day = 01-31, + 1 month = 02-28 (clamped), whereas
  // 2023-01-30 + 1 month = 02-28, + 1 day = 03-01: the order shows.
  EXPECT_EQ(eval("(a + 1 day) + 1 month", {{"a", at("2023-01-30")}}), "2023-02-28T00:00:00Z");
  EXPECT_EQ(eval("(a + 1 month) + 1 day", {{"a", at("2023-01-30")}}), "2023-03-01T00:00:00Z");
}

TEST(ExprEvaluate, ChainedShiftsApplyLeftToRight) {
  // 2024-02-29 + 1 year = 2025-02-28, - 1 day = 2025-02-27.
  EXPECT_EQ(eval("a + 1 year - 1 day", {{"a", at("2024-02-29")}}), "2025-02-27T00:00:00Z");
}

// ---- evaluation: undefined ------------------------------------------------

TEST(ExprEvaluate, ShiftOfAMissingDateIsUndefined) {
  EXPECT_EQ(eval("x + 1 day", {{"collected", at("2023-01-01")}}), "undefined");
  EXPECT_EQ(eval("left + 5 years", {}), "undefined");
}

TEST(ExprEvaluate, MinWithBothArgumentsMissingIsUndefined) {
  EXPECT_FALSE(parse("min(a, b)").evaluate({{"collected", at("2023-01-01")}}, kDec31).has_value());
  EXPECT_FALSE(parse("max(a, b + 1 day)").evaluate({}, kDec31).has_value());
}

TEST(ExprEvaluate, EmptyExprIsUndefined) {
  EXPECT_FALSE(Expr{}.evaluate({{"collected", at("2023-01-01")}}, kDec31).has_value());
}

// ---- evaluation: min / max ------------------------------------------------

TEST(ExprEvaluate, MaxWithLastContactMissingCountsFromCollected) {
  // 2020-02-29 + 3 years = 2023-02-28 (clamped).
  EXPECT_EQ(eval("max(collected, last_contact) + 3 years", {{"collected", at("2020-02-29")}}),
            "2023-02-28T00:00:00Z");
}

TEST(ExprEvaluate, MaxWithLaterLastContactCountsFromLastContact) {
  EXPECT_EQ(eval("max(collected, last_contact) + 3 years",
                 {{"collected", at("2020-02-29")}, {"last_contact", at("2021-06-15T10:00:00Z")}}),
            "2024-06-15T10:00:00Z");
}

TEST(ExprEvaluate, MaxWithEarlierLastContactCountsFromCollected) {
  EXPECT_EQ(eval("max(collected, last_contact) + 3 years",
                 {{"collected", at("2020-02-29")}, {"last_contact", at("2019-01-01")}}),
            "2023-02-28T00:00:00Z");
}

TEST(ExprEvaluate, MinWithoutWithdrawalIs13MonthsAfterCollection) {
  EXPECT_EQ(
      eval("min(collected + 13 months, consent_withdrawn)", {{"collected", at("2023-03-15")}}),
      "2024-04-15T00:00:00Z");
}

TEST(ExprEvaluate, MinWithEarlierWithdrawalIsTheWithdrawal) {
  EXPECT_EQ(
      eval("min(collected + 13 months, consent_withdrawn)",
           {{"collected", at("2023-03-15")}, {"consent_withdrawn", at("2023-09-01T12:00:00Z")}}),
      "2023-09-01T12:00:00Z");
}

TEST(ExprEvaluate, MinWithWithdrawalAfter13MonthsIsThe13Months) {
  EXPECT_EQ(eval("min(collected + 13 months, consent_withdrawn)",
                 {{"collected", at("2023-03-15")}, {"consent_withdrawn", at("2025-01-01")}}),
            "2024-04-15T00:00:00Z");
}

TEST(ExprEvaluate, MinAndMaxTakeAnyNumberOfArguments) {
  const Dates d = {{"a", at("2023-05-01")}, {"b", at("2021-01-01")}, {"c", at("2022-07-01")}};
  EXPECT_EQ(eval("min(a, b, c)", d), "2021-01-01T00:00:00Z");
  EXPECT_EQ(eval("max(a, b, c)", d), "2023-05-01T00:00:00Z");
  EXPECT_EQ(eval("min(a)", d), "2023-05-01T00:00:00Z");
  EXPECT_EQ(eval("min(a, missing, c)", d), "2022-07-01T00:00:00Z");
}

// ---- evaluation: functions ------------------------------------------------

TEST(ExprEvaluate, FiscalYearEndDec31PlusTenYears) {
  // The spec's examples, each + 10 years.
  EXPECT_EQ(eval("fiscal_year_end(issued) + 10 years", {{"issued", at("2023-05-10")}}),
            "2034-01-01T00:00:00Z");
  EXPECT_EQ(eval("fiscal_year_end(issued) + 10 years", {{"issued", at("2023-12-30T23:59:59Z")}}),
            "2034-01-01T00:00:00Z");
  EXPECT_EQ(eval("fiscal_year_end(issued) + 10 years", {{"issued", at("2023-12-31T18:00:00Z")}}),
            "2034-01-01T00:00:00Z");
  EXPECT_EQ(eval("fiscal_year_end(issued) + 10 years", {{"issued", at("2024-01-01")}}),
            "2035-01-01T00:00:00Z");
}

TEST(ExprEvaluate, FiscalYearEndJun30AroundTheBoundaryDay) {
  const char* e = "fiscal_year_end(issued) + 10 years";
  EXPECT_EQ(eval(e, {{"issued", at("2023-05-10")}}, kJun30), "2033-07-01T00:00:00Z");
  EXPECT_EQ(eval(e, {{"issued", at("2023-06-29T23:59:59Z")}}, kJun30), "2033-07-01T00:00:00Z");
  EXPECT_EQ(eval(e, {{"issued", at("2023-06-30")}}, kJun30), "2033-07-01T00:00:00Z");
  EXPECT_EQ(eval(e, {{"issued", at("2023-06-30T23:59:59Z")}}, kJun30), "2033-07-01T00:00:00Z");
  EXPECT_EQ(eval(e, {{"issued", at("2023-07-01")}}, kJun30), "2034-07-01T00:00:00Z");
  EXPECT_EQ(eval(e, {{"issued", at("2023-12-31")}}, kJun30), "2034-07-01T00:00:00Z");
}

TEST(ExprEvaluate, FiscalYearEndUsesThePolicysFiscalYearEnd) {
  const Dates d = {{"issued", at("2023-08-15")}};
  EXPECT_EQ(eval("fiscal_year_end(issued)", d, kDec31), "2024-01-01T00:00:00Z");
  EXPECT_EQ(eval("fiscal_year_end(issued)", d, kJun30), "2024-07-01T00:00:00Z");
  EXPECT_EQ(eval("fiscal_year_end(issued)", d, MonthDay{3, 31}), "2024-04-01T00:00:00Z");
}

TEST(ExprEvaluate, EndOfDayIsMidnightStartingTheNextDay) {
  EXPECT_EQ(eval("end_of_day(x)", {{"x", at("2023-05-10T13:45:00Z")}}), "2023-05-11T00:00:00Z");
  EXPECT_EQ(eval("end_of_day(x)", {{"x", at("2023-05-10")}}), "2023-05-11T00:00:00Z");
  EXPECT_EQ(eval("end_of_day(x)", {{"x", at("2023-12-31T23:59:59Z")}}), "2024-01-01T00:00:00Z");
  EXPECT_EQ(eval("end_of_day(x)", {{"x", at("2024-02-28T06:00:00Z")}}), "2024-02-29T00:00:00Z");
}

TEST(ExprEvaluate, EndOfMonthIsMidnightOfTheFirstOfNextMonth) {
  EXPECT_EQ(eval("end_of_month(x)", {{"x", at("2023-01-31T10:00:00Z")}}), "2023-02-01T00:00:00Z");
  EXPECT_EQ(eval("end_of_month(x)", {{"x", at("2024-02-01")}}), "2024-03-01T00:00:00Z");
  EXPECT_EQ(eval("end_of_month(x)", {{"x", at("2023-12-15")}}), "2024-01-01T00:00:00Z");
}

TEST(ExprEvaluate, EndOfYearIsMidnightOfNextJanuaryFirst) {
  EXPECT_EQ(eval("end_of_year(x)", {{"x", at("2023-01-01")}}), "2024-01-01T00:00:00Z");
  EXPECT_EQ(eval("end_of_year(x)", {{"x", at("2023-12-31T23:59:59Z")}}), "2024-01-01T00:00:00Z");
}

TEST(ExprEvaluate, FunctionOfAMissingDateIsUndefined) {
  EXPECT_EQ(eval("end_of_month(x)", {}), "undefined");
  EXPECT_EQ(eval("fiscal_year_end(issued) + 10 years", {{"collected", at("2023-01-01")}}),
            "undefined");
}

TEST(ExprEvaluate, FunctionsCompose) {
  // end_of_month(2023-01-31 + 1 month = 2023-02-28) = 2023-03-01, + 1 day.
  EXPECT_EQ(eval("end_of_month(x + 1 month) + 1 day", {{"x", at("2023-01-31")}}),
            "2023-03-02T00:00:00Z");
  EXPECT_EQ(eval("min(end_of_year(a), end_of_month(b))",
                 {{"a", at("2023-06-01")}, {"b", at("2023-12-31")}}),
            "2024-01-01T00:00:00Z");
}

TEST(ExprEvaluate, DueTimePastYear9999IsReturnedUnclamped) {
  // 10000-01-01T00:00:00Z is one second after kMaxInstant (9999-12-31T23:59:59Z).
  const auto one_day = parse("x + 1 day").evaluate({{"x", at("9999-12-31")}}, kDec31);
  ASSERT_TRUE(one_day.has_value());
  EXPECT_EQ(one_day->seconds, 253402300800);
  EXPECT_GT(*one_day, calendar::kMaxInstant);

  const auto far = parse("x + 100000 years").evaluate({{"x", at("9999-12-31")}}, kDec31);
  ASSERT_TRUE(far.has_value());
  EXPECT_GT(far->seconds, 253402300800);
  // Exact arithmetic: going out and back returns the input.
  const auto back =
      parse("x + 100000 years - 100000 years").evaluate({{"x", at("9999-12-31")}}, kDec31);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->seconds, 253402214400);  // 9999-12-31T00:00:00Z
}

// ---- date_names, canonical -------------------------------------------------

TEST(ExprDateNames, ListsNamesInFirstMentionOrderWithoutDuplicates) {
  EXPECT_EQ(parse("min(contract_end, max(collected, contract_end) + 1 day, suspended + 2 years)")
                .date_names(),
            (std::vector<std::string>{"contract_end", "collected", "suspended"}));
  EXPECT_EQ(parse("fiscal_year_end(issued) + 10 years").date_names(),
            (std::vector<std::string>{"issued"}));
  EXPECT_EQ(parse("max(b, a, b, a)").date_names(), (std::vector<std::string>{"b", "a"}));
}

TEST(ExprDateNames, NamesThatStartLikeFunctionsAreDateNames) {
  EXPECT_EQ(parse("max(max_age, minimum) + 1 day").date_names(),
            (std::vector<std::string>{"max_age", "minimum"}));
  EXPECT_EQ(eval("max_age + 1 day", {{"max_age", at("2023-01-01")}}), "2023-01-02T00:00:00Z");
}

TEST(ExprDateNames, EmptyExprHasNoNames) { EXPECT_TRUE(Expr{}.date_names().empty()); }

TEST(ExprParse, BlanksAreFreeBetweenTokens) {
  EXPECT_EQ(parse("end_of_day (x)").canonical(), "end_of_day(x)");
  EXPECT_EQ(parse("\tmin( a ,b\t) -  1 day").canonical(), "min(a, b) - 1 day");
  EXPECT_EQ(eval("min( a ,b\t) -  1 day", {{"a", at("2023-03-01")}, {"b", at("2023-04-01")}}),
            "2023-02-28T00:00:00Z");
}

TEST(ExprDateNames, FunctionNamesAreNotDateNames) {
  EXPECT_EQ(parse("end_of_year(end_of_month(end_of_day(x)))").date_names(),
            (std::vector<std::string>{"x"}));
}

TEST(ExprCanonical, SpacesAndDurationsAreNormalised) {
  EXPECT_EQ(parse("max(collected,last_contact)+3y").canonical(),
            "max(collected, last_contact) + 3 years");
  EXPECT_EQ(parse("collected + P1Y2M").canonical(), "collected + 1 year 2 months");
  EXPECT_EQ(parse("  fiscal_year_end( issued )\t+ 10 years ").canonical(),
            "fiscal_year_end(issued) + 10 years");
  EXPECT_EQ(parse("contract_end + 4mo30d").canonical(), "contract_end + 4 months 30 days");
  EXPECT_EQ(parse("x-1 month").canonical(), "x - 1 month");
}

TEST(ExprCanonical, RedundantParenthesesDisappear) {
  EXPECT_EQ(parse("((a + 1 month)) + 1 day").canonical(), "a + 1 month + 1 day");
}

TEST(ExprCanonical, CompactAndLongSpellingsHaveTheSameCanonicalText) {
  EXPECT_EQ(parse("collected+13mo").canonical(), "collected + 13 months");
  EXPECT_EQ(parse("collected + 13 months").canonical(), "collected + 13 months");
  EXPECT_EQ(parse("collected + PT24H").canonical(), "collected + 24 hours");
  EXPECT_EQ(parse("collected + 24h").canonical(), "collected + 24 hours");
}

TEST(ExprCanonical, EmptyExprHasEmptyText) { EXPECT_EQ(Expr{}.canonical(), ""); }

// ---- parse errors ------------------------------------------------------------

struct ParseFailure {
  bool failed = false;
  std::string reason;
  std::string message;
  std::int64_t offset = -1;
};

ParseFailure parse_failure(std::string_view text) {
  ParseFailure f;
  auto r = Expr::parse(text);
  if (r.ok()) return f;
  f.failed = true;
  f.reason = r.error().reason;
  f.message = r.error().message;
  if (r.error().data.contains("offset")) f.offset = r.error().data["offset"].get<std::int64_t>();
  return f;
}

// Expects `text` to be rejected with reason bad_config at `offset`, with a
// message containing `words`.
void expect_parse_error(std::string_view text, std::int64_t offset, std::string_view words) {
  SCOPED_TRACE("Expr::parse(\"" + std::string(text) + "\")");
  const auto f = parse_failure(text);
  ASSERT_TRUE(f.failed);
  EXPECT_EQ(f.reason, "bad_config");
  EXPECT_EQ(f.offset, offset) << f.message;
  EXPECT_NE(f.message.find(words), std::string::npos) << f.message;
}

TEST(ExprParseError, UnknownFunctionPointsAtItsName) {
  expect_parse_error("maxi(a, b)", 0, "unknown function 'maxi'");
  expect_parse_error("min(a, maxi(b))", 7, "unknown function 'maxi'");
}

TEST(ExprParseError, FunctionNameWithoutParenthesesIsRejected) {
  expect_parse_error("min", 0, "'min' is a function");
  expect_parse_error("end_of_month + 1 day", 0, "'end_of_month' is a function");
}

TEST(ExprParseError, EmptyExpressionIsRejected) { expect_parse_error("", 0, "empty expression"); }

TEST(ExprParseError, OperatorWithoutDurationPointsAtTheEnd) {
  expect_parse_error("collected +", 11, "expected a duration after '+'");
  expect_parse_error("collected - ", 12, "expected a duration after '-'");
}

TEST(ExprParseError, AddingADateToADateIsRejected) {
  expect_parse_error("collected + last_contact", 12, "'last_contact' is not a duration");
}

TEST(ExprParseError, UnknownUnitPointsAtTheDuration) {
  expect_parse_error("collected + 3 yrs", 12, "yrs");
  expect_parse_error("max(a, b) + 2 m", 12, "ambiguous unit 'm'");
}

TEST(ExprParseError, UnbalancedParenthesesAreRejected) {
  expect_parse_error("max(a, b", 8, "expected ',' or ')' in max(...)");
  expect_parse_error("a)", 1, "unbalanced ')'");
  expect_parse_error("(a + 1 day", 10, "missing ')'");
}

TEST(ExprParseError, DateNamesMustBeLowercaseAndStartWithALetter) {
  expect_parse_error("Collected", 0, "must be lowercase");
  expect_parse_error("max(collected, lastContact)", 15, "must be lowercase");
  expect_parse_error("_collected", 0, "must start with a letter");
}

TEST(ExprParseError, NumberAsPrimaryIsRejected) {
  expect_parse_error("3 years + collected", 0, "got a number");
}

TEST(ExprParseError, OneArgumentFunctionsCheckTheirArity) {
  expect_parse_error("fiscal_year_end(a, b)", 0, "takes exactly one argument, got 2");
  expect_parse_error("min(a, end_of_year(b, c))", 7,
                     "end_of_year() takes exactly one argument, got 2");
  expect_parse_error("end_of_day()", 11, "expected a date name or a function, got ')'");
}

TEST(ExprParseError, TrailingGarbageIsRejected) {
  expect_parse_error("collected x", 10, "unexpected 'x'");
  expect_parse_error("max(a, b) c", 10, "unexpected 'c'");
  expect_parse_error("collected * 2", 10, "unexpected '*'");
}

// Found by fuzz_expr: 1207 '(' overflowed the stack of the recursive parser
// (under ASan; some thousands without). Nesting and chains of shifts (each
// one a level of the tree, which evaluation, printing and destruction walk
// recursively) are limited to 64 levels.
std::string repeated(std::string_view part, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += part;
  return out;
}

TEST(ExprParseError, DeepNestingIsRejectedNotAStackOverflow) {
  expect_parse_error(repeated("(", 100000) + "a" + repeated(")", 100000), 64, "nested too deeply");
  expect_parse_error(repeated("max(", 100000) + "a" + repeated(")", 100000), 256, "nested too deeply");
  // At the operator that would make the 65th level.
  expect_parse_error("a" + repeated(" + 1 day", 100000), 1 + 63 * 8 + 1, "nested too deeply");
  expect_parse_error("min(a, b" + repeated(" + 1 day", 64) + ")", 8 + 63 * 8 + 1, "nested too deeply");
}

TEST(ExprParse, SixtyFourLevelsAreAllowed) {
  // The expression itself is the first level.
  EXPECT_EQ(parse(repeated("(", 63) + "a" + repeated(")", 63)).canonical(), "a");
  EXPECT_EQ(parse("a" + repeated(" + 1 day", 63)).evaluate({{"a", Instant{0}}}, kDec31), Instant{63 * 86400});
  EXPECT_EQ(parse(repeated("end_of_day(", 63) + "a" + repeated(")", 63)).evaluate({{"a", Instant{0}}}, kDec31),
            Instant{63 * 86400});
}

TEST(ExprParseError, ValidSpellingsOfTheSeedRulesParse) {
  for (const char* text :
       {"collected + 13 months", "min(collected + 13 months, consent_withdrawn)",
        "max(collected, last_contact) + 3 years", "contract_end + 4 months 30 days",
        "fiscal_year_end(issued) + 10 years", "left + 5 years",
        "min(contract_end, suspended + 2 years)", "course_closed + 6 months", "issued + 50 years",
        "collected + 24 hours", "collected + P6Y", "collected + 1min", "account_deleted",
        "x + 0 days"}) {
    EXPECT_FALSE(parse_failure(text).failed) << text << ": " << parse_failure(text).message;
  }
}

}  // namespace
}  // namespace retentiond::policy
