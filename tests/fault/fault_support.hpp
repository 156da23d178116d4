#pragma once
// Fault injection for the fault tests (issue 5): small hand-written pieces,
// each putting one real fault under the real daemon, as leveldb's SpecialEnv
// does for its tests:
//
// - SmallFilesystem: a tmpfs of a few MiB mounted as the daemon's state
//   directory (needs root; the tests skip otherwise), and a filler file that
//   takes all or nearly all of its free space, then gives it back;
// - DatabaseLock: a second SQLite connection on retention.db holding the
//   WAL write lock (BEGIN IMMEDIATE), or a read transaction (a snapshot);
// - Immutable: the file's immutable attribute (chattr +i, through
//   FS_IOC_SETFLAGS), which refuses writes even through descriptors the
//   daemon already holds, and even to root;
// - LogFile: the daemon's stderr, sent to a file by a /bin/sh launcher,
//   read line by line and waited on with inotify (no sleeps);
// - check_state: the state directory read offline after the daemon stopped:
//   retention.db intact, every record whole and in one table, the kept
//   counts equal to the rows, every live row's key present and opening its
//   sealed values, no other key left in the key file.
//
// Not thread-safe; each object belongs to one test.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/daemon_process.hpp"

namespace SQLite {
class Database;
}

namespace retentiond::testing {

// A tmpfs of `bytes` mounted on `where` (created if missing), in a private
// mount namespace of the test process when one can be had, so that a test
// that dies leaves no mount behind. Unmounted on destruction (lazily if the
// daemon still holds it). `error()` says why it could not be mounted.
class SmallFilesystem {
 public:
  SmallFilesystem(const std::filesystem::path& where, std::uint64_t bytes);
  ~SmallFilesystem();
  SmallFilesystem(const SmallFilesystem&) = delete;
  SmallFilesystem& operator=(const SmallFilesystem&) = delete;

  bool mounted() const { return m_mounted; }
  const std::string& error() const { return m_error; }
  const std::filesystem::path& path() const { return m_path; }
  // Free bytes as statvfs sees them.
  std::uint64_t free_bytes() const;

  // Writes a filler file until the filesystem is full, then gives back
  // `leave` bytes. Returns the bytes the filler holds.
  std::uint64_t fill(std::uint64_t leave = 0);
  // Removes the filler: the space is free again.
  void release();

 private:
  std::filesystem::path m_path;
  std::filesystem::path m_filler;
  bool m_mounted = false;
  std::string m_error;
};

// A competing SQLite connection on retention.db (in WAL mode), holding from
// construction until release() or destruction either the write lock
// (BEGIN IMMEDIATE: no other connection can write, every one can still
// read; in WAL mode BEGIN EXCLUSIVE is the same) or a read transaction
// (BEGIN and a first read: a snapshot that sees no later commit, which no
// writer waits for).
class DatabaseLock {
 public:
  enum class Mode { write, read };
  // Throws if the lock cannot be had within 10 s.
  DatabaseLock(const std::filesystem::path& db, Mode mode);
  ~DatabaseLock();
  DatabaseLock(const DatabaseLock&) = delete;
  DatabaseLock& operator=(const DatabaseLock&) = delete;

  // Reads through the locking connection (inside its transaction: what it
  // sees is its snapshot).
  std::int64_t count(const std::string& sql);
  void release();

 private:
  std::unique_ptr<SQLite::Database> m_db;
  bool m_held = false;
};

// Sets the immutable attribute of `file`; clears it on destruction.
class Immutable {
 public:
  explicit Immutable(const std::filesystem::path& file);
  ~Immutable();
  Immutable(const Immutable&) = delete;
  Immutable& operator=(const Immutable&) = delete;

  // False, with error(), when the filesystem does not support the attribute.
  bool set() const { return m_set; }
  const std::string& error() const { return m_error; }
  void clear();

 private:
  std::filesystem::path m_file;
  bool m_set = false;
  std::string m_error;
};

// The daemon's stderr, captured in a file. `options()` gives DaemonOptions
// whose launcher sends the daemon's stderr there.
class LogFile {
 public:
  explicit LogFile(std::filesystem::path path);
  DaemonOptions options(DaemonOptions base = {}) const;
  const std::filesystem::path& path() const { return m_path; }

