// The fault tests' offline checker must be able to fail: damage a stopped
// daemon's state the ways a fault could, and check_state names each.

#include <gtest/gtest.h>
#include <signal.h>

#include <SQLiteCpp/SQLiteCpp.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "tests/fault/fault_support.hpp"

namespace retentiond::testing {
namespace {

using nlohmann::json;

bool mentions(const StateReport& r, const std::string& needle) {
  return std::any_of(r.problems.begin(), r.problems.end(), [&](const std::string& p) { return p.find(needle) != std::string::npos; });
}

class CheckState : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(m_dir.path() / "p.toml") << fault_policy();
    DaemonProcess daemon(m_dir.path(), {"--config", (m_dir.path() / "p.toml").string(), "--now", kFaultNow});
    Client client(daemon.socket());
    ASSERT_EQ(client.call("record.put_many", {{"records", records("lead-", 3, "lead", "ann", "2020-01-01")}})["result"]["count"], 3);
    ASSERT_EQ(client.call("sweep")["result"]["purged"], 3);
    ASSERT_EQ(client.call("record.put_many", {{"records", records("keep-", 2, "lead", "ann", "2029-06-01")}})["result"]["count"], 2);
    ASSERT_EQ(daemon.stop(SIGTERM), 0);
  }
  std::filesystem::path state() const { return m_dir.path() / "state"; }
  void write_key(std::int64_t slot, char byte) {
    std::fstream f(state() / "keys", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(slot * 32);
    const std::string key(32, byte);
    f.write(key.data(), 32);
  }
  TempDir m_dir;
};

TEST_F(CheckState, AcceptsTheStateOfACleanRun) {
  const auto r = check_state(state());
  EXPECT_TRUE(r.problems.empty()) << r.problems.front();
  EXPECT_EQ(r.active, 2);
  EXPECT_EQ(r.live_keys, 2);
  EXPECT_EQ(r.audit, 3);
}

TEST_F(CheckState, FindsAKeyLeftInTheSlotOfAPurgedRecord) {
  // Three slots were used by the purged records and zeroed; the two live
  // records use two slots (perhaps reused ones). Any other slot in the file
  // must hold zeros.
  std::set<std::int64_t> used;
  {
    SQLite::Database db((state() / "retention.db").string(), SQLite::OPEN_READONLY);
    SQLite::Statement q(db, "SELECT slot FROM records UNION ALL SELECT slot FROM archive");
    while (q.executeStep()) used.insert(q.getColumn(0).getInt64());
  }
  const auto slots = static_cast<std::int64_t>(std::filesystem::file_size(state() / "keys") / 32);
  ASSERT_GE(slots, 3);
  std::int64_t unused = 0;
  while (used.count(unused)) ++unused;
  ASSERT_LT(unused, slots);
  write_key(unused, 'k');
  EXPECT_TRUE(mentions(check_state(state()), "slot " + std::to_string(unused) + " still holds a key that no live row uses"));
}

TEST_F(CheckState, FindsALiveRecordWhoseKeyIsGone) {
  std::int64_t slot = 0;
  {
    SQLite::Database db((state() / "retention.db").string(), SQLite::OPEN_READONLY);
    slot = db.execAndGet("SELECT slot FROM records WHERE key = 'keep-1'").getInt64();
  }
  write_key(slot, '\0');
  EXPECT_TRUE(mentions(check_state(state()), "record 'keep-1': its key slot"));
}

TEST_F(CheckState, FindsAPurgeWithoutItsEffectAndABrokenChain) {
  {
    SQLite::Database db((state() / "retention.db").string(), SQLite::OPEN_READWRITE);
    db.exec("UPDATE audit SET key = 'keep-0' WHERE seq = 1");
  }
  const auto r = check_state(state());
  EXPECT_TRUE(mentions(r, "record 'keep-0' was purged by the audit log but is still stored"));
  EXPECT_TRUE(mentions(r, "audit entry 1 does not chain"));
}

TEST_F(CheckState, FindsARecordInBothTables) {
  {
    SQLite::Database db((state() / "retention.db").string(), SQLite::OPEN_READWRITE);
    db.exec("INSERT INTO archive (key, category, state, dates, next_phase, due, done, created_at, slot, subject_ref, sealed) "
            "SELECT key, category, 'archived', dates, next_phase, due, done, created_at, slot, subject_ref, sealed "
            "FROM records WHERE key = 'keep-0'");
  }
  const auto r = check_state(state());
  EXPECT_TRUE(mentions(r, "record 'keep-0' is in both the records and the archive table"));
  EXPECT_TRUE(mentions(r, "record_counts holds 0 archived records of lead in archive, the table archive 1"));
}

// The kept counts are what status reports (records, backlog): they must
// follow the rows.
TEST_F(CheckState, FindsDueCountsThatDisagreeWithTheRecords) {
  {
    SQLite::Database db((state() / "retention.db").string(), SQLite::OPEN_READWRITE);
    // keep-0 and keep-1 fall due on 2030-06-01 (collected 2029-06-01 + 1 year).
    ASSERT_EQ(db.execAndGet("SELECT sum(n) FROM due_counts WHERE category = 'lead'").getInt64(), 2);
    db.exec("UPDATE records SET due = due + 86400 WHERE key = 'keep-1'");
  }
  const auto r = check_state(state());
  EXPECT_TRUE(mentions(r, "due_counts holds 2 records of lead due on 2030-06-01, the tables 1"));
  EXPECT_TRUE(mentions(r, "due_counts holds 0 records of lead due on 2030-06-02, the tables 1"));
}

TEST_F(CheckState, FindsAFileOfTheTwoFileLayout) {
  std::ofstream(state() / "archive.db") << "";
  std::ofstream(state() / "retention.db-mj0123abcd") << "";
  const auto r = check_state(state());
  EXPECT_TRUE(mentions(r, "archive.db is in the state directory"));
  EXPECT_TRUE(mentions(r, "retention.db-mj0123abcd is in the state directory"));
}

}  // namespace
}  // namespace retentiond::testing
