// The daemon on the PostgreSQL backend ([store] backend = "postgresql"),
// against a real server this test process starts (tests/support/pg_cluster):
// its whole state (records, archive, audit log, holds, keys) in the
// database, the start refused clearly when the database cannot be reached
// or another daemon is its writer, and --check on the [store] keys.

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <unordered_map>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include "tests/ctl/run_ctl.hpp"
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

// The server processes serving the connections of the daemon `pid`.
std::vector<pid_t> backends_of(const std::string& db, pid_t pid) {
  std::vector<pid_t> out;
  std::stringstream lines(count_rows(db, "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'retentiond % pid " +
                                             std::to_string(pid) + "'"));
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) out.push_back(static_cast<pid_t>(std::stol(line)));
  }
  return out;
}

// Waits (on pidfds, up to 20 s each) for server processes to exit.
void wait_exit(const std::vector<pid_t>& pids) {
  for (const pid_t p : pids) {
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, p, 0));
    if (fd < 0) continue;  // already gone
    pollfd pfd{fd, POLLIN, 0};
    EXPECT_EQ(::poll(&pfd, 1, 20000), 1) << "server process " << p << " still serves a killed daemon";
    ::close(fd);
  }
}

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

// Two daemons, one database: records put through one, both sweeping at
// once (explicit sweeps racing each other and the first one's own
// scheduler), every record acted on exactly once, one chain.
TEST(PostgreSQL, TwoDaemonsShareOneDatabaseAndActOnEachRecordOnce) {
  auto& cluster = PgCluster::shared();
  const std::string url = cluster.create_database("two_daemons");
  TempDir a_dir, b_dir, shared;
  const std::string secret = (shared.path() / "secret").string();
  std::string policy = policy_for(url);
  policy.replace(policy.find("state_dir = \"unused\""), 20,
                 "state_dir = \"unused\"\nsecret_file = \"" + secret + "\"\nmax_batch_records = 50");
  for (const auto* d : {&a_dir, &b_dir}) std::ofstream(d->path() / "pg.toml") << policy;
  const auto start = [&](const TempDir& d) {
    return std::make_unique<DaemonProcess>(
        d.path(), std::vector<std::string>{"--config", (d.path() / "pg.toml").string(), "--now", "2030-01-01T00:00:00Z"});
  };
  auto a = start(a_dir);
  auto b = start(b_dir);
  Client ca(a->socket()), cb(b->socket());
  constexpr int kRecords = 3000;
  json batch = json::array();
  for (int i = 0; i < kRecords; ++i) {
    batch.push_back({{"key", "k" + std::to_string(i)}, {"subject", "S" + std::to_string(i % 100)}, {"category", "gone"},
                     {"fields", {{"v", "x"}}}, {"dates", {{"collected", "2020-01-01"}}}});
    if (batch.size() == 1000) {
      ASSERT_FALSE(ca.call("record.put_many", {{"records", batch}}).contains("error"));
      batch = json::array();
    }
  }
  json sa, sb;
  std::thread ta([&] { sa = ca.call("sweep"); });
  std::thread tb([&] { sb = cb.call("sweep"); });
  ta.join();
  tb.join();
  ASSERT_TRUE(sa.contains("result")) << sa.dump();
  ASSERT_TRUE(sb.contains("result")) << sb.dump();
  std::cout << "[ split ] daemon A's sweep purged " << sa["result"]["purged"] << ", daemon B's " << sb["result"]["purged"]
            << " (the rest by A's scheduler)\n";
  EXPECT_LE(sa["result"]["purged"].get<int>() + sb["result"]["purged"].get<int>(), kRecords);
  // Each record purged once, by one of them; nothing left; one chain.
  EXPECT_EQ(count_rows("two_daemons", "SELECT count(*) FROM retentiond.records"), "0");
  EXPECT_EQ(count_rows("two_daemons", "SELECT count(*), count(DISTINCT key) FROM retentiond.audit WHERE action = 'purge'"),
            std::to_string(kRecords) + "|" + std::to_string(kRecords));
  EXPECT_EQ(count_rows("two_daemons", "SELECT count(*) FROM retentiond.keys"), "0");
  EXPECT_EQ(count_rows("two_daemons", "SELECT max(seq) = count(*) FROM retentiond.audit"), "t");
  for (Client* c : {&ca, &cb}) {
    const json v = result_of(c->call("audit.verify", {{"full", true}}));
    EXPECT_EQ(v["ok"], true) << v.dump();
    const json status = result_of(c->call("status"));
    EXPECT_EQ(status["records"]["active"], 0);
    // Both daemons are seen as active on the database, by host and pid.
    EXPECT_EQ(status["store"]["backend"], "postgresql");
    std::set<std::int64_t> pids;
    for (const auto& d : status["store"]["daemons"]) pids.insert(d["pid"].get<std::int64_t>());
    EXPECT_EQ(pids, (std::set<std::int64_t>{a->pid(), b->pid()})) << status.dump();
  }
  // retentionctl status says it too.
  const auto ctl = run_ctl({"--socket", a->socket().string(), "status"});
  EXPECT_EQ(ctl.exit_code, 0) << ctl.err;
  EXPECT_NE(ctl.out.find("postgresql, 2 daemon(s): "), std::string::npos) << ctl.out;
  EXPECT_NE(ctl.out.find("pid " + std::to_string(b->pid())), std::string::npos) << ctl.out;

  // A reload on one daemon reaches the other: B refuses to act under the
  // older policy until it is reloaded with the new one.
  std::string next = policy;
  next += "[[categories]]\nname = \"new\"\npurpose = \"added\"\nlegal_basis = \"consent\"\n"
          "phases = [ { action = \"purge\", at = \"collected + 1 year\" } ]\n";
  for (const auto* d : {&a_dir, &b_dir}) std::ofstream(d->path() / "pg.toml") << next;
  const json reloaded = ca.call("config.reload");
  ASSERT_TRUE(reloaded.contains("result")) << reloaded.dump();
  const json put = {{"key", "late"}, {"subject", "S1"}, {"category", "long"}, {"fields", {{"v", "y"}}}};
  const json refused = cb.call("record.put", put);
  ASSERT_TRUE(refused.contains("error")) << refused.dump();
  EXPECT_EQ(refused["error"]["data"]["reason"], "stale_policy") << refused.dump();
  EXPECT_NE(refused["error"]["message"].get<std::string>().find("reload it"), std::string::npos);
  EXPECT_EQ(count_rows("two_daemons", "SELECT count(*) FROM retentiond.records"), "0");  // nothing was changed
  ASSERT_TRUE(cb.call("config.reload").contains("result"));
  EXPECT_TRUE(cb.call("record.put", put).contains("result"));
  EXPECT_TRUE(ca.call("record.get", {{"key", "late"}}).contains("result"));

  // One daemon killed while both sweep: its open batch rolls back with its
  // connection, the other one finishes; still each record acted on once.
  batch = json::array();
  for (int i = 0; i < kRecords; ++i) {
    batch.push_back({{"key", "m" + std::to_string(i)}, {"subject", "S1"}, {"category", "gone"}, {"fields", {{"v", "x"}}},
                     {"dates", {{"collected", "2020-01-01"}}}});
    if (batch.size() == 1000) {
      ASSERT_FALSE(cb.call("record.put_many", {{"records", batch}}).contains("error"));
      batch = json::array();
    }
  }
  const auto a_backends = backends_of("two_daemons", a->pid());
  ASSERT_FALSE(a_backends.empty());
  ca.send_line(R"({"jsonrpc":"2.0","id":99,"method":"sweep"})");
  std::thread tb2([&] { sb = cb.call("sweep"); });
  a->stop(SIGKILL);
  wait_exit(a_backends);  // the server has seen A go (and rolled back its open batch)
  tb2.join();
  ASSERT_TRUE(sb.contains("result")) << sb.dump();
  ASSERT_TRUE(cb.call("sweep").contains("result"));
  EXPECT_EQ(count_rows("two_daemons", "SELECT count(*) FROM retentiond.records WHERE key LIKE 'm%'"), "0");
  EXPECT_EQ(count_rows("two_daemons", "SELECT count(*), count(DISTINCT key) FROM retentiond.audit "
                                      "WHERE action = 'purge' AND key LIKE 'm%'"),
            std::to_string(kRecords) + "|" + std::to_string(kRecords));
  EXPECT_EQ(result_of(cb.call("audit.verify", {{"full", true}}))["ok"], true);
  const json status = result_of(cb.call("status"));
  ASSERT_EQ(status["store"]["daemons"].size(), 1u) << status.dump();  // the killed one is gone
  EXPECT_EQ(status["store"]["daemons"][0]["pid"], b->pid());
}

