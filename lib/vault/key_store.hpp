#pragma once
// KeyStore: where the one-time keys live, one 32-byte slot each. The vault
// writes a fresh key into a slot before the commit of the row it seals, and
// zeroes the slot once the commit that destroyed the row is durable; a zeroed
// slot is a destroyed key. The embedded deployment keeps them in a flat file
// (key_file.hpp); another backend may keep them elsewhere, under the same
// contract.
//
// Threading: read() may be called from several threads at once and
// concurrently with the writes, which come from one thread (the writer).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "lib/util/result.hpp"

namespace retentiond::vault {

class KeyStore {
 public:
  static constexpr std::size_t kSlotBytes = 32;

  virtual ~KeyStore() = default;

  // Writes the keys of the consecutive slots first_slot, first_slot + 1...:
  // `keys` is a whole number of slots.
  virtual Status write_run(std::int64_t first_slot, std::string_view keys) = 0;
  // The key in `slot`; fails (storage_error) when the slot is beyond the end
  // or zeroed (its row was destroyed).
  virtual Result<std::string> read(std::int64_t slot) const = 0;
  // Zeroes `count` consecutive slots from first_slot.
  virtual Status zero_run(std::int64_t first_slot, std::size_t count) = 0;
  // Makes the writes and zeroings so far durable. A store may apply them
  // only here (the PostgreSQL one does, in one transaction): until then
  // read() may still answer with a slot's old contents, so a caller syncs
  // before it relies on a write or a zeroing.
  virtual Status sync() = 0;
};

}  // namespace retentiond::vault
