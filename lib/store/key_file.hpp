#pragma once
// KeyFile: the one-time keys that seal each record's personal values, one
// 32-byte slot each, in a flat file beside the database (<state_dir>/keys,
// mode 0600). Destroying a record zeroes its slot in place, which makes every
// copy SQLite may still hold of the sealed bytes (free space of pages that
// balancing rewrote, rollback journals, free pages) unreadable: erasure costs
// one 32-byte write per record, whatever the size of the database.
// The allocation of slots (which are free, which await zeroing) is the
// store's job, kept in the database so it commits with the records.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "lib/util/result.hpp"

namespace retentiond::store {

class KeyFile {
 public:
  static constexpr std::size_t kSlotBytes = 32;

  // Opens or creates the file (0600).
  static Result<KeyFile> open(const std::filesystem::path& path);

  KeyFile(KeyFile&& other) noexcept;
  KeyFile& operator=(KeyFile&& other) noexcept;
  KeyFile(const KeyFile&) = delete;
  KeyFile& operator=(const KeyFile&) = delete;
  ~KeyFile();

  Status write(std::int64_t slot, std::string_view key);
  // Writes the keys of the consecutive slots first_slot, first_slot + 1...:
  // `keys` is a whole number of slots. One system call for the run.
  Status write_run(std::int64_t first_slot, std::string_view keys);
  // The key in `slot`; fails when the slot is beyond the file or zeroed
  // (its record was destroyed).
  Result<std::string> read(std::int64_t slot) const;
  Status zero(std::int64_t slot);
  // Zeroes `count` consecutive slots from first_slot, in one system call.
  Status zero_run(std::int64_t first_slot, std::size_t count);
  // Makes the writes so far durable (fdatasync).
  Status sync();

  const std::filesystem::path& path() const { return m_path; }

 private:
  KeyFile(int fd, std::filesystem::path path) : m_fd(fd), m_path(std::move(path)) {}
  int m_fd = -1;
  std::filesystem::path m_path;
};

}  // namespace retentiond::store
