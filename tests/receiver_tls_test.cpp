// The receiver over TLS: a self-signed certificate made for the test with the openssl command.
#include <doctest/doctest.h>
#include <httplib.h>

#include <cstdlib>

#include "support/files.hpp"
#include "support/receiver_client.hpp"
#include "support/receiver_process.hpp"

using namespace tdhook::test;

TEST_SUITE("receiver") {
  TEST_CASE(
      "with --tls-cert and --tls-key the receiver answers over HTTPS and delivers the event") {
    TempDir dir;
    const std::string cert = (dir / "cert.pem").string(), key = (dir / "key.pem").string();
    const std::string make_cert =
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -keyout '" + key +
        "' -out '" + cert + "' 2>/dev/null";
    REQUIRE(std::system(make_cert.c_str()) == 0);
    auto args = receiver_args(dir);
    args.insert(args.end(), {"--tls-cert", cert, "--tls-key", key, "--sink",
                             "file:" + (dir / "events.ndjson").string()});
    ReceiverProcess rx(args);
    REQUIRE(rx.wait_listening());

    httplib::SSLClient client("127.0.0.1", rx.port());
    client.enable_server_certificate_verification(false);
    const std::string body = sign_sample("lead.create", receiver_secret, epoch_ms());
    httplib::Headers headers{{"x-hook-secret", receiver_secret}};
    auto res = client.Post("/", headers, body, "application/json");
    REQUIRE(res);
    CHECK(res->status == 200);
    REQUIRE(poll_until([&] { return count_lines_in(dir / "events.ndjson") == 1; }));
    const auto records = parse_ndjson(read_file(dir / "events.ndjson"));
    REQUIRE(records.size() == 1);
    CHECK(records[0].at("event") == "lead.create");
    CHECK(records[0].at("payload").at("email") == "ada.lovelace@example.org");

    // Plain HTTP to the TLS port is not served.
    httplib::Client plain("127.0.0.1", rx.port());
    auto refused = plain.Post("/", headers, body, "application/json");
    CHECK((!refused || refused->status != 200));
    CHECK(count_lines_in(dir / "events.ndjson") == 1);
  }
}
