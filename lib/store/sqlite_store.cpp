#include "lib/store/sqlite_store.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

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
// stale snapshot and WAL checkpoints could never complete.
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

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(const std::filesystem::path& path, const std::filesystem::path& archive_path,
                       const SqliteOptions& options)
      : m_db(path.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE), m_archive_path(archive_path) {
    m_db.setBusyTimeout(options.busy_timeout_ms);
    // WAL for concurrent readers; secure_delete so deleted values are
    // overwritten with zeros instead of lingering in free pages; FULL sync
    // because an acknowledged disposal must survive a power cut.
    m_db.exec("PRAGMA journal_mode = WAL");
    m_db.exec("PRAGMA synchronous = FULL");
    m_db.exec("PRAGMA foreign_keys = ON");
  }

  // Migrates retention.db, then attaches archive.db (migrated on its own
  // connection beforehand: its SQL names tables without a schema).
  Status migrate() {
    try {
      if (auto st = apply_migrations(m_db, embedded_migrations(), latest_schema_version(), "database"); !st) return st;
      {
        SQLite::Database archive(m_archive_path.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        archive.exec("PRAGMA journal_mode = WAL");
        if (auto st = apply_migrations(archive, embedded_archive_migrations(), latest_archive_schema_version(),
                                       "archive database");
            !st) {
          return st;
        }
      }
      m_db.exec("ATTACH DATABASE " + sql_quote(m_archive_path.string()) + " AS archive");
      for (const char* schema : {"main", "archive"}) {
        m_db.exec(std::string("PRAGMA ") + schema + ".secure_delete = ON");
        m_db.exec(std::string("PRAGMA ") + schema + ".synchronous = FULL");
      }
      prepare();
      return {};
    } catch (const std::exception& e) {
      return Error::storage(std::string("database migration failed: ") + e.what());
    }
  }

  Status transaction(const std::function<Status()>& work) override {
    try {
      SQLite::Transaction tx(m_db);
      Status st = work();
      if (!st) return st;  // ~Transaction rolls back
      tx.commit();
      return {};
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
    try {
      Tables& t = tables(row.location);
      // Replacing deletes the old personal-data row and writes a new one:
      // those rows are never updated in place (see migrations/001).
      exec_key(*t.delete_data, row.key);
      Using use_d(*t.insert_data);
      auto& d = *use_d;
      d.bind(1, row.key);
      bind_optional(d, 2, row.subject);
      d.bind(3, row.fields.dump());
      d.exec();
      Using use_r(*t.upsert_record);
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
      r.exec();
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
    try {
      Tables& t = tables(where);
      exec_key(*t.delete_data, key);
      exec_key(*t.delete_record, key);
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
        while (q.executeStep()) out.push_back(row_from(q, t->location));
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
        SQLite::Statement q(m_db, "SELECT " + record_columns(t->schema) + " WHERE r.due IS NULL AND r.key > ? "
                                  "ORDER BY r.key LIMIT ?");
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

  Result<std::optional<Instant>> next_due() override {
    try {
      std::optional<Instant> best;
      for (const char* schema : {"main", "archive"}) {
        SQLite::Statement q(m_db, std::string("SELECT min(due) FROM ") + schema + ".records WHERE due IS NOT NULL");
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

  Result<RecordCounts> counts() override {
    try {
      RecordCounts c;
      for (const char* schema : {"main", "archive"}) {
        SQLite::Statement q(m_db, std::string("SELECT state, count(*) FROM ") + schema + ".records GROUP BY state");
        while (q.executeStep()) {
          const std::string state = q.getColumn(0).getString();
          const std::int64_t n = q.getColumn(1).getInt64();
          if (state == "anonymised") c.anonymised += n;
          else if (state == "archived") c.archived += n;
          else c.active += n;
        }
      }
      return c;
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
      return {};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::optional<AuditRow>> last_audit() override {
    try {
      Using use(*m_last_audit);
      auto& q = *use;
      if (!q.executeStep()) return std::optional<AuditRow>{};
      return std::optional<AuditRow>{audit_from(q)};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::vector<RecordRow>> by_subject(const std::string& subject) override {
    try {
      std::vector<RecordRow> out;
      for (auto* t : {&m_active, &m_archive}) {
        SQLite::Statement q(m_db, "SELECT " + record_columns(t->schema) + " WHERE d.subject = ? ORDER BY d.key");
        q.bind(1, subject);
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
      if (aq.subject_ref) where += " AND subject_ref = :ref";
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

  Result<std::int64_t> add_hold(const HoldRow& h) override {
    try {
      SQLite::Statement q(m_db, "INSERT INTO holds (scope, target, reason, placed_at, placed_by) VALUES (?, ?, ?, ?, ?)");
      q.bind(1, h.scope);
      q.bind(2, h.target);
      q.bind(3, h.reason);
      q.bind(4, h.placed_at.seconds);
      q.bind(5, h.placed_by);
      q.exec();
      return m_db.getLastInsertRowid();
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<bool> remove_hold(std::int64_t id) override {
    try {
      SQLite::Statement q(m_db, "DELETE FROM holds WHERE id = ?");
      q.bind(1, id);
      return q.exec() > 0;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::vector<HoldRow>> holds() override {
    try {
      SQLite::Statement q(m_db, "SELECT id, scope, target, reason, placed_at, placed_by FROM holds ORDER BY id");
      std::vector<HoldRow> out;
      while (q.executeStep()) {
        out.push_back(HoldRow{q.getColumn(0).getInt64(), q.getColumn(1).getString(), q.getColumn(2).getString(),
                              q.getColumn(3).getString(), Instant{q.getColumn(4).getInt64()}, q.getColumn(5).getString()});
      }
      return out;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Status scrub() override {
    try {
      // 1. Old page images holding deleted values live in the WAL: checkpoint.
      // 2. secure_delete zeroes a deleted cell, but a live cell that SQLite's
      //    balancing moved to another page earlier leaves a stale copy in the
      //    unallocated space of the page it left; when that record is later
      //    destroyed, the copy survives (the residue test found such
      //    fragments). SQLite offers no page-level scrub in Debian's build
      //    (no sqlite_dbpage), so VACUUM rewrites both files. Correct, but
      //    O(database): see docs/operations.md, "Erasure".
      // 3. VACUUM writes through the WAL: checkpoint and truncate again.
      if (auto st = checkpoint(); !st) return st;
      m_db.exec("VACUUM main");
      m_db.exec("VACUUM archive");
      return checkpoint();
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
  Status checkpoint() {
    for (const char* schema : {"main", "archive"}) {
      SQLite::Statement q(m_db, std::string("PRAGMA ") + schema + ".wal_checkpoint(TRUNCATE)");
      q.executeStep();
      if (q.getColumn(0).getInt() != 0) {
        return Error::storage(std::string("WAL checkpoint of ") + schema +
                              " blocked by a reader; destroyed values may remain in the WAL until the next one");
      }
    }
    return {};
  }

  // The statements of one database's record tables.
  struct Tables {
    Location location;
    std::string schema;
    std::unique_ptr<SQLite::Statement> get, due, delete_data, delete_record, insert_data, upsert_record,
        update_schedule;
  };

  // "<columns> FROM <schema>.records r JOIN <schema>.record_data d ON ..."
  static std::string record_columns(const std::string& schema) {
    return "r.key, d.subject, r.category, r.state, d.fields, r.dates, r.next_phase, r.due, r.done, r.created_at "
           "FROM " + schema + ".records r JOIN " + schema + ".record_data d ON d.key = r.key";
  }

  Tables& tables(Location where) { return where == Location::active ? m_active : m_archive; }

  void prepare_tables(Tables& t) {
    const std::string& s = t.schema;
    t.get = stmt("SELECT " + record_columns(s) + " WHERE r.key = ?");
    t.due = stmt("SELECT " + record_columns(s) +
                 " WHERE r.due IS NOT NULL AND r.due <= ?1 AND (r.due > ?2 OR (r.due = ?2 AND r.key > ?3)) "
                 "ORDER BY r.due, r.key LIMIT ?4");
    t.delete_data = stmt("DELETE FROM " + s + ".record_data WHERE key = ?");
    t.delete_record = stmt("DELETE FROM " + s + ".records WHERE key = ?");
    t.insert_data = stmt("INSERT INTO " + s + ".record_data (key, subject, fields) VALUES (?, ?, ?)");
    t.upsert_record = stmt(
        "INSERT INTO " + s + ".records (key, category, state, dates, next_phase, due, done, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET category = excluded.category, "
        "state = excluded.state, dates = excluded.dates, next_phase = excluded.next_phase, "
        "due = excluded.due, done = excluded.done, created_at = excluded.created_at");
    t.update_schedule = stmt("UPDATE " + s + ".records SET dates = ?, next_phase = ?, due = ?, done = ? WHERE key = ?");
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

  static std::optional<std::string> optional_text(const SQLite::Column& c) {
    if (c.isNull()) return std::nullopt;
    return c.getString();
  }

  static RecordRow row_from(SQLite::Statement& q, Location location) {
    RecordRow r;
    r.location = location;
    r.key = q.getColumn(0).getString();
    r.subject = optional_text(q.getColumn(1));
    r.category = q.getColumn(2).getString();
    r.state = state_from(q.getColumn(3).getString());
    r.fields = nlohmann::json::parse(q.getColumn(4).getString());
    r.dates = dates_from_json(q.getColumn(5).getString());
    r.next_phase = q.getColumn(6).getInt();
    if (!q.getColumn(7).isNull()) r.due = Instant{q.getColumn(7).getInt64()};
    r.done = done_from_json(q.getColumn(8).getString());
    r.created_at = Instant{q.getColumn(9).getInt64()};
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
  std::filesystem::path m_archive_path;
  Tables m_active, m_archive;
  std::unique_ptr<SQLite::Statement> m_insert_audit, m_last_audit, m_find_disposal;
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
  try {
    auto store = std::make_unique<SqliteStore>(path, archive_path, options);
    if (auto st = store->migrate(); !st) return std::move(st).error();
    return std::unique_ptr<Store>(std::move(store));
  } catch (const std::exception& e) {
    return Error::storage("cannot open database " + path.string() + ": " + e.what());
  }
}

}  // namespace retentiond::store
