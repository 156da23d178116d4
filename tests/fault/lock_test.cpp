// Competing connections on retention.db (issue 5, fault injection), which
// is in WAL mode: one writer at a time, readers on snapshots of their own.
//
// - A competing writer holds the write lock (BEGIN IMMEDIATE; in WAL mode
//   BEGIN EXCLUSIVE is the same) while the daemon is asked to put and to
//   sweep. Every change answers storage_error after the busy timeout, a
//   pass logs sweep.failed and is retried, nothing is half-done; reads
//   (status) are answered from the daemon's own snapshot without waiting
//   for the writer; once the lock is released the call succeeds and the
//   scheduler's retry finishes the pass.
// - A competing reader holds a long read transaction: no call fails or
//   waits for it, and its snapshot keeps showing the state from before.
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

// Long enough for several busy timeouts (5 s each) queued on the writer.
constexpr auto kReplyWait = 60s;
constexpr auto kRetryWait = 90s;

class CompetingConnection : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(m_dir.path() / "p.toml") << fault_policy();
    m_daemon = m_log.start(m_dir.path(), {"--config", (m_dir.path() / "p.toml").string(), "--now", kFaultNow});
    m_client = std::make_unique<Client>(m_daemon->socket());
  }

  std::filesystem::path state() const { return m_dir.path() / "state"; }

  // Rows as the file holds them, read through the competing connection (in
  // its transaction).
  struct Rows {
    std::int64_t active = 0, archived = 0, audit = 0;
  };
  static Rows rows_through(DatabaseLock& lock) {
    return {lock.count("SELECT count(*) FROM records"), lock.count("SELECT count(*) FROM archive"),
            lock.count("SELECT count(*) FROM audit")};
  }

  // Five leads overdue for purge, five invoices overdue for archiving.
  Snapshot put_due_records() {
    EXPECT_EQ(result_of(m_client->call("record.put_many", {{"records", records("lead-", 5, "lead", "ann", "2020-01-01")}}))["count"], 5);
    EXPECT_EQ(result_of(m_client->call("record.put_many", {{"records", records("inv-", 5, "invoice", "ann", "2025-01-01")}}))["count"], 5);
    return snapshot(*m_client);
  }

  TempDir m_dir;
  LogFile m_log{m_dir.path() / "daemon.log"};
  std::unique_ptr<DaemonProcess> m_daemon;
  std::unique_ptr<Client> m_client;
};

