#include "tests/support/pg_cluster.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace retentiond::test {

namespace {

// The newest server of the Debian layout /usr/lib/postgresql/<major>/bin.
std::filesystem::path server_bin() {
  std::filesystem::path best;
  int best_major = -1;
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/usr/lib/postgresql", ec), end; !ec && it != end; it.increment(ec)) {
    const auto bin = it->path() / "bin";
    if (!std::filesystem::exists(bin / "initdb") || !std::filesystem::exists(bin / "pg_ctl")) continue;
    const int major = std::atoi(it->path().filename().c_str());
    if (major > best_major) {
      best_major = major;
      best = bin;
    }
  }
  if (best.empty()) {
    throw std::runtime_error(
        "no PostgreSQL server binaries (/usr/lib/postgresql/<n>/bin/initdb): install the postgresql package "
        "(scripts/deps.sh does)");
  }
  return best;
}

// Runs argv as `user` (when we are root) and waits; the output goes to `log`.
// Returns the exit status.
int run_as(const std::vector<std::string>& argv, const std::filesystem::path& log, bool as_nobody,
           std::string* output = nullptr) {
  int out_pipe[2] = {-1, -1};
  if (output && ::pipe(out_pipe) != 0) throw std::runtime_error("pipe failed");
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (output) {
      ::dup2(out_pipe[1], 1);
      ::close(out_pipe[0]);
    } else if (fd >= 0) {
      ::dup2(fd, 1);
    }
    if (fd >= 0) ::dup2(fd, 2);
    if (as_nobody) {
      const passwd* pw = ::getpwnam("nobody");
      if (pw == nullptr || ::setgroups(0, nullptr) != 0 || ::setgid(pw->pw_gid) != 0 || ::setuid(pw->pw_uid) != 0) _exit(126);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    _exit(127);
  }
  if (output) {
    ::close(out_pipe[1]);
    char buf[4096];
    for (ssize_t n; (n = ::read(out_pipe[0], buf, sizeof buf)) > 0;) output->append(buf, static_cast<std::size_t>(n));
    ::close(out_pipe[0]);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// initdb (unless `dir` holds a cluster already) and pg_ctl start, as nobody
// when root.
void start_cluster(const std::filesystem::path& bin, const std::filesystem::path& dir) {
  const bool root = ::geteuid() == 0;
  if (root) {
    const passwd* pw = ::getpwnam("nobody");
    if (pw == nullptr) throw std::runtime_error("running as root needs user 'nobody' to run the PostgreSQL server");
    if (::chown(dir.c_str(), pw->pw_uid, pw->pw_gid) != 0) throw std::runtime_error("chown of the cluster dir failed");
  }
  const auto data = dir / "data";
  const auto log = dir / "server.log";  // the server's own (created by it)
  if (!std::filesystem::exists(data / "PG_VERSION")) {
    const auto initdb_log = dir / "initdb.log";
    if (run_as({(bin / "initdb").string(), "-D", data.string(), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                "--no-locale", "--no-sync"},
               initdb_log, root) != 0) {
      throw std::runtime_error("initdb failed: " + read_file(initdb_log));
    }
  }
  if (run_as({(bin / "pg_ctl").string(), "-D", data.string(), "-l", log.string(), "-w", "-t", "60", "-o",
              "-k " + dir.string() +
                  " -c listen_addresses='' -c unix_socket_permissions=0777 -c max_connections=300"
                  // As docs/scale-out.md asks of a server whose erasure bound is stated.
                  " -c wal_recycle=off",
              "start"},
             dir / "pg_ctl.log", root) != 0) {
    throw std::runtime_error("pg_ctl start failed: " + read_file(dir / "pg_ctl.log") + read_file(log));
  }
}

void stop_cluster(const std::filesystem::path& bin, const std::filesystem::path& dir) {
  run_as({(bin / "pg_ctl").string(), "-D", (dir / "data").string(), "-m", "immediate", "-w", "stop"},
         dir / "pg_ctl.log", ::geteuid() == 0);
}

}  // namespace

PgCluster& PgCluster::shared() {
  static PgCluster cluster = [] {
    if (const char* dir = std::getenv("RETENTIOND_TEST_PG_DIR"); dir != nullptr && *dir != '\0') {
      return PgCluster(std::filesystem::path(dir));
    }
    return PgCluster();
  }();
  return cluster;
}

void PgCluster::start_in(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  start_cluster(server_bin(), dir);
}

void PgCluster::stop_in(const std::filesystem::path& dir) { stop_cluster(server_bin(), dir); }

PgCluster::PgCluster() : m_bin(server_bin()) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "rd-pg-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed for the PostgreSQL cluster");
  m_dir = tmpl;
  start_cluster(m_bin, m_dir);
}

PgCluster::PgCluster(std::filesystem::path running) : m_bin(server_bin()), m_dir(std::move(running)), m_owned(false) {
  if (!std::filesystem::exists(m_dir / ".s.PGSQL.5432")) {
    throw std::runtime_error("RETENTIOND_TEST_PG_DIR=" + m_dir.string() +
                             " holds no running cluster (the ctest fixture pg_cluster_start starts it)");
  }
}

PgCluster::~PgCluster() {
  if (!m_owned) return;
  stop_cluster(m_bin, m_dir);
  std::error_code ec;
  std::filesystem::remove_all(m_dir, ec);
}

std::string PgCluster::url(const std::string& name) const {
  return "host=" + m_dir.string() + " user=postgres dbname=" + name;
}

std::string PgCluster::psql(const std::string& db, const std::string& sql) const {
  std::string out;
  const int rc = run_as({"/usr/bin/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", m_dir.string(), "-U",
                         "postgres", "-d", db, "-c", sql},
                        m_dir / "psql.log", false, &out);
  if (rc != 0) throw std::runtime_error("psql failed (" + std::to_string(rc) + ") on: " + sql + "\n" + read_file(m_dir / "psql.log"));
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::string PgCluster::create_database(const std::string& name) {
  psql("postgres", "DROP DATABASE IF EXISTS \"" + name + "\" WITH (FORCE)");
  psql("postgres", "CREATE DATABASE \"" + name + "\"");
  return url(name);
}

}  // namespace retentiond::test