// A daemon with another secret would write subject refs the others cannot
// match (an erasure by subject would miss records): refused at start.
TEST(PostgreSQL, ADaemonWithAnotherSecretIsRefused) {
  auto& cluster = PgCluster::shared();
  const std::string url = cluster.create_database("two_secrets");
  TempDir a_dir, b_dir;
  for (const auto* d : {&a_dir, &b_dir}) std::ofstream(d->path() / "pg.toml") << policy_for(url);
  DaemonProcess a(a_dir.path(), {"--config", (a_dir.path() / "pg.toml").string()});
  const auto b = run_command(retentiond_binary() + " --config " + (b_dir.path() / "pg.toml").string() + " --state-dir " +
                             (b_dir.path() / "state").string() + " --socket " + (b_dir.path() / "admin.sock").string() +
                             " 2>&1");
  EXPECT_NE(b.exit_code, 0);
  EXPECT_NE(b.output.find("written by daemons with another secret"), std::string::npos) << b.output;
  // Given the same secret, it starts.
  std::filesystem::create_directories(b_dir.path() / "state");
  std::filesystem::copy_file(a_dir.path() / "state" / "secret", b_dir.path() / "state" / "secret",
                             std::filesystem::copy_options::overwrite_existing);
  DaemonProcess b_again(b_dir.path(), {"--config", (b_dir.path() / "pg.toml").string()});
  Client client(b_again.socket());
  EXPECT_EQ(result_of(client.call("audit.verify"))["ok"], true);
}

