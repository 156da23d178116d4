// The daemon on the PostgreSQL backend ([store] backend = "postgresql"),
// against a real server this test process starts (tests/support/pg_cluster):
// its whole state (records, archive, audit log, holds, keys) in the
// database, the start refused clearly when the database cannot be reached
// or another daemon is its writer, and --check on the [store] keys.

#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>

#include "tests/support/daemon_process.hpp"
#include "tests/support/pg_cluster.hpp"

namespace retentiond::testing {
namespace {

using nlohmann::json;
using test::PgCluster;

std::string policy_for(const std::string& url) {
  return R"([daemon]
state_dir = "unused"
[store]
backend = "postgresql"
url = ")" + url + R"("
[[categories]]
name = "gone"
purpose = "purged by the sweep"
legal_basis = "consent"
phases = [ { action = "purge", at = "collected + 1 day" } ]
[[categories]]
name = "anon"
purpose = "anonymised by the sweep"
legal_basis = "consent"
phases = [ { action = "anonymise", at = "collected + 1 day" } ]
anonymise = { kept = "keep" }
[[categories]]
name = "arch"
purpose = "archived by the sweep"
legal_basis = "consent"
phases = [ { action = "archive", at = "collected + 1 day" }, { action = "purge", at = "collected + 100 years" } ]
[[categories]]
name = "long"
purpose = "kept"
legal_basis = "consent"
phases = [ { action = "purge", at = "collected + 100 years" } ]
)";
}

json result_of(const json& reply) {
  EXPECT_TRUE(reply.contains("result")) << reply.dump();
  return reply.value("result", json::object());
}

std::string count_rows(const std::string& db, const std::string& sql) { return PgCluster::shared().psql(db, sql); }

TEST(PostgreSQL, TheDaemonKeepsItsWholeStateInTheDatabaseAndSweepsIt) {
  auto& cluster = PgCluster::shared();
  const std::string url = cluster.create_database("daemon_state");
  TempDir dir;
  const auto config = dir.path() / "pg.toml";
  std::ofstream(config) << policy_for(url);
  const std::vector<std::string> args = {"--config", config.string(), "--now", "2030-01-01T00:00:00Z"};
  {
    DaemonProcess daemon(dir.path(), args);
    Client client(daemon.socket());
    json batch = json::array();
    for (int i = 0; i < 50; ++i) {
      const std::string n = std::to_string(i);
      for (const char* c : {"gone", "anon", "arch", "long"}) {
        batch.push_back({{"key", std::string(c) + n}, {"subject", "S" + n}, {"category", c},
                         {"fields", {{"v", "value-" + n}, {"kept", "kept-" + n}}},
                         {"dates", {{"collected", "2020-01-01"}}}});
      }
    }
    const json put = client.call("record.put_many", {{"records", batch}});
    ASSERT_FALSE(put.contains("error")) << put.dump();
    // A hold keeps one record of the purged category.
    ASSERT_TRUE(client.call("hold.place", {{"key", "gone7"}, {"reason", "litigation"}}).contains("result"));

    const json sweep = result_of(client.call("sweep"));
    EXPECT_EQ(sweep["purged"], 49);
    EXPECT_EQ(sweep["anonymised"], 50);
    EXPECT_EQ(sweep["archived"], 50);
    EXPECT_EQ(result_of(client.call("audit.verify", {{"full", true}}))["ok"], true);
    // Values come back through the keys kept in the database.
    EXPECT_EQ(result_of(client.call("record.get", {{"key", "long3"}}))["fields"]["v"], "value-3");
    EXPECT_EQ(result_of(client.call("record.get", {{"key", "anon3"}}))["fields"]["kept"], "kept-3");
    ASSERT_EQ(daemon.stop(SIGTERM), 0);
  }
  // Everything is in the database, nothing but the secret in state_dir.
  EXPECT_EQ(count_rows("daemon_state", "SELECT count(*) FROM retentiond.records"), "101");  // long, anon, gone7
  EXPECT_EQ(count_rows("daemon_state", "SELECT count(*) FROM retentiond_archive.records"), "50");
  EXPECT_EQ(count_rows("daemon_state", "SELECT count(*) FROM retentiond.audit WHERE action = 'purge'"), "49");
  EXPECT_EQ(count_rows("daemon_state", "SELECT count(*) FROM retentiond.holds"), "1");
  // One live key per stored record and per hold: the purged records' keys
  // (and the anonymised records' old ones) were deleted.
  EXPECT_EQ(count_rows("daemon_state", "SELECT count(*) FROM retentiond.keys"), "152");
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "state" / "retention.db"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "state" / "keys"));

  // A restart finds it all again.
  DaemonProcess again(dir.path(), args);
  Client client(again.socket());
  const json status = result_of(client.call("status"));
  EXPECT_EQ(status["records"]["active"], 51) << status.dump();
  EXPECT_EQ(status["records"]["anonymised"], 50) << status.dump();
  EXPECT_EQ(status["records"]["archived"], 50) << status.dump();
  EXPECT_EQ(result_of(client.call("record.get", {{"key", "arch9"}, {"include_archived", true}}))["fields"]["v"],
            "value-9");
  EXPECT_EQ(result_of(client.call("audit.verify", {{"full", true}}))["ok"], true);
  const json erased = result_of(client.call("subject.erase", {{"subject", "S9"}, {"reason", "request"}}));
  EXPECT_EQ(erased["erased"].size(), 2u) << erased.dump();  // long9 and arch9 (anon9 has no subject any more)
}

