#include "lib/policy/expr.hpp"

#include <algorithm>
#include <array>

namespace retentiond::policy {

using calendar::Duration;
using calendar::Instant;

struct ExprNode {
  enum class Kind { date, min, max, fiscal_year_end, end_of_month, end_of_year, end_of_day, shift };
  Kind kind = Kind::date;
  std::string name;              // date
  std::vector<ExprNode> args;    // functions; shift: args[0] is the base
  Duration duration;             // shift
  bool minus = false;            // shift
  int height = 1;                // levels of the tree from here down
};

namespace {

using Kind = ExprNode::Kind;

struct FunctionName {
  std::string_view name;
  Kind kind;
};
constexpr std::array<FunctionName, 6> kFunctions = {{
    {"min", Kind::min},
    {"max", Kind::max},
    {"fiscal_year_end", Kind::fiscal_year_end},
    {"end_of_month", Kind::end_of_month},
    {"end_of_year", Kind::end_of_year},
    {"end_of_day", Kind::end_of_day},
}};

std::string_view function_name(Kind k) {
  for (const auto& f : kFunctions) {
    if (f.kind == k) return f.name;
  }
  return "?";
}

// How deep an expression may nest: brackets and calls in the text, and
// levels in the tree (each `+ duration` adds one). Far beyond any real rule;
// it keeps the recursive parser and the recursive evaluation, printing and
// destruction of the tree within a small stack, whatever the policy file says.
constexpr int kMaxDepth = 64;

bool is_ident_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_ident_char(char c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }

class Parser {
 public:
  explicit Parser(std::string_view text) : m_text(text) {}

  Result<ExprNode> parse_all() {
    auto e = parse_expr();
    if (!e) return e;
    skip_blanks();
    if (m_pos < m_text.size()) {
      if (m_text[m_pos] == ')') return fail("unbalanced ')'");
      return fail("unexpected '" + std::string(m_text.substr(m_pos, 1)) +
                  "' (an expression continues only with '+ duration' or '- duration')");
    }
    return e;
  }

 private:
  void skip_blanks() {
    while (m_pos < m_text.size() && (m_text[m_pos] == ' ' || m_text[m_pos] == '\t')) ++m_pos;
  }

  Error fail(std::string message, std::size_t at) const {
    Error e = Error::invalid_params("bad_config", std::move(message));
    e.data["offset"] = at;
    return e;
  }
  Error fail(std::string message) const { return fail(std::move(message), m_pos); }

  Result<ExprNode> parse_expr() {
    if (m_nesting >= kMaxDepth) return fail("expression nested too deeply (more than " + std::to_string(kMaxDepth) + " levels)");
    ++m_nesting;
    auto e = parse_chain();
    --m_nesting;
    return e;
  }

  Result<ExprNode> parse_chain() {
    auto base = parse_primary();
    if (!base) return base;
    ExprNode node = std::move(base).value();
    for (;;) {
      skip_blanks();
      if (m_pos >= m_text.size() || (m_text[m_pos] != '+' && m_text[m_pos] != '-')) return node;
      if (node.height >= kMaxDepth) {
        return fail("expression nested too deeply (more than " + std::to_string(kMaxDepth) + " levels)");
      }
      const bool minus = m_text[m_pos] == '-';
      ++m_pos;
      skip_blanks();
      // The duration runs to the next operator, separator or closing bracket.
      const std::size_t start = m_pos;
      while (m_pos < m_text.size() && m_text.find_first_of("+-,()", m_pos) != m_pos) ++m_pos;
      std::string_view text = m_text.substr(start, m_pos - start);
      while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
      if (text.empty()) {
        return fail(std::string("expected a duration after '") + (minus ? "-" : "+") +
                        "' (e.g. '3 years', '13mo', 'P1Y')",
                    start);
      }
      if (is_ident_start(text[0]) && text[0] != 'P') {
        return fail("'" + std::string(text) + "' is not a duration: '" + (minus ? "-" : "+") +
                        "' takes a duration such as '3 years'; to combine dates use min(...) or max(...)",
                    start);
      }
      auto d = calendar::parse_duration(text);
      if (!d) return fail(d.error().message, start);
      ExprNode shift;
      shift.kind = Kind::shift;
      shift.minus = minus;
      shift.duration = *d;
      shift.height = node.height + 1;
      shift.args.push_back(std::move(node));
      node = std::move(shift);
    }
  }