// Where any of `needles` (32-byte keys) occur in the files under `dir`:
// how many of them are found anywhere.
std::size_t keys_found(const std::filesystem::path& dir, const std::vector<std::string>& needles,
                       std::set<std::string>* files = nullptr) {
  std::unordered_map<std::uint64_t, std::vector<const std::string*>> by_prefix;
  for (const auto& n : needles) {
    std::uint64_t p = 0;
    std::memcpy(&p, n.data(), 8);
    by_prefix[p].push_back(&n);
  }
  std::set<const std::string*> found;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (std::size_t at = 0; at + 32 <= bytes.size(); ++at) {
      std::uint64_t p = 0;
      std::memcpy(&p, bytes.data() + at, 8);
      const auto it = by_prefix.find(p);
      if (it == by_prefix.end()) continue;
      for (const auto* n : it->second) {
        if (bytes.compare(at, 32, *n) == 0 && found.insert(n).second && files) files->insert(entry.path().string());
      }
    }
  }
  return found.size();
}

// The record keys' one-time keys, as the database holds them.
std::map<std::string, std::string> keys_by_record(const std::string& db) {
  std::map<std::string, std::string> out;
  std::stringstream lines(count_rows(db, "SELECT r.key, encode(k.key, 'hex') FROM retentiond.records r "
                                         "JOIN retentiond.keys k ON k.slot = r.slot"));
  for (std::string line; std::getline(lines, line);) {
    const auto bar = line.find('|');
    std::string raw;
    for (std::size_t i = bar + 1; i + 1 < line.size(); i += 2) raw.push_back(static_cast<char>(std::stoi(line.substr(i, 2), nullptr, 16)));
    out[line.substr(0, bar)] = raw;
  }
  return out;
}

