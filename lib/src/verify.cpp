// The verifier: the checks of verify.hpp, in their order. Header comparison is constant-time;
// the body is parsed once (envelope.cpp); the token's JSON parts are parsed with the same
// thread-local simdjson parser after every value of the body has been copied out.
#include "tdhook/verify.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>
#include <cmath>

#include "envelope.hpp"
#include "json_util.hpp"
#include "jws.hpp"

namespace tdhook {
namespace detail {

class VerifierState {
 public:
  VerifierOptions options;
  std::vector<std::unique_ptr<VerifyKey>> keys;  // subscription secrets (HS256) first, then global
};

}  // namespace detail

namespace {

using detail::VerifyKey;

bool secret_matches(const std::vector<std::string>& secrets, std::string_view given) {
  // Every configured secret is compared, so the time taken does not tell which one matched.
  bool match = false;
  for (const auto& s : secrets) {
    if (s.size() == given.size() && CRYPTO_memcmp(s.data(), given.data(), s.size()) == 0)
      match = true;
  }
  return match;
}

// Views into the thread's DOM parser: valid until its next parse, and nothing parses between
// read_claims and the last use of its result.
struct Claims {
  std::string_view id, event, project, iss, sub, aud;
  std::optional<double> iat;
  bool aud_is_string = false;
};

// Parses a decoded JWS part: a JSON object without duplicated keys. The object lives in the
// thread's parser until its next parse.
bool parse_object(std::string& json, simdjson::dom::object& obj) {
  json.reserve(json.size() + simdjson::SIMDJSON_PADDING);
  simdjson::dom::element root;
  return !detail::thread_dom_parser().parse(json.data(), json.size(), false).get(root) &&
         !root.get_object().get(obj) && !detail::has_duplicate_key(obj);
}

// Reads the claims the verifier checks; the JSON must be an object without duplicated keys.
std::optional<Claims> read_claims(std::string& json) {
  simdjson::dom::object obj;
  if (!parse_object(json, obj)) return std::nullopt;
  Claims c;
  auto str = [](simdjson::dom::element v, std::string_view& out) {
    std::string_view s;
    if (v.get_string().get(s) == simdjson::SUCCESS) out = s;
  };
  for (auto field : obj) {
    std::string_view k = field.key;
    if (k == "_id")
      str(field.value, c.id);
    else if (k == "event")
      str(field.value, c.event);
    else if (k == "id_project")
      str(field.value, c.project);
    else if (k == "iss")
      str(field.value, c.iss);
    else if (k == "sub")
      str(field.value, c.sub);
    else if (k == "aud") {
      c.aud_is_string = field.value.is_string();
      str(field.value, c.aud);
    } else if (k == "iat") {
      double d;
      if (field.value.get_double().get(d) == simdjson::SUCCESS && std::isfinite(d)) c.iat = d;
    }
  }
  return c;
}

// The JOSE header's `alg`; nullopt when the header is not an acceptable JSON object.
// `crit` names extensions we do not implement, so a header carrying it is refused (RFC
// 7515 4.1.11).
std::optional<std::string> read_alg(std::string& json) {
  simdjson::dom::object obj;
  if (!parse_object(json, obj)) return std::nullopt;
  std::optional<std::string> alg;
  for (auto field : obj) {
    if (field.key == "crit") return std::nullopt;
    if (field.key == "alg") {
      std::string_view s;
      if (field.value.get_string().get(s) != simdjson::SUCCESS) return std::nullopt;
      alg = std::string(s);
    }
  }
  return alg;
}

bool within(std::int64_t now_ms, double then_ms, std::int64_t max_age_s) {
  return std::fabs(static_cast<double>(now_ms) - then_ms) <=
         static_cast<double>(max_age_s) * 1000.0;
}

}  // namespace

Result<Verifier> Verifier::create(VerifierOptions options) {
  auto state = std::make_shared<detail::VerifierState>();
  if (options.max_age.count() < 0) return Error{ErrorCode::invalid_config, "max_age is negative"};
  if (options.issuer.empty() || options.subject.empty() || options.audience_prefix.empty() ||
      options.global_audience.empty())
    return Error{ErrorCode::invalid_config, "issuer, subject and audiences must not be empty"};
  for (std::size_t i = 0; i < options.secrets.size(); ++i) {
    if (options.secrets[i].empty())
      return Error{ErrorCode::invalid_config,
                   "subscription secret #" + std::to_string(i + 1) + " is empty"};
    auto key = VerifyKey::hmac(Algorithm::hs256, options.secrets[i], false);
    if (!key) return std::move(key).error();
    state->keys.push_back(std::move(key).value());
  }
  for (std::size_t i = 0; i < options.global_keys.size(); ++i) {
    const auto& g = options.global_keys[i];
    auto key = g.alg == Algorithm::hs256 ? VerifyKey::hmac(g.alg, g.material, true)
                                         : VerifyKey::public_key(g.alg, g.material);
    if (!key) {
      Error e = std::move(key).error();
      e.detail = "global key #" + std::to_string(i + 1) + ": " + e.detail;
      return e;
    }
    state->keys.push_back(std::move(key).value());
  }
  if (options.mode != VerifyMode::token_only && options.secrets.empty())
    return Error{ErrorCode::invalid_config, "no subscription secret configured"};
  if (options.mode != VerifyMode::header_only && state->keys.empty())
    return Error{ErrorCode::invalid_config, "no secret or global key configured to verify tokens"};
  if (!options.clock) options.clock = system_clock_ms;
  state->options = std::move(options);
  return Verifier(std::move(state));
}

VerifyMode Verifier::mode() const noexcept { return state_->options.mode; }

Result<Event> Verifier::verify(const Headers& headers, std::string_view body) const {
  std::optional<std::string_view> secret;
  for (const auto& [name, value] : headers) {
    if (name.size() == 13 &&
        std::equal(name.begin(), name.end(), "x-hook-secret", [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) == b;
        })) {
      secret = value;
      break;
    }
  }
  return verify(secret, body);
}

