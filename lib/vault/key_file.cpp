#include "lib/vault/key_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace retentiond::vault {

namespace {

Error io_error(const std::string& what, const std::filesystem::path& path) {
  return Error::storage(what + " " + path.string() + ": " + std::strerror(errno));
}

off_t offset_of(std::int64_t slot) { return static_cast<off_t>(slot) * static_cast<off_t>(KeyFile::kSlotBytes); }

// Writes all of `data` at `offset`: a short write (a full disk takes what
// fits) is continued, and fails with the error of the call that wrote
// nothing (ENOSPC when a write of 0 bytes reports none).
bool write_all(int fd, std::string_view data, off_t offset) {
  while (!data.empty()) {
    errno = 0;
    const ssize_t n = ::pwrite(fd, data.data(), data.size(), offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (errno == 0) errno = ENOSPC;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
    offset += n;
  }
  return true;
}

}  // namespace

Result<KeyFile> KeyFile::open(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return io_error("cannot open key file", path);
  return KeyFile(fd, path);
}

KeyFile::KeyFile(KeyFile&& other) noexcept : m_fd(std::exchange(other.m_fd, -1)), m_path(std::move(other.m_path)) {}

KeyFile& KeyFile::operator=(KeyFile&& other) noexcept {
  if (this != &other) {
    if (m_fd >= 0) ::close(m_fd);
    m_fd = std::exchange(other.m_fd, -1);
    m_path = std::move(other.m_path);
  }
  return *this;
}

KeyFile::~KeyFile() {
  if (m_fd >= 0) ::close(m_fd);
}

Status KeyFile::write_run(std::int64_t first_slot, std::string_view keys) {
  if (first_slot < 0 || keys.empty() || keys.size() % kSlotBytes != 0) {
    return Error::internal("KeyFile::write_run: bad slot or key size");
  }
  if (!write_all(m_fd, keys, offset_of(first_slot))) return io_error("cannot write key file", m_path);
  return {};
}

Result<std::string> KeyFile::read(std::int64_t slot) const {
  std::string key(kSlotBytes, '\0');
  const ssize_t n = slot < 0 ? -1 : ::pread(m_fd, key.data(), key.size(), offset_of(slot));
  if (n < 0) return io_error("cannot read key file", m_path);
  if (static_cast<std::size_t>(n) != kSlotBytes || std::all_of(key.begin(), key.end(), [](char c) { return c == 0; })) {
    return Error::storage("key slot " + std::to_string(slot) + " of " + m_path.string() +
                          " holds no key: its record's data was destroyed or the key file was damaged");
  }
  return key;
}

Status KeyFile::zero_run(std::int64_t first_slot, std::size_t count) {
  if (first_slot < 0) return Error::internal("KeyFile::zero_run: bad slot");
  const std::string zeros(count * kSlotBytes, '\0');
  if (!write_all(m_fd, zeros, offset_of(first_slot))) return io_error("cannot zero keys in", m_path);
  return {};
}

Status KeyFile::sync() {
  if (::fdatasync(m_fd) != 0) return io_error("cannot sync key file", m_path);
  return {};
}

}  // namespace retentiond::vault