// Erasure on PostgreSQL: the key of a purged or erased record is readable
// from the server's files (WAL, dead tuples) until the key compaction; after
// it (here: when the daemon stops) no destroyed key is in any file of the
// data directory, and every kept one still is (the scan's control).
TEST(PostgreSQL, NoDestroyedKeyIsReadableFromTheServersFilesAfterTheKeyVacuum) {
  auto& cluster = PgCluster::shared();
  const std::string url = cluster.create_database("residue");
  TempDir dir;
  std::string policy = policy_for(url);
  policy.replace(policy.find("url = "), 0, "key_vacuum_interval = \"1 day\"\n");  // only the one at stop
  std::ofstream(dir.path() / "pg.toml") << policy;
  DaemonProcess daemon(dir.path(), {"--config", (dir.path() / "pg.toml").string(), "--now", "2030-01-01T00:00:00Z"});
  Client client(daemon.socket());
  json batch = json::array();
  for (int i = 0; i < 300; ++i) {
    const std::string n = std::to_string(i);
    batch.push_back({{"key", "g" + n}, {"subject", "S-GONE"}, {"category", "gone"}, {"fields", {{"v", n}}},
                     {"dates", {{"collected", "2020-01-01"}}}});
    batch.push_back({{"key", "e" + n}, {"subject", "S-ERASE-" + std::to_string(i % 10)}, {"category", "long"},
                     {"fields", {{"v", n}}}});
    batch.push_back({{"key", "k" + n}, {"subject", "S-KEPT"}, {"category", "long"}, {"fields", {{"v", n}}}});
  }
  ASSERT_FALSE(client.call("record.put_many", {{"records", batch}}).contains("error"));
  const auto keys = keys_by_record("residue");
  ASSERT_EQ(keys.size(), 900u);
  std::vector<std::string> destroyed, kept;
  for (const auto& [record, key] : keys) (record[0] == 'k' ? kept : destroyed).push_back(key);

  EXPECT_EQ(result_of(client.call("sweep"))["purged"], 300);
  for (int s = 0; s < 10; ++s) {
    const json erased = result_of(client.call("subject.erase", {{"subject", "S-ERASE-" + std::to_string(s)}, {"reason", "request"}}));
    EXPECT_EQ(erased["erased"].size(), 30u);
  }
  EXPECT_EQ(count_rows("residue", "SELECT count(*) FROM retentiond.keys"), "300");
  // Before the compaction the destroyed keys are still in the server's files
  // (the WAL at least): the scan can fail.
  std::set<std::string> where;
  EXPECT_GT(keys_found(cluster.data_dir(), destroyed, &where), 0u);
  ASSERT_EQ(daemon.stop(SIGTERM), 0);  // the last compaction

  where.clear();
  EXPECT_EQ(keys_found(cluster.data_dir(), destroyed, &where), 0u)
      << "destroyed keys readable in: " << [&] {
           std::string out;
           for (const auto& f : where) out += f + " ";
           return out;
         }();
  EXPECT_EQ(keys_found(cluster.data_dir(), kept), kept.size());  // control: the live keys are there
}

