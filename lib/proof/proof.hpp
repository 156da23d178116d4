#pragma once
// Signed statements an auditor can take away (issue 16): erasure receipts
// and audit checkpoints are JSON objects whose `signature` member is the
// Ed25519 signature (base64) of the canonical JSON of the object without it.
//
// Canonical JSON (shared/spec/admin-protocol.md, "Additions (second wave)"):
// UTF-8, object keys sorted by code point, no whitespace, strings escaped
// only where JSON requires — what Python's json.dumps(o, sort_keys=True,
// separators=(",", ":"), ensure_ascii=False) writes. nlohmann::json's dump()
// writes exactly that for the values signed here (strings, integers,
// booleans, null, arrays and objects; no floating-point numbers): its
// objects are std::maps, ordered by the bytes of their keys, which for
// UTF-8 is code-point order, and it escapes only '"', '\\' and control
// characters, as json.dumps does (\b \f \n \r \t, else \u00xx).
//
// Used by the daemon (signing) and by retentionctl (verifying offline,
// with nothing but the public key).

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "lib/crypto/signing.hpp"

namespace retentiond::proof {

// The canonical JSON of `value`. Throws nlohmann::json::type_error on a
// string that is not valid UTF-8 (nothing signed here holds one).
std::string canonical(const nlohmann::json& value);

// `object` with `signature` set to the signature of the rest. A
// `signature` already present is replaced.
nlohmann::json sign(nlohmann::json object, const crypto::SigningKey& key);

struct Verification {
  bool valid = false;
  std::string problem;  // why not, when not valid
};
// Checks `object`'s `signature` against the raw 32-byte `public_key`.
Verification verify(const nlohmann::json& object, std::string_view public_key);

}  // namespace retentiond::proof
