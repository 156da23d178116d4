#pragma once
// Test support: runs the real retentiond binary in a temporary directory,
// waits for its READY=1 on a private NOTIFY_SOCKET (no sleeps), and talks
// JSON-RPC to it over its admin socket.

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace retentiond::testing {

// A fresh temporary directory, removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return m_path; }

 private:
  std::filesystem::path m_path;
};

// A line-oriented client connection to a Unix socket.
class Client {
 public:
  explicit Client(const std::filesystem::path& socket);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void send_line(const std::string& line);
  // The next line, or nullopt on end of stream or after `timeout`.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Sends {"jsonrpc","id","method","params"} and returns the parsed reply.
  // The wait only bounds a hung daemon: a call that is merely slow (a
  // 5,000-record put_many under ASan on a loaded 2-core machine) must still
  // get its reply, so it is generous.
  static constexpr std::chrono::seconds kCallTimeout{120};
  nlohmann::json call(const std::string& method, const nlohmann::json& params = nullptr,
                      std::chrono::milliseconds timeout = kCallTimeout);

  // Sends `data` as it is (no newline added). Returns false, with errno set,
  // when the peer is gone (EPIPE, ECONNRESET...) instead of throwing.
  bool send_raw(std::string_view data);
  // True once a read has seen the end of the stream (or a reset): tells a
  // closed connection apart from a read_line timeout.
  bool eof() const { return m_eof; }
  int fd() const { return m_fd; }

 private:
  int m_fd = -1;
  std::string m_pending;
  int m_next_id = 1;
  bool m_eof = false;
};

// How DaemonProcess starts the daemon. The defaults are the plain
// constructor's behaviour.
struct DaemonOptions {
  // Words put before the retentiond command line, e.g. a launcher such as
  // {"systemd-socket-activate", "-l", path}. Empty: retentiond runs directly.
  std::vector<std::string> launcher;
  bool pass_state_dir = true;  // append --state-dir <dir>/state
  bool pass_socket = true;     // append --socket <dir>/admin.sock
  // Wait in the constructor for READY=1 (or the exit) for up to 20 s. A
  // launcher that starts the daemon only on the first connection needs false.
  bool wait_ready = true;
  // Keep the notify socket open and record every datagram on it (from a
  // background thread, so the daemon never blocks on a full queue); read
  // them with wait_notify() and notifications().
  bool record_notify = false;
  // Extra NAME=VALUE environment entries for the child.
  std::vector<std::string> env;
  // Sets WATCHDOG_USEC to this value and WATCHDOG_PID to the child's own
  // pid (written after fork, before exec), as systemd does.
  std::optional<std::uint64_t> watchdog_usec;
};

// With RETENTIOND_TEST_PG_DIR in the environment (a cluster the ctest
// fixture runs there), a daemon started with pass_state_dir also gets
// --store-url: a database of its own on that cluster, one per state
// directory (the daemon suites run again on the PostgreSQL backend;
// tests/CMakeLists.txt). This is its URL.
std::string postgresql_store_for(const std::filesystem::path& state);
// For a test that runs retentiond itself with --state-dir `state`: the
// " --store-url '...'" to append in that mode, else "".
std::string store_args(const std::filesystem::path& state);

class DaemonProcess {
 public:
  // Starts retentiond with `args` (plus --state-dir/--socket inside `dir`)
  // and waits up to 20 s for READY=1. Throws std::runtime_error if it exits
  // or never becomes ready.
  DaemonProcess(const std::filesystem::path& dir, std::vector<std::string> args);
  // The same with options: a launcher, which paths to pass, whether to wait
  // for READY=1, whether to record notify messages, watchdog variables.
  DaemonProcess(const std::filesystem::path& dir, std::vector<std::string> args, DaemonOptions options);
  ~DaemonProcess();
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  pid_t pid() const { return m_pid; }
  const std::filesystem::path& notify_socket() const { return m_notify_path; }

  // With record_notify: the first datagram not yet returned by an earlier
  // call that contains `needle` (or satisfies `match`), waiting up to
  // `timeout` for more to arrive. Each call moves past the datagram it
  // returns, so two calls return two distinct datagrams. nullopt on timeout
  // or when the process has exited and no recorded datagram matches.
  std::optional<std::string> wait_notify(const std::string& needle,
                                         std::chrono::milliseconds timeout = std::chrono::seconds(10));
  std::optional<std::string> wait_notify(const std::function<bool(const std::string&)>& match,
                                         std::chrono::milliseconds timeout);
  // Every datagram recorded so far, in arrival order.
  std::vector<std::string> notifications() const;

  const std::filesystem::path& socket() const { return m_socket; }
  const std::filesystem::path& state_dir() const { return m_state; }
  // Sends `signo` without waiting.
  void signal(int signo);
  // Sends `signo` and waits for the exit status (-1 if it does not exit in 20 s).
  int stop(int signo);

 private:
  std::filesystem::path m_state;
  std::filesystem::path m_socket;
  pid_t m_pid = -1;
  int m_pidfd = -1;

  // Notify recording (record_notify).
  void record_loop();
  void stop_recorder();
  std::filesystem::path m_notify_path;
  int m_notify = -1;
  int m_stop_pipe[2] = {-1, -1};
  std::thread m_recorder;
  mutable std::mutex m_mutex;
  std::condition_variable m_cv;
  std::vector<std::string> m_notes;
  std::size_t m_note_cursor = 0;
  bool m_exited = false;
};

std::string retentiond_binary();

// A shell command's exit status and what it printed (stdout and stderr
// together). exit_code is -1 when it could not run or died of a signal.
struct CommandResult {
  int exit_code;
  std::string output;
};
CommandResult run_command(const std::string& cmd);

// Waits until `path` exists (watching its directory with inotify, no
// polling). True if it exists within `timeout`.
bool wait_for_path(const std::filesystem::path& path, std::chrono::milliseconds timeout);

}  // namespace retentiond::testing
