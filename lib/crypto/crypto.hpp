#pragma once
// Hashes and keyed hashes, through OpenSSL's libcrypto (no hand-written
// crypto). Pure functions, thread-safe.

#include <string>
#include <string_view>

namespace retentiond::crypto {

// Lowercase hex SHA-256 of `data`.
std::string sha256_hex(std::string_view data);

// Lowercase hex HMAC-SHA256 of `data` under `key`.
std::string hmac_sha256_hex(std::string_view key, std::string_view data);

// `n` bytes from the operating system's CSPRNG; throws std::runtime_error
// if the generator fails (a fatal start-up condition).
std::string random_bytes(std::size_t n);

}  // namespace retentiond::crypto

#include <filesystem>

#include "lib/util/result.hpp"

namespace retentiond::crypto {

// Reads the daemon's secret key from `path`, creating it (32 random bytes,
// mode 0600, never overwritten) when absent. Fails when the file is shorter
// than 32 bytes or cannot be read or created; `created` tells which happened.
Result<std::string> load_or_create_secret(const std::filesystem::path& path, bool& created);

}  // namespace retentiond::crypto
