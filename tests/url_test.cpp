// parse_url (receiver/http/url.hpp): the one URL reader of the receiver's http sinks and the
// tools' client. The callers' policies on top of it are tested with them (http_sink_test.cpp,
// delivery_test.cpp).
#include "http/url.hpp"

#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

using tdhook::ErrorCode;
using tdhook::receiver::parse_url;

TEST_SUITE("url") {
  TEST_CASE("default ports are filled in and left out of the Host header") {
    const auto http = parse_url("http://Crm.Example");
    REQUIRE(http.ok());
    CHECK(http->scheme == "http");
    CHECK_FALSE(http->tls);
    CHECK(http->host == "crm.example");
    CHECK(http->port == 80);
    CHECK(http->path == "/");
    CHECK(http->host_header == "crm.example");
    CHECK_FALSE(http->has_userinfo);
    CHECK_FALSE(http->has_fragment);

    const auto https = parse_url("HTTPS://crm.example:443/in");
    REQUIRE(https.ok());
    CHECK(https->scheme == "https");
    CHECK(https->tls);
    CHECK(https->port == 443);
    CHECK(https->host_header == "crm.example");

    const auto other = parse_url("https://crm.example:80/in");
    REQUIRE(other.ok());
    CHECK(other->port == 80);
    CHECK(other->host_header == "crm.example:80");
  }

  TEST_CASE("IPv6 addresses lose their brackets in host and keep them in the Host header") {
    const auto v6 = parse_url("http://[::1]:9000/x");
    REQUIRE(v6.ok());
    CHECK(v6->host == "::1");
    CHECK(v6->port == 9000);
    CHECK(v6->host_header == "[::1]:9000");
    const auto mapped = parse_url("https://[::FFFF:127.0.0.1]/");
    REQUIRE(mapped.ok());
    CHECK(mapped->host == "::ffff:127.0.0.1");
    CHECK(mapped->port == 443);
    CHECK(mapped->host_header == "[::ffff:127.0.0.1]");
  }

  TEST_CASE("path and query are kept as written; a query alone gets its /") {
    CHECK(parse_url("http://h?q=1")->path == "/?q=1");
    CHECK(parse_url("http://h/?q=1")->path == "/?q=1");
    CHECK(parse_url("http://h/a/b%20c?x=1&y=%2F")->path == "/a/b%20c?x=1&y=%2F");
    CHECK(parse_url("http://h/caf\xc3\xa9")->path == "/caf\xc3\xa9");  // the caller's business
    const auto frag = parse_url("http://h/p?q#a b");
    REQUIRE(frag.ok());
    CHECK(frag->path == "/p?q");
    CHECK(frag->has_fragment);
    CHECK(frag->fragment == "a b");
    CHECK(parse_url("http://h/#")->has_fragment);
  }

  TEST_CASE("userinfo is split at the last @ and percent-decoded") {
    const auto u = parse_url("http://us%65r:p%40ss%3Aword@h:8080/x@y");
    REQUIRE(u.ok());
    CHECK(u->has_userinfo);
    CHECK(u->user == "user");
    CHECK(u->password == "p@ss:word");
    CHECK(u->host == "h");
    CHECK(u->path == "/x@y");
    const auto raw = parse_url("http://a@b:c%zz@h/");
    REQUIRE(raw.ok());
    CHECK(raw->user == "a@b");
    CHECK(raw->password == "c%zz");  // a malformed escape stays as written
    const auto user_only = parse_url("http://me@h/");
    REQUIRE(user_only.ok());
    CHECK(user_only->has_userinfo);
    CHECK(user_only->user == "me");
    CHECK(user_only->password.empty());
    CHECK(parse_url("http://@h/")->has_userinfo);
  }

  TEST_CASE("bad URLs are refused with the reason") {
    for (const auto& [url, why] : std::vector<std::pair<std::string, std::string>>{
             {"", "not an http:// or https:// URL"},
             {"crm.example/hook", "not an http:// or https:// URL"},
             {"://h/", "not an http:// or https:// URL"},
             {"ftp://h/", "unsupported URL scheme 'ftp'"},
             {"http://", "no host"},
             {"http:///x", "no host"},
             {"http://user:pw@/x", "no host"},
             {"http://:80/x", "no host"},
             {"http://h:/x", "empty port"},
             {"http://[::1]:/x", "empty port"},
             {"http://h:0/", "1..65535"},
             {"http://h:65536/", "1..65535"},
             {"http://h:99999999999999999999/", "1..65535"},
             {"http://h:-1/", "not a number"},
             {"http://h:8o/", "not a number"},
             {"http://h:80:90/", "not a number"},
             {"http://ho$t/", "host name"},
             {"http://::1/", "no host"},
             {"http://[::1/", "closing ]"},
             {"http://[::1]x/", ":PORT after ]"},
             {"http://[]/", "IPv6 address"},
             {"http://[g::1]/", "IPv6 address"},
             {"http://h/a b", "percent-encoded"},
             {"http://h/a\tb", "percent-encoded"},
             {"http://h/?a\x7f", "percent-encoded"},
         }) {
      const auto parsed = parse_url(url);
      REQUIRE_MESSAGE(!parsed.ok(), url);
      CHECK(parsed.error().code == ErrorCode::invalid_input);
      CHECK_MESSAGE(parsed.error().detail.find(why) != std::string::npos, url, ": ",
                    parsed.error().detail);
    }
    CHECK(parse_url("http://h:65535/")->port == 65535);
    CHECK(parse_url("http://h:00080/")->port == 80);
  }
}
