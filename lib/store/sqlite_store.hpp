#pragma once
// SqliteStore: the embedded backend. retention.db holds active records and
// the audit log, archive.db (attached) archived records, and `keys` the
// one-time keys that seal personal values (see key_file.hpp).

#include <filesystem>
#include <memory>

#include "lib/store/store.hpp"

namespace retentiond::store {

struct SqliteOptions {
  int busy_timeout_ms = 5000;
  std::filesystem::path archive_path;  // empty: archive.db beside the main database
  std::filesystem::path key_path;      // empty: keys beside the main database
  std::string secret;                  // HMAC key for subject lookups (>= 32 bytes; the daemon's secret)
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
