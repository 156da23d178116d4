#pragma once
// The `at` expression language of the policy spec:
//
//   expr     := primary { ("+" | "-") duration }
//   primary  := date_name | ("min"|"max") "(" expr {"," expr} ")"
//             | ("fiscal_year_end"|"end_of_month"|"end_of_year"|"end_of_day") "(" expr ")"
//             | "(" expr ")"
//
// An Expr is an immutable, cheaply copyable AST. Evaluation yields an instant
// or *undefined* (a date the record does not carry), with the spec's rules:
// `x ± d` is undefined when x is; min/max ignore undefined arguments and are
// undefined only when all are. Thread-safe (const after parsing).

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/calendar/calendar.hpp"
#include "lib/util/result.hpp"

namespace retentiond::policy {

// A record's named dates. `std::less<>` allows lookup by string_view.
using Dates = std::map<std::string, calendar::Instant, std::less<>>;

struct ExprNode;

class Expr {
 public:
  // An empty expression: undefined for every record. Parse to get a real one.
  Expr() = default;

  // Parses `text`. On failure the Error has reason "bad_config" and
  // data["offset"] holds the 0-based character offset of the problem.
  static Result<Expr> parse(std::string_view text);

  // The value of the expression for a record carrying `dates`, or nullopt
  // when undefined. `fye` is the policy's fiscal year end.
  std::optional<calendar::Instant> evaluate(const Dates& dates, calendar::MonthDay fye) const;

  // Every date name the expression mentions, in first-mention order.
  std::vector<std::string> date_names() const;

  // Canonical text: single spaces, durations in long form ("3 years").
  // Two expressions with the same canonical text mean the same thing.
  std::string canonical() const;

  // In words, for the retention table: "3 years after the later of collected
  // and last_contact".
  std::string describe() const;

 private:
  explicit Expr(std::shared_ptr<const ExprNode> root) : m_root(std::move(root)) {}
  std::shared_ptr<const ExprNode> m_root;
};

}  // namespace retentiond::policy
