// The receiver over TLS, served on its own event loop (issue 16): bursts of keep-alive HTTPS
// connections, slow and never-finished handshakes, certificate reload on SIGHUP, protocol
// versions, ciphers and ALPN. Certificates are made for each test with the openssl command.
// (The plain loop's hostile-client cases run over TLS too: receiver_hostile_test.cpp; SIGTERM
// under an HTTPS load: receiver_load_test.cpp.)
#include <doctest/doctest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <signal.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "support/files.hpp"
#include "support/raw_client.hpp"
#include "support/receiver_client.hpp"
#include "support/receiver_process.hpp"
#include "support/tls_client.hpp"

using namespace tdhook::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

milliseconds elapsed_since(SteadyClock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(SteadyClock::now() - t);
}

std::vector<std::string> tls_args(const TempDir& dir, std::initializer_list<std::string> more) {
  auto args = with_wire(receiver_args(dir), Wire::tls, dir);
  args.insert(args.end(), more);
  return args;
}

// An SSL_CTX freed at the end of the scope.
struct ClientContext {
  SSL_CTX* ctx = new_client_context();
  ~ClientContext() { SSL_CTX_free(ctx); }
  ClientContext() = default;
  ClientContext(const ClientContext&) = delete;
  ClientContext& operator=(const ClientContext&) = delete;
};

