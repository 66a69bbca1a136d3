#pragma once
// The inspector (issue 13): a web page and a JSON API on a port of their own (`--inspect
// HOST:PORT`), served by the receiver's own HTTP loop (http/http_loop.hpp: one event-loop
// thread, a few workers for the answers that read the store; the event streams are chunked
// responses written by one thread for all of them). It shows
// what the Recorder kept and what the Store holds, replays stored events, and streams new
// requests and delivery progress as Server-Sent Events.
//
//   GET  /                             the page (receiver/inspect/web, built into the binary)
//   GET  /api/info                     the receiver's URL, the inspector's settings
//   GET  /api/requests?event=&outcome=&q=&limit=&before=
//                                      newest first; stored events no longer kept in memory
//                                      come from the store ("from_store": true)
//   GET  /api/requests/ID              a request's detail
//   GET  /api/requests/ID/raw          the request as received (secret and token masked)
//   POST /api/requests/ID/replay       a new delivery of a stored event to its sinks
//   GET  /api/stream                   Server-Sent Events: request, update, reset, hello
//   GET|POST /login                    token mode: the token for a session cookie
//
// ID is the inspector's number of a request, or the delivery id of a stored event. Without
// --inspect-token-file only loopback addresses are served, and only to a Host header that names
// loopback (DNS rebinding); with it every request needs `Authorization: Bearer TOKEN` or the
// session cookie /login sets. A request that changes something must come from the page's own
// origin. Errors are JSON: {"ok":false,"error":"code","message":"..."}.

#include <functional>
#include <memory>
#include <string>

#include "base/log.hpp"
#include "inspect/recorder.hpp"
#include "inspect/views.hpp"
#include "store/store.hpp"
#include "tdhook/result.hpp"

namespace tdhook::receiver::inspect {

struct InspectorOptions {
  std::string host = "127.0.0.1";
  int port = 0;            // 0 = any free port
  std::string token_file;  // "" = no token (loopback only)
  ViewContext view;
};

class Inspector {
 public:
  // Reads the token file, binds and starts serving on a thread of its own. invalid_config when
  // the token file cannot be read or is empty, the address is not loopback without a token, or
  // the address cannot be bound. `wake` tells the dispatcher that a replay was stored.
  static Result<std::unique_ptr<Inspector>> start(const InspectorOptions& options,
                                                  Recorder& recorder, Store& store,
                                                  std::function<void()> wake, const Logger& log);
  ~Inspector();  // stop()
  Inspector(const Inspector&) = delete;
  Inspector& operator=(const Inspector&) = delete;

  int port() const noexcept;
  std::string url() const;  // http://HOST:PORT/
  // Ends the event streams, stops serving and joins the thread. Idempotent.
  void stop();

 private:
  struct Impl;
  explicit Inspector(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tdhook::receiver::inspect
