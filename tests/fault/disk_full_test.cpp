// Disk full (issue 5, fault injection): the daemon's state directory on a
// tmpfs of 8 MiB, filled by a filler file. Every write the daemon is asked
// for then answers storage_error (a scheduler pass logs sweep.failed and is
// retried), changes nothing the daemon shows or keeps on disk, and the
// daemon keeps serving; once the filler is gone the same operations succeed,
// and the scheduler's retry finishes the pass it could not do.
// The real binary, real sockets; needs root for the mount (skipped without).

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <iostream>

#include "tests/fault/fault_support.hpp"

namespace retentiond::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr std::uint64_t kFilesystemBytes = 8 << 20;
// The longest wait for the scheduler's retry: its back-off is 1, 2, 4... s.
constexpr auto kRetryWait = 90s;

class DiskFull : public ::testing::Test {
 protected:
  void SetUp() override {
    m_fs = std::make_unique<SmallFilesystem>(m_dir.path() / "state", kFilesystemBytes);
    if (!m_fs->mounted()) GTEST_SKIP() << m_fs->error();
    std::ofstream(m_dir.path() / "p.toml") << fault_policy();
  }

  void TearDown() override {
    m_client.reset();
    m_daemon.reset();
    m_fs.reset();
  }

  std::vector<std::string> args() const { return {"--config", (m_dir.path() / "p.toml").string(), "--now", kFaultNow}; }

  void start() {
    m_daemon = m_log.start(m_dir.path(), args());
    m_client = std::make_unique<Client>(m_daemon->socket());
  }

  // Stops the daemon (it must exit 0) and reads its state offline.
  StateReport stop_and_check() {
    m_client.reset();
    EXPECT_EQ(m_daemon->stop(SIGTERM), 0);
    m_daemon.reset();
    auto report = check_state(m_dir.path() / "state");
    for (const auto& p : report.problems) ADD_FAILURE() << "state: " << p;
    return report;
  }

  json put_many(const json& recs) { return m_client->call("record.put_many", {{"records", recs}}); }

  TempDir m_dir;
  LogFile m_log{m_dir.path() / "daemon.log"};
  std::unique_ptr<SmallFilesystem> m_fs;
  std::unique_ptr<DaemonProcess> m_daemon;
  std::unique_ptr<Client> m_client;
};

TEST_F(DiskFull, PutManyThatOverflowsANearlyFullDiskStoresNothingAndSucceedsOnceSpaceIsFreed) {
  start();
  ASSERT_EQ(result_of(put_many(records("before-", 1, "lead", "ann", "2029-06-01", 64)))["count"], 1);
  const Snapshot before = snapshot(*m_client);

  // 128 KiB left: the key file, the WAL and the first pages fit, the
  // whole batch (about 1.5 MiB) does not.
  m_fs->fill(128 << 10);
  const json batch = records("bulk-", 2000, "lead", "bob", "2029-06-01", 300);
  expect_storage_error(put_many(batch), "record.put_many on a nearly full disk");

  // Nothing stored, nothing audited, the earlier record whole, still serving.
  EXPECT_EQ(snapshot(*m_client), before);
  EXPECT_EQ(result_of(m_client->call("record.get", {{"key", "before-0"}}))["fields"]["text"], std::string(64, 'a'));
  EXPECT_EQ(reason_of(m_client->call("record.get", {{"key", "bulk-0"}})), "not_found");
  EXPECT_EQ(reason_of(m_client->call("record.get", {{"key", "bulk-1999"}})), "not_found");
  EXPECT_TRUE(result_of(m_client->call("subject.export", {{"subject", "bob"}}))["records"].empty());

  m_fs->release();
  ASSERT_EQ(result_of(put_many(batch))["count"], 2000);
  EXPECT_EQ(result_of(m_client->call("record.get", {{"key", "bulk-1999"}}))["fields"]["n"], 1999);
  EXPECT_EQ(result_of(m_client->call("status"))["records"]["active"], 2001);

  const auto state = stop_and_check();
  EXPECT_EQ(state.active, 2001);
  EXPECT_EQ(state.live_keys, 2001) << "one key per live record, none left by the failed batch";
}