TEST(PostgreSQL, ASecondDaemonOnTheSameDatabaseIsRefusedAndTold) {
  auto& cluster = PgCluster::shared();
  const std::string url = cluster.create_database("two_writers");
  TempDir first_dir, second_dir;
  for (const auto* d : {&first_dir, &second_dir}) std::ofstream(d->path() / "pg.toml") << policy_for(url);
  DaemonProcess first(first_dir.path(), {"--config", (first_dir.path() / "pg.toml").string()});
  const auto second = run_command(retentiond_binary() + " --config " + (second_dir.path() / "pg.toml").string() +
                                  " --state-dir " + (second_dir.path() / "state").string() + " --socket " +
                                  (second_dir.path() / "admin.sock").string() + " 2>&1");
  EXPECT_NE(second.exit_code, 0);
  EXPECT_NE(second.output.find("another retentiond is the writer of database two_writers"), std::string::npos)
      << second.output;
  EXPECT_NE(second.output.find("pid " + std::to_string(first.pid())), std::string::npos) << second.output;
  // The first one is unharmed.
  Client client(first.socket());
  EXPECT_EQ(result_of(client.call("audit.verify"))["ok"], true);
}

TEST(PostgreSQL, AnUnreachableDatabaseFailsTheStartSayingWhy) {
  TempDir dir;
  std::ofstream(dir.path() / "pg.toml") << policy_for("host=" + (dir.path() / "no-server").string() + " dbname=x");
  const auto r = run_command(retentiond_binary() + " --config " + (dir.path() / "pg.toml").string() + " --state-dir " +
                             (dir.path() / "state").string() + " --socket " + (dir.path() / "admin.sock").string() +
                             " 2>&1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("cannot connect to PostgreSQL"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("no-server"), std::string::npos) << r.output;  // names where it looked
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "admin.sock"));
}

TEST(PostgreSQL, CheckValidatesTheStoreKeysWithFileAndLine) {
  TempDir dir;
  const auto check = [&](const std::string& store) {
    const auto config = dir.path() / "c.toml";
    std::ofstream(config) << "[daemon]\nstate_dir = \"s\"\n" << store
                          << "[[categories]]\nname = \"c\"\npurpose = \"p\"\nlegal_basis = \"consent\"\n"
                             "phases = [ { action = \"purge\", at = \"collected + 1 day\" } ]\n";
    return run_command(retentiond_binary() + " --check --config " + config.string() + " 2>&1");
  };
  const std::string file = (dir.path() / "c.toml").string();
  auto r = check("[store]\nbackend = \"mysql\"\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(file + ":4:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("unknown backend 'mysql'"), std::string::npos) << r.output;
  r = check("[store]\nbackend = \"postgresql\"\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("store.url"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("required with backend = \"postgresql\""), std::string::npos) << r.output;
  r = check("[store]\nbackend = \"postgresql\"\nurl = \"host=/run/postgresql dbname\"\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(file + ":5:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("not a libpq connection string or URI"), std::string::npos) << r.output;
  r = check("[store]\nurl = \"postgresql:///x\"\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("only for backend = \"postgresql\""), std::string::npos) << r.output;
  r = check("[store]\nbackend = \"postgresql\"\nurl = \"postgresql://app:hunter2@db.example/retentiond\"\n");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("holds a password"), std::string::npos) << r.output;
  r = check("[store]\nbackend = \"postgresql\"\nurl = \"postgresql:///retentiond?host=/run/postgresql\"\n");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("store.url"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace retentiond::testing
