#pragma once
// A real PostgreSQL server for the tests that need one: its own cluster,
// initdb'd in a temporary directory and started with pg_ctl, listening only
// on a Unix socket in that directory (no TCP port, nothing system-wide).
// Run as root, the server runs as `nobody` (initdb and postgres refuse
// root). Started on first use by a test process and stopped (immediate
// shutdown) and removed when the process exits. No server binaries
// (package postgresql, installed by scripts/deps.sh) is a failure that says
// so, never a skip.

#include <filesystem>
#include <string>

namespace retentiond::test {

class PgCluster {
 public:
  // The cluster of this test process.
  static PgCluster& shared();

  // Creates an empty database `name` (dropping one of that name first) and
  // returns its libpq URL.
  std::string create_database(const std::string& name);
  // The URL of database `name` on this cluster.
  std::string url(const std::string& name) const;
  // The cluster's data directory (every file the server writes).
  std::filesystem::path data_dir() const { return m_dir / "data"; }
  std::filesystem::path socket_dir() const { return m_dir; }

  // Runs one SQL statement on database `db` through psql and returns its
  // output (unaligned, tuples only); throws when psql fails.
  std::string psql(const std::string& db, const std::string& sql) const;

  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;
  ~PgCluster();

 private:
  PgCluster();
  std::filesystem::path m_bin;  // /usr/lib/postgresql/<n>/bin
  std::filesystem::path m_dir;
};

}  // namespace retentiond::test
