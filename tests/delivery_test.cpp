// The Tiledesk-exact sender (tools/delivery): target parsing, the bytes on the wire, response
// framing, keep-alive, timeouts, and Tiledesk's retry policy measured against real servers on
// 127.0.0.1.
#include "delivery.hpp"

#include <doctest/doctest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/base64.hpp"
#include "http/http_parser.hpp"

using namespace std::chrono_literals;
using tdhook::tools::AttemptResult;
using tdhook::tools::deliver;
using tdhook::tools::DeliveryRequest;
using tdhook::tools::parse_target;
using tdhook::tools::post_once;
using tdhook::tools::RetryPolicy;

namespace {

using Clock = std::chrono::steady_clock;

// A listening socket on 127.0.0.1 whose connections a test handles byte by byte.
class RawServer {
 public:
  using Handler = std::function<void(int fd)>;
  explicit RawServer(Handler handler) : handler_(std::move(handler)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(listen_fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listen_fd_, 16) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { accept_loop(); });
  }
  ~RawServer() {
    stop_ = true;
    thread_.join();
    for (auto& t : workers_) t.join();
    ::close(listen_fd_);
  }
  int port() const { return port_; }
  int accepted() const { return accepted_; }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;  // re-checks stop_ every 20 ms
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      ++accepted_;
      workers_.emplace_back([this, fd] {
        handler_(fd);
        ::close(fd);
      });
    }
  }
  Handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
  std::vector<std::thread> workers_;
};

// Reads one request (head and Content-Length body) from `fd`; empty at EOF. With the receiver's
// strict parser: what tdhook sends must pass it.
std::string read_request(int fd, std::string& pending) {
  char buf[4096];
  while (true) {
    tdhook::receiver::HttpRequestHead head;
    const auto parsed = tdhook::receiver::parse_request_head(pending, {}, head);
    CHECK(parsed.state != tdhook::receiver::HeadParse::State::error);
    if (parsed.state == tdhook::receiver::HeadParse::State::error) return {};
    if (parsed.state == tdhook::receiver::HeadParse::State::complete) {
      const auto end = parsed.consumed + static_cast<std::size_t>(head.content_length);
      if (pending.size() >= end) {
        auto request = pending.substr(0, end);
        pending.erase(0, end);
        return request;
      }
    }
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return {};
    pending.append(buf, static_cast<std::size_t>(n));
  }
}

void send_text(int fd, const std::string& text) {
  ::send(fd, text.data(), text.size(), MSG_NOSIGNAL);
}

class HttpServer {
 public:
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
  explicit HttpServer(Handler handler) {
    server_.Post(".*", std::move(handler));
    port_ = server_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    const auto deadline = Clock::now() + 5s;
    while (!server_.is_running() && Clock::now() < deadline) std::this_thread::yield();
    REQUIRE(server_.is_running());
  }
  ~HttpServer() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
};

// A port nobody listens on: bound once by us, then closed.
int closed_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

double gap_ms(const AttemptResult& before, const AttemptResult& after) {
  return std::chrono::duration<double, std::milli>(after.started - before.finished).count();
}

// Tiledesk's delay before retry k is 2^k s plus a jitter in [0, 1) s: scaled, plus scheduling
// slack. With a fixed jitter the window narrows to that jitter's delay.
void check_gap(double gap, int k, double scale, double jitter_span = 1.0) {
  const double low = 1000.0 * (1 << k) * scale;
  const double high = low + 1000.0 * scale * jitter_span;
  CAPTURE(gap);
  CAPTURE(k);
  CHECK(gap >= low - 0.5);
  CHECK(gap < high + 15.0);
}

}  // namespace

