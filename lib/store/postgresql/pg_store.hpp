#pragma once
// The PostgreSQL backend ([store] backend = "postgresql", docs/scale-out.md):
// the Store and StoreReader of store.hpp on a PostgreSQL 15 database, and the
// KeyStore of lib/vault with the one-time keys in the same database (table
// retentiond.keys), so that the database alone holds a daemon's state (the
// secret stays local: state_dir or secret_file).
//
// Schemas: `retentiond` (records, audit log, holds, meta, key bookkeeping,
// keys, undo window, connector jobs, kept counts) and `retentiond_archive`
// (the archive, with privileges of its own), created and migrated by the
// writer (migrations/postgresql, versions in retentiond.schema_version).
//
// Each daemon has one writer connection that changes anything, in READ
// COMMITTED transactions with synchronous_commit on (an acknowledged commit
// is durable), and readers on connections of their own, each `read` a
// REPEATABLE READ READ ONLY transaction (one MVCC snapshot, which no writer
// waits for). Any number of daemons may share the database (Store::shared):
// every write transaction takes one transaction advisory lock first, so
// write transactions run one at a time across all of them, each after the
// previous commit and seeing it: the audit chain keeps one head, a sweep
// batch reads what is due inside its transaction (another daemon's batch
// is already committed or not started), key slots come in blocks from a
// sequence. A transaction about to commit under a policy other than the
// one adopted on the database is refused (expect_policy).

#include <chrono>
#include <memory>
#include <string>

#include "lib/store/store.hpp"
#include "lib/vault/key_store.hpp"

namespace retentiond::store {

// Connects to `url` (a libpq connection string or URI), creates or migrates
// the schema, and takes the database's writer lock. Fails with libpq's
// message when the server cannot be reached, with who holds the lock when
// another writer does, and when the schema is newer than this binary knows.
Result<std::unique_ptr<Store>> open_postgresql_store(const std::string& url);

// A reader on a connection of its own to a database open_postgresql_store
// has migrated.
Result<std::unique_ptr<StoreReader>> open_postgresql_reader(const std::string& url);

// The one-time keys in retentiond.keys, on connections of their own (one
// for the writer's writes, one shared by the readers under a mutex). Writes
// and zeroings (a zeroed slot's row is deleted) are applied by sync(), all
// in one transaction: the vault syncs new keys before the commit of the
// rows they seal, and zeroings after the commit that released them. Every `vacuum_interval` after a deletion,
// and when it is destroyed, it compacts the deleted keys out of the
// database's files (VACUUM FULL, a new WAL segment, a checkpoint; see
// docs/scale-out.md, "Erasure on PostgreSQL").
Result<std::unique_ptr<vault::KeyStore>> open_postgresql_key_store(const std::string& url,
                                                                   std::chrono::seconds vacuum_interval);

// The schema version the binary's PostgreSQL migrations reach.
int latest_postgresql_schema_version();

// The libpq connection string with any password replaced by "***", for logs
// and messages.
std::string redact_url(const std::string& url);

}  // namespace retentiond::store