// A handshake with `ctx`: the connection (invalid when it failed) and OpenSSL's reason.
struct Handshake {
  Conn conn;
  std::string error;
};
Handshake handshake_with(int port, SSL_CTX* ctx) {
  Handshake out;
  out.conn = Conn(connect_to(port), ctx);
  REQUIRE(out.conn.valid());
  const auto deadline = SteadyClock::now() + 5s;
  while (SteadyClock::now() < deadline) {
    ERR_clear_error();
    const int r = SSL_do_handshake(out.conn.ssl());
    if (r == 1) return out;
    const int why = SSL_get_error(out.conn.ssl(), r);
    if (why != SSL_ERROR_WANT_READ && why != SSL_ERROR_WANT_WRITE) {
      char text[256] = "connection closed";
      if (const auto code = ERR_peek_error()) ERR_error_string_n(code, text, sizeof text);
      out.error = text;
      ERR_clear_error();
      out.conn.reset();
      return out;
    }
    pollfd p{out.conn.fd(), static_cast<short>(why == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
    ::poll(&p, 1, 100);
  }
  out.error = "timed out";
  out.conn.reset();
  return out;
}

std::string peer_common_name(const Conn& conn) {
  X509* cert = SSL_get1_peer_certificate(conn.ssl());
  if (cert == nullptr) return {};
  char name[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, name, sizeof name);
  X509_free(cert);
  return name;
}

// One request on an open connection: the status of its answer (0 when none).
int post_on(Conn& conn, const std::string& request) {
  const auto deadline = SteadyClock::now() + 5s;
  if (!send_all(conn, request, deadline)) return 0;
  std::string text;
  (void)read_until(conn, text, deadline,
                   [](const std::string& t) { return has_complete_response(t); });
  return status_of(text);
}

std::string keep_alive_request(const std::string& body) {
  return tiledesk_request(body, receiver_secret, "");
}

std::vector<std::string> distinct_bodies(int count) {
  std::vector<std::string> bodies;
  const auto ts = epoch_ms();
  for (int i = 0; i < count; ++i)
    bodies.push_back(sign_sample("lead.create", receiver_secret, ts + i));
  return bodies;
}

std::string get_metrics_tls(int port) {
  return body_of(exchange(Wire::tls, port,
                          "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                     .text);
}

// The ClientHello a TLS client would send first (made in memory, never sent by OpenSSL).
std::string client_hello() {
  SSL* ssl = SSL_new(default_client_context());
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, in, out);
  SSL_set_connect_state(ssl);
  (void)SSL_do_handshake(ssl);
  std::string hello;
  char buf[4096];
  for (int n; (n = BIO_read(out, buf, sizeof buf)) > 0;)
    hello.append(buf, static_cast<std::size_t>(n));
  SSL_free(ssl);
  ERR_clear_error();
  return hello;
}

}  // namespace

TEST_SUITE("receiver") {
  TEST_CASE(
      "with --tls-cert and --tls-key the receiver answers over HTTPS and delivers the event") {
    TempDir dir;
    ReceiverProcess rx(tls_args(dir, {"--sink", "file:" + (dir / "events.ndjson").string()}));
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

  TEST_CASE(
      "bursts of 100 and 1000 HTTPS keep-alive notifications are answered in 1 s and 5 s, each "
      "stored once") {
    REQUIRE(raise_fd_limit(4096) >= 1100 + 256);
    TempDir dir;
    const auto events = dir / "events.ndjson";
    ReceiverProcess rx(tls_args(dir, {"--sink", "file:" + events.string()}));
    REQUIRE(rx.wait_listening());
    const auto bodies = distinct_bodies(1100);
    std::vector<std::string> requests;
    for (const auto& body : bodies) requests.push_back(keep_alive_request(body));

    const auto check_burst = [](const Burst& b, const char* what) {
      int ok = 0, kept_open = 0;
      std::map<int, int> statuses;
      for (const auto& text : b.responses) {
        ++statuses[status_of(text)];
        if (status_of(text) == 200) ++ok;
        if (header_of(text, "Connection") != "close") ++kept_open;
      }
      std::string seen;
      for (const auto& [status, n] : statuses)
        seen += std::to_string(status) + "x" + std::to_string(n) + " ";
      CHECK_MESSAGE(ok == static_cast<int>(b.responses.size()), what, ": ", seen);
      CHECK(kept_open == static_cast<int>(b.responses.size()));
      CHECK(count_valid(b.conns) == b.responses.size());
    };
    const std::vector<std::string> first(requests.begin(), requests.begin() + 100);
    auto hundred = burst(rx.port(), Wire::tls, first, 10s);
    check_burst(hundred, "100 at once");
    CHECK(hundred.last_answer < 1000ms);
    // The first hundred stay open (keep-alive) while a thousand more come at once.
    const std::vector<std::string> rest(requests.begin() + 100, requests.end());
    auto thousand = burst(rx.port(), Wire::tls, rest, 20s);
    check_burst(thousand, "1000 at once");
    CHECK(thousand.last_answer < 5000ms);
    MESSAGE("HTTPS keep-alive bursts: 100 answered in ", hundred.last_answer.count(),
            " ms, 1000 in ", thousand.last_answer.count(), " ms");

    REQUIRE(poll_until([&] { return count_lines_in(events) >= bodies.size(); }, 20s));
    std::map<std::int64_t, int> stored;
    for (const auto& record : parse_ndjson(read_file(events))) {
      ++stored[record.at("timestamp").get<std::int64_t>()];
    }
    CHECK(stored.size() == bodies.size());
    int twice = 0;
    for (const auto& [ts, n] : stored) twice += n > 1 ? 1 : 0;
    CHECK(twice == 0);
  }

  TEST_CASE("a ClientHello sent a byte a second is closed at the read timeout, others served") {
    TempDir dir;
    ReceiverProcess rx(tls_args(dir, {"--read-timeout", "3s"}));
    REQUIRE(rx.wait_listening());
    const auto hello = client_hello();
    REQUIRE(hello.size() > 100);

    auto slow = connect_to(rx.port());
    REQUIRE(slow.valid());
    const auto opened = SteadyClock::now();
    std::atomic<bool> closed{false};
    std::atomic<long long> lived_ms{0};
    std::atomic<std::size_t> sent{0};
    std::thread dribbler([&] {
      auto next = SteadyClock::now();
      std::string scratch;
      while (elapsed_since(opened) < 10s) {
        if (SteadyClock::now() >= next && sent < hello.size()) {
          if (send_available(slow.fd(), std::string_view(hello).substr(sent, 1)) == 1) ++sent;
          next += 1s;
        }
        pollfd p{slow.fd(), POLLIN, 0};
        if (::poll(&p, 1, 50) == 1 && read_available(slow.fd(), scratch) != ReadState::open) {
          lived_ms = elapsed_since(opened).count();
          closed = true;
          return;
        }
      }
    });
    // While it dribbles, others complete handshakes and requests at once.
    int served = 0;
    milliseconds slowest{0};
    const auto bodies = distinct_bodies(10);
    for (const auto& body : bodies) {
      const auto ex = exchange(Wire::tls, rx.port(), tiledesk_request(body, receiver_secret), 3s);
      slowest = std::max(slowest, ex.elapsed);
      if (ex.status == 200 && ex.elapsed < 1s) ++served;
    }
    dribbler.join();
    CHECK(served == 10);
    REQUIRE(closed.load());
    CHECK(lived_ms.load() >= 2500);
    CHECK(lived_ms.load() < 5000);
    CHECK(sent.load() < hello.size());
    MESSAGE("slow ClientHello: closed after ", lived_ms.load(), " ms and ", sent.load(), " of ",
            hello.size(), " bytes; slowest other request ", slowest.count(), " ms");
  }

  TEST_CASE("TLS connections that never finish their handshake do not stop others, and close") {
    REQUIRE(raise_fd_limit(4096) >= 600);
    TempDir dir;
    ReceiverProcess rx(tls_args(dir, {"--read-timeout", "4s"}));
    REQUIRE(rx.wait_listening());
    const auto hello = client_hello();
    // TCP connections to the TLS port: a third send nothing, a third part of a ClientHello, a
    // third all of it and never answer the server's flight.
    constexpr std::size_t count = 300;
    const auto opened = SteadyClock::now();
    auto stalled = open_many(
        rx.port(), Wire::plain, count,
        [&](std::size_t i) -> std::string {
          if (i % 3 == 0) return {};
          return i % 3 == 1 ? hello.substr(0, 30) : hello;
        },
        10s);
    REQUIRE(count_valid(stalled) == count);
    int served = 0;
    milliseconds slowest{0};
    for (const auto& body : distinct_bodies(20)) {
      const auto ex = exchange(Wire::tls, rx.port(), tiledesk_request(body, receiver_secret), 3s);
      slowest = std::max(slowest, ex.elapsed);
      if (ex.status == 200 && ex.elapsed < 1s) ++served;
    }
    CHECK_MESSAGE(served == 20, "slowest ", slowest.count(), " ms");
    std::size_t closed = 0;
    const bool all_closed = poll_until(
        [&] {
          closed += reap_closed(stalled);
          return closed == count;
        },
        10s);
    CHECK_MESSAGE(all_closed, closed, " of ", count, " closed by the server");
    const auto took = elapsed_since(opened);
    CHECK(took >= 3500ms);
    CHECK(took < 8000ms);
    MESSAGE(count, " unfinished handshakes closed within ", took.count(),
            " ms (--read-timeout 4s); slowest other request ", slowest.count(), " ms");
  }

  TEST_CASE("SIGHUP loads a new certificate for new connections; a broken one keeps the old") {
    TempDir dir;
    const auto one = make_test_cert(dir, "tdhook-one", "one");
    const auto two = make_test_cert(dir, "tdhook-two", "two");
    const auto live_cert = dir / "live.pem", live_key = dir / "live.key";
    fs::copy_file(one.cert, live_cert);
    fs::copy_file(one.key, live_key);
    auto args = receiver_args(dir);
    args.insert(args.end(), {"--tls-cert", live_cert.string(), "--tls-key", live_key.string()});
    ReceiverProcess rx(args);
    REQUIRE(rx.wait_listening());
    const auto bodies = distinct_bodies(4);

    auto old = connect_wire(rx.port(), Wire::tls);
    REQUIRE(old.valid());
    CHECK(peer_common_name(old) == "tdhook-one");
    CHECK(post_on(old, keep_alive_request(bodies[0])) == 200);

    fs::copy_file(two.cert, live_cert, fs::copy_options::overwrite_existing);
    fs::copy_file(two.key, live_key, fs::copy_options::overwrite_existing);
    rx.signal(SIGHUP);
    std::string seen;
    REQUIRE(poll_until([&] {
      auto c = connect_wire(rx.port(), Wire::tls);
      seen = c.valid() ? peer_common_name(c) : "(no connection)";
      return seen == "tdhook-two";
    }));
    CHECK(rx.stderr_text().find("reloaded secrets, keys, --events and the TLS certificate") !=
          std::string::npos);
    // The connection made before the reload goes on with its own session.
    CHECK(post_on(old, keep_alive_request(bodies[1])) == 200);

    {
      std::ofstream broken(live_cert, std::ios::trunc);
      broken << "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n";
    }
    rx.signal(SIGHUP);
    REQUIRE(poll_until(
        [&] { return rx.stderr_text().find("SIGHUP: reload failed") != std::string::npos; }));
    const auto log = rx.stderr_text();
    const auto failed_line = log.substr(log.find("SIGHUP: reload failed"));
    CHECK(failed_line.substr(0, failed_line.find('\n')).find(live_cert.string()) !=
          std::string::npos);
    auto after = connect_wire(rx.port(), Wire::tls);
    REQUIRE(after.valid());
    CHECK(peer_common_name(after) == "tdhook-two");
    CHECK(post_on(after, keep_alive_request(bodies[2])) == 200);
    CHECK(post_on(old, keep_alive_request(bodies[3])) == 200);
    const auto page = get_metrics_tls(rx.port());
    CHECK(metric(page, R"(tdhook_reloads_total{outcome="ok"})") == 1);
    CHECK(metric(page, R"(tdhook_reloads_total{outcome="failed"})") == 1);

    // Nothing of the keys in the log.
    CHECK(log.find("PRIVATE KEY") == std::string::npos);
    for (const auto& key : {one.key, two.key}) {
      const auto pem = read_file(key);
      const auto line = pem.substr(pem.find('\n') + 1, 40);
      CHECK(log.find(line) == std::string::npos);
    }
  }

  TEST_CASE(
      "TLS 1.2 at least by default with ECDHE and AEAD only, 1.3 only on request, ALPN "
      "http/1.1") {
    TempDir dir;
    ReceiverProcess rx(tls_args(dir, {}));
    REQUIRE(rx.wait_listening());

    SUBCASE("a default client gets TLS 1.3") {
      auto h = handshake_with(rx.port(), default_client_context());
      REQUIRE_MESSAGE(h.conn.valid(), h.error);
      CHECK(SSL_version(h.conn.ssl()) == TLS1_3_VERSION);
      CHECK(post_on(h.conn, keep_alive_request(distinct_bodies(1)[0])) == 200);
    }
    SUBCASE("a TLS 1.2 client gets ECDHE with an AEAD cipher") {
      ClientContext client;
      SSL_CTX_set_max_proto_version(client.ctx, TLS1_2_VERSION);
      auto h = handshake_with(rx.port(), client.ctx);
      REQUIRE_MESSAGE(h.conn.valid(), h.error);
      CHECK(SSL_version(h.conn.ssl()) == TLS1_2_VERSION);
      const std::string cipher = SSL_get_cipher_name(h.conn.ssl());
      CHECK_MESSAGE(cipher.starts_with("ECDHE-"), cipher);
      CHECK_MESSAGE((cipher.find("GCM") != std::string::npos ||
                     cipher.find("CHACHA20-POLY1305") != std::string::npos),
                    cipher);
      CHECK(post_on(h.conn, keep_alive_request(distinct_bodies(1)[0])) == 200);
    }
    SUBCASE("a TLS 1.2 client offering only CBC ciphers is refused") {
      ClientContext client;
      SSL_CTX_set_max_proto_version(client.ctx, TLS1_2_VERSION);
      REQUIRE(
          SSL_CTX_set_cipher_list(client.ctx, "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384"));
      auto h = handshake_with(rx.port(), client.ctx);
      CHECK_FALSE(h.conn.valid());
      CHECK_MESSAGE(h.error.find("handshake failure") != std::string::npos, h.error);
    }
    SUBCASE("a TLS 1.1 client is refused") {
      ClientContext client;
      SSL_CTX_set_security_level(client.ctx, 0);
      SSL_CTX_set_min_proto_version(client.ctx, TLS1_VERSION);
      SSL_CTX_set_max_proto_version(client.ctx, TLS1_1_VERSION);
      REQUIRE(SSL_CTX_set_cipher_list(client.ctx, "DEFAULT:@SECLEVEL=0"));
      auto h = handshake_with(rx.port(), client.ctx);
      CHECK_FALSE(h.conn.valid());
      CHECK_MESSAGE(h.error.find("protocol version") != std::string::npos, h.error);
    }
    SUBCASE("ALPN: http/1.1 is selected among the client's protocols") {
      ClientContext client;
      static const unsigned char offered[] = {2,   'h', '2', 8,   'h', 't',
                                              't', 'p', '/', '1', '.', '1'};
      REQUIRE(SSL_CTX_set_alpn_protos(client.ctx, offered, sizeof offered) == 0);
      auto h = handshake_with(rx.port(), client.ctx);
      REQUIRE_MESSAGE(h.conn.valid(), h.error);
      const unsigned char* selected = nullptr;
      unsigned int length = 0;
      SSL_get0_alpn_selected(h.conn.ssl(), &selected, &length);
      CHECK(std::string(reinterpret_cast<const char*>(selected), length) == "http/1.1");
      CHECK(post_on(h.conn, keep_alive_request(distinct_bodies(1)[0])) == 200);
    }
    SUBCASE("ALPN: a client that offers only h2 is refused") {
      ClientContext client;
      static const unsigned char offered[] = {2, 'h', '2'};
      REQUIRE(SSL_CTX_set_alpn_protos(client.ctx, offered, sizeof offered) == 0);
      auto h = handshake_with(rx.port(), client.ctx);
      CHECK_FALSE(h.conn.valid());
      CHECK_MESSAGE(h.error.find("no application protocol") != std::string::npos, h.error);
    }
  }

  TEST_CASE("--tls-min-version 1.3 refuses a TLS 1.2 client, in a flag or in the config file") {
    TempDir dir;
    const auto cert = make_test_cert(dir);
    std::vector<std::string> args = receiver_args(dir);
    SUBCASE("flag") { args.insert(args.end(), {"--tls-min-version", "1.3"}); }
    SUBCASE("config file") {
      write_file(dir / "receiver.toml", "[receiver]\ntls_min_version = \"1.3\"\n");
      args.insert(args.end(), {"--config", (dir / "receiver.toml").string()});
    }
    args.insert(args.end(), {"--tls-cert", cert.cert.string(), "--tls-key", cert.key.string()});
    ReceiverProcess rx(args);
    REQUIRE(rx.wait_listening());
    ClientContext tls12;
    SSL_CTX_set_max_proto_version(tls12.ctx, TLS1_2_VERSION);
    auto refused = handshake_with(rx.port(), tls12.ctx);
    CHECK_FALSE(refused.conn.valid());
    CHECK_MESSAGE(refused.error.find("protocol version") != std::string::npos, refused.error);
    auto accepted = handshake_with(rx.port(), default_client_context());
    REQUIRE_MESSAGE(accepted.conn.valid(), accepted.error);
    CHECK(SSL_version(accepted.conn.ssl()) == TLS1_3_VERSION);
    CHECK(rx.stderr_text().find(R"("tls_min_version":"1.3")") != std::string::npos);
  }

  TEST_CASE("failed handshakes are counted by reason and logged the 1st, 10th, 100th time") {
    TempDir dir;
    ReceiverProcess rx(tls_args(dir, {"--tls-min-version", "1.3"}));
    REQUIRE(rx.wait_listening());
    ClientContext tls12;
    SSL_CTX_set_max_proto_version(tls12.ctx, TLS1_2_VERSION);
    for (int i = 0; i < 12; ++i) CHECK_FALSE(handshake_with(rx.port(), tls12.ctx).conn.valid());
    // Plain HTTP on the HTTPS port: refused, counted under its own reason.
    for (int i = 0; i < 3; ++i) {
      const auto plain = exchange(rx.port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 5s);
      CHECK(plain.status == 0);
    }
    // A connection closed before it sends anything (a port probe) is no failure.
    { auto probe = connect_to(rx.port()); }

    const auto metrics = get_metrics_tls(rx.port());
    CHECK_MESSAGE(metrics.find("tdhook_tls_handshake_failures_total{reason=\"unsupported "
                               "protocol\"} 12") != std::string::npos,
                  metrics);
    CHECK_MESSAGE(metrics.find("tdhook_tls_handshake_failures_total{reason=\"http request\"} 3") !=
                      std::string::npos,
                  metrics);
    std::size_t total = 0;
    for (std::size_t at = 0;
         (at = metrics.find("\ntdhook_tls_handshake_failures_total{", at)) != std::string::npos;
         ++at) {
      ++total;
    }
    CHECK(total == 2);
    // Logged for the 1st and the 10th of the twelve, and the 1st of the three.
    const auto log = rx.stderr_text();
    std::size_t logged = 0;
    for (std::size_t at = 0; (at = log.find("TLS handshake failed", at)) != std::string::npos;
         ++at) {
      ++logged;
    }
    CHECK(logged == 3);
    CHECK(log.find(R"("reason":"unsupported protocol","times":10)") != std::string::npos);
    CHECK(log.find(R"("reason":"http request","times":1)") != std::string::npos);
  }

  TEST_CASE(
      "a request followed by close_notify on an open TCP connection is answered, then closed") {
    TempDir dir;
    ReceiverProcess rx(tls_args(dir, {}));
    REQUIRE(rx.wait_listening());
    auto conn = connect_wire(rx.port(), Wire::tls);
    REQUIRE(conn.valid());
    const auto started = SteadyClock::now();
    // The request and the close_notify leave in one segment (corked), so that the receiver reads
    // both at once; TCP stays open (no shutdown, no close).
    int cork = 1;
    ::setsockopt(conn.fd(), IPPROTO_TCP, TCP_CORK, &cork, sizeof cork);
    REQUIRE(send_all(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", started + 5s));
    ERR_clear_error();
    CHECK(SSL_shutdown(conn.ssl()) == 0);  // sent; the receiver's not yet read
    cork = 0;
    ::setsockopt(conn.fd(), IPPROTO_TCP, TCP_CORK, &cork, sizeof cork);
    std::string text;
    std::array<char, 4096> buf{};
    bool ended = false;
    while (!ended && SteadyClock::now() < started + 4s) {
      pollfd p{conn.fd(), POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      ERR_clear_error();
      const int n = SSL_read(conn.ssl(), buf.data(), static_cast<int>(buf.size()));
      if (n > 0) {
        text.append(buf.data(), static_cast<std::size_t>(n));
        continue;
      }
      const int why = SSL_get_error(conn.ssl(), n);
      ended = why != SSL_ERROR_WANT_READ && why != SSL_ERROR_WANT_WRITE;
    }
    ERR_clear_error();
    CHECK(status_of(text) == 200);
    CHECK(ended);
    // Well before the keep-alive timeout (5 s) the old code waited for.
    CHECK(elapsed_since(started) < 2s);
  }
}
