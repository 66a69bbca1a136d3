#pragma once
// How the event loop (http_loop.hpp) reads and writes a connection: plain TCP or TLS over it
// (tls.hpp). One connection path for both: the loop sees bytes in and bytes out, and whether it
// must wait for the socket to become readable or writable before trying again. A transport is
// used by one loop thread at a time; it does not own the descriptor (the loop closes it).

#include <cstddef>
#include <string_view>

namespace tdhook::receiver {

enum class IoStatus {
  done,        // `bytes` were read or written (more than zero)
  want_read,   // nothing now: retry once the socket is readable
  want_write,  // nothing now: retry once the socket is writable (TLS: a handshake record)
  closed,      // the peer ended the connection (EOF, TLS close_notify)
  failed,      // reset, or a TLS protocol error (a failed handshake)
};

struct IoResult {
  IoStatus status = IoStatus::done;
  std::size_t bytes = 0;
  // done: the connection ended right after these bytes (TLS: a close_notify or an error read in
  // the same call). The socket may never be readable again (a client that says close_notify and
  // keeps TCP open), so the end comes with the bytes.
  bool ended = false;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Reads what is available into `buf`, without blocking.
  virtual IoResult read(char* buf, std::size_t size) = 0;
  // Writes a prefix of `data`, without blocking. After want_read/want_write the next write must
  // start with the same bytes (TLS retries the record it already made).
  virtual IoResult write(const char* data, std::size_t size) = 0;
  // Nothing more will be written: TLS says close_notify; then the socket's write side is shut.
  virtual void shutdown_write() = 0;
  // Before the loop closes the descriptor: TLS says close_notify once, when the connection is in
  // a state to (best effort, never blocks). Nothing for plain TCP.
  virtual void close_notify() {}
  // After `failed`: why the TLS handshake failed, in OpenSSL's words ("unsupported protocol",
  // "no shared cipher", "http request" ...); empty when the handshake was done or there is none.
  // Never anything the client sent.
  virtual std::string_view handshake_failure() const { return {}; }
};

// Plain TCP: recv/send on the descriptor.
class PlainTransport final : public Transport {
 public:
  explicit PlainTransport(int fd) noexcept : fd_(fd) {}
  IoResult read(char* buf, std::size_t size) override;
  IoResult write(const char* data, std::size_t size) override;
  void shutdown_write() override;

 private:
  int fd_;
};

}  // namespace tdhook::receiver
