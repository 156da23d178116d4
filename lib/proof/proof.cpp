#include "lib/proof/proof.hpp"

namespace retentiond::proof {

std::string canonical(const nlohmann::json& value) { return value.dump(); }

nlohmann::json sign(nlohmann::json object, const crypto::SigningKey& key) {
  object.erase("signature");
  const std::string signature = key.sign(canonical(object));
  object["signature"] = crypto::base64_encode(signature);
  return object;
}

Verification verify(const nlohmann::json& object, std::string_view public_key) {
  if (!object.is_object()) return {false, "not a JSON object"};
  const auto it = object.find("signature");
  if (it == object.end() || !it->is_string()) return {false, "no \"signature\" string"};
  const auto signature = crypto::base64_decode(it->get<std::string>());
  if (!signature || signature->size() != crypto::kEd25519SignatureBytes) {
    return {false, "\"signature\" is not the base64 of 64 bytes"};
  }
  if (public_key.size() != crypto::kEd25519PublicKeyBytes) return {false, "the public key is not 32 bytes"};
  nlohmann::json rest = object;
  rest.erase("signature");
  std::string message;
  try {
    message = canonical(rest);
  } catch (const nlohmann::json::exception& e) {
    return {false, std::string("cannot be canonicalised: ") + e.what()};
  }
  if (!crypto::ed25519_verify(public_key, message, *signature)) {
    return {false, "the signature does not match the content under this public key"};
  }
  return {true, ""};
}

}  // namespace retentiond::proof