TEST_F(DiskFull, PutOnAFullDiskIsRefusedAndTheDaemonKeepsServing) {
  start();
  ASSERT_EQ(result_of(put_many(records("before-", 3, "lead", "ann", "2029-06-01")))["count"], 3);
  const Snapshot before = snapshot(*m_client);
  m_fs->fill();

  expect_storage_error(m_client->call("record.put", records("new-", 1, "lead", "ann", "2029-06-01")[0]),
                       "record.put on a full disk");
  // Replacing an existing record needs space too: refused, old values kept.
  json replace = records("before-", 1, "lead", "ann", "2029-06-01", 500)[0];
  expect_storage_error(m_client->call("record.put", replace), "a replacing record.put on a full disk");
  EXPECT_EQ(snapshot(*m_client), before);
  EXPECT_EQ(result_of(m_client->call("record.get", {{"key", "before-0"}}))["fields"]["text"], std::string(16, 'a'));
  EXPECT_EQ(reason_of(m_client->call("record.get", {{"key", "new-0"}})), "not_found");

  m_fs->release();
  result_of(m_client->call("record.put", replace));
  EXPECT_EQ(result_of(m_client->call("record.get", {{"key", "before-0"}}))["fields"]["text"], std::string(500, 'a'));
  const auto state = stop_and_check();
  EXPECT_EQ(state.active, 3);
  EXPECT_EQ(state.live_keys, 3) << "the replaced values' key is destroyed, the failed attempts left none";
}

// The key file grows by 32 bytes per new key, written (and synced) as
// each record is sealed, before the commit; SQLite's own growth waits for
// the commit, in its page cache. With 64 KiB left, 4000 new keys (125 KiB)
// do not fit: the put fails on the key file before it reaches its commit.
TEST_F(DiskFull, PutManyWhoseKeysDoNotFitOnANearlyFullDiskStoresNothing) {
  start();
  ASSERT_EQ(result_of(put_many(records("before-", 10, "lead", "ann", "2029-06-01")))["count"], 10);
  const Snapshot before = snapshot(*m_client);
  const auto keys_before = std::filesystem::file_size(m_dir.path() / "state" / "keys");
  m_fs->fill(64 << 10);
  const json batch = records("bulk-", 4000, "lead", "bob", "2029-06-01", 0);
  expect_storage_error(put_many(batch), "record.put_many whose keys do not fit");
  EXPECT_EQ(snapshot(*m_client), before);
  EXPECT_EQ(reason_of(m_client->call("record.get", {{"key", "bulk-0"}})), "not_found");
  EXPECT_EQ(result_of(m_client->call("record.get", {{"key", "before-9"}}))["fields"]["n"], 9);
  std::cout << "[ measured ] key file " << keys_before << " bytes before, "
            << std::filesystem::file_size(m_dir.path() / "state" / "keys") << " after the failed batch\n";

  m_fs->release();
  ASSERT_EQ(result_of(put_many(batch))["count"], 4000);
  const auto state = stop_and_check();
  EXPECT_EQ(state.active, 4010);
  EXPECT_EQ(state.live_keys, 4010) << "the keys the failed batch wrote were zeroed";
}

