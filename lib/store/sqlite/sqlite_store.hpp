#pragma once
// The embedded backend: one SQLite database file, <state_dir>/retention.db,
// in WAL mode with synchronous = FULL. It holds the active records (table
// `records`), the archive (table `archive`: its own table, read only by
// admins on demand), the audit log, holds, meta and the key slot
// bookkeeping. The keys themselves are lib/vault's (<state_dir>/keys).
//
// The writer (open_sqlite_store) is the one connection that changes
// anything; readers (open_sqlite_reader) are read-only connections of their
// own, each answering from a WAL snapshot that no write or commit holds up.
// Each object is confined to one thread at a time; a writer and its readers
// may be used from different threads at once.

#include <filesystem>
#include <memory>

#include "lib/store/store.hpp"

namespace retentiond::store {

struct SqliteOptions {
  int busy_timeout_ms = 5000;
  int cache_kib = 32 * 1024;  // page cache per connection
};

// Opens (creating it, mode 0600, when absent) and migrates the database at
// `path`. A legacy archive.db beside it (schema 005 and before) is merged
// into its `archive` table and removed, and the database is switched to WAL.
// Fails with a clear message when the schema is newer than this binary
// knows, or the file cannot be opened.
Result<std::unique_ptr<Store>> open_sqlite_store(const std::filesystem::path& path, const SqliteOptions& options = {});

// A reader on its own connection to a database that open_sqlite_store has
// opened and migrated (and that stays open: WAL needs it).
Result<std::unique_ptr<StoreReader>> open_sqlite_reader(const std::filesystem::path& path,
                                                        const SqliteOptions& options = {});

// The schema version the binary's embedded migrations reach.
int latest_schema_version();

}  // namespace retentiond::store
