#include "lib/store/postgresql/pg_store.hpp"

#include <unistd.h>

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>
#include <regex>

#include <spdlog/spdlog.h>

#include "lib/store/codec.hpp"
#include "lib/store/migrations.hpp"
#include "lib/store/postgresql/pq.hpp"

namespace retentiond::store {

int latest_postgresql_schema_version() {
  const auto& m = embedded_postgresql_migrations();
  return m.empty() ? 0 : m.back().version;
}

std::string redact_url(const std::string& url) {
  // URI form: postgresql://user:secret@host/...; key=value form: password=secret.
  static const std::regex uri(R"(^(postgres(?:ql)?://[^:/@?]*:)[^@/?]*@)");
  static const std::regex kv(R"((\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+))");
  static const std::regex query(R"(([?&]password=)[^&]*)");
  std::string out = std::regex_replace(url, uri, "$1***@");
  out = std::regex_replace(out, kv, "$1***");
  return std::regex_replace(out, query, "$1***");
}

namespace {

using calendar::Instant;
using namespace codec;

constexpr const char* kActive = "retentiond.records";
constexpr const char* kArchive = "retentiond_archive.records";
// Transaction advisory locks (the bytes of "rtntnd", then +1): every write
// transaction of every daemon on the database takes the first (one writer
// at a time: the audit chain has one head); migrations take the second.
constexpr std::int64_t kWriteLock = 0x7274'6e74'6e64;
constexpr std::int64_t kMigrationLock = kWriteLock + 1;
// Key slots are handed out in blocks of this size (the sequence's
// increment, migrations/postgresql/001).
constexpr std::int64_t kSlotBlock = 1024;

const char* table_of(Location where) { return where == Location::active ? kActive : kArchive; }
const char* location_name(Location where) { return where == Location::active ? "active" : "archive"; }
Location location_from(const std::string& s) { return s == "archive" ? Location::archive : Location::active; }


StoredRecord schedule_from(const pq::Rows& q, int i, Location location) {
  StoredRecord r;
  r.location = location;
  r.key = q.text(i, 0);
  r.category = q.text(i, 1);
  r.state = state_from(q.text(i, 2));
  r.dates = dates_from_json(q.text(i, 3));
  r.next_phase = static_cast<int>(q.i64(i, 4));
  if (auto due = q.opt_i64(i, 5)) r.due = Instant{*due};
  r.done = done_from_json(q.text(i, 6));
  r.created_at = Instant{q.i64(i, 7)};
  r.subject_ref = q.opt_text(i, 8);
  return r;
}

StoredRecord record_from(const pq::Rows& q, int i, Location location) {
  StoredRecord r = schedule_from(q, i, location);
  if (q.null(i, 9) || q.null(i, 10)) throw std::runtime_error("record '" + r.key + "' has no sealed values");
  r.sealed.slot = q.i64(i, 9);
  r.sealed.bytes = q.bytes(i, 10);
  return r;
}

StoredJob job_from(const pq::Rows& q, int i) {
  StoredJob j;
  j.id = q.text(i, 0);
  j.connector = q.text(i, 1);
  j.action = q.text(i, 2);
  j.key = q.text(i, 3);
  j.category = q.text(i, 4);
  if (auto phase = q.opt_i64(i, 5)) j.phase = static_cast<int>(*phase);
  j.decided_at = Instant{q.i64(i, 6)};
  j.audit_seq = q.i64(i, 7);
  j.subject_ref = q.opt_text(i, 8);
  if (!q.null(i, 9) && !q.null(i, 10)) {
    j.subject.slot = q.i64(i, 9);
    j.subject.bytes = q.bytes(i, 10);
  }
  j.state = job_state_from(q.text(i, 11)).value_or(JobState::failed);
  j.attempts = q.i64(i, 12);
  j.failures = q.i64(i, 13);
  j.next_at = Instant{q.i64(i, 14)};
  j.last_error = q.opt_text(i, 15);
  if (auto at = q.opt_i64(i, 16)) j.finished_at = Instant{*at};
  return j;
}

AuditRow audit_from(const pq::Rows& q, int i) {
  AuditRow a;
  a.seq = q.i64(i, 0);
  a.at = Instant{q.i64(i, 1)};
  a.action = q.text(i, 2);
  a.key = q.opt_text(i, 3);
  a.category = q.opt_text(i, 4);
  if (auto phase = q.opt_i64(i, 5)) a.phase = static_cast<int>(*phase);
  a.subject_ref = q.opt_text(i, 6);
  a.actor = q.text(i, 7);
  a.reason = q.opt_text(i, 8);
  a.policy_hash = q.text(i, 9);
  a.hash = q.text(i, 10);
  return a;
}

template <typename Rows, typename Less>
void merge_limited(Rows& out, std::size_t limit, Less less) {
  std::sort(out.begin(), out.end(), less);
  if (out.size() > limit) out.resize(limit);
}

bool by_key(const StoredRecord& a, const StoredRecord& b) { return a.key < b.key; }

std::int64_t as_i64(std::size_t n) { return static_cast<std::int64_t>(std::min<std::size_t>(n, INT64_MAX)); }

// The queries, over one connection: the readers' and the writer's. Base is
// StoreReader or Store.
template <typename Base>
class PgQueries : public Base {
 public:
  explicit PgQueries(const std::string& url) : m_c(url, daemon_name()) {}

  Status read(const std::function<Status()>& work) override {
    if (m_read_depth > 0 || in_write_transaction()) return run(work);
    try {
      reconnect_if_broken();
      m_c.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    } catch (const std::exception& e) {
      return storage_error(e);
    }
    ++m_read_depth;
    Status st = run(work);
    --m_read_depth;
    try {
      m_c.exec(st ? "COMMIT" : "ROLLBACK");
    } catch (const std::exception& e) {
      if (st) st = storage_error(e);
    }
    return st;
  }

  Result<std::optional<StoredRecord>> get(const std::string& key) override { return find(key, true); }
  Result<std::optional<StoredRecord>> schedule_of(const std::string& key) override { return find(key, false); }

  Result<std::vector<StoredRecord>> due(Instant now, std::size_t limit,
                                        const std::optional<StoreReader::DueCursor>& after) override {
    return query([&] {
      // Two index ranges, each limited, merged: never a sort of the backlog.
      std::vector<StoredRecord> out;
      for (const Location where : {Location::active, Location::archive}) {
        const auto q = m_c.run(std::string("SELECT ") + kScheduleColumns + " FROM " + table_of(where) +
                                   " r WHERE r.due IS NOT NULL AND r.due <= $1 AND (r.due, r.key) > ($2, $3) "
                                   "ORDER BY r.due, r.key LIMIT $4",
                               pq::Params()
                                   .i64(now.seconds)
                                   .i64(after ? after->due.seconds : INT64_MIN)
                                   .text(after ? after->key : std::string())
                                   .i64(as_i64(limit)));
        for (int i = 0; i < q.size(); ++i) out.push_back(schedule_from(q, i, where));
      }
      merge_limited(out, limit, [](const StoredRecord& a, const StoredRecord& b) {
        return *a.due != *b.due ? *a.due < *b.due : a.key < b.key;
      });
      return out;
    });
  }

