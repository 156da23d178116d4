// Metrics end to end: the real daemon with [daemon] metrics_listen on
// loopback, scraped over HTTP by a Boost.Beast client, the text checked by
// promtool (Debian's prometheus package) and followed through a pause, a
// confirmation and a sweep.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>

#include "lib/util/asio.hpp"
#include "tests/support/daemon_process.hpp"

namespace retentiond::testing {
namespace {

using nlohmann::json;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

const char* kNow = "2030-01-01T00:00:00Z";

// A port nobody listens on now (the kernel's pick for port 0).
std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("no free port");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string policy(const std::string& lead_at, std::uint16_t port) {
  return R"([daemon]
state_dir = "unused"
reload_guard = 1
metrics_listen = "127.0.0.1:)" + std::to_string(port) + R"("

[[categories]]
name = "lead"
purpose = "prospection"
legal_basis = "legitimate_interest"
phases = [ { action = "purge", at = ")" + lead_at + R"(" } ]

[[categories]]
name = "cookie"
purpose = "audience measurement"
legal_basis = "consent"
phases = [ { action = "purge", at = "collected + 13 months" } ]
)";
}

struct Reply {
  unsigned status = 0;
  std::string content_type;
  std::string content_length;
  std::string body;
};

Reply request(std::uint16_t port, http::verb verb, const std::string& target) {
  boost::asio::io_context io;
  beast::tcp_stream stream(io);
  stream.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port));
  http::request<http::empty_body> req(verb, target, 11);
  req.set(http::field::host, "127.0.0.1");
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.skip(verb == http::verb::head);
  http::read(stream, buffer, parser);
  const auto& res = parser.get();
  Reply out;
  out.status = res.result_int();
  out.content_type = std::string(res[http::field::content_type]);
  out.content_length = std::string(res[http::field::content_length]);
  out.body = res.body();
  return out;
}

json result_of(const json& reply) {
  EXPECT_FALSE(reply.contains("error")) << reply.dump();
  return reply.value("result", json());
}

// The value of the sample `series` (name and labels exactly as printed),
// or nullopt when the text has no such line.
std::optional<double> sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 && line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return std::nullopt;
}

class Metrics : public ::testing::Test {
 protected:
  std::vector<std::string> args() const { return {"--config", file.string(), "--now", kNow}; }
  std::string scrape() {
    const Reply r = request(port, http::verb::get, "/metrics");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    return r.body;
  }

  TempDir dir;
  std::filesystem::path file = dir.path() / "p.toml";
  std::uint16_t port = free_port();
};

TEST_F(Metrics, ScrapeFollowsAPauseItsConfirmationAndTheSweep) {
  std::ofstream(file) << policy("collected + 3 years", port);
  {
    // Three leads collected in mid-2028: due in 2031 under "+ 3 years".
    DaemonProcess daemon(dir.path(), args());
    Client client(daemon.socket());
    json records = json::array();
    for (int i = 1; i <= 3; ++i) {
      records.push_back({{"key", "lead-" + std::to_string(i)}, {"subject", "p" + std::to_string(i)},
                         {"category", "lead"}, {"dates", {{"collected", "2028-06-01"}}}});
    }
    records.push_back({{"key", "ck"}, {"subject", "p1"}, {"category", "cookie"}, {"dates", {{"collected", "2029-12-01"}}}});
    ASSERT_EQ(result_of(client.call("record.put_many", {{"records", records}}))["count"], 4);
    const std::string text = scrape();
    EXPECT_EQ(sample(text, R"(retentiond_records{category="lead",state="active"})"), 3);
    EXPECT_EQ(sample(text, R"(retentiond_records{category="cookie",state="active"})"), 1);
    EXPECT_EQ(sample(text, R"(retentiond_records{category="cookie",state="archived"})"), 0);
    EXPECT_EQ(sample(text, "retentiond_deletion_lateness_seconds"), 0);
    EXPECT_EQ(sample(text, R"(retentiond_paused{reason="reload_guard"})"), 0);
    // The method returns the same families as the endpoint.
    const std::string by_method = result_of(client.call("metrics"))["text"];
    EXPECT_EQ(sample(by_method, R"(retentiond_records{category="lead",state="active"})"), 3);
  }

  // "+ 1 year" makes three leads newly due: more than the guard of 1, so
  // the daemon starts paused, and they are late from 2029-06-01.
  std::ofstream(file) << policy("collected + 1 year", port);
  DaemonProcess daemon(dir.path(), args());
  Client client(daemon.socket());
  ASSERT_EQ(result_of(client.call("status"))["paused"], "reload_guard");
  // Stored due times stay the old policy's while paused; a lead stored now
  // gets the new one, and nothing acts on it.
  result_of(client.call("record.put", {{"key", "lead-late"}, {"subject", "p9"}, {"category", "lead"},
                                       {"dates", {{"collected", "2028-06-01"}}}}));
  std::string text = scrape();
  EXPECT_EQ(sample(text, R"(retentiond_paused{reason="reload_guard"})"), 1);
  EXPECT_EQ(sample(text, R"(retentiond_paused{reason="clock_guard"})"), 0);
  const auto lateness = sample(text, "retentiond_deletion_lateness_seconds");
  ASSERT_TRUE(lateness);
  // 2029-06-01 to 2030-01-01 is 214 days; the daemon's clock has run a few
  // seconds since --now.
  EXPECT_GE(*lateness, 214 * 86400.0);
  EXPECT_LT(*lateness, 214 * 86400.0 + 120);
  EXPECT_EQ(sample(text, "retentiond_backlog_records"), 1);
  EXPECT_EQ(sample(text, R"(retentiond_due_records{category="lead"})"), 1);

  // Confirmed: the pass purges what is due and lateness drops to 0.
  result_of(client.call("config.reload", {{"confirm", true}}));
  result_of(client.call("sweep"));
  text = scrape();
  EXPECT_EQ(sample(text, "retentiond_deletion_lateness_seconds"), 0);
  EXPECT_EQ(sample(text, R"(retentiond_paused{reason="reload_guard"})"), 0);
  EXPECT_EQ(sample(text, R"(retentiond_actions_total{action="purge",category="lead"})"), 4);
  EXPECT_EQ(sample(text, R"(retentiond_actions_total{action="config.reload",category=""})"), 1);
  EXPECT_EQ(sample(text, R"(retentiond_records{category="lead",state="active"})"), 0);
  const auto passes = sample(text, "retentiond_sweep_duration_seconds_count");
  ASSERT_TRUE(passes);
  EXPECT_GE(*passes, 1);
  EXPECT_EQ(sample(text, R"(retentiond_sweep_duration_seconds_bucket{le="+Inf"})"), *passes);
  EXPECT_GT(*sample(text, "retentiond_last_successful_sweep_timestamp_seconds"), 1893456000.0 - 1);
  EXPECT_EQ(sample(text, "retentiond_audit_entries"), 5);  // the reload and four purges
  EXPECT_EQ(daemon.stop(SIGTERM), 0);
}