// A pass that cannot write: the caller gets storage_error, the daemon logs
// sweep.failed and retries on its own; the retry after the space comes back
// does the whole pass.
TEST_F(DiskFull, PurgeSweepOnAFullDiskFailsIsLoggedAndTheRetryPurgesOnceSpaceIsFreed) {
  start();
  ASSERT_EQ(result_of(put_many(records("lead-", 50, "lead", "ann", "2020-01-01")))["count"], 50);
  ASSERT_EQ(result_of(put_many(records("keep-", 1, "lead", "ann", "2029-06-01")))["count"], 1);
  const Snapshot before = snapshot(*m_client);
  ASSERT_EQ(before.records["active"], 51) << "a timer pass ran before the fault; the test needs them still due";
  m_fs->fill();

  expect_storage_error(m_client->call("sweep"), "sweep (purge) on a full disk");
  ASSERT_TRUE(m_log.wait_for({"sweep.failed", "actor=uid:0", "retry_in=1s"}, 10s)) << "no sweep.failed for the sweep";
  // The scheduler's own retry, failing again while the disk is full.
  ASSERT_TRUE(m_log.wait_for({"sweep.failed", "actor=scheduler"}, kRetryWait)) << "no retry logged";
  EXPECT_EQ(snapshot(*m_client), before);
  EXPECT_EQ(result_of(m_client->call("record.get", {{"key", "lead-49"}}))["fields"]["n"], 49);
  EXPECT_TRUE(result_of(m_client->call("audit.tail", {{"key", "lead-0"}}))["entries"].empty());

  m_fs->release();
  ASSERT_TRUE(m_log.wait_for({"sweep.done", "actor=scheduler", "purged=50"}, kRetryWait))
      << "the scheduler did not finish the pass once the disk had room";
  const Snapshot after = snapshot(*m_client);
  EXPECT_EQ(after.records["active"], 1);
  EXPECT_TRUE(after.audit_ok);
  EXPECT_EQ(after.audit_entries, before.audit_entries + 50);
  EXPECT_EQ(result_of(m_client->call("record.explain", {{"key", "lead-0"}}))["state"], "purged");
  const auto state = stop_and_check();
  EXPECT_EQ(state.active, 1);
  EXPECT_EQ(state.live_keys, 1) << "the purged records' keys are destroyed";
}

TEST_F(DiskFull, ArchiveSweepOnAFullDiskMovesNothingAndTheRetryArchivesOnceSpaceIsFreed) {
  start();
  ASSERT_EQ(result_of(put_many(records("inv-", 50, "invoice", "ann", "2025-01-01", 200)))["count"], 50);
  const Snapshot before = snapshot(*m_client);
  ASSERT_EQ(before.records["active"], 50) << "a timer pass ran before the fault; the test needs them still due";
  m_fs->fill();

  expect_storage_error(m_client->call("sweep"), "sweep (archive) on a full disk");
  ASSERT_TRUE(m_log.wait_for({"sweep.failed", "actor=uid:0"}, 10s));
  ASSERT_TRUE(m_log.wait_for({"sweep.failed", "actor=scheduler"}, kRetryWait)) << "no retry logged";
  EXPECT_EQ(snapshot(*m_client), before);
  const json inv = result_of(m_client->call("record.get", {{"key", "inv-7"}}));
  EXPECT_EQ(inv["state"], "active");
  EXPECT_EQ(inv["fields"]["text"], std::string(200, 'h'));

  m_fs->release();
  ASSERT_TRUE(m_log.wait_for({"sweep.done", "actor=scheduler", "archived=50"}, kRetryWait))
      << "the scheduler did not finish the pass once the disk had room";
  const Snapshot after = snapshot(*m_client);
  EXPECT_EQ(after.records["active"], 0);
  EXPECT_EQ(after.records["archived"], 50);
  EXPECT_EQ(after.audit_entries, before.audit_entries + 50);
  EXPECT_TRUE(after.audit_ok);
  EXPECT_EQ(result_of(m_client->call("record.get", {{"key", "inv-7"}, {"include_archived", true}}))["fields"]["text"],
            std::string(200, 'h'));
  const auto state = stop_and_check();
  EXPECT_EQ(state.archived, 50);
  EXPECT_EQ(state.live_keys, 50) << "each archived record under one new key, the active copies' keys destroyed";
}

