// The daemon left alone: the timer acts on time, sweeps yield to the socket
// and stop cleanly on SIGTERM, and policy changes pass the reload guard
// (shared/spec/policy.md, "Reload guard"), through config.reload, SIGHUP and
// a restart. The real binary, real sockets, whole replies compared.

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <thread>

#include "tests/support/daemon_process.hpp"

namespace retentiond::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

const char* kNow = "2030-01-01T00:00:00Z";

std::string policy(const std::string& lead_at, bool with_cookie = true, const std::string& extra = "") {
  std::string text = R"([daemon]
state_dir = "unused"
reload_guard = 2
max_batch_records = 100
)" + extra + R"(
[[categories]]
name = "lead"
purpose = "prospection"
legal_basis = "legitimate_interest"
phases = [ { action = "purge", at = ")" + lead_at + R"(" } ]
)";
  if (with_cookie) {
    text += R"(
[[categories]]
name = "cookie"
purpose = "audience measurement"
legal_basis = "consent"
phases = [ { action = "purge", at = "collected + 13 months" } ]
)";
  }
  return text;
}

void write(const std::filesystem::path& p, const std::string& text) { std::ofstream(p) << text; }

json result_of(const json& reply) {
  EXPECT_FALSE(reply.contains("error")) << reply.dump();
  return reply.value("result", json());
}