TEST_F(Metrics, PromtoolAcceptsTheText) {
  const CommandResult which = run_command("command -v promtool");
  if (which.exit_code != 0) {
    GTEST_SKIP() << "promtool is not installed (Debian package prometheus; scripts/deps.sh installs it)";
  }
  std::ofstream(file) << policy("collected + 3 years", port);
  DaemonProcess daemon(dir.path(), args());
  Client client(daemon.socket());
  result_of(client.call("record.put", {{"key", "k"}, {"subject", "s"}, {"category", "cookie"},
                                       {"dates", {{"collected", "2029-12-01"}}}}));
  result_of(client.call("hold.place", {{"key", "k"}, {"reason", "a \"quoted\" reason\\"}}));
  result_of(client.call("sweep"));
  std::ofstream(dir.path() / "scrape.txt") << scrape();
  const CommandResult check = run_command("promtool check metrics < " + (dir.path() / "scrape.txt").string());
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_EQ(check.output, "") << "promtool's lint found problems";
}

TEST_F(Metrics, OnlyGetAndHeadOfMetricsAreServed) {
  std::ofstream(file) << policy("collected + 3 years", port);
  DaemonProcess daemon(dir.path(), args());
  const Reply get = request(port, http::verb::get, "/metrics");
  ASSERT_EQ(get.status, 200u);
  const Reply head = request(port, http::verb::head, "/metrics");
  EXPECT_EQ(head.status, 200u);
  EXPECT_EQ(head.body, "");
  EXPECT_GT(std::stoul(head.content_length), 1000u);
  EXPECT_EQ(request(port, http::verb::get, "/").status, 404u);
  EXPECT_EQ(request(port, http::verb::get, "/metrics/x").status, 404u);
  EXPECT_EQ(request(port, http::verb::post, "/metrics").status, 405u);
  // A connection that sends nothing useful does not stop the next scrape.
  {
    boost::asio::io_context io;
    tcp::socket junk(io);
    junk.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port));
    boost::asio::write(junk, boost::asio::buffer(std::string("NOT HTTP AT ALL\r\n\r\n")));
  }
  EXPECT_EQ(request(port, http::verb::get, "/metrics").status, 200u);
  EXPECT_EQ(daemon.stop(SIGTERM), 0);
}

TEST_F(Metrics, CheckRejectsABadAddressAndWarnsOfANonLoopbackOne) {
  std::ofstream(file) << std::regex_replace(policy("collected + 3 years", port), std::regex("127\\.0\\.0\\.1:[0-9]+"),
                                            "127.0.0.1");
  CommandResult r = run_command(retentiond_binary() + " --check --config " + file.string());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("p.toml:4"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("daemon.metrics_listen"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("expected \"host:port\""), std::string::npos) << r.output;

  std::ofstream(file) << std::regex_replace(policy("collected + 3 years", port), std::regex("127\\.0\\.0\\.1:[0-9]+"),
                                            "0.0.0.0:9464");
  r = run_command(retentiond_binary() + " --check --config " + file.string());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("not a loopback address"), std::string::npos) << r.output;

  // Taken at start-up: the daemon says so and exits non-zero.
  std::ofstream(file) << policy("collected + 3 years", port);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  r = run_command("timeout 20 " + retentiond_binary() + " --config " + file.string() + " --state-dir " +
                  (dir.path() / "state").string() + " --socket " + (dir.path() / "x.sock").string() + " 2>&1");
  ::close(fd);
  EXPECT_EQ(r.exit_code, 3) << r.output;  // a start-up error
  EXPECT_NE(r.output.find("cannot listen for metrics on 127.0.0.1:" + std::to_string(port)), std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace retentiond::testing
