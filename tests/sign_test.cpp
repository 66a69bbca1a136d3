// The signer against what Tiledesk's own libraries produce: JSON.stringify and jsonwebtoken 8.5.1
// outputs recorded once in tests/fixtures/node/ (see make-node-fixtures.js), compared byte for
// byte. ECDSA and PSS signatures are randomized, so for those the token is checked up to the
// signature and the signature is verified with OpenSSL and with our Verifier.

#include <doctest/doctest.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base64.hpp"
#include "js_json.hpp"
#include "tdhook/sign.hpp"
#include "tdhook/token.hpp"
#include "tdhook/verify.hpp"

namespace {

using tdhook::Algorithm;
using tdhook::ErrorCode;
using tdhook::SigningKey;

const std::string kFixtures = std::string(TDHOOK_SOURCE_DIR) + "/tests/fixtures";

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(read_text(path)); }

std::string key_pem(const std::string& name) { return read_text(kFixtures + "/keys/" + name); }

Algorithm alg_named(const std::string& name) {
  static const std::vector<std::pair<std::string, Algorithm>> names = {
      {"HS256", Algorithm::hs256}, {"RS256", Algorithm::rs256}, {"RS384", Algorithm::rs384},
      {"RS512", Algorithm::rs512}, {"PS256", Algorithm::ps256}, {"ES256", Algorithm::es256},
      {"ES384", Algorithm::es384}};
  for (const auto& [text, alg] : names) {
    if (text == name) return alg;
  }
  FAIL("unknown algorithm " << name);
  return Algorithm::hs256;
}

// The payload and hook of a sample file, as JSON.parse would hand them to Tiledesk's code.
struct SampleParts {
  std::string payload;
  std::string hook;
};

SampleParts sample_parts(const std::string& file) {
  auto doc = tdhook::detail::parse_js_json(read_text(TDHOOK_SOURCE_DIR "/samples/events/" + file));
  REQUIRE(doc.ok());
  const auto* payload = doc->find("payload");
  const auto* hook = doc->find("hook");
  REQUIRE(payload != nullptr);
  REQUIRE(hook != nullptr);
  return {tdhook::detail::stringify_js_json(*payload), tdhook::detail::stringify_js_json(*hook)};
}

std::vector<std::string> split_token(const std::string& token) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (std::size_t dot; (dot = token.find('.', start)) != std::string::npos; start = dot + 1) {
    parts.push_back(token.substr(start, dot - start));
  }
  parts.push_back(token.substr(start));
  return parts;
}

std::string token_of(const std::string& body) {
  return nlohmann::json::parse(body).at("token").get<std::string>();
}