// Polls `probe` until it is true or `deadline` passes: waiting for an effect
// the daemon produces on its own (its timer), not a sleep standing in for it.
bool eventually(const std::function<bool()>& probe, std::chrono::milliseconds deadline = 20s) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < until) {
    if (probe()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return probe();
}

void put_leads(Client& client) {
  // Under "+ 3 years" none is due on 2030-01-01; under "+ 1 year" the three
  // collected in 2028 are, and the one from December 2029 is not.
  json records = json::array();
  for (int i = 1; i <= 3; ++i) {
    records.push_back({{"key", "lead-" + std::to_string(i)}, {"subject", "p" + std::to_string(i)},
                       {"category", "lead"}, {"dates", {{"collected", "2028-06-01"}}}});
  }
  records.push_back({{"key", "lead-new"}, {"subject", "p4"}, {"category", "lead"}, {"dates", {{"collected", "2029-12-15"}}}});
  records.push_back({{"key", "ck"}, {"subject", "p1"}, {"category", "cookie"}, {"dates", {{"collected", "2029-06-01"}}}});
  ASSERT_EQ(result_of(client.call("record.put_many", {{"records", records}}))["count"], 5);
}

std::string due_of(Client& client, const std::string& key) {
  return result_of(client.call("record.explain", {{"key", key}}))["phases"][0].value("due", std::string("null"));
}

TEST(Scheduler, ARecordDueInThreeSecondsIsPurgedWithoutAnyoneCallingSweep) {
  TempDir dir;
  write(dir.path() / "p.toml", policy("collected + 3 years"));
  DaemonProcess daemon(dir.path(), {"--config", (dir.path() / "p.toml").string(), "--now", kNow});
  Client client(daemon.socket());
  // An overdue record under a hold: its past due time must not keep the
  // timer from arming for the next one ahead.
  result_of(client.call("record.put", {{"key", "held"}, {"subject", "h"}, {"category", "cookie"},
                                       {"dates", {{"collected", "2020-01-01"}}}}));
  result_of(client.call("hold.place", {{"key", "held"}, {"reason", "litigation"}}));
  // 13 months after 2028-12-01T00:00:03Z is three seconds after the start.
  result_of(client.call("record.put", {{"key", "soon"}, {"subject", "s"}, {"category", "cookie"},
                                       {"dates", {{"collected", "2028-12-01T00:00:03Z"}}}}));
  EXPECT_EQ(due_of(client, "soon"), "2030-01-01T00:00:03Z");
  ASSERT_TRUE(eventually([&] { return result_of(client.call("record.explain", {{"key", "soon"}}))["state"] == "purged"; }))
      << "the timer did not purge the record";
  const json entry = result_of(client.call("audit.tail", {{"key", "soon"}}))["entries"].at(0);
  EXPECT_EQ(entry["action"], "purge");
  EXPECT_EQ(entry["actor"], "scheduler");
  EXPECT_GE(entry["at"].get<std::string>(), "2030-01-01T00:00:03Z");
}

TEST(Scheduler, SigtermMidSweepExitsZeroWithNothingHalfDoneAndTheRestartFinishes) {
  TempDir dir;
  write(dir.path() / "p.toml", policy("collected + 3 years"));
  const std::vector<std::string> args = {"--config", (dir.path() / "p.toml").string(), "--now", kNow};
  constexpr int kRecords = 20000;
  {
    DaemonProcess daemon(dir.path(), args);
    Client client(daemon.socket());
    for (int batch = 0; batch < kRecords / 5000; ++batch) {
      json records = json::array();
      for (int i = 0; i < 5000; ++i) {
        records.push_back({{"key", "c" + std::to_string(batch * 5000 + i)}, {"subject", "s"}, {"category", "cookie"},
                           {"dates", {{"collected", "2020-01-01"}}}});
      }
      ASSERT_EQ(result_of(client.call("record.put_many", {{"records", records}}))["count"], 5000);
    }
    Client sweeper(daemon.socket());
    sweeper.send_line(R"({"jsonrpc":"2.0","id":1,"method":"sweep"})");
    // The socket answers while the sweep runs: wait until it has begun.
    Client other(daemon.socket());
    ASSERT_TRUE(eventually([&] { return !result_of(other.call("audit.tail", {{"limit", 1}}))["entries"].empty(); }));
    EXPECT_EQ(daemon.stop(SIGTERM), 0);
    // Stopped mid-sweep: the caller got no reply, just the end of the stream.
    EXPECT_EQ(sweeper.read_line(5s), std::nullopt) << "the sweep finished before SIGTERM; make it longer";
  }
  DaemonProcess daemon(dir.path(), args);
  Client client(daemon.socket());
  // The start-up pass and this sweep finish the work.
  result_of(client.call("sweep"));
  const json status = result_of(client.call("status"));
  EXPECT_EQ(status["records"]["active"], 0);
  EXPECT_EQ(status["backlog"], 0);
  // Exactly one purge entry per record: none lost, none done twice, and
  // the chain is whole across the kill.
  const json verify = result_of(client.call("audit.verify"));
  EXPECT_EQ(verify["ok"], true);
  EXPECT_EQ(verify["entries"], kRecords);
  const json last = result_of(client.call("audit.tail", {{"limit", 1}}))["entries"].at(0);
  EXPECT_EQ(last["seq"], kRecords);
}

// Each test starts from the first policy (leads kept 3 years) in a fresh
// directory; `file` is rewritten to change the policy.
class ReloadGuard : public ::testing::Test {
 protected:
  void SetUp() override { write(file, policy("collected + 3 years")); }
  std::vector<std::string> args() const { return {"--config", file.string(), "--now", kNow}; }
  // A first run that stores the leads under the first policy.
  void store_leads_and_stop() {
    DaemonProcess daemon(dir.path(), args());
    Client client(daemon.socket());
    put_leads(client);
  }

  TempDir dir;
  std::filesystem::path file = dir.path() / "p.toml";
};

TEST_F(ReloadGuard, RefusesAChangeThatMakesTooManyRecordsDueUntilConfirmed) {
  DaemonProcess daemon(dir.path(), args());
  Client client(daemon.socket());
  put_leads(client);
  const std::string old_hash = result_of(client.call("status"))["policy"]["hash"];

  write(file, policy("collected + 1 year"));
  const json refused = client.call("config.reload");
  EXPECT_EQ(refused["error"]["code"], -32004) << refused.dump();
  EXPECT_EQ(refused["error"]["data"], json::parse(R"({"reason":"confirmation_required","newly_due":3,"guard":2,
      "changed_categories":["lead"]})"));
  // Nothing changed: the policy, the stored due times, the audit log.
  EXPECT_EQ(result_of(client.call("status"))["policy"]["hash"], old_hash);
  EXPECT_EQ(due_of(client, "lead-1"), "2031-06-01T00:00:00Z");
  EXPECT_TRUE(result_of(client.call("audit.tail"))["entries"].empty());

  const json confirmed = result_of(client.call("config.reload", {{"confirm", true}}));
  EXPECT_EQ(confirmed["changed_categories"], json::array({"lead"}));
  EXPECT_EQ(confirmed["newly_due"], 3);
  EXPECT_NE(confirmed["hash"], old_hash);
  EXPECT_EQ(result_of(client.call("status"))["policy"]["hash"], confirmed["hash"]);
  EXPECT_EQ(due_of(client, "lead-1"), "2029-06-01T00:00:00Z");
  EXPECT_EQ(due_of(client, "lead-new"), "2030-12-15T00:00:00Z");
  const json entry = result_of(client.call("audit.tail"))["entries"].at(0);
  EXPECT_EQ(entry["action"], "config.reload");
  EXPECT_EQ(entry["actor"], "uid:" + std::to_string(::getuid()));
  EXPECT_EQ(entry["policy_hash"], confirmed["hash"]);
  EXPECT_EQ(entry["key"], nullptr);
  EXPECT_EQ(entry["reason"], "changed: lead; newly due: 3; confirmed");
  EXPECT_EQ(result_of(client.call("sweep"))["purged"], 3);
}

TEST_F(ReloadGuard, AChangeUnderTheGuardIsTakenAndAudited) {
  DaemonProcess daemon(dir.path(), args());
  Client client(daemon.socket());
  put_leads(client);
  // Two years: lead-1..3 (collected 2028-06-01) fall due in 2030-06, later than now.
  write(file, policy("collected + 2 years"));
  const json r = result_of(client.call("config.reload"));
  EXPECT_EQ(r["newly_due"], 0);
  EXPECT_EQ(r["changed_categories"], json::array({"lead"}));
  EXPECT_EQ(due_of(client, "lead-1"), "2030-06-01T00:00:00Z");
  // An unchanged file reloads too, and says so in the log.
  const json again = result_of(client.call("config.reload"));
  EXPECT_EQ(again["changed_categories"], json::array());
  const json entries = result_of(client.call("audit.tail"))["entries"];
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[1]["reason"], "no category changed; newly due: 0");
}

