#include "lib/crypto/signing.hpp"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <stdexcept>

#include "lib/crypto/crypto.hpp"

namespace retentiond::crypto {
namespace {

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

PkeyPtr generate_ed25519() {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (!key) throw std::runtime_error("cannot generate an Ed25519 key");
  return key;
}

std::string pem_of(EVP_PKEY* key) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    throw std::runtime_error("cannot encode an Ed25519 key");
  }
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

}  // namespace

struct SigningKey::Pkey {
  PkeyPtr key;
};

SigningKey::SigningKey(std::shared_ptr<Pkey> key) : m_key(std::move(key)) {
  std::size_t n = kEd25519PublicKeyBytes;
  m_public.assign(n, '\0');
  if (EVP_PKEY_get_raw_public_key(m_key->key.get(), reinterpret_cast<unsigned char*>(m_public.data()), &n) != 1 ||
      n != kEd25519PublicKeyBytes) {
    throw std::runtime_error("cannot read an Ed25519 public key");
  }
}

SigningKey SigningKey::generate() { return SigningKey(std::make_shared<Pkey>(Pkey{generate_ed25519()})); }

Result<SigningKey> SigningKey::load_or_create(const std::filesystem::path& path, bool& created) {
  created = false;
  if (::access(path.c_str(), F_OK) != 0) {
    auto made = create_file_once(path, pem_of(generate_ed25519().get()), "signing key");
    if (!made) return std::move(made).error();
    created = *made;
  }
  // Whoever can read it can sign in the daemon's name: like ssh, refuse a
  // key others may read.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Error::storage("cannot read signing key " + path.string() + ": " + std::strerror(errno));
  }
  if ((st.st_mode & 0077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Error::storage("signing key " + path.string() + " has mode " + mode +
                          ": others may read it; make it private (chmod 600) and check it was not copied");
  }
  auto pem = read_file(path, "signing key");
  if (!pem) return std::move(pem).error();
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  PkeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!key || EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519) {
    return Error::storage("signing key " + path.string() +
                          " holds no Ed25519 private key in PEM (as `openssl genpkey -algorithm ed25519` writes)");
  }
  return SigningKey(std::make_shared<Pkey>(Pkey{std::move(key)}));
}

std::string SigningKey::sign(std::string_view message) const {
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  std::string signature(kEd25519SignatureBytes, '\0');
  std::size_t n = signature.size();
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, m_key->key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &n, bytes(message), message.size()) != 1 ||
      n != kEd25519SignatureBytes) {
    throw std::runtime_error("Ed25519 signing failed");
  }
  return signature;
}

bool ed25519_verify(std::string_view public_key, std::string_view message, std::string_view signature) {
  if (public_key.size() != kEd25519PublicKeyBytes || signature.size() != kEd25519SignatureBytes) return false;
  PkeyPtr key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, bytes(public_key), public_key.size()));
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!key || !ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) return false;
  return EVP_DigestVerify(ctx.get(), bytes(signature), signature.size(), bytes(message), message.size()) == 1;
}

std::string base64_encode(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes(data), static_cast<int>(data.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out(3 * (text.size() / 4), '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes(text), static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  std::size_t pad = 0;
  if (!text.empty() && text.back() == '=') pad = (text.size() >= 2 && text[text.size() - 2] == '=') ? 2 : 1;
  out.resize(static_cast<std::size_t>(n) - pad);
  // EVP_DecodeBlock skips blanks and accepts some non-canonical forms: only
  // the text that encodes back to itself is accepted.
  if (base64_encode(out) != text) return std::nullopt;
  return out;
}

}  // namespace retentiond::crypto
