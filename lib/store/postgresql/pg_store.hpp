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
// The writer is one connection that changes anything, in READ COMMITTED
// transactions with synchronous_commit on (an acknowledged commit is
// durable); readers are connections of their own, each `read` a REPEATABLE
// READ READ ONLY transaction (one MVCC snapshot, which no writer waits for).
// One writer per database for now: the writer holds a session advisory lock
// for as long as it is open, and a second writer on the same database is
// refused with who holds it (several daemons on one database: issue 13,
// not yet).

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
// for the writer's writes, one shared by the readers under a mutex). Each
// write commits on its own (durable before the rows it seals commit);
// zeroing a slot deletes its row.
Result<std::unique_ptr<vault::KeyStore>> open_postgresql_key_store(const std::string& url);

// The schema version the binary's PostgreSQL migrations reach.
int latest_postgresql_schema_version();

// The libpq connection string with any password replaced by "***", for logs
// and messages.
std::string redact_url(const std::string& url);

}  // namespace retentiond::store