Result<Event> Verifier::verify(std::optional<std::string_view> secret_header,
                               std::string_view body) const {
  const auto& opt = state_->options;
  Verification verification;
  // 1. the shared secret
  if (opt.mode != VerifyMode::token_only) {
    if (!secret_header) return Error{ErrorCode::missing_secret_header, "no x-hook-secret header"};
    if (!secret_matches(opt.secrets, *secret_header))
      return Error{ErrorCode::secret_mismatch, "x-hook-secret matches no configured secret"};
    verification.secret = true;
  }
  // 2-3. the body and its envelope
  auto parsed = EventBuilder::parse(body);
  if (!parsed) return parsed;
  Event& event = parsed.value();
  const std::int64_t now = opt.clock();
  const std::int64_t max_age = opt.max_age.count();
  if (opt.mode != VerifyMode::header_only) {
    if (!EventBuilder::has_token(event))
      return Error{ErrorCode::missing_token, "the body has no token"};
    // 4. a well-formed compact JWS
    std::string_view token = event.token();
    // Decoded into this thread's buffers: no allocation once they have grown to a token's size.
    thread_local detail::CompactJws jws;
    if (!detail::split_compact_jws_into(token, jws))
      return Error{ErrorCode::token_malformed,
                   "token is not a compact JWS of three base64url parts"};
    // Tiledesk's own header, byte for byte, needs no parse: it is valid JSON naming HS256.
    auto alg_name = jws.header == R"({"alg":"HS256","typ":"JWT"})"
                        ? std::optional<std::string>("HS256")
                        : read_alg(jws.header);
    if (!alg_name)
      return Error{ErrorCode::token_malformed, "token header is not a valid JOSE header"};
    auto claims = read_claims(jws.claims);
    if (!claims) return Error{ErrorCode::token_malformed, "token claims are not a JSON object"};
    // 5. a key bound to the token's algorithm
    auto alg = algorithm_from_string(*alg_name);
    bool any_key = false;
    if (alg)
      for (const auto& k : state_->keys) any_key |= k->alg() == *alg;
    if (!any_key)
      return Error{ErrorCode::token_alg_not_allowed,
                   "no configured key uses the token's algorithm"};
    // 6. the signature
    const VerifyKey* used = nullptr;
    for (const auto& k : state_->keys) {
      if (k->alg() == *alg && k->verify(jws.signing_input, jws.signature)) {
        used = k.get();
        break;
      }
    }
    if (used == nullptr)
      return Error{ErrorCode::token_bad_signature, "no configured key verifies the token"};
    // 7. Tiledesk's claims
    if (claims->iss != opt.issuer)
      return Error{ErrorCode::token_claims_mismatch, "iss is not " + opt.issuer};
    if (claims->sub != opt.subject)
      return Error{ErrorCode::token_claims_mismatch, "sub is not " + opt.subject};
    const std::string_view aud = claims->aud;
    const bool aud_matches = used->global()
                                 ? aud == opt.global_audience
                                 : aud.size() == opt.audience_prefix.size() + claims->id.size() &&
                                       aud.starts_with(opt.audience_prefix) &&
                                       aud.substr(opt.audience_prefix.size()) == claims->id;
    if (!claims->aud_is_string || !aud_matches || (!used->global() && claims->id.empty()))
      return Error{ErrorCode::token_claims_mismatch,
                   used->global() ? "aud is not the global audience"
                                  : "aud does not name the token's subscription"};
    if (!claims->iat) return Error{ErrorCode::token_claims_mismatch, "iat is missing"};
    // 8. the token describes the body's hook
    const Hook& hook = event.hook();
    if (claims->id != hook.id)
      return Error{ErrorCode::token_hook_mismatch, "token _id differs from hook._id"};
    if (claims->event != hook.event)
      return Error{ErrorCode::token_hook_mismatch, "token event differs from hook.event"};
    if (claims->project != hook.project_id)
      return Error{ErrorCode::token_hook_mismatch, "token id_project differs from hook.id_project"};
    // 9a. the token's age
    if (max_age > 0 && !within(now, *claims->iat * 1000.0, max_age))
      return Error{ErrorCode::stale,
                   "token iat is more than " + std::to_string(max_age) + " s from now"};
    verification.token_alg = used->alg();
    verification.global_key = used->global();
  }
  // 9b. the notification's age
  if (max_age > 0 && !within(now, static_cast<double>(event.timestamp()), max_age))
    return Error{ErrorCode::stale,
                 "timestamp is more than " + std::to_string(max_age) + " s from now"};
  EventBuilder::set_verification(event, verification);
  return parsed;
}

}  // namespace tdhook
