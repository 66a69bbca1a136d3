// Hostile inputs beyond the shared vectors: each must end in a clean error code, never a crash.
// The suite also runs under AddressSanitizer and UndefinedBehaviorSanitizer in CI.
#include <doctest/doctest.h>
#include <openssl/evp.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "base64.hpp"
#include "tdhook/verify.hpp"

using tdhook::ErrorCode;
using tdhook::detail::base64url_encode;

namespace {

const std::string kSecret = "56c189c8-33ae-4930-bd98-410a12aa45ce";
const std::int64_t kNow = 1764150000000;
const std::string kHook =
    R"({"_id":"5c879fb4f1ae6600173b8c75","target":"http://127.0.0.1/","event":"lead.create",)"
    R"("id_project":"5b55e806c93dde00143163dd","createdBy":"u","createdAt":"2025-11-20T10:00:00.000Z",)"
    R"("updatedAt":"2025-11-20T10:00:00.000Z","__v":0})";
const std::string kClaims =
    R"({"_id":"5c879fb4f1ae6600173b8c75","event":"lead.create","id_project":"5b55e806c93dde00143163dd",)"
    R"("iat":1764149998,"aud":"https://tiledesk.com/subscriptions/5c879fb4f1ae6600173b8c75",)"
    R"("iss":"https://tiledesk.com","sub":"subscription"})";

std::string hmac(const std::string& key, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t len = 0;
  EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key.data(), key.size(),
            reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, sizeof out,
            &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string token(const std::string& header, const std::string& claims,
                  const std::string& key = kSecret) {
  std::string input = base64url_encode(header) + "." + base64url_encode(claims);
  return input + "." + base64url_encode(hmac(key, input));
}

std::string body_with(const std::string& tok, const std::string& hook = kHook) {
  return R"({"timestamp":1764149998500,"payload":{"_id":"x","email":"a@b.c"},"hook":)" + hook +
         R"(,"token":")" + tok + "\"}";
}

tdhook::Verifier verifier(std::vector<tdhook::GlobalKey> global = {}) {
  tdhook::VerifierOptions o;
  o.secrets = {kSecret};
  o.global_keys = std::move(global);
  o.clock = [] { return kNow; };
  auto v = tdhook::Verifier::create(o);
  REQUIRE(v.ok());
  return *v;
}

ErrorCode code_of(const std::string& body, const tdhook::Verifier& v = verifier()) {
  auto r = v.verify(std::optional<std::string_view>(kSecret), body);
  if (r.ok()) FAIL("verified unexpectedly");
  return r.error().code;
}

const std::string kHeader = R"({"alg":"HS256","typ":"JWT"})";

}  // namespace

