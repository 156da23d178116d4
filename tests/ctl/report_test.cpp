// The HTML of `retentionctl report`, rendered from hand-written results of
// the daemon's methods: no daemon, no browser. Every expected count below is
// worked out by hand from the input written next to it.

#include "daemon/report.hpp"

#include <regex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

namespace retentiond::report {
namespace {

using nlohmann::json;

// (action, month, count) of each bar segment of the chart `id`, as written.
using Bar = std::tuple<std::string, std::string, std::string>;

std::string chart(const std::string& html, const std::string& id) {
  const auto start = html.find("<svg class=\"chart\" id=\"" + id + "\"");
  if (start == std::string::npos) return {};
  return html.substr(start, html.find("</svg>", start) - start);
}

std::multiset<Bar> bars(const std::string& svg) {
  static const std::regex rect(
      R"re(<rect class="bar ([a-z]+)" data-month="([0-9-]+)" data-action="([a-z]+)" data-count="([0-9]+)")re");
  std::multiset<Bar> out;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), rect); it != std::sregex_iterator();
       ++it) {
    EXPECT_EQ((*it)[1], (*it)[3]) << "the class names the action";
    out.insert({(*it)[1], (*it)[2], (*it)[4]});
  }
  return out;
}

std::size_t occurrences(const std::string& s, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = s.find(needle); at != std::string::npos; at = s.find(needle, at + 1)) ++n;
  return n;
}

const char* kTable =
    "| Category | Purpose | Legal basis | Retention |\n|---|---|---|---|\n"
    "| lead | Prospecting | legitimate interest | 3 years after the later of collected and "
    "last_contact, then purged |\n"
    "| invoice | Invoicing | legal obligation | at the end of the financial year of issued, then "
    "archived; 10 years after the end of the financial year of issued, then purged |\n";

// A daemon at 2030-01-15 with three records, a year's plan, an intact chain.
json base_input() {
  return {
      {"status",
       {{"now", "2030-01-15T10:00:00Z"},
        {"version", "0.1.0"},
        {"policy", {{"hash", "ab12"}, {"categories", 2}, {"loaded_at", "2030-01-15T09:00:00Z"}}},
        {"records", {{"active", 3}, {"archived", 1}, {"anonymised", 0}}},
        {"holds", 0},
        {"backlog", 0},
        {"next_due", "2030-03-01T00:00:00Z"},
        {"paused", nullptr},
        {"pause", nullptr}}},
      {"policy_table", kTable},
      {"plan",
       {{"from", "2030-01-15T10:00:00Z"},
        {"until", "2031-01-15T10:00:00Z"},
        {"actions", json::array()},
        {"totals", {{"archive", 0}, {"anonymise", 0}, {"purge", 0}}},
        {"waiting", 0},
        {"held", 0}}},
      {"verify",
       {{"ok", true}, {"entries", 0}, {"checked", 0}, {"first_bad", nullptr}, {"head", "00ff"}}},
      {"audit", AuditTally().to_json()},
      {"holds", {{"holds", json::array()}}},
  };
}

