#pragma once
// KeyFile: the KeyStore of the embedded deployment: the one-time keys that
// seal each record's personal values, one 32-byte slot each, in a flat file
// beside the database (<state_dir>/keys, mode 0600). Destroying a record
// zeroes its slot in place, which makes every copy the database may still
// hold of the sealed bytes (free space of pages that balancing rewrote, the
// WAL, free pages) unreadable: erasure costs one 32-byte write per record,
// whatever the size of the database. Which slots are free or await zeroing
// is the vault's bookkeeping, kept in the database so that it commits with
// the records.
//
// Threading: read() may be called from any thread, concurrently with the
// writes (pread/pwrite on one descriptor); the writes come from one thread.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "lib/util/result.hpp"
#include "lib/vault/key_store.hpp"

namespace retentiond::vault {

class KeyFile final : public KeyStore {
 public:
  // Opens or creates the file (0600).
  static Result<KeyFile> open(const std::filesystem::path& path);

  KeyFile(KeyFile&& other) noexcept;
  KeyFile& operator=(KeyFile&& other) noexcept;
  KeyFile(const KeyFile&) = delete;
  KeyFile& operator=(const KeyFile&) = delete;
  ~KeyFile() override;

  // One system call per run of slots; sync is fdatasync.
  Status write_run(std::int64_t first_slot, std::string_view keys) override;
  Result<std::string> read(std::int64_t slot) const override;
  Status zero_run(std::int64_t first_slot, std::size_t count) override;
  Status sync() override;

  const std::filesystem::path& path() const { return m_path; }

 private:
  KeyFile(int fd, std::filesystem::path path) : m_fd(fd), m_path(std::move(path)) {}
  int m_fd = -1;
  std::filesystem::path m_path;
};

}  // namespace retentiond::vault
