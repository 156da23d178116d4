#include "lib/crypto/crypto.hpp"

#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace retentiond::crypto {
namespace {

std::string to_hex(const unsigned char* bytes, unsigned int n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(static_cast<std::size_t>(n) * 2, '0');
  for (unsigned int i = 0; i < n; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0xf];
  }
  return out;
}

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

// The algorithms, fetched from the default provider once per process: an
// implicit fetch (EVP_sha256(), HMAC(), EVP_aes_256_gcm()) looks them up
// again on every call, which cost more than the hashing of a short value
// (measured for issue 11: a fifth of the ingest). Fetched objects are
// reference-counted and may be shared between threads.
struct Algorithms {
  EVP_MD* sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  EVP_MAC* hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  EVP_CIPHER* gcm = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  Algorithms() {
    if (sha256 == nullptr || hmac == nullptr || gcm == nullptr) throw std::runtime_error("cannot fetch SHA256, HMAC or AES-256-GCM");
  }
  ~Algorithms() {
    EVP_MD_free(sha256);
    EVP_MAC_free(hmac);
    EVP_CIPHER_free(gcm);
  }
};

const Algorithms& algorithms() {
  static const Algorithms a;
  return a;
}

// Contexts reused by each thread (a context is not thread-safe).
struct ThreadContexts {
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  EVP_CIPHER_CTX* cipher = EVP_CIPHER_CTX_new();
  // The HMAC keyed with the last key used on this thread (the daemon uses
  // one, its secret): each call duplicates it instead of keying anew.
  std::string mac_key;
  EVP_MAC_CTX* mac = nullptr;
  ThreadContexts() {
    if (md == nullptr || cipher == nullptr) throw std::runtime_error("cannot allocate crypto contexts");
  }
  ~ThreadContexts() {
    EVP_MD_CTX_free(md);
    EVP_CIPHER_CTX_free(cipher);
    EVP_MAC_CTX_free(mac);
  }
  EVP_MAC_CTX* keyed(std::string_view key) {
    if (mac != nullptr && mac_key == key) return mac;
    EVP_MAC_CTX_free(mac);
    mac = EVP_MAC_CTX_new(algorithms().hmac);
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0), OSSL_PARAM_construct_end()};
    if (mac == nullptr || EVP_MAC_init(mac, bytes(key), key.size(), params) != 1) {
      throw std::runtime_error("HMAC(sha256) init failed");
    }
    mac_key = key;
    return mac;
  }
};

ThreadContexts& contexts() {
  thread_local ThreadContexts c;
  return c;
}

}  // namespace

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_MD_CTX* ctx = contexts().md;
  if (EVP_DigestInit_ex2(ctx, algorithms().sha256, nullptr) != 1 || EVP_DigestUpdate(ctx, data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(ctx, md, &len) != 1) {
    throw std::runtime_error("SHA-256 failed");
  }
  return to_hex(md, len);
}

std::string hmac_sha256_hex(std::string_view key, std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  std::size_t len = 0;
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_dup(contexts().keyed(key));
  const bool ok = ctx != nullptr && EVP_MAC_update(ctx, bytes(data), data.size()) == 1 &&
                  EVP_MAC_final(ctx, md, &len, sizeof md) == 1;
  EVP_MAC_CTX_free(ctx);
  if (!ok) throw std::runtime_error("HMAC(sha256) failed");
  return to_hex(md, static_cast<unsigned int>(len));
}

std::string random_bytes(std::size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    throw std::runtime_error("RAND_bytes failed");
  }
  return out;
}

namespace {

constexpr unsigned char kSealVersion = 1;
constexpr int kTagBytes = 16;
constexpr unsigned char kZeroNonce[12] = {};

}  // namespace

