// Unwritable files (issue 5, fault injection): retention.db-wal or the key
// file made immutable (chattr +i) under the running daemon, and
// retention.db or the key file at start-up. The tests run as root, which
// file modes do not stop, and a chmod would not reach the descriptors the
// daemon already holds; the immutable attribute refuses writes through
// them too. A call that must write there answers storage_error, a pass logs
// sweep.failed and is retried, nothing is half-done, and clearing the
// attribute lets the retry finish.

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

constexpr auto kReplyWait = 60s;
constexpr auto kRetryWait = 90s;

class Unwritable : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(m_dir.path() / "p.toml") << fault_policy();
    start();
  }

  std::vector<std::string> args() const { return {"--config", (m_dir.path() / "p.toml").string(), "--now", kFaultNow}; }
  std::filesystem::path state() const { return m_dir.path() / "state"; }

  void start() {
    m_daemon = m_log.start(m_dir.path(), args());
    m_client = std::make_unique<Client>(m_daemon->socket());
  }

  StateReport stop_and_check() {
    m_client.reset();
    EXPECT_EQ(m_daemon->stop(SIGTERM), 0);
    m_daemon.reset();
    auto report = check_state(state());
    for (const auto& p : report.problems) ADD_FAILURE() << "state: " << p;
    return report;
  }

  json put_many(const json& recs) { return m_client->call("record.put_many", {{"records", recs}}); }

  TempDir m_dir;
  LogFile m_log{m_dir.path() / "daemon.log"};
  std::unique_ptr<DaemonProcess> m_daemon;
  std::unique_ptr<Client> m_client;
};

// Every commit appends its pages to retention.db-wal (the database file
// itself is written only by checkpoints): with the WAL immutable no change
// can commit. Reads come from the committed state (retention.db and the
// WAL's committed frames, which stay readable), so they keep answering.
TEST_F(Unwritable, ArchiveSweepWithAnImmutableWalFailsReadsStillAnswerAndTheRetryArchivesOnceCleared) {
  ASSERT_EQ(result_of(put_many(records("inv-", 5, "invoice", "ann", "2025-01-01", 100)))["count"], 5);
  ASSERT_EQ(result_of(put_many(records("keep-", 1, "lead", "ann", "2029-06-01")))["count"], 1);
  const Snapshot before = snapshot(*m_client);
  ASSERT_EQ(before.records["active"], 6) << "a timer pass ran before the fault; the test needs them still due";
  ASSERT_TRUE(std::filesystem::exists(state() / "retention.db-wal")) << "retention.db is not in WAL mode?";

  Immutable fault(state() / "retention.db-wal");
  if (!fault.set()) GTEST_SKIP() << "the immutable attribute is not available here: " << fault.error();

  const auto sweep = call_within(*m_client, "sweep", nullptr, kReplyWait);
  expect_storage_error(sweep, "sweep with retention.db-wal immutable");
  ASSERT_TRUE(m_log.wait_for({"sweep.failed", "actor=uid:0"}, 10s)) << "no sweep.failed for the sweep";
  ASSERT_TRUE(m_log.wait_for({"sweep.failed", "actor=scheduler"}, kRetryWait)) << "no retry logged";

  // Still serving every read, nothing moved, no entry for the move that
  // failed; a change (a put of a new key) fails whole.
  const auto started = std::chrono::steady_clock::now();
  const auto status = call_within(*m_client, "status", nullptr, kReplyWait);
  const auto status_ms = ms_since(started);
  ASSERT_TRUE(status.has_value()) << "status did not answer";
  EXPECT_EQ(reason_of(*status), "") << status->dump();
  EXPECT_EQ((*status)["result"]["records"], before.records);
  const json verify = result_of(m_client->call("audit.verify"));
  EXPECT_EQ(verify["entries"], before.audit_entries);
  EXPECT_EQ(verify["head"], before.audit_head);
  const json inv = result_of(m_client->call("record.get", {{"key", "inv-3"}}));
  EXPECT_EQ(inv["state"], "active");
  EXPECT_EQ(inv["fields"]["text"], std::string(100, 'd'));
  EXPECT_TRUE(result_of(m_client->call("audit.tail", {{"key", "inv-3"}}))["entries"].empty());
  EXPECT_EQ(reason_of(m_client->call("record.get", {{"key", "new-0"}})), "not_found");
  expect_storage_error(m_client->call("record.put", records("new-", 1, "lead", "bob", "2029-06-01")[0]),
                       "record.put with retention.db-wal immutable");
  EXPECT_EQ(reason_of(m_client->call("record.get", {{"key", "new-0"}})), "not_found");
  {
    SQLite::Database db((state() / "retention.db").string(), SQLite::OPEN_READONLY);
    EXPECT_EQ(db.execAndGet("SELECT count(*) FROM records WHERE key LIKE 'inv-%'").getInt64(), 5);
    EXPECT_EQ(db.execAndGet("SELECT count(*) FROM archive").getInt64(), 0);
  }
  std::cout << "[ measured ] with retention.db-wal immutable: status " << status_ms << " ms; the sweep's error: "
            << (*sweep)["error"].value("message", std::string()) << '\n';

  fault.clear();
  ASSERT_TRUE(m_log.wait_for({"sweep.done", "actor=scheduler", "archived=5"}, kRetryWait))
      << "the scheduler's retry did not archive once retention.db-wal was writable";
  result_of(m_client->call("record.put", records("new-", 1, "lead", "bob", "2029-06-01")[0]));
  const Snapshot after = snapshot(*m_client);
  EXPECT_EQ(after.records["active"], 2);
  EXPECT_EQ(after.records["archived"], 5);
  EXPECT_TRUE(after.audit_ok);
  EXPECT_EQ(after.audit_entries, before.audit_entries + 5);
  EXPECT_EQ(result_of(m_client->call("record.get", {{"key", "inv-3"}, {"include_archived", true}}))["fields"]["text"],
            std::string(100, 'd'));
  const auto state = stop_and_check();
  EXPECT_EQ(state.archived, 5);
  EXPECT_EQ(state.live_keys, 7);
}

