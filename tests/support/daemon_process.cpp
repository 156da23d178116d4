#include "tests/support/daemon_process.hpp"
#include "tests/support/pg_cluster.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>

extern char** environ;

namespace retentiond::testing {
namespace {

sockaddr_un address(const std::filesystem::path& p) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string s = p.string();
  if (s.size() >= sizeof addr.sun_path) throw std::runtime_error("socket path too long: " + s);
  std::memcpy(addr.sun_path, s.c_str(), s.size() + 1);
  return addr;
}

int remaining_ms(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// `name` as given when it holds a '/', else its first match on PATH.
std::string find_executable(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    const std::size_t end = std::min(dirs.find(':', start), dirs.size());
    const std::string candidate = (end > start ? dirs.substr(start, end - start) : std::string(".")) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return name;
}

}  // namespace

std::string retentiond_binary() { return RETENTIOND_BINARY_DIR "/daemon/retentiond"; }

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "rdtest.XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  m_path = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(m_path, ec);
}

Client::Client(const std::filesystem::path& socket) {
  m_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_un addr = address(socket);
  if (::connect(m_fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    throw std::runtime_error("connect " + socket.string() + ": " + std::strerror(errno));
  }
}

Client::~Client() {
  if (m_fd >= 0) ::close(m_fd);
}

void Client::send_line(const std::string& line) {
  const std::string data = line + "\n";
  std::size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::send(m_fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0) throw std::runtime_error(std::string("send: ") + std::strerror(errno));
    off += static_cast<std::size_t>(n);
  }
}

std::optional<std::string> Client::read_line(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (const auto nl = m_pending.find('\n'); nl != std::string::npos) {
      std::string line = m_pending.substr(0, nl);
      m_pending.erase(0, nl + 1);
      return line;
    }
    pollfd pfd{m_fd, POLLIN, 0};
    if (::poll(&pfd, 1, remaining_ms(deadline)) <= 0) return std::nullopt;
    char buf[65536];
    const ssize_t n = ::recv(m_fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      m_eof = true;
      return std::nullopt;
    }
    m_pending.append(buf, static_cast<std::size_t>(n));
  }
}

