#include "lib/store/sqlite_store.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include <spdlog/spdlog.h>

#include "lib/crypto/crypto.hpp"
#include "lib/store/key_file.hpp"
#include "lib/store/migrations.hpp"

namespace retentiond::store {

std::string_view to_string(RecordState s) {
  switch (s) {
    case RecordState::active: return "active";
    case RecordState::archived: return "archived";
    case RecordState::anonymised: return "anonymised";
  }
  return "?";
}

int latest_schema_version() {
  const auto& m = embedded_migrations();
  return m.empty() ? 0 : m.back().version;
}

int latest_archive_schema_version() {
  const auto& m = embedded_archive_migrations();
  return m.empty() ? 0 : m.back().version;
}

namespace {

using calendar::Instant;

// Applies `migrations` to `db` (its main schema), one transaction each.
Status apply_migrations(SQLite::Database& db, const std::vector<Migration>& migrations, int latest,
                        const std::string& what) {
  const int current = db.execAndGet("PRAGMA user_version").getInt();
  if (current > latest) {
    return Error::storage(what + " schema version " + std::to_string(current) +
                          " is newer than this retentiond understands (" + std::to_string(latest) +
                          "); run a newer retentiond or restore a matching backup");
  }
  for (const auto& m : migrations) {
    if (m.version <= current) continue;
    SQLite::Transaction tx(db);
    db.exec(m.sql);
    db.exec("PRAGMA user_version = " + std::to_string(m.version));
    tx.commit();
  }
  return {};
}

std::string sql_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

Error storage_error(const std::exception& e) {
  return Error::storage(std::string("database error: ") + e.what() + "; nothing was changed");
}

std::string dates_to_json(const policy::Dates& dates) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, t] : dates) j[name] = t.seconds;
  return j.dump();
}

policy::Dates dates_from_json(const std::string& text) {
  policy::Dates out;
  const auto j = nlohmann::json::parse(text);  // must outlive items()
  for (const auto& [name, v] : j.items()) out.emplace(name, Instant{v.get<std::int64_t>()});
  return out;
}

std::string done_to_json(const std::vector<Instant>& done) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& t : done) j.push_back(t.seconds);
  return j.dump();
}

std::vector<Instant> done_from_json(const std::string& text) {
  std::vector<Instant> out;
  for (const auto& v : nlohmann::json::parse(text)) out.push_back(Instant{v.get<std::int64_t>()});
  return out;
}

RecordState state_from(const std::string& s) {
  if (s == "anonymised") return RecordState::anonymised;
  return s == "archived" ? RecordState::archived : RecordState::active;
}

void bind_optional(SQLite::Statement& q, int index, const std::optional<std::string>& v) {
  if (v) q.bind(index, *v);
  else q.bind(index);
}

// Resets a cached statement when the scope ends, on every path. A statement
// left mid-result holds its read transaction open: later reads would see a
// stale snapshot (and, in rollback mode, block other connections' writes).
class Using {
 public:
  explicit Using(SQLite::Statement& q) : m_q(q) {
    m_q.tryReset();
    m_q.clearBindings();
  }
  ~Using() { m_q.tryReset(); }
  Using(const Using&) = delete;
  Using& operator=(const Using&) = delete;
  SQLite::Statement& operator*() { return m_q; }

 private:
  SQLite::Statement& m_q;
};

// Associated data binding sealed bytes to their row: a sealed value copied
// to another record does not open.
std::string record_aad(const std::string& key) { return "record\n" + key; }
std::string hold_aad(const std::string& scope) { return "hold\n" + scope; }

[[noreturn]] void fail(Error e) { throw std::runtime_error(e.message); }

// A rollback journal, not WAL: with WAL, SQLite commits a transaction over
// attached databases atomically per file but not across them, so a crash
// inside the commit of an archive move could leave the record in both files
// or in neither. In rollback mode a super-journal makes the commit atomic
// across retention.db and archive.db. TRUNCATE leaves the journal empty, not
// holding old pages, after each commit.
constexpr const char* kJournalMode = "TRUNCATE";
constexpr int kCacheKiB = 32 * 1024;

// A record's scheduling columns (and its subject_ref), in the order
// schedule_from() reads them; kRecordColumns adds the sealed values.
constexpr const char* kScheduleColumns =
    "r.key, r.category, r.state, r.dates, r.next_phase, r.due, r.done, r.created_at, r.subject_ref";
constexpr const char* kRecordColumns =
    "r.key, r.category, r.state, r.dates, r.next_phase, r.due, r.done, r.created_at, r.subject_ref, r.slot, r.sealed";

// Key slot lists (key_slot_lists.slots): 8-byte little-endian numbers.
std::string pack_slots(const std::vector<std::int64_t>& slots) {
  std::string out;
  out.reserve(slots.size() * 8);
  for (const auto slot : slots) {
    auto v = static_cast<std::uint64_t>(slot);
    for (int i = 0; i < 8; ++i, v >>= 8) out.push_back(static_cast<char>(v & 0xff));
  }
  return out;
}

std::vector<std::int64_t> unpack_slots(const std::string& blob) {
  std::vector<std::int64_t> out;
  out.reserve(blob.size() / 8);
  for (std::size_t at = 0; at + 8 <= blob.size(); at += 8) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(blob[at + static_cast<std::size_t>(i)]);
    out.push_back(static_cast<std::int64_t>(v));
  }
  return out;
}