// Every new record writes its key before the commit: with the key file
// immutable, a put must fail whole, and the key file must hold no key that
// no record uses.
TEST_F(Unwritable, PutWithAnImmutableKeyFileFailsWithStorageErrorAndStoresNothing) {
  ASSERT_EQ(result_of(put_many(records("before-", 2, "lead", "ann", "2029-06-01")))["count"], 2);
  const Snapshot before = snapshot(*m_client);

  Immutable fault(state() / "keys");
  if (!fault.set()) GTEST_SKIP() << "the immutable attribute is not available here: " << fault.error();
  expect_storage_error(m_client->call("record.put", records("new-", 1, "lead", "bob", "2029-06-01")[0]),
                       "record.put with the key file immutable");
  expect_storage_error(put_many(records("bulk-", 50, "lead", "bob", "2029-06-01")),
                       "record.put_many with the key file immutable");
  expect_storage_error(m_client->call("hold.place", {{"subject", "ann"}, {"reason", "litigation"}}),
                       "hold.place (a sealed target) with the key file immutable");
  EXPECT_EQ(snapshot(*m_client), before);
  EXPECT_EQ(result_of(m_client->call("record.get", {{"key", "before-1"}}))["fields"]["n"], 1);
  EXPECT_EQ(reason_of(m_client->call("record.get", {{"key", "new-0"}})), "not_found");
  EXPECT_TRUE(result_of(m_client->call("hold.list"))["holds"].empty());

  fault.clear();
  ASSERT_EQ(result_of(put_many(records("bulk-", 50, "lead", "bob", "2029-06-01")))["count"], 50);
  result_of(m_client->call("record.put", records("new-", 1, "lead", "bob", "2029-06-01")[0]));
  EXPECT_EQ(result_of(m_client->call("record.get", {{"key", "bulk-49"}}))["fields"]["n"], 49);
  const auto state = stop_and_check();
  EXPECT_EQ(state.active, 53);
  EXPECT_EQ(state.live_keys, 53);
}