  Result<ExprNode> parse_primary() {
    skip_blanks();
    if (m_pos >= m_text.size()) {
      return fail(m_pos == 0 ? "empty expression (expected a date name such as 'collected')"
                             : "unexpected end of expression");
    }
    const char c = m_text[m_pos];
    if (c == '(') {
      ++m_pos;
      auto inner = parse_expr();
      if (!inner) return inner;
      skip_blanks();
      if (m_pos >= m_text.size() || m_text[m_pos] != ')') return fail("missing ')'");
      ++m_pos;
      return inner;
    }
    if (!is_ident_start(c)) {
      if (c >= '0' && c <= '9') {
        return fail("expected a date name, got a number (a duration comes after '+' or '-')");
      }
      return fail("expected a date name or a function, got '" + std::string(1, c) + "'");
    }
    const std::size_t start = m_pos;
    while (m_pos < m_text.size() && is_ident_char(m_text[m_pos])) ++m_pos;
    const std::string_view ident = m_text.substr(start, m_pos - start);
    skip_blanks();
    const bool call = m_pos < m_text.size() && m_text[m_pos] == '(';

    const auto fn = std::find_if(kFunctions.begin(), kFunctions.end(),
                                 [&](const FunctionName& f) { return f.name == ident; });
    if (call) {
      if (fn == kFunctions.end()) {
        return fail("unknown function '" + std::string(ident) +
                        "' (expected min, max, fiscal_year_end, end_of_month, end_of_year, end_of_day)",
                    start);
      }
      ++m_pos;
      ExprNode node;
      node.kind = fn->kind;
      for (;;) {
        auto arg = parse_expr();
        if (!arg) return arg;
        node.height = std::max(node.height, arg->height + 1);
        node.args.push_back(std::move(arg).value());
        skip_blanks();
        if (m_pos < m_text.size() && m_text[m_pos] == ',') {
          ++m_pos;
          continue;
        }
        if (m_pos < m_text.size() && m_text[m_pos] == ')') {
          ++m_pos;
          break;
        }
        return fail("expected ',' or ')' in " + std::string(ident) + "(...)");
      }
      if (node.height > kMaxDepth) {
        return fail("expression nested too deeply (more than " + std::to_string(kMaxDepth) + " levels)", start);
      }
      const bool variadic = node.kind == Kind::min || node.kind == Kind::max;
      if (!variadic && node.args.size() != 1) {
        return fail(std::string(ident) + "() takes exactly one argument, got " +
                        std::to_string(node.args.size()),
                    start);
      }
      return node;
    }
    if (fn != kFunctions.end()) {
      return fail("'" + std::string(ident) + "' is a function: write " + std::string(ident) + "(...)",
                  start);
    }
    for (char ch : ident) {
      if (ch >= 'A' && ch <= 'Z') {
        return fail("date name '" + std::string(ident) + "' must be lowercase ([a-z][a-z0-9_]*)", start);
      }
    }
    if (ident[0] == '_') {
      return fail("date name '" + std::string(ident) + "' must start with a letter", start);
    }
    ExprNode node;
    node.kind = Kind::date;
    node.name = std::string(ident);
    return node;
  }