  Result<std::optional<Instant>> next_due(std::optional<Instant> after) override {
    return query([&] {
      std::optional<Instant> best;
      for (const Location where : {Location::active, Location::archive}) {
        const auto q = m_c.run(std::string("SELECT min(due) FROM ") + table_of(where) + " WHERE due IS NOT NULL AND due > $1",
                               pq::Params().i64(after ? after->seconds : INT64_MIN));
        if (auto next = q.opt_i64(0, 0); next && (!best || Instant{*next} < *best)) best = Instant{*next};
      }
      return best;
    });
  }

  Result<std::vector<StoredRecord>> undue(std::size_t limit, const std::string& after_key) override {
    return paged("r.due IS NULL AND r.key > $1", std::nullopt, after_key, limit);
  }

  Result<std::vector<StoredRecord>> schedules(const std::string& category, std::size_t limit,
                                              const std::string& after_key) override {
    return paged("r.category = $2 AND r.key > $1", category, after_key, limit);
  }

  Result<std::int64_t> count_category(const std::string& category) override {
    return query([&] {
      std::int64_t n = 0;
      for (const Location where : {Location::active, Location::archive}) {
        n += m_c.run(std::string("SELECT count(*) FROM ") + table_of(where) + " WHERE category = $1",
                     pq::Params().text(category))
                 .i64(0, 0);
      }
      return n;
    });
  }

  Result<std::vector<StoredRecord>> by_subject_ref(const std::string& subject_ref) override {
    return query([&] {
      std::vector<StoredRecord> out;
      for (const Location where : {Location::active, Location::archive}) {
        const auto q = m_c.run(std::string("SELECT ") + kRecordColumns + " FROM " + table_of(where) +
                                   " r WHERE r.subject_ref = $1",
                               pq::Params().text(subject_ref));
        for (int i = 0; i < q.size(); ++i) out.push_back(record_from(q, i, where));
      }
      std::sort(out.begin(), out.end(), by_key);
      return out;
    });
  }

  Result<RecordCounts> counts() override {
    return query([&] {
      RecordCounts c;
      const auto q = m_c.run("SELECT state, sum(n) FROM retentiond.record_counts GROUP BY state");
      for (int i = 0; i < q.size(); ++i) add_count(c, state_from(q.text(i, 0)), q.i64(i, 1));
      return c;
    });
  }

  Result<std::map<std::string, RecordCounts>> counts_by_category() override {
    return query([&] {
      std::map<std::string, RecordCounts> out;
      const auto q = m_c.run("SELECT category, state, sum(n) FROM retentiond.record_counts GROUP BY category, state");
      for (int i = 0; i < q.size(); ++i) add_count(out[q.text(i, 0)], state_from(q.text(i, 1)), q.i64(i, 2));
      return out;
    });
  }

  Result<std::vector<DueDay>> due_days(Instant now) override {
    return query([&] {
      std::vector<DueDay> out;
      const auto q = m_c.run("SELECT day, category, n FROM retentiond.due_counts WHERE day <= $1 AND n > 0 "
                             "ORDER BY day, category",
                             pq::Params().i64(day_of(now.seconds)));
      for (int i = 0; i < q.size(); ++i) out.push_back(DueDay{Instant{q.i64(i, 0) * kDay}, q.text(i, 1), q.i64(i, 2)});
      return out;
    });
  }

  // The days before today from due_counts, today's records from the due
  // indexes (both in one snapshot when called inside `read`).
  Result<std::map<std::string, std::int64_t>> due_by_category(Instant now) override {
    return query([&] {
      std::map<std::string, std::int64_t> out;
      const std::int64_t today = day_of(now.seconds);
      const auto before = m_c.run("SELECT category, sum(n) FROM retentiond.due_counts WHERE day < $1 GROUP BY category",
                                  pq::Params().i64(today));
      for (int i = 0; i < before.size(); ++i) out[before.text(i, 0)] += before.i64(i, 1);
      for (const Location where : {Location::active, Location::archive}) {
        const auto q = m_c.run(std::string("SELECT category, count(*) FROM ") + table_of(where) +
                                   " WHERE due IS NOT NULL AND due >= $1 AND due <= $2 GROUP BY category",
                               pq::Params().i64(today * kDay).i64(now.seconds));
        for (int i = 0; i < q.size(); ++i) out[q.text(i, 0)] += q.i64(i, 1);
      }
      std::erase_if(out, [](const auto& kv) { return kv.second == 0; });
      return out;
    });
  }

  Result<std::optional<AuditRow>> last_audit() override {
    return query([&] {
      const auto q = m_c.run(std::string("SELECT ") + kAuditColumns + " FROM retentiond.audit ORDER BY seq DESC LIMIT 1");
      return q.empty() ? std::optional<AuditRow>{} : std::optional<AuditRow>{audit_from(q, 0)};
    });
  }

  Result<std::vector<AuditRow>> audit_entries(const StoreReader::AuditQuery& aq) override {
    return query([&] {
      // Filters use the audit_key / audit_subject_ref indexes; seq order is the primary key.
      std::string where = "WHERE true";
      pq::Params p;
      int n = 0;
      if (aq.after_seq) {
        where += " AND seq > $" + std::to_string(++n);
        p.i64(*aq.after_seq);
      }
      if (aq.key) {
        where += " AND key = $" + std::to_string(++n);
        p.text(*aq.key);
      }
      if (aq.subject_ref) {
        where += " AND subject_ref = $" + std::to_string(++n);
        p.text(*aq.subject_ref);
      }
      p.i64(as_i64(aq.limit));
      const auto q = m_c.run(std::string("SELECT ") + kAuditColumns + " FROM retentiond.audit " + where +
                                 " ORDER BY seq " + (aq.after_seq ? "ASC" : "DESC") + " LIMIT $" + std::to_string(++n),
                             p);
      std::vector<AuditRow> out;
      for (int i = 0; i < q.size(); ++i) out.push_back(audit_from(q, i));
      if (!aq.after_seq) std::reverse(out.begin(), out.end());
      return out;
    });
  }

  Result<std::optional<AuditRow>> find_disposal(const std::string& key) override {
    return query([&] {
      const auto q = m_c.run(std::string("SELECT ") + kAuditColumns +
                                 " FROM retentiond.audit WHERE key = $1 AND action IN ('purge', 'erase') "
                                 "ORDER BY seq DESC LIMIT 1",
                             pq::Params().text(key));
      return q.empty() ? std::optional<AuditRow>{} : std::optional<AuditRow>{audit_from(q, 0)};
    });
  }

  Result<std::vector<StoredHold>> holds() override {
    return query([&] {
      const auto q = m_c.run("SELECT id, scope, slot, sealed_target, reason, placed_at, placed_by "
                             "FROM retentiond.holds ORDER BY id");
      std::vector<StoredHold> out;
      for (int i = 0; i < q.size(); ++i) {
        StoredHold h;
        h.id = q.i64(i, 0);
        h.scope = q.text(i, 1);
        h.target.slot = q.i64(i, 2);
        h.target.bytes = q.bytes(i, 3);
        h.reason = q.text(i, 4);
        h.placed_at = Instant{q.i64(i, 5)};
        h.placed_by = q.text(i, 6);
        out.push_back(std::move(h));
      }
      return out;
    });
  }