// Checks a JWS signature with OpenSSL directly (not through our code), converting the JOSE
// R||S form of ECDSA back to DER.
bool openssl_verifies(Algorithm alg, const std::string& public_pem, const std::string& token) {
  const auto parts = split_token(token);
  if (parts.size() != 3) return false;
  const auto signature = tdhook::detail::base64url_decode(parts[2]);
  if (!signature) return false;
  const std::string input = parts[0] + "." + parts[1];
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(public_pem.data(), static_cast<int>(public_pem.size())), BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey(
      PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  if (!pkey) return false;
  std::vector<unsigned char> sig(signature->begin(), signature->end());
  const bool ecdsa = alg == Algorithm::es256 || alg == Algorithm::es384;
  if (ecdsa) {
    const std::size_t width = alg == Algorithm::es256 ? 32 : 48;
    if (sig.size() != 2 * width) return false;
    ECDSA_SIG* ec_sig = ECDSA_SIG_new();
    ECDSA_SIG_set0(ec_sig, BN_bin2bn(sig.data(), static_cast<int>(width), nullptr),
                   BN_bin2bn(sig.data() + width, static_cast<int>(width), nullptr));
    unsigned char* der = nullptr;
    const int der_len = i2d_ECDSA_SIG(ec_sig, &der);
    sig.assign(der, der + der_len);
    OPENSSL_free(der);
    ECDSA_SIG_free(ec_sig);
  }
  const EVP_MD* md = alg == Algorithm::rs384 || alg == Algorithm::es384 ? EVP_sha384()
                     : alg == Algorithm::rs512                          ? EVP_sha512()
                                                                        : EVP_sha256();
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_PKEY_CTX* pctx = nullptr;
  if (EVP_DigestVerifyInit(ctx.get(), &pctx, md, nullptr, pkey.get()) != 1) return false;
  if (alg == Algorithm::ps256) {
    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
  }
  return EVP_DigestVerify(ctx.get(), sig.data(), sig.size(),
                          reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
}

std::string public_key_for(const std::string& private_key_file) {
  return private_key_file.rfind("es384", 0) == 0   ? key_pem("es384-public.pem")
         : private_key_file.rfind("es256", 0) == 0 ? key_pem("es256-public.pem")
                                                   : key_pem("rs256-public.pem");
}

struct ManifestEntry {
  std::string file;
  std::string sample;
  SigningKey key;
  bool global = false;
  bool deterministic = true;
  std::string key_file;
};

std::vector<ManifestEntry> manifest_entries(const nlohmann::json& manifest) {
  std::vector<ManifestEntry> entries;
  for (const auto& f : manifest.at("files")) {
    ManifestEntry e;
    e.file = f.at("file").get<std::string>();
    e.sample = f.at("sample").get<std::string>();
    e.global = f.at("global").get<bool>();
    e.deterministic = f.at("deterministic").get<bool>();
    e.key.alg = alg_named(f.at("alg").get<std::string>());
    e.key_file = f.at("key").get<std::string>();
    e.key.material =
        e.key_file == "secret" ? manifest.at("secret").get<std::string>() : key_pem(e.key_file);
    entries.push_back(std::move(e));
  }
  return entries;
}

tdhook::Result<std::string> build_for(const ManifestEntry& entry, std::int64_t timestamp_ms) {
  const auto parts = sample_parts(entry.sample);
  return tdhook::build_notification({parts.payload, parts.hook, timestamp_ms, entry.global},
                                    entry.key);
}

}  // namespace

TEST_SUITE("sign") {
  TEST_CASE("notifications for every sample are byte-identical to what Node's jsonwebtoken makes") {
    const auto manifest = read_json(kFixtures + "/node/manifest.json");
    const auto timestamp = manifest.at("timestamp_ms").get<std::int64_t>();
    int compared = 0;
    for (const auto& entry : manifest_entries(manifest)) {
      if (!entry.deterministic) continue;
      CAPTURE(entry.file);
      const auto body = build_for(entry, timestamp);
      REQUIRE(body.ok());
      CHECK(*body == read_text(kFixtures + "/node/" + entry.file));
      ++compared;
    }
    CHECK(compared >= 15);  // 13 HS256 samples plus the RS256/RS512 global bodies
  }

  TEST_CASE("randomized ECDSA and PSS tokens match Node's up to the signature, which verifies") {
    const auto manifest = read_json(kFixtures + "/node/manifest.json");
    const auto timestamp = manifest.at("timestamp_ms").get<std::int64_t>();
    int compared = 0;
    for (const auto& entry : manifest_entries(manifest)) {
      if (entry.deterministic) continue;
      CAPTURE(entry.file);
      const std::string node_body = read_text(kFixtures + "/node/" + entry.file);
      const auto body = build_for(entry, timestamp);
      REQUIRE(body.ok());
      const auto last_dot = body->rfind('.');
      REQUIRE(last_dot != std::string::npos);
      CHECK(body->substr(0, last_dot) == node_body.substr(0, node_body.rfind('.')));
      const std::string public_pem = public_key_for(entry.key_file);
      CHECK(openssl_verifies(entry.key.alg, public_pem, token_of(*body)));
      CHECK(openssl_verifies(entry.key.alg, public_pem, token_of(node_body)));
      // Two signatures of the same claims differ (random k or salt) and both verify.
      const auto again = build_for(entry, timestamp);
      REQUIRE(again.ok());
      CHECK(token_of(*again) != token_of(*body));
      ++compared;
    }
    CHECK(compared == 3);  // ES256, ES384, PS256
  }

  TEST_CASE("ECDSA signatures are raw R||S of the curve's width, not DER") {
    const std::string hook = R"({"_id":"65ae3debc91f04aa2e3a10fd","event":"lead.create"})";
    for (const auto& [alg, file, width] :
         {std::tuple{Algorithm::es256, "es256-private.pem", 64U},
          std::tuple{Algorithm::es384, "es384-private.pem", 96U}}) {
      CAPTURE(file);
      // Many signatures, so that R or S with leading zero bytes (padding needed) come up.
      for (int i = 0; i < 64; ++i) {
        const auto token = tdhook::sign_token(hook, 1707142867, {alg, key_pem(file)}, true);
        REQUIRE(token.ok());
        const auto parts = split_token(*token);
        REQUIRE(parts.size() == 3);
        const auto header = tdhook::detail::base64url_decode(parts[0]);
        REQUIRE(header.has_value());
        CHECK(*header == std::string(R"({"alg":")") +
                             (alg == Algorithm::es256 ? "ES256" : "ES384") + R"(","typ":"JWT"})");
        const auto signature = tdhook::detail::base64url_decode(parts[2]);
        REQUIRE(signature.has_value());
        CHECK(signature->size() == width);
        CHECK(openssl_verifies(alg, public_key_for(file), *token));
      }
    }
  }

  TEST_CASE("tokens for hooks at the edges of jsonwebtoken's rules match Node, refusals included") {
    const auto cases = read_json(kFixtures + "/node/sign-cases.json");
    for (const auto& c : cases) {
      CAPTURE(c.at("name").get<std::string>());
      SigningKey key{alg_named(c.at("alg").get<std::string>()),
                     c.contains("key_file") ? key_pem(c.at("key_file").get<std::string>())
                                            : c.at("key").get<std::string>()};
      const auto iat = c.at("timestamp_ms").get<std::int64_t>();
      const auto token =
          tdhook::sign_token(c.at("hook").get<std::string>(), iat / 1000 - (iat % 1000 < 0 ? 1 : 0),
                             key, c.at("global").get<bool>());
      if (c.contains("token")) {
        REQUIRE_MESSAGE(token.ok(), token.error().detail);
        CHECK(*token == c.at("token").get<std::string>());
      } else {
        REQUIRE_FALSE(token.ok());
        const auto expected =
            key.material.empty() ? ErrorCode::invalid_config : ErrorCode::invalid_input;
        CHECK(token.error().code == expected);
      }
    }
  }

  TEST_CASE(
      "to_js_json prints what JSON.stringify(JSON.parse(text)) prints, and refuses the same") {
    const auto cases = read_json(kFixtures + "/node/js-json-cases.json");
    REQUIRE(cases.size() > 40);
    for (const auto& c : cases) {
      const auto input = c.at("input").get<std::string>();
      CAPTURE(input);
      const auto out = tdhook::to_js_json(input);
      if (c.contains("output")) {
        REQUIRE_MESSAGE(out.ok(), out.error().detail);
        CHECK(*out == c.at("output").get<std::string>());
      } else {
        REQUIRE_FALSE(out.ok());
        CHECK(out.error().code == ErrorCode::invalid_input);
      }
    }
  }

  TEST_CASE("to_js_json refuses invalid UTF-8 that a JavaScript string could not hold") {
    for (const std::string& bad :
         std::vector<std::string>{"\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xe2\x82\"",
                                  "\"\xf4\x90\x80\x80\"", "\"\x80\"", std::string("\"a\0b\"", 5)}) {
      CAPTURE(bad);
      const auto out = tdhook::to_js_json(bad);
      REQUIRE_FALSE(out.ok());
      CHECK(out.error().code == ErrorCode::invalid_input);
    }
    CHECK(*tdhook::to_js_json("\"\xf0\x9f\x98\x80\xe2\x82\xac\xc3\xa9\"") ==
          "\"\xf0\x9f\x98\x80\xe2\x82\xac\xc3\xa9\"");
  }

  TEST_CASE("nesting is accepted up to 1024 levels and refused beyond, without a crash") {
    const auto nested = [](std::size_t depth) {
      return std::string(depth, '[') + std::string(depth, ']');
    };
    CHECK(*tdhook::to_js_json(nested(1024)) == nested(1024));
    const auto too_deep = tdhook::to_js_json(nested(1025));
    REQUIRE_FALSE(too_deep.ok());
    CHECK(too_deep.error().code == ErrorCode::invalid_input);
    CHECK_FALSE(tdhook::to_js_json(nested(100000)).ok());
    CHECK_FALSE(tdhook::to_js_json(std::string(100000, '{')).ok());
  }

  TEST_CASE("a duplicated key in a big object keeps its first position and its last value") {
    std::string in = "{";
    std::string expected = "{";
    for (int i = 0; i < 40; ++i) {
      in += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
      expected += "\"k" + std::to_string(i) + "\":" + (i == 5 ? "\"last\"" : std::to_string(i));
      expected += i == 39 ? "}" : ",";
    }
    in += "\"k5\":\"last\"}";
    CHECK(*tdhook::to_js_json(in) == expected);
  }

  TEST_CASE("the signer refuses unusable hooks with invalid_input") {
    const SigningKey key{Algorithm::hs256, "secret"};
    for (const std::string hook :
         {R"([{"_id":"a"}])", R"("a")", "null", "{", R"({"event":"x"})", R"({"_id":5})",
          R"({"_id":"a","aud":"x"})", R"({"_id":"a","__proto__":{"iat":1}})"}) {
      CAPTURE(hook);
      const auto token = tdhook::sign_token(hook, 1707142867, key);
      REQUIRE_FALSE(token.ok());
      CHECK(token.error().code == ErrorCode::invalid_input);
    }
    const auto body = tdhook::build_notification({"{\"a\":", R"({"_id":"a"})", 0, false}, key);
    REQUIRE_FALSE(body.ok());
    CHECK(body.error().code == ErrorCode::invalid_input);
    CHECK(body.error().detail.rfind("payload: ", 0) == 0);
  }

  TEST_CASE("the signer refuses empty, malformed or mismatched keys with invalid_config") {
    const std::string hook = R"({"_id":"65ae3debc91f04aa2e3a10fd"})";
    const std::string encrypted_rsa = [] {
      // An encrypted PEM must fail cleanly, not prompt for a passphrase on the terminal.
      const std::string pem = key_pem("rs256-private.pem");
      std::unique_ptr<BIO, decltype(&BIO_free)> in(
          BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
      EVP_PKEY* pkey = PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, nullptr);
      std::unique_ptr<BIO, decltype(&BIO_free)> out(BIO_new(BIO_s_mem()), BIO_free);
      char pass[] = "passphrase";
      PEM_write_bio_PKCS8PrivateKey(out.get(), pkey, EVP_aes_256_cbc(), pass, sizeof pass - 1,
                                    nullptr, nullptr);
      EVP_PKEY_free(pkey);
      char* data = nullptr;
      const long len = BIO_get_mem_data(out.get(), &data);
      return std::string(data, static_cast<std::size_t>(len));
    }();
    REQUIRE(encrypted_rsa.find("ENCRYPTED") != std::string::npos);
    const std::vector<std::pair<Algorithm, std::string>> bad_keys = {
        {Algorithm::hs256, ""},
        {Algorithm::rs256, ""},
        {Algorithm::rs256, "not a pem at all"},
        {Algorithm::rs256, key_pem("rs256-public.pem")},
        {Algorithm::rs256, encrypted_rsa},
        {Algorithm::rs256, key_pem("es256-private.pem")},
        {Algorithm::ps256, key_pem("es256-private.pem")},
        {Algorithm::es256, key_pem("rs256-private.pem")},
        {Algorithm::es256, key_pem("es384-private.pem")},
        {Algorithm::es384, key_pem("es256-private.pem")},
        {Algorithm::es256, key_pem("secp256k1-private.pem")},
        {Algorithm::es256, key_pem("es256-private.pem").substr(0, 100)},
    };
    for (const auto& [alg, material] : bad_keys) {
      CAPTURE(static_cast<int>(alg));
      CAPTURE(material.size());
      const auto token = tdhook::sign_token(hook, 1707142867, {alg, material}, true);
      REQUIRE_FALSE(token.ok());
      CHECK(token.error().code == ErrorCode::invalid_config);
      if (material.size() > 20) {
        // The detail names the problem, never the key.
        CHECK(token.error().detail.find(material.substr(30, 20)) == std::string::npos);
      }
    }
  }

  TEST_CASE("the signer gives the same bodies from several threads at once") {
    const auto parts = sample_parts("request.create.json");
    const SigningKey key{Algorithm::rs256, key_pem("rs256-private.pem")};
    const auto expected = tdhook::build_notification({parts.payload, parts.hook, 1, true}, key);
    REQUIRE(expected.ok());
    std::vector<int> mismatches(4, 0);
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < mismatches.size(); ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 10; ++i) {
          const auto body = tdhook::build_notification({parts.payload, parts.hook, 1, true}, key);
          if (!body.ok() || *body != *expected) ++mismatches[t];
        }
      });
    }
    for (auto& thread : threads) thread.join();
    CHECK(mismatches == std::vector<int>(4, 0));
  }

  TEST_CASE(
      "the Verifier accepts what the signer makes, for subscription secrets and global keys") {
    const auto manifest = read_json(kFixtures + "/node/manifest.json");
    const auto timestamp = manifest.at("timestamp_ms").get<std::int64_t>();
    const std::string secret = manifest.at("secret").get<std::string>();
    for (const auto& entry : manifest_entries(manifest)) {
      CAPTURE(entry.file);
      tdhook::VerifierOptions options;
      options.secrets = {secret};
      if (entry.global) {
        options.global_keys = {{entry.key.alg, public_key_for(entry.key_file)}};
      }
      options.clock = [timestamp] { return timestamp + 1500; };
      auto verifier = tdhook::Verifier::create(std::move(options));
      REQUIRE_MESSAGE(verifier.ok(), verifier.error().detail);
      const auto body = build_for(entry, timestamp);
      REQUIRE(body.ok());
      const auto event = verifier->verify(tdhook::Headers{{"X-Hook-Secret", secret}}, *body);
      REQUIRE_MESSAGE(event.ok(), event.error().detail);
      CHECK(event->hook().event + ".json" == entry.sample);
      CHECK(event->timestamp() == timestamp);
    }
  }
}

