// retentionctl report, end to end: a real daemon on the example policy with
// a few thousand records and three months of history, the real client
// writing the report, and headless Chromium (Debian's `chromium`) rendering
// it. The bars of each chart in the rendered DOM are compared with the
// numbers the test fetches itself from the daemon (plan, audit.tail), not
// with anything the renderer computed; the page must log nothing to the
// console (its Content Security Policy makes any attempt to load something
// a console error); the screenshot must be a real picture.

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <tuple>

#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/ctl/run_ctl.hpp"
#include "tests/support/daemon_process.hpp"

namespace retentiond::testing {
namespace {

using nlohmann::json;

const std::string kConfig = RETENTIOND_SOURCE_DIR "/config/retentiond.toml";

// The chromium executable on PATH, or empty.
std::string find_chromium() {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    const auto end = std::min(dirs.find(':', start), dirs.size());
    const std::filesystem::path candidate =
        std::filesystem::path(dirs.substr(start, end - start)) / "chromium";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    start = end + 1;
  }
  return {};
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

json result_of(const json& reply) {
  EXPECT_FALSE(reply.contains("error")) << reply.dump();
  return reply.value("result", json());
}

// Runs headless Chromium on `page` with `args`; its standard output and
// error go to the files `out` and `err`. Returns its exit code. The profile
// lives in `dir`, so parallel runs do not share one.
int chromium(const std::string& exe, const std::filesystem::path& dir,
             const std::filesystem::path& page, const std::string& args,
             const std::filesystem::path& out, const std::filesystem::path& err) {
  const std::string cmd = "{ timeout 60 " + exe +
                          " --headless --no-sandbox --disable-gpu --no-first-run"
                          " --user-data-dir=" +
                          (dir / "profile").string() + " --enable-logging=stderr --v=0 " + args +
                          " file://" + page.string() + " >" + out.string() + " 2>" + err.string() +
                          "; }";
  return run_command(cmd).exit_code;
}

// The console messages Chromium logged: "...:INFO:CONSOLE:12] "message",
// source: file:///... (12)" (older versions: "CONSOLE(12)").
std::vector<std::string> console_lines(const std::string& log) {
  static const std::regex console(R"(:CONSOLE[:(])");
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < log.size()) {
    const auto end = std::min(log.find('\n', start), log.size());
    const std::string line = log.substr(start, end - start);
    if (std::regex_search(line, console)) out.push_back(line);
    start = end + 1;
  }
  return out;
}

// (action, month) -> count: the bar segments of the chart `id` in `dom`.
using Bars = std::map<std::pair<std::string, std::string>, std::uint64_t>;

Bars bars_of(const std::string& dom, const std::string& id) {
  Bars out;
  const auto start = dom.find("id=\"" + id + "\"");
  if (start == std::string::npos) return out;
  const std::string svg = dom.substr(start, dom.find("</svg>", start) - start);
  static const std::regex rect(R"(<rect [^>]*>)");
  static const std::regex cls(R"re(class="bar ([a-z]+)")re");
  static const std::regex month(R"re(data-month="([0-9]{4}-[0-9]{2})")re");
  static const std::regex count(R"re(data-count="([0-9]+)")re");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), rect); it != std::sregex_iterator();
       ++it) {
    const std::string tag = it->str();
    std::smatch c, m, n;
    if (!std::regex_search(tag, c, cls)) continue;  // a legend swatch, the axes
    EXPECT_TRUE(std::regex_search(tag, m, month)) << tag;
    EXPECT_TRUE(std::regex_search(tag, n, count)) << tag;
    const auto key = std::make_pair(c[1].str(), m[1].str());
    EXPECT_EQ(out.count(key), 0u) << "two bars for " << key.first << " " << key.second;
    out[key] = std::stoull(n[1].str());
  }
  return out;
}

std::size_t occurrences(const std::string& s, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = s.find(needle); at != std::string::npos; at = s.find(needle, at + 1)) ++n;
  return n;
}

std::string two(int n) { return (n < 10 ? "0" : "") + std::to_string(n); }

// Puts `records` in batches of 1000.
void put_many(Client& client, const json& records) {
  for (std::size_t i = 0; i < records.size(); i += 1000) {
    json batch = json::array();
    for (std::size_t j = i; j < std::min(i + 1000, records.size()); ++j)
      batch.push_back(records[j]);
    const json r = result_of(client.call("record.put_many", {{"records", batch}}));
    ASSERT_EQ(r.value("count", 0u), batch.size());
  }
}

