// The vault: crypto-erasure that every backend shares. Personal values are
// stored sealed under a one-time key in a KeyStore slot; destroying a row
// zeroes its key once the commit is durable, so no copy of the sealed bytes
// a database keeps can be opened again. The erasure invariants run against
// every backend (VaultContract); the SQLite files are then read directly,
// as an attacker with the disk would (SqliteSealing), and the upgrades of
// old states are checked (LegacyState).

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <SQLiteCpp/SQLiteCpp.h>

#include <fstream>
#include <iterator>
#include <set>
#include <thread>

#include "lib/crypto/crypto.hpp"
#include "lib/store/migrations.hpp"
#include "lib/store/sqlite/sqlite_store.hpp"
#include "lib/vault/key_file.hpp"
#include "lib/vault/vault.hpp"
#include "tests/support/daemon_process.hpp"

namespace retentiond::vault {
namespace {

using calendar::Instant;
using store::Location;
using store::RecordState;

const std::string kSecret(32, 's');

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

Record record(const std::string& key, const std::string& value, Location where = Location::active) {
  Record r;
  r.key = key;
  r.subject = "subject-" + key;
  r.category = "c";
  r.location = where;
  r.state = where == Location::active ? RecordState::active : RecordState::archived;
  r.fields = {{"v", value}};
  r.dates = {{"collected", Instant{1000}}};
  r.due = Instant{5000};
  r.created_at = Instant{1000};
  return r;
}

// A KeyStore that fails its writes on demand (leveldb's SpecialEnv).
class FaultyKeys final : public KeyStore {
 public:
  explicit FaultyKeys(KeyStore& real) : m_real(real) {}
  Status write_run(std::int64_t first, std::string_view keys) override {
    if (fail_writes) return Error::storage("injected: key store full");
    return m_real.write_run(first, keys);
  }
  Result<std::string> read(std::int64_t slot) const override { return m_real.read(slot); }
  Status zero_run(std::int64_t first, std::size_t count) override {
    if (fail_zeroing) return Error::storage("injected: cannot zero");
    return m_real.zero_run(first, count);
  }
  Status sync() override { return m_real.sync(); }
  bool fail_writes = false;
  bool fail_zeroing = false;

 private:
  KeyStore& m_real;
};

// A backend's stores, as the vault contract needs them.
struct Backend {
  std::string name;
  std::function<std::unique_ptr<store::Store>(const std::filesystem::path&)> open;
  std::function<std::unique_ptr<store::StoreReader>(const std::filesystem::path&)> open_reader;
};
void PrintTo(const Backend& b, std::ostream* os) { *os << b.name; }

Backend sqlite_backend() {
  return Backend{"sqlite",
                 [](const std::filesystem::path& dir) {
                   auto s = store::open_sqlite_store(dir / "retention.db");
                   if (!s) throw std::runtime_error(s.error().message);
                   return std::move(s).value();
                 },
                 [](const std::filesystem::path& dir) {
                   auto r = store::open_sqlite_reader(dir / "retention.db");
                   if (!r) throw std::runtime_error(r.error().message);
                   return std::move(r).value();
                 }};
}

class VaultContract : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override { open(); }
  void open() {
    auto keys = KeyFile::open(m_dir.path() / "keys");
    ASSERT_TRUE(keys) << keys.error().message;
    m_key_file = std::make_unique<KeyFile>(std::move(*keys));
    m_keys = std::make_unique<FaultyKeys>(*m_key_file);
    m_store = GetParam().open(m_dir.path());
    m_vault = std::make_unique<Vault>(*m_store, *m_keys, kSecret);
    const Status st = m_vault->open();
    ASSERT_TRUE(st) << st.error().message;
    m_reader_store = GetParam().open_reader(m_dir.path());
    m_reader = std::make_unique<RecordReader>(*m_reader_store, *m_key_file, kSecret);
  }
  void close() {
    m_reader.reset();
    m_reader_store.reset();
    m_vault.reset();
    m_store.reset();
    m_keys.reset();
    m_key_file.reset();
  }
  // The key in `slot`, or "" when it is gone (zeroed or never written).
  std::string key_in(std::int64_t slot) {
    auto key = m_key_file->read(slot);
    return key ? *key : std::string();
  }
  std::int64_t slot_of(const std::string& key) { return (*m_store->get(key))->sealed.slot; }