TEST(Report, ThreeMonthsOfPlanGiveOneBarPerMonthAndActionWithItsCount) {
  json in = base_input();
  // 2030-01: 5 to archive and 2 to purge; 2030-03: 7 + 3 to purge (two
  // categories, one bar); 2030-04: 1 to anonymise. A zero count draws nothing.
  in["plan"]["actions"] = json::parse(R"([
    {"month":"2030-01","category":"invoice","action":"archive","count":5},
    {"month":"2030-01","category":"lead","action":"purge","count":2},
    {"month":"2030-03","category":"lead","action":"purge","count":7},
    {"month":"2030-03","category":"invoice","action":"purge","count":3},
    {"month":"2030-04","category":"lead","action":"anonymise","count":1},
    {"month":"2030-06","category":"lead","action":"purge","count":0}])");
  const std::string html = render_html(in);
  const std::string svg = chart(html, "chart-upcoming");
  ASSERT_FALSE(svg.empty()) << html;
  EXPECT_EQ(bars(svg), (std::multiset<Bar>{{"archive", "2030-01", "5"},
                                           {"purge", "2030-01", "2"},
                                           {"purge", "2030-03", "10"},
                                           {"anonymise", "2030-04", "1"}}));
  EXPECT_EQ(occurrences(svg, "<rect class=\"bar "), 4u);
  // The axis runs from the plan's first month to its last, empty months included.
  EXPECT_NE(svg.find(">2030-02</text>"), std::string::npos);
  EXPECT_NE(svg.find(">2031-01</text>"), std::string::npos);
  EXPECT_EQ(svg.find(">2031-02</text>"), std::string::npos);
  // Accessible: a title, a description, axis labels and a legend.
  EXPECT_NE(svg.find("<title id=\"chart-upcoming-title\">"), std::string::npos);
  EXPECT_NE(svg.find("<desc id=\"chart-upcoming-desc\">"), std::string::npos);
  EXPECT_NE(svg.find(">Records</text>"), std::string::npos);
  EXPECT_NE(svg.find(">Month (UTC)</text>"), std::string::npos);
  EXPECT_EQ(occurrences(svg, "<rect class=\"swatch "), 3u);
  // The table under the chart: one row per month with a count, and totals.
  EXPECT_NE(html.find("<tr><th scope=\"row\">2030-03</th><td class=\"num\">0</td><td "
                      "class=\"num\">0</td><td class=\"num\">10</td><td class=\"num\">10</td>"),
            std::string::npos)
      << html;
  EXPECT_NE(html.find("<tfoot><tr><th scope=\"row\">Total</th><td class=\"num\">5</td><td "
                      "class=\"num\">1</td><td class=\"num\">12</td><td class=\"num\">18</td>"),
            std::string::npos);
  // Per category, in the records section.
  EXPECT_NE(html.find("<tr><th scope=\"row\"><code>lead</code></th><td class=\"num\">0</td><td "
                      "class=\"num\">1</td><td class=\"num\">9</td><td class=\"num\">10</td>"),
            std::string::npos);
  EXPECT_EQ(html.find("id=\"upcoming-empty\""), std::string::npos);
}

TEST(Report, BarsAreStackedInActionOrderAndScaledToTheTallestMonth) {
  json in = base_input();
  in["plan"]["actions"] = json::parse(R"([
    {"month":"2030-02","category":"a","action":"purge","count":10},
    {"month":"2030-02","category":"a","action":"archive","count":10},
    {"month":"2030-05","category":"a","action":"purge","count":5}])");
  const std::string svg = chart(render_html(in), "chart-upcoming");
  // 20 at most: ticks every 5 (the smallest of 1, 2, 5, 10... giving five
  // steps at most) up to 20. The plot is 234 high, from y 44 to 278.
  EXPECT_NE(svg.find(">20</text>"), std::string::npos);
  EXPECT_EQ(svg.find(">25</text>"), std::string::npos);
  // In 2030-02 the archive segment sits on the axis, the purge one on top of it.
  EXPECT_NE(svg.find("data-month=\"2030-02\" data-action=\"archive\" data-count=\"10\" x=\""),
            std::string::npos);
  const std::regex archive(
      R"re(data-action="archive" data-count="10" x="[0-9.]+" y="161.0" width="[0-9.]+" height="117.0")re");
  const std::regex purge(
      R"re(data-month="2030-02" data-action="purge" data-count="10" x="[0-9.]+" y="44.0" width="[0-9.]+" height="117.0")re");
  EXPECT_TRUE(std::regex_search(svg, archive)) << svg;
  EXPECT_TRUE(std::regex_search(svg, purge)) << svg;
}

