#pragma once
// Building notifications exactly as Tiledesk does, for the simulator, `tdhook sign`/`send` and
// tests.
//
// Tiledesk serializes with JSON.stringify (compact, keys in insertion order, non-ASCII raw) and
// signs with jsonwebtoken 8.5.1: header {"alg":"HS256","typ":"JWT"}, claims = the hook's members
// in order, then iat, aud, iss, sub. The functions here reproduce that to the byte, given the
// same inputs and clock. All are thread-safe.

#include <cstdint>
#include <string>
#include <string_view>

#include "tdhook/algorithm.hpp"
#include "tdhook/result.hpp"

namespace tdhook {

// The key a token is signed with: for HS* the secret text, for RS*, ES*, PS256 a PEM private
// key.
struct SigningKey {
  Algorithm alg = Algorithm::hs256;
  std::string material;
};

// Re-serializes JSON text as JSON.stringify would print JSON.parse of it: compact, member order
// kept, strings escaped as JavaScript does, numbers printed as JavaScript prints them.
// invalid_input if `json` is not valid JSON.
Result<std::string> to_js_json(std::string_view json);

// The JWT for `hook_json` (a JSON object, the hook as sent), issued at `iat_seconds`.
// aud is https://tiledesk.com/subscriptions/<hook._id>, or https://tiledesk.com when `global`.
// invalid_input for a hook that is not an object, lacks a string _id, has a __proto__ member,
// already has aud/iss/sub, or has a non-numeric iat/exp/nbf (as jsonwebtoken refuses); a numeric
// iat is kept in place as jsonwebtoken does (0 is replaced by iat_seconds). invalid_config for
// an unusable key.
Result<std::string> sign_token(std::string_view hook_json, std::int64_t iat_seconds,
                               const SigningKey& key, bool global = false);

struct NotificationInput {
  std::string_view payload_json;  // any JSON value; re-serialized like JSON.stringify
  std::string_view hook_json;     // the subscription without secret/global
  std::int64_t timestamp_ms = 0;  // Tiledesk's clock; the token's iat is floor(timestamp/1000)
  bool global = false;
};

// The complete body: {"timestamp":…,"payload":…,"hook":…,"token":"…"}.
Result<std::string> build_notification(const NotificationInput& input, const SigningKey& key);

}  // namespace tdhook
