#include "daemon/report.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <optional>
#include <utility>
#include <vector>

namespace retentiond::report {

using nlohmann::json;

const json& member(const json& j, const char* name) {
  static const json null_value;
  if (!j.is_object()) return null_value;
  const auto it = j.find(name);
  return it == j.end() ? null_value : *it;
}

std::string text(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  return v.dump();
}

namespace {

std::uint64_t count(const json& v) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer() && v.get<std::int64_t>() > 0) {
    return static_cast<std::uint64_t>(v.get<std::int64_t>());
  }
  return 0;
}

// 1234567 -> "1,234,567": counts are read, not parsed, in the report.
std::string grouped(std::uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// ---------------------------------------------------------------------------
// Months, as "YYYY-MM" and as a month number (year * 12 + month - 1), so that
// a chart's axis can run through months that hold nothing.

std::optional<int> month_number(const std::string& s) {
  if (s.size() < 7 || s[4] != '-') return std::nullopt;
  for (int i : {0, 1, 2, 3, 5, 6}) {
    if (s[i] < '0' || s[i] > '9') return std::nullopt;
  }
  const int year = std::stoi(s.substr(0, 4));
  const int month = std::stoi(s.substr(5, 2));
  if (month < 1 || month > 12) return std::nullopt;
  return year * 12 + month - 1;
}

std::string month_name(int number) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02d", number / 12, number % 12 + 1);
  return buf;
}

// The last month a plan up to `until` (exclusive) can count in: the month
// before it when `until` is the first instant of a month.
std::optional<int> last_month_before(const std::string& until) {
  auto m = month_number(until);
  if (m && until.size() >= 20 && until.compare(7, 13, "-01T00:00:00Z") == 0) --*m;
  return m;
}

// ---------------------------------------------------------------------------
// The register, from policy.table's markdown: a header line, a separator
// line, then rows of four cells. The daemon writes a `|` inside a cell as
// `\|`, so an unescaped `|` always separates cells, and a row ends at a cell
// boundary followed by a line end. A purpose that spans lines stays one cell.

struct RegisterRow {
  std::string category, purpose, legal_basis, retention;
};

std::optional<std::vector<RegisterRow>> parse_register(const std::string& markdown) {
  const std::string separator = "|---|---|---|---|\n";
  const auto at = markdown.find(separator);
  if (at == std::string::npos) return std::nullopt;
  std::vector<std::string> tokens;
  std::string cur;
  for (std::size_t i = at + separator.size(); i < markdown.size(); ++i) {
    const char ch = markdown[i];
    if (ch == '\\' && i + 1 < markdown.size() && markdown[i + 1] == '|') {
      cur += '|';
      ++i;
    } else if (ch == '|') {
      tokens.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += ch;
    }
  }
  tokens.push_back(std::move(cur));
  const auto row_end = [](const std::string& t) {
    return t.find_first_not_of(" \t\r\n") == std::string::npos;
  };
  const auto trimmed = [](std::string t) {
    if (!t.empty() && t.front() == ' ') t.erase(0, 1);
    if (!t.empty() && t.back() == ' ') t.pop_back();
    return t;
  };
  std::vector<RegisterRow> rows;
  std::vector<std::string> cells;
  for (std::size_t i = 1; i < tokens.size(); ++i) {  // tokens[0] precedes the first `|`
    if (!row_end(tokens[i])) {
      cells.push_back(trimmed(tokens[i]));
      continue;
    }
    if (cells.empty()) continue;
    if (cells.size() != 4) return std::nullopt;
    rows.push_back({cells[0], cells[1], cells[2], cells[3]});
    cells.clear();
  }
  if (!cells.empty()) return std::nullopt;
  return rows;
}

// ---------------------------------------------------------------------------
// Records per category and state, from the `retentiond_records` samples of
// the `metrics` method's Prometheus text, when the daemon has that method:
// retentiond_records{category="lead",state="active"} 12