TEST(Report, AnEmptyPlanSaysNothingFallsDueInsteadOfDrawingAnEmptyChart) {
  const std::string html = render_html(base_input());
  EXPECT_NE(html.find("<p class=\"empty\" id=\"upcoming-empty\">Nothing falls due before "
                      "2031-01-15T10:00:00Z"),
            std::string::npos)
      << html;
  EXPECT_EQ(html.find("id=\"chart-upcoming\""), std::string::npos);
  EXPECT_EQ(html.find("class=\"bar "), std::string::npos);
  // The audit log has no disposal either.
  EXPECT_NE(html.find("id=\"done-empty\""), std::string::npos);
  EXPECT_NE(html.find("id=\"holds-none\">No hold in force."), std::string::npos);
}

TEST(Report, EveryStringFromTheDaemonIsEscaped) {
  json in = base_input();
  in["policy_table"] =
      "| Category | Purpose | Legal basis | Retention |\n|---|---|---|---|\n"
      "| <script>alert(1)</script> | Tom & \"Jerry\" <b>bold</b> | consent | 1 year after "
      "collected, then purged |\n";
  in["plan"]["actions"] = json::parse(
      R"([{"month":"2030-02","category":"<script>x</script>","action":"purge","count":1}])");
  in["holds"] = json::parse(
      R"({"holds":[{"id":1,"scope":"subject","target":"<img src=x onerror=alert(1)>","placed_at":"2030-01-15T09:00:00Z","placed_by":"uid:0","reason":"case 'A' </td></table><script>"}]})");
  in["status"]["version"] = "<i>";
  const std::string html = render_html(in);
  EXPECT_EQ(html.find("<script"), std::string::npos) << html;
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_EQ(html.find("<b>"), std::string::npos);
  EXPECT_EQ(html.find("<i>"), std::string::npos);
  EXPECT_NE(html.find("<code>&lt;script&gt;alert(1)&lt;/script&gt;</code>"), std::string::npos);
  EXPECT_NE(html.find("<td>Tom &amp; &quot;Jerry&quot; &lt;b&gt;bold&lt;/b&gt;</td>"),
            std::string::npos);
  EXPECT_NE(html.find("<code>&lt;script&gt;x&lt;/script&gt;</code>"), std::string::npos);
  EXPECT_NE(html.find("<td>&lt;img src=x onerror=alert(1)&gt;</td>"), std::string::npos);
  EXPECT_NE(html.find("<td>case &#39;A&#39; &lt;/td&gt;&lt;/table&gt;&lt;script&gt;</td>"),
            std::string::npos);
}

TEST(Report, TheRegisterReadsPolicyTablesMarkdownCellByCell) {
  json in = base_input();
  // A `|` inside a cell comes escaped; a purpose may span lines.
  in["policy_table"] =
      "| Category | Purpose | Legal basis | Retention |\n|---|---|---|---|\n"
      "| a.b | Billing \\| accounting | contract | kept until erased on request |\n"
      "| c | Line one\nline two | consent | at consent_withdrawn, then purged |\n";
  const std::string html = render_html(in);
  EXPECT_NE(html.find("<tr><th scope=\"row\"><code>a.b</code></th><td>Billing | accounting</td>"
                      "<td>contract</td><td>kept until erased on request</td></tr>"),
            std::string::npos)
      << html;
  EXPECT_NE(html.find("<tr><th scope=\"row\"><code>c</code></th><td>Line one\nline two</td>"
                      "<td>consent</td><td>at consent_withdrawn, then purged</td></tr>"),
            std::string::npos);
  const auto table = html.substr(html.find("<table id=\"register-table\">"));
  EXPECT_EQ(occurrences(table.substr(0, table.find("</table>")), "<tr><th scope=\"row\">"), 2u);
}

