#include "lib/util/state_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

namespace retentiond {

namespace {
constexpr const char* kLockName = "lock";
}

std::optional<pid_t> StateLock::recorded_holder(const std::filesystem::path& dir) {
  std::ifstream in(dir / kLockName);
  long pid = 0;
  if (!(in >> pid) || pid <= 0) return std::nullopt;
  return static_cast<pid_t>(pid);
}

Result<StateLock> StateLock::acquire(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / kLockName;
  // O_CLOEXEC: a child we start must not keep the lock after we die.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return Error::storage("cannot open the state directory lock " + path.string() + ": " + std::strerror(errno));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err != EWOULDBLOCK) {
      return Error::storage("cannot lock the state directory " + dir.string() + ": " + std::strerror(err));
    }
    const auto holder = recorded_holder(dir);
    Error e = Error::storage("the state directory " + dir.string() + " is in use by another retentiond (" +
                             (holder ? "pid " + std::to_string(*holder) : std::string("pid unknown")) +
                             "); refusing to start a second daemon on it. For a what-if run, copy the state "
                             "directory and point --state-dir at the copy");
    e.reason = "state_locked";
    return e;
  }
  // Ours now: record who holds it. A failure here is not fatal (the lock is
  // what protects the state); the PID only makes a refusal friendlier.
  const std::string text = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0) {
    [[maybe_unused]] const auto written = ::pwrite(fd, text.data(), text.size(), 0);
  }
  return StateLock(fd, path);
}

StateLock::StateLock(StateLock&& other) noexcept : m_fd(other.m_fd), m_path(std::move(other.m_path)) { other.m_fd = -1; }

StateLock& StateLock::operator=(StateLock&& other) noexcept {
  if (this != &other) {
    if (m_fd >= 0) ::close(m_fd);
    m_fd = other.m_fd;
    m_path = std::move(other.m_path);
    other.m_fd = -1;
  }
  return *this;
}

StateLock::~StateLock() {
  if (m_fd >= 0) ::close(m_fd);
}

}  // namespace retentiond
