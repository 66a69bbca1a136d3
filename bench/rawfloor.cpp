// The physical floor for receiver benchmarks (copied from ../shared/bench/rawfloor.cpp, with a
// group-commit mode added; its event loop is bench/epoll_http.hpp, shared with sinkapp.cpp): one
// epoll loop per core (SO_REUSEPORT), HTTP/1.1 with keep-alive and
// Connection: close, reads the whole request (Content-Length), compares the secret header,
// answers 200 with an empty body.
//   APPEND=PATH          also appends every body and a newline to PATH with one write() before
//                        answering it (O_APPEND): the least work a receiver that stores before it
//                        answers can do, at process-crash durability, without parsing or verifying.
//   APPEND=PATH SYNC=1   group commit, at power-loss durability: each event-loop iteration appends
//                        every complete request it read in that wake-up (across its connections)
//                        with one writev, then one fdatasync, and only then answers them all.
// Usage: rawfloor PORT [THREADS]       (bench/run.sh builds it with g++ -O2)
#include <strings.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "epoll_http.hpp"

static const char* kSecret = "x-hook-secret: 56c189c8-33ae-4930-bd98-410a12aa45ce\r\n";
static int append_fd = -1;
static bool group_sync = false;

struct Req {
  size_t body_off, body_len;
  bool ok, close_after;
};
struct Conn {
  std::string in;
  size_t parsed = 0;      // bytes of `in` taken by complete requests in `reqs`
  std::vector<Req> reqs;  // complete requests not answered yet
};

static bool icase_find(const char* p, size_t size, const char* needle) {
  size_t n = strlen(needle);
  for (size_t i = 0; i + n <= size; ++i)
    if (strncasecmp(p + i, needle, n) == 0) return true;
  return false;
}

// Takes the complete requests at the front of c.in into c.reqs (none after a Connection: close).
static void parse(Conn& c) {
  while (c.reqs.empty() || !c.reqs.back().close_after) {
    size_t end = c.in.find("\r\n\r\n", c.parsed);
    if (end == std::string::npos) return;
    const char* head = c.in.data() + c.parsed;
    size_t head_len = end + 2 - c.parsed, len = 0;
    for (size_t p = 0; p + 2 < head_len; ++p)
      if (head[p] == '\r' && head[p + 1] == '\n' &&
          strncasecmp(head + p + 2, "content-length:", 15) == 0)
        len = strtoul(head + p + 17, nullptr, 10);
    if (c.in.size() < end + 4 + len) return;
    c.reqs.push_back({end + 4, len, icase_find(head, head_len, kSecret) && len > 0,
                      icase_find(head, head_len, "\r\nconnection: close")});
    c.parsed = end + 4 + len;
  }
}

// Answers c.reqs (stored: whether their bodies reached the file); false when the connection closes.
static bool answer(int fd, Conn& c, bool stored) {
  std::string out;
  bool close_after = false;
  for (const Req& r : c.reqs) {
    if (!r.ok)
      out += "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
    else if (!stored)
      out += "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
    else
      out += r.close_after ? "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                           : "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    close_after = close_after || r.close_after;
  }
  c.in.erase(0, c.parsed);
  c.parsed = 0;
  c.reqs.clear();
  if (!out.empty() && write(fd, out.data(), out.size()) < 0) return false;
  return !close_after;
}

static void loop(int port) {
  std::vector<int> ready;  // SYNC: connections with complete requests in this wake-up
  std::vector<iovec> iov;  // SYNC: their bodies, each followed by a newline
  bench::serve<Conn>(
      port,
      [&](int fd, Conn& c) {
        parse(c);
        if (c.reqs.empty()) return true;
        if (group_sync) {
          ready.push_back(fd);
          return true;
        }
        bool stored = true;
        if (append_fd >= 0)
          for (const Req& r : c.reqs)
            if (r.ok) {
              iovec v[2] = {{c.in.data() + r.body_off, r.body_len}, {(void*)"\n", 1}};
              if (writev(append_fd, v, 2) < 0) stored = false;
            }
        return answer(fd, c, stored);
      },
      [&](std::unordered_map<int, Conn>& conns, std::vector<int>& closing) {
        if (ready.empty()) return;
        // Group commit: every body of this wake-up, one writev, one fdatasync, then the answers.
        iov.clear();
        for (int fd : ready)
          for (const Req& r : conns[fd].reqs)
            if (r.ok) {
              iov.push_back({conns[fd].in.data() + r.body_off, r.body_len});
              iov.push_back({(void*)"\n", 1});
            }
        bool stored =
            iov.empty() || (bench::append_all(append_fd, iov) && fdatasync(append_fd) == 0);
        for (int fd : ready)
          if (!answer(fd, conns[fd], stored)) closing.push_back(fd);
        ready.clear();
      },
      [](int) {});
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  if (const char* p = getenv("APPEND")) {
    append_fd = open(p, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (append_fd < 0) {
      perror(p);
      return 1;
    }
    const char* s = getenv("SYNC");
    group_sync = s && strcmp(s, "1") == 0;
  }
  int port = atoi(argv[1]),
      threads = argc > 2 ? atoi(argv[2]) : (int)std::thread::hardware_concurrency();
  std::vector<std::thread> ts;
  for (int i = 1; i < threads; ++i) ts.emplace_back(loop, port);
  loop(port);
}
