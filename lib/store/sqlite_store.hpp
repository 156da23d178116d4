#pragma once
// SqliteStore: the embedded backend, one SQLite database file
// (<state_dir>/retention.db) in WAL mode with secure_delete on.

#include <filesystem>
#include <memory>

#include "lib/store/store.hpp"

namespace retentiond::store {

struct SqliteOptions {
  int busy_timeout_ms = 5000;
  std::filesystem::path archive_path;  // empty: archive.db beside the main database
};

// Opens (creating if needed, mode 0600) and migrates the database at `path`
// and its archive database, attached to the same connection so that a move
// between them is one transaction.
// Fails with a clear message when the file's schema is newer than this
// binary knows, or when it cannot be opened.
Result<std::unique_ptr<Store>> open_sqlite_store(const std::filesystem::path& path,
                                                 const SqliteOptions& options = {});

// The schema versions the binary's embedded migrations reach.
int latest_schema_version();
int latest_archive_schema_version();

}  // namespace retentiond::store
