#pragma once
// Test support: runs the real retentiond binary in a temporary directory,
// waits for its READY=1 on a private NOTIFY_SOCKET (no sleeps), and talks
// JSON-RPC to it over its admin socket.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
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
  nlohmann::json call(const std::string& method, const nlohmann::json& params = nullptr);

 private:
  int m_fd = -1;
  std::string m_pending;
  int m_next_id = 1;
};

class DaemonProcess {
 public:
  // Starts retentiond with `args` (plus --state-dir/--socket inside `dir`)
  // and waits up to 20 s for READY=1. Throws std::runtime_error if it exits
  // or never becomes ready.
  DaemonProcess(const std::filesystem::path& dir, std::vector<std::string> args);
  ~DaemonProcess();

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
};

std::string retentiond_binary();

}  // namespace retentiond::testing
