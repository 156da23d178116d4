#pragma once
// Hashes and keyed hashes, through OpenSSL's libcrypto (no hand-written
// crypto). Pure functions, thread-safe.

#include <optional>
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

// Authenticated encryption (AES-256-GCM) under a key used exactly once.
// Because every key seals a single message, the nonce is fixed (all zero);
// sealing two messages under one key would be unsafe, and callers must not.
// `aad` is bound to the ciphertext but not encrypted. The sealed form is
// one version byte, the ciphertext and the 16-byte tag.
inline constexpr std::size_t kSealKeyBytes = 32;
std::string seal_once(std::string_view key, std::string_view aad, std::string_view plaintext);
// The plaintext, or nullopt when the key, aad or ciphertext do not match
// (a destroyed key, tampering, or the wrong record).
std::optional<std::string> open_sealed(std::string_view key, std::string_view aad, std::string_view sealed);

}  // namespace retentiond::crypto

#include <filesystem>

#include "lib/util/result.hpp"

namespace retentiond::crypto {

// Reads the daemon's secret key from `path`, creating it (32 random bytes,
// mode 0600, never overwritten) when absent. Fails when the file is shorter
// than 32 bytes or cannot be read or created; `created` tells which happened.
Result<std::string> load_or_create_secret(const std::filesystem::path& path, bool& created);

// Creates `path` with `contents`, mode 0600, unless it exists (then false):
// written under a temporary name, synced, and linked into place only when
// whole, so that two starts racing keep the first. `what` names the file in
// errors ("secret file").
Result<bool> create_file_once(const std::filesystem::path& path, std::string_view contents, const char* what);
// The whole file; storage_error naming `what` when it cannot be read.
Result<std::string> read_file(const std::filesystem::path& path, const char* what);

}  // namespace retentiond::crypto
