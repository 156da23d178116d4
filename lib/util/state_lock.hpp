#pragma once
// StateLock: one daemon per state directory. Two daemons on one state would
// destroy it (both append to the audit chain with the same seq, both hand out
// the same key slots), so the daemon takes an exclusive flock(2) on
// <state_dir>/lock before it opens anything else there, and holds it for the
// life of the process. The kernel releases it when the process dies, however
// it dies, so a killed daemon leaves no stale lock behind: the file may stay,
// the lock does not.
//
// The file holds the holder's PID (text, one line) so that a refused second
// daemon can name it. Not thread-safe; taken once at start-up.

#include <sys/types.h>

#include <filesystem>
#include <optional>

#include "lib/util/result.hpp"

namespace retentiond {

class StateLock {
 public:
  // Takes the lock on <dir>/lock, creating the file (0600) if needed, and
  // writes our PID into it. Fails, changing nothing, with a message naming
  // the directory and the holder's PID when another process holds it
  // (reason "state_locked"), or when the file cannot be opened or locked.
  static Result<StateLock> acquire(const std::filesystem::path& dir);

  // The PID written in <dir>/lock, if the file exists and holds one. Says
  // nothing about whether that process still holds the lock.
  static std::optional<pid_t> recorded_holder(const std::filesystem::path& dir);

  StateLock(StateLock&& other) noexcept;
  StateLock& operator=(StateLock&& other) noexcept;
  StateLock(const StateLock&) = delete;
  StateLock& operator=(const StateLock&) = delete;
  ~StateLock();  // releases the lock (closes the descriptor); the file stays

  const std::filesystem::path& path() const { return m_path; }

 private:
  StateLock(int fd, std::filesystem::path path) : m_fd(fd), m_path(std::move(path)) {}
  int m_fd = -1;
  std::filesystem::path m_path;
};

}  // namespace retentiond