  // Every daemon's connections name it (application_name): the connected
  // ones are the live ones (a killed daemon's connections close with it).
  Result<std::vector<DaemonSeen>> daemons() override {
    return query([&] {
      const auto q = m_c.run("SELECT application_name, coalesce(host(client_addr), 'local'), "
                             "min(extract(epoch FROM backend_start))::bigint FROM pg_stat_activity "
                             "WHERE datname = current_database() AND application_name LIKE 'retentiond %' "
                             "GROUP BY 1, 2 ORDER BY 1, 2");
      std::vector<DaemonSeen> out;
      for (int i = 0; i < q.size(); ++i) {
        auto d = daemon_from_name(q.text(i, 0));
        if (!d) continue;
        d->address = q.text(i, 1);
        d->since = Instant{q.i64(i, 2)};
        out.push_back(std::move(*d));
      }
      return out;
    });
  }

  Result<std::optional<std::string>> get_meta(const std::string& name) override {
    return query([&] {
      const auto q = m_c.run("SELECT value FROM retentiond.meta WHERE name = $1", pq::Params().text(name));
      return q.empty() ? std::optional<std::string>{} : std::optional<std::string>{q.text(0, 0)};
    });
  }

  Result<std::optional<RetiredRecord>> retired(const std::string& key) override {
    return query([&] {
      const auto q = m_c.run(std::string("SELECT ") + kRecordColumns +
                                 ", r.location, r.purged_at, r.destroy_at FROM retentiond.retired r WHERE r.key = $1",
                             pq::Params().text(key));
      if (q.empty()) return std::optional<RetiredRecord>{};
      return std::optional<RetiredRecord>{
          RetiredRecord{record_from(q, 0, location_from(q.text(0, 11))), Instant{q.i64(0, 12)}, Instant{q.i64(0, 13)}}};
    });
  }

  Result<std::vector<RetiredRecord>> retired_due(Instant now, std::size_t limit) override {
    return query([&] {
      const auto q = m_c.run(std::string("SELECT ") + kScheduleColumns +
                                 ", r.location, r.purged_at, r.destroy_at FROM retentiond.retired r "
                                 "WHERE r.destroy_at <= $1 ORDER BY r.destroy_at, r.key LIMIT $2",
                             pq::Params().i64(now.seconds).i64(as_i64(limit)));
      std::vector<RetiredRecord> out;
      for (int i = 0; i < q.size(); ++i) {
        out.push_back(RetiredRecord{schedule_from(q, i, location_from(q.text(i, 9))), Instant{q.i64(i, 10)},
                                    Instant{q.i64(i, 11)}});
      }
      return out;
    });
  }

  Result<std::int64_t> count_retired(Instant after, Instant until) override {
    return query([&] {
      return m_c.run("SELECT count(*) FROM retentiond.retired WHERE destroy_at > $1 AND destroy_at <= $2",
                     pq::Params().i64(after.seconds).i64(until.seconds))
          .i64(0, 0);
    });
  }

  Result<std::optional<StoredJob>> job(const std::string& id) override {
    return query([&] {
      const auto q = m_c.run(std::string("SELECT ") + kJobColumns + " FROM retentiond.connector_jobs WHERE id = $1",
                             pq::Params().text(id));
      return q.empty() ? std::optional<StoredJob>{} : std::optional<StoredJob>{job_from(q, 0)};
    });
  }

  Result<std::vector<StoredJob>> jobs(const std::string& connector, JobState state, std::size_t limit,
                                      std::int64_t after_seq) override {
    return job_rows(std::string("SELECT ") + kJobColumns +
                        " FROM retentiond.connector_jobs WHERE connector = $1 AND state = $2 AND audit_seq > $3 "
                        "AND state IN ('pending', 'in_flight', 'failed') ORDER BY audit_seq LIMIT $4",
                    pq::Params().text(connector).text(to_string(state)).i64(after_seq).i64(as_i64(limit)));
  }

  Result<std::vector<StoredJob>> jobs_ready(const std::string& connector, JobState state, Instant now,
                                            std::size_t limit) override {
    return job_rows(std::string("SELECT ") + kJobColumns +
                        " FROM retentiond.connector_jobs WHERE connector = $1 AND state = $2 AND next_at <= $3 "
                        "AND state IN ('pending', 'in_flight', 'failed') ORDER BY next_at, audit_seq LIMIT $4",
                    pq::Params().text(connector).text(to_string(state)).i64(now.seconds).i64(as_i64(limit)));
  }

  Result<std::optional<Instant>> next_job_at(const std::string& connector, JobState state) override {
    return query([&] {
      const auto q = m_c.run("SELECT min(next_at) FROM retentiond.connector_jobs WHERE connector = $1 AND state = $2 "
                             "AND state IN ('pending', 'in_flight', 'failed')",
                             pq::Params().text(connector).text(to_string(state)));
      const auto at = q.opt_i64(0, 0);
      return at ? std::optional<Instant>{Instant{*at}} : std::optional<Instant>{};
    });
  }

  Result<std::vector<StoredJob>> jobs_of_key(const std::string& key) override {
    auto rows = job_rows(std::string("SELECT ") + kJobColumns +
                             " FROM retentiond.connector_jobs WHERE key = $1 ORDER BY audit_seq, connector",
                         pq::Params().text(key));
    if (rows) {
      for (auto& j : *rows) j.subject = Sealed{};
    }
    return rows;
  }

  Result<std::vector<ConnectorStats>> connector_stats() override {
    return query([&] {
      std::vector<ConnectorStats> out;
      const auto q = m_c.run("SELECT connector, pending, in_flight, failed, done, discarded, last_error, last_error_at "
                             "FROM retentiond.connector_stats ORDER BY connector");
      for (int i = 0; i < q.size(); ++i) {
        ConnectorStats c;
        c.connector = q.text(i, 0);
        c.pending = q.i64(i, 1);
        c.in_flight = q.i64(i, 2);
        c.failed = q.i64(i, 3);
        c.done = q.i64(i, 4);
        c.discarded = q.i64(i, 5);
        c.last_error = q.opt_text(i, 6);
        if (auto at = q.opt_i64(i, 7)) c.last_error_at = Instant{*at};
        out.push_back(std::move(c));
      }
      for (auto& c : out) {
        for (const char* state : {"pending", "in_flight"}) {
          const auto o = m_c.run("SELECT decided_at FROM retentiond.connector_jobs WHERE connector = $1 AND state = $2 "
                                 "AND state IN ('pending', 'in_flight', 'failed') ORDER BY audit_seq LIMIT 1",
                                 pq::Params().text(c.connector).text(state));
          if (o.empty()) continue;
          const Instant at{o.i64(0, 0)};
          if (!c.oldest_pending || at < *c.oldest_pending) c.oldest_pending = at;
        }
      }
      return out;
    });
  }

 protected:
  virtual bool in_write_transaction() const { return false; }