TEST_F(DiskFull, ErasureOnAFullDiskErasesNothingAndSucceedsOnceSpaceIsFreed) {
  start();
  ASSERT_EQ(result_of(put_many(records("lead-", 20, "lead", "alice", "2029-06-01")))["count"], 20);
  ASSERT_EQ(result_of(put_many(records("inv-", 5, "invoice", "alice", "2029-06-01")))["count"], 5);
  ASSERT_EQ(result_of(put_many(records("other-", 2, "lead", "bob", "2029-06-01")))["count"], 2);
  const Snapshot before = snapshot(*m_client);
  m_fs->fill();

  expect_storage_error(m_client->call("subject.erase", {{"subject", "alice"}, {"reason", "art. 17 request"}}),
                       "subject.erase on a full disk");
  EXPECT_EQ(snapshot(*m_client), before);
  // An export is an access to personal data, audited like a change: when its
  // entry cannot be written, it is refused too.
  expect_storage_error(m_client->call("subject.export", {{"subject", "alice"}}), "subject.export on a full disk");
  EXPECT_EQ(snapshot(*m_client), before);
  EXPECT_TRUE(result_of(m_client->call("audit.tail", {{"subject", "alice"}}))["entries"].empty());

  m_fs->release();
  EXPECT_EQ(result_of(m_client->call("subject.export", {{"subject", "alice"}}))["records"].size(), 25u);
  const json erased = result_of(m_client->call("subject.erase", {{"subject", "alice"}, {"reason", "art. 17 request"}}));
  EXPECT_EQ(erased["erased"].size(), 25u);
  EXPECT_TRUE(result_of(m_client->call("subject.export", {{"subject", "alice"}}))["records"].empty());
  // 25 erasures and the two exports.
  EXPECT_EQ(result_of(m_client->call("audit.verify"))["entries"], before.audit_entries + 25 + 2);
  const auto state = stop_and_check();
  EXPECT_EQ(state.active, 2);
  EXPECT_EQ(state.live_keys, 2) << "every erased record's key is destroyed";
}

// Start-up on a full disk, in a new state directory: the secret, the key
// file and the databases cannot be created. The daemon must stop with the
// start-up error (exit 3, startup.failed), not crash or hang.
TEST_F(DiskFull, StartingInANewStateDirectoryOnAFullDiskFailsCleanly) {
  m_fs->fill();
  DaemonOptions options = m_log.options();
  options.record_notify = true;
  options.wait_ready = false;
  DaemonProcess daemon(m_dir.path(), args(), options);
  EXPECT_EQ(daemon.wait_notify("READY=1", 20s), std::nullopt) << "it started with no room for its state";
  EXPECT_EQ(daemon.stop(SIGKILL), 3) << "start-up failure is exit 3";
  const auto failed = m_log.wait_for({"startup.failed"}, 1s);
  EXPECT_TRUE(failed) << "no startup.failed line";
  std::cout << "[ measured ] start-up on a full disk, new state: " << failed.value_or("no startup.failed line") << '\n';
}

