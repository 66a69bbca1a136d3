#pragma once
// The HTTP front of tdhook-receiver: limits, verification, the --events filter, the event
// record, the durable spool, synchronous replies, /healthz and /metrics. Plain HTTP and HTTPS are
// served by the receiver's own event loop (http_loop.hpp), HTTPS with the TLS context of the
// live settings (live.hpp), which SIGHUP may swap.
//
// Per POST on --path: Content-Length > --max-body -> 413 without reading the body;
// Content-Type not application/json -> 415; Verifier::verify (or Event::parse with --no-verify)
// -> 400/401; not in --events -> 200, not stored; Spool::put (blocks until durable) -> 200 with
// the delivery id, 200 for a duplicate, 503 + Retry-After when the spool is full or failing;
// then the --reply command, if any, writes the answer.

#include <memory>
#include <optional>
#include <string>

#include "base/log.hpp"
#include "base/metrics.hpp"
#include "config/config.hpp"
#include "delivery/reply.hpp"
#include "intake/live.hpp"
#include "intake/observer.hpp"
#include "store/store.hpp"
#include "tdhook/result.hpp"
#include "tdhook/verify.hpp"

namespace tdhook::receiver {

struct ServerParts {
  const Config& config;
  const LiveSettings& live;  // the verifier and --events, swapped by SIGHUP
  Store& spool;
  const ReplyRunner& replies;
  Metrics& metrics;
  const Logger& log;
  RequestObserver* observer = nullptr;  // told of every request on --path (the inspector)
};

class HttpServer {
 public:
  // Sets the server up and binds the listening socket (backlog 4096). invalid_config when the
  // address cannot be bound. (The TLS files were loaded into parts.live already.)
  static Result<std::unique_ptr<HttpServer>> start(const ServerParts& parts);
  ~HttpServer();

  int port() const noexcept;  // the bound port (useful with --listen HOST:0)

  // Serves until shutdown(); returns after every accepted connection has been answered.
  // False if the server stopped on an error.
  bool run();

  // Graceful stop, from any thread: stop accepting, answer what was already sent, return.
  void shutdown();

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tdhook::receiver