  testing::TempDir m_dir;
  std::unique_ptr<KeyFile> m_key_file;
  std::unique_ptr<FaultyKeys> m_keys;
  std::unique_ptr<store::Store> m_store;
  std::unique_ptr<Vault> m_vault;
  std::unique_ptr<store::StoreReader> m_reader_store;
  std::unique_ptr<RecordReader> m_reader;
};

TEST_P(VaultContract, TheStoreKeepsOnlySealedBytesAndTheSubjectsHmac) {
  ASSERT_TRUE(m_vault->insert(record("a", "PLAIN-VALUE")));
  const store::StoredRecord stored = **m_store->get("a");
  EXPECT_EQ(stored.sealed.bytes.find("PLAIN-VALUE"), std::string::npos);
  EXPECT_EQ(stored.sealed.bytes.find("subject-a"), std::string::npos);
  EXPECT_EQ(stored.subject_ref, crypto::hmac_sha256_hex(kSecret, "subject-a"));
  // The slot's key opens it, bound to its record.
  const std::string key = key_in(stored.sealed.slot);
  ASSERT_EQ(key.size(), 32u);
  const auto plain = crypto::open_sealed(key, "record\na", stored.sealed.bytes);
  ASSERT_TRUE(plain);
  EXPECT_NE(plain->find("PLAIN-VALUE"), std::string::npos);
  EXPECT_FALSE(crypto::open_sealed(key, "record\nb", stored.sealed.bytes));
  // Both sides open it.
  for (RecordReader* r : {static_cast<RecordReader*>(m_vault.get()), m_reader.get()}) {
    const auto got = r->get("a");
    ASSERT_TRUE(got && got->has_value());
    EXPECT_EQ((*got)->subject, "subject-a");
    EXPECT_EQ((*got)->fields["v"], "PLAIN-VALUE");
    EXPECT_TRUE((*got)->has_values);
  }
  const auto by_subject = m_reader->by_subject("subject-a");
  ASSERT_EQ(by_subject->size(), 1u);
  EXPECT_EQ((*by_subject)[0].fields["v"], "PLAIN-VALUE");
  EXPECT_TRUE(m_reader->by_subject("subject-b")->empty());
}

TEST_P(VaultContract, RemovingARecordDestroysItsKeyAndOnlyItsKey) {
  ASSERT_TRUE(m_vault->insert(record("a", "x")));
  ASSERT_TRUE(m_vault->insert(record("b", "y")));
  const auto a = slot_of("a"), b = slot_of("b");
  ASSERT_FALSE(key_in(a).empty());
  EXPECT_EQ(*m_vault->remove("a", Location::active), true);
  EXPECT_TRUE(key_in(a).empty());
  EXPECT_FALSE(key_in(b).empty());
  EXPECT_EQ((*m_reader->get("b"))->fields["v"], "y");
  EXPECT_EQ(*m_vault->remove("a", Location::active), false);
}

TEST_P(VaultContract, AnInsertOfAKnownKeyStoresNothingAndLeavesNoKey) {
  ASSERT_TRUE(m_vault->insert(record("a", "first")));
  const auto next_before = m_store->key_slots()->next_slot;
  EXPECT_EQ(*m_vault->insert_new(record("a", "second")), false);
  EXPECT_EQ((*m_reader->get("a"))->fields["v"], "first");
  // The key sealed for nothing is destroyed like any other: every written
  // slot but the record's own is zero.
  const auto a = slot_of("a");
  for (std::int64_t slot = 0; slot < m_store->key_slots()->next_slot; ++slot) {
    EXPECT_EQ(key_in(slot).empty(), slot != a) << "slot " << slot;
  }
  EXPECT_GE(m_store->key_slots()->next_slot, next_before);
}

TEST_P(VaultContract, ReplacingARecordDestroysTheOldKeyAndSealsAnew) {
  ASSERT_TRUE(m_vault->insert(record("a", "old")));
  const auto before = slot_of("a");
  ASSERT_TRUE(m_vault->replace(record("a", "new")));
  const auto after = slot_of("a");
  EXPECT_NE(after, before);
  EXPECT_TRUE(key_in(before).empty());
  EXPECT_EQ((*m_reader->get("a"))->fields["v"], "new");
}

TEST_P(VaultContract, ARolledBackTransactionLeavesNoKeyBehindAndKeepsTheOldOne) {
  ASSERT_TRUE(m_vault->insert(record("kept", "k")));
  const auto kept = slot_of("kept");
  std::int64_t new_slot = -1;
  const Status st = m_vault->transaction([&]() -> Status {
    if (auto s = m_vault->insert(record("new", "n")); !s) return s;
    new_slot = (*m_store->get("new"))->sealed.slot;
    auto r = m_vault->remove("kept", Location::active);
    if (!r) return std::move(r).error();
    return Error::conflict("abandon");
  });
  ASSERT_FALSE(st);
  EXPECT_FALSE(m_reader->get("new")->has_value());
  EXPECT_EQ((*m_reader->get("kept"))->fields["v"], "k");
  EXPECT_FALSE(key_in(kept).empty());
  EXPECT_TRUE(key_in(new_slot).empty());
}

TEST_P(VaultContract, AKeyThatCannotBeWrittenFailsTheTransactionAndStoresNothing) {
  m_keys->fail_writes = true;
  const Status st = m_vault->insert(record("a", "x"));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::storage_error);
  EXPECT_NE(st.error().message.find("injected: key store full"), std::string::npos) << st.error().message;
  EXPECT_FALSE(m_reader->get("a")->has_value());
  m_keys->fail_writes = false;
  ASSERT_TRUE(m_vault->insert(record("a", "x")));
  EXPECT_EQ((*m_reader->get("a"))->fields["v"], "x");
}

