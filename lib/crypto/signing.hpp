#pragma once
// Ed25519 signatures (OpenSSL), for erasure receipts and audit checkpoints
// (issue 16), and base64 for their transport. No hand-written crypto: keys,
// signing and verifying are libcrypto's EVP_PKEY Ed25519.
//
// The key file is the private key in PKCS#8 PEM, mode 0600, as `openssl
// genpkey -algorithm ed25519` writes it, so that operators can inspect it
// with the standard tools (`openssl pkey -in signing.key -pubout`).

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "lib/util/result.hpp"

namespace retentiond::crypto {

inline constexpr std::size_t kEd25519PublicKeyBytes = 32;
inline constexpr std::size_t kEd25519SignatureBytes = 64;

class SigningKey {
 public:
  // Reads the key at `path`, creating it (a fresh Ed25519 key, 0600, never
  // overwritten: two starts racing keep the first) when absent. Fails with
  // storage_error when the file cannot be read or created, or holds no
  // Ed25519 private key. `created` tells which happened.
  static Result<SigningKey> load_or_create(const std::filesystem::path& path, bool& created);
  // A key generated in memory (tests and tools).
  static SigningKey generate();

  // The raw 32-byte public key.
  const std::string& public_key() const { return m_public; }
  // The 64-byte signature of `message`. Thread-safe.
  std::string sign(std::string_view message) const;

 private:
  struct Pkey;
  explicit SigningKey(std::shared_ptr<Pkey> key);
  std::shared_ptr<Pkey> m_key;
  std::string m_public;
};

// Whether `signature` (64 raw bytes) is the Ed25519 signature of `message`
// under the raw 32-byte `public_key`.
bool ed25519_verify(std::string_view public_key, std::string_view message, std::string_view signature);

// Standard base64 (RFC 4648, with padding, no line breaks).
std::string base64_encode(std::string_view bytes);
// The bytes, or nullopt when `text` is not canonical padded base64.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace retentiond::crypto
