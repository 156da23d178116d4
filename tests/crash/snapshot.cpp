#include "tests/crash/snapshot.hpp"

#include <sqlite3.h>

#include <SQLiteCpp/SQLiteCpp.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "tests/crash/workload.hpp"

namespace retentiond::crash {
namespace {

std::string quote(const std::string& s) {
  std::string out = "'";
  for (const char c : s) {
    out += c;
    if (c == '\'') out += '\'';
  }
  return out + "'";
}

std::optional<std::string> opt_text(const SQLite::Column& c) {
  if (c.isNull()) return std::nullopt;
  return c.getString();
}

// The category's own date, by name, read with SQLite's JSON functions.
const char* kOwnDate =
    "json_extract(r.dates, '$.' || CASE r.category WHEN 'lead' THEN 'last_contact' WHEN 'customer' THEN "
    "'contract_end' WHEN 'invoice' THEN 'issued' WHEN 'ticket' THEN 'closed' ELSE 'none' END)";

std::string integrity(SQLite::Database& db, const std::string& schema) {
  SQLite::Statement q(db, "PRAGMA " + schema + ".integrity_check");
  std::string out;
  while (q.executeStep()) out += (out.empty() ? "" : "; ") + q.getColumn(0).getString();
  return out;
}

// The store's layout: before retention.db migration 005 a record's personal
// values were a record_data row beside its records row and key slots had
// one row each (key_slots_free, key_slots_to_zero); from 005 on they are
// columns of the records row (slot, subject_ref, sealed) and slots are kept
// in lists (key_slot_lists). Both are read, so the harness follows the store.
bool one_row_per_record(SQLite::Database& db, const char* schema) {
  SQLite::Statement q(db, "SELECT count(*) FROM pragma_table_info('records', ?) WHERE name = 'slot'");
  q.bind(1, schema);
  q.executeStep();
  return q.getColumn(0).getInt() != 0;
}

std::vector<std::string> keys_in_both(SQLite::Database& db) {
  std::vector<std::string> out;
  const bool split = !one_row_per_record(db, "main") || !one_row_per_record(db, "archive");
  SQLite::Statement q(db, split ? "SELECT key FROM main.records WHERE key IN (SELECT key FROM archive.records) "
                                  "UNION SELECT key FROM main.record_data WHERE key IN (SELECT key FROM archive.record_data)"
                                : "SELECT key FROM main.records WHERE key IN (SELECT key FROM archive.records)");
  while (q.executeStep()) out.push_back(q.getColumn(0).getString());
  return out;
}

void read_records(SQLite::Database& db, const char* schema, bool archive, Snapshot& s) {
  const bool one_row = one_row_per_record(db, schema);
  const std::string data = one_row ? std::string("r.sealed IS NOT NULL, r.slot, r.subject_ref IS NULL FROM ") + schema + ".records r"
                                   : std::string("d.key IS NOT NULL, d.slot, d.subject_ref IS NULL FROM ") + schema +
                                         ".records r LEFT JOIN " + schema + ".record_data d ON d.key = r.key";
  SQLite::Statement q(db, std::string("SELECT r.key, r.category, r.state, r.next_phase, r.due, "
                                      "json_extract(r.dates, '$.collected'), ") +
                              kOwnDate + ", (SELECT count(*) FROM json_each(r.dates)), " + data);
  while (q.executeStep()) {
    RecordView v;
    v.key = q.getColumn(0).getString();
    v.archive_db = archive;
    v.category = q.getColumn(1).getString();
    v.state = q.getColumn(2).getString();
    v.next_phase = q.getColumn(3).getInt();
    if (!q.getColumn(4).isNull()) v.due = q.getColumn(4).getInt64();
    v.collected = q.getColumn(5).isNull() ? kAbsent : q.getColumn(5).getInt64();
    v.own_date = q.getColumn(6).isNull() ? kAbsent : q.getColumn(6).getInt64();
    v.date_count = q.getColumn(7).getInt();
    v.has_data = q.getColumn(8).getInt() != 0;
    if (v.has_data) {
      v.slot = q.getColumn(9).getInt64();
      v.subject_ref_null = q.getColumn(10).getInt() != 0;
    }
    s.records.push_back(std::move(v));
  }
  if (one_row) return;
  SQLite::Statement orphans(db, std::string("SELECT key FROM ") + schema + ".record_data WHERE key NOT IN (SELECT key FROM " +
                                    schema + ".records)");
  while (orphans.executeStep()) s.orphan_data.push_back(orphans.getColumn(0).getString());
}

bool table_exists(SQLite::Database& db, const char* table) {
  SQLite::Statement q(db, "SELECT count(*) FROM main.sqlite_master WHERE type = 'table' AND name = ?");
  q.bind(1, table);
  q.executeStep();
  return q.getColumn(0).getInt() != 0;
}

// Free and queued (released, awaiting zeroing) key slots, in either layout.
void read_slots(SQLite::Database& db, Snapshot& s) {
  if (table_exists(db, "key_slot_lists")) {
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
    return;
  }
  for (const auto& [table, out] : {std::pair{"key_slots_free", &s.free_slots}, std::pair{"key_slots_to_zero", &s.queued_slots}}) {
    SQLite::Statement q(db, std::string("SELECT slot FROM main.") + table);
    while (q.executeStep()) out->push_back(q.getColumn(0).getInt64());
  }
}

Snapshot read_once(const std::filesystem::path& state_dir, std::int64_t audit_after, bool check_integrity) {
  SQLite::Database db((state_dir / "retention.db").string(), SQLite::OPEN_READONLY);
  db.setBusyTimeout(2000);
  // A read-only connection attaches read-only too.
  db.exec("ATTACH DATABASE " + quote((state_dir / "archive.db").string()) + " AS archive");
  Snapshot s;
  db.exec("BEGIN");
  try {
    // Shared locks on both files, main first: the order of the daemon's
    // commit, so a commit in progress never waits on us while we wait on it.
    db.execAndGet("SELECT count(*) FROM main.sqlite_master");
    db.execAndGet("SELECT count(*) FROM archive.sqlite_master");
    if (check_integrity) {
      s.integrity_main = integrity(db, "main");
      s.integrity_archive = integrity(db, "archive");
    }
    s.in_both = keys_in_both(db);
    read_records(db, "main", false, s);
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
    read_slots(db, s);
    s.next_key_slot = std::stoll(db.execAndGet("SELECT value FROM main.meta WHERE name = 'next_key_slot'").getString());
    // The key file under the read lock: no transaction can commit (and so
    // release and zero a slot this snapshot still names) until it is read.
    std::ifstream in(state_dir / "keys", std::ios::binary);
    s.keys.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } catch (...) {
    db.exec("ROLLBACK");
    throw;
  }
  db.exec("COMMIT");
  return s;
}

bool busy(const SQLite::Exception& e) {
  const int code = e.getErrorCode();
  return code == SQLITE_BUSY || code == SQLITE_LOCKED;
}

}  // namespace

Snapshot take_snapshot(const std::filesystem::path& state_dir, std::int64_t audit_after, bool integrity) {
  for (int attempt = 1;; ++attempt) {
    try {
      return read_once(state_dir, audit_after, integrity);
    } catch (const SQLite::Exception& e) {
      if (!busy(e) || attempt == 30) throw std::runtime_error(std::string("snapshot: ") + e.what());
    }
  }
}

std::vector<std::string> super_journals(const std::filesystem::path& state_dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(state_dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("retention.db-mj", 0) == 0) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

OfflineCheck offline_check(const std::filesystem::path& state_dir, bool check_integrity) {
  OfflineCheck c;
  std::error_code ec;
  const auto size_of = [&](const char* name) -> std::uintmax_t {
    const auto n = std::filesystem::file_size(state_dir / name, ec);
    return ec ? 0 : n;
  };
  c.main_journal_bytes = size_of("retention.db-journal");
  c.archive_journal_bytes = size_of("archive.db-journal");
  c.super_journals = super_journals(state_dir);
  // Each file on its own connection: with a hot journal even ATTACH fails.
  const auto check = [&](const char* file, bool& hot, std::string& result) {
    try {
      SQLite::Database db((state_dir / file).string(), SQLite::OPEN_READONLY);
      if (check_integrity) {
        result = integrity(db, "main");
      } else {
        db.execAndGet("SELECT count(*) FROM sqlite_master");  // fails the same way on a hot journal
      }
    } catch (const SQLite::Exception& e) {
      if (e.getExtendedErrorCode() != SQLITE_READONLY_ROLLBACK) {
        throw std::runtime_error(std::string("offline check of ") + file + ": " + e.what());
      }
      hot = true;
    }
  };
  check("retention.db", c.main_hot, c.integrity_main);
  check("archive.db", c.archive_hot, c.integrity_archive);
  if (!c.main_hot && !c.archive_hot) {
    try {
      SQLite::Database db((state_dir / "retention.db").string(), SQLite::OPEN_READONLY);
      db.exec("ATTACH DATABASE " + quote((state_dir / "archive.db").string()) + " AS archive");
      c.in_both = keys_in_both(db);
    } catch (const SQLite::Exception& e) {
      throw std::runtime_error(std::string("offline check: ") + e.what());
    }
  }
  return c;
}

}  // namespace retentiond::crash