// The change is committed when the zeroing fails: the slot stays queued
// (unzeroed in the store) and is zeroed after a later commit.
TEST_P(VaultContract, AFailedZeroingIsRetriedAfterTheNextCommit) {
  ASSERT_TRUE(m_vault->insert(record("a", "x")));
  const auto a = slot_of("a");
  m_keys->fail_zeroing = true;
  ASSERT_TRUE(m_vault->remove("a", Location::active));
  EXPECT_FALSE(m_reader->get("a")->has_value());
  EXPECT_FALSE(key_in(a).empty());
  EXPECT_EQ(m_vault->unzeroed_slots(), 1u);
  EXPECT_EQ(m_store->key_slots()->unzeroed.size(), 1u);
  m_keys->fail_zeroing = false;
  ASSERT_TRUE(m_vault->insert(record("b", "y")));
  EXPECT_TRUE(key_in(a).empty());
  EXPECT_EQ(m_vault->unzeroed_slots(), 0u);
}

TEST_P(VaultContract, DestroyedSlotsAreReusedSoTheKeyStoreDoesNotGrow) {
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(m_vault->insert(record("k" + std::to_string(i), "v")));
  const auto next_slot = m_store->key_slots()->next_slot;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(m_vault->remove("k" + std::to_string(i), Location::active));
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(m_vault->insert(record("k" + std::to_string(i), "v")));
  }
  EXPECT_EQ(m_store->key_slots()->next_slot, next_slot);
}

TEST_P(VaultContract, HoldTargetsAreSealedAndTheirKeyDestroyedOnRelease) {
  auto id = m_vault->add_hold(Hold{0, "subject", "HELD-SUBJECT", "litigation", Instant{5}, "uid:0"});
  ASSERT_TRUE(id);
  const auto stored = m_store->holds()->at(0);
  EXPECT_EQ(stored.target.bytes.find("HELD-SUBJECT"), std::string::npos);
  const auto holds = m_reader->holds();
  ASSERT_EQ(holds->size(), 1u);
  EXPECT_EQ(holds->at(0).target, "HELD-SUBJECT");
  EXPECT_EQ(holds->at(0).id, *id);
  EXPECT_EQ(*m_vault->remove_hold(*id), true);
  EXPECT_TRUE(key_in(stored.target.slot).empty());
  EXPECT_EQ(*m_vault->remove_hold(*id), false);
}