bool Client::send_raw(std::string_view data) {
  std::size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::send(m_fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

nlohmann::json Client::call(const std::string& method, const nlohmann::json& params,
                            std::chrono::milliseconds timeout) {
  nlohmann::json request = {{"jsonrpc", "2.0"}, {"id", m_next_id++}, {"method", method}};
  if (!params.is_null()) request["params"] = params;
  send_line(request.dump());
  const auto line = read_line(timeout);
  if (!line) throw std::runtime_error("no reply to " + method);
  return nlohmann::json::parse(*line);
}

DaemonProcess::DaemonProcess(const std::filesystem::path& dir, std::vector<std::string> args)
    : DaemonProcess(dir, std::move(args), DaemonOptions{}) {}

DaemonProcess::DaemonProcess(const std::filesystem::path& dir, std::vector<std::string> args, DaemonOptions options)
    : m_state(dir / "state"), m_socket(dir / "admin.sock"), m_notify_path(dir / "notify.sock") {
  // Our own NOTIFY_SOCKET, as systemd would provide.
  const int notify = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const sockaddr_un addr = address(m_notify_path);
  std::filesystem::remove(m_notify_path);  // left by an earlier daemon in the same directory
  if (::bind(notify, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(notify);
    throw std::runtime_error("bind notify socket failed");
  }

  std::vector<std::string> argv_s = options.launcher;
  if (!argv_s.empty()) argv_s[0] = find_executable(argv_s[0]);
  argv_s.push_back(retentiond_binary());
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  if (options.pass_state_dir) argv_s.insert(argv_s.end(), {"--state-dir", m_state.string()});
  if (options.pass_socket) argv_s.insert(argv_s.end(), {"--socket", m_socket.string()});
  if (options.pass_state_dir) {
    if (const char* pg = std::getenv("RETENTIOND_TEST_PG_DIR"); pg != nullptr && *pg != '\0') {
      argv_s.insert(argv_s.end(), {"--store-url", postgresql_store_for(m_state)});
    }
  }
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "NOTIFY_SOCKET=", 14) != 0 && std::strncmp(*e, "LISTEN_", 7) != 0 &&
        (!options.watchdog_usec || std::strncmp(*e, "WATCHDOG_", 9) != 0)) {
      env_s.emplace_back(*e);
    }
  }
  env_s.push_back("NOTIFY_SOCKET=" + m_notify_path.string());
  env_s.insert(env_s.end(), options.env.begin(), options.env.end());
  std::size_t watchdog_pid_index = env_s.size();
  if (options.watchdog_usec) {
    env_s.push_back("WATCHDOG_USEC=" + std::to_string(*options.watchdog_usec));
    watchdog_pid_index = env_s.size();
    env_s.push_back("WATCHDOG_PID=" + std::string(24, '\0'));  // the digits are written by the child
  }
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  if (options.watchdog_usec) {
    // sd_watchdog_enabled() wants WATCHDOG_PID to be the daemon's own pid,
    // known only after fork: the child writes it (async-signal-safe code
    // only between fork and exec).
    char* digits = envp[watchdog_pid_index] + std::strlen("WATCHDOG_PID=");
    m_pid = ::fork();
    if (m_pid < 0) {
      ::close(notify);
      throw std::runtime_error("fork failed");
    }
    if (m_pid == 0) {
      char tmp[24];
      int n = 0;
      for (auto v = static_cast<unsigned long>(::getpid()); v > 0 || n == 0; v /= 10) tmp[n++] = static_cast<char>('0' + v % 10);
      for (int i = 0; i < n; ++i) digits[i] = tmp[n - 1 - i];
      digits[n] = '\0';
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
  } else if (::posix_spawn(&m_pid, argv[0], nullptr, nullptr, argv.data(), envp.data()) != 0) {
    ::close(notify);
    throw std::runtime_error("cannot spawn " + argv_s[0]);
  }

  // glibc 2.36 declares pidfd_open without extern "C"; use the system call.
  m_pidfd = static_cast<int>(::syscall(SYS_pidfd_open, m_pid, 0));

  if (options.record_notify) {
    m_notify = notify;
    if (::pipe2(m_stop_pipe, O_CLOEXEC) != 0) {
      ::kill(m_pid, SIGKILL);
      throw std::runtime_error("pipe2 failed");
    }
    m_recorder = std::thread([this] { record_loop(); });
    if (!options.wait_ready) return;
    // Wait for READY=1 or the process's exit, whichever comes first, without
    // moving the wait_notify() cursor.
    std::unique_lock lock(m_mutex);
    const auto ready = [&] {
      return std::any_of(m_notes.begin(), m_notes.end(),
                         [](const std::string& n) { return n.find("READY=1") != std::string::npos; });
    };
    const bool done = m_cv.wait_for(lock, std::chrono::seconds(20), [&] { return ready() || m_exited; });
    if (done && ready()) return;
    lock.unlock();
    stop_recorder();
    ::kill(m_pid, SIGKILL);
    int status = 0;
    ::waitpid(m_pid, &status, 0);
    m_pid = -1;
    if (m_pidfd >= 0) ::close(m_pidfd);
    throw std::runtime_error(done ? "retentiond exited before it was ready (status " + std::to_string(status) + ")"
                                  : std::string("retentiond did not become ready in 20 s"));
  }

  if (!options.wait_ready) {
    ::close(notify);
    return;
  }
  // Wait for READY=1 or the process's exit, whichever comes first.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (;;) {
    pollfd pfd[2] = {{notify, POLLIN, 0}, {m_pidfd, POLLIN, 0}};
    if (::poll(pfd, 2, remaining_ms(deadline)) <= 0) {
      ::close(notify);
      throw std::runtime_error("retentiond did not become ready in 20 s");
    }
    if (pfd[0].revents & POLLIN) {
      char buf[4096];
      const ssize_t n = ::recv(notify, buf, sizeof buf - 1, 0);
      if (n > 0 && std::string(buf, static_cast<std::size_t>(n)).find("READY=1") != std::string::npos) break;
      continue;
    }
    int status = 0;
    ::waitpid(m_pid, &status, 0);
    m_pid = -1;
    ::close(notify);
    throw std::runtime_error("retentiond exited before it was ready (status " + std::to_string(status) + ")");
  }
  ::close(notify);
}