TEST(Report, ARegisterInAnUnknownFormIsShownAsTheDaemonWroteIt) {
  json in = base_input();
  in["policy_table"] = "lead\n  purpose: <x>\n";
  const std::string html = render_html(in);
  EXPECT_NE(html.find("<pre>lead\n  purpose: &lt;x&gt;\n</pre>"), std::string::npos) << html;
}

TEST(Report, TheAuditTallyCountsDisposalsPerMonthAndOtherEntriesByAction) {
  AuditTally tally;
  const json entries = json::parse(R"([
    {"seq":1,"at":"2030-01-02T00:00:00Z","action":"hold.place"},
    {"seq":2,"at":"2030-01-02T00:00:01Z","action":"purge"},
    {"seq":3,"at":"2030-01-31T23:59:59Z","action":"purge"},
    {"seq":4,"at":"2030-01-31T23:59:59Z","action":"archive"},
    {"seq":5,"at":"2030-03-01T00:00:00Z","action":"anonymise"},
    {"seq":6,"at":"2030-03-01T00:00:00Z","action":"erase"},
    {"seq":7,"at":"2030-03-01T00:00:00Z","action":"config.reload"},
    {"seq":8,"at":"2030-03-02T00:00:00Z","action":"hold.place"},
    {"seq":9,"at":null,"action":"purge"}])");
  for (const auto& e : entries) tally.add(e);
  EXPECT_EQ(tally.to_json(), json::parse(R"({
    "entries": 9, "last_seq": 9,
    "months": [
      {"month":"2030-01","archive":1,"anonymise":0,"purge":2,"erase":0},
      {"month":"2030-03","archive":0,"anonymise":1,"purge":0,"erase":1}],
    "other": {"config.reload":1, "hold.place":2, "unknown":1}})"));
}

TEST(Report, TheChartOfActionsDoneHasOneBarPerMonthAndActionFromTheTally) {
  json in = base_input();
  AuditTally tally;
  for (const auto& [seq, at, action] : std::vector<std::tuple<int, std::string, std::string>>{
           {1, "2029-11-03T00:00:00Z", "purge"},
           {2, "2029-11-04T00:00:00Z", "purge"},
           {3, "2029-11-04T00:00:00Z", "erase"},
           {4, "2030-01-10T00:00:00Z", "archive"},
           {5, "2030-01-10T00:00:00Z", "hold.place"}}) {
    tally.add({{"seq", seq}, {"at", at}, {"action", action}});
  }
  in["audit"] = tally.to_json();
  const std::string html = render_html(in);
  const std::string svg = chart(html, "chart-done");
  EXPECT_EQ(bars(svg), (std::multiset<Bar>{{"purge", "2029-11", "2"},
                                           {"erase", "2029-11", "1"},
                                           {"archive", "2030-01", "1"}}));
  // From the first month with an action to the month of the report.
  EXPECT_NE(svg.find(">2029-12</text>"), std::string::npos);
  EXPECT_EQ(occurrences(svg, "<rect class=\"swatch "), 4u);
  EXPECT_NE(html.find("<tr><th scope=\"row\"><code>hold.place</code></th><td "
                      "class=\"num\">1</td></tr>"),
            std::string::npos);
}

TEST(Report, HoldsThatCouldNotBeListedAreSaidSoWithTheReason) {
  json in = base_input();
  in["holds"] = nullptr;
  in["holds_error"] = "method hold.list needs the admin role <uid 65534> [forbidden]";
  const std::string html = render_html(in);
  EXPECT_NE(html.find("<p class=\"warning\" id=\"holds-unavailable\">The holds could not be "
                      "listed: method hold.list needs the admin role &lt;uid 65534&gt; "
                      "[forbidden]."),
            std::string::npos)
      << html;
}

TEST(Report, ABrokenChainIsShownWithItsFirstBadEntry) {
  json in = base_input();
  in["verify"] = {
      {"ok", false}, {"entries", 9}, {"checked", 9}, {"first_bad", 4}, {"head", "77aa"}};
  const std::string html = render_html(in);
  EXPECT_NE(html.find("<p class=\"broken\" id=\"chain-status\">The audit log's hash chain is "
                      "BROKEN: the first bad entry is 4.</p>"),
            std::string::npos);
  EXPECT_NE(html.find("<span class=\"hash\">77aa</span>"), std::string::npos);
}

