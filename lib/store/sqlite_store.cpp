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

namespace {

using calendar::Instant;

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
  return s == "anonymised" ? RecordState::anonymised : RecordState::active;
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
  explicit SqliteStore(const std::filesystem::path& path, const SqliteOptions& options)
      : m_db(path.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE) {
    m_db.setBusyTimeout(options.busy_timeout_ms);
    // WAL for concurrent readers; secure_delete so deleted values are
    // overwritten with zeros instead of lingering in free pages; FULL sync
    // because an acknowledged disposal must survive a power cut.
    m_db.exec("PRAGMA journal_mode = WAL");
    m_db.exec("PRAGMA secure_delete = ON");
    m_db.exec("PRAGMA synchronous = FULL");
    m_db.exec("PRAGMA foreign_keys = ON");
  }

  Status migrate() {
    try {
      const int current = m_db.execAndGet("PRAGMA user_version").getInt();
      const int latest = latest_schema_version();
      if (current > latest) {
        return Error::storage("database schema version " + std::to_string(current) +
                              " is newer than this retentiond understands (" + std::to_string(latest) +
                              "); run a newer retentiond or restore a matching backup");
      }
      for (const auto& m : embedded_migrations()) {
        if (m.version <= current) continue;
        SQLite::Transaction tx(m_db);
        m_db.exec(m.sql);
        m_db.exec("PRAGMA user_version = " + std::to_string(m.version));
        tx.commit();
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
      Using use(*m_get);
      auto& q = *use;
      q.bind(1, key);
      if (!q.executeStep()) return std::optional<RecordRow>{};
      return std::optional<RecordRow>{row_from(q)};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Status put(const RecordRow& row) override {
    try {
      // Replacing deletes the old personal-data row and writes a new one:
      // those rows are never updated in place (see migrations/001).
      exec_key(*m_delete_data, row.key);
      Using use_d(*m_insert_data);
      auto& d = *use_d;
      d.bind(1, row.key);
      bind_optional(d, 2, row.subject);
      d.bind(3, row.fields.dump());
      d.exec();
      Using use_r(*m_upsert_record);
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
      Using use(*m_update_schedule);
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

  Status remove(const std::string& key) override {
    try {
      exec_key(*m_delete_data, key);
      exec_key(*m_delete_record, key);
      return {};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::vector<RecordRow>> due(Instant now, std::size_t limit, const std::optional<DueCursor>& after) override {
    try {
      Using use(*m_due);
      auto& q = *use;
      q.bind(1, now.seconds);
      q.bind(2, after ? after->due.seconds : INT64_MIN);
      q.bind(3, after ? after->key : std::string());
      q.bind(4, static_cast<std::int64_t>(limit));
      std::vector<RecordRow> out;
      while (q.executeStep()) out.push_back(row_from(q));
      return out;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::vector<RecordRow>> undue(std::size_t limit, const std::string& after_key) override {
    try {
      SQLite::Statement q(m_db, std::string("SELECT ") + kRecordColumns +
                                    " FROM records r JOIN record_data d ON d.key = r.key"
                                    " WHERE r.due IS NULL AND r.key > ? ORDER BY r.key LIMIT ?");
      q.bind(1, after_key);
      q.bind(2, static_cast<std::int64_t>(limit));
      std::vector<RecordRow> out;
      while (q.executeStep()) out.push_back(row_from(q));
      return out;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::optional<Instant>> next_due() override {
    try {
      SQLite::Statement q(m_db, "SELECT min(due) FROM records WHERE due IS NOT NULL");
      q.executeStep();
      if (q.getColumn(0).isNull()) return std::optional<Instant>{};
      return std::optional<Instant>{Instant{q.getColumn(0).getInt64()}};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::int64_t> count_due(Instant now) override {
    try {
      SQLite::Statement q(m_db, "SELECT count(*) FROM records WHERE due IS NOT NULL AND due <= ?");
      q.bind(1, now.seconds);
      q.executeStep();
      return q.getColumn(0).getInt64();
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<RecordCounts> counts() override {
    try {
      RecordCounts c;
      SQLite::Statement q(m_db, "SELECT state, count(*) FROM records GROUP BY state");
      while (q.executeStep()) {
        const std::string state = q.getColumn(0).getString();
        const std::int64_t n = q.getColumn(1).getInt64();
        if (state == "anonymised") c.anonymised = n;
        else c.active = n;
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
      SQLite::Statement q(m_db, std::string("SELECT ") + kRecordColumns +
                                    " FROM record_data d JOIN records r ON r.key = d.key WHERE d.subject = ? ORDER BY d.key");
      q.bind(1, subject);
      std::vector<RecordRow> out;
      while (q.executeStep()) out.push_back(row_from(q));
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
      SQLite::Statement q(m_db, "PRAGMA wal_checkpoint(TRUNCATE)");
      q.executeStep();
      if (q.getColumn(0).getInt() != 0) {
        return Error::storage("WAL checkpoint blocked by a reader; destroyed values may remain in the WAL until the next one");
      }
      return {};
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
  static constexpr const char* kRecordColumns =
      "r.key, d.subject, r.category, r.state, d.fields, r.dates, r.next_phase, r.due, r.done, r.created_at";

  void prepare() {
    const std::string cols = kRecordColumns;
    m_get = stmt("SELECT " + cols + " FROM records r JOIN record_data d ON d.key = r.key WHERE r.key = ?");
    m_due = stmt("SELECT " + cols + " FROM records r JOIN record_data d ON d.key = r.key "
                 "WHERE r.due IS NOT NULL AND r.due <= ?1 AND (r.due > ?2 OR (r.due = ?2 AND r.key > ?3)) "
                 "ORDER BY r.due, r.key LIMIT ?4");
    m_delete_data = stmt("DELETE FROM record_data WHERE key = ?");
    m_delete_record = stmt("DELETE FROM records WHERE key = ?");
    m_insert_data = stmt("INSERT INTO record_data (key, subject, fields) VALUES (?, ?, ?)");
    m_upsert_record = stmt(
        "INSERT INTO records (key, category, state, dates, next_phase, due, done, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET category = excluded.category, "
        "state = excluded.state, dates = excluded.dates, next_phase = excluded.next_phase, "
        "due = excluded.due, done = excluded.done, created_at = excluded.created_at");
    m_update_schedule = stmt("UPDATE records SET dates = ?, next_phase = ?, due = ?, done = ? WHERE key = ?");
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

  static RecordRow row_from(SQLite::Statement& q) {
    RecordRow r;
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
  std::unique_ptr<SQLite::Statement> m_get, m_due, m_delete_data, m_delete_record, m_insert_data,
      m_upsert_record, m_update_schedule, m_insert_audit, m_last_audit, m_find_disposal;
};

}  // namespace

Result<std::unique_ptr<Store>> open_sqlite_store(const std::filesystem::path& path, const SqliteOptions& options) {
  // Create the file 0600 ourselves: SQLite would use the umask, and the WAL
  // and shared-memory files inherit the database file's mode.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Error::storage("cannot open database " + path.string() + ": " + std::strerror(errno));
  }
  ::close(fd);
  try {
    auto store = std::make_unique<SqliteStore>(path, options);
    if (auto st = store->migrate(); !st) return std::move(st).error();
    return std::unique_ptr<Store>(std::move(store));
  } catch (const std::exception& e) {
    return Error::storage("cannot open database " + path.string() + ": " + e.what());
  }
}

}  // namespace retentiond::store
