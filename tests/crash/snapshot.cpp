#include "tests/crash/snapshot.hpp"

#include <sqlite3.h>

#include <SQLiteCpp/SQLiteCpp.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <set>
#include <stdexcept>
#include <utility>

#include <nlohmann/json.hpp>

#include "tests/crash/workload.hpp"

namespace retentiond::crash {
namespace {

namespace fs = std::filesystem;

std::optional<std::string> opt_text(const SQLite::Column& c) {
  if (c.isNull()) return std::nullopt;
  return c.getString();
}

// The category's own date, by name, read with SQLite's JSON functions.
const char* kOwnDate =
    "json_extract(r.dates, '$.' || CASE r.category WHEN 'lead' THEN 'last_contact' WHEN 'customer' THEN "
    "'contract_end' WHEN 'invoice' THEN 'issued' WHEN 'ticket' THEN 'closed' ELSE 'none' END)";

std::string integrity(SQLite::Database& db) {
  SQLite::Statement q(db, "PRAGMA main.integrity_check");
  std::string out;
  while (q.executeStep()) out += (out.empty() ? "" : "; ") + q.getColumn(0).getString();
  return out;
}

void read_records(SQLite::Database& db, const char* table, bool archive, Snapshot& s) {
  SQLite::Statement q(db, std::string("SELECT r.key, r.category, r.state, r.next_phase, r.due, "
                                      "json_extract(r.dates, '$.collected'), ") +
                              kOwnDate + ", (SELECT count(*) FROM json_each(r.dates)), " +
                              "r.sealed IS NOT NULL, r.slot, r.subject_ref IS NULL FROM main." + table + " r");
  while (q.executeStep()) {
    RecordView v;
    v.key = q.getColumn(0).getString();
    v.in_archive = archive;
    v.category = q.getColumn(1).getString();
    v.state = q.getColumn(2).getString();
    v.next_phase = q.getColumn(3).getInt();
    if (!q.getColumn(4).isNull()) v.due = q.getColumn(4).getInt64();
    v.collected = q.getColumn(5).isNull() ? kAbsent : q.getColumn(5).getInt64();
    v.own_date = q.getColumn(6).isNull() ? kAbsent : q.getColumn(6).getInt64();
    v.date_count = q.getColumn(7).getInt();
    v.has_data = q.getColumn(8).getInt() != 0 && !q.getColumn(9).isNull();
    if (v.has_data) {
      v.slot = q.getColumn(9).getInt64();
      v.subject_ref_null = q.getColumn(10).getInt() != 0;
    }
    s.records.push_back(std::move(v));
  }
}

// Free (zeroed) and queued (released, not yet known zeroed) key slots.
void read_slots(SQLite::Database& db, Snapshot& s) {
  SQLite::Statement q(db, "SELECT zeroed, slots FROM main.key_slot_lists");
  while (q.executeStep()) {
    auto& out = q.getColumn(0).getInt() != 0 ? s.free_slots : s.queued_slots;
    const std::string blob = q.getColumn(1).getString();
    for (std::size_t at = 0; at + 8 <= blob.size(); at += 8) {
      std::uint64_t v = 0;
      for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(blob[at + static_cast<std::size_t>(i)]);
      out.push_back(static_cast<std::int64_t>(v));
    }
  }
}

bool zero_slot(const std::string& keys, std::int64_t slot) {
  const auto off = static_cast<std::size_t>(slot) * 32;
  if (slot < 0 || off + 32 > keys.size()) return true;
  return std::all_of(keys.begin() + static_cast<std::ptrdiff_t>(off), keys.begin() + static_cast<std::ptrdiff_t>(off + 32),
                     [](char c) { return c == 0; });
}

// Runs `body` in one read transaction (BEGIN, then the first read takes
// the WAL snapshot).
template <typename Body>
void in_read_transaction(SQLite::Database& db, Body&& body) {
  db.exec("BEGIN");
  try {
    body();
  } catch (...) {
    db.exec("ROLLBACK");
    throw;
  }
  db.exec("COMMIT");
}

Snapshot read_once(const fs::path& state_dir, std::int64_t audit_after, bool check_integrity, const JobsScope& jobs) {
  SQLite::Database db((state_dir / "retention.db").string(), SQLite::OPEN_READONLY);
  db.setBusyTimeout(2000);
  Snapshot s;
  in_read_transaction(db, [&] {
    db.execAndGet("SELECT count(*) FROM main.sqlite_master");
    if (check_integrity) s.integrity = integrity(db);
    s.in_both = keys_in_both(db);
    s.count_mismatches = count_mismatches(db);
    read_records(db, "records", false, s);
    read_records(db, "archive", true, s);
    {
      SQLite::Statement q(db, "SELECT seq, at, action, key, category, phase, subject_ref, actor, reason, policy_hash, hash "
                              "FROM main.audit WHERE seq > ? ORDER BY seq");
      q.bind(1, audit_after);
      while (q.executeStep()) {
        store::AuditRow a;
        a.seq = q.getColumn(0).getInt64();
        a.at = calendar::Instant{q.getColumn(1).getInt64()};
        a.action = q.getColumn(2).getString();
        a.key = opt_text(q.getColumn(3));
        a.category = opt_text(q.getColumn(4));
        if (!q.getColumn(5).isNull()) a.phase = q.getColumn(5).getInt();
        a.subject_ref = opt_text(q.getColumn(6));
        a.actor = q.getColumn(7).getString();
        a.reason = opt_text(q.getColumn(8));
        a.policy_hash = q.getColumn(9).getString();
        a.hash = q.getColumn(10).getString();
        s.audit.push_back(std::move(a));
      }
    }
    if (audit_after > 0) {
      SQLite::Statement q(db, "SELECT hash FROM main.audit WHERE seq = ?");
      q.bind(1, audit_after);
      if (q.executeStep()) s.hash_at_after = q.getColumn(0).getString();
    }
    s.max_seq = db.execAndGet("SELECT coalesce(max(seq), 0) FROM main.audit").getInt64();
    {
      SQLite::Statement q(db, "SELECT id, scope, slot FROM main.holds ORDER BY id");
      while (q.executeStep()) s.holds.push_back({q.getColumn(0).getInt64(), q.getColumn(1).getString(), q.getColumn(2).getInt64()});
    }
    {
      SQLite::Statement q(db, "SELECT key, slot, purged_at, destroy_at FROM main.retired ORDER BY key");
      while (q.executeStep()) {
        s.retired.push_back({q.getColumn(0).getString(), q.getColumn(1).getInt64(), q.getColumn(2).getInt64(),
                             q.getColumn(3).getInt64()});
      }
    }
    {
      constexpr const char* kJobColumns =
          "SELECT id, connector, action, key, category, state, phase, audit_seq, attempts, slot FROM main.connector_jobs ";
      SQLite::Statement q(db, std::string(kJobColumns) +
                                  "WHERE audit_seq > ?1 OR state IN ('pending', 'in_flight', 'failed') ORDER BY audit_seq");
      q.bind(1, jobs.after_seq);
      const auto job_from = [](SQLite::Statement& row) {
        JobView j;
        j.id = row.getColumn(0).getString();
        j.connector = row.getColumn(1).getString();
        j.action = row.getColumn(2).getString();
        j.key = row.getColumn(3).getString();
        j.category = row.getColumn(4).getString();
        j.state = row.getColumn(5).getString();
        if (!row.getColumn(6).isNull()) j.phase = row.getColumn(6).getInt();
        j.audit_seq = row.getColumn(7).getInt64();
        j.attempts = row.getColumn(8).getInt64();
        if (!row.getColumn(9).isNull()) j.slot = row.getColumn(9).getInt64();
        return j;
      };
      std::set<std::string> seen;
      while (q.executeStep()) {
        s.jobs.push_back(job_from(q));
        seen.insert(s.jobs.back().id);
      }
      SQLite::Statement by_id(db, std::string(kJobColumns) + "WHERE id = ?");
      for (const auto& id : jobs.watch) {
        if (seen.count(id)) continue;
        by_id.reset();
        by_id.bind(1, id);
        if (by_id.executeStep()) s.jobs.push_back(job_from(by_id));
        else s.jobs_vanished.push_back(id);
      }
    }
    read_slots(db, s);
    s.next_key_slot = std::stoll(db.execAndGet("SELECT value FROM main.meta WHERE name = 'next_key_slot'").getString());
  });

  // The key file, after the rows: every key a row of the snapshot names was
  // written before the commit that row came with, so it is there unless a
  // commit since destroyed the row and its slot was zeroed.
  {
    std::ifstream in(state_dir / "keys", std::ios::binary);
    s.keys.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  // Rows whose slot reads zero: still there in a read transaction begun
  // after the key file was read (a lost key), or gone (released since).
  struct Probe {
    const char* sql;
    std::string key;
    std::int64_t id = 0;
    std::int64_t slot = 0;
  };
  std::vector<Probe> probes;
  for (const auto& r : s.records) {
    if (r.has_data && zero_slot(s.keys, r.slot)) {
      probes.push_back({r.in_archive ? "SELECT 1 FROM main.archive WHERE key = ? AND slot = ?"
                                     : "SELECT 1 FROM main.records WHERE key = ? AND slot = ?",
                        r.key, 0, r.slot});
    }
  }
  for (const auto& r : s.retired) {
    if (zero_slot(s.keys, r.slot)) probes.push_back({"SELECT 1 FROM main.retired WHERE key = ? AND slot = ?", r.key, 0, r.slot});
  }
  for (const auto& h : s.holds) {
    if (zero_slot(s.keys, h.slot)) probes.push_back({"SELECT 1 FROM main.holds WHERE id = ? AND slot = ?", "", h.id, h.slot});
  }
  for (const auto& j : s.jobs) {
    if (j.slot >= 0 && zero_slot(s.keys, j.slot)) {
      probes.push_back({"SELECT 1 FROM main.connector_jobs WHERE id = ? AND slot = ?", j.id, 0, j.slot});
    }
  }
  if (!probes.empty()) {
    std::set<std::int64_t> released;
    in_read_transaction(db, [&] {
      for (const auto& p : probes) {
        SQLite::Statement q(db, p.sql);
        if (p.key.empty()) q.bind(1, p.id);
        else q.bind(1, p.key);
        q.bind(2, p.slot);
        if (!q.executeStep()) released.insert(p.slot);
      }
    });
    s.released_since.assign(released.begin(), released.end());
  }
  return s;
}

bool busy(const SQLite::Exception& e) {
  const int code = e.getErrorCode();
  return code == SQLITE_BUSY || code == SQLITE_LOCKED;
}

}  // namespace

namespace {

Snapshot take_snapshot_once(const fs::path& state_dir, std::int64_t audit_after, bool integrity, const JobsScope& jobs) {
  // A WAL reader does not wait for the writer. SQLITE_BUSY is still
  // possible in a few corners (another connection rebuilding the WAL index,
  // the WAL being restarted as we begin): retried, a few times.
  for (int attempt = 1;; ++attempt) {
    try {
      return read_once(state_dir, audit_after, integrity, jobs);
    } catch (const SQLite::Exception& e) {
      if (!busy(e) || attempt == 5) throw std::runtime_error(std::string("snapshot: ") + e.what());
    }
  }
}

}  // namespace

std::size_t ReceivedLog::read_more() {
  std::ifstream in(m_path, std::ios::binary);
  if (!in) return m_ids.size();
  in.seekg(static_cast<std::streamoff>(m_offset));
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no newline yet: still being written
    m_offset += line.size() + 1;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("id") || !j["id"].is_string()) continue;
    const std::string id = j["id"].get<std::string>();
    if (m_index.emplace(id, m_ids.size()).second) m_ids.push_back(id);
  }
  return m_ids.size();
}

