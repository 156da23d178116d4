#include "lib/store/sqlite/sqlite_store.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <pthread.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <tuple>
#include <set>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "lib/store/codec.hpp"
#include "lib/store/migrations.hpp"

namespace retentiond::store {

int latest_schema_version() {
  const auto& m = embedded_migrations();
  return m.empty() ? 0 : m.back().version;
}

namespace {

using calendar::Instant;
using namespace codec;

// The last schema of the two-file layout: the legacy steps (archive.db,
// super-journals, per-slot key tables) run on databases up to it.
constexpr int kLastTwoFileSchema = 5;

// Applies the migrations of `migrations` above the database's version, up
// to `up_to`, one transaction each.
Status apply_migrations(SQLite::Database& db, const std::vector<Migration>& migrations, int up_to,
                        const std::string& what) {
  const int latest = migrations.empty() ? 0 : migrations.back().version;
  const int current = db.execAndGet("PRAGMA user_version").getInt();
  if (current > latest) {
    return Error::storage(what + " schema version " + std::to_string(current) +
                          " is newer than this retentiond understands (" + std::to_string(latest) +
                          "); run a newer retentiond or restore a matching backup");
  }
  for (const auto& m : migrations) {
    if (m.version <= current || m.version > up_to) continue;
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

void bind_optional(SQLite::Statement& q, int index, const std::optional<std::string>& v) {
  if (v) q.bind(index, *v);
  else q.bind(index);
}

std::optional<std::string> optional_text(const SQLite::Column& c) {
  if (c.isNull()) return std::nullopt;
  return c.getString();
}

// Resets a cached statement when the scope ends, on every path. A statement
// left mid-result holds its read transaction open: later reads would see a
// stale snapshot and the WAL could not be checkpointed past it.
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

void bind_blob(SQLite::Statement& q, int index, const std::string& blob) {
  q.bind(index, blob.data(), static_cast<int>(blob.size()));
}

// A record without its sealed values, from kScheduleColumns.
StoredRecord schedule_from(SQLite::Statement& q, Location location) {
  StoredRecord r;
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
  return r;
}

// A whole record, from kRecordColumns.
StoredRecord record_from(SQLite::Statement& q, Location location) {
  StoredRecord r = schedule_from(q, location);
  if (q.getColumn(9).isNull() || q.getColumn(10).isNull()) {
    throw std::runtime_error("record '" + r.key + "' has no sealed values");
  }
  r.sealed.slot = q.getColumn(9).getInt64();
  r.sealed.bytes = q.getColumn(10).getString();
  return r;
}

// A job from kJobColumns.
StoredJob job_from(SQLite::Statement& q) {
  StoredJob j;
  j.id = q.getColumn(0).getString();
  j.connector = q.getColumn(1).getString();
  j.action = q.getColumn(2).getString();
  j.key = q.getColumn(3).getString();
  j.category = q.getColumn(4).getString();
  if (!q.getColumn(5).isNull()) j.phase = q.getColumn(5).getInt();
  j.decided_at = Instant{q.getColumn(6).getInt64()};
  j.audit_seq = q.getColumn(7).getInt64();
  j.subject_ref = optional_text(q.getColumn(8));
  if (!q.getColumn(9).isNull() && !q.getColumn(10).isNull()) {
    j.subject.slot = q.getColumn(9).getInt64();
    j.subject.bytes = q.getColumn(10).getString();
  }
  j.state = job_state_from(q.getColumn(11).getString()).value_or(JobState::failed);
  j.attempts = q.getColumn(12).getInt64();
  j.failures = q.getColumn(13).getInt64();
  j.next_at = Instant{q.getColumn(14).getInt64()};
  j.last_error = optional_text(q.getColumn(15));
  if (!q.getColumn(16).isNull()) j.finished_at = Instant{q.getColumn(16).getInt64()};
  return j;
}

AuditRow audit_from(SQLite::Statement& q) {
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

template <typename Rows, typename Less>
void merge_limited(Rows& out, std::size_t limit, Less less) {
  std::sort(out.begin(), out.end(), less);
  if (out.size() > limit) out.resize(limit);
}

bool by_key(const StoredRecord& a, const StoredRecord& b) { return a.key < b.key; }

// The queries, over one connection: the reader's and the writer's. Base is
// StoreReader or Store.
template <typename Base>
class SqliteQueries : public Base {
 public:
  SqliteQueries(const std::filesystem::path& path, int flags, const SqliteOptions& options)
      : m_db(path.string(), flags), m_path(path) {
    m_db.setBusyTimeout(options.busy_timeout_ms);
    // Sorts and statement journals in memory: nothing is ever written in
    // clear, but temporary files would cost a write each.
    m_db.exec("PRAGMA temp_store = MEMORY");
    // A page cache big enough that a batch does not re-read its index pages.
    m_db.exec("PRAGMA cache_size = -" + std::to_string(options.cache_kib));
  }

  Status read(const std::function<Status()>& work) override {
    if (m_read_depth > 0 || in_write_transaction()) return run(work);
    try {
      m_db.exec("BEGIN");
    } catch (const std::exception& e) {
      return storage_error(e);
    }
    ++m_read_depth;
    Status st = run(work);
    --m_read_depth;
    try {
      m_db.exec("COMMIT");
    } catch (const std::exception& e) {
      try {
        m_db.exec("ROLLBACK");
      } catch (...) {
      }
      if (st) st = storage_error(e);
    }
    return st;
  }

  Result<std::optional<StoredRecord>> get(const std::string& key) override {
    return find(key, &Tables::get, record_from);
  }

  Result<std::optional<StoredRecord>> schedule_of(const std::string& key) override {
    return find(key, &Tables::schedule_of, schedule_from);
  }

  Result<std::vector<StoredRecord>> due(Instant now, std::size_t limit, const std::optional<StoreReader::DueCursor>& after) override {
    try {
      // Two index ranges, each limited, merged: never a sort of the backlog.
      std::vector<StoredRecord> out;
      for (auto& t : m_tables) {
        Using use(*t.due);
        auto& q = *use;
        q.bind(1, now.seconds);
        q.bind(2, after ? after->due.seconds : INT64_MIN);
        q.bind(3, after ? after->key : std::string());
        q.bind(4, static_cast<std::int64_t>(limit));
        while (q.executeStep()) out.push_back(schedule_from(q, t.location));
      }
      merge_limited(out, limit, [](const StoredRecord& a, const StoredRecord& b) {
        return *a.due != *b.due ? *a.due < *b.due : a.key < b.key;
      });
      return out;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::optional<Instant>> next_due(std::optional<Instant> after) override {
    try {
      std::optional<Instant> best;
      for (auto& t : m_tables) {
        Using use(*t.next_due);
        auto& q = *use;
        q.bind(1, after ? after->seconds : INT64_MIN);
        if (!q.executeStep() || q.getColumn(0).isNull()) continue;
        const Instant next{q.getColumn(0).getInt64()};
        if (!best || next < *best) best = next;
      }
      return best;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::vector<StoredRecord>> undue(std::size_t limit, const std::string& after_key) override {
    return paged(&Tables::undue, std::nullopt, after_key, limit);
  }

  Result<std::vector<StoredRecord>> schedules(const std::string& category, std::size_t limit,
                                              const std::string& after_key) override {
    return paged(&Tables::schedules, category, after_key, limit);
  }

  Result<std::int64_t> count_category(const std::string& category) override {
    try {
      std::int64_t n = 0;
      for (auto& t : m_tables) {
        Using use(*t.count_category);
        (*use).bind(1, category);
        (*use).executeStep();
        n += (*use).getColumn(0).getInt64();
      }
      return n;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::vector<StoredRecord>> by_subject_ref(const std::string& subject_ref) override {
    try {
      std::vector<StoredRecord> out;
      for (auto& t : m_tables) {
        Using use(*t.by_subject_ref);
        (*use).bind(1, subject_ref);
        while ((*use).executeStep()) out.push_back(record_from(*use, t.location));
      }
      std::sort(out.begin(), out.end(), by_key);
      return out;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<RecordCounts> counts() override {
    try {
      RecordCounts c;
      Using use(*m_counts);
      while ((*use).executeStep()) {
        add_count(c, state_from((*use).getColumn(0).getString()), (*use).getColumn(1).getInt64());
      }
      return c;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::map<std::string, RecordCounts>> counts_by_category() override {
    try {
      std::map<std::string, RecordCounts> out;
      Using use(*m_counts_by_category);
      while ((*use).executeStep()) {
        add_count(out[(*use).getColumn(0).getString()], state_from((*use).getColumn(1).getString()),
                  (*use).getColumn(2).getInt64());
      }
      return out;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::vector<DueDay>> due_days(Instant now) override {
    try {
      std::vector<DueDay> out;
      Using use(*m_due_days);
      (*use).bind(1, day_of(now.seconds));
      while ((*use).executeStep()) {
        out.push_back(DueDay{Instant{(*use).getColumn(0).getInt64() * kDay}, (*use).getColumn(1).getString(),
                             (*use).getColumn(2).getInt64()});
      }
      return out;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  // The days before today from due_counts, today's records from the due
  // indexes (both in one snapshot when called inside `read`).
  Result<std::map<std::string, std::int64_t>> due_by_category(Instant now) override {
    try {
      std::map<std::string, std::int64_t> out;
      const std::int64_t today = day_of(now.seconds);
      {
        Using use(*m_due_days_before);
        (*use).bind(1, today);
        while ((*use).executeStep()) out[(*use).getColumn(0).getString()] += (*use).getColumn(1).getInt64();
      }
      for (auto& t : m_tables) {
        Using use(*t.due_today);
        (*use).bind(1, today * kDay);
        (*use).bind(2, now.seconds);
        while ((*use).executeStep()) out[(*use).getColumn(0).getString()] += (*use).getColumn(1).getInt64();
      }
      std::erase_if(out, [](const auto& kv) { return kv.second == 0; });
      return out;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::optional<AuditRow>> last_audit() override {
    try {
      Using use(*m_last_audit);
      if (!(*use).executeStep()) return std::optional<AuditRow>{};
      return std::optional<AuditRow>{audit_from(*use)};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::vector<AuditRow>> audit_entries(const StoreReader::AuditQuery& aq) override {
    try {
      // Filters use the audit_key / audit_subject_ref indexes; seq order is the primary key.
      std::string where = "WHERE 1";
      if (aq.after_seq) where += " AND seq > :after";
      if (aq.key) where += " AND key = :key";
      if (aq.subject_ref) where += " AND substr(subject_ref, 1, 16) = substr(:ref, 1, 16) AND subject_ref = :ref";
      SQLite::Statement q(m_db, std::string("SELECT ") + kAuditColumns + " FROM audit " + where + " ORDER BY seq " +
                                    (aq.after_seq ? "ASC" : "DESC") + " LIMIT :limit");
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
      (*use).bind(1, key);
      if (!(*use).executeStep()) return std::optional<AuditRow>{};
      return std::optional<AuditRow>{audit_from(*use)};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::vector<StoredHold>> holds() override {
    try {
      Using use(*m_holds);
      auto& q = *use;
      std::vector<StoredHold> out;
      while (q.executeStep()) {
        StoredHold h;
        h.id = q.getColumn(0).getInt64();
        h.scope = q.getColumn(1).getString();
        h.target.slot = q.getColumn(2).getInt64();
        h.target.bytes = q.getColumn(3).getString();
        h.reason = q.getColumn(4).getString();
        h.placed_at = Instant{q.getColumn(5).getInt64()};
        h.placed_by = q.getColumn(6).getString();
        out.push_back(std::move(h));
      }
      return out;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  // One daemon per state directory (its lock): this one.
  Result<std::vector<DaemonSeen>> daemons() override {
    auto self = daemon_from_name(daemon_name());
    if (!self) return std::vector<DaemonSeen>{};
    self->address = "local";
    self->since = m_opened_at;
    return std::vector<DaemonSeen>{*self};
  }

  Result<std::optional<std::string>> get_meta(const std::string& name) override {
    try {
      Using use(*m_get_meta);
      (*use).bind(1, name);
      if (!(*use).executeStep()) return std::optional<std::string>{};
      return std::optional<std::string>{(*use).getColumn(0).getString()};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::optional<RetiredRecord>> retired(const std::string& key) override {
    try {
      Using use(*m_retired);
      (*use).bind(1, key);
      if (!(*use).executeStep()) return std::optional<RetiredRecord>{};
      // kRecordColumns, then location, purged_at, destroy_at.
      const Location where = (*use).getColumn(11).getString() == "archive" ? Location::archive : Location::active;
      return std::optional<RetiredRecord>{RetiredRecord{record_from(*use, where), Instant{(*use).getColumn(12).getInt64()},
                                                        Instant{(*use).getColumn(13).getInt64()}}};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::int64_t> count_retired(Instant after, Instant until) override {
    try {
      Using use(*m_count_retired);
      (*use).bind(1, after.seconds);
      (*use).bind(2, until.seconds);
      (*use).executeStep();
      return (*use).getColumn(0).getInt64();
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::optional<StoredJob>> job(const std::string& id) override {
    try {
      Using use(*m_job);
      (*use).bind(1, id);
      if (!(*use).executeStep()) return std::optional<StoredJob>{};
      return std::optional<StoredJob>{job_from(*use)};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::vector<StoredJob>> jobs(const std::string& connector, JobState state, std::size_t limit,
                                      std::int64_t after_seq) override {
    return job_rows(*m_jobs, [&](SQLite::Statement& q) {
      q.bind(1, connector);
      q.bind(2, std::string(to_string(state)));
      q.bind(3, after_seq);
      q.bind(4, static_cast<std::int64_t>(limit));
    });
  }

  Result<std::vector<StoredJob>> jobs_ready(const std::string& connector, JobState state, Instant now,
                                            std::size_t limit) override {
    return job_rows(*m_jobs_ready, [&](SQLite::Statement& q) {
      q.bind(1, connector);
      q.bind(2, std::string(to_string(state)));
      q.bind(3, now.seconds);
      q.bind(4, static_cast<std::int64_t>(limit));
    });
  }

  Result<std::optional<Instant>> next_job_at(const std::string& connector, JobState state) override {
    try {
      Using use(*m_next_job_at);
      (*use).bind(1, connector);
      (*use).bind(2, std::string(to_string(state)));
      if (!(*use).executeStep() || (*use).getColumn(0).isNull()) return std::optional<Instant>{};
      return std::optional<Instant>{Instant{(*use).getColumn(0).getInt64()}};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::vector<StoredJob>> jobs_of_key(const std::string& key) override {
    auto rows = job_rows(*m_jobs_of_key, [&](SQLite::Statement& q) { q.bind(1, key); });
    if (rows) {
      for (auto& j : *rows) j.subject = Sealed{};
    }
    return rows;
  }

  Result<std::vector<ConnectorStats>> connector_stats() override {
    try {
      std::vector<ConnectorStats> out;
      {
        Using use(*m_connector_stats);
        auto& q = *use;
        while (q.executeStep()) {
          ConnectorStats c;
          c.connector = q.getColumn(0).getString();
          c.pending = q.getColumn(1).getInt64();
          c.in_flight = q.getColumn(2).getInt64();
          c.failed = q.getColumn(3).getInt64();
          c.done = q.getColumn(4).getInt64();
          c.discarded = q.getColumn(5).getInt64();
          c.last_error = optional_text(q.getColumn(6));
          if (!q.getColumn(7).isNull()) c.last_error_at = Instant{q.getColumn(7).getInt64()};
          out.push_back(std::move(c));
        }
      }
      for (auto& c : out) {
        for (const char* state : {"pending", "in_flight"}) {
          Using use(*m_oldest_job);
          (*use).bind(1, c.connector);
          (*use).bind(2, state);
          if ((*use).executeStep() && !(*use).getColumn(0).isNull()) {
            const Instant at{(*use).getColumn(0).getInt64()};
            if (!c.oldest_pending || at < *c.oldest_pending) c.oldest_pending = at;
          }
        }
      }
      return out;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::vector<RetiredRecord>> retired_due(Instant now, std::size_t limit) override {
    try {
      std::vector<RetiredRecord> out;
      Using use(*m_retired_due);
      (*use).bind(1, now.seconds);
      (*use).bind(2, static_cast<std::int64_t>(limit));
      while ((*use).executeStep()) {
        // kScheduleColumns, then location, purged_at, destroy_at.
        const Location where = (*use).getColumn(9).getString() == "archive" ? Location::archive : Location::active;
        out.push_back(RetiredRecord{schedule_from(*use, where), Instant{(*use).getColumn(10).getInt64()},
                                    Instant{(*use).getColumn(11).getInt64()}});
      }
      return out;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

 protected:
  // The statements of one record table.
  struct Tables {
    Location location = Location::active;
    std::string name;  // records or archive
    std::unique_ptr<SQLite::Statement> get, schedule_of, due, next_due, undue, schedules, count_category,
        by_subject_ref, due_today;
  };

  virtual bool in_write_transaction() const { return false; }

  static Status run(const std::function<Status()>& work) {
    try {
      return work();
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  std::unique_ptr<SQLite::Statement> stmt(const std::string& sql) { return std::make_unique<SQLite::Statement>(m_db, sql); }

  // Prepares the queries; the schema must be the latest.
  void prepare_queries() {
    m_tables[0].location = Location::active;
    m_tables[0].name = "records";
    m_tables[1].location = Location::archive;
    m_tables[1].name = "archive";
    for (auto& t : m_tables) {
      const std::string from = " FROM " + t.name + " r";
      t.get = stmt(std::string("SELECT ") + kRecordColumns + from + " WHERE r.key = ?");
      t.schedule_of = stmt(std::string("SELECT ") + kScheduleColumns + from + " WHERE r.key = ?");
      // The (due, key) index gives both the range and the order: no sort.
      t.due = stmt(std::string("SELECT ") + kScheduleColumns + from +
                   " WHERE r.due IS NOT NULL AND r.due <= ?1 AND (r.due, r.key) > (?2, ?3) ORDER BY r.due, r.key LIMIT ?4");
      t.next_due = stmt("SELECT min(due) FROM " + t.name + " WHERE due IS NOT NULL AND due > ?");
      t.undue = stmt(std::string("SELECT ") + kScheduleColumns + from +
                     " WHERE r.due IS NULL AND r.key > ?2 ORDER BY r.key LIMIT ?3");
      t.schedules = stmt(std::string("SELECT ") + kScheduleColumns + from +
                         " WHERE r.category = ?1 AND r.key > ?2 ORDER BY r.key LIMIT ?3");
      t.count_category = stmt("SELECT count(*) FROM " + t.name + " WHERE category = ?");
      t.by_subject_ref = stmt(std::string("SELECT ") + kRecordColumns + from +
                              " WHERE substr(r.subject_ref, 1, 16) = substr(?1, 1, 16) AND r.subject_ref = ?1");
      t.due_today = stmt("SELECT category, count(*) FROM " + t.name +
                         " WHERE due IS NOT NULL AND due >= ?1 AND due <= ?2 GROUP BY category");
    }
    m_counts = stmt("SELECT state, sum(n) FROM record_counts GROUP BY state");
    m_due_days_before = stmt("SELECT category, sum(n) FROM due_counts WHERE day < ? GROUP BY category");
    m_counts_by_category = stmt("SELECT category, state, sum(n) FROM record_counts GROUP BY category, state");
    m_due_days = stmt("SELECT day, category, n FROM due_counts WHERE day <= ? AND n > 0 ORDER BY day, category");
    m_last_audit = stmt(std::string("SELECT ") + kAuditColumns + " FROM audit ORDER BY seq DESC LIMIT 1");
    m_find_disposal = stmt(std::string("SELECT ") + kAuditColumns +
                           " FROM audit WHERE key = ? AND action IN ('purge', 'erase') ORDER BY seq DESC LIMIT 1");
    m_holds = stmt("SELECT id, scope, slot, sealed_target, reason, placed_at, placed_by FROM holds ORDER BY id");
    m_get_meta = stmt("SELECT value FROM meta WHERE name = ?");
    m_retired = stmt(std::string("SELECT ") + kRecordColumns + ", r.location, r.purged_at, r.destroy_at FROM retired r WHERE r.key = ?");
    m_retired_due = stmt(std::string("SELECT ") + kScheduleColumns +
                         ", r.location, r.purged_at, r.destroy_at FROM retired r WHERE r.destroy_at <= ?1 "
                         "ORDER BY r.destroy_at, r.key LIMIT ?2");
    m_count_retired = stmt("SELECT count(*) FROM retired WHERE destroy_at > ?1 AND destroy_at <= ?2");
    const std::string jobs = std::string("SELECT ") + kJobColumns + " FROM connector_jobs ";
    m_job = stmt(jobs + "WHERE id = ?");
    m_jobs = stmt(jobs + "WHERE connector = ?1 AND state = ?2 AND audit_seq > ?3 "
                         "AND state IN ('pending', 'in_flight', 'failed') ORDER BY audit_seq LIMIT ?4");
    m_jobs_ready = stmt(jobs + "WHERE connector = ?1 AND state = ?2 AND next_at <= ?3 "
                               "AND state IN ('pending', 'in_flight', 'failed') ORDER BY next_at, audit_seq LIMIT ?4");
    m_next_job_at = stmt("SELECT min(next_at) FROM connector_jobs WHERE connector = ?1 AND state = ?2 "
                         "AND state IN ('pending', 'in_flight', 'failed')");
    m_jobs_of_key = stmt(jobs + "WHERE key = ? ORDER BY audit_seq, connector");
    m_connector_stats = stmt("SELECT connector, pending, in_flight, failed, done, discarded, last_error, last_error_at "
                             "FROM connector_stats ORDER BY connector");
    m_oldest_job = stmt("SELECT decided_at FROM connector_jobs WHERE connector = ?1 AND state = ?2 "
                        "AND state IN ('pending', 'in_flight', 'failed') ORDER BY audit_seq LIMIT 1");
  }

  template <typename Bind>
  Result<std::vector<StoredJob>> job_rows(SQLite::Statement& stmt, Bind bind) {
    try {
      Using use(stmt);
      bind(*use);
      std::vector<StoredJob> out;
      while ((*use).executeStep()) out.push_back(job_from(*use));
      return out;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Tables& table(Location where) { return m_tables[where == Location::active ? 0 : 1]; }

  SQLite::Database m_db;
  std::filesystem::path m_path;
  Tables m_tables[2];
  std::unique_ptr<SQLite::Statement> m_counts, m_due_days_before, m_counts_by_category, m_due_days, m_last_audit, m_find_disposal, m_holds, m_get_meta,
      m_retired, m_retired_due, m_count_retired, m_job, m_jobs, m_jobs_ready, m_next_job_at, m_jobs_of_key,
      m_connector_stats, m_oldest_job;
  int m_read_depth = 0;
  Instant m_opened_at{static_cast<std::int64_t>(::time(nullptr))};

 private:
  template <typename Member, typename From>
  Result<std::optional<StoredRecord>> find(const std::string& key, Member member, From from) {
    try {
      for (auto& t : m_tables) {
        Using use(*(t.*member));
        (*use).bind(1, key);
        if ((*use).executeStep()) return std::optional<StoredRecord>{from(*use, t.location)};
      }
      return std::optional<StoredRecord>{};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  // Rows of both tables in key order after `after_key`, at most `limit`.
  Result<std::vector<StoredRecord>> paged(std::unique_ptr<SQLite::Statement> Tables::*member,
                                          const std::optional<std::string>& category, const std::string& after_key,
                                          std::size_t limit) {
    try {
      std::vector<StoredRecord> out;
      for (auto& t : m_tables) {
        Using use(*(t.*member));
        auto& q = *use;
        if (category) q.bind(1, *category);
        q.bind(2, after_key);
        q.bind(3, static_cast<std::int64_t>(limit));
        while (q.executeStep()) out.push_back(schedule_from(q, t.location));
      }
      merge_limited(out, limit, by_key);
      return out;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }
};

class SqliteReader final : public SqliteQueries<StoreReader> {
 public:
  SqliteReader(const std::filesystem::path& path, const SqliteOptions& options)
      : SqliteQueries(path, SQLite::OPEN_READWRITE, options) {
    // A reader never writes; query_only makes that a rule of the connection.
    m_db.exec("PRAGMA query_only = 1");
    const std::string mode = m_db.execAndGet("PRAGMA journal_mode").getString();
    if (mode != "wal") throw std::runtime_error("the database is not in WAL mode (" + mode + "): open the writer first");
    prepare_queries();
  }
};

// Copies the WAL back into the database file on a thread and connection of
// its own, so the writer never pays for it: SQLite's automatic checkpoint
// runs inside the commit that crosses the threshold (a tenth of a purge
// sweep's time, measured for issue 11). PASSIVE: it never waits for the
// writer or a reader, and copies what no open snapshot still needs; what it
// cannot copy now is copied at the next request.
class Checkpointer {
 public:
  static constexpr int kPages = 1000;  // SQLite's own default threshold

  Checkpointer(const std::filesystem::path& path, const SqliteOptions& options)
      : m_db(path.string(), SQLite::OPEN_READWRITE) {
    m_db.setBusyTimeout(options.busy_timeout_ms);
    // A connection learns that the database is in WAL mode at its first
    // read; until then a checkpoint on it copies nothing and still answers
    // SQLITE_OK (with log and checkpointed -1).
    m_db.execAndGet("SELECT count(*) FROM sqlite_master");
    m_thread = std::thread([this] {
      ::pthread_setname_np(::pthread_self(), "rd-checkpoint");
      loop();
    });
  }
  ~Checkpointer() {
    {
      std::lock_guard lock(m_mutex);
      m_stop = true;
    }
    m_cv.notify_one();
    m_thread.join();
  }
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // After each commit, with the number of frames in the WAL.
  void committed(int pages) {
    if (pages < kPages) return;
    {
      std::lock_guard lock(m_mutex);
      m_requested = true;
    }
    m_cv.notify_one();
  }

 private:
  void loop() {
    std::unique_lock lock(m_mutex);
    for (;;) {
      m_cv.wait(lock, [&] { return m_stop || m_requested; });
      if (m_stop) return;
      m_requested = false;
      lock.unlock();
      int log = 0, copied = 0;
      const int rc = sqlite3_wal_checkpoint_v2(m_db.getHandle(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
      if ((rc != SQLITE_OK && rc != SQLITE_BUSY) || (rc == SQLITE_OK && log < 0)) {
        spdlog::warn("store.checkpoint_failed error=\"{}\" (retried after the next commit past the threshold)",
                     sqlite3_errmsg(m_db.getHandle()));
      }
      lock.lock();
    }
  }

  SQLite::Database m_db;
  std::mutex m_mutex;
  std::condition_variable m_cv;
  bool m_requested = false;
  bool m_stop = false;
  std::thread m_thread;
};

class SqliteStore final : public SqliteQueries<Store> {
 public:
  SqliteStore(const std::filesystem::path& path, const SqliteOptions& options)
      : SqliteQueries(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE, options), m_options(options) {
    m_db.exec("PRAGMA foreign_keys = ON");
  }
  ~SqliteStore() override {
    sqlite3_wal_hook(m_db.getHandle(), nullptr, nullptr);
    m_checkpointer.reset();  // before the connection closes (it checkpoints last)
  }

  // Start-up, in order: the two-file schemas (up to 005) and their legacy
  // steps (archive.db, stale super-journals), the latest schema, the merge
  // of archive.db, the conversions that need code, then WAL.
  Status open() {
    try {
      m_db.exec("PRAGMA synchronous = FULL");
      if (auto st = apply_migrations(m_db, embedded_migrations(), kLastTwoFileSchema, "database"); !st) return st;
      const std::filesystem::path legacy = m_path.parent_path() / "archive.db";
      const bool has_legacy = std::filesystem::exists(legacy);
      bool merge = false;
      if (has_legacy && !meta_exists("archive_merged")) {
        if (auto st = attach_legacy_archive(legacy); !st) return st;
        merge = true;
      }
      if (auto st = apply_migrations(m_db, embedded_migrations(), INT_MAX, "database"); !st) return st;
      if (merge) merge_legacy_archive();
      if (has_legacy) remove_legacy_archive(legacy);
      convert_slot_tables();
      fill_counts();
      // WAL: readers on their own connections read a snapshot while the
      // writer writes and commits; a commit writes each page once and syncs
      // once (FULL: every commit is synced, so an acknowledged one survives
      // a power cut). secure_delete overwrites deleted cells (defence in
      // depth: personal values are sealed anyway). The WAL file is cut back
      // to 64 MiB after a checkpoint that found it larger.
      const std::string mode = m_db.execAndGet("PRAGMA journal_mode = WAL").getString();
      if (mode != "wal") return Error::storage("cannot switch " + m_path.string() + " to WAL (journal_mode " + mode + ")");
      m_db.exec("PRAGMA synchronous = FULL");
      m_db.exec("PRAGMA secure_delete = ON");
      m_db.exec("PRAGMA journal_size_limit = 67108864");
      // Checkpoints on their own thread (Checkpointer); the hook replaces
      // SQLite's automatic one.
      m_checkpointer = std::make_unique<Checkpointer>(m_path, m_options);
      sqlite3_wal_hook(
          m_db.getHandle(),
          [](void* self, sqlite3*, const char*, int pages) {
            static_cast<Checkpointer*>(self)->committed(pages);
            return SQLITE_OK;
          },
          m_checkpointer.get());
      prepare_queries();
      prepare_writes();
      return {};
    } catch (const std::exception& e) {
      return Error::storage(std::string("database migration failed: ") + e.what());
    }
  }

  Status transaction(const std::function<Status()>& work) override {
    if (m_in_tx) return Error::internal("Store::transaction is not reentrant");
    m_in_tx = true;
    reset_deltas();
    Status result;
    try {
      // IMMEDIATE: take the write lock first, so a competing writer makes
      // us wait (busy timeout) instead of failing at our first write.
      SQLite::Transaction tx(m_db, SQLite::TransactionBehavior::IMMEDIATE);
      result = work();
      if (result) {
        save_deltas();
        tx.commit();
      }
    } catch (const std::exception& e) {
      result = storage_error(e);
    }
    m_in_tx = false;
    if (!result) m_head_known = false;  // what the audit head cache saw was rolled back
    reset_deltas();
    return result;
  }

  Result<bool> insert_new(const StoredRecord& row) override {
    bool inserted = false;
    const auto work = [&]() -> Status {
      auto r = insert_row(row);
      if (!r) return std::move(r).error();
      inserted = *r;
      return {};
    };
    if (auto st = m_in_tx ? work() : transaction(work); !st) return std::move(st).error();
    return inserted;
  }

  // A key lives in one place: the other table must not have it, and the
  // table's own UNIQUE index guards the place itself (ON CONFLICT DO
  // NOTHING: no row written, no change counted).
  Result<bool> insert_row(const StoredRecord& row) {
    try {
      if (row.sealed.slot < 0) return Error::internal("Store::insert: record '" + row.key + "' has no sealed values");
      {
        Using use(*writes(row.location == Location::active ? Location::archive : Location::active).exists);
        (*use).bind(1, row.key);
        if ((*use).executeStep()) return false;
      }
      Using use(*writes(row.location).insert);
      auto& q = *use;
      q.bind(1, row.key);
      q.bind(2, row.category);
      q.bind(3, std::string(to_string(row.state)));
      q.bind(4, dates_to_json(row.dates));
      q.bind(5, row.next_phase);
      if (row.due) q.bind(6, row.due->seconds);
      else q.bind(6);
      q.bind(7, done_to_json(row.done));
      q.bind(8, row.created_at.seconds);
      q.bind(9, row.sealed.slot);
      bind_optional(q, 10, row.subject_ref);
      bind_blob(q, 11, row.sealed.bytes);
      if (q.exec() == 0) return false;
      count(row.location, row.state, row.category, +1);
      count_due(row.due, row.category, +1);
      return true;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Status update_schedule(const Schedule& row) override {
    if (!m_in_tx) return transaction([&] { return update_schedule(row); });
    try {
      Writes& w = writes(row.location);
      std::int64_t id = 0;
      {
        Using use(*w.find);
        (*use).bind(1, row.key);
        if (!(*use).executeStep()) return Error::not_found("no record with key '" + row.key + "' to reschedule");
        id = (*use).getColumn(0).getInt64();
        const auto& old_due = (*use).getColumn(3);
        count_due(old_due.isNull() ? std::nullopt : std::optional<Instant>(Instant{old_due.getInt64()}),
                  (*use).getColumn(4).getString(), -1);
      }
      Using use(*w.update_schedule);
      auto& q = *use;
      q.bind(1, dates_to_json(row.dates));
      q.bind(2, row.next_phase);
      if (row.due) q.bind(3, row.due->seconds);
      else q.bind(3);
      q.bind(4, done_to_json(row.done));
      q.bind(5, id);
      q.exec();
      count_due(row.due, row.category, +1);
      return {};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  // A lookup then a delete by id: cheaper than DELETE ... RETURNING, which
  // goes through a statement journal.
  Result<std::optional<std::int64_t>> remove(const std::string& key, Location where) override {
    std::optional<std::int64_t> slot;
    const auto work = [&]() -> Status {
      try {
        Writes& w = writes(where);
        std::int64_t id = 0;
        {
          Using use(*w.find);
          (*use).bind(1, key);
          if (!(*use).executeStep()) return {};
          id = (*use).getColumn(0).getInt64();
          slot = (*use).getColumn(1).isNull() ? -1 : (*use).getColumn(1).getInt64();
          count(where, state_from((*use).getColumn(2).getString()), (*use).getColumn(4).getString(), -1);
          const auto& due = (*use).getColumn(3);
          count_due(due.isNull() ? std::nullopt : std::optional<Instant>(Instant{due.getInt64()}),
                    (*use).getColumn(4).getString(), -1);
        }
        Using use(*w.remove);
        (*use).bind(1, id);
        (*use).exec();
        return {};
      } catch (const std::exception& e) {
        return storage_error(e);
      }
    };
    if (auto st = m_in_tx ? work() : transaction(work); !st) return std::move(st).error();
    return slot;
  }

  Status append_audit(const AuditRow& a) override {
    if (!m_in_tx) return transaction([&] { return append_audit(a); });
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
    auto head = SqliteQueries::last_audit();
    if (!head) return head;
    m_head = *head;
    m_head_known = true;
    return head;
  }

  Result<std::int64_t> add_hold(const StoredHold& h) override {
    std::int64_t id = 0;
    const auto work = [&]() -> Status {
      try {
        insert_hold(h, h.id > 0 ? std::optional<std::int64_t>(h.id) : std::nullopt);
        id = m_db.getLastInsertRowid();
        return {};
      } catch (const std::exception& e) {
        return storage_error(e);
      }
    };
    if (auto st = m_in_tx ? work() : transaction(work); !st) return std::move(st).error();
    return id;
  }

  Result<std::optional<std::int64_t>> remove_hold(std::int64_t id) override {
    std::optional<std::int64_t> slot;
    const auto work = [&]() -> Status {
      try {
        SQLite::Statement find(m_db, "SELECT slot FROM holds WHERE id = ?");
        find.bind(1, id);
        if (!find.executeStep()) return {};
        slot = find.getColumn(0).getInt64();
        find.reset();
        SQLite::Statement del(m_db, "DELETE FROM holds WHERE id = ?");
        del.bind(1, id);
        del.exec();
        return {};
      } catch (const std::exception& e) {
        return storage_error(e);
      }
    };
    if (auto st = m_in_tx ? work() : transaction(work); !st) return std::move(st).error();
    return slot;
  }

  Status insert_job(const StoredJob& j) override {
    const auto work = [&]() -> Status {
      try {
        Using use(*m_insert_job);
        auto& q = *use;
        q.bind(1, j.id);
        q.bind(2, j.connector);
        q.bind(3, j.action);
        q.bind(4, j.key);
        q.bind(5, j.category);
        if (j.phase) q.bind(6, *j.phase);
        q.bind(7, j.decided_at.seconds);
        q.bind(8, j.audit_seq);
        bind_optional(q, 9, j.subject_ref);
        if (j.subject.slot >= 0) {
          q.bind(10, j.subject.slot);
          bind_blob(q, 11, j.subject.bytes);
        }
        q.bind(12, std::string(to_string(j.state)));
        q.bind(13, j.attempts);
        q.bind(14, j.failures);
        q.bind(15, j.next_at.seconds);
        bind_optional(q, 16, j.last_error);
        if (j.finished_at) q.bind(17, j.finished_at->seconds);
        q.exec();
        count_job(j.connector, std::nullopt, j.state, std::nullopt, j.decided_at);
        return {};
      } catch (const std::exception& e) {
        return storage_error(e);
      }
    };
    return m_in_tx ? work() : transaction(work);
  }

  Result<std::optional<std::int64_t>> update_job(const JobUpdate& u) override {
    std::optional<std::int64_t> slot;
    const auto work = [&]() -> Status {
      try {
        std::string connector;
        JobState before = JobState::pending;
        {
          Using use(*m_find_job);
          auto& find = *use;
          find.bind(1, u.id);
          if (!find.executeStep()) return {};
          connector = find.getColumn(0).getString();
          before = job_state_from(find.getColumn(1).getString()).value_or(JobState::failed);
          if (u.drop_subject && !find.getColumn(2).isNull()) slot = find.getColumn(2).getInt64();
        }
        Using use(*(u.drop_subject ? m_update_job_drop : m_update_job));
        auto& q = *use;
        q.bind(1, u.id);
        q.bind(2, std::string(to_string(u.state)));
        q.bind(3, u.attempts);
        q.bind(4, u.failures);
        q.bind(5, u.next_at.seconds);
        bind_optional(q, 6, u.last_error);
        if (u.finished_at) q.bind(7, u.finished_at->seconds);
        q.exec();
        count_job(connector, before, u.state, u.error_is_new ? u.last_error : std::nullopt, u.at);
        return {};
      } catch (const std::exception& e) {
        return storage_error(e);
      }
    };
    if (auto st = m_in_tx ? work() : transaction(work); !st) return std::move(st).error();
    return slot;
  }

  Result<bool> retire(const std::string& key, Location where, Instant purged_at, Instant destroy_at) override {
    bool retired = false;
    const auto work = [&]() -> Status {
      try {
        {
          Using use(*m_retired_exists);
          (*use).bind(1, key);
          if ((*use).executeStep()) {
            return Error::storage("record '" + key + "' is already in the undo window; nothing was changed");
          }
        }
        Writes& w = writes(where);
        std::int64_t id = 0;
        {
          Using use(*w.find);
          (*use).bind(1, key);
          if (!(*use).executeStep()) return {};
          id = (*use).getColumn(0).getInt64();
          count(where, state_from((*use).getColumn(2).getString()), (*use).getColumn(4).getString(), -1);
          const auto& due = (*use).getColumn(3);
          count_due(due.isNull() ? std::nullopt : std::optional<Instant>(Instant{due.getInt64()}),
                    (*use).getColumn(4).getString(), -1);
        }
        {
          Using use(*w.retire);
          (*use).bind(1, id);
          (*use).bind(2, purged_at.seconds);
          (*use).bind(3, destroy_at.seconds);
          (*use).exec();
        }
        Using use(*w.remove);
        (*use).bind(1, id);
        (*use).exec();
        retired = true;
        return {};
      } catch (const std::exception& e) {
        return storage_error(e);
      }
    };
    if (auto st = m_in_tx ? work() : transaction(work); !st) return std::move(st).error();
    return retired;
  }

  Result<bool> unretire(const std::string& key) override {
    bool restored = false;
    const auto work = [&]() -> Status {
      try {
        Location where = Location::active;
        RecordState state = RecordState::active;
        std::optional<Instant> due;
        std::string category;
        {
          Using use(*m_retired_find);
          (*use).bind(1, key);
          if (!(*use).executeStep()) return {};
          where = (*use).getColumn(0).getString() == "archive" ? Location::archive : Location::active;
          state = state_from((*use).getColumn(1).getString());
          if (!(*use).getColumn(2).isNull()) due = Instant{(*use).getColumn(2).getInt64()};
          category = (*use).getColumn(3).getString();
        }
        for (const Location place : {Location::active, Location::archive}) {
          Using use(*writes(place).exists);
          (*use).bind(1, key);
          if ((*use).executeStep()) {
            return Error{ErrorCode::conflict, "conflict",
                         "a record with key '" + key + "' was stored after the purge; nothing was changed",
                         nlohmann::json::object()};
          }
        }
        {
          Using use(*writes(where).unretire);
          (*use).bind(1, key);
          (*use).exec();
        }
        Using use(*m_retired_delete);
        (*use).bind(1, key);
        (*use).exec();
        count(where, state, category, +1);
        count_due(due, category, +1);
        restored = true;
        return {};
      } catch (const std::exception& e) {
        return storage_error(e);
      }
    };
    if (auto st = m_in_tx ? work() : transaction(work); !st) return std::move(st).error();
    return restored;
  }

  Result<std::optional<std::int64_t>> drop_retired(const std::string& key) override {
    std::optional<std::int64_t> slot;
    const auto work = [&]() -> Status {
      try {
        {
          Using use(*m_retired_find);
          (*use).bind(1, key);
          if (!(*use).executeStep()) return {};
          slot = (*use).getColumn(4).isNull() ? -1 : (*use).getColumn(4).getInt64();
        }
        Using use(*m_retired_delete);
        (*use).bind(1, key);
        (*use).exec();
        return {};
      } catch (const std::exception& e) {
        return storage_error(e);
      }
    };
    if (auto st = m_in_tx ? work() : transaction(work); !st) return std::move(st).error();
    return slot;
  }

  Status set_meta(const std::string& name, const std::string& value) override {
    if (!m_in_tx) return transaction([&] { return set_meta(name, value); });
    try {
      Using use(*m_set_meta);
      (*use).bind(1, name);
      (*use).bind(2, value);
      (*use).exec();
      return {};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<KeySlotState> key_slots() override {
    try {
      KeySlotState s;
      SQLite::Statement q(m_db, "SELECT id, zeroed, slots FROM key_slot_lists ORDER BY id");
      while (q.executeStep()) {
        SlotList list{q.getColumn(0).getInt64(), unpack_slots(q.getColumn(2).getString())};
        (q.getColumn(1).getInt() ? s.free : s.unzeroed).push_back(std::move(list));
      }
      SQLite::Statement next(m_db, "SELECT CAST(value AS INTEGER) FROM meta WHERE name = 'next_key_slot'");
      if (!next.executeStep()) return Error::storage("the key slot counter is missing from meta");
      s.next_slot = next.getColumn(0).getInt64();
      return s;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<std::optional<std::int64_t>> save_key_slots(const KeySlotChanges& c) override {
    if (!m_in_tx) return Error::internal("Store::save_key_slots outside a transaction");
    try {
      for (const auto id : c.now_zeroed) {
        Using use(*m_mark_list_zeroed);
        (*use).bind(1, id);
        (*use).exec();
      }
      for (const auto& list : c.taken_from) {
        if (list.slots.empty()) {
          Using use(*m_delete_list);
          (*use).bind(1, list.id);
          (*use).exec();
        } else {
          Using use(*m_update_list);
          bind_blob(*use, 1, pack_slots(list.slots));
          (*use).bind(2, list.id);
          (*use).exec();
        }
      }
      if (c.next_slot) {
        Using use(*m_set_meta);
        (*use).bind(1, "next_key_slot");
        (*use).bind(2, std::to_string(*c.next_slot));
        (*use).exec();
      }
      if (c.released.empty()) return std::optional<std::int64_t>{};
      Using use(*m_insert_list);
      bind_blob(*use, 1, pack_slots(c.released));
      (*use).exec();
      return std::optional<std::int64_t>{m_db.getLastInsertRowid()};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Result<LegacyPlaintext> legacy_plaintext() override {
    try {
      LegacyPlaintext out;
      for (const auto& [table, location] : {std::pair<const char*, Location>{"plaintext_record_data", Location::active},
                                            std::pair<const char*, Location>{"plaintext_archive_data", Location::archive}}) {
        if (!table_exists(table)) continue;
        out.present = true;
        SQLite::Statement q(m_db, std::string("SELECT key, subject, fields FROM ") + table + " ORDER BY key");
        while (q.executeStep()) {
          out.rows.push_back({location, q.getColumn(0).getString(), optional_text(q.getColumn(1)), q.getColumn(2).getString()});
        }
      }
      if (table_exists("plaintext_holds")) {
        out.present = true;
        SQLite::Statement q(m_db, "SELECT id, scope, target, reason, placed_at, placed_by FROM plaintext_holds ORDER BY id");
        while (q.executeStep()) {
          out.holds.push_back({q.getColumn(0).getInt64(), q.getColumn(1).getString(), q.getColumn(2).getString(),
                               q.getColumn(3).getString(), Instant{q.getColumn(4).getInt64()}, q.getColumn(5).getString()});
        }
      }
      return out;
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Status replace_legacy_plaintext(const std::vector<StoredRecord>& rows, const std::vector<StoredHold>& holds) override {
    if (!m_in_tx) return Error::internal("Store::replace_legacy_plaintext outside a transaction");
    try {
      // Marked in the same transaction: a crash before the VACUUM of
      // scrub_after_upgrade completes has it redone at the next start.
      m_db.exec("INSERT OR REPLACE INTO meta (name, value) VALUES ('vacuum_pending', 'sealed plaintext tables')");
      for (const char* table : {"plaintext_record_data", "plaintext_archive_data", "plaintext_holds"}) {
        if (table_exists(table)) m_db.exec(std::string("DROP TABLE ") + table);
      }
      for (const auto& r : rows) {
        SQLite::Statement q(m_db, "UPDATE " + table(r.location).name + " SET slot = ?, subject_ref = ?, sealed = ? WHERE key = ?");
        q.bind(1, r.sealed.slot);
        bind_optional(q, 2, r.subject_ref);
        bind_blob(q, 3, r.sealed.bytes);
        q.bind(4, r.key);
        q.exec();
      }
      for (const auto& h : holds) insert_hold(h, h.id);
      return {};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  Status scrub_after_upgrade() override {
    try {
      if (!meta_exists("vacuum_pending")) return {};
      // In WAL mode VACUUM writes the new pages to the WAL; the old ones
      // stay in the database file until a checkpoint copies the new ones
      // over them. TRUNCATE copies them all, cuts the file to its new size
      // and empties the WAL.
      m_db.exec("VACUUM");
      m_db.exec("DELETE FROM meta WHERE name = 'vacuum_pending'");
      m_db.execAndGet("PRAGMA wal_checkpoint(TRUNCATE)");
      return {};
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

 private:
  // The writer's statements of one record table.
  struct Writes {
    std::unique_ptr<SQLite::Statement> exists, find, insert, remove, update_schedule, retire, unretire;
  };

  bool in_write_transaction() const override { return m_in_tx; }

  Writes& writes(Location where) { return m_writes[where == Location::active ? 0 : 1]; }

  void prepare_writes() {
    for (int i = 0; i < 2; ++i) {
      const std::string& t = m_tables[i].name;
      Writes& w = m_writes[i];
      w.exists = stmt("SELECT 1 FROM " + t + " WHERE key = ?");
      w.find = stmt("SELECT id, slot, state, due, category FROM " + t + " WHERE key = ?");
      w.insert = stmt("INSERT INTO " + t +
                      " (key, category, state, dates, next_phase, due, done, created_at, slot, subject_ref, sealed) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING");
      w.remove = stmt("DELETE FROM " + t + " WHERE id = ?");
      w.update_schedule = stmt("UPDATE " + t + " SET dates = ?, next_phase = ?, due = ?, done = ? WHERE id = ?");
      const std::string columns = "key, category, state, dates, next_phase, due, done, created_at, slot, subject_ref, sealed";
      w.retire = stmt("INSERT INTO retired (location, purged_at, destroy_at, " + columns + ") SELECT '" +
                      (i == 0 ? "active" : "archive") + "', ?2, ?3, " + columns + " FROM " + t + " WHERE id = ?1");
      w.unretire = stmt("INSERT INTO " + t + " (" + columns + ") SELECT " + columns + " FROM retired WHERE key = ?");
    }
    m_retired_exists = stmt("SELECT 1 FROM retired WHERE key = ?");
    m_retired_find = stmt("SELECT location, state, due, category, slot FROM retired WHERE key = ?");
    m_retired_delete = stmt("DELETE FROM retired WHERE key = ?");
    m_insert_audit = stmt(std::string("INSERT INTO audit (") + kAuditColumns + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    m_set_meta = stmt("INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value");
    m_insert_list = stmt("INSERT INTO key_slot_lists (zeroed, slots) VALUES (0, ?)");
    m_update_list = stmt("UPDATE key_slot_lists SET slots = ? WHERE id = ?");
    m_delete_list = stmt("DELETE FROM key_slot_lists WHERE id = ?");
    m_mark_list_zeroed = stmt("UPDATE key_slot_lists SET zeroed = 1 WHERE id = ?");
    m_add_count = stmt("INSERT INTO record_counts (location, category, state, n) VALUES (?1, ?2, ?3, ?4) "
                       "ON CONFLICT (location, category, state) DO UPDATE SET n = n + ?4");
    m_drop_count = stmt("DELETE FROM record_counts WHERE location = ? AND category = ? AND state = ? AND n = 0");
    m_add_due_count = stmt("INSERT INTO due_counts (day, category, n) VALUES (?1, ?2, ?3) "
                           "ON CONFLICT (day, category) DO UPDATE SET n = n + ?3");
    m_drop_due_count = stmt("DELETE FROM due_counts WHERE day = ? AND category = ? AND n = 0");
    m_insert_job = stmt("INSERT INTO connector_jobs (id, connector, action, key, category, phase, decided_at, audit_seq, "
                        "subject_ref, slot, sealed, state, attempts, failures, next_at, last_error, finished_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    m_find_job = stmt("SELECT connector, state, slot FROM connector_jobs WHERE id = ?");
    const std::string update_job = "UPDATE connector_jobs SET state = ?2, attempts = ?3, failures = ?4, next_at = ?5, "
                                   "last_error = ?6, finished_at = ?7";
    m_update_job = stmt(update_job + " WHERE id = ?1");
    m_update_job_drop = stmt(update_job + ", slot = NULL, sealed = NULL WHERE id = ?1");
    m_add_job_counts = stmt("INSERT INTO connector_stats (connector, pending, in_flight, failed, done, discarded) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (connector) DO UPDATE SET "
                            "pending = pending + ?2, in_flight = in_flight + ?3, failed = failed + ?4, "
                            "done = done + ?5, discarded = discarded + ?6");
    m_set_job_error = stmt("INSERT INTO connector_stats (connector, last_error, last_error_at) VALUES (?1, ?2, ?3) "
                           "ON CONFLICT (connector) DO UPDATE SET last_error = ?2, last_error_at = ?3");
  }

  // Counts: per-transaction deltas, written once before the commit.
  void count(Location where, RecordState state, const std::string& category, std::int64_t delta) {
    m_deltas.count(where, state, category, delta);
  }
  void count_due(const std::optional<Instant>& due, const std::string& category, std::int64_t delta) {
    m_deltas.count_due(due, category, delta);
  }
  void count_job(const std::string& connector, std::optional<JobState> before, JobState after,
                 const std::optional<std::string>& error, Instant at) {
    m_deltas.count_job(connector, before, after, error, at);
  }
  void reset_deltas() { m_deltas.clear(); }
  void save_deltas() {
    // connector_stats: the jobs per state of each connector, and its latest error.
    for (const auto& [connector, delta] : m_deltas.jobs) {
      Using use(*m_add_job_counts);
      (*use).bind(1, connector);
      for (std::size_t i = 0; i < delta.size(); ++i) (*use).bind(static_cast<int>(i) + 2, delta[i]);
      (*use).exec();
    }
    for (const auto& [connector, error] : m_deltas.job_error) {
      Using use(*m_set_job_error);
      (*use).bind(1, connector);
      (*use).bind(2, error.first);
      (*use).bind(3, error.second.seconds);
      (*use).exec();
    }
    for (const auto& [bucket, delta] : m_deltas.records) {
      if (delta == 0) continue;
      const auto& [where, state, category] = bucket;
      const char* location = where == 0 ? "active" : "archive";
      const std::string state_name(to_string(static_cast<RecordState>(state)));
      {
        Using use(*m_add_count);
        (*use).bind(1, location);
        (*use).bind(2, category);
        (*use).bind(3, state_name);
        (*use).bind(4, delta);
        (*use).exec();
      }
      // A category emptied of a state leaves no row: the table stays as
      // small as the categories and states in use.
      if (delta < 0) {
        Using use(*m_drop_count);
        (*use).bind(1, location);
        (*use).bind(2, category);
        (*use).bind(3, state_name);
        (*use).exec();
      }
    }
    for (const auto& [bucket, delta] : m_deltas.due) {
      if (delta == 0) continue;
      {
        Using use(*m_add_due_count);
        (*use).bind(1, bucket.first);
        (*use).bind(2, bucket.second);
        (*use).bind(3, delta);
        (*use).exec();
      }
      if (delta < 0) {
        Using use(*m_drop_due_count);
        (*use).bind(1, bucket.first);
        (*use).bind(2, bucket.second);
        (*use).exec();
      }
    }
  }

  void insert_hold(const StoredHold& h, std::optional<std::int64_t> id) {
    SQLite::Statement q(m_db, "INSERT INTO holds (id, scope, slot, sealed_target, reason, placed_at, placed_by) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?)");
    if (id) q.bind(1, *id);
    else q.bind(1);
    q.bind(2, h.scope);
    q.bind(3, h.target.slot);
    bind_blob(q, 4, h.target.bytes);
    q.bind(5, h.reason);
    q.bind(6, h.placed_at.seconds);
    q.bind(7, h.placed_by);
    q.exec();
  }

  bool table_exists(const std::string& table, const std::string& schema = "main") {
    SQLite::Statement q(m_db, "SELECT 1 FROM " + schema + ".sqlite_master WHERE type = 'table' AND name = ?");
    q.bind(1, table);
    return q.executeStep();
  }

  bool meta_exists(const std::string& name) {
    if (!table_exists("meta")) return false;
    SQLite::Statement q(m_db, "SELECT 1 FROM meta WHERE name = ?");
    q.bind(1, name);
    return q.executeStep();
  }

  // ---- start-up: the legacy two-file layout --------------------------------

  // archive.db of schema 005 and before: migrated on its own connection
  // (its SQL names tables without a schema; opening it rolls back a hot
  // journal of ours), then attached as legacy_archive, and the super-journals
  // of interrupted two-file commits cleared.
  Status attach_legacy_archive(const std::filesystem::path& legacy) {
    {
      SQLite::Database archive(legacy.string(), SQLite::OPEN_READWRITE);
      archive.setBusyTimeout(m_options.busy_timeout_ms);
      if (auto st = apply_migrations(archive, embedded_archive_migrations(), INT_MAX, "archive database"); !st) return st;
    }
    m_db.exec("ATTACH DATABASE " + sql_quote(legacy.string()) + " AS legacy_archive");
    remove_stale_super_journals();
    return {};
  }

  // Copies the archived records (and, before 004, their values kept in
  // clear) into retention.db, marked merged in the same transaction.
  void merge_legacy_archive() {
    SQLite::Transaction tx(m_db, SQLite::TransactionBehavior::IMMEDIATE);
    m_db.exec("INSERT INTO main.archive (key, category, state, dates, next_phase, due, done, created_at, slot, "
              "subject_ref, sealed) SELECT key, category, state, dates, next_phase, due, done, created_at, slot, "
              "subject_ref, sealed FROM legacy_archive.records ORDER BY id");
    if (table_exists("plaintext_record_data", "legacy_archive")) {
      m_db.exec("CREATE TABLE main.plaintext_archive_data AS SELECT key, subject, fields FROM "
                "legacy_archive.plaintext_record_data");
    }
    m_db.exec("INSERT INTO meta (name, value) VALUES ('archive_merged', '1')");
    tx.commit();
    m_db.exec("DETACH DATABASE legacy_archive");
  }

  // The merged archive.db goes, its contents overwritten first (it may hold
  // values kept in clear before 004, and sealed ones whose keys are live).
  void remove_legacy_archive(const std::filesystem::path& legacy) {
    for (const auto& p : {legacy, std::filesystem::path(legacy.string() + "-journal")}) {
      std::error_code ec;
      const auto size = std::filesystem::file_size(p, ec);
      if (ec) continue;
      const int fd = ::open(p.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd >= 0) {
        const std::string zeros(64 * 1024, '\0');
        for (std::uintmax_t at = 0; at < size; at += zeros.size()) {
          const auto n = static_cast<std::size_t>(std::min<std::uintmax_t>(zeros.size(), size - at));
          if (::pwrite(fd, zeros.data(), n, static_cast<off_t>(at)) != static_cast<ssize_t>(n)) break;
        }
        ::fdatasync(fd);
        ::close(fd);
      }
      std::filesystem::remove(p, ec);
    }
    spdlog::info("store.archive_merged archive.db merged into {} and removed", m_path.filename().string());
  }

  // A two-file commit went through a super-journal (retention.db-mj<hex>)
  // naming the two child journals; a kill after it was written but before
  // any child journal pointed to it left it behind for good. With both
  // files attached and their hot journals rolled back (the EXCLUSIVE
  // transaction below), ours need no super-journal any more; one naming a
  // foreign, non-empty journal is kept. Best effort: a failure is logged.
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
    if (ec || candidates.empty()) return;
    std::size_t removed = 0;
    try {
      SQLite::Transaction tx(m_db, SQLite::TransactionBehavior::EXCLUSIVE);
      m_db.execAndGet("SELECT count(*) FROM main.sqlite_master");
      m_db.execAndGet("SELECT count(*) FROM legacy_archive.sqlite_master");
      std::set<std::string> ours;
      for (const char* schema : {"main", "legacy_archive"}) {
        if (const char* file = sqlite3_db_filename(m_db.getHandle(), schema); file && *file) {
          ours.insert(std::string(file) + "-journal");
        }
      }
      for (const auto& super : candidates) {
        if (!children_all_done(super, ours)) continue;
        if (fs::remove(super, ec)) ++removed;
      }
      tx.commit();
    } catch (const std::exception& e) {
      spdlog::warn("store.super_journals_kept error=\"{}\" (stale super-journals not removed)", e.what());
      return;
    }
    if (removed > 0) spdlog::info("store.super_journals_removed count={} (left by an interrupted two-file commit)", removed);
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

  // Databases from before 005 kept one row per key slot (renamed old_* by
  // 005): they become one list of slots not known to be zeroed, which the
  // vault zeroes at start-up and frees.
  void convert_slot_tables() {
    if (!table_exists("old_key_slots_to_zero")) return;
    std::vector<std::int64_t> slots;
    for (const char* table : {"old_key_slots_to_zero", "old_key_slots_free"}) {
      SQLite::Statement q(m_db, std::string("SELECT slot FROM ") + table);
      while (q.executeStep()) slots.push_back(q.getColumn(0).getInt64());
    }
    std::sort(slots.begin(), slots.end());
    slots.erase(std::unique(slots.begin(), slots.end()), slots.end());
    SQLite::Transaction tx(m_db);
    if (!slots.empty()) {
      SQLite::Statement ins(m_db, "INSERT INTO key_slot_lists (zeroed, slots) VALUES (0, ?)");
      bind_blob(ins, 1, pack_slots(slots));
      ins.exec();
    }
    m_db.exec("DROP TABLE old_key_slots_to_zero");
    m_db.exec("DROP TABLE old_key_slots_free");
    tx.commit();
  }

  // Counts that a migration asked for: the records per category and state
  // (005, 007) and the due records per day and category (006), each counted
  // once.
  void fill_counts() {
    if (meta_exists("record_counts_pending")) {
      SQLite::Transaction tx(m_db);
      m_db.exec("DELETE FROM record_counts");
      m_db.exec("INSERT INTO record_counts (location, category, state, n) "
                "SELECT 'active', category, state, count(*) FROM main.records GROUP BY category, state "
                "UNION ALL SELECT 'archive', category, state, count(*) FROM main.archive GROUP BY category, state");
      m_db.exec("DELETE FROM meta WHERE name = 'record_counts_pending'");
      tx.commit();
    }
    if (meta_exists("due_counts_pending")) {
      // floor(due / 86400), for negative times too (as day_of).
      const std::string day = "((due - (((due % 86400) + 86400) % 86400)) / 86400)";
      SQLite::Transaction tx(m_db);
      m_db.exec("DELETE FROM due_counts");
      m_db.exec("INSERT INTO due_counts (day, category, n) SELECT d, category, count(*) FROM ("
                "SELECT " + day + " AS d, category FROM main.records WHERE due IS NOT NULL "
                "UNION ALL SELECT " + day + " AS d, category FROM main.archive WHERE due IS NOT NULL) "
                "GROUP BY d, category");
      m_db.exec("DELETE FROM meta WHERE name = 'due_counts_pending'");
      tx.commit();
    }
  }

  SqliteOptions m_options;
  std::unique_ptr<Checkpointer> m_checkpointer;
  Writes m_writes[2];
  std::unique_ptr<SQLite::Statement> m_insert_job, m_find_job, m_update_job, m_update_job_drop, m_add_job_counts,
      m_set_job_error;
  std::unique_ptr<SQLite::Statement> m_insert_audit, m_set_meta, m_insert_list, m_update_list, m_delete_list,
      m_mark_list_zeroed, m_add_count, m_drop_count, m_add_due_count, m_drop_due_count, m_retired_exists,
      m_retired_find, m_retired_delete;
  bool m_in_tx = false;
  Deltas m_deltas;
  std::optional<AuditRow> m_head;
  bool m_head_known = false;
};

// Creates `path` 0600 ourselves: SQLite would use the umask, and the WAL and
// shared-memory files take the database file's mode.
Status create_private(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Error::storage("cannot open database " + path.string() + ": " + std::strerror(errno));
  ::close(fd);
  return {};
}

}  // namespace

Result<std::unique_ptr<Store>> open_sqlite_store(const std::filesystem::path& path, const SqliteOptions& options) {
  if (auto st = create_private(path); !st) return std::move(st).error();
  try {
    auto store = std::make_unique<SqliteStore>(path, options);
    if (auto st = store->open(); !st) return std::move(st).error();
    return std::unique_ptr<Store>(std::move(store));
  } catch (const std::exception& e) {
    return Error::storage("cannot open database " + path.string() + ": " + e.what());
  }
}

Result<std::unique_ptr<StoreReader>> open_sqlite_reader(const std::filesystem::path& path, const SqliteOptions& options) {
  try {
    return std::unique_ptr<StoreReader>(std::make_unique<SqliteReader>(path, options));
  } catch (const std::exception& e) {
    return Error::storage("cannot open a reader on " + path.string() + ": " + e.what());
  }
}

}  // namespace retentiond::store
