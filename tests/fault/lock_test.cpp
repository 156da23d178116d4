// A competing writer (issue 5, fault injection): another SQLite connection
// holds BEGIN EXCLUSIVE or BEGIN IMMEDIATE on retention.db or archive.db
// while the daemon is asked to put and to sweep. A call that needs what the
// lock holds answers storage_error (after the busy timeout, or at once when
// SQLite sees that waiting could deadlock), a pass logs sweep.failed and is
// retried, status still answers, and nothing is half-done; once the lock is
// released the call succeeds and the scheduler's retry finishes the pass.
// The times are measured and printed, not asserted.

#include <gtest/gtest.h>
#include <signal.h>

#include <SQLiteCpp/SQLiteCpp.h>

#include <chrono>
#include <fstream>
#include <iostream>

#include "tests/fault/fault_support.hpp"

namespace retentiond::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// Long enough for several busy timeouts (5 s each) queued on the one loop.
constexpr auto kReplyWait = 60s;
constexpr auto kRetryWait = 90s;

struct LockCase {
  const char* db = "retention.db";
  DatabaseLock::Mode mode = DatabaseLock::Mode::exclusive;
  // What a record.put of a new key can still do under this lock: it reads
  // both databases and writes only retention.db.
  bool put_succeeds = false;
  // Whether purges of active records (retention.db only) can still commit
  // in the batches before the first archive move.
  bool purges_may_commit = false;
};

void PrintTo(const LockCase& c, std::ostream* out) {
  *out << c.db << (c.mode == DatabaseLock::Mode::exclusive ? " EXCLUSIVE" : " IMMEDIATE");
}

std::string name_of(const ::testing::TestParamInfo<LockCase>& info) {
  std::string db = info.param.db;
  db = db.substr(0, db.find('.'));
  return db + (info.param.mode == DatabaseLock::Mode::exclusive ? "Exclusive" : "Immediate");
}

class CompetingWriter : public ::testing::TestWithParam<LockCase> {
 protected:
  void SetUp() override {
    std::ofstream(m_dir.path() / "p.toml") << fault_policy();
    m_daemon = m_log.start(m_dir.path(), {"--config", (m_dir.path() / "p.toml").string(), "--now", kFaultNow});
    m_client = std::make_unique<Client>(m_daemon->socket());
  }

  std::filesystem::path state() const { return m_dir.path() / "state"; }

  // Rows as the files hold them, read beside the lock: through the locking
  // connection for its own file (which the lock does not block) and a
  // read-only connection for the other one.
  struct Rows {
    std::int64_t active = 0, archived = 0, audit = 0;
  };
  Rows rows_beside(DatabaseLock& lock) const {
    const bool main_locked = std::string(GetParam().db) == "retention.db";
    Rows r;
    SQLite::Database other((state() / (main_locked ? "archive.db" : "retention.db")).string(), SQLite::OPEN_READONLY);
    other.setBusyTimeout(10000);
    if (main_locked) {
      r.active = lock.count("SELECT count(*) FROM records");
      r.audit = lock.count("SELECT count(*) FROM audit");
      r.archived = other.execAndGet("SELECT count(*) FROM records").getInt64();
    } else {
      r.archived = lock.count("SELECT count(*) FROM records");
      r.active = other.execAndGet("SELECT count(*) FROM records").getInt64();
      r.audit = other.execAndGet("SELECT count(*) FROM audit").getInt64();
    }
    return r;
  }

  TempDir m_dir;
  LogFile m_log{m_dir.path() / "daemon.log"};
  std::unique_ptr<DaemonProcess> m_daemon;
  std::unique_ptr<Client> m_client;
};