  std::string_view m_text;
  std::size_t m_pos = 0;
  int m_nesting = 0;  // parse_expr calls under way
};

std::optional<Instant> eval(const ExprNode& n, const Dates& dates, calendar::MonthDay fye) {
  switch (n.kind) {
    case Kind::date: {
      const auto it = dates.find(n.name);
      if (it == dates.end()) return std::nullopt;
      return it->second;
    }
    case Kind::min:
    case Kind::max: {
      std::optional<Instant> best;
      for (const auto& a : n.args) {
        const auto v = eval(a, dates, fye);
        if (!v) continue;
        if (!best || (n.kind == Kind::min ? *v < *best : *v > *best)) best = v;
      }
      return best;
    }
    case Kind::fiscal_year_end:
    case Kind::end_of_month:
    case Kind::end_of_year:
    case Kind::end_of_day: {
      const auto v = eval(n.args[0], dates, fye);
      if (!v) return std::nullopt;
      if (n.kind == Kind::fiscal_year_end) return calendar::fiscal_year_end(*v, fye);
      if (n.kind == Kind::end_of_month) return calendar::end_of_month(*v);
      if (n.kind == Kind::end_of_year) return calendar::end_of_year(*v);
      return calendar::end_of_day(*v);
    }
    case Kind::shift: {
      const auto v = eval(n.args[0], dates, fye);
      if (!v) return std::nullopt;
      return n.minus ? calendar::subtract(*v, n.duration) : calendar::add(*v, n.duration);
    }
  }
  return std::nullopt;
}

void collect_names(const ExprNode& n, std::vector<std::string>& out) {
  if (n.kind == Kind::date) {
    if (std::find(out.begin(), out.end(), n.name) == out.end()) out.push_back(n.name);
    return;
  }
  for (const auto& a : n.args) collect_names(a, out);
}

std::string canonical_of(const ExprNode& n) {
  switch (n.kind) {
    case Kind::date:
      return n.name;
    case Kind::shift:
      return canonical_of(n.args[0]) + (n.minus ? " - " : " + ") + calendar::format_duration(n.duration);
    default: {
      std::string out = std::string(function_name(n.kind)) + "(";
      for (std::size_t i = 0; i < n.args.size(); ++i) {
        if (i > 0) out += ", ";
        out += canonical_of(n.args[i]);
      }
      return out + ")";
    }
  }
}

std::string join_words(const std::vector<std::string>& parts) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += (i + 1 == parts.size()) ? " and " : ", ";
    out += parts[i];
  }
  return out;
}

std::string describe_of(const ExprNode& n) {
  switch (n.kind) {
    case Kind::date:
      return n.name;
    case Kind::min:
    case Kind::max: {
      std::vector<std::string> parts;
      for (const auto& a : n.args) parts.push_back(describe_of(a));
      if (parts.size() == 1) return parts[0];
      return std::string(n.kind == Kind::min ? "the earlier of " : "the later of ") + join_words(parts);
    }
    case Kind::fiscal_year_end:
      return "the end of the financial year of " + describe_of(n.args[0]);
    case Kind::end_of_month:
      return "the end of the month of " + describe_of(n.args[0]);
    case Kind::end_of_year:
      return "the end of the year of " + describe_of(n.args[0]);
    case Kind::end_of_day:
      return "the end of the day of " + describe_of(n.args[0]);
    case Kind::shift:
      return calendar::format_duration(n.duration) + (n.minus ? " before " : " after ") +
             describe_of(n.args[0]);
  }
  return "";
}

}  // namespace

Result<Expr> Expr::parse(std::string_view text) {
  auto node = Parser(text).parse_all();
  if (!node) return std::move(node).error();
  return Expr(std::make_shared<const ExprNode>(std::move(node).value()));
}

std::optional<Instant> Expr::evaluate(const Dates& dates, calendar::MonthDay fye) const {
  if (!m_root) return std::nullopt;
  return eval(*m_root, dates, fye);
}

std::vector<std::string> Expr::date_names() const {
  std::vector<std::string> out;
  if (m_root) collect_names(*m_root, out);
  return out;
}

std::string Expr::canonical() const { return m_root ? canonical_of(*m_root) : ""; }

std::string Expr::describe() const { return m_root ? describe_of(*m_root) : ""; }

}  // namespace retentiond::policy
