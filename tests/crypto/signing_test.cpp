// Ed25519 signing, base64 and signed JSON objects (lib/crypto/signing.hpp,
// lib/proof/proof.hpp). Expected values come from RFC 8032 and RFC 4648,
// not from the code under test.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "lib/crypto/signing.hpp"
#include "lib/proof/proof.hpp"
#include "tests/support/daemon_process.hpp"

namespace retentiond::crypto {
namespace {

std::string unhex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

// RFC 8032, section 7.1, TEST 1 (the empty message).
const std::string kSeed = unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
const std::string kPublic = unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
const std::string kSignature = unhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");

// The seed as a PKCS#8 PEM file (RFC 8410: a fixed 16-byte prefix).
std::string pem_of_seed(const std::string& seed) {
  return "-----BEGIN PRIVATE KEY-----\n" + base64_encode(unhex("302e020100300506032b657004220420") + seed) +
         "\n-----END PRIVATE KEY-----\n";
}

TEST(Base64, EncodesAndDecodesTheRfc4648Vectors) {
  const std::pair<const char*, const char*> vectors[] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                                                         {"foo", "Zm9v"},  {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(base64_encode(plain), encoded);
    EXPECT_EQ(base64_decode(encoded), std::optional<std::string>(plain));
  }
}

TEST(Base64, RejectsWhatIsNotCanonicalPaddedBase64) {
  for (const char* bad : {"Zm9vYmF", "Zm9v YmFy", "Zm9=", "Zm9vYmFy\n", "Zm!v", "====", "Zg="}) {
    EXPECT_EQ(base64_decode(bad), std::nullopt) << bad;
  }
}

TEST(SigningKey, ReproducesTheRfc8032TestVectorFromAPemFile) {
  testing::TempDir dir;
  const auto path = dir.path() / "signing.key";
  std::ofstream(path) << pem_of_seed(kSeed);
  std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  bool created = true;
  auto key = SigningKey::load_or_create(path, created);
  ASSERT_TRUE(key) << key.error().message;
  EXPECT_FALSE(created);
  EXPECT_EQ(key->public_key(), kPublic);
  EXPECT_EQ(key->sign(""), kSignature);
  EXPECT_TRUE(ed25519_verify(kPublic, "", kSignature));
  EXPECT_FALSE(ed25519_verify(kPublic, "x", kSignature));
  std::string flipped = kSignature;
  flipped[10] = static_cast<char>(flipped[10] ^ 1);
  EXPECT_FALSE(ed25519_verify(kPublic, "", flipped));
  EXPECT_FALSE(ed25519_verify(kPublic.substr(1), "", kSignature));
  EXPECT_FALSE(ed25519_verify(kPublic, "", kSignature.substr(1)));
}

TEST(SigningKey, IsCreatedPrivateOnceAndKeptAfterwards) {
  testing::TempDir dir;
  const auto path = dir.path() / "signing.key";
  bool created = false;
  auto first = SigningKey::load_or_create(path, created);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_TRUE(created);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto second = SigningKey::load_or_create(path, created);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_FALSE(created);
  EXPECT_EQ(second->public_key(), first->public_key());
  EXPECT_TRUE(ed25519_verify(first->public_key(), "m", second->sign("m")));
}

TEST(SigningKey, AFileWithoutAnEd25519KeyIsRefused) {
  testing::TempDir dir;
  const auto path = dir.path() / "signing.key";
  std::ofstream(path) << "not a key\n";
  std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  bool created = false;
  auto key = SigningKey::load_or_create(path, created);
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().reason, "storage_error");
  EXPECT_NE(key.error().message.find("holds no Ed25519 private key"), std::string::npos) << key.error().message;
  // An EC key is not accepted either: only Ed25519 signs receipts.
  const auto ec = testing::run_command("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " +
                                        path.string() + " 2>&1");
  ASSERT_EQ(ec.exit_code, 0) << ec.output;
  std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  auto ec_key = SigningKey::load_or_create(path, created);
  ASSERT_FALSE(ec_key);
  EXPECT_NE(ec_key.error().message.find("holds no Ed25519 private key"), std::string::npos) << ec_key.error().message;
}

TEST(SigningKey, AKeyOthersMayReadIsRefused) {
  testing::TempDir dir;
  const auto path = dir.path() / "signing.key";
  std::ofstream(path) << pem_of_seed(kSeed);
  std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
                                         std::filesystem::perms::group_read);
  bool created = false;
  auto key = SigningKey::load_or_create(path, created);
  ASSERT_FALSE(key);
  EXPECT_NE(key.error().message.find("has mode 0640: others may read it"), std::string::npos) << key.error().message;
  std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  EXPECT_TRUE(SigningKey::load_or_create(path, created));
}

TEST(SignedObject, CanonicalJsonIsSortedCompactAndKeepsUtf8) {
  const nlohmann::json o = {{"b", 1}, {"a", {{"é", "x\ny"}, {"Z", nullptr}}}, {"c", {"q\"", "\\"}}};
  EXPECT_EQ(proof::canonical(o), "{\"a\":{\"Z\":null,\"é\":\"x\\ny\"},\"b\":1,\"c\":[\"q\\\"\",\"\\\\\"]}");
}

TEST(SignedObject, VerifiesWhatWasSignedAndNothingElse) {
  const SigningKey key = SigningKey::generate();
  const nlohmann::json signed_object = proof::sign({{"seq", 3}, {"hash", "ab"}, {"at", "2026-01-01T00:00:00Z"}}, key);
  EXPECT_TRUE(proof::verify(signed_object, key.public_key()).valid);
  nlohmann::json changed = signed_object;
  changed["seq"] = 4;
  EXPECT_FALSE(proof::verify(changed, key.public_key()).valid);
  nlohmann::json added = signed_object;
  added["extra"] = true;
  EXPECT_FALSE(proof::verify(added, key.public_key()).valid);
  EXPECT_FALSE(proof::verify(signed_object, SigningKey::generate().public_key()).valid);
  nlohmann::json unsigned_object = signed_object;
  unsigned_object.erase("signature");
  EXPECT_EQ(proof::verify(unsigned_object, key.public_key()).problem, "no \"signature\" string");
  nlohmann::json garbled = signed_object;
  garbled["signature"] = "abc";
  EXPECT_FALSE(proof::verify(garbled, key.public_key()).valid);
}

}  // namespace
}  // namespace retentiond::crypto
