#pragma once
// Verifying a Tiledesk notification: the `x-hook-secret` header and the `token` JWT in the body.
//
// A Verifier is configured once: Verifier::create validates the options and prepares the keys,
// so that verify() only checks. verify() is const and thread-safe: one Verifier may serve every
// thread of a server at once. Copies of a Verifier share its (immutable) keys.
//
// Checks run in this order, and the first failure names the error (see result.hpp):
//   1. x-hook-secret present and equal, in constant time, to a configured secret
//      (missing_secret_header, secret_mismatch)                            [skipped: token_only]
//   2. the body is a JSON object (malformed_body)
//   3. the envelope has its fields with the right types and no duplicated key
//      (malformed_envelope), and a `token` (missing_token)               [token: skipped:
//      header_only]
//   4. the token is a well-formed compact JWS (token_malformed)
//   5. a configured key uses the token's `alg` (token_alg_not_allowed); `none` never does
//   6. one of those keys verifies the signature (token_bad_signature)
//   7. iss, sub and aud are Tiledesk's (token_claims_mismatch): aud is
//      `<audience_prefix><the token's _id claim>` for a subscription secret, `global_audience`
//      for a global key
//   8. the token's _id, event and id_project equal the body's hook (token_hook_mismatch)
//   9. the token's iat and the body's timestamp are within max_age of the clock, in both
//      directions (stale)                                      [iat part skipped: header_only]

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tdhook/algorithm.hpp"
#include "tdhook/event.hpp"
#include "tdhook/result.hpp"

namespace tdhook {

namespace detail {
class VerifierState;
}

enum class VerifyMode { both, header_only, token_only };

// "both", "header", "token" (as `--mode` takes them); nullopt for anything else.
std::optional<VerifyMode> verify_mode_from_string(std::string_view name) noexcept;

// A key for tokens of global subscriptions, bound to one algorithm. For HS256 `material` is the
// secret text; for RS*, ES*, PS256 it is a PEM public key (or certificate).
struct GlobalKey {
  Algorithm alg = Algorithm::hs256;
  std::string material;
};

// Milliseconds since the Unix epoch.
using Clock = std::function<std::int64_t()>;
std::int64_t system_clock_ms() noexcept;

struct VerifierOptions {
  std::vector<std::string> secrets;    // subscription secrets; any may match (rotation)
  std::vector<GlobalKey> global_keys;  // optional
  VerifyMode mode = VerifyMode::both;
  std::chrono::seconds max_age{300};  // 0 = no age check
  Clock clock;                        // empty = system clock
  std::string issuer = "https://tiledesk.com";
  std::string subject = "subscription";
  std::string audience_prefix = "https://tiledesk.com/subscriptions/";
  std::string global_audience = "https://tiledesk.com";
};

// Header name/value pairs as received; names are matched case-insensitively.
using Headers = std::vector<std::pair<std::string, std::string>>;

class Verifier {
 public:
  // Fails with invalid_config when: no secret and no global key is given in a mode that needs
  // one; a secret or key is empty; a PEM does not parse or does not fit its algorithm; a
  // negative max_age; empty issuer/subject/audience.
  static Result<Verifier> create(VerifierOptions options);

  // Verifies a request. On success the Event owns a copy of `body`.
  Result<Event> verify(const Headers& headers, std::string_view body) const;
  // The same, with the x-hook-secret header already looked up (nullopt = absent).
  Result<Event> verify(std::optional<std::string_view> secret_header, std::string_view body) const;

  VerifyMode mode() const noexcept;

 private:
  explicit Verifier(std::shared_ptr<const detail::VerifierState> state)
      : state_(std::move(state)) {}
  std::shared_ptr<const detail::VerifierState> state_;
};

}  // namespace tdhook
