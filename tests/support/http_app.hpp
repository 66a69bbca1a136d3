#pragma once
// An HTTP (or HTTPS) app inside a test: what an http: or forward: sink delivers to. It listens
// on 127.0.0.1 (any port, or one given), on a thread of its own, records every POST it gets
// (before answering it) and answers with a handler that the test may change at any time.
#include <httplib.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tdhook::test {

class HttpApp {
 public:
  struct Seen {
    std::string path;   // without the query
    std::string query;  // "x=1&y=2": the parsed params, sorted by name
    httplib::Headers headers;
    std::string body;
    std::string header(const std::string& name) const;  // "" when absent
  };
  // Answers the request (the default: 200 "ok").
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;

  // Plain HTTP; port 0 = any free port.
  explicit HttpApp(int port = 0);
  // HTTPS with this certificate and key (PEM files).
  HttpApp(const std::string& cert, const std::string& key, int port = 0);
  ~HttpApp();  // stops listening and waits for the handlers that run
  HttpApp(const HttpApp&) = delete;
  HttpApp& operator=(const HttpApp&) = delete;

  // False when the port could not be bound or the server did not start.
  bool running() const { return port_ > 0; }
  int port() const { return port_; }
  std::string url(const std::string& path) const;  // http(s)://127.0.0.1:PORT/path

  void set_handler(Handler handler);
  std::vector<Seen> requests() const;
  std::size_t count() const;

 private:
  void start(int port);
  void handle(const httplib::Request& req, httplib::Response& res);

  std::unique_ptr<httplib::Server> server_;
  bool tls_ = false;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  Handler handler_;
  std::vector<Seen> seen_;
};

// A TCP port on 127.0.0.1 that nothing listens on (bound, then closed at once).
int unused_port();

}  // namespace tdhook::test