namespace {

// HMAC-SHA256 by OpenSSL directly, not through the library.
std::string openssl_hs256(const std::string& key, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t len = 0;
  REQUIRE(EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key.data(), key.size(),
                    reinterpret_cast<const unsigned char*>(data.data()), data.size(), out,
                    sizeof out, &len) != nullptr);
  return std::string(reinterpret_cast<char*>(out), len);
}

const std::string kTokenHook = R"({"_id":"65ae3debc91f04aa2e3a10fd","event":"lead.create",)"
                               R"("id_project":"5b55e806c93dde00143163dd"})";

// What Tiledesk's claims are for kTokenHook issued at `iat`: the hook's members, then iat, aud,
// iss, sub.
std::string claims_for(std::int64_t iat) {
  return R"({"_id":"65ae3debc91f04aa2e3a10fd","event":"lead.create",)"
         R"("id_project":"5b55e806c93dde00143163dd","iat":)" +
         std::to_string(iat) +
         R"(,"aud":"https://tiledesk.com/subscriptions/65ae3debc91f04aa2e3a10fd",)"
         R"("iss":"https://tiledesk.com","sub":"subscription"})";
}

}  // namespace

TEST_SUITE("token") {
  TEST_CASE("decode_token gives a signed token's header, claims and signature bytes") {
    const std::string secret = "0b5e3f0e-1111-4222-8333-444455556666";
    // An iat whose HS256 signature has both '-' and '_' in base64url ('+' and '/' in base64's
    // standard alphabet), so that the decoder's two characters that differ from it are used.
    std::int64_t iat = 1707142867;
    std::string token;
    for (;; ++iat) {
      const auto signed_token = tdhook::sign_token(kTokenHook, iat, {Algorithm::hs256, secret});
      REQUIRE(signed_token.ok());
      token = *signed_token;
      const auto signature = token.substr(token.rfind('.') + 1);
      if (signature.find('-') != std::string::npos && signature.find('_') != std::string::npos)
        break;
      REQUIRE(iat < 1707142867 + 1000);
    }
    CAPTURE(iat);
    const auto decoded = tdhook::decode_token(token);
    REQUIRE_MESSAGE(decoded.ok(), decoded.error().detail);
    CHECK(decoded->header == R"({"alg":"HS256","typ":"JWT"})");
    CHECK(decoded->claims == claims_for(iat));
    // The 32 bytes OpenSSL computes (43 characters, the last one's low 2 bits unused).
    CHECK(decoded->signature == openssl_hs256(secret, token.substr(0, token.rfind('.'))));
    // The parts encode back to the token.
    CHECK(tdhook::detail::base64url_encode(decoded->header) + "." +
              tdhook::detail::base64url_encode(decoded->claims) + "." +
              tdhook::detail::base64url_encode(decoded->signature) ==
          token);
    // Part by part, the same.
    const auto parts = split_token(token);
    REQUIRE(parts.size() == 3);
    CHECK(tdhook::base64url_decode(parts[0]) == std::optional<std::string>(decoded->header));
    CHECK(tdhook::base64url_decode(parts[1]) == std::optional<std::string>(decoded->claims));
    CHECK(tdhook::base64url_decode(parts[2]) == std::optional<std::string>(decoded->signature));
    // The same part in base64's standard alphabet is not base64url.
    std::string standard = parts[2];
    std::replace(standard.begin(), standard.end(), '-', '+');
    std::replace(standard.begin(), standard.end(), '_', '/');
    CHECK_FALSE(tdhook::base64url_decode(standard));
    const auto refused = tdhook::decode_token(parts[0] + "." + parts[1] + "." + standard);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().code == ErrorCode::token_malformed);
    CHECK(refused.error().detail == "the token's signature (part 3) is not base64url");
  }

  TEST_CASE("decode_token verifies nothing: a forged signature and alg none decode too") {
    const auto token = tdhook::sign_token(kTokenHook, 1707142867, {Algorithm::hs256, "one"});
    REQUIRE(token.ok());
    const auto parts = split_token(*token);
    REQUIRE(parts.size() == 3);
    // Another signature of the same length (a forgery) still decodes.
    std::string forged = parts[2];
    forged[0] = forged[0] == 'A' ? 'B' : 'A';
    const auto decoded = tdhook::decode_token(parts[0] + "." + parts[1] + "." + forged);
    REQUIRE(decoded.ok());
    CHECK(decoded->claims == claims_for(1707142867));
    CHECK(decoded->signature == tdhook::base64url_decode(forged));
    CHECK(decoded->signature != openssl_hs256("one", parts[0] + "." + parts[1]));
    // alg none: an empty signature.
    const std::string none_header = R"({"alg":"none","typ":"JWT"})";
    const auto none =
        tdhook::decode_token(tdhook::detail::base64url_encode(none_header) + "." + parts[1] + ".");
    REQUIRE(none.ok());
    CHECK(none->header == none_header);
    CHECK(none->signature.empty());
    // Header and claims that are not JSON are given as they are.
    const auto text = tdhook::decode_token("bm90IGpzb24.AP8.");
    REQUIRE(text.ok());
    CHECK(text->header == "not json");
    CHECK(text->claims == std::string("\0\xff", 2));
    // An ECDSA signature: raw R||S, 64 bytes.
    const auto es256 = tdhook::sign_token(kTokenHook, 1707142867,
                                          {Algorithm::es256, key_pem("es256-private.pem")});
    REQUIRE(es256.ok());
    const auto es = tdhook::decode_token(*es256);
    REQUIRE(es.ok());
    CHECK(es->header == R"({"alg":"ES256","typ":"JWT"})");
    CHECK(es->signature.size() == 64);
  }

  TEST_CASE("decode_token refuses what is not three base64url parts, naming the part") {
    const std::string header = "eyJhbGciOiJIUzI1NiJ9";  // {"alg":"HS256"}
    const std::string claims = "eyJhIjoxfQ";            // {"a":1}
    struct Case {
      std::string token, detail;
    };
    const std::vector<Case> cases = {
        {"", "the token is not three parts separated by dots: it has 1"},
        {header, "the token is not three parts separated by dots: it has 1"},
        {header + "." + claims, "the token is not three parts separated by dots: it has 2"},
        {header + "." + claims + ".c2ln.c2ln",
         "the token is not three parts separated by dots: it has 4"},
        {header + "." + claims + ".c2ln.",
         "the token is not three parts separated by dots: it has 4"},
        // Padding, which base64url in a JWS never has.
        {header + "." + "eyJhIjoxfQ==" + ".c2ln", "the token's claims (part 2) is not base64url"},
        {"eyJhbGciOiJIUzI1NiJ9=." + claims + ".c2ln",
         "the token's header (part 1) is not base64url"},
        // '+' and '/': base64's standard alphabet.
        {header + ".ey+/." + "c2ln", "the token's claims (part 2) is not base64url"},
        // A length of 4k+1 is no encoding of any bytes.
        {header + "." + claims + ".c2lnb", "the token's signature (part 3) is not base64url"},
        {header + "." + claims + ".c2lnc2lnc", "the token's signature (part 3) is not base64url"},
        // Whitespace, and a last character with bits set that no encoder sets.
        {header + " ." + claims + ".c2ln", "the token's header (part 1) is not base64url"},
        {header + "." + "eyJhIjoxfR" + ".c2ln", "the token's claims (part 2) is not base64url"},
    };
    for (const auto& c : cases) {
      CAPTURE(c.token);
      const auto decoded = tdhook::decode_token(c.token);
      REQUIRE_FALSE(decoded.ok());
      CHECK(decoded.error().code == ErrorCode::token_malformed);
      CHECK(decoded.error().detail == c.detail);
    }
    // Empty parts decode to empty text (the Verifier refuses them, the decoder shows them).
    const auto empty = tdhook::decode_token("..");
    REQUIRE(empty.ok());
    CHECK(empty->header.empty());
    CHECK(empty->claims.empty());
    CHECK(empty->signature.empty());
  }

  TEST_CASE("base64url_decode is strict base64url without padding") {
    using tdhook::base64url_decode;
    using Text = std::optional<std::string>;
    CHECK(base64url_decode("eyJhIjoxfQ") == Text("{\"a\":1}"));
    CHECK(base64url_decode("") == Text(""));
    CHECK(base64url_decode("YQ") == Text("a"));
    CHECK(base64url_decode("YWI") == Text("ab"));
    CHECK(base64url_decode("YWJj") == Text("abc"));
    CHECK(base64url_decode("-_8") == Text("\xfb\xff"));
    CHECK(base64url_decode("__--") == Text("\xff\xff\xbe"));
    for (const char* bad :
         {"ey+/", "+_8", "-/8", "YQ==", "YWI=", "eyJhIjoxfQ==", "=", "Y", "YWJjZ", "YWJjZGVmZ",
          "YR", "YWJ", "YW Jj", "YWJj\n", " YWJj", "YW.Jj", "YWJj\xc3\xa9"}) {
      CAPTURE(bad);
      CHECK_FALSE(base64url_decode(bad));
    }
    CHECK_FALSE(base64url_decode(std::string("YW\0j", 4)));
    // Lengths 0 to 299, every byte value.
    std::string bytes;
    for (int i = 0; i < 300; ++i) {
      CAPTURE(i);
      CHECK(base64url_decode(tdhook::detail::base64url_encode(bytes)) == Text(bytes));
      bytes.push_back(static_cast<char>(i * 37 + 11));
    }
  }
}
