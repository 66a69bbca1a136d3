#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "support/files.hpp"
#include "tdhook/verify.hpp"

using tdhook::ErrorCode;
using tdhook::test::read_file;
using tdhook::test::source_dir;

namespace {

nlohmann::json vectors() {
  return nlohmann::json::parse(
      read_file(source_dir() / "tests/fixtures/verify-vectors.json"))["vectors"];
}

tdhook::VerifierOptions options_of(const nlohmann::json& config) {
  tdhook::VerifierOptions o;
  for (const auto& s : config["secrets"]) o.secrets.push_back(s.get<std::string>());
  if (config.contains("global_keys")) {
    for (const auto& k : config["global_keys"]) {
      auto alg = tdhook::algorithm_from_string(k["alg"].get<std::string>());
      REQUIRE(alg);
      o.global_keys.push_back(
          {*alg, k.contains("pem") ? k["pem"].get<std::string>() : k["secret"].get<std::string>()});
    }
  }
  std::int64_t now = config["now_ms"].get<std::int64_t>();
  o.clock = [now] { return now; };
  o.max_age = std::chrono::seconds(config["max_age_s"].get<std::int64_t>());
  if (config.contains("mode"))
    o.mode = *tdhook::verify_mode_from_string(config["mode"].get<std::string>());
  return o;
}

}  // namespace