std::string seal_once(std::string_view key, std::string_view aad, std::string_view plaintext) {
  if (key.size() != kSealKeyBytes) throw std::invalid_argument("seal_once: key must be 32 bytes");
  EVP_CIPHER_CTX* ctx = contexts().cipher;
  std::string out(1 + plaintext.size() + kTagBytes, '\0');
  out[0] = static_cast<char>(kSealVersion);
  auto* body = reinterpret_cast<unsigned char*>(out.data() + 1);
  int len = 0;
  if (EVP_EncryptInit_ex2(ctx, algorithms().gcm, bytes(key), kZeroNonce, nullptr) != 1 ||
      EVP_EncryptUpdate(ctx, nullptr, &len, bytes(aad), static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx, body, &len, bytes(plaintext), static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx, body + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kTagBytes, body + plaintext.size()) != 1) {
    throw std::runtime_error("AES-256-GCM encryption failed");
  }
  return out;
}

std::optional<std::string> open_sealed(std::string_view key, std::string_view aad, std::string_view sealed) {
  if (key.size() != kSealKeyBytes || sealed.size() < 1 + kTagBytes ||
      static_cast<unsigned char>(sealed[0]) != kSealVersion) {
    return std::nullopt;
  }
  const std::size_t n = sealed.size() - 1 - kTagBytes;
  EVP_CIPHER_CTX* ctx = contexts().cipher;
  std::string out(n, '\0');
  auto* plain = reinterpret_cast<unsigned char*>(out.data());
  std::string tag(sealed.substr(1 + n));
  int len = 0;
  if (EVP_DecryptInit_ex2(ctx, algorithms().gcm, bytes(key), kZeroNonce, nullptr) != 1 ||
      EVP_DecryptUpdate(ctx, nullptr, &len, bytes(aad), static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx, plain, &len, bytes(sealed.substr(1)), static_cast<int>(n)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx, plain + len, &len) != 1) {
    return std::nullopt;
  }
  return out;
}

}  // namespace retentiond::crypto

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace retentiond::crypto {

Result<bool> create_file_once(const std::filesystem::path& path, std::string_view contents, const char* what) {
  // Written under a temporary name and linked into place only when whole: a
  // start that fails half-way (a full disk) leaves no empty file behind to
  // fail every later start.
  if (::access(path.c_str(), F_OK) == 0) return false;
  if (errno != ENOENT) return Error::storage(std::string("cannot read ") + what + " " + path.string() + ": " + std::strerror(errno));
  const std::filesystem::path tmp = path.string() + ".new";
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Error::storage(std::string("cannot create ") + what + " " + tmp.string() + ": " + std::strerror(errno));
  bool ok = ::write(fd, contents.data(), contents.size()) == static_cast<ssize_t>(contents.size()) && ::fsync(fd) == 0;
  int saved = errno;
  ::close(fd);
  // link() refuses to replace: two starts racing keep the first file.
  const int link_rc = ok ? ::link(tmp.c_str(), path.c_str()) : -1;
  const int link_errno = errno;
  if (ok && link_rc != 0 && link_errno != EEXIST) {
    ok = false;
    saved = link_errno;
  }
  const bool linked = ok && link_rc == 0;
  ::unlink(tmp.c_str());
  if (!ok) return Error::storage(std::string("cannot write ") + what + " " + path.string() + ": " + std::strerror(saved));
  if (!linked) return false;
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  return true;
}

Result<std::string> read_file(const std::filesystem::path& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::storage(std::string("cannot read ") + what + " " + path.string() + ": " + std::strerror(errno));
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

Result<std::string> load_or_create_secret(const std::filesystem::path& path, bool& created) {
  auto made = create_file_once(path, random_bytes(32), "secret file");
  if (!made) return std::move(made).error();
  created = *made;
  auto key = read_file(path, "secret file");
  if (!key) return key;
  if (key->size() < 32) {
    return Error::storage("secret file " + path.string() + " holds " + std::to_string(key->size()) +
                          " bytes; at least 32 are required");
  }
  return key;
}

}  // namespace retentiond::crypto