TEST(Report, RecordsPerCategoryAndStateComeFromTheMetricsTextWhenTheDaemonHasIt) {
  json in = base_input();
  const std::string without = render_html(in);
  EXPECT_EQ(without.find("id=\"records-by-category\""), std::string::npos);
  EXPECT_NE(without.find("This daemon does not report its records per category and state."),
            std::string::npos);
  in["metrics"] =
      "# HELP retentiond_records Records stored, by category and state\n"
      "# TYPE retentiond_records gauge\n"
      "retentiond_records{category=\"lead\",state=\"active\"} 12\n"
      "retentiond_records{category=\"lead\",state=\"archived\"} 0\n"
      "retentiond_records{category=\"lead\",state=\"anonymised\"} 3\n"
      "retentiond_records{category=\"in\\\"v<o>\",state=\"archived\"} 1234\n"
      "retentiond_records{category=\"none\",state=\"active\"} 0\n"
      "retentiond_records_other{category=\"lead\",state=\"active\"} 99\n"
      "retentiond_due_records{category=\"lead\"} 7\n";
  const std::string html = render_html(in);
  EXPECT_EQ(html.find("This daemon does not report"), std::string::npos);
  const auto at = html.find("<table id=\"records-by-category\"");
  ASSERT_NE(at, std::string::npos) << html;
  const std::string table = html.substr(at, html.find("</table>", at) - at);
  EXPECT_NE(table.find("<tr><th scope=\"row\"><code>lead</code></th><td class=\"num\">12</td>"
                       "<td class=\"num\">0</td><td class=\"num\">3</td><td "
                       "class=\"num\">15</td></tr>"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("<tr><th scope=\"row\"><code>in&quot;v&lt;o&gt;</code></th><td "
                       "class=\"num\">0</td><td class=\"num\">1,234</td><td class=\"num\">0</td>"
                       "<td class=\"num\">1,234</td></tr>"),
            std::string::npos)
      << table;
  EXPECT_EQ(occurrences(table, "<tr><th scope=\"row\">"), 2u);
  EXPECT_NE(html.find("1 category holds no record and is not listed."), std::string::npos);
}

TEST(Report, ThePageLoadsNothingAndPrintsWell) {
  json in = base_input();
  in["plan"]["actions"] =
      json::parse(R"([{"month":"2030-02","category":"lead","action":"purge","count":1}])");
  const std::string html = render_html(in);
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("content=\"default-src 'none'; style-src 'unsafe-inline'\""),
            std::string::npos);
  for (const char* loader : {"<script", "<link", "<img", "src=", "href=", "url(", "@import"}) {
    EXPECT_EQ(html.find(loader), std::string::npos) << loader;
  }
  // The one URL is the SVG namespace, which is a name, not a request.
  EXPECT_EQ(occurrences(html, "https:"), 0u);
  EXPECT_EQ(occurrences(html, "http:"), occurrences(html, "xmlns=\"http://www.w3.org/2000/svg\""));
  EXPECT_NE(html.find("@media print"), std::string::npos);
  EXPECT_NE(html.find("break-inside: avoid"), std::string::npos);
  for (const char* id : {"summary", "register", "records", "upcoming", "done", "holds", "audit"}) {
    EXPECT_NE(html.find("<section id=\"" + std::string(id) + "\""), std::string::npos) << id;
  }
  EXPECT_NE(html.find("<span class=\"hash\">ab12</span>"), std::string::npos);
  EXPECT_NE(html.find("Generated at 2030-01-15T10:00:00Z"), std::string::npos);
}

}  // namespace
}  // namespace retentiond::report