// An archive move seals the record again under a new key in the archive:
// with the key file immutable the pass fails whole and is retried.
TEST_F(Unwritable, ArchiveSweepWithAnImmutableKeyFileFailsAndTheRetryArchivesOnceCleared) {
  ASSERT_EQ(result_of(put_many(records("inv-", 5, "invoice", "ann", "2025-01-01")))["count"], 5);
  const Snapshot before = snapshot(*m_client);
  ASSERT_EQ(before.records["active"], 5) << "a timer pass ran before the fault; the test needs them still due";

  Immutable fault(state() / "keys");
  if (!fault.set()) GTEST_SKIP() << "the immutable attribute is not available here: " << fault.error();
  expect_storage_error(call_within(*m_client, "sweep", nullptr, kReplyWait), "sweep with the key file immutable");
  ASSERT_TRUE(m_log.wait_for({"sweep.failed", "actor=uid:0"}, 10s));
  ASSERT_TRUE(m_log.wait_for({"sweep.failed", "actor=scheduler"}, kRetryWait)) << "no retry logged";
  EXPECT_EQ(snapshot(*m_client), before);

  fault.clear();
  ASSERT_TRUE(m_log.wait_for({"sweep.done", "actor=scheduler", "archived=5"}, kRetryWait));
  const auto state = stop_and_check();
  EXPECT_EQ(state.archived, 5);
  EXPECT_EQ(state.live_keys, 5);
}

// A purge writes no new key; it commits, and only the zeroing of the purged
// records' keys, after the commit, fails. operations.md ("Erasure"): the
// slots stay queued and are zeroed after the next commit or at the next
// start. Checked here: once the attribute is cleared, the next commit
// destroys every one of those keys.
TEST_F(Unwritable, KeysOfRecordsPurgedWhileTheKeyFileIsImmutableAreDestroyedByTheNextCommitOnceCleared) {
  ASSERT_EQ(result_of(put_many(records("lead-", 10, "lead", "ann", "2020-01-01")))["count"], 10);
  ASSERT_EQ(result_of(put_many(records("keep-", 1, "lead", "ann", "2029-06-01")))["count"], 1);
  {
    Immutable fault(state() / "keys");
    if (!fault.set()) GTEST_SKIP() << "the immutable attribute is not available here: " << fault.error();
    const json swept = result_of(m_client->call("sweep"));
    EXPECT_EQ(swept["purged"], 10);
    std::cout << "[ measured ] purge with the key file immutable: " << swept.dump() << "; log lines since: "
              << m_log.lines().size() << '\n';
  }
  // Any commit: a put of a new record.
  result_of(m_client->call("record.put", records("new-", 1, "lead", "bob", "2029-06-01")[0]));
  const auto state = stop_and_check();
  EXPECT_EQ(state.active, 2);
  EXPECT_EQ(state.live_keys, 2) << "a purged record's key survived";
}

// Start-up with retention.db or the key file unwritable: exit 3 with
// startup.failed, nothing changed, and a normal start once cleared. (The
// daemon's clean stop checkpoints and removes retention.db-wal and -shm:
// there is none to make immutable before a start.)
class UnwritableAtStart : public Unwritable, public ::testing::WithParamInterface<const char*> {};

std::string file_name(const ::testing::TestParamInfo<const char*>& file) {
  const std::string n = file.param;
  return n.substr(0, n.find('.'));
}

TEST_P(UnwritableAtStart, StartUpFailsCleanlyAndSucceedsOnceCleared) {
  ASSERT_EQ(result_of(put_many(records("lead-", 3, "lead", "ann", "2029-06-01")))["count"], 3);
  const auto first = stop_and_check();
  {
    Immutable fault(state() / GetParam());
    if (!fault.set()) GTEST_SKIP() << "the immutable attribute is not available here: " << fault.error();
    DaemonOptions options = m_log.options();
    options.record_notify = true;
    options.wait_ready = false;
    DaemonProcess daemon(m_dir.path(), args(), options);
    EXPECT_EQ(daemon.wait_notify("READY=1", 20s), std::nullopt) << "it started with " << GetParam() << " unwritable";
    EXPECT_EQ(daemon.stop(SIGKILL), 3) << "start-up failure is exit 3";
    const auto failed = m_log.wait_for({"startup.failed"}, 1s);
    EXPECT_TRUE(failed) << "no startup.failed line";
    std::cout << "[ measured ] start-up with " << GetParam() << " immutable: " << failed.value_or("?") << '\n';
  }
  start();
  EXPECT_EQ(result_of(m_client->call("status"))["records"]["active"], 3);
  const auto state = stop_and_check();
  EXPECT_EQ(state.audit, first.audit);
  EXPECT_EQ(state.live_keys, 3);
}

INSTANTIATE_TEST_SUITE_P(Files, UnwritableAtStart, ::testing::Values("keys", "retention.db"), file_name);

}  // namespace
}  // namespace retentiond::testing
