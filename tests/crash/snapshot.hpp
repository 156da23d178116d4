#pragma once
// What the crash harness reads from the state directory, directly with
// SQLiteCpp and read-only: a consistent snapshot of retention.db (one read
// transaction over the tables `records` and `archive` and the rest) and the
// key file, and the offline check of the files a SIGKILL left behind.
//
// retention.db is in WAL mode: a read transaction sees the last commit
// before it began and neither waits for the daemon's writer nor holds it
// up. A read-only connection on the files a kill left (retention.db-wal
// holding committed and perhaps uncommitted frames, a stale -shm) rebuilds
// the WAL index in the -shm, as the restarted daemon will, and reads the
// committed state; it never writes retention.db or the -wal (after a clean
// stop, when the daemon removed both, it creates an empty -wal and a -shm).
// Frames of a transaction the kill interrupted are ignored by every reader
// and overwritten by the next writer. Functions throw std::runtime_error on
// an unexpected SQLite error.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <unordered_map>
#include <string>
#include <vector>

#include "lib/store/store.hpp"
#include "tests/crash/layout.hpp"

namespace retentiond::crash {

struct RecordView {
  std::string key;
  bool in_archive = false;  // in the table `archive`, else `records`
  std::string category;
  std::string state;
  int next_phase = 0;
  std::optional<std::int64_t> due;
  std::int64_t collected = 0;  // kAbsent when missing
  std::int64_t own_date = 0;   // the category's own date, kAbsent when missing
  int date_count = 0;          // entries of the dates object
  bool has_data = false;       // its sealed values are there
  std::int64_t slot = -1;
  bool subject_ref_null = false;
};

// A record purged within the undo window (the table `retired`).
struct RetiredView {
  std::string key;
  std::int64_t slot = -1;
  std::int64_t purged_at = 0;
  std::int64_t destroy_at = 0;
};

// A connector job (the table `connector_jobs`, issue 14).
struct JobView {
  std::string id, connector, action, key, category, state;
  std::optional<int> phase;
  std::int64_t audit_seq = 0;
  std::int64_t attempts = 0;
  std::int64_t slot = -1;  // its sealed subject's; -1 when it has none
};

struct HoldView {
  std::int64_t id = 0;
  std::string scope;
  std::int64_t slot = -1;
};

struct Snapshot {
  std::vector<RecordView> records;       // both tables
  std::vector<std::string> in_both;      // keys stored in both tables
  // The kept counts that disagree with the rows of the same snapshot
  // (due_counts per UTC day and category, record_counts per location, category and
  // state), one sentence each.
  std::vector<std::string> count_mismatches;
  std::vector<store::AuditRow> audit;    // entries with seq > the `after` asked for
  std::optional<std::string> hash_at_after;
  std::int64_t max_seq = 0;
  std::vector<HoldView> holds;
  std::vector<RetiredView> retired;
  // The jobs of the JobsScope asked for: decided after its seq, every
  // unfinished one, and the watched ones.
  std::vector<JobView> jobs;
  std::vector<std::string> jobs_vanished;  // watched ids the table no longer has
  // The connector's received.jsonl: the ids read before the read
  // transaction (each was committed before it) and after it (each job done
  // in it was delivered before), as counts of received->ids().
  const class ReceivedLog* received = nullptr;
  std::size_t received_before = 0, received_after = 0;
  std::vector<std::int64_t> free_slots;
  std::vector<std::int64_t> queued_slots;  // released, not yet recorded as zeroed
  std::int64_t next_key_slot = 0;
  // The key file, read after the snapshot's rows. With WAL the daemon may
  // commit meanwhile: a row of the snapshot that a later commit destroyed
  // may find its slot already zeroed. Those slots (zero in `keys`, and
  // their row gone from a read transaction begun after the key file was
  // read) are in `released_since`: not a lost key. A slot that reads zero
  // while its row is still there is one.
  std::string keys;
  std::vector<std::int64_t> released_since;
  std::string integrity;  // "" when not asked for
};

// The connector's received.jsonl (one job per line), read on from where
// the last read stopped; a line still being written is left for the next.
class ReceivedLog {
 public:
  explicit ReceivedLog(std::filesystem::path path) : m_path(std::move(path)) {}
  // Reads the complete lines appended since the last call; returns how
  // many ids have been read in all.
  std::size_t read_more();
  // Where `id` is in ids(), or nullopt.
  std::optional<std::size_t> position(const std::string& id) const;
  const std::vector<std::string>& ids() const { return m_ids; }

 private:
  std::filesystem::path m_path;
  std::uintmax_t m_offset = 0;
  std::vector<std::string> m_ids;
  std::unordered_map<std::string, std::size_t> m_index;
};

// Which jobs a snapshot reads: those decided after `after_seq` (an audit
// seq), every unfinished one, and `watch` (the ids unfinished at the last
// check) in whatever state they are now. Finished jobs are final, so a
// check need not read again the ones it saw finished.
struct JobsScope {
  std::int64_t after_seq = 0;
  std::vector<std::string> watch;
  ReceivedLog* received = nullptr;
};

// One read transaction over retention.db, then the key file. `integrity`
// adds PRAGMA integrity_check.
Snapshot take_snapshot(const std::filesystem::path& state_dir, std::int64_t audit_after, bool integrity,
                       const JobsScope& jobs);

struct OfflineCheck {
  WalView wal;
  // Files of the two-file layout (archive.db, archive.db-journal,
  // retention.db-journal, retention.db-mj* super-journals): none may appear.
  std::vector<std::string> legacy_files;
  bool on_copy = false;       // checked on a copy (asked for, or SQLite refused a read-only open of the originals)
  std::string integrity;      // "" when not checked
  std::vector<std::string> in_both;
  std::vector<std::string> count_mismatches;
};

// The files as the kill left them, before anything reopens them for
// writing. check_integrity = false skips the integrity_check (it reads
// every page, so its cost grows with the database). on_copy: check a copy of
// retention.db and its -wal (in <state_dir>/../offline-copy, removed after),
// leaving even the -shm of the originals untouched; also the fallback when
// SQLite refuses a read-only open of the originals.
OfflineCheck offline_check(const std::filesystem::path& state_dir, bool check_integrity = true, bool on_copy = false);

}  // namespace retentiond::crash