TEST(ReportBrowser, TheReportOfAFewThousandRecordsRendersWithEveryBarAndNoConsoleError) {
  const std::string exe = find_chromium();
  if (exe.empty()) {
    GTEST_SKIP() << "chromium is not installed, so the report cannot be rendered: install the "
                    "Debian package chromium (scripts/deps.sh does)";
  }
  TempDir dir;

  // 2030-01-01: 3,000 records. Connection logs (purged a year after
  // collection) collected from 2028-12 to 2030-03, so that some are overdue
  // and the rest fall due month after month; training histories archived
  // five years after their last use, 2024-11 to 2026-02; usage data
  // anonymised at an erasure request dated 2029-12 to 2030-11. Every date is
  // a day's midnight, and the 10th or later of a month, so that no due time
  // is within seconds of the instants the report and this test read.
  {
    DaemonProcess daemon(dir.path(), {"--config", kConfig, "--now", "2030-01-01T00:00:00Z"});
    Client client(daemon.socket());
    json records = json::array();
    for (int i = 0; i < 1500; ++i) {
      const int month = i % 16;  // 2028-12 + month
      const int y = 2028 + (11 + month) / 12, m = (11 + month) % 12 + 1;
      records.push_back(
          {{"key", "log-" + std::to_string(i)},
           {"subject", "user-" + std::to_string(i % 400)},
           {"category", "oc.connection_log"},
           {"fields", {{"ip", "192.0.2." + std::to_string(i % 250)}}},
           {"dates", {{"collected", std::to_string(y) + "-" + two(m) + "-" + two(10 + i % 15)}}}});
    }
    for (int i = 0; i < 900; ++i) {
      const int month = i % 16;  // 2024-11 + month
      const int y = 2024 + (10 + month) / 12, m = (10 + month) % 12 + 1;
      records.push_back(
          {{"key", "th-" + std::to_string(i)},
           {"subject", "user-" + std::to_string(i % 400)},
           {"category", "studi.training_history"},
           {"fields", {{"course", "BTS-" + std::to_string(i % 7)}}},
           {"dates",
            {{"collected", "2020-09-10"},
             {"last_use", std::to_string(y) + "-" + two(m) + "-" + two(12 + i % 10)}}}});
    }
    for (int i = 0; i < 600; ++i) {
      const int month = i % 12;  // 2029-12 + month
      const int y = 2029 + (11 + month) / 12, m = (11 + month) % 12 + 1;
      records.push_back({{"key", "use-" + std::to_string(i)},
                         {"subject", "user-" + std::to_string(i % 400)},
                         {"category", "studi.usage"},
                         {"fields", {{"page", "/course/" + std::to_string(i % 30)}}},
                         {"dates",
                          {{"collected", "2029-01-15"},
                           {"erasure_requested", std::to_string(y) + "-" + two(m) + "-20"}}}});
    }
    put_many(client, records);
    result_of(client.call("sweep"));  // the overdue ones, in 2030-01
    result_of(client.call("subject.erase", {{"subject", "user-7"}, {"reason", "request 2030-01"}}));
    EXPECT_EQ(daemon.stop(SIGTERM), 0);
  }
  // 2030-04-01: what fell due since runs now; a hold with a reason that is
  // markup, and a subject hold, stand.
  DaemonProcess daemon(dir.path(), {"--config", kConfig, "--now", "2030-04-01T00:00:00Z"});
  Client client(daemon.socket());
  result_of(client.call("sweep"));
  result_of(client.call("hold.place",
                        {{"category", "oc.certificate"}, {"reason", "audit <b>2030</b> & co"}}));
  result_of(client.call("hold.place", {{"subject", "user-3"}, {"reason", "litigation 17"}}));

  // The report, as the client writes it.
  const auto html = dir.path() / "r.html";
  const CtlResult ctl =
      run_ctl({"--socket", daemon.socket().string(), "--json", "report", "--html", html.string()});
  ASSERT_EQ(ctl.exit_code, 0) << ctl.out << ctl.err;
  const json summary = json::parse(ctl.out);
  EXPECT_EQ(summary.value("chain_ok", false), true);
  EXPECT_EQ(summary.value("holds_listed", false), true);

  // What the charts must show, from the daemon, asked by the test itself:
  // the plan of the same window, and the whole audit log.
  const json plan = result_of(
      client.call("plan", {{"from", summary.at("generated_at")}, {"until", summary.at("until")}}));
  Bars expected_upcoming;
  for (const auto& a : plan.at("actions")) {
    if (a.at("count").get<std::uint64_t>() == 0) continue;
    expected_upcoming[{a.at("action").get<std::string>(), a.at("month").get<std::string>()}] +=
        a.at("count").get<std::uint64_t>();
  }
  Bars expected_done;
  std::uint64_t entries = 0;
  for (std::int64_t after = 0;;) {
    const json page = result_of(client.call("audit.tail", {{"after", after}, {"limit", 10000}}));
    for (const auto& e : page.at("entries")) {
      ++entries;
      after = e.at("seq").get<std::int64_t>();
      const std::string action = e.at("action").get<std::string>();
      if (action == "archive" || action == "anonymise" || action == "purge" || action == "erase") {
        ++expected_done[{action, e.at("at").get<std::string>().substr(0, 7)}];
      }
    }
    if (page.at("entries").size() < 10000) break;
  }
  EXPECT_EQ(summary.value("audit_entries", 0u), entries);
  // The data make both charts worth drawing: several months, every action.
  std::set<std::string> upcoming_months, upcoming_actions, done_months, done_actions;
  for (const auto& [key, n] : expected_upcoming) {
    upcoming_actions.insert(key.first);
    upcoming_months.insert(key.second);
  }
  for (const auto& [key, n] : expected_done) {
    done_actions.insert(key.first);
    done_months.insert(key.second);
  }
  EXPECT_GE(upcoming_months.size(), 10u);
  EXPECT_EQ(upcoming_actions, (std::set<std::string>{"archive", "anonymise", "purge"}));
  EXPECT_EQ(done_months, (std::set<std::string>{"2030-01", "2030-04"}));
  EXPECT_EQ(done_actions, (std::set<std::string>{"archive", "anonymise", "purge", "erase"}));

  // The rendered page: its DOM, and what it logged to the console.
  const auto dom_file = dir.path() / "dom.html";
  const auto dom_log = dir.path() / "dom.log";
  ASSERT_EQ(chromium(exe, dir.path(), html, "--dump-dom", dom_file, dom_log), 0) << slurp(dom_log);
  const std::string dom = slurp(dom_file);
  ASSERT_NE(dom.find("<h1>Retention report</h1>"), std::string::npos) << dom.substr(0, 2000);
  EXPECT_EQ(console_lines(slurp(dom_log)), std::vector<std::string>{});
  EXPECT_EQ(bars_of(dom, "chart-upcoming"), expected_upcoming);
  EXPECT_EQ(bars_of(dom, "chart-done"), expected_done);

  // The register has a row per category of the policy, and the hold's
  // reason is text, not markup.
  const json policy = result_of(client.call("policy.get"));
  const auto reg = dom.find("id=\"register-table\"");
  ASSERT_NE(reg, std::string::npos);
  const std::string reg_table = dom.substr(reg, dom.find("</table>", reg) - reg);
  EXPECT_EQ(occurrences(reg_table, "<th scope=\"row\">"), policy.at("categories").size());
  EXPECT_NE(dom.find("audit &lt;b&gt;2030&lt;/b&gt; &amp; co"), std::string::npos);
  EXPECT_EQ(dom.find("<b>2030</b>"), std::string::npos);
  EXPECT_NE(dom.find("<td>user-3</td>"), std::string::npos);

  // A screenshot: a PNG of the window's size, and more than a blank page
  // (a white 1200x3000 PNG is under 20 KB; this page is several times that).
  const auto png = dir.path() / "shot.png";
  ASSERT_EQ(chromium(exe, dir.path(), html,
                     "--hide-scrollbars --window-size=1200,3000 --screenshot=" + png.string(),
                     dir.path() / "shot.out", dir.path() / "shot.log"),
            0)
      << slurp(dir.path() / "shot.log");
  const std::string image = slurp(png);
  ASSERT_GT(image.size(), 24u);
  EXPECT_EQ(image.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  const auto be32 = [&](std::size_t at) {
    return (static_cast<std::uint32_t>(static_cast<unsigned char>(image[at])) << 24) |
           (static_cast<std::uint32_t>(static_cast<unsigned char>(image[at + 1])) << 16) |
           (static_cast<std::uint32_t>(static_cast<unsigned char>(image[at + 2])) << 8) |
           static_cast<std::uint32_t>(static_cast<unsigned char>(image[at + 3]));
  };
  EXPECT_EQ(be32(16), 1200u);  // IHDR width
  EXPECT_EQ(be32(20), 3000u);  // IHDR height
  EXPECT_GT(image.size(), 60000u);
  EXPECT_EQ(console_lines(slurp(dir.path() / "shot.log")), std::vector<std::string>{});
}

// A reader may run the report: it is written all the same, with a note
// where the holds would be, and the client says why on standard error.
TEST(ReportCtl, AReaderGetsTheReportWithoutTheHoldsAndIsToldWhy) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root, to run the client as nobody, made a reader by the policy";
  }
  TempDir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  // The example policy, with nobody's group as the readers and a socket
  // anyone may open.
  std::string policy = slurp(kConfig);
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"socket_mode = \"0660\"", "socket_mode = \"0666\""},
           {"reader_group = \"retention-read\"",
            "reader_group = \"" + std::string(::getgrgid(65534)->gr_name) + "\""}}) {
    const auto at = policy.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    policy.replace(at, from.size(), to);
  }
  const auto config = dir.path() / "policy.toml";
  std::ofstream(config) << policy;
  DaemonProcess daemon(dir.path(), {"--config", config.string(), "--now", "2030-01-01T00:00:00Z"});
  Client client(daemon.socket());
  result_of(client.call("hold.place", {{"category", "oc.certificate"}, {"reason", "audit"}}));
  const auto out = dir.path() / "out";
  std::filesystem::create_directory(out);
  ASSERT_EQ(::chmod(out.c_str(), 0777), 0);

  CtlOptions nobody;
  nobody.as_nobody = true;
  const CtlResult r = run_ctl({"--socket", daemon.socket().string(), "report", "--html",
                               (out / "r.html").string(), "--until", "2030-06-01"},
                              nobody);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "wrote " + (out / "r.html").string() +
                ": 0 phases due before 2030-06-01T00:00:00Z, 1 audit entry, audit chain intact\n");
  EXPECT_EQ(r.err.rfind("retentionctl: report: the holds are not listed: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("[forbidden]\n"), std::string::npos) << r.err;
  const std::string html = slurp(out / "r.html");
  EXPECT_NE(html.find("<p class=\"warning\" id=\"holds-unavailable\">The holds could not be "
                      "listed: "),
            std::string::npos);
  EXPECT_NE(html.find("<dt>Holds in force</dt><dd>1</dd>"), std::string::npos);
  EXPECT_NE(html.find("id=\"upcoming-empty\">Nothing falls due before 2030-06-01T00:00:00Z"),
            std::string::npos);
}

// The console check above can fail: a page with a script error, and one
// that tries to load an image under the report's policy, are both caught.
TEST(ReportBrowser, TheConsoleCheckCatchesAScriptErrorAndABlockedLoad) {
  const std::string exe = find_chromium();
  if (exe.empty()) {
    GTEST_SKIP() << "chromium is not installed: install the Debian package chromium "
                    "(scripts/deps.sh does)";
  }
  TempDir dir;
  const auto page = dir.path() / "bad.html";
  std::ofstream(page) << "<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
                         "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src "
                         "'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
                         "<title>x</title></head><body><img src=\"https://example.invalid/a.png\">"
                         "<script>noSuchFunction();</script></body></html>";
  ASSERT_EQ(chromium(exe, dir.path(), page, "--dump-dom", dir.path() / "dom.html",
                     dir.path() / "dom.log"),
            0);
  const auto lines = console_lines(slurp(dir.path() / "dom.log"));
  ASSERT_EQ(lines.size(), 2u) << slurp(dir.path() / "dom.log");
  EXPECT_NE(lines[0].find("violates the following Content Security Policy directive"),
            std::string::npos)
      << lines[0];
  EXPECT_NE(lines[1].find("noSuchFunction is not defined"), std::string::npos) << lines[1];
}

}  // namespace
}  // namespace retentiond::testing