TEST_SUITE("verify") {
  TEST_CASE("every shared verification vector gives its expected outcome and error code") {
    auto all = vectors();
    REQUIRE(all.size() >= 26);
    for (const auto& v : all) {
      SUBCASE(v["name"].get<std::string>().c_str()) {
        auto verifier = tdhook::Verifier::create(options_of(v["config"]));
        REQUIRE_MESSAGE(verifier.ok(), verifier.error().detail);
        tdhook::Headers headers;
        for (const auto& [name, value] : v["request"]["headers"].items())
          headers.emplace_back(name, value.get<std::string>());
        auto result = verifier->verify(headers, v["request"]["body"].get<std::string>());
        const auto& expect = v["expect"];
        if (expect["ok"].get<bool>()) {
          CHECK_MESSAGE(result.ok(), (result.ok() ? "" : result.error().detail));
        } else {
          REQUIRE_FALSE(result.ok());
          CHECK(tdhook::to_string(result.error().code) == expect["error"].get<std::string>());
        }
      }
    }
  }

  TEST_CASE("a verified event exposes the hook, the timestamp and raw JSON spans of the body") {
    auto all = vectors();
    const auto& v = all[0];
    auto verifier = tdhook::Verifier::create(options_of(v["config"]));
    REQUIRE(verifier.ok());
    std::string body = v["request"]["body"].get<std::string>();
    auto event = verifier->verify(
        std::optional<std::string_view>("56c189c8-33ae-4930-bd98-410a12aa45ce"), body);
    REQUIRE(event.ok());
    CHECK(event->name() == "lead.create");
    CHECK(event->hook().id == "5c879fb4f1ae6600173b8c75");
    CHECK(event->hook().project_id == "5b55e806c93dde00143163dd");
    CHECK(event->hook().target == "http://127.0.0.1:8080/hooks/tiledesk");
    CHECK(event->hook().version == 0);
    CHECK(event->timestamp() == 1764149998500);
    CHECK(event->body() == body);
    CHECK(event->payload_json().substr(0, 33) == R"({"_id":"6921a0b1c2d3e4f5a6b7c8d9")");
    CHECK(event->payload_json().back() == '}');
    CHECK(event->hook_json().front() == '{');
    CHECK(event->hook_json().find("\"event\":\"lead.create\"") != std::string_view::npos);
    CHECK(event->token().substr(0, 20) == "eyJhbGciOiJIUzI1NiIs");
    CHECK(event->verification().describe() == "secret+HS256");
  }

  TEST_CASE("header names are matched case-insensitively") {
    auto v = vectors()[0];
    auto verifier = tdhook::Verifier::create(options_of(v["config"]));
    REQUIRE(verifier.ok());
    std::string body = v["request"]["body"].get<std::string>();
    for (const char* name : {"X-Hook-Secret", "X-HOOK-SECRET", "x-hook-secret"}) {
      tdhook::Headers h{{"Content-Type", "application/json"},
                        {name, "56c189c8-33ae-4930-bd98-410a12aa45ce"}};
      CHECK(verifier->verify(h, body).ok());
    }
    tdhook::Headers h{{"x-hook-secret-x", "56c189c8-33ae-4930-bd98-410a12aa45ce"}};
    auto r = verifier->verify(h, body);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::missing_secret_header);
  }

  TEST_CASE("modes skip the header or the token as documented") {
    auto v = vectors()[0];
    std::string body = v["request"]["body"].get<std::string>();
    SUBCASE("header only accepts a body whose token is garbage") {
      auto o = options_of(v["config"]);
      o.mode = tdhook::VerifyMode::header_only;
      auto verifier = tdhook::Verifier::create(o);
      REQUIRE(verifier.ok());
      std::string tampered = body;
      tampered.replace(tampered.find("\"token\":\"") + 9, 3, "xyz");
      auto r = verifier->verify(
          std::optional<std::string_view>("56c189c8-33ae-4930-bd98-410a12aa45ce"), tampered);
      REQUIRE(r.ok());
      CHECK(r->verification().describe() == "secret");
    }
    SUBCASE("token only needs no header") {
      auto o = options_of(v["config"]);
      o.mode = tdhook::VerifyMode::token_only;
      auto verifier = tdhook::Verifier::create(o);
      REQUIRE(verifier.ok());
      auto r = verifier->verify(std::nullopt, body);
      REQUIRE(r.ok());
      CHECK(r->verification().describe() == "HS256");
    }
  }

  TEST_CASE("bad configurations are refused at creation") {
    SUBCASE("empty secret") {
      tdhook::VerifierOptions o;
      o.secrets = {""};
      auto r = tdhook::Verifier::create(o);
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().code == ErrorCode::invalid_config);
    }
    SUBCASE("no secret at all") {
      auto r = tdhook::Verifier::create(tdhook::VerifierOptions{});
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().code == ErrorCode::invalid_config);
    }
    SUBCASE("a PEM that is not a key") {
      tdhook::VerifierOptions o;
      o.secrets = {"s"};
      o.global_keys = {{tdhook::Algorithm::rs256,
                        "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n"}};
      auto r = tdhook::Verifier::create(o);
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().code == ErrorCode::invalid_config);
    }
    SUBCASE("an RSA key declared as ES256") {
      auto all = vectors();
      std::string pem;
      for (const auto& v : all)
        if (v["name"] == "global_rs256_valid") pem = v["config"]["global_keys"][0]["pem"];
      tdhook::VerifierOptions o;
      o.secrets = {"s"};
      o.global_keys = {{tdhook::Algorithm::es256, pem}};
      auto r = tdhook::Verifier::create(o);
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().code == ErrorCode::invalid_config);
    }
    SUBCASE("a negative max age") {
      tdhook::VerifierOptions o;
      o.secrets = {"s"};
      o.max_age = std::chrono::seconds(-1);
      CHECK_FALSE(tdhook::Verifier::create(o).ok());
    }
  }

  TEST_CASE("error details never contain the secret or the token") {
    for (const auto& v : vectors()) {
      auto verifier = tdhook::Verifier::create(options_of(v["config"]));
      REQUIRE(verifier.ok());
      tdhook::Headers headers;
      for (const auto& [name, value] : v["request"]["headers"].items())
        headers.emplace_back(name, value.get<std::string>());
      auto r = verifier->verify(headers, v["request"]["body"].get<std::string>());
      if (r.ok()) continue;
      CHECK(r.error().detail.find("56c189c8") == std::string::npos);
      CHECK(r.error().detail.find("eyJ") == std::string::npos);
    }
  }
}