TEST_SUITE("delivery") {
  TEST_CASE(
      "parse_target keeps path and query, drops a default port, and turns userinfo into "
      "Basic auth") {
    auto t = parse_target("http://user:p%40ss@Crm.Example:8080/hooks/tiledesk?x=1#frag");
    REQUIRE(t.ok());
    CHECK(t->scheme == "http");
    CHECK(t->host == "crm.example");
    CHECK(t->port == 8080);
    CHECK(t->path == "/hooks/tiledesk?x=1");
    CHECK(t->host_header == "crm.example:8080");
    CHECK(t->authorization == "Basic dXNlcjpwQHNz");  // user:p@ss
    CHECK(parse_target("http://ab:c@h/")->authorization == "Basic YWI6Yw==");
    CHECK(parse_target("http://u:pwd@h/")->authorization == "Basic dTpwd2Q=");

    auto tls = parse_target("https://crm.example:443");
    REQUIRE(tls.ok());
    CHECK(tls->port == 443);
    CHECK(tls->path == "/");
    CHECK(tls->host_header == "crm.example");
    CHECK(tls->authorization.empty());

    auto v6 = parse_target("http://[::1]:9000?q");
    REQUIRE(v6.ok());
    CHECK(v6->host == "::1");
    CHECK(v6->host_header == "[::1]:9000");
    CHECK(v6->path == "/?q");

    for (const char* bad : {"", "ftp://x/", "http://", "http://host:0/", "http://host:99999/",
                            "http://host:12a/", "crm.example/hook", "http://h/a b"}) {
      CAPTURE(bad);
      CHECK_FALSE(parse_target(bad).ok());
    }
  }

  TEST_CASE("Basic auth's base64: standard alphabet, '=' padding, EVP_DecodeBlock's checks") {
    using tdhook::receiver::base64_decode;
    using tdhook::receiver::base64_encode;
    using Bytes = std::optional<std::string>;
    const std::vector<std::pair<std::string, std::string>> vectors = {
        {"a", "YQ=="},
        {"ab", "YWI="},
        {"abc", "YWJj"},
        {"user:p@ss", "dXNlcjpwQHNz"},
        {"user:password", "dXNlcjpwYXNzd29yZA=="},
        {"\xfb\xff", "+/8="},
        {"\xfb\xef\xbe\xff\xff\xff", "++++////"},
        {std::string("a\0b", 3), "YQBi"},
    };
    for (const auto& [bytes, text] : vectors) {
      CAPTURE(text);
      CHECK(base64_encode(bytes) == text);
      CHECK(base64_decode(text) == Bytes(bytes));
    }
    CHECK(base64_encode("").empty());
    for (const char* bad : {"", "YQ", "YQ=", "YWJjY", "-_8=", "YW_j", "YW\xc3\xa9"}) {
      CAPTURE(bad);
      CHECK_FALSE(base64_decode(bad));
    }
    std::string bytes;
    for (int i = 0; i < 100; ++i) {
      bytes.push_back(static_cast<char>(i * 53 + 7));
      CAPTURE(i);
      CHECK(base64_decode(base64_encode(bytes)) == Bytes(bytes));
    }
  }

  TEST_CASE("headers go on the wire in Tiledesk's order and case") {
    std::mutex mutex;
    std::string captured;
    RawServer server([&](int fd) {
      std::string pending;
      auto request = read_request(fd, pending);
      {
        const std::lock_guard lock(mutex);
        captured = std::move(request);
      }
      send_text(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    });
    DeliveryRequest request;
    request.url = "http://user:p%40ss@127.0.0.1:" + std::to_string(server.port()) + "/wh?x=1";
    request.body = "{\"timestamp\":1,\"payload\":{\"t\":\"é\"}}";
    request.secret = "5f1b0f3e-8c2a-4d6b-9e7f-1a2b3c4d5e6f";
    const auto result = post_once(*parse_target(request.url), request);
    CHECK(result.status == 200);
    CHECK(result.body == "ok");
    const std::lock_guard lock(mutex);
    CHECK(captured ==
          "POST /wh?x=1 HTTP/1.1\r\n"
          "Content-Type: application/json\r\n"
          "x-hook-secret: 5f1b0f3e-8c2a-4d6b-9e7f-1a2b3c4d5e6f\r\n"
          "User-Agent: tiledesk-webhooks\r\n"
          "Origin: http://localhost:3000\r\n"
          "host: 127.0.0.1:" +
              std::to_string(server.port()) +
              "\r\n"
              "authorization: Basic dXNlcjpwQHNz\r\n"
              "accept: application/json\r\n"
              "content-length: 36\r\n"  // bytes, not characters
              "Connection: close\r\n"
              "\r\n"
              "{\"timestamp\":1,\"payload\":{\"t\":\"é\"}}");
  }

  TEST_CASE("chunked, close-delimited and interim responses are read to the end") {
    RawServer server([](int fd) {
      std::string pending;
      const auto request = read_request(fd, pending);
      if (request.find("/chunked") != std::string::npos) {
        send_text(fd,
                  "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: "
                  "chunked\r\nContent-Type: application/json\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}"
                  "\r\n0\r\n\r\n");
      } else {
        send_text(fd, "HTTP/1.0 201 Created\r\n\r\nuntil close");
      }
    });
    DeliveryRequest request;
    request.body = "{}";
    request.url = "http://127.0.0.1:" + std::to_string(server.port()) + "/chunked";
    auto chunked = post_once(*parse_target(request.url), request);
    CHECK(chunked.status == 200);
    CHECK(chunked.body == "{\"a\":1}");
    CHECK(chunked.content_type == "application/json");
    request.url = "http://127.0.0.1:" + std::to_string(server.port()) + "/close";
    auto closed = post_once(*parse_target(request.url), request);
    CHECK(closed.status == 201);
    CHECK(closed.body == "until close");
  }

  TEST_CASE("keep-alive reuses one connection for several notifications") {
    std::atomic<int> served{0};
    RawServer server([&](int fd) {
      std::string pending;
      // Three requests, then the server closes (the client keeps its end idle for reuse).
      for (int i = 0; i < 3 && !read_request(fd, pending).empty(); ++i) {
        ++served;
        send_text(fd, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
      }
    });
    DeliveryRequest request;
    request.url = "http://127.0.0.1:" + std::to_string(server.port()) + "/";
    request.body = "{}";
    request.keep_alive = true;
    const auto target = *parse_target(request.url);
    for (int i = 0; i < 3; ++i) CHECK(post_once(target, request).status == 200);
    CHECK(served == 3);
    CHECK(server.accepted() == 1);
  }

  TEST_CASE("a timeout ends an attempt that never gets an answer") {
    std::atomic<bool> release{false};
    RawServer server([&](int fd) {
      std::string pending;
      read_request(fd, pending);
      pollfd p{fd, POLLIN, 0};
      while (!release) ::poll(&p, 1, 10);  // holds the connection open, never answers
    });
    DeliveryRequest request;
    request.url = "http://127.0.0.1:" + std::to_string(server.port()) + "/";
    request.body = "{}";
    request.timeout = 150ms;
    const auto result = post_once(*parse_target(request.url), request);
    release = true;
    CHECK(result.status == 0);
    CHECK(result.error.find("ETIMEDOUT") != std::string::npos);
    CHECK(result.finished - result.started >= 150ms);
    CHECK(result.finished - result.started < 2s);
  }

  TEST_CASE(
      "a receiver that answers 500, 500, then 200 sees three attempts at Tiledesk's "
      "delays") {
    std::atomic<int> calls{0};
    HttpServer server([&](const httplib::Request&, httplib::Response& res) {
      res.status = ++calls < 3 ? 500 : 200;
    });
    DeliveryRequest request;
    request.url = server.url();
    request.body = "{\"timestamp\":1}";
    request.secret = "s";
    RetryPolicy policy;
    policy.scale = 0.01;
    std::vector<int> reported;
    policy.on_attempt = [&](int n, const AttemptResult& a) {
      reported.push_back(n * 1000 + a.status);
    };
    const auto result = deliver(request, policy);
    REQUIRE(result.attempts.size() == 3);
    CHECK(reported == std::vector<int>{1500, 2500, 3200});
    CHECK(result.final_attempt().status == 200);
    CHECK(calls == 3);
    check_gap(gap_ms(result.attempts[0], result.attempts[1]), 1, policy.scale);
    check_gap(gap_ms(result.attempts[1], result.attempts[2]), 2, policy.scale);
  }

  TEST_CASE("status retries stop after two: 503 three times is three attempts") {
    std::atomic<int> calls{0};
    HttpServer server([&](const httplib::Request&, httplib::Response& res) {
      ++calls;
      res.status = 503;
    });
    RetryPolicy policy;
    policy.scale = 0.001;
    DeliveryRequest request;
    request.url = server.url();
    request.body = "{}";
    const auto result = deliver(request, policy);
    CHECK(result.attempts.size() == 3);
    CHECK(calls == 3);
    CHECK(result.final_attempt().status == 503);
  }

  TEST_CASE("400 is final and 429 is retried") {
    std::atomic<int> calls{0};
    std::atomic<int> status{400};
    HttpServer server([&](const httplib::Request&, httplib::Response& res) {
      ++calls;
      res.status = status;
    });
    RetryPolicy policy;
    policy.scale = 0.001;
    DeliveryRequest request;
    request.url = server.url();
    request.body = "{}";
    CHECK(deliver(request, policy).attempts.size() == 1);
    CHECK(calls == 1);
    status = 429;
    CHECK(deliver(request, policy).attempts.size() == 3);
    CHECK(calls == 4);
  }

  TEST_CASE("a refused connection is retried twice at Tiledesk's delays") {
    DeliveryRequest request;
    request.url = "http://127.0.0.1:" + std::to_string(closed_port()) + "/";
    request.body = "{}";
    RetryPolicy policy;
    policy.scale = 0.01;
    policy.jitter = [] { return 0.0; };  // the delays are then exactly 2^k s, scaled
    const auto result = deliver(request, policy);
    REQUIRE(result.attempts.size() == 3);
    for (const auto& attempt : result.attempts) {
      CHECK(attempt.status == 0);
      CHECK(attempt.error.find("ECONNREFUSED") != std::string::npos);
    }
    check_gap(gap_ms(result.attempts[0], result.attempts[1]), 1, policy.scale, 0.0);
    check_gap(gap_ms(result.attempts[1], result.attempts[2]), 2, policy.scale, 0.0);
  }

  TEST_CASE("retry disabled means exactly one attempt") {
    DeliveryRequest request;
    request.url = "http://127.0.0.1:" + std::to_string(closed_port()) + "/";
    RetryPolicy policy;
    policy.enabled = false;
    CHECK(deliver(request, policy).attempts.size() == 1);
  }

  TEST_CASE("an invalid URL is one failed attempt with a clear error, not a crash") {
    DeliveryRequest request;
    request.url = "gopher://x/";
    const auto result = deliver(request, RetryPolicy{});
    REQUIRE(result.attempts.size() == 1);
    CHECK(result.final_attempt().status == 0);
    CHECK(result.final_attempt().error.find("invalid target URL") != std::string::npos);
  }

  TEST_CASE("post_once is usable from several threads at once") {
    std::atomic<int> calls{0};
    HttpServer server([&](const httplib::Request& req, httplib::Response& res) {
      ++calls;
      res.set_content(req.body, "application/json");
    });
    const auto target = *parse_target(server.url());
    std::atomic<int> matched{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 6; ++t) {
      threads.emplace_back([&, t] {
        DeliveryRequest request;
        request.url = server.url();
        request.keep_alive = t % 2 == 0;
        for (int i = 0; i < 15; ++i) {
          request.body = "{\"t\":" + std::to_string(t) + ",\"i\":" + std::to_string(i) + "}";
          const auto result = post_once(target, request);
          if (result.status == 200 && result.body == request.body) ++matched;
        }
      });
    }
    for (auto& t : threads) t.join();
    CHECK(matched == 90);
    CHECK(calls == 90);
  }
}
