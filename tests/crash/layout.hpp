#pragma once
// The state directory's one-file layout, as the crash harness and the fault
// tests' offline checker read it (no daemon code): retention.db in WAL mode
// (retention.db-wal, retention.db-shm), the tables `records` and `archive`,
// the kept counts due_counts and record_counts; and the files of the old
// two-file layout that must no longer appear.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace SQLite {
class Database;
}

namespace retentiond::crash {

// retention.db-wal parsed as SQLite's recovery does (wal.c): the header,
// then frames while their salts match the header's and their checksums
// chain. Frames after the last commit frame belong to a transaction that
// never committed: every reader ignores them and the next writer
// overwrites them.
struct WalView {
  bool present = false;
  std::uintmax_t bytes = 0;
  bool header_valid = false;
  std::int64_t committed_frames = 0;    // valid frames up to the last commit frame
  std::int64_t commits = 0;             // commit frames among them
  std::int64_t uncommitted_frames = 0;  // valid frames after it: a commit cut short, or a rolled-back one
  bool torn_frame = false;  // the frame after the valid ones has the current salts but a bad checksum: cut mid-write
};
WalView read_wal(const std::filesystem::path& wal);

// Files of the two-file layout present in `state_dir`: archive.db (and its
// journal), retention.db-journal (a rollback journal: none in WAL mode), the
// super-journals retention.db-mj* of two-file commits. Sorted.
std::vector<std::string> legacy_files(const std::filesystem::path& state_dir);

// The kept counts that disagree with the rows, in the connection's current
// (read) transaction, one sentence each: due_counts against the records of
// both tables with a due time, per UTC day (floor(due / 86400)) and
// category; record_counts against both tables, per location, category and state. A
// count missing from its table is 0; a kept 0 is harmless.
std::vector<std::string> count_mismatches(SQLite::Database& db);

// Keys stored in both the records and the archive table.
std::vector<std::string> keys_in_both(SQLite::Database& db);

}  // namespace retentiond::crash