  static Status run(const std::function<Status()>& work) {
    try {
      return work();
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  // Runs `body` (which throws on failure) and returns its value, or the
  // failure as a storage_error. A call outside any transaction first
  // reconnects a connection the server closed (restart, failover).
  template <typename Body>
  auto query(Body body) -> Result<decltype(body())> {
    try {
      if (m_read_depth == 0 && !in_write_transaction()) reconnect_if_broken();
      return body();
    } catch (const std::exception& e) {
      return storage_error(e);
    }
  }

  void reconnect_if_broken() {
    if (!m_c.broken()) return;
    spdlog::warn("store.reconnect {} (the connection was lost)", m_c.describe());
    m_c.reconnect();
  }

  Result<std::vector<StoredJob>> job_rows(const std::string& sql, const pq::Params& params) {
    return query([&] {
      const auto q = m_c.run(sql, params);
      std::vector<StoredJob> out;
      for (int i = 0; i < q.size(); ++i) out.push_back(job_from(q, i));
      return out;
    });
  }

  pq::Connection m_c;
  int m_read_depth = 0;

 private:
  Result<std::optional<StoredRecord>> find(const std::string& key, bool values) {
    return query([&] {
      for (const Location where : {Location::active, Location::archive}) {
        const auto q = m_c.run(std::string("SELECT ") + (values ? kRecordColumns : kScheduleColumns) + " FROM " +
                                   table_of(where) + " r WHERE r.key = $1",
                               pq::Params().text(key));
        if (!q.empty()) return std::optional<StoredRecord>{values ? record_from(q, 0, where) : schedule_from(q, 0, where)};
      }
      return std::optional<StoredRecord>{};
    });
  }

  // Rows of both tables in key order after `after_key`, at most `limit`;
  // `where` uses $1 (after_key) and, with a category, $2.
  Result<std::vector<StoredRecord>> paged(const std::string& where, const std::optional<std::string>& category,
                                          const std::string& after_key, std::size_t limit) {
    return query([&] {
      std::vector<StoredRecord> out;
      for (const Location t : {Location::active, Location::archive}) {
        pq::Params p;
        p.text(after_key);
        if (category) p.text(*category);
        p.i64(as_i64(limit));
        const auto q = m_c.run(std::string("SELECT ") + kScheduleColumns + " FROM " + table_of(t) + " r WHERE " + where +
                                   " ORDER BY r.key LIMIT $" + std::to_string(category ? 3 : 2),
                               p);
        for (int i = 0; i < q.size(); ++i) out.push_back(schedule_from(q, i, t));
      }
      merge_limited(out, limit, by_key);
      return out;
    });
  }
};

class PgReader final : public PgQueries<StoreReader> {
 public:
  using PgQueries::PgQueries;
};

class PgStore final : public PgQueries<Store> {
 public:
  explicit PgStore(const std::string& url) : PgQueries(url) {}

  Status open() {
    try {
      // Durable commits whatever the server's or the role's default.
      m_c.exec("SET synchronous_commit = on");
      migrate();
      return {};
    } catch (const std::exception& e) {
      return Error::storage(std::string("cannot open the PostgreSQL store: ") + e.what());
    }
  }

  Status transaction(const std::function<Status()>& work) override {
    if (m_in_tx) return Error::internal("Store::transaction is not reentrant");
    try {
      reconnect_if_broken();
      m_c.exec("BEGIN");
      // One write transaction at a time on the database, whichever daemon
      // runs it: each starts after the last commit and sees it (READ
      // COMMITTED: every statement reads the latest committed state).
      m_c.run("SELECT pg_advisory_xact_lock($1)", pq::Params().i64(kWriteLock));
    } catch (const std::exception& e) {
      try {
        m_c.exec("ROLLBACK");
      } catch (...) {
      }
      return storage_error(e);
    }
    m_in_tx = true;
    m_head_known = false;  // another daemon may have appended since
    m_sets_policy.reset();
    m_deltas.clear();
    Status result;
    try {
      result = work();
      if (result) result = check_policy();
      if (result) {
        save_deltas();
        m_c.exec("COMMIT");
        if (m_sets_policy) m_expected_policy = *m_sets_policy;
      }
    } catch (const std::exception& e) {
      result = storage_error(e);
    }
    if (!result) {
      try {
        m_c.exec("ROLLBACK");
      } catch (...) {
        // The connection is gone: the server rolled back.
      }
    }
    m_in_tx = false;
    m_head_known = false;
    m_deltas.clear();
    return result;
  }

  // A key lives in one place: the other table must not have it, and the
  // table's primary key guards the place itself (ON CONFLICT DO NOTHING:
  // no row written, no change counted).
  Result<bool> insert_new(const StoredRecord& row) override {
    if (row.sealed.slot < 0) return Error::internal("Store::insert: record '" + row.key + "' has no sealed values");
    bool inserted = false;
    auto st = write([&] {
      const Location other = row.location == Location::active ? Location::archive : Location::active;
      if (!m_c.run(std::string("SELECT 1 FROM ") + table_of(other) + " WHERE key = $1", pq::Params().text(row.key))
               .empty()) {
        return;
      }
      const auto q = m_c.run(std::string("INSERT INTO ") + table_of(row.location) +
                                 " (key, category, state, dates, next_phase, due, done, created_at, slot, subject_ref, "
                                 "sealed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (key) DO NOTHING",
                             pq::Params()
                                 .text(row.key)
                                 .text(row.category)
                                 .text(to_string(row.state))
                                 .text(dates_to_json(row.dates))
                                 .i64(row.next_phase)
                                 .i64(row.due ? std::optional<std::int64_t>(row.due->seconds) : std::nullopt)
                                 .text(done_to_json(row.done))
                                 .i64(row.created_at.seconds)
                                 .i64(row.sealed.slot)
                                 .text(row.subject_ref)
                                 .bytes(row.sealed.bytes));
      if (q.affected() == 0) return;
      m_deltas.count(row.location, row.state, row.category, +1);
      m_deltas.count_due(row.due, row.category, +1);
      inserted = true;
    });
    if (!st) return std::move(st).error();
    return inserted;
  }

  Status update_schedule(const Schedule& row) override {
    bool found = false;
    auto st = write([&] {
      const std::string t = table_of(row.location);
      const auto q = m_c.run("WITH old AS (SELECT key, due, category FROM " + t +
                                 " WHERE key = $1 FOR UPDATE) UPDATE " + t +
                                 " r SET dates = $2, next_phase = $3, due = $4, done = $5 FROM old WHERE r.key = old.key "
                                 "RETURNING old.due, old.category",
                             pq::Params()
                                 .text(row.key)
                                 .text(dates_to_json(row.dates))
                                 .i64(row.next_phase)
                                 .i64(row.due ? std::optional<std::int64_t>(row.due->seconds) : std::nullopt)
                                 .text(done_to_json(row.done)));
      if (q.empty()) return;
      found = true;
      const auto old_due = q.opt_i64(0, 0);
      m_deltas.count_due(old_due ? std::optional<Instant>(Instant{*old_due}) : std::nullopt, q.text(0, 1), -1);
      m_deltas.count_due(row.due, q.text(0, 1), +1);
    });
    if (!st) return st;
    if (!found) return Error::not_found("no record with key '" + row.key + "' to reschedule");
    return {};
  }

  Result<std::optional<std::int64_t>> remove(const std::string& key, Location where) override {
    std::optional<std::int64_t> slot;
    auto st = write([&] {
      const auto q = m_c.run(std::string("DELETE FROM ") + table_of(where) +
                                 " WHERE key = $1 RETURNING slot, state, due, category",
                             pq::Params().text(key));
      if (q.empty()) return;
      slot = q.opt_i64(0, 0).value_or(-1);
      count_removed(where, q);
    });
    if (!st) return std::move(st).error();
    return slot;
  }

  Status append_audit(const AuditRow& a) override {
    return write([&] {
      m_c.run(std::string("INSERT INTO retentiond.audit (") + kAuditColumns +
                  ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
              pq::Params()
                  .i64(a.seq)
                  .i64(a.at.seconds)
                  .text(a.action)
                  .text(a.key)
                  .text(a.category)
                  .i64(a.phase ? std::optional<std::int64_t>(*a.phase) : std::nullopt)
                  .text(a.subject_ref)
                  .text(a.actor)
                  .text(a.reason)
                  .text(a.policy_hash)
                  .text(a.hash));
      m_head = a;
      m_head_known = true;
    });
  }

  // Inside a write transaction, served from memory once known: the chain's
  // head changes only through append_audit while this transaction holds the
  // write lock. Outside, read afresh (other daemons append).
  Result<std::optional<AuditRow>> last_audit() override {
    if (!m_in_tx) return PgQueries::last_audit();
    if (m_head_known) return m_head;
    auto head = PgQueries::last_audit();
    if (!head) return head;
    m_head = *head;
    m_head_known = true;
    return head;
  }

  Result<std::int64_t> add_hold(const StoredHold& h) override {
    std::int64_t id = 0;
    auto st = write([&] {
      // A given id (a migrated store) is kept, and later ones come after it.
      id = m_c.run("INSERT INTO retentiond.holds (id, scope, slot, sealed_target, reason, placed_at, placed_by) "
                   "VALUES (coalesce($1::bigint, nextval(pg_get_serial_sequence('retentiond.holds', 'id'))), "
                   "$2, $3, $4, $5, $6, $7) RETURNING id",
                   pq::Params()
                       .i64(h.id > 0 ? std::optional<std::int64_t>(h.id) : std::nullopt)
                       .text(h.scope)
                       .i64(h.target.slot)
                       .bytes(h.target.bytes)
                       .text(h.reason)
                       .i64(h.placed_at.seconds)
                       .text(h.placed_by))
               .i64(0, 0);
      if (h.id > 0) {
        m_c.run("SELECT setval(pg_get_serial_sequence('retentiond.holds', 'id'), "
                "greatest($1, (SELECT last_value FROM retentiond.holds_id_seq)))",
                pq::Params().i64(h.id));
      }
    });
    if (!st) return std::move(st).error();
    return id;
  }

  Result<std::optional<std::int64_t>> remove_hold(std::int64_t id) override {
    std::optional<std::int64_t> slot;
    auto st = write([&] {
      const auto q = m_c.run("DELETE FROM retentiond.holds WHERE id = $1 RETURNING slot", pq::Params().i64(id));
      if (!q.empty()) slot = q.i64(0, 0);
    });
    if (!st) return std::move(st).error();
    return slot;
  }

  Status insert_job(const StoredJob& j) override {
    return write([&] {
      pq::Params p;
      p.text(j.id).text(j.connector).text(j.action).text(j.key).text(j.category);
      p.i64(j.phase ? std::optional<std::int64_t>(*j.phase) : std::nullopt);
      p.i64(j.decided_at.seconds).i64(j.audit_seq).text(j.subject_ref);
      if (j.subject.slot >= 0) {
        p.i64(j.subject.slot).bytes(j.subject.bytes);
      } else {
        p.null().null();
      }
      p.text(to_string(j.state)).i64(j.attempts).i64(j.failures).i64(j.next_at.seconds).text(j.last_error);
      p.i64(j.finished_at ? std::optional<std::int64_t>(j.finished_at->seconds) : std::nullopt);
      m_c.run(std::string("INSERT INTO retentiond.connector_jobs (") + kJobColumns +
                  ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
              p);
      m_deltas.count_job(j.connector, std::nullopt, j.state, std::nullopt, j.decided_at);
    });
  }

  Result<std::optional<std::int64_t>> update_job(const JobUpdate& u) override {
    std::optional<std::int64_t> slot;
    auto st = write([&] {
      const std::string drop = u.drop_subject ? ", slot = NULL, sealed = NULL" : "";
      const auto q = m_c.run("WITH old AS (SELECT id, connector, state, slot FROM retentiond.connector_jobs "
                             "WHERE id = $1 FOR UPDATE) UPDATE retentiond.connector_jobs j SET state = $2, attempts = $3, "
                             "failures = $4, next_at = $5, last_error = $6, finished_at = $7" +
                                 drop + " FROM old WHERE j.id = old.id RETURNING old.connector, old.state, old.slot",
                             pq::Params()
                                 .text(u.id)
                                 .text(to_string(u.state))
                                 .i64(u.attempts)
                                 .i64(u.failures)
                                 .i64(u.next_at.seconds)
                                 .text(u.last_error)
                                 .i64(u.finished_at ? std::optional<std::int64_t>(u.finished_at->seconds) : std::nullopt));
      if (q.empty()) return;
      if (u.drop_subject) slot = q.opt_i64(0, 2);
      m_deltas.count_job(q.text(0, 0), job_state_from(q.text(0, 1)).value_or(JobState::failed), u.state,
                         u.error_is_new ? u.last_error : std::nullopt, u.at);
    });
    if (!st) return std::move(st).error();
    return slot;
  }

  Result<bool> retire(const std::string& key, Location where, Instant purged_at, Instant destroy_at) override {
    bool retired = false;
    std::optional<Error> refused;
    auto st = write([&] {
      if (!m_c.run("SELECT 1 FROM retentiond.retired WHERE key = $1", pq::Params().text(key)).empty()) {
        refused = Error::storage("record '" + key + "' is already in the undo window; nothing was changed");
        return;
      }
      const std::string columns = "key, category, state, dates, next_phase, due, done, created_at, slot, subject_ref, sealed";
      const auto q = m_c.run(std::string("WITH moved AS (DELETE FROM ") + table_of(where) + " WHERE key = $1 RETURNING " +
                                 columns + ") INSERT INTO retentiond.retired (location, purged_at, destroy_at, " + columns +
                                 ") SELECT '" + location_name(where) + "', $2, $3, " + columns +
                                 " FROM moved RETURNING slot, state, due, category",
                             pq::Params().text(key).i64(purged_at.seconds).i64(destroy_at.seconds));
      if (q.empty()) return;
      count_removed(where, q);
      retired = true;
    });
    if (!st) return std::move(st).error();
    if (refused) return *refused;
    return retired;
  }

  Result<bool> unretire(const std::string& key) override {
    bool restored = false;
    std::optional<Error> refused;
    auto st = write([&] {
      const auto r = m_c.run("SELECT location, state, due, category FROM retentiond.retired WHERE key = $1",
                             pq::Params().text(key));
      if (r.empty()) return;
      const Location where = location_from(r.text(0, 0));
      for (const Location place : {Location::active, Location::archive}) {
        if (!m_c.run(std::string("SELECT 1 FROM ") + table_of(place) + " WHERE key = $1", pq::Params().text(key)).empty()) {
          refused = Error{ErrorCode::conflict, "conflict",
                          "a record with key '" + key + "' was stored after the purge; nothing was changed",
                          nlohmann::json::object()};
          return;
        }
      }
      const std::string columns = "key, category, state, dates, next_phase, due, done, created_at, slot, subject_ref, sealed";
      m_c.run("WITH moved AS (DELETE FROM retentiond.retired WHERE key = $1 RETURNING " + columns + ") INSERT INTO " +
                  table_of(where) + " (" + columns + ") SELECT " + columns + " FROM moved",
              pq::Params().text(key));
      const auto due = r.opt_i64(0, 2);
      m_deltas.count(where, state_from(r.text(0, 1)), r.text(0, 3), +1);
      m_deltas.count_due(due ? std::optional<Instant>(Instant{*due}) : std::nullopt, r.text(0, 3), +1);
      restored = true;
    });
    if (!st) return std::move(st).error();
    if (refused) return *refused;
    return restored;
  }

  Result<std::optional<std::int64_t>> drop_retired(const std::string& key) override {
    std::optional<std::int64_t> slot;
    auto st = write([&] {
      const auto q = m_c.run("DELETE FROM retentiond.retired WHERE key = $1 RETURNING slot", pq::Params().text(key));
      if (!q.empty()) slot = q.opt_i64(0, 0).value_or(-1);
    });
    if (!st) return std::move(st).error();
    return slot;
  }

  Status set_meta(const std::string& name, const std::string& value) override {
    return write([&] {
      if (name == kPolicyHashMeta) m_sets_policy = value;
      m_c.run("INSERT INTO retentiond.meta (name, value) VALUES ($1, $2) "
              "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
              pq::Params().text(name).text(value));
    });
  }

  Result<KeySlotState> key_slots() override {
    return query([&] {
      KeySlotState s;
      const auto q = m_c.run("SELECT id, zeroed, slots FROM retentiond.key_slot_lists ORDER BY id");
      for (int i = 0; i < q.size(); ++i) {
        SlotList list{q.i64(i, 0), unpack_slots(q.bytes(i, 2))};
        (q.boolean(i, 1) ? s.free : s.unzeroed).push_back(std::move(list));
      }
      const auto next = m_c.run("SELECT value::bigint FROM retentiond.meta WHERE name = 'next_key_slot'");
      if (next.empty()) throw std::runtime_error("the key slot counter is missing from meta");
      s.next_slot = next.i64(0, 0);
      return s;
    });
  }

  Result<std::optional<std::int64_t>> save_key_slots(const KeySlotChanges& c) override {
    if (!m_in_tx) return Error::internal("Store::save_key_slots outside a transaction");
    return query([&] {
      for (const auto id : c.now_zeroed) {
        m_c.run("UPDATE retentiond.key_slot_lists SET zeroed = true WHERE id = $1", pq::Params().i64(id));
      }
      for (const auto& list : c.taken_from) {
        if (list.slots.empty()) {
          m_c.run("DELETE FROM retentiond.key_slot_lists WHERE id = $1", pq::Params().i64(list.id));
        } else {
          m_c.run("UPDATE retentiond.key_slot_lists SET slots = $1 WHERE id = $2",
                  pq::Params().bytes(pack_slots(list.slots)).i64(list.id));
        }
      }
      if (c.next_slot) {
        m_c.run("UPDATE retentiond.meta SET value = $1 WHERE name = 'next_key_slot'",
                pq::Params().text(std::to_string(*c.next_slot)));
      }
      if (c.released.empty()) return std::optional<std::int64_t>{};
      return std::optional<std::int64_t>{
          m_c.run("INSERT INTO retentiond.key_slot_lists (zeroed, slots) VALUES (false, $1) RETURNING id",
                  pq::Params().bytes(pack_slots(c.released)))
              .i64(0, 0)};
    });
  }

  bool shared() const override { return true; }

  Result<std::int64_t> reserve_slot_block(std::int64_t count) override {
    if (count > kSlotBlock) return Error::internal("slot blocks hold " + std::to_string(kSlotBlock) + " slots");
    // nextval is outside every transaction: never the same block twice.
    return query([&] { return m_c.run("SELECT nextval('retentiond.key_slot_blocks')").i64(0, 0); });
  }

  void expect_policy(const std::string& hash) override { m_expected_policy = hash; }

  // The PostgreSQL schema starts sealed (SQLite's 004 and later): nothing
  // was ever kept in clear.
  Result<LegacyPlaintext> legacy_plaintext() override { return LegacyPlaintext{}; }
  Status replace_legacy_plaintext(const std::vector<StoredRecord>&, const std::vector<StoredHold>&) override {
    return Error::internal("a PostgreSQL store has no values kept in clear to replace");
  }
  Status scrub_after_upgrade() override { return {}; }

 private:
  bool in_write_transaction() const override { return m_in_tx; }

  // A change: joins the open transaction, or runs in one of its own.
  template <typename Body>
  Status write(Body body) {
    const auto work = [&]() -> Status {
      try {
        body();
        return {};
      } catch (const std::exception& e) {
        return storage_error(e);
      }
    };
    return m_in_tx ? work() : transaction(work);
  }

  // Counts after a record left `where`; q's first row holds its slot, state,
  // due and category.
  void count_removed(Location where, const pq::Rows& q) {
    const std::string category = q.text(0, 3);
    m_deltas.count(where, state_from(q.text(0, 1)), category, -1);
    const auto due = q.opt_i64(0, 2);
    m_deltas.count_due(due ? std::optional<Instant>(Instant{*due}) : std::nullopt, category, -1);
  }

  void save_deltas() {
    for (const auto& [connector, d] : m_deltas.jobs) {
      m_c.run("INSERT INTO retentiond.connector_stats AS s (connector, pending, in_flight, failed, done, discarded) "
              "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (connector) DO UPDATE SET "
              "pending = s.pending + EXCLUDED.pending, in_flight = s.in_flight + EXCLUDED.in_flight, "
              "failed = s.failed + EXCLUDED.failed, done = s.done + EXCLUDED.done, "
              "discarded = s.discarded + EXCLUDED.discarded",
              pq::Params().text(connector).i64(d[0]).i64(d[1]).i64(d[2]).i64(d[3]).i64(d[4]));
    }
    for (const auto& [connector, error] : m_deltas.job_error) {
      m_c.run("INSERT INTO retentiond.connector_stats AS s (connector, last_error, last_error_at) VALUES ($1, $2, $3) "
              "ON CONFLICT (connector) DO UPDATE SET last_error = EXCLUDED.last_error, "
              "last_error_at = EXCLUDED.last_error_at",
              pq::Params().text(connector).text(error.first).i64(error.second.seconds));
    }
    for (const auto& [bucket, delta] : m_deltas.records) {
      if (delta == 0) continue;
      const auto& [where, state, category] = bucket;
      const char* location = where == 0 ? "active" : "archive";
      const std::string state_name(to_string(static_cast<RecordState>(state)));
      // A category emptied of a state leaves no row: the table stays as
      // small as the categories and states in use.
      m_c.run("INSERT INTO retentiond.record_counts AS c (location, category, state, n) VALUES ($1, $2, $3, $4) "
              "ON CONFLICT (location, category, state) DO UPDATE SET n = c.n + EXCLUDED.n",
              pq::Params().text(location).text(category).text(state_name).i64(delta));
      // (Not in the statement above: a WITH's DELETE would not see the row
      // its INSERT ... ON CONFLICT updated.)
      if (delta < 0) {
        m_c.run("DELETE FROM retentiond.record_counts WHERE location = $1 AND category = $2 AND state = $3 AND n = 0",
                pq::Params().text(location).text(category).text(state_name));
      }
    }
    for (const auto& [bucket, delta] : m_deltas.due) {
      if (delta == 0) continue;
      m_c.run("INSERT INTO retentiond.due_counts AS c (day, category, n) VALUES ($1, $2, $3) "
              "ON CONFLICT (day, category) DO UPDATE SET n = c.n + EXCLUDED.n",
              pq::Params().i64(bucket.first).text(bucket.second).i64(delta));
      if (delta < 0) {
        m_c.run("DELETE FROM retentiond.due_counts WHERE day = $1 AND category = $2 AND n = 0",
                pq::Params().i64(bucket.first).text(bucket.second));
      }
    }
  }

  // Before a commit: the policy adopted on the database is the one this
  // daemon runs, unless this transaction adopts one.
  Status check_policy() {
    if (!m_expected_policy || m_sets_policy) return {};
    const auto q = m_c.run("SELECT value FROM retentiond.meta WHERE name = $1", pq::Params().text(kPolicyHashMeta));
    if (q.empty() || q.text(0, 0) == *m_expected_policy) return {};
    return Error{ErrorCode::storage_error, "stale_policy",
                 "another daemon on this database adopted policy " + q.text(0, 0).substr(0, 12) +
                     " and this daemon runs " + m_expected_policy->substr(0, 12) +
                     ": reload it with the same policy (config.reload); nothing was changed",
                 nlohmann::json::object()};
  }

  // Migrations, one transaction each, serialised between daemons starting
  // at once by a transaction advisory lock.
  void migrate() {
    m_c.exec("CREATE SCHEMA IF NOT EXISTS retentiond");
    m_c.exec("CREATE TABLE IF NOT EXISTS retentiond.schema_version (version integer PRIMARY KEY, name text NOT NULL, "
             "applied_at timestamptz NOT NULL DEFAULT now())");
    const auto& migrations = embedded_postgresql_migrations();
    const int latest = latest_postgresql_schema_version();
    for (;;) {
      m_c.exec("BEGIN");
      m_c.run("SELECT pg_advisory_xact_lock($1)", pq::Params().i64(kMigrationLock));
      const int current =
          static_cast<int>(m_c.run("SELECT coalesce(max(version), 0) FROM retentiond.schema_version").i64(0, 0));
      if (current > latest) {
        m_c.exec("ROLLBACK");
        throw std::runtime_error("schema version " + std::to_string(current) +
                                 " is newer than this retentiond understands (" + std::to_string(latest) +
                                 "); run a newer retentiond or restore a matching backup");
      }
      const auto next = std::find_if(migrations.begin(), migrations.end(), [&](const Migration& m) { return m.version > current; });
      if (next == migrations.end()) {
        m_c.exec("COMMIT");
        return;
      }
      try {
        m_c.exec(next->sql);
        m_c.run("INSERT INTO retentiond.schema_version (version, name) VALUES ($1, $2)",
                pq::Params().i64(next->version).text(next->name));
        m_c.exec("COMMIT");
      } catch (...) {
        m_c.exec("ROLLBACK");
        throw;
      }
      spdlog::info("store.migrated backend=postgresql version={} ({})", next->version, next->name);
    }
  }

  static constexpr const char* kPolicyHashMeta = "policy_hash";  // lib/actions/reload.cpp

  bool m_in_tx = false;
  std::optional<std::string> m_expected_policy;  // expect_policy
  std::optional<std::string> m_sets_policy;      // this transaction's set_meta(policy_hash)
  Deltas m_deltas;
  std::optional<AuditRow> m_head;
  bool m_head_known = false;
};

// The keys, on connections of their own: the writer's (write_run and
// zero_run gathered, then applied by sync in one transaction), the readers'
// (read, under a mutex: callers on several threads), and the compaction's,
// on a thread of its own.
//
// Erasure bound: deleting a key's row leaves its bytes in a dead tuple of
// the table's file and in the WAL. Every `interval` after a deletion (and
// when the daemon stops), the compaction rewrites the table (VACUUM FULL:
// a new file with the live keys only; the old one is truncated at once),
// then switches to a new WAL segment and checkpoints, after which the
// server removes the segments that held the deleted keys: unless WAL
// segments are recycled (wal_recycle, on by default: they are renamed and
// overwritten later), kept for a replica (slots, wal_keep_size) or
// archived. Those settings are checked at start and warned about
// (docs/scale-out.md, "Erasure on PostgreSQL").
class PgKeyStore final : public vault::KeyStore {
 public:
  PgKeyStore(const std::string& url, std::chrono::seconds interval)
      : m_write(url, daemon_name()), m_read(url, daemon_name()), m_url(url), m_interval(interval) {
    m_write.exec("SET synchronous_commit = on");
    warn_about_wal_settings();
    m_thread = std::thread([this] {
      ::pthread_setname_np(::pthread_self(), "rd-keyvacuum");
      loop();
    });
  }

  ~PgKeyStore() override {
    {
      std::lock_guard lock(m_mutex);
      m_stop = true;
    }
    m_cv.notify_one();
    m_thread.join();
    (void)sync();  // (the vault syncs after every change: normally nothing)
    // The keys destroyed since the last compaction: compacted now, so that a
    // stopped daemon leaves none behind.
    if (m_dirty) compact();
  }

  // Writes and zeroings wait in memory for sync(), which makes them all
  // durable in one transaction (one WAL flush: a sweep's scattered slots
  // would otherwise cost one commit each). No one reads them before: the
  // vault reads its own new keys from memory, and the rows they seal (or
  // the destroyed rows' replacements) are committed only after the sync.
  Status write_run(std::int64_t first_slot, std::string_view keys) override {
    if (keys.size() % kSlotBytes != 0) return Error::internal("KeyStore::write_run: not a whole number of slots");
    for (std::size_t at = 0; at < keys.size(); at += kSlotBytes) {
      m_pending_slots.push_back(first_slot + static_cast<std::int64_t>(at / kSlotBytes));
    }
    m_pending_keys.append(keys);
    return {};
  }

  Result<std::string> read(std::int64_t slot) const override {
    std::lock_guard lock(m_read_mutex);
    std::string key;
    auto st = guard(m_read, [&] {
      const auto q = m_read.run("SELECT key FROM retentiond.keys WHERE slot = $1", pq::Params().i64(slot));
      if (!q.empty()) key = q.bytes(0, 0);
    });
    if (!st) return std::move(st).error();
    if (key.size() != kSlotBytes) return Error::storage("key slot " + std::to_string(slot) + " holds no key (destroyed)");
    return key;
  }

  Status zero_run(std::int64_t first_slot, std::size_t count) override {
    for (std::size_t i = 0; i < count; ++i) m_pending_zero.push_back(first_slot + static_cast<std::int64_t>(i));
    return {};
  }

  Status sync() override {
    if (m_pending_slots.empty() && m_pending_zero.empty()) return {};
    std::sort(m_pending_zero.begin(), m_pending_zero.end());
    m_pending_zero.erase(std::unique(m_pending_zero.begin(), m_pending_zero.end()), m_pending_zero.end());
    auto st = guard(m_write, [&] {
      m_write.exec("BEGIN");
      try {
        if (!m_pending_slots.empty()) {
          m_write.run("INSERT INTO retentiond.keys (slot, key) SELECT s, substring($2::bytea FROM ((i - 1) * 32 + 1)::integer FOR 32) "
                      "FROM unnest($1::bigint[]) WITH ORDINALITY AS u(s, i) "
                      "ON CONFLICT (slot) DO UPDATE SET key = EXCLUDED.key",
                      pq::Params().text(array_text(m_pending_slots)).bytes(m_pending_keys));
        }
        if (!m_pending_zero.empty()) {
          m_write.run("DELETE FROM retentiond.keys WHERE slot = ANY($1::bigint[])",
                      pq::Params().text(array_text(m_pending_zero)));
        }
        m_write.exec("COMMIT");
      } catch (...) {
        try {
          m_write.exec("ROLLBACK");
        } catch (...) {
        }
        throw;
      }
    });
    // New keys that failed to be written are the failing transaction's (it
    // rolls back); zeroings are kept for the next sync.
    m_pending_slots.clear();
    std::fill(m_pending_keys.begin(), m_pending_keys.end(), '\0');
    m_pending_keys.clear();
    if (!st) return st;
    {
      std::lock_guard lock(m_mutex);
      if (!m_pending_zero.empty()) m_dirty = true;
      m_destroyed += static_cast<std::int64_t>(m_pending_zero.size());
    }
    m_pending_zero.clear();
    return {};
  }

 private:
  template <typename Body>
  static Status guard(pq::Connection& c, Body body) {
    try {
      if (c.broken()) c.reconnect();
      body();
      return {};
    } catch (const std::exception& e) {
      return Error::storage(std::string("PostgreSQL key store: ") + e.what());
    }
  }

  void loop() {
    std::unique_lock lock(m_mutex);
    while (!m_stop) {
      m_cv.wait_for(lock, m_interval, [&] { return m_stop; });
      if (m_stop || !m_dirty) continue;
      lock.unlock();
      compact();
      lock.lock();
    }
  }

  // VACUUM FULL of the keys, then a new WAL segment and a checkpoint.
  void compact() {
    std::int64_t destroyed = 0;
    {
      std::lock_guard lock(m_mutex);
      m_dirty = false;
      destroyed = std::exchange(m_destroyed, 0);
    }
    const auto started = std::chrono::steady_clock::now();
    try {
      if (!m_vacuum) m_vacuum = std::make_unique<pq::Connection>(m_url, daemon_name());
      if (m_vacuum->broken()) m_vacuum->reconnect();
      m_vacuum->exec("VACUUM FULL retentiond.keys");
    } catch (const std::exception& e) {
      std::lock_guard lock(m_mutex);
      m_dirty = true;  // tried again at the next interval
      m_destroyed += destroyed;
      spdlog::error("store.keys_vacuum_failed error=\"{}\" (destroyed keys stay in dead tuples until it succeeds)",
                    e.what());
      return;
    }
    std::string wal = "removed";
    try {
      m_vacuum->exec("SELECT pg_switch_wal()");
      m_vacuum->exec("CHECKPOINT");
    } catch (const std::exception& e) {
      wal = "left to the server's own checkpoints";
      if (!m_wal_warned) {
        m_wal_warned = true;
        spdlog::warn("store.erasure_bound_wal error=\"{}\": the daemon's role cannot switch WAL segments or "
                     "checkpoint, so destroyed keys stay in WAL until the server's own checkpoints remove it; "
                     "grant it pg_checkpoint and EXECUTE on pg_switch_wal() (docs/scale-out.md)",
                     e.what());
      }
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    spdlog::info("store.keys_vacuumed destroyed={} duration_ms={} wal={}", destroyed, ms.count(), wal);
  }

  // What keeps WAL (and so destroyed keys) beyond the compaction: said once,
  // at start.
  void warn_about_wal_settings() {
    try {
      const auto q = m_write.run("SELECT current_setting('wal_recycle'), current_setting('archive_mode'), "
                                 "current_setting('wal_keep_size'), (SELECT count(*) FROM pg_replication_slots)");
      if (q.text(0, 0) == "on") {
        spdlog::warn("store.erasure_bound wal_recycle=on: removed WAL segments are renamed for reuse and keep "
                     "destroyed keys until overwritten; set wal_recycle = off (docs/scale-out.md)");
      }
      if (q.text(0, 1) != "off") {
        spdlog::warn("store.erasure_bound archive_mode={}: archived WAL keeps destroyed keys for as long as the "
                     "archive keeps it (docs/scale-out.md)",
                     q.text(0, 1));
      }
      if (q.text(0, 2) != "0" || q.i64(0, 3) > 0) {
        spdlog::warn("store.erasure_bound wal_keep_size={} replication_slots={}: WAL kept for replicas keeps "
                     "destroyed keys until they no longer need it (docs/scale-out.md)",
                     q.text(0, 2), q.i64(0, 3));
      }
    } catch (const std::exception& e) {
      spdlog::warn("store.erasure_bound cannot read the server's WAL settings: {}", e.what());
    }
  }

  // {1,2,3}: a bigint[] parameter in text form.
  static std::string array_text(const std::vector<std::int64_t>& v) {
    std::string out = "{";
    for (std::size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + std::to_string(v[i]);
    return out + "}";
  }

  pq::Connection m_write;
  std::vector<std::int64_t> m_pending_slots;  // write_run since the last sync, in order
  std::string m_pending_keys;                 // their keys, 32 bytes each
  std::vector<std::int64_t> m_pending_zero;   // zero_run since the last sync
  mutable pq::Connection m_read;
  mutable std::mutex m_read_mutex;
  const std::string m_url;
  const std::chrono::seconds m_interval;
  std::unique_ptr<pq::Connection> m_vacuum;  // the compaction thread's (then the destructor's)
  bool m_wal_warned = false;
  std::mutex m_mutex;
  std::condition_variable m_cv;
  bool m_stop = false;
  bool m_dirty = false;  // keys deleted since the last compaction
  std::int64_t m_destroyed = 0;
  std::thread m_thread;
};

}  // namespace

Result<std::unique_ptr<Store>> open_postgresql_store(const std::string& url) {
  try {
    auto store = std::make_unique<PgStore>(url);
    if (auto st = store->open(); !st) return std::move(st).error();
    return std::unique_ptr<Store>(std::move(store));
  } catch (const std::exception& e) {
    return Error::storage(std::string(e.what()) + " (store url " + redact_url(url) + ")");
  }
}

Result<std::unique_ptr<StoreReader>> open_postgresql_reader(const std::string& url) {
  try {
    return std::unique_ptr<StoreReader>(std::make_unique<PgReader>(url));
  } catch (const std::exception& e) {
    return Error::storage(std::string(e.what()) + " (store url " + redact_url(url) + ")");
  }
}

Result<std::unique_ptr<vault::KeyStore>> open_postgresql_key_store(const std::string& url,
                                                                   std::chrono::seconds vacuum_interval) {
  try {
    return std::unique_ptr<vault::KeyStore>(std::make_unique<PgKeyStore>(url, vacuum_interval));
  } catch (const std::exception& e) {
    return Error::storage(std::string(e.what()) + " (store url " + redact_url(url) + ")");
  }
}

}  // namespace retentiond::store