// Start-up on a full disk with an existing state directory: the daemon may
// start (reads need no space) or refuse with exit 3; either way it must not
// change the state, and must work once there is room.
TEST_F(DiskFull, RestartingOnAFullDiskChangesNothingAndWorksOnceSpaceIsFreed) {
  start();
  ASSERT_EQ(result_of(put_many(records("lead-", 10, "lead", "ann", "2020-01-01")))["count"], 10);
  ASSERT_EQ(result_of(put_many(records("keep-", 2, "lead", "ann", "2029-06-01")))["count"], 2);
  const auto first = stop_and_check();
  ASSERT_EQ(first.active, 12);

  m_fs->fill();
  DaemonOptions options = m_log.options();
  options.record_notify = true;
  options.wait_ready = false;
  {
    DaemonProcess daemon(m_dir.path(), args(), options);
    if (daemon.wait_notify("READY=1", 20s)) {
      // Started: it serves, and its catch-up pass (10 records overdue)
      // fails and is logged, to be retried.
      Client client(daemon.socket());
      const json status = result_of(client.call("status"));
      EXPECT_EQ(status["records"]["active"], 12);
      EXPECT_TRUE(m_log.wait_for({"sweep.failed", "actor=scheduler"}, kRetryWait)) << "the catch-up pass did not fail?";
      std::cout << "[ measured ] restart on a full disk: started; status answered, catch-up pass failed and logged\n";
      EXPECT_EQ(daemon.stop(SIGTERM), 0);
    } else {
      EXPECT_EQ(daemon.stop(SIGKILL), 3) << "start-up failure is exit 3";
      const auto failed = m_log.wait_for({"startup.failed"}, 1s);
      EXPECT_TRUE(failed) << "no startup.failed line";
      std::cout << "[ measured ] restart on a full disk: refused: " << failed.value_or("?") << '\n';
    }
  }
  const auto during = check_state(m_dir.path() / "state");
  for (const auto& p : during.problems) ADD_FAILURE() << "state after the start on a full disk: " << p;
  EXPECT_EQ(during.active, 12);
  EXPECT_EQ(during.audit, first.audit);

  m_fs->release();
  start();
  // The catch-up pass at start-up, or this sweep, purges the 10 overdue.
  result_of(m_client->call("sweep"));
  EXPECT_EQ(result_of(m_client->call("status"))["records"]["active"], 2);
  const auto state = stop_and_check();
  EXPECT_EQ(state.active, 2);
  EXPECT_EQ(state.live_keys, 2);
}

// The same restart after a purge: the purged records' key slots wait in a
// list of key_slot_lists not yet marked zeroed (zeroed, to be recorded as
// free by the next transaction), so start-up has a write to do.
TEST_F(DiskFull, RestartingOnAFullDiskAfterAPurgeChangesNothingAndWorksOnceSpaceIsFreed) {
  start();
  ASSERT_EQ(result_of(put_many(records("lead-", 10, "lead", "ann", "2020-01-01")))["count"], 10);
  ASSERT_EQ(result_of(put_many(records("keep-", 2, "lead", "ann", "2029-06-01")))["count"], 2);
  EXPECT_EQ(result_of(m_client->call("sweep"))["purged"], 10);
  const auto first = stop_and_check();
  ASSERT_EQ(first.active, 2);

  m_fs->fill();
  DaemonOptions options = m_log.options();
  options.record_notify = true;
  options.wait_ready = false;
  {
    DaemonProcess daemon(m_dir.path(), args(), options);
    if (daemon.wait_notify("READY=1", 20s)) {
      Client client(daemon.socket());
      EXPECT_EQ(result_of(client.call("status"))["records"]["active"], 2);
      std::cout << "[ measured ] restart on a full disk after a purge: started\n";
      EXPECT_EQ(daemon.stop(SIGTERM), 0);
    } else {
      EXPECT_EQ(daemon.stop(SIGKILL), 3) << "start-up failure is exit 3";
      const auto failed = m_log.wait_for({"startup.failed"}, 1s);
      EXPECT_TRUE(failed) << "no startup.failed line";
      std::cout << "[ measured ] restart on a full disk after a purge: refused: " << failed.value_or("?") << '\n';
    }
  }
  const auto during = check_state(m_dir.path() / "state");
  for (const auto& p : during.problems) ADD_FAILURE() << "state after the start on a full disk: " << p;
  EXPECT_EQ(during.active, 2);
  EXPECT_EQ(during.audit, first.audit);

  m_fs->release();
  start();
  EXPECT_EQ(result_of(m_client->call("status"))["records"]["active"], 2);
  const auto state = stop_and_check();
  EXPECT_EQ(state.live_keys, 2);
}

}  // namespace
}  // namespace retentiond::testing
