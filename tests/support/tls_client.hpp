#pragma once
// Client connections for the receiver's end-to-end tests, over plain TCP or TLS (the receiver
// serves both on one event loop): the hostile-client and load tests run once per wire. A Conn
// is non-blocking; over TLS the handshake happens inside its first send/read calls (or
// handshake()). Certificates are made for the test with the openssl command (EC P-256: cheap
// handshakes, so a thousand of them fit in a test's time).
#include <poll.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "support/files.hpp"
#include "support/raw_client.hpp"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace tdhook::test {

enum class Wire { plain, tls };
std::string to_string(Wire wire);

struct TestCert {
  std::filesystem::path cert, key;
};
// A self-signed EC P-256 certificate for 127.0.0.1 with subject CN=`common_name`, written to
// `<stem>.pem` and `<stem>.key` in `dir`.
TestCert make_test_cert(const TempDir& dir, const std::string& common_name = "tdhook-test",
                        const std::string& stem = "cert");
// `args` plus --tls-cert/--tls-key of a certificate made in `dir` (over Wire::tls only).
std::vector<std::string> with_wire(std::vector<std::string> args, Wire wire, const TempDir& dir);

// The test client's TLS settings: no certificate verification (self-signed), TLS 1.2 or later
// unless a test makes its own. Owned by the caller.
SSL_CTX* new_client_context();
SSL_CTX* default_client_context();  // shared, never freed

class Conn {
 public:
  Conn() = default;
  Conn(RawSocket socket, Wire wire);     // TLS with default_client_context()
  Conn(RawSocket socket, SSL_CTX* tls);  // TLS with this context
  ~Conn();
  Conn(Conn&& other) noexcept;
  Conn& operator=(Conn&& other) noexcept;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  int fd() const noexcept { return socket_.fd(); }
  bool valid() const noexcept { return socket_.valid(); }
  bool tls() const noexcept { return ssl_ != nullptr; }
  SSL* ssl() const noexcept { return ssl_; }
  void reset() noexcept;

  // Reads what is available now (TLS: decrypted) and appends it. A failed TLS handshake or a
  // TLS error reads as `reset`.
  ReadState read_available(std::string& into);
  // Sends as much of `data` as goes now: the bytes sent (0: try again later with the same
  // bytes), -1 when the peer is gone or TLS failed.
  long send_available(std::string_view data);
  // Over TLS: advances the handshake; 1 done, 0 in progress, -1 failed. Plain: 1.
  int handshake_step();
  // What poll() should wait for before the next call (TLS: what the last call asked).
  short wanted() const noexcept { return wanted_; }
  // Completes the TLS handshake before `deadline`; true at once for plain.
  bool handshake(std::chrono::steady_clock::time_point deadline);

 private:
  long ssl_failure(int ret);
  RawSocket socket_;
  SSL* ssl_ = nullptr;
  short wanted_ = POLLIN;
};

// Connects (and over TLS completes the handshake) within `timeout`; invalid on failure.
Conn connect_wire(int port, Wire wire, std::chrono::milliseconds timeout = std::chrono::seconds(5));
// A connection on its way (TCP connect in progress): drive it with pump_connect.
Conn connect_started(int port, Wire wire);

bool send_all(Conn& conn, std::string_view data, std::chrono::steady_clock::time_point deadline);
// Reads until `done(text)` holds, EOF, reset or `deadline`.
ReadState read_until(Conn& conn, std::string& text, std::chrono::steady_clock::time_point deadline,
                     const std::function<bool(const std::string&)>& done);

// exchange() of raw_client.hpp over either wire.
Exchange exchange(Wire wire, int port, std::string_view request,
                  std::chrono::milliseconds timeout = std::chrono::seconds(5));

// Opens `count` connections at once from one poll loop; each, once connected (and its TLS
// handshake done), sends `first_bytes(i)` (may be empty). Those whose connect fails are left
// invalid; those the server closes during the handshake stay valid (reap_closed sees them).
std::vector<Conn> open_many(int port, Wire wire, std::size_t count,
                            const std::function<std::string(std::size_t)>& first_bytes,
                            std::chrono::milliseconds timeout);
// How many of `conns` the server has closed by now; those are released.
std::size_t reap_closed(std::vector<Conn>& conns);
std::size_t count_valid(const std::vector<Conn>& conns);

// Sends `requests[i]` on connection i, all at once from one poll loop, and reads one response
// on each; the connections stay open until every one answered or `timeout`. Returns each
// response's text ("" when none) and the time from the start to the last complete answer.
struct Burst {
  std::vector<std::string> responses;
  std::chrono::milliseconds last_answer{0};
  std::vector<Conn> conns;  // still open, for the caller to close
};
Burst burst(int port, Wire wire, const std::vector<std::string>& requests,
            std::chrono::milliseconds timeout);

}  // namespace tdhook::test
