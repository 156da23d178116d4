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
  // The cluster of this test process: its own, or, when the environment
  // names one in RETENTIOND_TEST_PG_DIR (a ctest fixture started it with
  // start_in, and stops it with stop_in), that one.
  static PgCluster& shared();

  // The ctest fixture's: initdb (once) and start a cluster in `dir`, left
  // running; stop it. tests/support/pg_cluster_main.cpp.
  static void start_in(const std::filesystem::path& dir);
  static void stop_in(const std::filesystem::path& dir);

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
  explicit PgCluster(std::filesystem::path running);  // attach to a cluster started by start_in
  std::filesystem::path m_bin;  // /usr/lib/postgresql/<n>/bin
  std::filesystem::path m_dir;
  bool m_owned = true;  // started (and so stopped) by this process
};

}  // namespace retentiond::test
