#pragma once
// Reading a token without verifying it: "what is in this token?", for logs and debugging.
//
// NOTHING HERE VERIFIES ANYTHING. decode_token does not check the signature, the algorithm, the
// claims, the hook or the time: anyone can make a token that decodes. Never decide anything on
// what it returns; a notification is to be trusted only after Verifier::verify (verify.hpp).
//
// The two functions decode with the same strict base64url as the Verifier, so a part that
// decodes here is a part the Verifier could decode. decode_token is all or nothing: a Result
// that is ok holds all three parts, so a caller never checks a part twice. A caller that shows
// what it can of a damaged token (the receiver's inspector shows a token's header when only its
// claims are damaged) splits the token at its dots and calls base64url_decode on each part:
// exactly what decode_token does, part by part.
//
// The signature is no secret, but header, claims and signature together make the token again,
// and a token is as good as the notification for a replay within the Verifier's max_age: log the
// header and the claims, not the signature.

#include <optional>
#include <string>
#include <string_view>

#include "tdhook/result.hpp"

namespace tdhook {

// Strict base64url (RFC 4648 §5) without padding, as JWS (RFC 7515) writes it. nullopt for a
// '=', '+', '/', whitespace or any other character outside the base64url alphabet, a length of
// 4k+1, and non-zero unused bits in the last character (a non-canonical encoding). "" decodes
// to "". Thread-safe.
std::optional<std::string> base64url_decode(std::string_view text);

// The three parts of a compact JWS (header.claims.signature), each decoded from base64url.
// header and claims are the bytes the token holds, normally JSON text, but neither parsed nor
// checked to be JSON or UTF-8; an empty part decodes to "" (the Verifier refuses an empty header
// or empty claims).
struct DecodedToken {
  std::string header;     // e.g. {"alg":"HS256","typ":"JWT"}
  std::string claims;     // the payload: the hook's members, then iat, aud, iss, sub
  std::string signature;  // raw bytes (binary); "" for alg "none"
};

// Decodes `token` WITHOUT VERIFYING IT (see above). token_malformed when it is not exactly three
// parts separated by dots, or when a part is not strict base64url (base64url_decode); the detail
// names the part, never quotes the token. Thread-safe.
Result<DecodedToken> decode_token(std::string_view token);

}  // namespace tdhook