// The value of label `name` in the label set `labels` (between the braces),
// unescaped, or nullopt.
std::optional<std::string> label_value(const std::string& labels, const std::string& name) {
  std::size_t i = 0;
  while (i < labels.size()) {
    const auto eq = labels.find("=\"", i);
    if (eq == std::string::npos) return std::nullopt;
    const std::string key = labels.substr(i, eq - i);
    std::string value;
    std::size_t j = eq + 2;
    for (; j < labels.size() && labels[j] != '"'; ++j) {
      if (labels[j] == '\\' && j + 1 < labels.size()) {
        ++j;
        value += labels[j] == 'n' ? '\n' : labels[j];
      } else {
        value += labels[j];
      }
    }
    if (key == name) return value;
    i = j + 1;
    if (i < labels.size() && labels[i] == ',') ++i;
  }
  return std::nullopt;
}

// category -> state -> records; empty when the text has no such samples.
std::map<std::string, std::map<std::string, std::uint64_t>> records_by_category(
    const std::string& metrics) {
  std::map<std::string, std::map<std::string, std::uint64_t>> out;
  const std::string prefix = "retentiond_records{";
  std::size_t start = 0;
  while (start < metrics.size()) {
    const auto end = std::min(metrics.find('\n', start), metrics.size());
    const std::string line = metrics.substr(start, end - start);
    start = end + 1;
    if (line.rfind(prefix, 0) != 0) continue;
    const auto close = line.rfind("} ");
    if (close == std::string::npos || close < prefix.size()) continue;
    const std::string labels = line.substr(prefix.size(), close - prefix.size());
    const auto category = label_value(labels, "category");
    const auto state = label_value(labels, "state");
    const std::string value = line.substr(close + 2);
    if (!category || !state || value.empty() ||
        value.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    out[*category][*state] += std::stoull(value);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Charts

struct Series {
  const char* action;  // the class of its bars, and the key of its counts
  const char* label;   // in the legend, the table and each bar's title
};

constexpr Series kUpcoming[] = {
    {"archive", "to archive"}, {"anonymise", "to anonymise"}, {"purge", "to purge"}};
constexpr Series kDone[] = {
    {"archive", "archived"}, {"anonymise", "anonymised"}, {"purge", "purged"}, {"erase", "erased"}};

using MonthCounts = std::map<int, std::map<std::string, std::uint64_t>>;

// The smallest of 1, 2, 5, 10, 20, 50... that splits `max` into at most
// five steps: the y axis's tick interval.
std::uint64_t tick_step(std::uint64_t max) {
  std::uint64_t magnitude = 1;
  for (;;) {
    for (std::uint64_t f : {1u, 2u, 5u}) {
      if (f * magnitude * 5 >= max) return f * magnitude;
    }
    magnitude *= 10;
  }
}

template <std::size_t N>
std::string svg_chart(const std::string& id, const std::string& title, const std::string& desc,
                      int first, int last, const MonthCounts& data, const Series (&series)[N]) {
  constexpr double kWidth = 900, kHeight = 340;
  constexpr double kLeft = 70, kRight = 16, kTop = 44, kBottom = 62;
  constexpr double kPlotW = kWidth - kLeft - kRight, kPlotH = kHeight - kTop - kBottom;
  const int months = last - first + 1;
  const double band = kPlotW / months;
  // Bars 70% of their month's band, but no wider than 56: a chart of one
  // month is not one block.
  const double bar = std::clamp(band * 0.7, 0.5, 56.0);

  std::uint64_t max_total = 0;
  for (const auto& [month, counts] : data) {
    std::uint64_t total = 0;
    for (const auto& s : series) {
      const auto it = counts.find(s.action);
      if (it != counts.end()) total += it->second;
    }
    max_total = std::max(max_total, total);
  }
  const std::uint64_t step = tick_step(max_total);
  const std::uint64_t y_max = std::max<std::uint64_t>((max_total + step - 1) / step * step, step);
  const auto y_of = [&](std::uint64_t v) {
    return kTop + kPlotH - kPlotH * static_cast<double>(v) / static_cast<double>(y_max);
  };

  std::string o;
  o += "<svg class=\"chart\" id=\"" + id + "\" role=\"img\" viewBox=\"0 0 " + num(kWidth) + " " +
       num(kHeight) + "\" aria-labelledby=\"" + id + "-title " + id +
       "-desc\" xmlns=\"http://www.w3.org/2000/svg\">\n";
  o += "<title id=\"" + id + "-title\">" + escape(title) + "</title>\n";
  o += "<desc id=\"" + id + "-desc\">" + escape(desc) + "</desc>\n";

  // Legend, along the top.
  double lx = kLeft;
  for (const auto& s : series) {
    o += "<rect class=\"swatch " + std::string(s.action) + "\" x=\"" + num(lx) +
         "\" y=\"12\" width=\"14\" height=\"14\"/>";
    o += "<text class=\"legend\" x=\"" + num(lx + 20) + "\" y=\"24\">" + s.label + "</text>\n";
    lx += 150;
  }

  // Grid and y axis.
  for (std::uint64_t v = 0; v <= y_max; v += step) {
    const double y = y_of(v);
    o += "<line class=\"grid\" x1=\"" + num(kLeft) + "\" x2=\"" + num(kLeft + kPlotW) + "\" y1=\"" +
         num(y) + "\" y2=\"" + num(y) + "\"/>";
    o += "<text class=\"tick\" x=\"" + num(kLeft - 6) + "\" y=\"" + num(y + 4) +
         "\" text-anchor=\"end\">" + grouped(v) + "</text>\n";
  }
  o += "<line class=\"axis\" x1=\"" + num(kLeft) + "\" x2=\"" + num(kLeft) + "\" y1=\"" +
       num(kTop) + "\" y2=\"" + num(kTop + kPlotH) + "\"/>\n";
  o += "<line class=\"axis\" x1=\"" + num(kLeft) + "\" x2=\"" + num(kLeft + kPlotW) + "\" y1=\"" +
       num(kTop + kPlotH) + "\" y2=\"" + num(kTop + kPlotH) + "\"/>\n";
  o += "<text class=\"axis-label\" transform=\"translate(16 " + num(kTop + kPlotH / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">Records</text>\n";
  o += "<text class=\"axis-label\" x=\"" + num(kLeft + kPlotW / 2) + "\" y=\"" + num(kHeight - 8) +
       "\" text-anchor=\"middle\">Month (UTC)</text>\n";

  // Month labels: at most one per 56 units (a label is about 45 wide), so
  // that they never overlap.
  const int every = std::max(1, static_cast<int>(std::ceil(56.0 * months / kPlotW)));
  for (int m = first; m <= last; m += every) {
    o += "<text class=\"tick\" x=\"" + num(kLeft + (m - first + 0.5) * band) + "\" y=\"" +
         num(kTop + kPlotH + 18) + "\" text-anchor=\"middle\">" + month_name(m) + "</text>\n";
  }

  // The bars: one segment per month and action with a count, stacked in
  // the order of `series`. A segment too small to see is drawn one unit
  // high, so that every count shows.
  for (const auto& [month, counts] : data) {
    if (month < first || month > last) continue;
    const double x = kLeft + (month - first) * band + (band - bar) / 2;
    std::uint64_t below = 0;
    for (const auto& s : series) {
      const auto it = counts.find(s.action);
      if (it == counts.end() || it->second == 0) continue;
      const std::uint64_t c = it->second;
      const double y_top = y_of(below + c);
      const double height = std::max(y_of(below) - y_top, 1.0);
      const std::string name = month_name(month);
      o += "<rect class=\"bar " + std::string(s.action) + "\" data-month=\"" + name +
           "\" data-action=\"" + s.action + "\" data-count=\"" + std::to_string(c) + "\" x=\"" +
           num(x) + "\" y=\"" + num(y_of(below) - height) + "\" width=\"" + num(bar) +
           "\" height=\"" + num(height) + "\"><title>" + name + ": " + grouped(c) + " " + s.label +
           "</title></rect>\n";
      below += c;
    }
  }
  o += "</svg>\n";
  return o;
}

// The numbers of a chart, as a table: one row per month that has any.
template <std::size_t N>
std::string numbers_table(const std::string& caption, const MonthCounts& data,
                          const Series (&series)[N]) {
  std::string o = "<table class=\"numbers compact\">\n<caption>" + escape(caption) +
                  "</caption>\n<thead><tr><th scope=\"col\">Month</th>";
  for (const auto& s : series) {
    std::string label = s.label;
    label[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(label[0])));
    o += "<th scope=\"col\" class=\"num\">" + label + "</th>";
  }
  o += "<th scope=\"col\" class=\"num\">Total</th></tr></thead>\n<tbody>\n";
  std::map<std::string, std::uint64_t> totals;
  std::uint64_t grand = 0;
  for (const auto& [month, counts] : data) {
    std::uint64_t total = 0;
    std::string cells;
    for (const auto& s : series) {
      const auto it = counts.find(s.action);
      const std::uint64_t c = it == counts.end() ? 0 : it->second;
      cells += "<td class=\"num\">" + grouped(c) + "</td>";
      total += c;
      totals[s.action] += c;
    }
    if (total == 0) continue;
    grand += total;
    o += "<tr><th scope=\"row\">" + month_name(month) + "</th>" + cells + "<td class=\"num\">" +
         grouped(total) + "</td></tr>\n";
  }
  o += "</tbody>\n<tfoot><tr><th scope=\"row\">Total</th>";
  for (const auto& s : series) o += "<td class=\"num\">" + grouped(totals[s.action]) + "</td>";
  o += "<td class=\"num\">" + grouped(grand) + "</td></tr></tfoot>\n</table>\n";
  return o;
}

// ---------------------------------------------------------------------------
// The page

constexpr const char* kStyle = R"css(
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1a1a1a; background: #fff; max-width: 1100px; margin: 0 auto; padding: 1.5em;
       line-height: 1.4; }
h1 { margin-bottom: .2em; }
h2 { border-bottom: 2px solid #1a1a1a; padding-bottom: .15em; margin-top: 1.8em; }
.meta { color: #444; margin-top: 0; }
code, .hash { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: .92em; }
.hash { word-break: break-all; }
table { border-collapse: collapse; width: 100%; margin: .6em 0 1.2em; }
table.compact { width: auto; min-width: 50%; }
caption { text-align: left; font-weight: 600; padding: .3em 0; }
th, td { border-bottom: 1px solid #c8c8c8; padding: .3em .5em; text-align: left;
         vertical-align: top; }
thead th { border-bottom: 2px solid #555; }
tfoot th, tfoot td { border-top: 2px solid #555; font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .25em 1.2em; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
figure { margin: 1em 0; }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart text { font-size: 12px; fill: #1a1a1a; }
svg.chart .legend { font-size: 13px; }
svg.chart .axis-label { font-size: 13px; font-weight: 600; }
svg.chart .grid { stroke: #dcdcdc; stroke-width: 1; }
svg.chart .axis { stroke: #333; stroke-width: 1.2; }
svg.chart .bar { stroke: #fff; stroke-width: .6; }
.archive { fill: #0072b2; }
.anonymise { fill: #e69f00; }
.purge { fill: #d55e00; }
.erase { fill: #7a3e9d; }
.empty { padding: 1em; border: 1px dashed #888; background: #f6f6f6; }
.ok { color: #1b6e35; font-weight: 600; }
.broken, .warning { border-left: 5px solid #c0392b; background: #fdf0ee; padding: .6em 1em; }
.broken { font-weight: 600; }
.note { color: #444; font-size: .95em; }
* { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  section.page { break-before: page; }
  h2, h3, caption { break-after: avoid; }
  figure, svg, tr, dl.facts, .empty, .warning, .broken { break-inside: avoid; }
  thead { display: table-header-group; }
  tfoot { display: table-row-group; }
}
)css";

std::string facts(const std::vector<std::pair<std::string, std::string>>& rows) {
  std::string o = "<dl class=\"facts\">\n";
  for (const auto& [name, html] : rows) o += "<dt>" + name + "</dt><dd>" + html + "</dd>\n";
  return o + "</dl>\n";
}

std::string hash_html(const json& v) {
  return "<span class=\"hash\">" + escape(text(v)) + "</span>";
}

std::string summary_section(const json& in) {
  const json& status = member(in, "status");
  const json& policy = member(status, "policy");
  const json& records = member(status, "records");
  const json& verify = member(in, "verify");
  const json& plan = member(in, "plan");
  std::string paused = "no";
  if (!member(status, "paused").is_null()) {
    const json& pause = member(status, "pause");
    paused = "<span class=\"broken\">" + escape(text(member(status, "paused"))) + ": " +
             escape(text(member(pause, "newly_due"))) + " newly due, guard " +
             escape(text(member(pause, "guard"))) + "</span>";
  }
  std::string chain = member(verify, "ok") == true
                          ? "<span class=\"ok\">intact</span>"
                          : "<span class=\"broken\">BROKEN</span> (see below)";
  std::string o = "<section id=\"summary\">\n<h2>Summary</h2>\n";
  o += facts({
      {"Generated at", escape(text(member(status, "now"))) + " (the daemon's clock)"},
      {"Policy hash", hash_html(member(policy, "hash"))},
      {"Policy loaded at", escape(text(member(policy, "loaded_at")))},
      {"Categories", escape(text(member(policy, "categories")))},
      {"Records", escape(text(member(records, "active"))) + " active, " +
                      escape(text(member(records, "archived"))) + " archived, " +
                      escape(text(member(records, "anonymised"))) + " anonymised"},
      {"Holds in force", escape(text(member(status, "holds")))},
      {"Overdue (backlog)", escape(text(member(status, "backlog")))},
      {"Next due", escape(text(member(status, "next_due")))},
      {"Paused", paused},
      {"Forecast window",
       escape(text(member(plan, "from"))) + " to " + escape(text(member(plan, "until")))},
      {"Audit chain", chain},
      {"Daemon version", escape(text(member(status, "version")))},
  });
  return o + "</section>\n";
}

std::string register_section(const json& in) {
  std::string o =
      "<section id=\"register\" class=\"page\">\n<h2>Retention register</h2>\n"
      "<p class=\"note\">Each category of personal data the policy names, why it is kept, on "
      "what legal basis, and for how long (from the daemon's <code>policy.table</code>).</p>\n";
  const json& md = member(in, "policy_table");
  const std::string markdown = md.is_string() ? md.get<std::string>() : std::string();
  const auto rows = parse_register(markdown);
  if (!rows) {
    // A form this client does not know: shown as the daemon wrote it.
    return o + "<pre>" + escape(markdown) + "</pre>\n</section>\n";
  }
  if (rows->empty()) {
    return o + "<p class=\"empty\">The policy has no category.</p>\n</section>\n";
  }
  o += "<table id=\"register-table\">\n<thead><tr><th scope=\"col\">Category</th>"
       "<th scope=\"col\">Purpose</th><th scope=\"col\">Legal basis</th>"
       "<th scope=\"col\">Retention</th></tr></thead>\n<tbody>\n";
  for (const auto& r : *rows) {
    o += "<tr><th scope=\"row\"><code>" + escape(r.category) + "</code></th><td>" +
         escape(r.purpose) + "</td><td>" + escape(r.legal_basis) + "</td><td>" +
         escape(r.retention) + "</td></tr>\n";
  }
  return o + "</tbody>\n</table>\n</section>\n";
}

std::string records_section(const json& in) {
  const json& records = member(member(in, "status"), "records");
  const json& plan = member(in, "plan");
  const std::uint64_t active = count(member(records, "active"));
  const std::uint64_t archived = count(member(records, "archived"));
  const std::uint64_t anonymised = count(member(records, "anonymised"));
  std::string o = "<section id=\"records\" class=\"page\">\n<h2>Records</h2>\n";
  o += "<table id=\"records-by-state\" class=\"compact\">\n<caption>Records by state</caption>\n"
       "<thead><tr><th scope=\"col\">State</th><th scope=\"col\" class=\"num\">Records</th>"
       "</tr></thead>\n<tbody>\n";
  o += "<tr><th scope=\"row\">Active</th><td class=\"num\">" + grouped(active) + "</td></tr>\n";
  o += "<tr><th scope=\"row\">Archived</th><td class=\"num\">" + grouped(archived) + "</td></tr>\n";
  o += "<tr><th scope=\"row\">Anonymised</th><td class=\"num\">" + grouped(anonymised) +
       "</td></tr>\n";
  o += "</tbody>\n<tfoot><tr><th scope=\"row\">Total</th><td class=\"num\">" +
       grouped(active + archived + anonymised) + "</td></tr></tfoot>\n</table>\n";

  // Per category and state, when the daemon has the metrics method.
  const json& metrics = member(in, "metrics");
  const auto stored = records_by_category(metrics.is_string() ? metrics.get<std::string>() : "");
  if (!stored.empty()) {
    o += "<table id=\"records-by-category\" class=\"compact\">\n<caption>Records by category "
         "and state</caption>\n<thead><tr><th scope=\"col\">Category</th>"
         "<th scope=\"col\" class=\"num\">Active</th>"
         "<th scope=\"col\" class=\"num\">Archived</th>"
         "<th scope=\"col\" class=\"num\">Anonymised</th>"
         "<th scope=\"col\" class=\"num\">Total</th></tr></thead>\n<tbody>\n";
    std::size_t empty = 0;
    for (const auto& [category, states] : stored) {
      std::uint64_t total = 0;
      std::string cells;
      for (const char* state : {"active", "archived", "anonymised"}) {
        const auto it = states.find(state);
        const std::uint64_t c = it == states.end() ? 0 : it->second;
        total += c;
        cells += "<td class=\"num\">" + grouped(c) + "</td>";
      }
      if (total == 0) {
        ++empty;
        continue;
      }
      o += "<tr><th scope=\"row\"><code>" + escape(category) + "</code></th>" + cells +
           "<td class=\"num\">" + grouped(total) + "</td></tr>\n";
    }
    o += "</tbody>\n</table>\n";
    if (empty > 0) {
      o += "<p class=\"note\">" + grouped(empty) +
           (empty == 1 ? " category holds no record and is not listed.</p>\n"
                       : " categories hold no record and are not listed.</p>\n");
    }
  }

  // Per category, what falls due in the window (plan).
  std::map<std::string, std::map<std::string, std::uint64_t>> by_category;
  for (const auto& a : member(plan, "actions")) {
    by_category[text(member(a, "category"))][text(member(a, "action"))] +=
        count(member(a, "count"));
  }
  const std::string until = escape(text(member(plan, "until")));
  o += std::string("<p class=\"note\">") +
       (stored.empty() ? "This daemon does not report its records per category and state. " : "") +
       "Per category, the next table gives the phases that fall due before " + until +
       " (from <code>plan</code>). Overdue phases are counted in the first month. Categories "
       "not listed have nothing falling due in that window.</p>\n";
  if (by_category.empty()) {
    o += "<p class=\"empty\">Nothing falls due before " + until + ".</p>\n";
  } else {
    o += "<table id=\"due-by-category\" class=\"compact\">\n<caption>Phases due before " + until +
         ", by category</caption>\n<thead><tr><th scope=\"col\">Category</th>"
         "<th scope=\"col\" class=\"num\">To archive</th>"
         "<th scope=\"col\" class=\"num\">To anonymise</th>"
         "<th scope=\"col\" class=\"num\">To purge</th>"
         "<th scope=\"col\" class=\"num\">Total</th></tr></thead>\n<tbody>\n";
    for (const auto& [category, counts] : by_category) {
      std::uint64_t total = 0;
      o += "<tr><th scope=\"row\"><code>" + escape(category) + "</code></th>";
      for (const char* action : {"archive", "anonymise", "purge"}) {
        const auto it = counts.find(action);
        const std::uint64_t c = it == counts.end() ? 0 : it->second;
        total += c;
        o += "<td class=\"num\">" + grouped(c) + "</td>";
      }
      o += "<td class=\"num\">" + grouped(total) + "</td></tr>\n";
    }
    o += "</tbody>\n</table>\n";
  }
  o += "<p>Besides these, " + escape(text(member(plan, "waiting"))) +
       " records wait for a date before their next phase can fall due, and " +
       escape(text(member(plan, "held"))) +
       " held records have a phase due in the window (a hold stops it).</p>\n";
  return o + "</section>\n";
}

std::string upcoming_section(const json& in) {
  const json& plan = member(in, "plan");
  const std::string from = text(member(plan, "from"));
  const std::string until = text(member(plan, "until"));
  std::string o = "<section id=\"upcoming\" class=\"page\">\n<h2>Upcoming disposals</h2>\n";
  o += "<p class=\"note\">Phases that fall due from " + escape(from) + " to " + escape(until) +
       ", by the month they will run in and by action (from <code>plan</code>). Overdue phases "
       "are counted in the first month; held records are not counted.</p>\n";
  MonthCounts data;
  std::optional<int> first = month_number(from);
  std::optional<int> last = last_month_before(until);
  for (const auto& a : member(plan, "actions")) {
    const auto m = month_number(text(member(a, "month")));
    const std::uint64_t c = count(member(a, "count"));
    if (!m || c == 0) continue;
    data[*m][text(member(a, "action"))] += c;
    first = first ? std::min(*first, *m) : *m;
    last = last ? std::max(*last, *m) : *m;
  }
  if (data.empty()) {
    return o + "<p class=\"empty\" id=\"upcoming-empty\">Nothing falls due before " +
           escape(until) + ": no record will be archived, anonymised or purged in this " +
           "window.</p>\n</section>\n";
  }
  if (*last < *first) last = first;
  const std::string title =
      "Upcoming disposals per month, " + month_name(*first) + " to " + month_name(*last);
  o += "<figure>\n" +
       svg_chart("chart-upcoming", title,
                 "Stacked bars: per month, the records to archive, to anonymise and to purge. "
                 "The same numbers are in the table below.",
                 *first, *last, data, kUpcoming) +
       "</figure>\n";
  o += numbers_table("Upcoming disposals per month", data, kUpcoming);
  return o + "</section>\n";
}

std::string done_section(const json& in) {
  const json& audit = member(in, "audit");
  std::string o = "<section id=\"done\" class=\"page\">\n<h2>Actions done</h2>\n";
  o += "<p class=\"note\">Records archived, anonymised and purged by the retention phases, and "
       "erased on request, per month, counted from the audit log's " +
       grouped(count(member(audit, "entries"))) + " entries (up to entry " +
       escape(text(member(audit, "last_seq"))) + ").</p>\n";
  MonthCounts data;
  std::optional<int> first, last;
  for (const auto& m : member(audit, "months")) {
    const auto n = month_number(text(member(m, "month")));
    if (!n) continue;
    for (const auto& s : kDone) {
      const std::uint64_t c = count(member(m, s.action));
      if (c == 0) continue;
      data[*n][s.action] = c;
      first = first ? std::min(*first, *n) : *n;
      last = last ? std::max(*last, *n) : *n;
    }
  }
  if (data.empty()) {
    o += "<p class=\"empty\" id=\"done-empty\">No record has been archived, anonymised, purged "
         "or erased yet.</p>\n";
  } else {
    // The axis runs to the month of the report, so that quiet months since
    // the last action show as such.
    if (const auto now = month_number(text(member(member(in, "status"), "now")))) {
      last = std::max(*last, *now);
    }
    const std::string title =
        "Actions done per month, " + month_name(*first) + " to " + month_name(*last);
    o += "<figure>\n" +
         svg_chart("chart-done", title,
                   "Stacked bars: per month, the records archived, anonymised, purged and "
                   "erased, from the audit log. The same numbers are in the table below.",
                   *first, *last, data, kDone) +
         "</figure>\n";
    o += numbers_table("Actions done per month", data, kDone);
  }
  const json& other = member(audit, "other");
  if (other.is_object() && !other.empty()) {
    o += "<table id=\"other-entries\" class=\"compact\">\n<caption>Other audit entries"
         "</caption>\n<thead><tr><th scope=\"col\">Action</th>"
         "<th scope=\"col\" class=\"num\">Entries</th></tr></thead>\n<tbody>\n";
    for (const auto& [action, n] : other.items()) {
      o += "<tr><th scope=\"row\"><code>" + escape(action) + "</code></th><td class=\"num\">" +
           grouped(count(n)) + "</td></tr>\n";
    }
    o += "</tbody>\n</table>\n";
  }
  return o + "</section>\n";
}

std::string holds_section(const json& in) {
  std::string o = "<section id=\"holds\" class=\"page\">\n<h2>Holds in force</h2>\n";
  const json& holds = member(in, "holds");
  if (holds.is_null()) {
    return o + "<p class=\"warning\" id=\"holds-unavailable\">The holds could not be listed: " +
           escape(text(member(in, "holds_error"))) +
           ". Listing them (<code>hold.list</code>) needs the admin role; run the report as an "
           "administrator to include them. The summary gives their number.</p>\n</section>\n";
  }
  const json& list = member(holds, "holds");
  if (!list.is_array() || list.empty()) {
    return o + "<p class=\"empty\" id=\"holds-none\">No hold in force.</p>\n</section>\n";
  }
  o += "<p class=\"note\">A hold stops the disposal and the erasure of the records it covers "
       "until it is released. A subject hold names the subject.</p>\n";
  o += "<table id=\"holds-table\">\n<thead><tr><th scope=\"col\" class=\"num\">Id</th>"
       "<th scope=\"col\">Scope</th><th scope=\"col\">Target</th><th scope=\"col\">Placed at</th>"
       "<th scope=\"col\">Placed by</th><th scope=\"col\">Reason</th></tr></thead>\n<tbody>\n";
  for (const auto& h : list) {
    o += "<tr><td class=\"num\">" + escape(text(member(h, "id"))) + "</td><td>" +
         escape(text(member(h, "scope"))) + "</td><td>" + escape(text(member(h, "target"))) +
         "</td><td>" + escape(text(member(h, "placed_at"))) + "</td><td>" +
         escape(text(member(h, "placed_by"))) + "</td><td>" + escape(text(member(h, "reason"))) +
         "</td></tr>\n";
  }
  return o + "</tbody>\n</table>\n</section>\n";
}

std::string audit_section(const json& in) {
  const json& verify = member(in, "verify");
  std::string o = "<section id=\"audit\">\n<h2>Audit chain</h2>\n";
  if (member(verify, "ok") == true) {
    o += "<p class=\"ok\" id=\"chain-status\">The audit log's hash chain is intact.</p>\n";
  } else {
    o += "<p class=\"broken\" id=\"chain-status\">The audit log's hash chain is BROKEN: the "
         "first bad entry is " +
         escape(text(member(verify, "first_bad"))) + ".</p>\n";
  }
  o += facts({{"Entries", escape(text(member(verify, "entries")))},
              {"Head (hash of the last entry)", hash_html(member(verify, "head"))},
              {"First bad entry", escape(text(member(verify, "first_bad")))},
              {"Entries checked by this call", escape(text(member(verify, "checked")))}});
  o += "<p class=\"note\">The daemon checks what was appended since its last check; "
       "<code>retentionctl verify --full</code> recomputes the chain from the first entry. "
       "Keep the head: a later report whose chain does not pass through it means the log was "
       "rewritten.</p>\n";
  return o + "</section>\n";
}

}  // namespace

std::string escape(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (const char ch : s) {
    switch (ch) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      case '\'':
        o += "&#39;";
        break;
      default:
        o += ch;
    }
  }
  return o;
}

void AuditTally::add(const json& entry) {
  ++m_entries;
  if (const json& seq = member(entry, "seq"); !seq.is_null()) m_last_seq = seq;
  const json& at = member(entry, "at");
  const json& action = member(entry, "action");
  if (!at.is_string() || !action.is_string() || !month_number(at.get<std::string>())) {
    ++m_other["unknown"];
    return;
  }
  const std::string name = action.get<std::string>();
  Counts& c = m_months[at.get<std::string>().substr(0, 7)];
  if (name == "archive") {
    ++c.archive;
  } else if (name == "anonymise") {
    ++c.anonymise;
  } else if (name == "purge") {
    ++c.purge;
  } else if (name == "erase") {
    ++c.erase;
  } else {
    ++m_other[name];
  }
}

json AuditTally::to_json() const {
  json months = json::array();
  for (const auto& [month, c] : m_months) {
    if (c.archive + c.anonymise + c.purge + c.erase == 0) continue;
    months.push_back({{"month", month},
                      {"archive", c.archive},
                      {"anonymise", c.anonymise},
                      {"purge", c.purge},
                      {"erase", c.erase}});
  }
  json other = json::object();
  for (const auto& [action, n] : m_other) other[action] = n;
  return {{"entries", m_entries}, {"last_seq", m_last_seq}, {"months", months}, {"other", other}};
}

std::string render_html(const json& in) {
  const json& status = member(in, "status");
  std::string o;
  o += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  // Nothing may load: no script, no font, no image, no request. A page that
  // tried would show a console error, which the browser test looks for.
  o += "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
       "style-src 'unsafe-inline'\">\n";
  o += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  o += "<meta name=\"generator\" content=\"retentionctl report\">\n";
  o += "<title>Retention report, " + escape(text(member(status, "now"))) + "</title>\n";
  o += "<style>" + std::string(kStyle) + "</style>\n</head>\n<body>\n";
  o += "<header>\n<h1>Retention report</h1>\n<p class=\"meta\">Generated at " +
       escape(text(member(status, "now"))) + " (the daemon's clock) from the policy " +
       hash_html(member(member(status, "policy"), "hash")) + "</p>\n</header>\n<main>\n";
  o += summary_section(in);
  o += register_section(in);
  o += records_section(in);
  o += upcoming_section(in);
  o += done_section(in);
  o += holds_section(in);
  o += audit_section(in);
  o += "</main>\n</body>\n</html>\n";
  return o;
}

}  // namespace retentiond::report
