#include "tests/support/daemon_process.hpp"

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
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
    if (n <= 0) return std::nullopt;
    m_pending.append(buf, static_cast<std::size_t>(n));
  }
}

nlohmann::json Client::call(const std::string& method, const nlohmann::json& params) {
  nlohmann::json request = {{"jsonrpc", "2.0"}, {"id", m_next_id++}, {"method", method}};
  if (!params.is_null()) request["params"] = params;
  send_line(request.dump());
  const auto line = read_line();
  if (!line) throw std::runtime_error("no reply to " + method);
  return nlohmann::json::parse(*line);
}

DaemonProcess::DaemonProcess(const std::filesystem::path& dir, std::vector<std::string> args)
    : m_state(dir / "state"), m_socket(dir / "admin.sock") {
  // Our own NOTIFY_SOCKET, as systemd would provide.
  const auto notify_path = dir / "notify.sock";
  const int notify = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const sockaddr_un addr = address(notify_path);
  std::filesystem::remove(notify_path);  // left by an earlier daemon in the same directory
  if (::bind(notify, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    throw std::runtime_error("bind notify socket failed");
  }

  std::vector<std::string> argv_s = {retentiond_binary()};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  argv_s.insert(argv_s.end(), {"--state-dir", m_state.string(), "--socket", m_socket.string()});
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "NOTIFY_SOCKET=", 14) != 0 && std::strncmp(*e, "LISTEN_", 7) != 0) env_s.emplace_back(*e);
  }
  env_s.push_back("NOTIFY_SOCKET=" + notify_path.string());
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  if (::posix_spawn(&m_pid, argv[0], nullptr, nullptr, argv.data(), envp.data()) != 0) {
    ::close(notify);
    throw std::runtime_error("cannot spawn " + argv_s[0]);
  }

  // glibc 2.36 declares pidfd_open without extern "C"; use the system call.
  m_pidfd = static_cast<int>(::syscall(SYS_pidfd_open, m_pid, 0));
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

DaemonProcess::~DaemonProcess() {
  if (m_pid > 0) {
    ::kill(m_pid, SIGKILL);
    int status = 0;
    ::waitpid(m_pid, &status, 0);
  }
  if (m_pidfd >= 0) ::close(m_pidfd);
}

}  // namespace retentiond::testing