TEST_SUITE("verify.adversarial") {
  TEST_CASE("the well-formed baseline verifies, so every failure below is due to its defect") {
    auto r = verifier().verify(std::optional<std::string_view>(kSecret),
                               body_with(token(kHeader, kClaims)));
    CHECK_MESSAGE(r.ok(), (r.ok() ? "" : r.error().detail));
  }

  TEST_CASE("duplicated keys in the envelope, the hook, the header or the claims are refused") {
    std::string good = token(kHeader, kClaims);
    SUBCASE("envelope") {
      std::string b = body_with(good);
      b.insert(1, R"("timestamp":1,)");
      CHECK(code_of(b) == ErrorCode::malformed_envelope);
    }
    SUBCASE("envelope, a second hook") {
      std::string b = body_with(good);
      b.insert(b.size() - 1, R"(,"hook":{"_id":"other","event":"lead.create","id_project":"p"})");
      CHECK(code_of(b) == ErrorCode::malformed_envelope);
    }
    SUBCASE("hook") {
      std::string hook = kHook;
      hook.insert(1, R"("event":"request.create",)");
      CHECK(code_of(body_with(good, hook)) == ErrorCode::malformed_envelope);
    }
    SUBCASE("header") {
      CHECK(code_of(body_with(token(R"({"alg":"none","alg":"HS256"})", kClaims))) ==
            ErrorCode::token_malformed);
    }
    SUBCASE("claims") {
      std::string claims = kClaims;
      claims.insert(1, R"("_id":"5c879fb4f1ae6600173b8c76",)");
      CHECK(code_of(body_with(token(kHeader, claims))) == ErrorCode::token_malformed);
    }
  }

  TEST_CASE("alg variants other than the exact configured name are not allowed") {
    for (const char* alg :
         {"HS256 ", "hs256", "None", "none", "NONE", "HS384", "HS512", "", "RS256"}) {
      CAPTURE(alg);
      std::string header = std::string(R"({"alg":")") + alg + R"(","typ":"JWT"})";
      CHECK(code_of(body_with(token(header, kClaims))) == ErrorCode::token_alg_not_allowed);
    }
    SUBCASE("alg none with an empty signature") {
      std::string t =
          base64url_encode(R"({"alg":"none","typ":"JWT"})") + "." + base64url_encode(kClaims) + ".";
      CHECK(code_of(body_with(t)) == ErrorCode::token_alg_not_allowed);
    }
    SUBCASE("alg that is not a string") {
      CHECK(code_of(body_with(token(R"({"alg":["HS256"]})", kClaims))) ==
            ErrorCode::token_malformed);
    }
  }

  TEST_CASE("kid is ignored and crit is refused") {
    auto ok = verifier().verify(
        std::optional<std::string_view>(kSecret),
        body_with(token(R"({"alg":"HS256","typ":"JWT","kid":"../../etc/passwd"})", kClaims)));
    CHECK(ok.ok());
    CHECK(code_of(body_with(token(R"({"alg":"HS256","crit":["exp"]})", kClaims))) ==
          ErrorCode::token_malformed);
  }

  TEST_CASE("extra segments, padding and non-canonical base64url are malformed") {
    std::string good = token(kHeader, kClaims);
    CHECK(code_of(body_with(good + ".")) == ErrorCode::token_malformed);
    CHECK(code_of(body_with(good + ".abc")) == ErrorCode::token_malformed);
    CHECK(code_of(body_with(good + "=")) == ErrorCode::token_malformed);
    CHECK(code_of(body_with("." + good)) == ErrorCode::token_malformed);
    std::string plus = good;
    plus[plus.rfind('.') + 1] = '+';
    CHECK(code_of(body_with(plus)) == ErrorCode::token_malformed);
    std::string space = good;
    space.insert(10, " ");
    CHECK(code_of(body_with(space)) == ErrorCode::token_malformed);
    CHECK(code_of(body_with("")) == ErrorCode::token_malformed);
  }

  TEST_CASE("a public key used as an HMAC secret does not verify") {
    // The classic RS256 -> HS256 confusion: the attacker HMACs with the public key's PEM text.
    const std::string pem =
        "-----BEGIN PUBLIC "
        "KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA1y8j5aqP91CMeBxg1HKC\n"
        "2uCbcG1RlzbKWJqlO/oudfJBd5FSGuOuFgeHVLX4urHHPemqIkUgDGYhYw/UPJfg\n"
        "sbxsSjdtdSHWBy9h50vgxQv1t0gbrgC0xrWbMpjAPjJFtlN36U8fzWKh6vwP8cEn\n"
        "LYhzakf0YSoVDn2eHyufQJ+pOspKHYWoszPQ1zPoSMwLdp6fl4H/wNM607M1JRWM\n"
        "4ytmCZJObsFep+amFZIHRj+PPVlwJ0ILUXpruw7CN4cpE1wGnQ3QR5SM+/1kBrn6\n"
        "MuD2O8UNA0PYWWJk/O6qAZjDwZxX20VouAta9qlKUjgZZTGFLXm3N+TpdozBH8iZ\nGwIDAQAB\n"
        "-----END PUBLIC KEY-----\n";
    auto v = verifier({{tdhook::Algorithm::rs256, pem}});
    std::string claims = kClaims;
    claims.replace(
        claims.find("https://tiledesk.com/subscriptions/5c879fb4f1ae6600173b8c75"),
        std::string("https://tiledesk.com/subscriptions/5c879fb4f1ae6600173b8c75").size(),
        "https://tiledesk.com");
    CHECK(code_of(body_with(token(kHeader, claims, pem)), v) == ErrorCode::token_bad_signature);
    CHECK(code_of(body_with(token(R"({"alg":"RS256","typ":"JWT"})", claims, pem)), v) ==
          ErrorCode::token_bad_signature);
  }

  TEST_CASE("a 1 MB token is refused cleanly") {
    std::string big(1 << 20, 'A');
    CHECK(code_of(body_with(big + "." + big + "." + big)) == ErrorCode::token_malformed);
    std::string claims = R"({"pad":")" + std::string(1 << 20, 'x') + "\"," + kClaims.substr(1);
    auto r = verifier().verify(std::optional<std::string_view>(kSecret),
                               body_with(token(kHeader, claims)));
    CHECK(r.ok());  // large but valid: accepted, not crashed
  }

  TEST_CASE("a payload nested 100000 levels deep is malformed, not a stack overflow") {
    std::string deep = std::string(100000, '[') + std::string(100000, ']');
    std::string b = R"({"timestamp":1764149998500,"payload":)" + deep + R"(,"hook":)" + kHook +
                    R"(,"token":")" + token(kHeader, kClaims) + "\"}";
    CHECK(code_of(b) == ErrorCode::malformed_body);
    std::string deep_claims = R"({"x":)" + std::string(100000, '{');
    CHECK(code_of(body_with(token(kHeader, deep_claims))) == ErrorCode::token_malformed);
  }

  TEST_CASE("invalid UTF-8 anywhere in the body is malformed") {
    std::string b = body_with(token(kHeader, kClaims));
    std::string bad = b;
    bad.insert(bad.find("a@b.c"), "\xC3\x28");
    CHECK(code_of(bad) == ErrorCode::malformed_body);
    std::string overlong = b;
    overlong.insert(overlong.find("a@b.c"), "\xC0\xAF");
    CHECK(code_of(overlong) == ErrorCode::malformed_body);
    std::string claims = kClaims;
    claims.insert(claims.find("lead.create"), "\xFF");
    CHECK(code_of(body_with(token(kHeader, claims))) == ErrorCode::token_malformed);
  }

  TEST_CASE("envelope shapes that are not Tiledesk's are malformed_envelope or malformed_body") {
    std::string t = token(kHeader, kClaims);
    CHECK(code_of("") == ErrorCode::malformed_body);
    CHECK(code_of("null") == ErrorCode::malformed_body);
    CHECK(code_of("[]") == ErrorCode::malformed_body);
    CHECK(code_of("{\"a\":1} trailing") == ErrorCode::malformed_body);
    CHECK(code_of(std::string("{\"a\":\0}", 7)) == ErrorCode::malformed_body);
    CHECK(code_of(R"({"timestamp":"1","payload":{},"hook":)" + kHook + R"(,"token":")" + t +
                  "\"}") == ErrorCode::malformed_envelope);
    CHECK(code_of(R"({"timestamp":1.5,"payload":{},"hook":)" + kHook + R"(,"token":")" + t +
                  "\"}") == ErrorCode::malformed_envelope);
    CHECK(code_of(R"({"timestamp":1,"payload":{},"hook":[],"token":")" + t + "\"}") ==
          ErrorCode::malformed_envelope);
    CHECK(code_of(R"({"timestamp":1,"payload":{},"hook":)" + kHook + R"(,"token":42})") ==
          ErrorCode::malformed_envelope);
    CHECK(code_of(R"({"timestamp":1,"hook":)" + kHook + R"(,"token":")" + t + "\"}") ==
          ErrorCode::malformed_envelope);
    std::string no_event = kHook;
    no_event.replace(no_event.find(R"("event":"lead.create",)"), 22, "");
    CHECK(code_of(body_with(t, no_event)) == ErrorCode::malformed_envelope);
  }

  TEST_CASE("claims that are not Tiledesk's are token_claims_mismatch") {
    auto with = [&](const std::string& from, const std::string& to) {
      std::string c = kClaims;
      c.replace(c.find(from), from.size(), to);
      return code_of(body_with(token(kHeader, c)));
    };
    CHECK(with(R"("sub":"subscription")", R"("sub":"bot")") == ErrorCode::token_claims_mismatch);
    CHECK(with(R"("iss":"https://tiledesk.com")", R"("iss":"https://tiledesk.com ")") ==
          ErrorCode::token_claims_mismatch);
    CHECK(with(R"("aud":"https://tiledesk.com/subscriptions/5c879fb4f1ae6600173b8c75")",
               R"("aud":["https://tiledesk.com/subscriptions/5c879fb4f1ae6600173b8c75"])") ==
          ErrorCode::token_claims_mismatch);
    CHECK(with(R"("iat":1764149998,)", "") == ErrorCode::token_claims_mismatch);
    // The global audience is only accepted from a global key.
    CHECK(with(R"("aud":"https://tiledesk.com/subscriptions/5c879fb4f1ae6600173b8c75")",
               R"("aud":"https://tiledesk.com")") == ErrorCode::token_claims_mismatch);
  }

  TEST_CASE("verify is safe to call from many threads at once") {
    auto v = verifier();
    std::string good = body_with(token(kHeader, kClaims));
    std::string bad = body_with(token(kHeader, kClaims, "other"));
    std::atomic<int> ok{0}, rejected{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&] {
        for (int i = 0; i < 500; ++i) {
          if (v.verify(std::optional<std::string_view>(kSecret), good).ok()) ++ok;
          if (!v.verify(std::optional<std::string_view>(kSecret), bad).ok()) ++rejected;
        }
      });
    for (auto& t : threads) t.join();
    CHECK(ok == 2000);
    CHECK(rejected == 2000);
  }
}
