#pragma once
// The SQL migrations embedded in the binary (migrations/NNN_name.sql).

#include <string>
#include <vector>

namespace retentiond::store {

struct Migration {
  int version;       // NNN
  const char* name;  // file name
  const char* sql;
};

// In ascending version order: retention.db's, archive.db's (SQLite), and
// the PostgreSQL backend's.
const std::vector<Migration>& embedded_migrations();
const std::vector<Migration>& embedded_archive_migrations();
const std::vector<Migration>& embedded_postgresql_migrations();

}  // namespace retentiond::store