TEST_F(ReloadGuard, AnInvalidFileChangesNothingAndTheErrorNamesTheLine) {
  DaemonProcess daemon(dir.path(), args());
  Client client(daemon.socket());
  const std::string old_hash = result_of(client.call("status"))["policy"]["hash"];
  write(file, policy("collected + 3 yaers"));
  const json reply = client.call("config.reload", {{"confirm", true}});
  EXPECT_EQ(reply["error"]["code"], -32602) << reply.dump();
  EXPECT_EQ(reply["error"]["data"]["reason"], "bad_config");
  const std::string message = reply["error"]["message"];
  EXPECT_NE(message.find("p.toml:10:"), std::string::npos) << message;
  EXPECT_NE(message.find("categories[0].phases[0].at"), std::string::npos) << message;
  EXPECT_EQ(result_of(client.call("status"))["policy"]["hash"], old_hash);
}

TEST_F(ReloadGuard, DroppingACategoryThatStillHoldsRecordsIsRefused) {
  {
    DaemonProcess daemon(dir.path(), args());
    Client client(daemon.socket());
    put_leads(client);
    write(file, policy("collected + 3 years", /*with_cookie=*/false));
    const json reply = client.call("config.reload", {{"confirm", true}});
    EXPECT_EQ(reply["error"]["data"]["reason"], "bad_config") << reply.dump();
    EXPECT_EQ(reply["error"]["data"]["category"], "cookie");
    EXPECT_EQ(reply["error"]["data"]["records"], 1);
    EXPECT_NE(reply["error"]["message"].get<std::string>().find("'cookie' was removed but still holds 1 record"),
              std::string::npos);
    EXPECT_EQ(result_of(client.call("status"))["policy"]["categories"], 2);
  }
  // At start-up the same file is a configuration error: exit 1.
  const std::string cmd = "timeout 20 " + retentiond_binary() + " --config " + file.string() + " --state-dir " +
                          (dir.path() / "state").string() + store_args(dir.path() / "state") + " --socket " +
                          (dir.path() / "x.sock").string() + " >/dev/null 2>&1";
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
}