// A crash after the commit that destroyed a row but before its key was
// zeroed: the store keeps the released slots unzeroed, and the next start
// zeroes them and frees them.
TEST_P(VaultContract, AKeyQueuedByACrashIsZeroedAtStartUp) {
  ASSERT_TRUE(m_vault->insert(record("a", "x")));
  const auto a = slot_of("a");
  // What the crashed process committed: the row gone, its slot released.
  ASSERT_TRUE(m_store->transaction([&]() -> Status {
    auto r = m_store->remove("a", Location::active);
    if (!r) return std::move(r).error();
    store::KeySlotChanges c;
    c.released = {a};
    auto id = m_store->save_key_slots(c);
    return id ? Status{} : std::move(id).error();
  }));
  ASSERT_FALSE(key_in(a).empty());
  close();
  open();
  EXPECT_TRUE(key_in(a).empty());
  const auto state = m_store->key_slots();
  EXPECT_TRUE(state->unzeroed.empty());
  ASSERT_EQ(state->free.size(), 1u);
  EXPECT_EQ(state->free[0].slots, std::vector<std::int64_t>{a});
}

TEST_P(VaultContract, AZeroedKeyIsReportedAsDamageNotReadAsGarbage) {
  ASSERT_TRUE(m_vault->insert(record("a", "x")));
  ASSERT_TRUE(m_key_file->zero_run(slot_of("a"), 1));
  for (RecordReader* r : {static_cast<RecordReader*>(m_vault.get()), m_reader.get()}) {
    const auto got = r->get("a");
    ASSERT_FALSE(got);
    EXPECT_EQ(got.error().code, ErrorCode::storage_error);
    EXPECT_EQ(got.error().reason, "storage_error");
    EXPECT_NE(got.error().message.find("does not open"), std::string::npos) << got.error().message;
  }
}

// A reader's snapshot may still show a row whose destruction committed
// after it began: the key is gone, so the read runs again on a fresh
// snapshot, where the row is gone too.
TEST_P(VaultContract, AReaderRetriesWhenAKeyIsDestroyedUnderItsSnapshot) {
  ASSERT_TRUE(m_vault->insert(record("a", "x")));
  int attempts = 0;
  std::optional<Record> seen;
  const Status st = m_reader->read([&]() -> Status {
    ++attempts;
    if (!m_reader->schedule_of("a")->has_value()) {  // the fresh snapshot
      seen.reset();
      return {};
    }
    if (attempts == 1) {
      // The writer destroys it meanwhile, on its own thread.
      std::thread writer([&] { ASSERT_TRUE(m_vault->remove("a", Location::active)); });
      writer.join();
    }
    auto got = m_reader->get("a");
    if (!got) return std::move(got).error();
    seen = **got;
    return {};
  });
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_EQ(attempts, 2);
  EXPECT_FALSE(seen.has_value());
}

INSTANTIATE_TEST_SUITE_P(Backends, VaultContract, ::testing::Values(sqlite_backend()),
                         [](const ::testing::TestParamInfo<Backend>& p) { return p.param.name; });

// ---- the SQLite deployment's files ------------------------------------------

class SqliteSealing : public VaultContract {};

