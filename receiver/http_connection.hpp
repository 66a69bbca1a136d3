#pragma once
// The receiver's own connection loop for cpp-httplib's plain-HTTP server.
//
// cpp-httplib 0.11's loop has two habits that hurt a webhook receiver: after a response sent
// without reading the body (a 413 decided from Content-Length) it parses the unread body as the
// next request, reading all of it into memory; and at stop() it closes connections it has
// accepted but not yet served, resetting requests that were already sent. DrainableServer
// replaces the loop (process_and_close_socket) and still uses httplib's request parsing,
// routing and response writing (process_request).
//
// Draining (graceful stop): every response then carries `Connection: close`; an idle keep-alive
// connection is closed, but a request that has already arrived is still served; a connection
// that was accepted is served at least once.

#include <httplib.h>

#include <atomic>

namespace tdhook::receiver {

// Called from a handler: close the connection after this response (the body was not read).
void close_connection_after_response() noexcept;

class DrainableServer : public httplib::Server {
 public:
  void begin_drain() noexcept { draining_.store(true); }
  bool draining() const noexcept { return draining_.load(); }

 private:
  bool process_and_close_socket(socket_t sock) override;
  bool wait_for_request(socket_t sock, bool first) const;

  std::atomic<bool> draining_{false};
};

}  // namespace tdhook::receiver