TEST_P(CompetingWriter, CallsFailWithStorageErrorNothingIsHalfDoneAndTheRetryFinishesOnceReleased) {
  const LockCase c = GetParam();
  ASSERT_EQ(result_of(m_client->call("record.put_many", {{"records", records("lead-", 5, "lead", "ann", "2020-01-01")}}))["count"], 5);
  ASSERT_EQ(result_of(m_client->call("record.put_many", {{"records", records("inv-", 5, "invoice", "ann", "2025-01-01")}}))["count"], 5);
  const Snapshot before = snapshot(*m_client);
  ASSERT_EQ(before.records["active"], 10) << "a timer pass ran before the fault; the test needs them still due";

  auto lock = std::make_unique<DatabaseLock>(state() / c.db, c.mode);
  const auto put_started = std::chrono::steady_clock::now();
  const auto put = call_within(*m_client, "record.put", records("new-", 1, "lead", "bob", "2029-06-01")[0], kReplyWait);
  const auto put_ms = ms_since(put_started);
  if (c.put_succeeds) {
    ASSERT_TRUE(put.has_value());
    EXPECT_EQ(reason_of(*put), "") << put->dump();
  } else {
    expect_storage_error(put, std::string("record.put with ") + c.db + " locked");
  }

  // The sweep on one connection, status on another while it runs.
  Client sweeper(m_daemon->socket());
  const auto sweep_started = std::chrono::steady_clock::now();
  sweeper.send_line(R"({"jsonrpc":"2.0","id":1,"method":"sweep"})");
  Client watcher(m_daemon->socket());
  const auto status_started = std::chrono::steady_clock::now();
  const auto status = call_within(watcher, "status", nullptr, kReplyWait);
  const auto status_ms = ms_since(status_started);
  ASSERT_TRUE(status.has_value()) << "status did not answer while the database was locked";
  const auto sweep_line = sweeper.read_line(kReplyWait);
  const auto sweep_ms = ms_since(sweep_started);
  ASSERT_TRUE(sweep_line.has_value()) << "sweep did not answer";
  const json sweep = json::parse(*sweep_line);
  expect_storage_error(sweep, std::string("sweep with ") + c.db + " locked");
  ASSERT_TRUE(m_log.wait_for({"sweep.failed", "actor=uid:0"}, 10s)) << "no sweep.failed for the sweep";
  ASSERT_TRUE(m_log.wait_for({"sweep.failed", "actor=scheduler"}, kRetryWait)) << "no retry logged while locked";

  // Nothing half-done, read from the files beside the lock: no invoice
  // moved, and a lead is either untouched or purged with its entry.
  const Rows during = rows_beside(*lock);
  EXPECT_EQ(during.archived, 0);
  const std::int64_t purged = 10 + (c.put_succeeds ? 1 : 0) - during.active;
  EXPECT_EQ(during.audit, before.audit_entries + purged) << "an action without its audit entry, or the reverse";
  if (!c.purges_may_commit) {
    EXPECT_EQ(purged, 0) << "nothing can commit under this lock";
  }
  std::cout << "[ measured ] " << c.db << (c.mode == DatabaseLock::Mode::exclusive ? " EXCLUSIVE" : " IMMEDIATE")
            << ": record.put " << put_ms << " ms (" << (put && reason_of(*put).empty() ? "ok" : "storage_error")
            << "), sweep " << sweep_ms << " ms, status while sweeping " << status_ms << " ms ("
            << (reason_of(*status).empty() ? "ok" : reason_of(*status)) << "), purged before the failing batch "
            << purged << "; the sweep's error: " << sweep["error"].value("message", std::string()) << '\n';

  lock->release();
  ASSERT_TRUE(m_log.wait_for({"sweep.done", "actor=scheduler", "archived=5"}, kRetryWait))
      << "the scheduler's retry did not finish the pass once the lock was released";
  if (!c.put_succeeds) result_of(m_client->call("record.put", records("new-", 1, "lead", "bob", "2029-06-01")[0]));
  const Snapshot after = snapshot(*m_client);
  EXPECT_EQ(after.records["active"], 1);
  EXPECT_EQ(after.records["archived"], 5);
  EXPECT_TRUE(after.audit_ok);
  EXPECT_EQ(after.audit_entries, before.audit_entries + 10);
  EXPECT_EQ(result_of(m_client->call("record.get", {{"key", "inv-4"}, {"include_archived", true}}))["fields"]["n"], 4);
  EXPECT_EQ(result_of(m_client->call("record.explain", {{"key", "lead-4"}}))["state"], "purged");

  m_client.reset();
  ASSERT_EQ(m_daemon->stop(SIGTERM), 0);
  const auto report = check_state(state());
  for (const auto& p : report.problems) ADD_FAILURE() << "state: " << p;
  EXPECT_EQ(report.live_keys, 6);
}

INSTANTIATE_TEST_SUITE_P(
    Locks, CompetingWriter,
    ::testing::Values(LockCase{"retention.db", DatabaseLock::Mode::exclusive, false, false},
                      LockCase{"retention.db", DatabaseLock::Mode::immediate, false, false},
                      LockCase{"archive.db", DatabaseLock::Mode::exclusive, false, false},
                      LockCase{"archive.db", DatabaseLock::Mode::immediate, false, false}),
    name_of);

}  // namespace
}  // namespace retentiond::testing