std::optional<std::size_t> ReceivedLog::position(const std::string& id) const {
  const auto it = m_index.find(id);
  if (it == m_index.end()) return std::nullopt;
  return it->second;
}

Snapshot take_snapshot(const fs::path& state_dir, std::int64_t audit_after, bool integrity, const JobsScope& jobs) {
  const std::size_t before = jobs.received ? jobs.received->read_more() : 0;
  Snapshot s = take_snapshot_once(state_dir, audit_after, integrity, jobs);
  if (jobs.received) {
    s.received = jobs.received;
    s.received_before = before;
    s.received_after = jobs.received->read_more();
  }
  return s;
}

OfflineCheck offline_check(const fs::path& state_dir, bool check_integrity, bool on_copy) {
  OfflineCheck c;
  c.wal = read_wal(state_dir / "retention.db-wal");
  c.legacy_files = legacy_files(state_dir);
  const auto check = [&](const fs::path& file, int flags) {
    SQLite::Database db(file.string(), flags);
    if (flags & SQLite::OPEN_READWRITE) db.exec("PRAGMA query_only = 1");
    in_read_transaction(db, [&] {
      db.execAndGet("SELECT count(*) FROM main.sqlite_master");
      if (check_integrity) c.integrity = integrity(db);
      c.in_both = keys_in_both(db);
      c.count_mismatches = count_mismatches(db);
    });
  };
  try {
    if (!on_copy) {
      check(state_dir / "retention.db", SQLite::OPEN_READONLY);
      return c;
    }
  } catch (const SQLite::Exception& e) {
    // Refused read-only (SQLITE_READONLY_*: the WAL index cannot be built
    // in a -shm it cannot write, SQLITE_CANTOPEN): the same on a copy of
    // retention.db and its -wal, opened read-write (it rebuilds its -shm)
    // with query_only. The originals stay for the restarted daemon.
    if (e.getErrorCode() != SQLITE_READONLY && e.getErrorCode() != SQLITE_CANTOPEN) {
      throw std::runtime_error(std::string("offline check: ") + e.what());
    }
  }
  c.on_copy = true;
  const fs::path copy = state_dir.parent_path() / "offline-copy";
  std::error_code ec;
  fs::remove_all(copy, ec);
  fs::create_directories(copy);
  fs::copy_file(state_dir / "retention.db", copy / "retention.db");
  if (c.wal.present) fs::copy_file(state_dir / "retention.db-wal", copy / "retention.db-wal");
  try {
    check(copy / "retention.db", SQLite::OPEN_READWRITE);
  } catch (const SQLite::Exception& e) {
    throw std::runtime_error(std::string("offline check on a copy: ") + e.what());
  }
  fs::remove_all(copy, ec);
  return c;
}

}  // namespace retentiond::crash
