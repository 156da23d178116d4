// The exec transport: posix_spawn (safe in a threaded daemon, unlike a bare
// fork), pipes for stdin, stdout and stderr, one poll loop with the
// deadline, and the process group killed when it passes.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "lib/connectors/transport.hpp"

extern char** environ;

namespace retentiond::connectors {

namespace {

struct Pipe {
  int fd[2] = {-1, -1};
  ~Pipe() { close_both(); }
  void close_end(int i) {
    if (fd[i] >= 0) ::close(fd[i]);
    fd[i] = -1;
  }
  void close_both() {
    close_end(0);
    close_end(1);
  }
};

std::string errno_text(const char* what, int err) { return std::string(what) + ": " + std::strerror(err); }

// Appends what `fd` has to `out` (kept up to kMaxOutputBytes); false at EOF.
bool drain(int fd, std::string& out) {
  char buf[4096];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  if (n > 0) {
    const std::size_t room = kMaxOutputBytes > out.size() ? kMaxOutputBytes - out.size() : 0;
    out.append(buf, std::min<std::size_t>(room, static_cast<std::size_t>(n)));
    return true;
  }
  return n < 0 && (errno == EINTR || errno == EAGAIN);
}

std::string describe_output(const std::string& out, const std::string& err) {
  std::string text;
  if (!err.empty()) text += "stderr: " + err;
  if (!out.empty()) text += std::string(text.empty() ? "" : "; ") + "stdout: " + out;
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

}  // namespace

Attempt run_exec(const std::vector<std::string>& argv, const std::string& input, std::chrono::milliseconds timeout,
                 const std::atomic<bool>& cancel) {
  if (argv.empty()) return {Outcome::failed, "no command"};
  Pipe in, out, err;
  for (Pipe* p : {&in, &out, &err}) {
    if (::pipe2(p->fd, O_CLOEXEC) != 0) return {Outcome::later, errno_text("pipe", errno)};
  }
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_adddup2(&actions, in.fd[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out.fd[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err.fd[1], 2);
  posix_spawn_file_actions_addchdir_np(&actions, "/");
  // Nothing else of the daemon's: not its sockets, database or key file.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  // Its own process group (killed whole at the timeout), default signal
  // dispositions and an empty mask, whatever the daemon's thread has.
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // The daemon's environment, less what systemd handed to the daemon
  // itself (its notify socket, watchdog and socket activation).
  std::vector<char*> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const bool systemd_own = entry.starts_with("NOTIFY_SOCKET=") || entry.starts_with("WATCHDOG_") ||
                             entry.starts_with("LISTEN_");
    if (!systemd_own) env.push_back(*e);
  }
  env.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, argv[0].c_str(), &actions, &attr, args.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return {Outcome::failed, errno_text(("cannot run " + argv[0]).c_str(), rc)};
  in.close_end(0);
  out.close_end(1);
  err.close_end(1);
  for (int fd : {in.fd[1], out.fd[0], err.fd[0]}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);

  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::size_t written = 0;
  std::string stdout_text, stderr_text;
  bool timed_out = false;
  bool cancelled = false;
  if (input.empty()) in.close_end(1);
  while (in.fd[1] >= 0 || out.fd[0] >= 0 || err.fd[0] >= 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || cancel.load()) {
      timed_out = true;
      cancelled = cancel.load();
      break;
    }
    pollfd fds[3];
    nfds_t n = 0;
    if (in.fd[1] >= 0) fds[n++] = {in.fd[1], POLLOUT, 0};
    if (out.fd[0] >= 0) fds[n++] = {out.fd[0], POLLIN, 0};
    if (err.fd[0] >= 0) fds[n++] = {err.fd[0], POLLIN, 0};
    const int ready = ::poll(fds, n, static_cast<int>(std::min<std::int64_t>(left.count(), 100)));
    if (ready < 0 && errno != EINTR) break;
    for (nfds_t i = 0; i < n && ready > 0; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == in.fd[1]) {
        // A child that exits without reading its input is no error of ours
        // (EPIPE; SIGPIPE is ignored by the daemon): its exit status says.
        const ssize_t w = ::write(in.fd[1], input.data() + written, input.size() - written);
        if (w > 0) written += static_cast<std::size_t>(w);
        if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == input.size() || (fds[i].revents & (POLLERR | POLLHUP))) {
          in.close_end(1);
        }
      } else if (fds[i].fd == out.fd[0]) {
        if (!drain(out.fd[0], stdout_text)) out.close_end(0);
      } else if (fds[i].fd == err.fd[0]) {
        if (!drain(err.fd[0], stderr_text)) err.close_end(0);
      }
    }
  }
  int status = 0;
  if (timed_out) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
  } else {
    // Output closed: wait for the exit, still within the deadline, on a
    // pidfd (readable once the child has exited).
    // (By syscall: Debian 12's <sys/pidfd.h> declares pidfd_open without C linkage.)
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    for (;;) {
      const pid_t w = ::waitpid(pid, &status, WNOHANG);
      if (w == pid) break;
      if (w < 0 && errno != EINTR) {
        if (pidfd >= 0) ::close(pidfd);
        return {Outcome::failed, errno_text("waitpid", errno)};
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || cancel.load()) {
        timed_out = true;
        cancelled = cancel.load();
        ::kill(-pid, SIGKILL);
        ::kill(pid, SIGKILL);
        break;
      }
      const int slice = static_cast<int>(std::min<std::int64_t>(left.count(), 100));
      if (pidfd >= 0) {
        pollfd p{pidfd, POLLIN, 0};
        ::poll(&p, 1, slice);
      } else {
        ::usleep(2000);  // no pidfd (an old kernel): the child closed its output and is exiting
      }
    }
    if (pidfd >= 0) ::close(pidfd);
  }
  if (timed_out) {
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (cancelled) return {Outcome::later, "stopped: the daemon is shutting down"};
    const std::string output = describe_output(stdout_text, stderr_text);
    return {Outcome::failed, "timed out after " + std::to_string(timeout.count() / 1000) + " s (killed)" +
                                 (output.empty() ? "" : "; " + output)};
  }
  const std::string output = describe_output(stdout_text, stderr_text);
  if (WIFEXITED(status)) {
    const int code = WEXITSTATUS(status);
    if (code == 0) return {Outcome::done, output};
    const std::string text = "exit " + std::to_string(code) + (output.empty() ? "" : ": " + output);
    return {code == 75 ? Outcome::later : Outcome::failed, text};
  }
  if (WIFSIGNALED(status)) {
    return {Outcome::failed, "killed by signal " + std::to_string(WTERMSIG(status)) + (output.empty() ? "" : ": " + output)};
  }
  return {Outcome::failed, "ended with status " + std::to_string(status)};
}

}  // namespace retentiond::connectors