TEST_P(SqliteSealing, NoPersonalValueIsInAnyFileAndTheKeyFileIsPrivate) {
  ASSERT_TRUE(m_vault->insert(record("a", "PLAIN-VALUE")));
  ASSERT_TRUE(m_vault->insert(record("arch", "ARCHIVED-VALUE", Location::archive)));
  ASSERT_TRUE(m_vault->add_hold(Hold{0, "subject", "HELD-SUBJECT", "r", Instant{5}, "uid:0"}));
  for (const auto& entry : std::filesystem::directory_iterator(m_dir.path())) {
    const std::string bytes = read_file(entry.path());
    for (const char* plain : {"PLAIN-VALUE", "subject-a", "ARCHIVED-VALUE", "HELD-SUBJECT"}) {
      EXPECT_EQ(bytes.find(plain), std::string::npos) << plain << " in " << entry.path();
    }
  }
  struct stat st{};
  ASSERT_EQ(::stat((m_dir.path() / "keys").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

INSTANTIATE_TEST_SUITE_P(Sqlite, SqliteSealing, ::testing::Values(sqlite_backend()),
                         [](const ::testing::TestParamInfo<Backend>& p) { return p.param.name; });

// ---- upgrades of old states -------------------------------------------------

// Opens a state directory the way the daemon does: the store, then the vault.
struct Opened {
  std::unique_ptr<KeyFile> keys;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<Vault> vault;
};
Opened open_state(const std::filesystem::path& dir) {
  Opened o;
  auto keys = KeyFile::open(dir / "keys");
  if (!keys) throw std::runtime_error(keys.error().message);
  o.keys = std::make_unique<KeyFile>(std::move(*keys));
  auto s = store::open_sqlite_store(dir / "retention.db");
  if (!s) throw std::runtime_error(s.error().message);
  o.store = std::move(*s);
  o.vault = std::make_unique<Vault>(*o.store, *o.keys, kSecret);
  if (auto st = o.vault->open(); !st) throw std::runtime_error(st.error().message);
  return o;
}

void migrate_to(SQLite::Database& conn, const std::vector<store::Migration>& migrations, int version) {
  for (const auto& m : migrations) {
    if (m.version > version) break;
    conn.exec(m.sql);
    conn.exec("PRAGMA user_version = " + std::to_string(m.version));
  }
}

// A state written before sealing (schema 3, values in clear, archive.db of
// schema 1) is sealed at the first start of this version, archive.db is
// merged into the one database and removed, and no plaintext survives in
// any file.
TEST(LegacyState, PlaintextDatabasesAreSealedMergedAndScrubbed) {
  testing::TempDir dir;
  {
    SQLite::Database conn((dir.path() / "retention.db").string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    migrate_to(conn, store::embedded_migrations(), 3);
    conn.exec("INSERT INTO records (key, category, state, dates, next_phase, due, done, created_at) "
              "VALUES ('old', 'c', 'active', '{\"collected\":1000}', 0, 5000, '[]', 1000)");
    conn.exec("INSERT INTO record_data (key, subject, fields) VALUES ('old', 'OLD-SUBJECT', '{\"v\":\"OLD-PLAINTEXT\"}')");
    conn.exec("INSERT INTO holds (id, scope, target, reason, placed_at, placed_by) "
              "VALUES (7, 'subject', 'OLD-HELD', 'r', 5, 'uid:0')");
    SQLite::Database archive((dir.path() / "archive.db").string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    migrate_to(archive, store::embedded_archive_migrations(), 1);
    archive.exec("INSERT INTO records (key, category, state, dates, next_phase, due, done, created_at) "
                 "VALUES ('arch', 'c', 'archived', '{}', 1, NULL, '[1]', 1000)");
    archive.exec("INSERT INTO record_data (key, subject, fields) VALUES ('arch', 'ARCH-SUBJECT', '{\"v\":\"ARCH-PLAINTEXT\"}')");
  }
  auto o = open_state(dir.path());
  const Record old = o.vault->get("old")->value();
  EXPECT_EQ(old.subject, "OLD-SUBJECT");
  EXPECT_EQ(old.fields["v"], "OLD-PLAINTEXT");
  EXPECT_EQ(old.due, Instant{5000});
  const Record arch = o.vault->get("arch")->value();
  EXPECT_EQ(arch.fields["v"], "ARCH-PLAINTEXT");
  EXPECT_EQ(arch.location, Location::archive);
  EXPECT_EQ(o.vault->by_subject("ARCH-SUBJECT")->size(), 1u);
  const auto holds = o.vault->holds();
  ASSERT_EQ(holds->size(), 1u);
  EXPECT_EQ(holds->at(0).id, 7);
  EXPECT_EQ(holds->at(0).target, "OLD-HELD");
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "archive.db"));
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    const std::string bytes = read_file(entry.path());
    for (const char* plain : {"OLD-SUBJECT", "OLD-PLAINTEXT", "OLD-HELD", "ARCH-SUBJECT", "ARCH-PLAINTEXT"}) {
      EXPECT_EQ(bytes.find(plain), std::string::npos) << plain << " in " << entry.path();
    }
  }
  EXPECT_FALSE(o.store->get_meta("vacuum_pending")->has_value());
  EXPECT_EQ(o.store->counts()->archived, 1);
  EXPECT_EQ(o.store->counts()->active, 1);
  EXPECT_EQ(o.store->due_by_category(Instant{6000})->at("c"), 1);
}

// The two-file state of the previous release (schema 005, archive.db 004,
// sealed values): the archive is merged, keys and chain untouched.
TEST(LegacyState, ATwoFileStateIsMergedIntoOneDatabaseKeepingEverything) {
  testing::TempDir dir;
  std::int64_t slot = -1;
  std::string sealed;
  {
    // Written by this version into the archive table, then moved by hand
    // into an archive.db of schema 004, as the previous release kept it.
    auto o = open_state(dir.path());
    ASSERT_TRUE(o.vault->insert(record("arch", "ARCHIVED", Location::archive)));
    ASSERT_TRUE(o.vault->insert(record("live", "LIVE")));
    const auto stored = **o.store->get("arch");
    slot = stored.sealed.slot;
    sealed = stored.sealed.bytes;
  }
  {
    SQLite::Database conn((dir.path() / "retention.db").string(), SQLite::OPEN_READWRITE);
    conn.exec("PRAGMA journal_mode = DELETE");
    SQLite::Database archive((dir.path() / "archive.db").string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    migrate_to(archive, store::embedded_archive_migrations(), 4);
    archive.exec("ATTACH DATABASE '" + (dir.path() / "retention.db").string() + "' AS one");
    archive.exec("INSERT INTO records (key, category, state, dates, next_phase, due, done, created_at, slot, subject_ref, "
                 "sealed) SELECT key, category, state, dates, next_phase, due, done, created_at, slot, subject_ref, sealed "
                 "FROM one.archive");
    archive.exec("DETACH DATABASE one");
    conn.exec("DELETE FROM archive");
    conn.exec("DELETE FROM meta WHERE name = 'archive_merged'");
    conn.exec("DROP TABLE archive");
    conn.exec("DROP TABLE due_counts");
    conn.exec("DROP TABLE retired");  // 008's
    conn.exec("DROP TABLE connector_jobs");  // 009's
    conn.exec("DROP TABLE connector_stats");
    conn.exec("PRAGMA user_version = 5");
  }
  ASSERT_TRUE(std::filesystem::exists(dir.path() / "archive.db"));
  auto o = open_state(dir.path());
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "archive.db"));
  const auto stored = **o.store->get("arch");
  EXPECT_EQ(stored.location, Location::archive);
  EXPECT_EQ(stored.sealed.slot, slot);
  EXPECT_EQ(stored.sealed.bytes, sealed);
  EXPECT_EQ((*o.vault->get("arch"))->fields["v"], "ARCHIVED");
  EXPECT_EQ((*o.vault->get("live"))->fields["v"], "LIVE");
  EXPECT_EQ(o.store->counts()->archived, 1);
  EXPECT_EQ(o.store->counts()->active, 1);
  EXPECT_EQ(o.store->due_by_category(Instant{6000})->at("c"), 2);
}

// A database of schema 4 kept one row per key slot: key_slots_to_zero for
// slots whose record a committed transaction destroyed (a crash can leave
// their keys in the file) and key_slots_free for zeroed ones. The first
// start zeroes them all and frees them: the slots are reused, not leaked.
TEST(LegacyState, OldPerSlotTablesAreZeroedAndBecomeFree) {
  testing::TempDir dir;
  const auto db = dir.path() / "retention.db";
  const auto keys = dir.path() / "keys";
  {
    SQLite::Database conn(db.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    migrate_to(conn, store::embedded_migrations(), 4);
    conn.exec("UPDATE meta SET value = '2' WHERE name = 'next_key_slot'");
    conn.exec("INSERT INTO key_slots_to_zero (slot) VALUES (0)");
    conn.exec("INSERT INTO key_slots_free (slot) VALUES (1)");
    std::ofstream(keys, std::ios::binary) << std::string(32, 'Q') << std::string(32, '\0');
  }
  auto o = open_state(dir.path());
  EXPECT_EQ(read_file(keys), std::string(64, '\0'));
  {
    SQLite::Database conn(db.string(), SQLite::OPEN_READONLY);
    EXPECT_EQ(conn.execAndGet("SELECT count(*) FROM sqlite_master WHERE name LIKE 'old_key_slots%'").getInt(), 0);
  }
  const auto state = o.store->key_slots();
  EXPECT_TRUE(state->unzeroed.empty());
  ASSERT_EQ(state->free.size(), 1u);
  EXPECT_EQ(state->free[0].slots, (std::vector<std::int64_t>{0, 1}));
  // Both slots are handed out again before the file grows.
  ASSERT_TRUE(o.vault->insert(record("a", "x")));
  ASSERT_TRUE(o.vault->insert(record("b", "y")));
  const std::set<std::int64_t> used{(*o.store->get("a"))->sealed.slot, (*o.store->get("b"))->sealed.slot};
  EXPECT_EQ(used, (std::set<std::int64_t>{0, 1}));
  EXPECT_EQ(std::filesystem::file_size(keys), 64u);
}

// A crash after the sealing committed but before its VACUUM finished: the
// next start vacuums.
TEST(LegacyState, AnInterruptedVacuumIsRedoneAtTheNextStart) {
  testing::TempDir dir;
  { auto o = open_state(dir.path()); }
  {
    SQLite::Database conn((dir.path() / "retention.db").string(), SQLite::OPEN_READWRITE);
    conn.exec("INSERT INTO meta (name, value) VALUES ('vacuum_pending', 'x')");
  }
  auto o = open_state(dir.path());
  EXPECT_FALSE(o.store->get_meta("vacuum_pending")->has_value());
}

// A kill during a two-file commit of the previous release can leave a
// super-journal that no child journal points to; the start that merges
// archive.db removes those and only those.
TEST(LegacyState, StaleSuperJournalsAreRemovedWhenArchiveDbIsMergedAndLiveOnesKept) {
  testing::TempDir dir;
  {
    SQLite::Database conn((dir.path() / "retention.db").string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    migrate_to(conn, store::embedded_migrations(), 5);
    SQLite::Database archive((dir.path() / "archive.db").string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    migrate_to(archive, store::embedded_archive_migrations(), 4);
  }
  const auto write = [](const std::filesystem::path& p, const std::string& content) {
    std::ofstream(p, std::ios::binary) << content;
  };
  const std::string ours = (dir.path() / "retention.db-journal").string() + std::string(1, '\0') +
                           (dir.path() / "archive.db-journal").string() + std::string(1, '\0');
  const auto stale = dir.path() / "retention.db-mj0A1B2C9D3";
  const auto empty = dir.path() / "retention.db-mj4E5F609A1";
  write(stale, ours);
  write(empty, "");
  // A child journal that still has content: its transaction may need the
  // super-journal to be rolled back, so it stays.
  const auto foreign_journal = dir.path() / "other.db-journal";
  write(foreign_journal, "not empty");
  const auto live = dir.path() / "retention.db-mj7C8D9E9F0";
  write(live, ours + foreign_journal.string() + std::string(1, '\0'));
  const auto unrelated = dir.path() / "retention.db-mjnotes";  // not a super-journal name
  write(unrelated, "");
  auto o = open_state(dir.path());
  EXPECT_FALSE(std::filesystem::exists(stale));
  EXPECT_FALSE(std::filesystem::exists(empty));
  EXPECT_TRUE(std::filesystem::exists(live));
  EXPECT_TRUE(std::filesystem::exists(unrelated));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "archive.db"));
}

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
}  // namespace retentiond::vault
