#pragma once
// What the crash harness reads from the state directory, directly with
// SQLiteCpp and read-only: a consistent snapshot of both databases (one read
// transaction over retention.db and the attached archive.db) and the key
// file, and the offline check of the files a SIGKILL left behind.
//
// Read-only connections never recover a hot rollback journal: SQLite refuses
// them with SQLITE_READONLY_ROLLBACK. That is what the offline check relies
// on to tell "the kill landed inside a write transaction" apart, leaving the
// recovery to the next writer, the restarted daemon (see crash_harness.cpp).
// Functions throw std::runtime_error on an unexpected SQLite error.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "lib/store/store.hpp"

namespace retentiond::crash {

struct RecordView {
  std::string key;
  bool archive_db = false;  // in archive.db, else retention.db
  std::string category;
  std::string state;
  int next_phase = 0;
  std::optional<std::int64_t> due;
  std::int64_t collected = 0;  // kAbsent when missing
  std::int64_t own_date = 0;   // the category's own date, kAbsent when missing
  int date_count = 0;          // entries of the dates object
  bool has_data = false;       // its record_data row exists
  std::int64_t slot = -1;
  bool subject_ref_null = false;
};

struct HoldView {
  std::int64_t id = 0;
  std::string scope;
  std::int64_t slot = -1;
};

struct Snapshot {
  std::vector<RecordView> records;       // both databases
  std::vector<std::string> orphan_data;  // record_data rows without a record row
  std::vector<std::string> in_both;      // keys stored in both databases
  std::vector<store::AuditRow> audit;    // entries with seq > the `after` asked for
  std::optional<std::string> hash_at_after;
  std::int64_t max_seq = 0;
  std::vector<HoldView> holds;
  std::vector<std::int64_t> free_slots;
  std::vector<std::int64_t> queued_slots;  // key_slots_to_zero
  std::int64_t next_key_slot = 0;
  std::string keys;  // the key file, read while the snapshot's read lock is held
  std::string integrity_main;     // "" when not asked for
  std::string integrity_archive;  // "" when not asked for
};

// One read transaction over both databases, retried while the daemon holds
// its write lock. `integrity` adds PRAGMA integrity_check of both.
Snapshot take_snapshot(const std::filesystem::path& state_dir, std::int64_t audit_after, bool integrity);

struct OfflineCheck {
  std::uintmax_t main_journal_bytes = 0;
  std::uintmax_t archive_journal_bytes = 0;
  std::vector<std::string> super_journals;  // retention.db-mj* files present
  bool main_hot = false;       // SQLite refused a read-only open: hot journal
  bool archive_hot = false;
  std::string integrity_main;     // "" when the file was hot or not checked
  std::string integrity_archive;  // "" when the file was hot or not checked
  std::vector<std::string> in_both;  // only when neither file was hot
};

// The files as the kill left them, before anything reopens them.
// check_integrity = false skips the integrity_check (it reads every page,
// so its cost grows with the database) but still tells hot journals apart.
OfflineCheck offline_check(const std::filesystem::path& state_dir, bool check_integrity = true);

// The super-journals (retention.db-mj*) in the state directory. SQLite
// creates one for each transaction that writes both databases and deletes
// it when that commit completes.
std::vector<std::string> super_journals(const std::filesystem::path& state_dir);

}  // namespace retentiond::crash
