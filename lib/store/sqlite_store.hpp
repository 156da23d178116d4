#pragma once
// SqliteStore: the embedded backend, one SQLite database file
// (<state_dir>/retention.db) in WAL mode with secure_delete on.

#include <filesystem>
#include <memory>

#include "lib/store/store.hpp"

namespace retentiond::store {

struct SqliteOptions {
  int busy_timeout_ms = 5000;
};

// Opens (creating if needed, mode 0600) and migrates the database at `path`.
// Fails with a clear message when the file's schema is newer than this
// binary knows, or when it cannot be opened.
Result<std::unique_ptr<Store>> open_sqlite_store(const std::filesystem::path& path,
                                                 const SqliteOptions& options = {});

// The schema version the binary's embedded migrations reach.
int latest_schema_version();

}  // namespace retentiond::store