TEST_F(CompetingConnection, WithTheWriteLockHeldChangesFailWithStorageErrorReadsAnswerNothingIsHalfDoneAndTheRetryFinishesOnceReleased) {
  const Snapshot before = put_due_records();
  ASSERT_EQ(before.records["active"], 10) << "a timer pass ran before the fault; the test needs them still due";

  auto lock = std::make_unique<DatabaseLock>(state() / "retention.db", DatabaseLock::Mode::write);
  const auto put_started = std::chrono::steady_clock::now();
  const auto put = call_within(*m_client, "record.put", records("new-", 1, "lead", "bob", "2029-06-01")[0], kReplyWait);
  const auto put_ms = ms_since(put_started);
  expect_storage_error(put, "record.put with retention.db's write lock held");

  // The sweep on one connection, status on another while it waits for the
  // lock: status is a read, answered from a snapshot, so it comes back
  // while the sweep still waits (its answer takes the busy timeout).
  Client sweeper(m_daemon->socket());
  const auto sweep_started = std::chrono::steady_clock::now();
  sweeper.send_line(R"({"jsonrpc":"2.0","id":1,"method":"sweep"})");
  Client watcher(m_daemon->socket());
  const auto status_started = std::chrono::steady_clock::now();
  const auto status = call_within(watcher, "status", nullptr, kReplyWait);
  const auto status_ms = ms_since(status_started);
  ASSERT_TRUE(status.has_value()) << "status did not answer while the write lock was held";
  EXPECT_EQ(reason_of(*status), "") << status->dump();
  const bool sweep_still_waiting = !sweeper.read_line(0ms).has_value();
  EXPECT_TRUE(sweep_still_waiting) << "the sweep answered before status: did status wait for the writer?";
  EXPECT_EQ((*status)["result"]["records"], before.records);
  const auto sweep_line = sweep_still_waiting ? sweeper.read_line(kReplyWait) : std::optional<std::string>("?");
  const auto sweep_ms = ms_since(sweep_started);
  ASSERT_TRUE(sweep_line.has_value()) << "sweep did not answer";
  ASSERT_NE(*sweep_line, "?");
  const json sweep = json::parse(*sweep_line);
  expect_storage_error(sweep, "sweep with retention.db's write lock held");
  ASSERT_TRUE(m_log.wait_for({"sweep.failed", "actor=uid:0"}, 10s)) << "no sweep.failed for the sweep";
  ASSERT_TRUE(m_log.wait_for({"sweep.failed", "actor=scheduler"}, kRetryWait)) << "no retry logged while locked";

  // Nothing half-done, and nothing committed at all: no invoice moved, no
  // lead purged, no entry.
  const Rows during = rows_through(*lock);
  EXPECT_EQ(during.archived, 0);
  EXPECT_EQ(during.active, 10);
  EXPECT_EQ(during.audit, before.audit_entries);
  // Reads still answer while the retries fail.
  EXPECT_EQ(result_of(m_client->call("record.get", {{"key", "inv-4"}}))["fields"]["n"], 4);
  std::cout << "[ measured ] retention.db write lock held: record.put " << put_ms << " ms (storage_error), sweep "
            << sweep_ms << " ms, status while sweeping " << status_ms << " ms; the sweep's error: "
            << sweep["error"].value("message", std::string()) << '\n';

  lock->release();
  ASSERT_TRUE(m_log.wait_for({"sweep.done", "actor=scheduler", "archived=5"}, kRetryWait))
      << "the scheduler's retry did not finish the pass once the lock was released";
  result_of(m_client->call("record.put", records("new-", 1, "lead", "bob", "2029-06-01")[0]));
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

// A reader (a backup tool, an admin's sqlite3 shell) keeps a read
// transaction open for the whole test: every kind of change still commits
// at once, and the reader's snapshot still shows the state it began with.
TEST_F(CompetingConnection, ALongReadTransactionOnAnotherConnectionMakesNoCallFailOrWait) {
  const Snapshot before = put_due_records();
  ASSERT_EQ(before.records["active"], 10) << "a timer pass ran before the fault; the test needs them still due";

  DatabaseLock reader(state() / "retention.db", DatabaseLock::Mode::read);
  const Rows seen = rows_through(reader);
  ASSERT_EQ(seen.active, 10);

  const auto started = std::chrono::steady_clock::now();
  ASSERT_EQ(result_of(m_client->call("record.put", records("new-", 1, "lead", "bob", "2029-06-01")[0]))["key"], "new-0");
  ASSERT_EQ(result_of(m_client->call("record.put_many", {{"records", records("bulk-", 200, "lead", "bob", "2029-06-01")}}))["count"], 200);
  const json swept = result_of(m_client->call("sweep"));
  EXPECT_EQ(swept["purged"], 5);
  EXPECT_EQ(swept["archived"], 5);
  const json placed = result_of(m_client->call("hold.place", {{"subject", "bob"}, {"reason", "litigation"}}));
  result_of(m_client->call("hold.release", {{"id", placed["id"]}, {"reason", "settled"}}));
  EXPECT_EQ(result_of(m_client->call("subject.erase", {{"subject", "bob"}, {"reason", "art. 17 request"}}))["erased"].size(), 201u);
  const auto calls_ms = ms_since(started);

  // The daemon sees every change; the reader still sees its snapshot.
  const Snapshot after = snapshot(*m_client);
  EXPECT_EQ(after.records["active"], 0);
  EXPECT_EQ(after.records["archived"], 5);
  EXPECT_TRUE(after.audit_ok);
  EXPECT_EQ(after.audit_entries, before.audit_entries + 5 + 5 + 2 + 201);
  const Rows still = rows_through(reader);
  EXPECT_EQ(still.active, seen.active);
  EXPECT_EQ(still.archived, seen.archived);
  EXPECT_EQ(still.audit, seen.audit);
  const auto wal = std::filesystem::file_size(state() / "retention.db-wal");
  std::cout << "[ measured ] with a read transaction open on another connection: put, put_many (200), sweep, "
            << "hold.place/release and subject.erase (201) took " << calls_ms << " ms; retention.db-wal is " << wal
            << " bytes (no checkpoint can pass the reader's snapshot)\n";

  reader.release();
  m_client.reset();
  ASSERT_EQ(m_daemon->stop(SIGTERM), 0);
  const auto report = check_state(state());
  for (const auto& p : report.problems) ADD_FAILURE() << "state: " << p;
  EXPECT_EQ(report.active, 0);
  EXPECT_EQ(report.archived, 5);
  EXPECT_EQ(report.live_keys, 5);
}

}  // namespace
}  // namespace retentiond::testing