void DaemonProcess::record_loop() {
  bool exited = false;
  const auto drain = [this] {
    for (;;) {
      char buf[4096];
      const ssize_t n = ::recv(m_notify, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return;
      {
        std::lock_guard lock(m_mutex);
        m_notes.emplace_back(buf, static_cast<std::size_t>(n));
      }
      m_cv.notify_all();
    }
  };
  for (;;) {
    pollfd pfd[3] = {{m_notify, POLLIN, 0}, {m_stop_pipe[0], POLLIN, 0}, {exited ? -1 : m_pidfd, POLLIN, 0}};
    if (::poll(pfd, 3, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (pfd[0].revents & POLLIN) drain();
    if (pfd[2].revents & POLLIN) {
      // Whatever it sent before it exited is already queued: record it first.
      drain();
      exited = true;
      {
        std::lock_guard lock(m_mutex);
        m_exited = true;
      }
      m_cv.notify_all();
    }
    if (pfd[1].revents & (POLLIN | POLLHUP)) return;
  }
}

void DaemonProcess::stop_recorder() {
  if (m_recorder.joinable()) {
    const char c = 'x';
    (void)!::write(m_stop_pipe[1], &c, 1);
    m_recorder.join();
  }
  for (int& fd : m_stop_pipe) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  if (m_notify >= 0) ::close(m_notify);
  m_notify = -1;
}

std::optional<std::string> DaemonProcess::wait_notify(const std::string& needle, std::chrono::milliseconds timeout) {
  return wait_notify([&](const std::string& n) { return n.find(needle) != std::string::npos; }, timeout);
}

std::optional<std::string> DaemonProcess::wait_notify(const std::function<bool(const std::string&)>& match,
                                                      std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(m_mutex);
  for (;;) {
    for (; m_note_cursor < m_notes.size(); ++m_note_cursor) {
      if (match(m_notes[m_note_cursor])) return m_notes[m_note_cursor++];
    }
    if (m_exited || !m_recorder.joinable()) return std::nullopt;
    if (m_cv.wait_until(lock, deadline) == std::cv_status::timeout && m_note_cursor == m_notes.size()) {
      return std::nullopt;
    }
  }
}

std::vector<std::string> DaemonProcess::notifications() const {
  std::lock_guard lock(m_mutex);
  return m_notes;
}

bool wait_for_path(const std::filesystem::path& path, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const int fd = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0) throw std::runtime_error("inotify_init1 failed");
  const auto parent = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  if (::inotify_add_watch(fd, parent.c_str(), IN_CREATE | IN_MOVED_TO) < 0) {
    ::close(fd);
    throw std::runtime_error("inotify_add_watch " + parent.string() + " failed");
  }
  // The watch is in place before the first check, so no creation is missed.
  bool found = false;
  for (;;) {
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) {
      found = true;
      break;
    }
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, remaining_ms(deadline)) <= 0) {
      found = std::filesystem::exists(path, ec);
      break;
    }
    char buf[4096];
    while (::read(fd, buf, sizeof buf) > 0) {
    }
  }
  ::close(fd);
  return found;
}

void DaemonProcess::signal(int signo) {
  if (m_pid > 0) ::kill(m_pid, signo);
}

int DaemonProcess::stop(int signo) {
  if (m_pid < 0) return -1;
  ::kill(m_pid, signo);
  // The pidfd becomes readable when the process exits.
  pollfd pfd{m_pidfd, POLLIN, 0};
  if (::poll(&pfd, 1, 20000) <= 0) return -1;
  int status = 0;
  ::waitpid(m_pid, &status, 0);
  m_pid = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string postgresql_store_for(const std::filesystem::path& state) {
  // One database per state directory, made at its first daemon's start
  // (a marker beside the state, which a restart finds).
  char name[40];
  std::snprintf(name, sizeof name, "d_%016zx", std::hash<std::string>{}(state.string()));
  // (in it: a test that removes the state directory gets a new database,
  // as its daemon gets a new secret).
  auto& cluster = test::PgCluster::shared();
  const auto marker = state / ".pg-database";
  if (std::filesystem::exists(marker)) return cluster.url(name);
  std::filesystem::create_directories(state);
  ::chmod(state.c_str(), 0700);
  std::ofstream(marker) << name;
  return cluster.create_database(name);
}

std::string store_args(const std::filesystem::path& state) {
  const char* pg = std::getenv("RETENTIOND_TEST_PG_DIR");
  if (pg == nullptr || *pg == '\0') return "";
  return " --store-url '" + postgresql_store_for(state) + "'";
}

DaemonProcess::~DaemonProcess() {
  stop_recorder();
  if (m_pid > 0) {
    ::kill(m_pid, SIGKILL);
    int status = 0;
    ::waitpid(m_pid, &status, 0);
  }
  if (m_pidfd >= 0) ::close(m_pidfd);
}

CommandResult run_command(const std::string& cmd) {
  std::array<char, 4096> buf{};
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  while (p != nullptr && std::fgets(buf.data(), buf.size(), p) != nullptr) out += buf.data();
  const int status = p != nullptr ? ::pclose(p) : -1;
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace retentiond::testing