// Calls `run(first, count)` for each run of consecutive numbers in the
// sorted `slots`.
template <typename Run>
void for_each_run(const std::vector<std::int64_t>& slots, Run run) {
  std::size_t i = 0;
  while (i < slots.size()) {
    std::size_t j = i + 1;
    while (j < slots.size() && slots[j] == slots[j - 1] + 1) ++j;
    run(slots[i], j - i);
    i = j;
  }
}

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(const std::filesystem::path& path, const std::filesystem::path& archive_path, KeyFile keys,
                       const SqliteOptions& options)
      : m_db(path.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE),
        m_path(path),
        m_archive_path(archive_path),
        m_keys(std::move(keys)),
        m_secret(options.secret),
        m_busy_timeout_ms(options.busy_timeout_ms) {
    m_db.setBusyTimeout(options.busy_timeout_ms);
    // secure_delete so deleted cells are overwritten with zeros (defence in
    // depth: personal values are sealed anyway); FULL sync because an
    // acknowledged disposal must survive a power cut.
    m_db.exec(std::string("PRAGMA journal_mode = ") + kJournalMode);
    m_db.exec("PRAGMA synchronous = FULL");
    m_db.exec("PRAGMA foreign_keys = ON");
    // Statement journals and sorts in memory: nothing personal is ever
    // written in clear, but temporary files would cost a write each.
    m_db.exec("PRAGMA temp_store = MEMORY");
  }

  // Migrates retention.db, then attaches archive.db (migrated on its own
  // connection beforehand: its SQL names tables without a schema).
  Status migrate() {
    try {
      if (auto st = apply_migrations(m_db, embedded_migrations(), latest_schema_version(), "database"); !st) return st;
      {
        SQLite::Database archive(m_archive_path.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        archive.setBusyTimeout(m_busy_timeout_ms);
        archive.exec(std::string("PRAGMA journal_mode = ") + kJournalMode);
        if (auto st = apply_migrations(archive, embedded_archive_migrations(), latest_archive_schema_version(),
                                       "archive database");
            !st) {
          return st;
        }
      }
      m_db.exec("ATTACH DATABASE " + sql_quote(m_archive_path.string()) + " AS archive");
      for (const char* schema : {"main", "archive"}) {
        m_db.exec(std::string("PRAGMA ") + schema + ".journal_mode = " + kJournalMode);
        m_db.exec(std::string("PRAGMA ") + schema + ".secure_delete = ON");
        m_db.exec(std::string("PRAGMA ") + schema + ".synchronous = FULL");
        // Page cache per database: the default 2 MB makes every batch
        // re-read its index pages from the OS.
        m_db.exec(std::string("PRAGMA ") + schema + ".cache_size = -" + std::to_string(kCacheKiB));
      }
      remove_stale_super_journals();
      prepare();
      if (auto st = convert_slot_tables(); !st) return st;
      if (auto st = load_slot_lists(); !st) return st;
      if (auto st = load_counts(); !st) return st;
      if (auto st = seal_plaintext_tables(); !st) return st;
      return zero_pending_slots();
    } catch (const std::exception& e) {
      return Error::storage(std::string("database migration failed: ") + e.what());
    }
  }

  // Key slots and transactions. A slot allocated here gets a fresh key,
  // written to the key file (and synced) just before the commit; a rollback
  // zeroes it again. The slots a transaction releases are listed in one
  // key_slot_lists row (zeroed = 0) in that same transaction and zeroed once
  // the commit has succeeded; the next transaction marks the list zeroed,
  // which makes its slots free for reuse. A crash in between leaves the list
  // unmarked and start-up zeroes it (zero_pending_slots), so no released key
  // outlives a restart. The bookkeeping costs a few statements per
  // transaction, not per record: the free lists and the slot counter live in
  // memory and are written back once, before the commit.
  Status transaction(const std::function<Status()>& work) override {
    if (m_in_tx) return Error::internal("Store::transaction is not reentrant");
    m_in_tx = true;
    m_new_keys.clear();
    m_released.clear();
    m_taken.clear();
    m_count_delta = RecordCounts{};
    m_keys_written = false;
    const std::int64_t next_slot_before = m_next_slot;
    const std::vector<SlotList> marking = m_zeroed;
    std::optional<std::int64_t> released_list;
    Status result;
    try {
      // IMMEDIATE: take the write lock first, so a competing writer makes
      // us wait (busy timeout) instead of failing at our first write.
      SQLite::Transaction tx(m_db, SQLite::TransactionBehavior::IMMEDIATE);
      for (const auto& list : marking) exec_int(*m_mark_list_zeroed, list.id);
      result = work();
      if (result) {
        released_list = save_slot_bookkeeping(next_slot_before);
        save_counts();
        write_new_keys();
        tx.commit();
      }
    } catch (const std::exception& e) {
      result = storage_error(e);
    }
    m_in_tx = false;
    if (!result) {
      // Nothing of the transaction stays: its keys, its slot bookkeeping and
      // what the audit head cache saw.
      if (m_keys_written) {
        for (const auto& [slot, key] : m_new_keys) (void)m_keys.zero(slot);  // best effort: nothing names them
      }
      for (auto it = m_taken.rbegin(); it != m_taken.rend(); ++it) m_free[it->first].slots.push_back(it->second);
      for (auto& list : m_free) list.dirty = false;
      m_next_slot = next_slot_before;
      m_new_keys.clear();
      m_head_known = false;
      for (auto& row : m_location_delta) std::fill(std::begin(row), std::end(row), 0);
      return result;
    }
    m_new_keys.clear();
    m_counts.active += m_count_delta.active;
    m_counts.archived += m_count_delta.archived;
    m_counts.anonymised += m_count_delta.anonymised;
    std::erase_if(m_free, [](const SlotList& l) { return l.slots.empty(); });
    for (auto& list : m_free) list.dirty = false;
    m_free.insert(m_free.end(), marking.begin(), marking.end());
    m_zeroed.erase(m_zeroed.begin(), m_zeroed.begin() + static_cast<std::ptrdiff_t>(marking.size()));
    if (released_list) m_to_zero.push_back(SlotList{*released_list, std::move(m_released), false});
    m_released.clear();
    zero_released();
    return result;
  }

  Result<std::optional<RecordRow>> schedule_of(const std::string& key) override {
    try {
      for (auto* t : {&m_active, &m_archive}) {
        Using use(*t->schedule_of);
        auto& q = *use;
        q.bind(1, key);
        if (q.executeStep()) return std::optional<RecordRow>{schedule_from(q, t->location)};
      }
      return std::optional<RecordRow>{};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::optional<RecordRow>> get(const std::string& key) override {
    try {
      for (auto* t : {&m_active, &m_archive}) {
        Using use(*t->get);
        auto& q = *use;
        q.bind(1, key);
        if (q.executeStep()) return std::optional<RecordRow>{row_from(q, t->location)};
      }
      return std::optional<RecordRow>{};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Status put(const RecordRow& row) override {
    if (!m_in_tx) return transaction([&] { return put(row); });
    if (!row.has_values) return Error::internal("Store::put: record '" + row.key + "' was read without its values");
    try {
      Tables& t = tables(row.location);
      // Every write of personal values gets a fresh key: replacing releases
      // the old row's slot, so the replaced values die with it.
      delete_record(t, row.key);
      const Sealed sealed = seal_record(row);
      Using use_r(*t.insert_record);
      auto& r = *use_r;
      r.bind(1, row.key);
      r.bind(2, row.category);
      r.bind(3, std::string(to_string(row.state)));
      r.bind(4, dates_to_json(row.dates));
      r.bind(5, row.next_phase);
      if (row.due) r.bind(6, row.due->seconds);
      else r.bind(6);
      r.bind(7, done_to_json(row.done));
      r.bind(8, row.created_at.seconds);
      r.bind(9, sealed.slot);
      bind_optional(r, 10, sealed.subject_ref);
      r.bind(11, sealed.bytes.data(), static_cast<int>(sealed.bytes.size()));
      r.exec();
      count(row.location, row.state, +1);
      return {};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Status update_schedule(const RecordRow& row) override {
    try {
      Using use(*tables(row.location).update_schedule);
      auto& q = *use;
      q.bind(1, dates_to_json(row.dates));
      q.bind(2, row.next_phase);
      if (row.due) q.bind(3, row.due->seconds);
      else q.bind(3);
      q.bind(4, done_to_json(row.done));
      q.bind(5, row.key);
      q.exec();
      return {};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Status remove(const std::string& key, Location where) override {
    if (!m_in_tx) return transaction([&] { return remove(key, where); });
    try {
      delete_record(tables(where), key);
      return {};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::vector<RecordRow>> due(Instant now, std::size_t limit, const std::optional<DueCursor>& after) override {
    try {
      // Two index ranges, each limited, merged: never a sort of the backlog.
      std::vector<RecordRow> out;
      for (auto* t : {&m_active, &m_archive}) {
        Using use(*t->due);
        auto& q = *use;
        q.bind(1, now.seconds);
        q.bind(2, after ? after->due.seconds : INT64_MIN);
        q.bind(3, after ? after->key : std::string());
        q.bind(4, static_cast<std::int64_t>(limit));
        while (q.executeStep()) out.push_back(schedule_from(q, t->location));
      }
      std::sort(out.begin(), out.end(), [](const RecordRow& a, const RecordRow& b) {
        return *a.due != *b.due ? *a.due < *b.due : a.key < b.key;
      });
      if (out.size() > limit) out.resize(limit);
      return out;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::vector<RecordRow>> undue(std::size_t limit, const std::string& after_key) override {
    try {
      std::vector<RecordRow> out;
      for (auto* t : {&m_active, &m_archive}) {
        SQLite::Statement q(m_db, "SELECT " + std::string(kRecordColumns) + " FROM " + t->schema +
                                      ".records r WHERE r.due IS NULL AND r.key > ? ORDER BY r.key LIMIT ?");
        q.bind(1, after_key);
        q.bind(2, static_cast<std::int64_t>(limit));
        while (q.executeStep()) out.push_back(row_from(q, t->location));
      }
      std::sort(out.begin(), out.end(), [](const RecordRow& a, const RecordRow& b) { return a.key < b.key; });
      if (out.size() > limit) out.resize(limit);
      return out;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::vector<RecordRow>> schedules(const std::string& category, std::size_t limit,
                                           const std::string& after_key) override {
    try {
      std::vector<RecordRow> out;
      for (auto* t : {&m_active, &m_archive}) {
        SQLite::Statement q(m_db, "SELECT " + std::string(kScheduleColumns) + " FROM " + t->schema +
                                      ".records r WHERE category = ? AND key > ? ORDER BY key LIMIT ?");
        q.bind(1, category);
        q.bind(2, after_key);
        q.bind(3, static_cast<std::int64_t>(limit));
        while (q.executeStep()) out.push_back(schedule_from(q, t->location));
      }
      std::sort(out.begin(), out.end(), [](const RecordRow& a, const RecordRow& b) { return a.key < b.key; });
      if (out.size() > limit) out.resize(limit);
      return out;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::int64_t> count_category(const std::string& category) override {
    try {
      std::int64_t n = 0;
      for (const char* schema : {"main", "archive"}) {
        SQLite::Statement q(m_db, std::string("SELECT count(*) FROM ") + schema + ".records WHERE category = ?");
        q.bind(1, category);
        q.executeStep();
        n += q.getColumn(0).getInt64();
      }
      return n;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::optional<Instant>> next_due(std::optional<Instant> after) override {
    try {
      std::optional<Instant> best;
      for (const char* schema : {"main", "archive"}) {
        SQLite::Statement q(m_db, std::string("SELECT min(due) FROM ") + schema + ".records WHERE due IS NOT NULL AND due > ?");
        q.bind(1, after ? after->seconds : INT64_MIN);
        q.executeStep();
        if (q.getColumn(0).isNull()) continue;
        const Instant t{q.getColumn(0).getInt64()};
        if (!best || t < *best) best = t;
      }
      return best;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::int64_t> count_due(Instant now) override {
    try {
      std::int64_t n = 0;
      for (const char* schema : {"main", "archive"}) {
        SQLite::Statement q(m_db, std::string("SELECT count(*) FROM ") + schema + ".records WHERE due IS NOT NULL AND due <= ?");
        q.bind(1, now.seconds);
        q.executeStep();
        n += q.getColumn(0).getInt64();
      }
      return n;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  // From record_counts, kept by every transaction: no table scan.
  Result<RecordCounts> counts() override { return m_counts; }

  Result<std::int64_t> count_due_in_category(const std::string& category, Instant now) override {
    try {
      std::int64_t n = 0;
      for (const char* schema : {"main", "archive"}) {
        SQLite::Statement q(m_db, std::string("SELECT count(*) FROM ") + schema +
                                      ".records WHERE category = ? AND due IS NOT NULL AND due <= ?");
        q.bind(1, category);
        q.bind(2, now.seconds);
        q.executeStep();
        n += q.getColumn(0).getInt64();
      }
      return n;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Status append_audit(const AuditRow& a) override {
    try {
      Using use(*m_insert_audit);
      auto& q = *use;
      q.bind(1, a.seq);
      q.bind(2, a.at.seconds);
      q.bind(3, a.action);
      bind_optional(q, 4, a.key);
      bind_optional(q, 5, a.category);
      if (a.phase) q.bind(6, *a.phase);
      else q.bind(6);
      bind_optional(q, 7, a.subject_ref);
      q.bind(8, a.actor);
      bind_optional(q, 9, a.reason);
      q.bind(10, a.policy_hash);
      q.bind(11, a.hash);
      q.exec();
      m_head = a;
      m_head_known = true;
      return {};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  // Served from memory once known: the chain's head changes only through
  // append_audit on this connection (a rollback forgets it).
  Result<std::optional<AuditRow>> last_audit() override {
    if (m_head_known) return m_head;
    try {
      Using use(*m_last_audit);
      auto& q = *use;
      m_head.reset();
      if (q.executeStep()) m_head = audit_from(q);
      m_head_known = true;
      return m_head;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::vector<RecordRow>> by_subject(const std::string& subject) override {
    try {
      std::vector<RecordRow> out;
      for (auto* t : {&m_active, &m_archive}) {
        SQLite::Statement q(m_db, "SELECT " + std::string(kRecordColumns) + " FROM " + t->schema +
                                      ".records r WHERE substr(r.subject_ref, 1, 16) = substr(?1, 1, 16) "
                                      "AND r.subject_ref = ?1 ORDER BY r.key");
        q.bind(1, subject_ref(subject));
        while (q.executeStep()) out.push_back(row_from(q, t->location));
      }
      std::sort(out.begin(), out.end(), [](const RecordRow& a, const RecordRow& b) { return a.key < b.key; });
      return out;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::vector<AuditRow>> audit_entries(const AuditQuery& aq) override {
    try {
      // Filters use the audit_key / audit_subject_ref indexes; seq order is the primary key.
      std::string where = "WHERE 1";
      if (aq.after_seq) where += " AND seq > :after";
      if (aq.key) where += " AND key = :key";
      if (aq.subject_ref) where += " AND substr(subject_ref, 1, 16) = substr(:ref, 1, 16) AND subject_ref = :ref";
      const std::string cols = "seq, at, action, key, category, phase, subject_ref, actor, reason, policy_hash, hash";
      std::string sql = "SELECT " + cols + " FROM audit " + where + " ORDER BY seq " + (aq.after_seq ? "ASC" : "DESC") + " LIMIT :limit";
      SQLite::Statement q(m_db, sql);
      if (aq.after_seq) q.bind(":after", *aq.after_seq);
      if (aq.key) q.bind(":key", *aq.key);
      if (aq.subject_ref) q.bind(":ref", *aq.subject_ref);
      q.bind(":limit", static_cast<std::int64_t>(aq.limit));
      std::vector<AuditRow> out;
      while (q.executeStep()) out.push_back(audit_from(q));
      if (!aq.after_seq) std::reverse(out.begin(), out.end());
      return out;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::optional<AuditRow>> find_disposal(const std::string& key) override {
    try {
      Using use(*m_find_disposal);
      auto& q = *use;
      q.bind(1, key);
      if (!q.executeStep()) return std::optional<AuditRow>{};
      return std::optional<AuditRow>{audit_from(q)};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  // A hold's target may be a subject: sealed like a record's values.
  Result<std::int64_t> add_hold(const HoldRow& h) override {
    std::int64_t id = 0;
    const auto add = [&]() -> Status {
      try {
        insert_hold(h);
        id = m_db.getLastInsertRowid();
        return {};
      } catch (const std::exception& e) {
        return storage_error(e);
      }
    };
    if (auto st = m_in_tx ? add() : transaction(add); !st) return std::move(st).error();
    return id;
  }

  Result<bool> remove_hold(std::int64_t id) override {
    bool removed = false;
    const auto remove = [&]() -> Status {
      try {
        SQLite::Statement q(m_db, "DELETE FROM holds WHERE id = ? RETURNING slot");
        q.bind(1, id);
        if (q.executeStep()) {
          removed = true;
          release_slot(q.getColumn(0).getInt64());
        }
        return {};
      } catch (const std::exception& e) {
        return storage_error(e);
      }
    };
    if (auto st = m_in_tx ? remove() : transaction(remove); !st) return std::move(st).error();
    return removed;
  }

  Result<std::vector<HoldRow>> holds() override {
    try {
      SQLite::Statement q(m_db, "SELECT id, scope, slot, sealed_target, reason, placed_at, placed_by "
                                "FROM holds ORDER BY id");
      std::vector<HoldRow> out;
      while (q.executeStep()) {
        const std::string scope = q.getColumn(1).getString();
        out.push_back(HoldRow{q.getColumn(0).getInt64(), scope,
                              unseal(q.getColumn(2).getInt64(), hold_aad(scope), q.getColumn(3).getString()),
                              q.getColumn(4).getString(), Instant{q.getColumn(5).getInt64()},
                              q.getColumn(6).getString()});
      }
      return out;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::optional<std::string>> get_meta(const std::string& name) override {
    try {
      SQLite::Statement q(m_db, "SELECT value FROM meta WHERE name = ?");
      q.bind(1, name);
      if (!q.executeStep()) return std::optional<std::string>{};
      return std::optional<std::string>{q.getColumn(0).getString()};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Status set_meta(const std::string& name, const std::string& value) override {
    try {
      SQLite::Statement q(m_db, "INSERT INTO meta (name, value) VALUES (?, ?) "
                                "ON CONFLICT (name) DO UPDATE SET value = excluded.value");
      q.bind(1, name);
      q.bind(2, value);
      q.exec();
      return {};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

 private:
  // The statements of one database's record table.
  struct Tables {
    Location location;
    std::string schema;
    std::unique_ptr<SQLite::Statement> get, schedule_of, due, find_slot, delete_record, insert_record, update_schedule,
        seal_values;
  };

  // A list of key slots: a key_slot_lists row (id), as kept in memory.
  struct SlotList {
    std::int64_t id = 0;
    std::vector<std::int64_t> slots;
    bool dirty = false;  // changed by the open transaction
  };

  std::string subject_ref(const std::string& subject) const { return crypto::hmac_sha256_hex(m_secret, subject); }

  // Record counts: per-transaction deltas, written once before the commit.
  void count(Location where, RecordState state, std::int64_t delta) {
    m_location_delta[where == Location::active ? 0 : 1][static_cast<int>(state)] += delta;
    switch (state) {
      case RecordState::active: m_count_delta.active += delta; break;
      case RecordState::archived: m_count_delta.archived += delta; break;
      case RecordState::anonymised: m_count_delta.anonymised += delta; break;
    }
  }

  void save_counts() {
    for (int where = 0; where < 2; ++where) {
      for (int state = 0; state < 3; ++state) {
        auto& delta = m_location_delta[where][state];
        if (delta == 0) continue;
        Using use(*m_add_count);
        auto& q = *use;
        q.bind(1, where == 0 ? "active" : "archive");
        q.bind(2, std::string(to_string(static_cast<RecordState>(state))));
        q.bind(3, delta);
        q.exec();
        delta = 0;
      }
    }
  }

  // Start-up: the counts into memory; counted once, after migration 005.
  Status load_counts() {
    if (m_db.execAndGet("SELECT count(*) FROM meta WHERE name = 'record_counts_pending'").getInt()) {
      SQLite::Transaction tx(m_db);
      m_db.exec("DELETE FROM record_counts");
      m_db.exec("INSERT INTO record_counts (location, state, n) "
                "SELECT 'active', state, count(*) FROM main.records GROUP BY state "
                "UNION ALL SELECT 'archive', state, count(*) FROM archive.records GROUP BY state");
      m_db.exec("DELETE FROM meta WHERE name = 'record_counts_pending'");
      tx.commit();
    }
    m_counts = RecordCounts{};
    SQLite::Statement q(m_db, "SELECT state, sum(n) FROM record_counts GROUP BY state");
    while (q.executeStep()) {
      const auto state = state_from(q.getColumn(0).getString());
      const std::int64_t n = q.getColumn(1).getInt64();
      if (state == RecordState::anonymised) m_counts.anonymised += n;
      else if (state == RecordState::archived) m_counts.archived += n;
      else m_counts.active += n;
    }
    return {};
  }

  // A fresh slot (reusing a zeroed one when there is one) holding a fresh
  // key, kept in memory until the commit writes it.
  std::pair<std::int64_t, std::string> allocate_slot() {
    std::int64_t slot = -1;
    for (std::size_t i = m_free.size(); i-- > 0;) {
      auto& list = m_free[i];
      if (list.slots.empty()) continue;
      slot = list.slots.back();
      list.slots.pop_back();
      list.dirty = true;
      m_taken.emplace_back(i, slot);
      break;
    }
    if (slot < 0) slot = m_next_slot++;
    std::string key = crypto::random_bytes(KeyFile::kSlotBytes);
    m_new_keys[slot] = key;
    return {slot, std::move(key)};
  }

  void release_slot(std::int64_t slot) {
    // A slot allocated and released by the same transaction (a record put
    // and replaced in one put_many) is released like any other: its key is
    // written at the commit and zeroed right after.
    m_released.push_back(slot);
  }

  // Deletes the record `key` from `t`, releasing its key slot. (A lookup
  // then a delete by id: cheaper than DELETE ... RETURNING, which goes
  // through a statement journal.)
  void delete_record(Tables& t, const std::string& key) {
    std::int64_t id = 0;
    {
      Using use(*t.find_slot);
      auto& q = *use;
      q.bind(1, key);
      if (!q.executeStep()) return;
      id = q.getColumn(0).getInt64();
      if (!q.getColumn(1).isNull()) release_slot(q.getColumn(1).getInt64());
      count(t.location, state_from(q.getColumn(2).getString()), -1);
    }
    exec_int(*t.delete_record, id);
  }

  // Before the commit: the free lists the transaction took slots from, the
  // slot counter, and the list of the slots it released (returns its id).
  std::optional<std::int64_t> save_slot_bookkeeping(std::int64_t next_slot_before) {
    for (const auto& list : m_free) {
      if (!list.dirty) continue;
      if (list.slots.empty()) {
        exec_int(*m_delete_list, list.id);
      } else {
        Using use(*m_update_list);
        const std::string blob = pack_slots(list.slots);
        (*use).bind(1, blob.data(), static_cast<int>(blob.size()));
        (*use).bind(2, list.id);
        (*use).exec();
      }
    }
    if (m_next_slot != next_slot_before) {
      Using use(*m_set_next_slot);
      (*use).bind(1, std::to_string(m_next_slot));
      (*use).exec();
    }
    if (m_released.empty()) return std::nullopt;
    std::sort(m_released.begin(), m_released.end());
    Using use(*m_insert_list);
    const std::string blob = pack_slots(m_released);
    (*use).bind(1, blob.data(), static_cast<int>(blob.size()));
    (*use).exec();
    return m_db.getLastInsertRowid();
  }

  // Before the commit: the new keys, one write per run of consecutive
  // slots, then one sync.
  void write_new_keys() {
    if (m_new_keys.empty()) return;
    std::vector<std::int64_t> slots;
    slots.reserve(m_new_keys.size());
    for (const auto& [slot, key] : m_new_keys) slots.push_back(slot);  // a std::map: sorted
    m_keys_written = true;
    for_each_run(slots, [&](std::int64_t first, std::size_t count) {
      std::string run;
      run.reserve(count * KeyFile::kSlotBytes);
      for (std::size_t i = 0; i < count; ++i) run += m_new_keys.at(first + static_cast<std::int64_t>(i));
      if (auto st = m_keys.write_run(first, run); !st) fail(st.error());
    });
    if (auto st = m_keys.sync(); !st) fail(st.error());
  }

  // Zeroes the released slots of committed transactions and syncs. On
  // failure they stay queued (here, and unmarked in key_slot_lists) for the
  // next commit or start-up.
  void zero_released() {
    if (m_to_zero.empty()) return;
    std::size_t pending = 0;
    for (const auto& list : m_to_zero) pending += list.slots.size();
    const auto failed = [&](const Error& e) {
      spdlog::error("keys.zero_failed slots={} error=\"{}\" (retried after the next commit and at start-up)", pending,
                    e.message);
    };
    for (const auto& list : m_to_zero) {
      Status st;
      for_each_run(list.slots, [&](std::int64_t first, std::size_t count) {
        if (st) st = m_keys.zero_run(first, count);
      });
      if (!st) return failed(st.error());
    }
    if (auto st = m_keys.sync(); !st) return failed(st.error());
    m_zeroed.insert(m_zeroed.end(), m_to_zero.begin(), m_to_zero.end());
    m_to_zero.clear();
  }

  // Start-up: the free lists and the slot counter into memory.
  Status load_slot_lists() {
    m_free.clear();
    SQLite::Statement q(m_db, "SELECT id, slots FROM key_slot_lists WHERE zeroed = 1 ORDER BY id");
    while (q.executeStep()) m_free.push_back(SlotList{q.getColumn(0).getInt64(), unpack_slots(q.getColumn(1).getString()), false});
    SQLite::Statement next(m_db, "SELECT CAST(value AS INTEGER) FROM meta WHERE name = 'next_key_slot'");
    if (!next.executeStep()) return Error::storage("the key slot counter is missing from meta");
    m_next_slot = next.getColumn(0).getInt64();
    return {};
  }

  // Start-up: zero every list of slots a crash may have left unmarked; the
  // next transaction marks them free.
  Status zero_pending_slots() {
    try {
      std::vector<SlotList> pending;
      SQLite::Statement q(m_db, "SELECT id, slots FROM key_slot_lists WHERE zeroed = 0 ORDER BY id");
      while (q.executeStep()) pending.push_back(SlotList{q.getColumn(0).getInt64(), unpack_slots(q.getColumn(1).getString()), false});
      if (pending.empty()) return {};
      for (const auto& list : pending) {
        for (const auto slot : list.slots) {
          if (auto st = m_keys.zero(slot); !st) return st;
        }
      }
      if (auto st = m_keys.sync(); !st) return st;
      m_zeroed = std::move(pending);
      return transaction([] { return Status{}; });
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  // A commit that writes both databases goes through a super-journal
  // (retention.db-mj<hex>) naming the two child journals. SQLite deletes it
  // when the commit completes, or when it rolls back a child journal that
  // points to it; a kill after the super-journal is written but before any
  // child journal points to it leaves it behind for good (about one kill in
  // six during a sweep): the child journals then have no valid header yet,
  // so they are not hot and nothing ever looks at the super-journal again.
  // Harmless, but they would pile up. At start-up, under an exclusive lock
  // on both databases, SQLite has rolled back every hot journal of ours and
  // no commit is under way: our two journals need no super-journal any
  // more. A super-journal is removed when every other journal it names is
  // missing or empty (one naming a foreign, non-empty journal is kept: that
  // journal may still need it). Best effort: a failure is logged and
  // start-up goes on.
  void remove_stale_super_journals() {
    namespace fs = std::filesystem;
    const fs::path dir = m_path.has_parent_path() ? m_path.parent_path() : fs::path(".");
    const std::string prefix = m_path.filename().string() + "-mj";
    std::vector<fs::path> candidates;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.size() > prefix.size() && name.starts_with(prefix) &&
          std::all_of(name.begin() + static_cast<std::ptrdiff_t>(prefix.size()), name.end(),
                      [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; })) {
        candidates.push_back(it->path());
      }
    }
    if (ec) {
      spdlog::warn("stale super-journals not looked for: {}: {}", dir.string(), ec.message());
      return;
    }
    if (candidates.empty()) return;
    std::size_t removed = 0;
    try {
      SQLite::Transaction tx(m_db, SQLite::TransactionBehavior::EXCLUSIVE);
      // EXCLUSIVE takes the locks of every attached database, rolling back
      // hot journals on the way; reading both makes that explicit.
      m_db.execAndGet("SELECT count(*) FROM main.sqlite_master");
      m_db.execAndGet("SELECT count(*) FROM archive.sqlite_master");
      std::set<std::string> ours;
      for (const char* schema : {"main", "archive"}) {
        if (const char* file = sqlite3_db_filename(m_db.getHandle(), schema); file && *file) {
          ours.insert(std::string(file) + "-journal");
        }
      }
      for (const auto& super : candidates) {
        if (!children_all_done(super, ours)) continue;
        if (fs::remove(super, ec)) ++removed;
        else if (ec) spdlog::warn("stale super-journal not removed: {}: {}", super.string(), ec.message());
      }
      tx.commit();
    } catch (const std::exception& e) {
      spdlog::warn("stale super-journals not removed: {}", e.what());
      return;
    }
    if (removed > 0) spdlog::info("removed {} stale super-journal file(s) left by an interrupted commit", removed);
  }

  // True when every child journal a super-journal names (NUL-separated
  // absolute paths) is one of `ours` (already recovered), missing or empty.
  static bool children_all_done(const std::filesystem::path& super, const std::set<std::string>& ours) {
    std::ifstream in(super, std::ios::binary);
    if (!in) return false;
    const std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) return false;
    std::size_t at = 0;
    while (at < content.size()) {
      const std::size_t end = std::min(content.find('\0', at), content.size());
      const std::string child = content.substr(at, end - at);
      if (!child.empty() && ours.count(child) == 0) {
        std::error_code ec;
        const auto size = std::filesystem::file_size(child, ec);
        if (ec) {
          if (ec != std::errc::no_such_file_or_directory) return false;
        } else if (size != 0) {
          return false;
        }
      }
      at = end + 1;
    }
    return true;
  }

  // Databases from before migration 005 kept one row per slot in
  // key_slots_to_zero and key_slots_free (renamed old_* by 005): zero the
  // queued ones, then keep them all as one free list.
  Status convert_slot_tables() {
    if (!table_exists("main", "old_key_slots_to_zero")) return {};
    std::vector<std::int64_t> slots;
    for (const char* table : {"old_key_slots_to_zero", "old_key_slots_free"}) {
      SQLite::Statement q(m_db, std::string("SELECT slot FROM ") + table);
      while (q.executeStep()) slots.push_back(q.getColumn(0).getInt64());
    }
    for (const auto slot : slots) {
      if (auto st = m_keys.zero(slot); !st) return st;
    }
    if (auto st = m_keys.sync(); !st) return st;
    std::sort(slots.begin(), slots.end());
    slots.erase(std::unique(slots.begin(), slots.end()), slots.end());
    SQLite::Transaction tx(m_db);
    if (!slots.empty()) {
      SQLite::Statement ins(m_db, "INSERT INTO key_slot_lists (zeroed, slots) VALUES (1, ?)");
      const std::string blob = pack_slots(slots);
      ins.bind(1, blob.data(), static_cast<int>(blob.size()));
      ins.exec();
    }
    m_db.exec("DROP TABLE old_key_slots_to_zero");
    m_db.exec("DROP TABLE old_key_slots_free");
    tx.commit();
    return {};
  }

  std::string key_of_slot(std::int64_t slot) const {
    if (const auto it = m_new_keys.find(slot); it != m_new_keys.end()) return it->second;
    auto key = m_keys.read(slot);
    if (!key) fail(std::move(key).error());
    return std::move(*key);
  }

  std::string unseal(std::int64_t slot, const std::string& aad, const std::string& sealed) const {
    auto plain = crypto::open_sealed(key_of_slot(slot), aad, sealed);
    if (!plain) fail(Error::storage("sealed data in key slot " + std::to_string(slot) + " does not open: damaged or tampered with"));
    return std::move(*plain);
  }

  void insert_hold(const HoldRow& h, std::optional<std::int64_t> id = std::nullopt) {
    const auto [slot, key] = allocate_slot();
    const std::string sealed = crypto::seal_once(key, hold_aad(h.scope), h.target);
    SQLite::Statement q(m_db, "INSERT INTO holds (id, scope, slot, sealed_target, reason, placed_at, placed_by) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?)");
    if (id) q.bind(1, *id);
    else q.bind(1);
    q.bind(2, h.scope);
    q.bind(3, slot);
    q.bind(4, sealed.data(), static_cast<int>(sealed.size()));
    q.bind(5, h.reason);
    q.bind(6, h.placed_at.seconds);
    q.bind(7, h.placed_by);
    q.exec();
  }

  bool table_exists(const std::string& schema, const std::string& table) {
    SQLite::Statement q(m_db, "SELECT 1 FROM " + schema + ".sqlite_master WHERE type = 'table' AND name = ?");
    q.bind(1, table);
    return q.executeStep();
  }

  // Databases from before migration 004 hold personal values in plain
  // tables: seal them into the new ones, drop the old, and VACUUM once so
  // that no plaintext page survives.
  Status seal_plaintext_tables() {
    const bool main_data = table_exists("main", "plaintext_record_data");
    const bool archive_data = table_exists("archive", "plaintext_record_data");
    const bool holds = table_exists("main", "plaintext_holds");
    if (!main_data && !archive_data && !holds) return vacuum_if_pending();
    Status st = transaction([&]() -> Status {
      // Marked in the same transaction: a crash before the VACUUM below
      // completes has it redone at the next start.
      m_db.exec("INSERT OR REPLACE INTO meta (name, value) VALUES ('vacuum_pending', 'sealed plaintext tables')");
      for (auto* t : {&m_active, &m_archive}) {
        if (!(t == &m_active ? main_data : archive_data)) continue;
        SQLite::Statement q(m_db, "SELECT r.key, r.category, r.state, d.subject, d.fields FROM " + t->schema +
                                      ".plaintext_record_data d JOIN " + t->schema + ".records r ON r.key = d.key");
        std::vector<RecordRow> rows;
        while (q.executeStep()) {
          RecordRow r;
          r.key = q.getColumn(0).getString();
          r.location = t->location;
          r.category = q.getColumn(1).getString();
          r.state = state_from(q.getColumn(2).getString());
          r.subject = optional_text(q.getColumn(3));
          r.fields = nlohmann::json::parse(q.getColumn(4).getString());
          rows.push_back(std::move(r));
        }
        q.reset();
        m_db.exec("DROP TABLE " + t->schema + ".plaintext_record_data");
        for (const auto& r : rows) {
          const Sealed sealed = seal_record(r);
          Using use(*t->seal_values);
          auto& u = *use;
          u.bind(1, sealed.slot);
          bind_optional(u, 2, sealed.subject_ref);
          u.bind(3, sealed.bytes.data(), static_cast<int>(sealed.bytes.size()));
          u.bind(4, r.key);
          u.exec();
        }
      }
      if (holds) {
        SQLite::Statement q(m_db, "SELECT id, scope, target, reason, placed_at, placed_by FROM plaintext_holds");
        std::vector<HoldRow> rows;
        while (q.executeStep()) {
          rows.push_back(HoldRow{q.getColumn(0).getInt64(), q.getColumn(1).getString(), q.getColumn(2).getString(),
                                 q.getColumn(3).getString(), Instant{q.getColumn(4).getInt64()},
                                 q.getColumn(5).getString()});
        }
        q.reset();
        m_db.exec("DROP TABLE plaintext_holds");
        for (const auto& h : rows) insert_hold(h, h.id);
      }
      return {};
    });
    if (!st) return st;
    return vacuum_if_pending();
  }

  Status vacuum_if_pending() {
    if (!m_db.execAndGet("SELECT count(*) FROM meta WHERE name = 'vacuum_pending'").getInt()) return {};
    m_db.exec("VACUUM main");
    m_db.exec("VACUUM archive");
    m_db.exec("DELETE FROM meta WHERE name = 'vacuum_pending'");
    return {};
  }

  // A record's personal values sealed under a fresh key.
  struct Sealed {
    std::int64_t slot = 0;
    std::optional<std::string> subject_ref;
    std::string bytes;
  };

  Sealed seal_record(const RecordRow& row) {
    const auto [slot, key] = allocate_slot();
    const nlohmann::json plain = {{"subject", row.subject ? nlohmann::json(*row.subject) : nlohmann::json()},
                                  {"fields", row.fields}};
    Sealed out;
    out.slot = slot;
    if (row.subject) out.subject_ref = subject_ref(*row.subject);
    out.bytes = crypto::seal_once(key, record_aad(row.key), plain.dump());
    return out;
  }

  Tables& tables(Location where) { return where == Location::active ? m_active : m_archive; }

  void prepare_tables(Tables& t) {
    const std::string from = " FROM " + t.schema + ".records r";
    t.get = stmt("SELECT " + std::string(kRecordColumns) + from + " WHERE r.key = ?");
    t.schedule_of = stmt("SELECT " + std::string(kScheduleColumns) + from + " WHERE r.key = ?");
    // The (due, key) index gives both the range and the order: no sort.
    t.due = stmt("SELECT " + std::string(kScheduleColumns) + from +
                 " WHERE r.due IS NOT NULL AND r.due <= ?1 AND (r.due, r.key) > (?2, ?3) "
                 "ORDER BY r.due, r.key LIMIT ?4");
    t.find_slot = stmt("SELECT r.id, r.slot, r.state" + from + " WHERE r.key = ?");
    t.delete_record = stmt("DELETE FROM " + t.schema + ".records WHERE id = ?");
    t.insert_record = stmt("INSERT INTO " + t.schema +
                           ".records (key, category, state, dates, next_phase, due, done, created_at, slot, "
                           "subject_ref, sealed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    t.update_schedule = stmt("UPDATE " + t.schema + ".records SET dates = ?, next_phase = ?, due = ?, done = ? WHERE key = ?");
    t.seal_values = stmt("UPDATE " + t.schema + ".records SET slot = ?, subject_ref = ?, sealed = ? WHERE key = ?");
  }

  void prepare() {
    m_active.location = Location::active;
    m_active.schema = "main";
    m_archive.location = Location::archive;
    m_archive.schema = "archive";
    prepare_tables(m_active);
    prepare_tables(m_archive);
    m_insert_audit = stmt(
        "INSERT INTO audit (seq, at, action, key, category, phase, subject_ref, actor, reason, policy_hash, hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    const std::string audit_cols =
        "seq, at, action, key, category, phase, subject_ref, actor, reason, policy_hash, hash";
    m_last_audit = stmt("SELECT " + audit_cols + " FROM audit ORDER BY seq DESC LIMIT 1");
    m_insert_list = stmt("INSERT INTO key_slot_lists (zeroed, slots) VALUES (0, ?)");
    m_update_list = stmt("UPDATE key_slot_lists SET slots = ? WHERE id = ?");
    m_delete_list = stmt("DELETE FROM key_slot_lists WHERE id = ?");
    m_mark_list_zeroed = stmt("UPDATE key_slot_lists SET zeroed = 1 WHERE id = ?");
    m_set_next_slot = stmt("UPDATE meta SET value = ? WHERE name = 'next_key_slot'");
    m_add_count = stmt("INSERT INTO record_counts (location, state, n) VALUES (?1, ?2, ?3) "
                       "ON CONFLICT (location, state) DO UPDATE SET n = n + ?3");
    m_find_disposal = stmt("SELECT " + audit_cols + " FROM audit WHERE key = ? AND action IN ('purge', 'erase') "
                           "ORDER BY seq DESC LIMIT 1");
  }

  std::unique_ptr<SQLite::Statement> stmt(const std::string& sql) {
    return std::make_unique<SQLite::Statement>(m_db, sql);
  }

  static void exec_key(SQLite::Statement& stmt, const std::string& key) {
    Using use(stmt);
    auto& q = *use;
    q.bind(1, key);
    q.exec();
  }

  static void exec_int(SQLite::Statement& stmt, std::int64_t value) {
    Using use(stmt);
    auto& q = *use;
    q.bind(1, value);
    q.exec();
  }

  static std::optional<std::string> optional_text(const SQLite::Column& c) {
    if (c.isNull()) return std::nullopt;
    return c.getString();
  }

  // A record without its personal values, from kScheduleColumns.
  static RecordRow schedule_from(SQLite::Statement& q, Location location) {
    RecordRow r;
    r.location = location;
    r.key = q.getColumn(0).getString();
    r.category = q.getColumn(1).getString();
    r.state = state_from(q.getColumn(2).getString());
    r.dates = dates_from_json(q.getColumn(3).getString());
    r.next_phase = q.getColumn(4).getInt();
    if (!q.getColumn(5).isNull()) r.due = Instant{q.getColumn(5).getInt64()};
    r.done = done_from_json(q.getColumn(6).getString());
    r.created_at = Instant{q.getColumn(7).getInt64()};
    r.subject_ref = optional_text(q.getColumn(8));
    r.has_values = false;
    return r;
  }

  // A whole record, from kRecordColumns: the schedule, then the sealed values.
  RecordRow row_from(SQLite::Statement& q, Location location) const {
    RecordRow r = schedule_from(q, location);
    if (q.getColumn(9).isNull()) fail(Error::storage("record '" + r.key + "' has no sealed values"));
    const auto plain = nlohmann::json::parse(unseal(q.getColumn(9).getInt64(), record_aad(r.key), q.getColumn(10).getString()));
    if (plain.at("subject").is_string()) r.subject = plain.at("subject").get<std::string>();
    r.fields = plain.at("fields");
    r.has_values = true;
    return r;
  }

  static AuditRow audit_from(SQLite::Statement& q) {
    AuditRow a;
    a.seq = q.getColumn(0).getInt64();
    a.at = Instant{q.getColumn(1).getInt64()};
    a.action = q.getColumn(2).getString();
    a.key = optional_text(q.getColumn(3));
    a.category = optional_text(q.getColumn(4));
    if (!q.getColumn(5).isNull()) a.phase = q.getColumn(5).getInt();
    a.subject_ref = optional_text(q.getColumn(6));
    a.actor = q.getColumn(7).getString();
    a.reason = optional_text(q.getColumn(8));
    a.policy_hash = q.getColumn(9).getString();
    a.hash = q.getColumn(10).getString();
    return a;
  }

  SQLite::Database m_db;
  std::filesystem::path m_path;
  std::filesystem::path m_archive_path;
  KeyFile m_keys;
  std::string m_secret;  // HMAC key of subject_ref
  int m_busy_timeout_ms;
  Tables m_active, m_archive;
  std::unique_ptr<SQLite::Statement> m_insert_audit, m_last_audit, m_find_disposal, m_insert_list, m_update_list,
      m_delete_list, m_mark_list_zeroed, m_set_next_slot, m_add_count;
  bool m_in_tx = false;
  // Key slots.
  std::int64_t m_next_slot = 0;                      // next never-used slot (meta next_key_slot)
  std::vector<SlotList> m_free;                      // zeroed lists: free for reuse
  std::map<std::int64_t, std::string> m_new_keys;    // allocated by the open transaction: slot -> key
  bool m_keys_written = false;                       // ...and already written to the key file
  std::vector<std::pair<std::size_t, std::int64_t>> m_taken;  // (m_free index, slot) taken by the open transaction
  std::vector<std::int64_t> m_released;              // released by the open transaction
  std::vector<SlotList> m_to_zero;                   // released by committed ones, not yet zeroed
  std::vector<SlotList> m_zeroed;                    // zeroed and synced, not yet marked in key_slot_lists
  // Record counts: committed, and the open transaction's changes.
  RecordCounts m_counts;
  RecordCounts m_count_delta;
  std::int64_t m_location_delta[2][3] = {};
  // The audit chain's head, once read (last_audit).
  std::optional<AuditRow> m_head;
  bool m_head_known = false;
};

}  // namespace

Result<std::unique_ptr<Store>> open_sqlite_store(const std::filesystem::path& path, const SqliteOptions& options) {
  // Create the file 0600 ourselves: SQLite would use the umask, and the WAL
  // and shared-memory files inherit the database file's mode.
  const std::filesystem::path archive_path =
      options.archive_path.empty() ? path.parent_path() / "archive.db" : options.archive_path;
  for (const auto& p : {path, archive_path}) {
    const int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return Error::storage("cannot open database " + p.string() + ": " + std::strerror(errno));
    ::close(fd);
  }
  if (options.secret.size() < 32) return Error::internal("open_sqlite_store: a secret of at least 32 bytes is required");
  auto keys = KeyFile::open(options.key_path.empty() ? path.parent_path() / "keys" : options.key_path);
  if (!keys) return std::move(keys).error();
  try {
    auto store = std::make_unique<SqliteStore>(path, archive_path, std::move(*keys), options);
    if (auto st = store->migrate(); !st) return std::move(st).error();
    return std::unique_ptr<Store>(std::move(store));
  } catch (const std::exception& e) {
    return Error::storage("cannot open database " + path.string() + ": " + e.what());
  }
}

}  // namespace retentiond::store
