#include "support/http_app.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support/receiver_process.hpp"

namespace tdhook::test {

std::string HttpApp::Seen::header(const std::string& name) const {
  const auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

HttpApp::HttpApp(int port) : server_(std::make_unique<httplib::Server>()) { start(port); }

HttpApp::HttpApp(const std::string& cert, const std::string& key, int port)
    : server_(std::make_unique<httplib::SSLServer>(cert.c_str(), key.c_str())), tls_(true) {
  start(port);
}

void HttpApp::start(int port) {
  if (!server_->is_valid()) return;
  // As apps on Node (whose HTTP server sets noDelay) and most frameworks do: an answer's head
  // and body, written apart, do not wait for the sink's delayed ACK.
  server_->set_tcp_nodelay(true);
  server_->Post(".*",
                [this](const httplib::Request& req, httplib::Response& res) { handle(req, res); });
  if (port == 0) {
    port_ = server_->bind_to_any_port("127.0.0.1");
  } else if (server_->bind_to_port("127.0.0.1", port)) {
    port_ = port;
  }
  if (port_ <= 0) {
    port_ = 0;
    return;
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // listen_after_bind() accepts on the socket bound above: connections made before the thread
  // gets there wait in the backlog. is_running() says when it does.
  (void)poll_until([this] { return server_->is_running(); }, std::chrono::seconds(5));
}

HttpApp::~HttpApp() {
  if (thread_.joinable()) {
    server_->stop();
    thread_.join();
  }
}

std::string HttpApp::url(const std::string& path) const {
  return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) + path;
}

void HttpApp::set_handler(Handler handler) {
  const std::lock_guard lock(mu_);
  handler_ = std::move(handler);
}

std::vector<HttpApp::Seen> HttpApp::requests() const {
  const std::lock_guard lock(mu_);
  return seen_;
}

std::size_t HttpApp::count() const {
  const std::lock_guard lock(mu_);
  return seen_.size();
}

void HttpApp::handle(const httplib::Request& req, httplib::Response& res) {
  Seen seen;
  seen.path = req.path;
  for (const auto& [name, value] : req.params) {
    if (!seen.query.empty()) seen.query += '&';
    seen.query += name + "=" + value;
  }
  seen.headers = req.headers;
  seen.body = req.body;
  Handler handler;
  {
    const std::lock_guard lock(mu_);
    seen_.push_back(std::move(seen));
    handler = handler_;
  }
  if (handler) {
    handler(req, res);
  } else {
    res.set_content("ok", "text/plain");
  }
}

int unused_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  socklen_t len = sizeof addr;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace tdhook::test