TEST_F(ReloadGuard, AtStartUpATrippedGuardPausesTheDaemonUntilConfirmed) {
  store_leads_and_stop();
  write(file, policy("collected + 1 year"));
  DaemonProcess daemon(dir.path(), args());
  Client client(daemon.socket());
  const json status = result_of(client.call("status"));
  EXPECT_EQ(status["paused"], "reload_guard");
  EXPECT_EQ(status["pause"], json::parse(R"({"newly_due":3,"guard":2})"));
  const json sweep = client.call("sweep");
  EXPECT_EQ(sweep["error"]["code"], -32004) << sweep.dump();
  EXPECT_EQ(sweep["error"]["data"],
            json::parse(R"({"reason":"confirmation_required","newly_due":3,"guard":2,"paused":"reload_guard"})"));
  // Explicit requests still work while paused; nothing was acted on.
  EXPECT_EQ(result_of(client.call("record.explain", {{"key", "lead-1"}}))["state"], "active");
  EXPECT_EQ(result_of(client.call("sweep", {{"dry_run", true}}))["purged"], 0);  // stored due times are the old policy's
  EXPECT_TRUE(result_of(client.call("audit.tail"))["entries"].empty());

  const json confirmed = result_of(client.call("config.reload", {{"confirm", true}}));
  EXPECT_EQ(confirmed["newly_due"], 3);
  EXPECT_EQ(result_of(client.call("status"))["paused"], nullptr);
  EXPECT_EQ(result_of(client.call("status"))["pause"], nullptr);
  // Unpaused, the timer runs at once: the three newly due leads go.
  EXPECT_TRUE(eventually([&] { return result_of(client.call("status"))["records"]["active"] == 2; }));
  EXPECT_EQ(result_of(client.call("record.explain", {{"key", "lead-1"}}))["state"], "purged");
}

TEST_F(ReloadGuard, ConfirmPolicyAtStartUpTakesTheChangeAndAuditsIt) {
  store_leads_and_stop();
  write(file, policy("collected + 1 year"));
  auto confirming = args();
  confirming.push_back("--confirm-policy");
  DaemonProcess daemon(dir.path(), confirming);
  Client client(daemon.socket());
  EXPECT_EQ(result_of(client.call("status"))["paused"], nullptr);
  const json entries = result_of(client.call("audit.tail", {{"limit", 10000}}))["entries"];
  ASSERT_FALSE(entries.empty());
  EXPECT_EQ(entries[0]["action"], "config.reload");
  EXPECT_EQ(entries[0]["actor"], "scheduler");
  EXPECT_EQ(entries[0]["reason"], "changed: lead; newly due: 3; at start-up, confirmed with --confirm-policy");
  // The start-up pass then acted on the newly due records.
  EXPECT_TRUE(eventually([&] { return result_of(client.call("status"))["records"]["active"] == 2; }));
}

TEST_F(ReloadGuard, SighupTakesAChangeUnderTheGuard) {
  DaemonProcess daemon(dir.path(), args());
  Client client(daemon.socket());
  put_leads(client);
  const std::string old_hash = result_of(client.call("status"))["policy"]["hash"];
  write(file, policy("collected + 2 years"));
  daemon.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return result_of(client.call("status"))["policy"]["hash"] != old_hash; }));
  const json entry = result_of(client.call("audit.tail"))["entries"].at(0);
  EXPECT_EQ(entry["action"], "config.reload");
  EXPECT_EQ(entry["actor"], "scheduler");
  EXPECT_EQ(due_of(client, "lead-1"), "2030-06-01T00:00:00Z");
}

}  // namespace
}  // namespace retentiond::testing
