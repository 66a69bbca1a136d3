// The app that bench/run.sh's http scenario delivers to (the receiving end of tdhook's http: and
// forward: sinks), on the floor's event loop (bench/epoll_http.hpp): one epoll loop per core
// (SO_REUSEPORT) on 127.0.0.1:PORT, HTTP/1.1 with keep-alive (and Connection: close), requests with
// a Content-Length body (a chunked one is answered 501 and the connection closed). Each wake-up of
// a loop appends one line per complete POST it read, across its connections, to FILE with one
// writev (O_APPEND, no fsync), then answers them all "200" with the body "ok". The line, so that
// bench/sinkwait.cpp and run.sh's wait_delivery count distinct deliveries by a line's first 48
// bytes:
//   - a body that begins with {"id": (the event record of an http: sink, whose id is the
//     delivery id) is written as it came;
//   - any other body with an X-Tdhook-Delivery-Id header (what a forward: sink sends: Tiledesk's
//     original body) as {"id":"<that header>","forwarded":<the body>};
//   - anything else (wrk straight at the app) as it came.
// A body is one line already (JSON.stringify's output, tdhook's records).
// QUICKACK=1: after each read, TCP_QUICKACK, so that the kernel acknowledges what came at once
// instead of delaying the ACK (up to 40 ms) until the answer. A client that writes a request's
// head and body in two writes without TCP_NODELAY (Nagle) holds the body back until the head is
// acknowledged: with delayed ACKs every request then waits ~40 ms. By default the app is like any
// server (delayed ACKs, as Node's or Go's): QUICKACK=1 shows what that wait costs.
// Usage: sinkapp PORT FILE [THREADS]       (bench/lib.sh builds it with g++ -O2)
#include <strings.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "epoll_http.hpp"

static int out_fd = -1;
static bool quickack = false;

struct Req {
  size_t body_off, body_len;
  std::string prefix;  // written before the body (the forward: wrapping), or empty
  bool close_after, bad;
};
struct Conn {
  std::string in;
  size_t parsed = 0;      // bytes of `in` taken by complete requests in `reqs`
  std::vector<Req> reqs;  // complete requests not answered yet
};

// The value of header `name` (lower case, with its colon) in the head, trimmed; empty if absent.
static std::string header(const char* head, size_t len, const char* name) {
  size_t n = strlen(name);
  for (size_t p = 0; p + 2 + n <= len; ++p) {
    if (head[p] != '\r' || head[p + 1] != '\n' || strncasecmp(head + p + 2, name, n) != 0) continue;
    size_t b = p + 2 + n, e = b;
    while (e < len && head[e] != '\r') ++e;
    while (b < e && (head[b] == ' ' || head[b] == '\t')) ++b;
    while (e > b && (head[e - 1] == ' ' || head[e - 1] == '\t')) --e;
    return std::string(head + b, e - b);
  }
  return {};
}

// Takes the complete requests at the front of c.in into c.reqs (none after a Connection: close).
static void parse(Conn& c) {
  while (c.reqs.empty() || !c.reqs.back().close_after) {
    size_t end = c.in.find("\r\n\r\n", c.parsed);
    if (end == std::string::npos) return;
    const char* head = c.in.data() + c.parsed;
    size_t head_len = end + 2 - c.parsed;
    Req r{end + 4, 0, {}, false, false};
    if (!header(head, head_len, "transfer-encoding:").empty()) {
      r.bad = r.close_after = true;
      c.reqs.push_back(std::move(r));
      c.parsed = c.in.size();
      return;
    }
    r.body_len = strtoul(header(head, head_len, "content-length:").c_str(), nullptr, 10);
    if (c.in.size() < end + 4 + r.body_len) return;
    r.close_after = strcasecmp(header(head, head_len, "connection:").c_str(), "close") == 0;
    const char* body = c.in.data() + r.body_off;
    if (r.body_len > 0 && !(r.body_len >= 6 && memcmp(body, "{\"id\":", 6) == 0)) {
      std::string id = header(head, head_len, "x-tdhook-delivery-id:");
      if (!id.empty()) r.prefix = "{\"id\":\"" + id + "\",\"forwarded\":";
    }
    c.parsed = end + 4 + r.body_len;
    c.reqs.push_back(std::move(r));
  }
}

// Answers c.reqs; false when the connection is to be closed.
static bool answer(int fd, Conn& c, bool stored) {
  std::string out;
  bool close_after = false;
  for (const Req& r : c.reqs) {
    if (r.bad)
      out += "HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    else if (!stored)
      out += "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
    else
      out += r.close_after ? "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                           : "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    close_after = close_after || r.close_after;
  }
  c.in.erase(0, c.parsed);
  c.parsed = 0;
  c.reqs.clear();
  if (!out.empty() && !bench::write_all(fd, out.data(), out.size())) return false;
  return !close_after;
}

static void loop(int port) {
  std::vector<int> ready;  // connections with complete requests in this wake-up
  std::vector<iovec> iov;  // their lines
  static char nl[] = "\n", close_brace[] = "}\n";
  bench::serve<Conn>(
      port,
      [&](int fd, Conn& c) {
        parse(c);
        if (!c.reqs.empty()) ready.push_back(fd);
        return true;
      },
      [&](std::unordered_map<int, Conn>& conns, std::vector<int>& closing) {
        if (ready.empty()) return;
        iov.clear();
        for (int fd : ready)
          for (Req& r : conns[fd].reqs) {
            if (r.bad || r.body_len == 0) continue;
            if (!r.prefix.empty()) iov.push_back({r.prefix.data(), r.prefix.size()});
            iov.push_back({conns[fd].in.data() + r.body_off, r.body_len});
            iov.push_back({r.prefix.empty() ? nl : close_brace, r.prefix.empty() ? 1u : 2u});
          }
        bool stored = iov.empty() || bench::append_all(out_fd, iov);
        for (int fd : ready)
          if (!answer(fd, conns[fd], stored)) closing.push_back(fd);
        ready.clear();
      },
      [](int fd) {
        if (quickack) {
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
        }
      });
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: sinkapp PORT FILE [THREADS]\n");
    return 2;
  }
  out_fd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out_fd < 0) {
    perror(argv[2]);
    return 1;
  }
  const char* q = getenv("QUICKACK");
  quickack = q && strcmp(q, "1") == 0;
  int port = atoi(argv[1]);
  int threads = argc > 3 ? atoi(argv[3]) : (int)std::thread::hardware_concurrency();
  std::vector<std::thread> ts;
  for (int i = 1; i < threads; ++i) ts.emplace_back(loop, port);
  loop(port);
}
