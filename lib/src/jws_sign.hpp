#pragma once
// The signature step of JWS compact serialization, as jsonwebtoken 8.5.1 (through jwa) makes it.

#include <string>
#include <string_view>

#include "tdhook/algorithm.hpp"
#include "tdhook/result.hpp"
#include "tdhook/sign.hpp"

namespace tdhook::detail {

// The raw signature bytes of `signing_input` (`<b64 header>.<b64 claims>`) under `key`: an HMAC
// for HS256 (key = the secret's bytes), PKCS#1 v1.5 for RS*, PSS with a digest-sized salt for
// PS256, and for ES* the JOSE form R||S of fixed width (not DER). invalid_config when the key is
// empty, is not a PEM private key, or does not fit the algorithm (an RSA key for ES256, a P-384
// key for ES256, ...). Details never quote the key.
Result<std::string> jws_sign(const SigningKey& key, std::string_view signing_input);

// The name of `alg` in a JWS header ("HS256").
std::string_view jws_alg_name(Algorithm alg) noexcept;

}  // namespace tdhook::detail
