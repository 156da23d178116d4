// Crypto-erasure in SqliteStore: personal values are stored sealed under a
// one-time key kept in <dir>/keys; destroying a record zeroes its key, so no
// copy of the sealed bytes SQLite may still hold can be opened again.
// These tests read the files directly, as an attacker with the disk would.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <SQLiteCpp/SQLiteCpp.h>

#include <fstream>
#include <iterator>
#include <set>

#include "lib/crypto/crypto.hpp"
#include "lib/store/migrations.hpp"
#include "lib/store/sqlite_store.hpp"
#include "tests/support/daemon_process.hpp"

namespace retentiond::store {
namespace {

using calendar::Instant;

const std::string kSecret(32, 's');

std::unique_ptr<Store> open_at(const std::filesystem::path& dir) {
  SqliteOptions options;
  options.secret = kSecret;
  auto s = open_sqlite_store(dir / "retention.db", options);
  if (!s) throw std::runtime_error(s.error().message);
  return std::move(s).value();
}

RecordRow row(const std::string& key, const std::string& value) {
  RecordRow r;
  r.key = key;
  r.subject = "subject-" + key;
  r.category = "c";
  r.fields = {{"v", value}};
  r.dates = {{"collected", Instant{1000}}};
  r.created_at = Instant{1000};
  return r;
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct Sealed {
  std::int64_t slot;
  std::string bytes;
};

// The slot and sealed bytes of `key`, read with a separate connection.
Sealed sealed_of(const std::filesystem::path& db, const std::string& key) {
  SQLite::Database conn(db.string(), SQLite::OPEN_READONLY);
  SQLite::Statement q(conn, "SELECT slot, sealed FROM records WHERE key = ?");
  q.bind(1, key);
  if (!q.executeStep()) throw std::runtime_error("no records row for " + key);
  return {q.getColumn(0).getInt64(), q.getColumn(1).getString()};
}

// Whether any 32-byte slot of the key file opens `s`.
bool any_key_opens(const std::filesystem::path& keys, const std::string& aad, const Sealed& s) {
  const std::string all = read_file(keys);
  for (std::size_t at = 0; at + 32 <= all.size(); at += 32) {
    if (crypto::open_sealed(all.substr(at, 32), aad, s.bytes)) return true;
  }
  return false;
}

class Sealing : public ::testing::Test {
 protected:
  void SetUp() override { m_store = open_at(m_dir.path()); }
  std::filesystem::path db() const { return m_dir.path() / "retention.db"; }
  std::filesystem::path keys() const { return m_dir.path() / "keys"; }
  std::string slot_bytes(std::int64_t slot) const { return read_file(keys()).substr(static_cast<std::size_t>(slot) * 32, 32); }

  testing::TempDir m_dir;
  std::unique_ptr<Store> m_store;
};

TEST_F(Sealing, ValuesAreStoredSealedAndTheKeyFileIsPrivate) {
  ASSERT_TRUE(m_store->put(row("a", "PLAIN-VALUE")));
  const Sealed s = sealed_of(db(), "a");
  EXPECT_EQ(s.bytes.find("PLAIN-VALUE"), std::string::npos);
  EXPECT_EQ(read_file(db()).find("PLAIN-VALUE"), std::string::npos);
  EXPECT_EQ(read_file(db()).find("subject-a"), std::string::npos);
  // Positive control: the slot's key opens it, to the stored values.
  const auto plain = crypto::open_sealed(slot_bytes(s.slot), "record\na", s.bytes);
  ASSERT_TRUE(plain);
  EXPECT_NE(plain->find("PLAIN-VALUE"), std::string::npos);
  EXPECT_NE(plain->find("subject-a"), std::string::npos);
  // Bound to its record: the same bytes do not open as another key's.
  EXPECT_FALSE(crypto::open_sealed(slot_bytes(s.slot), "record\nb", s.bytes));
  struct stat st{};
  ASSERT_EQ(::stat(keys().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(Sealing, RemovingARecordDestroysItsKey) {
  ASSERT_TRUE(m_store->put(row("a", "x")));
  ASSERT_TRUE(m_store->put(row("b", "y")));
  const Sealed a = sealed_of(db(), "a");
  ASSERT_TRUE(any_key_opens(keys(), "record\na", a));  // control
  ASSERT_TRUE(m_store->remove("a", Location::active));
  EXPECT_EQ(slot_bytes(a.slot), std::string(32, '\0'));
  EXPECT_FALSE(any_key_opens(keys(), "record\na", a));
  EXPECT_EQ(m_store->get("b")->value().fields["v"], "y");  // the neighbour is untouched
}

TEST_F(Sealing, ReplacingARecordDestroysTheOldKeyAndSealsAnew) {
  ASSERT_TRUE(m_store->put(row("a", "old")));
  const Sealed before = sealed_of(db(), "a");
  ASSERT_TRUE(m_store->put(row("a", "new")));
  const Sealed after = sealed_of(db(), "a");
  EXPECT_NE(after.slot, before.slot);
  EXPECT_FALSE(any_key_opens(keys(), "record\na", before));
  EXPECT_EQ(m_store->get("a")->value().fields["v"], "new");
}

TEST_F(Sealing, ARolledBackTransactionLeavesNoKeyBehindAndKeepsTheOldOne) {
  ASSERT_TRUE(m_store->put(row("kept", "k")));
  const Sealed kept = sealed_of(db(), "kept");
  const auto size_before = std::filesystem::file_size(keys());
  const Status st = m_store->transaction([&]() -> Status {
    if (auto s = m_store->put(row("new", "n")); !s) return s;
    if (auto s = m_store->remove("kept", Location::active); !s) return s;
    return Error::conflict("abandon");
  });
  ASSERT_FALSE(st);
  EXPECT_FALSE(m_store->get("new")->has_value());
  EXPECT_EQ(m_store->get("kept")->value().fields["v"], "k");
  EXPECT_TRUE(any_key_opens(keys(), "record\nkept", kept));
  // The key written for "new" was zeroed again.
  const std::string all = read_file(keys());
  EXPECT_EQ(all.substr(size_before), std::string(all.size() - size_before, '\0'));
}

TEST_F(Sealing, DestroyedSlotsAreReusedSoTheKeyFileDoesNotGrow) {
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(m_store->put(row("k" + std::to_string(i), "v")));
  const auto size = std::filesystem::file_size(keys());
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(m_store->remove("k" + std::to_string(i), Location::active));
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(m_store->put(row("k" + std::to_string(i), "v")));
  }
  EXPECT_EQ(std::filesystem::file_size(keys()), size);
}

TEST_F(Sealing, ArchiveRowsAreSealedAndSubjectsFoundThroughTheirHmac) {
  RecordRow r = row("arch", "ARCHIVED-VALUE");
  r.location = Location::archive;
  r.state = RecordState::archived;
  ASSERT_TRUE(m_store->put(r));
  EXPECT_EQ(read_file(m_dir.path() / "archive.db").find("ARCHIVED-VALUE"), std::string::npos);
  const auto found = m_store->by_subject("subject-arch");
  ASSERT_TRUE(found);
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ((*found)[0].fields["v"], "ARCHIVED-VALUE");
  EXPECT_TRUE(m_store->by_subject("subject-other")->empty());
}

TEST_F(Sealing, HoldTargetsAreSealedAndTheirKeyDestroyedOnRelease) {
  HoldRow h{0, "subject", "HELD-SUBJECT", "litigation", Instant{5}, "uid:0"};
  auto id = m_store->add_hold(h);
  ASSERT_TRUE(id);
  EXPECT_EQ(read_file(db()).find("HELD-SUBJECT"), std::string::npos);
  ASSERT_EQ(m_store->holds()->size(), 1u);
  EXPECT_EQ(m_store->holds()->at(0).target, "HELD-SUBJECT");
  std::int64_t slot = -1;
  {
    SQLite::Database conn(db().string(), SQLite::OPEN_READONLY);
    slot = conn.execAndGet("SELECT slot FROM holds").getInt64();
  }
  ASSERT_TRUE(m_store->remove_hold(*id).value());
  EXPECT_EQ(slot_bytes(slot), std::string(32, '\0'));
}

TEST_F(Sealing, AKeyQueuedForZeroingByACrashIsZeroedAtStartUp) {
  ASSERT_TRUE(m_store->put(row("a", "x")));
  const Sealed a = sealed_of(db(), "a");
  m_store.reset();
  // A crash after the commit that removed "a" but before its key was zeroed:
  // the row is gone, the slot queued, the key still in the file.
  {
    SQLite::Database conn(db().string(), SQLite::OPEN_READWRITE);
    conn.exec("DELETE FROM records WHERE key = 'a'");
    // The slot list the commit wrote: 8-byte little-endian slot numbers.
    std::string list(8, '\0');
    for (int i = 0; i < 8; ++i) list[static_cast<std::size_t>(i)] = static_cast<char>((a.slot >> (8 * i)) & 0xff);
    SQLite::Statement ins(conn, "INSERT INTO key_slot_lists (zeroed, slots) VALUES (0, ?)");
    ins.bind(1, list.data(), static_cast<int>(list.size()));
    ins.exec();
  }
  ASSERT_TRUE(any_key_opens(keys(), "record\na", a));
  m_store = open_at(m_dir.path());
  EXPECT_FALSE(any_key_opens(keys(), "record\na", a));
  SQLite::Database conn(db().string(), SQLite::OPEN_READONLY);
  // The list is now marked zeroed: its slot is free for reuse.
  EXPECT_EQ(conn.execAndGet("SELECT count(*) FROM key_slot_lists WHERE zeroed = 0").getInt(), 0);
  EXPECT_EQ(conn.execAndGet("SELECT count(*) FROM key_slot_lists WHERE zeroed = 1").getInt(), 1);
}

TEST_F(Sealing, AZeroedKeyIsReportedNotReadAsGarbage) {
  ASSERT_TRUE(m_store->put(row("a", "x")));
  const Sealed a = sealed_of(db(), "a");
  {
    std::fstream f(keys(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(a.slot * 32);
    f.write(std::string(32, '\0').data(), 32);
  }
  const auto got = m_store->get("a");
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, ErrorCode::storage_error);
  EXPECT_NE(got.error().message.find("holds no key"), std::string::npos) << got.error().message;
}

// A database written before sealing (schema 3, values in clear) is sealed at
// the first start of this version, and no plaintext survives in its files.
TEST(SealingMigration, PlaintextDatabasesAreSealedOnceAndScrubbed) {
  testing::TempDir dir;
  {
    SQLite::Database conn((dir.path() / "retention.db").string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    for (const auto& m : embedded_migrations()) {
      if (m.version > 3) break;
      conn.exec(m.sql);
      conn.exec("PRAGMA user_version = " + std::to_string(m.version));
    }
    conn.exec("INSERT INTO records (key, category, state, dates, next_phase, due, done, created_at) "
              "VALUES ('old', 'c', 'active', '{\"collected\":1000}', 0, 5000, '[]', 1000)");
    conn.exec("INSERT INTO record_data (key, subject, fields) VALUES ('old', 'OLD-SUBJECT', '{\"v\":\"OLD-PLAINTEXT\"}')");
    conn.exec("INSERT INTO holds (id, scope, target, reason, placed_at, placed_by) "
              "VALUES (7, 'subject', 'OLD-HELD', 'r', 5, 'uid:0')");
    SQLite::Database archive((dir.path() / "archive.db").string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    archive.exec(embedded_archive_migrations().at(0).sql);
    archive.exec("PRAGMA user_version = 1");
    archive.exec("INSERT INTO records (key, category, state, dates, next_phase, due, done, created_at) "
                 "VALUES ('arch', 'c', 'archived', '{}', 1, NULL, '[1]', 1000)");
    archive.exec("INSERT INTO record_data (key, subject, fields) VALUES ('arch', 'ARCH-SUBJECT', '{\"v\":\"ARCH-PLAINTEXT\"}')");
  }
  auto store = open_at(dir.path());
  const RecordRow old = store->get("old")->value();
  EXPECT_EQ(old.subject, "OLD-SUBJECT");
  EXPECT_EQ(old.fields["v"], "OLD-PLAINTEXT");
  EXPECT_EQ(old.due, Instant{5000});
  EXPECT_EQ(store->get("arch")->value().fields["v"], "ARCH-PLAINTEXT");
  EXPECT_EQ(store->by_subject("ARCH-SUBJECT")->size(), 1u);
  ASSERT_EQ(store->holds()->size(), 1u);
  EXPECT_EQ(store->holds()->at(0).id, 7);
  EXPECT_EQ(store->holds()->at(0).target, "OLD-HELD");
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    const std::string bytes = read_file(entry.path());
    for (const char* plain : {"OLD-SUBJECT", "OLD-PLAINTEXT", "OLD-HELD", "ARCH-SUBJECT", "ARCH-PLAINTEXT"}) {
      EXPECT_EQ(bytes.find(plain), std::string::npos) << plain << " in " << entry.path();
    }
  }
  EXPECT_FALSE(store->get_meta("vacuum_pending")->has_value());
}

// A database of schema 4 kept one row per key slot: key_slots_to_zero for
// slots whose record a committed transaction destroyed (a crash can leave
// their keys in the file) and key_slots_free for zeroed ones. Migration 005
// renames them and the first start converts them: a queued key is zeroed,
// both become one free list, and the slots are reused, not leaked.
TEST(SealingMigration, OldPerSlotTablesAreZeroedAndBecomeOneFreeList) {
  testing::TempDir dir;
  const auto db = dir.path() / "retention.db";
  const auto keys = dir.path() / "keys";
  const std::string queued_key(32, 'Q');
  const std::string free_key(32, '\0');
  {
    SQLite::Database conn(db.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    for (const auto& m : embedded_migrations()) {
      if (m.version > 4) break;
      conn.exec(m.sql);
      conn.exec("PRAGMA user_version = " + std::to_string(m.version));
    }
    conn.exec("UPDATE meta SET value = '2' WHERE name = 'next_key_slot'");
    conn.exec("INSERT INTO key_slots_to_zero (slot) VALUES (0)");
    conn.exec("INSERT INTO key_slots_free (slot) VALUES (1)");
    std::ofstream(keys, std::ios::binary) << queued_key << free_key;
  }
  auto store = open_at(dir.path());
  EXPECT_EQ(read_file(keys), std::string(64, '\0'));
  {
    SQLite::Database conn(db.string(), SQLite::OPEN_READONLY);
    EXPECT_EQ(conn.execAndGet("SELECT count(*) FROM sqlite_master WHERE name LIKE 'old_key_slots%'").getInt(), 0);
    EXPECT_EQ(conn.execAndGet("SELECT count(*) FROM key_slot_lists WHERE zeroed = 0").getInt(), 0);
    EXPECT_EQ(conn.execAndGet("SELECT group_concat(hex(slots)) FROM key_slot_lists WHERE zeroed = 1").getString(),
              "0000000000000000" "0100000000000000");
  }
  // Both slots are handed out again before the file grows.
  ASSERT_TRUE(store->put(row("a", "x")));
  ASSERT_TRUE(store->put(row("b", "y")));
  const std::set<std::int64_t> used{sealed_of(db, "a").slot, sealed_of(db, "b").slot};
  EXPECT_EQ(used, (std::set<std::int64_t>{0, 1}));
  EXPECT_EQ(std::filesystem::file_size(keys), 64u);
  EXPECT_EQ(store->get("a")->value().fields["v"], "x");
}

// A crash after the sealing committed but before its VACUUM finished: the
// next start vacuums.
TEST(SealingMigration, AnInterruptedVacuumIsRedoneAtTheNextStart) {
  testing::TempDir dir;
  open_at(dir.path()).reset();
  {
    SQLite::Database conn((dir.path() / "retention.db").string(), SQLite::OPEN_READWRITE);
    conn.exec("INSERT INTO meta (name, value) VALUES ('vacuum_pending', 'x')");
  }
  auto store = open_at(dir.path());
  EXPECT_FALSE(store->get_meta("vacuum_pending")->has_value());
}

}  // namespace
}  // namespace retentiond::store

namespace retentiond::store {
namespace {

// The daemon's secret is created whole or not at all: an earlier attempt
// that died half-way (a full disk) leaves at most a stray "secret.new",
// never an empty "secret" that would fail every later start.
TEST(Secret, CreatedWholeOnceThenKept) {
  testing::TempDir dir;
  const auto path = dir.path() / "secret";
  { std::ofstream(path.string() + ".new") << "half"; }  // what a failed attempt could leave
  bool created = false;
  const auto first = crypto::load_or_create_secret(path, created);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_TRUE(created);
  EXPECT_EQ(first->size(), 32u);
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".new"));
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const auto again = crypto::load_or_create_secret(path, created);
  ASSERT_TRUE(again);
  EXPECT_FALSE(created);
  EXPECT_EQ(*again, *first);
}

}  // namespace
}  // namespace retentiond::store