  // The first complete line past the cursor that contains every one of
  // `needles`, waiting up to `timeout` for it; moves the cursor past it.
  std::optional<std::string> wait_for(const std::vector<std::string>& needles, std::chrono::milliseconds timeout);
  // Every complete line so far.
  std::vector<std::string> lines() const;
  // How many lines contain `needle`.
  std::size_t count(const std::string& needle) const;
  // The last `n` lines, one per line, for failure messages.
  std::string tail(std::size_t n = 5) const;
  // Starts the daemon with this log as its stderr; when it does not become
  // ready, the exception's message carries the log's last lines.
  std::unique_ptr<DaemonProcess> start(const std::filesystem::path& dir, const std::vector<std::string>& args) const;

 private:
  std::filesystem::path m_path;
  std::size_t m_cursor = 0;  // bytes already matched past
};

// What check_state found in a stopped daemon's state directory.
struct StateReport {
  std::vector<std::string> problems;  // empty: consistent
  std::int64_t active = 0;            // rows in the records table
  std::int64_t archived = 0;          // rows in the archive table
  std::int64_t holds = 0;
  std::int64_t audit = 0;
  std::int64_t live_keys = 0;     // non-zero slots in the key file
  std::set<std::string> keys;     // record keys, both tables
};

// Reads retention.db (with its -wal: the committed state) and keys in
// `state_dir` (the daemon must have stopped). The current layout only
// (schema 006: one file, the archive a table). A problem is: an
// integrity_check that is not "ok", a file of the two-file layout
// (archive.db, a rollback journal retention.db-journal, a super-journal), a
// record without its sealed values, a key in both the records and the
// archive table, due_counts or record_counts disagreeing with the rows, a
// live row whose slot holds no key or a key that does not open its sealed
// bytes, two rows sharing a slot, a non-zero slot that no live row uses (a
// key that should have been destroyed), an audit chain that does not verify
// or that disagrees with the records (a purged or erased key still stored,
// an archived key not in the archive).
StateReport check_state(const std::filesystem::path& state_dir);

// The fault tests' policy: "lead" purged 1 year after `collected`,
// "invoice" archived 1 year after `collected` and purged 10 years after.
std::string fault_policy();
// The clock the tests start the daemon at.
inline constexpr const char* kFaultNow = "2030-01-01T00:00:00Z";

// `n` records of `category`, keys prefix0..prefixN-1, subject `subject`,
// collected `collected`, with `filler` bytes of field text each.
nlohmann::json records(const std::string& prefix, int n, const std::string& category, const std::string& subject,
                       const std::string& collected, std::size_t filler = 16);

// Sends `method` and waits up to `timeout` (longer than Client::call's 10 s:
// a busy database holds a reply up to 5 s per statement). nullopt: no reply.
std::optional<nlohmann::json> call_within(Client& client, const std::string& method, const nlohmann::json& params,
                                          std::chrono::milliseconds timeout);

// The reply's error reason, or "" for a result.
std::string reason_of(const nlohmann::json& reply);

// The reply's result; a test failure (and null) if it is an error.
nlohmann::json result_of(const nlohmann::json& reply);
// A test failure unless `reply` came and is the spec's storage_error
// (-32005, reason storage_error, "... nothing was changed").
void expect_storage_error(const std::optional<nlohmann::json>& reply, const std::string& what);

// What the daemon reports of its records and audit log: status's record
// counts and audit.verify's entries and head. Equal snapshots before and
// after a failed call: the call changed nothing the daemon shows.
struct Snapshot {
  nlohmann::json records;
  std::int64_t audit_entries = 0;
  std::string audit_head;
  bool audit_ok = false;
  bool operator==(const Snapshot& o) const {
    return records == o.records && audit_entries == o.audit_entries && audit_head == o.audit_head && audit_ok == o.audit_ok;
  }
};
Snapshot snapshot(Client& client);
std::ostream& operator<<(std::ostream& out, const Snapshot& s);

// Milliseconds since `start`, for the measurements the tests print.
std::int64_t ms_since(std::chrono::steady_clock::time_point start);

}  // namespace retentiond::testing
