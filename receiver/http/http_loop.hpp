#pragma once
// The receiver's HTTP front end, plain or over TLS: a few epoll threads (one per core by default)
// own the connections: each accepts, reads, parses, enforces limits and timeouts, runs the
// handler on complete requests and writes the answers. Reads and writes go through a Transport
// (transport.hpp): plain TCP, or TLS (tls.hpp) when the options give a TLS context; everything
// else (the parser, the limits, the timeouts, the connection cap, the drain) is the same for both.
// Over TLS the handshake happens in the connection's first reads and counts inside the first
// request's read timeout. The handler answers at once (a refusal) or later,
// from any thread (after the spool's group commit); blocking work (reply commands) goes to a
// pool of worker threads (run_blocking).
//
// Why not cpp-httplib's server loop: it gives each connection a thread for its whole life, so a
// few hundred slow clients (slowloris) or idle keep-alive connections take every worker, and
// its per-request costs (regex routing, header maps, byte-wise line reads) were most of the
// receiver's HTTP time. Here a connection costs a file descriptor and a small struct until it
// has sent a whole request, and only complete requests reach a worker.
//
// Draining (shutdown()): new connections are still accepted for a short grace period and
// whatever already waits in the listen backlog is served; idle keep-alive connections are
// closed; requests already sent are answered, each with `Connection: close`; run() returns when
// no connection is left. A streamed answer (ResponseStream) is ended by the drain.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/http_parser.hpp"
#include "http/tls.hpp"
#include "tdhook/result.hpp"

namespace tdhook::receiver {

struct HttpRequest {
  HttpRequestHead head;
  std::string body;
  std::string remote;  // peer address, for logs
};

// A response body written over time, from any thread: Server-Sent Events (the inspector). The
// handler answers with HttpResponse::stream set; the loop sends the head with
// `Transfer-Encoding: chunked` (the response's body, if any, as the first chunk), then each
// write() as a chunk, and closes the connection when the stream ends: end(), the peer closing,
// the drain, or a client that stops reading (more than kMaxPending bytes waiting, or nothing
// written for the write timeout).
class ResponseStream {
 public:
  static constexpr std::size_t kMaxPending = 1024 * 1024;

  ResponseStream() = default;
  ResponseStream(const ResponseStream&) = delete;
  ResponseStream& operator=(const ResponseStream&) = delete;

  // Queues `data` as one chunk (empty: nothing). False once the stream is over; then nothing
  // more is sent.
  bool write(std::string_view data);
  // The last chunk; the connection closes after it. Idempotent.
  void end();
  // False once the stream ended or its connection is gone.
  bool open() const;
  // Bytes written and not yet taken by the loop (a producer may wait for 0 before writing more).
  std::size_t pending() const;

  // For the loop: attaches the stream to a connection (`notify` is called, without the
  // stream's lock, when there is something to send); takes what waits; ends it from the loop's
  // side (the connection is gone or closing).
  void attach(std::function<void()> notify);
  struct Taken {
    std::string data;      // chunks, the last one included once ended
    bool ended = false;    // nothing more will come
    bool aborted = false;  // the client did not read: close without the rest
  };
  Taken take();
  void detach();

 private:
  mutable std::mutex mu_;
  std::string pending_;
  bool ended_ = false;
  bool aborted_ = false;
  bool detached_ = false;
  std::function<void()> notify_;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra fields
  bool close = false;                                        // Connection: close after it
  std::shared_ptr<ResponseStream> stream;                    // a body written over time
};

// Answers one request, exactly once, from any thread.
using Responder = std::function<void(HttpResponse)>;

class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  // On the loop thread, once the head is complete: an answer returned here is sent without
  // reading the body (the connection is then closed if a body was announced). Must be cheap.
  virtual std::optional<HttpResponse> on_head(const HttpRequestHead& head,
                                              std::string_view remote) = 0;
  // On the loop thread, with the complete request: answers through `respond`, now or later
  // (from any thread). Must be quick: blocking work goes to HttpLoop::run_blocking. Must not
  // throw.
  virtual void handle(HttpRequest& request, Responder respond) = 0;
  // A request the loop refused by itself: malformed (400, 414, 431, 501, 505), too large (413)
  // or too slow (408). On the loop thread. The connection is closed after the answer.
  virtual HttpResponse on_error(const HttpError& error, std::string_view remote) = 0;
};

struct HttpLoopOptions {
  std::string host = "127.0.0.1";
  int port = 0;
  HttpLimits limits;
  std::chrono::milliseconds read_timeout{10000};  // a whole head; each read of a body
  std::chrono::milliseconds write_timeout{10000};
  std::chrono::milliseconds keep_alive_timeout{5000};
  std::size_t loops = 0;                // event-loop threads; 0 = one per core
  std::size_t workers = 16;             // threads of run_blocking
  std::size_t max_connections = 10000;  // beyond: accepted and closed at once
  int backlog = 4096;
  // HTTPS: the context for a new connection, asked once per accept (a SIGHUP may swap it; a
  // connection keeps the one it started with). Empty: plain HTTP.
  std::function<std::shared_ptr<const TlsContext>()> tls;
  // HTTPS: called on a loop thread when a TLS handshake fails, with OpenSSL's reason
  // (Transport::handshake_failure). Must be quick.
  std::function<void(std::string_view reason)> on_tls_failure;
};

class HttpLoop {
 public:
  // Binds and listens. invalid_config when the address cannot be bound.
  static Result<std::unique_ptr<HttpLoop>> bind(const HttpLoopOptions& options,
                                                HttpHandler& handler);
  ~HttpLoop();

  int port() const noexcept;
  // Serves until shutdown() and the drain are done. False on a fatal loop error.
  bool run();
  // From any thread (a signal thread): begins the drain; run() returns when it is done.
  void shutdown() noexcept;
  // Open connections right now (for tests and metrics).
  std::size_t connections() const noexcept;
  // Runs `task` on a worker thread (reply commands, anything that may block).
  void run_blocking(std::function<void()> task);

 private:
  struct Impl;
  explicit HttpLoop(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The bytes of a response: status line, Content-Type, Content-Length (a stream:
// Transfer-Encoding: chunked, the body as its first chunk), extra fields, Connection: close when
// asked, the body unless `head_only`.
std::string serialize_response(const HttpResponse& response, bool head_only);

}  // namespace tdhook::receiver