// retentiond --migrate-store: a SQLite state (records in both places and
// every state, a hold, one record in the undo window, the audit log) into
// an empty database; the daemon then runs on it with everything there.
TEST(PostgreSQL, MigrateStoreCopiesASqliteStateWithItsChainIntact) {
  auto& cluster = PgCluster::shared();
  const std::string url = cluster.create_database("migrated");
  TempDir dir;
  std::string sqlite_policy = policy_for(url);
  sqlite_policy.erase(sqlite_policy.find("[store]"), sqlite_policy.find("[[categories]]") - sqlite_policy.find("[store]"));
  sqlite_policy.replace(sqlite_policy.find("state_dir = \"unused\""), 20, "state_dir = \"unused\"\npurge_grace = \"30 days\"");
  std::ofstream(dir.path() / "sqlite.toml") << sqlite_policy;
  std::string pg_policy = policy_for(url);
  pg_policy.replace(pg_policy.find("state_dir = \"unused\""), 20, "state_dir = \"unused\"\npurge_grace = \"30 days\"");
  std::ofstream(dir.path() / "pg.toml") << pg_policy;
  const std::vector<std::string> now = {"--now", "2030-01-01T00:00:00Z"};
  json before_status, before_verify, held;
  {
    DaemonProcess daemon(dir.path(), {"--config", (dir.path() / "sqlite.toml").string(), now[0], now[1]});
    Client client(daemon.socket());
    json batch = json::array();
    for (int i = 0; i < 40; ++i) {
      const std::string n = std::to_string(i);
      for (const char* c : {"gone", "anon", "arch", "long"}) {
        batch.push_back({{"key", std::string(c) + n}, {"subject", "S" + n}, {"category", c},
                         {"fields", {{"v", "value-" + n}, {"kept", "kept-" + n}}}, {"dates", {{"collected", "2020-01-01"}}}});
      }
    }
    ASSERT_FALSE(client.call("record.put_many", {{"records", batch}}).contains("error"));
    held = result_of(client.call("hold.place", {{"key", "long1"}, {"reason", "litigation"}}));
    ASSERT_TRUE(client.call("hold.place", {{"key", "long2"}, {"reason", "audit"}}).contains("result"));
    ASSERT_TRUE(client.call("hold.release", {{"id", held["id"]}}).contains("result"));  // ids: 1 released, 2 kept
    ASSERT_TRUE(client.call("sweep").contains("result"));
    before_status = result_of(client.call("status"));
    before_verify = result_of(client.call("audit.verify", {{"full", true}}));
    ASSERT_EQ(daemon.stop(SIGTERM), 0);
  }
  const auto state = dir.path() / "state";
  const auto pg_state = dir.path() / "pg-state";
  const auto migrate = [&] {
    return run_command(retentiond_binary() + " --config " + (dir.path() / "pg.toml").string() + " --state-dir " +
                       pg_state.string() + " --migrate-store " + state.string() + " 2>&1");
  };
  const auto r = migrate();
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("migrated " + state.string()), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("40 in the undo window"), std::string::npos) << r.output;
  // The source's secret is now the target configuration's.
  EXPECT_EQ(run_command("cmp " + (state / "secret").string() + " " + (pg_state / "secret").string()).exit_code, 0);
  // A second run finds the target filled and changes nothing.
  const auto again = migrate();
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.output.find("already holds a state"), std::string::npos) << again.output;

  DaemonOptions o;
  o.pass_state_dir = false;
  DaemonProcess daemon(dir.path(), {"--config", (dir.path() / "pg.toml").string(), "--state-dir", pg_state.string(),
                                    now[0], now[1]}, o);
  Client client(daemon.socket());
  const json verify = result_of(client.call("audit.verify", {{"full", true}}));
  EXPECT_EQ(verify["ok"], true) << verify.dump();
  EXPECT_EQ(verify["checked"], before_verify["checked"]);
  EXPECT_EQ(verify["head"], before_verify["head"]);
  const json status = result_of(client.call("status"));
  EXPECT_EQ(status["records"], before_status["records"]);
  EXPECT_EQ(status["holds"], 1);
  EXPECT_EQ(status["policy"]["hash"], before_status["policy"]["hash"]);
  EXPECT_EQ(result_of(client.call("record.get", {{"key", "arch5"}, {"include_archived", true}}))["fields"]["v"], "value-5");
  EXPECT_EQ(result_of(client.call("record.get", {{"key", "anon5"}}))["fields"]["kept"], "kept-5");
  // The hold kept its id: releasing id 2 works and names it.
  EXPECT_TRUE(client.call("hold.release", {{"id", 2}}).contains("result"));
  // A purge within the undo window can still be undone, with its values.
  EXPECT_TRUE(client.call("record.restore", {{"key", "gone7"}, {"reason", "mistake"}}).contains("result"));
  EXPECT_EQ(result_of(client.call("record.get", {{"key", "gone7"}}))["fields"]["v"], "value-7");
  // Subject refs still match: an erasure by subject finds the migrated records.
  const json erased = result_of(client.call("subject.erase", {{"subject", "S9"}, {"reason", "request"}}));
  EXPECT_EQ(erased["erased"].size(), 2u) << erased.dump();  // long9 and arch9
  EXPECT_EQ(result_of(client.call("audit.verify", {{"full", true}}))["ok"], true);
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
