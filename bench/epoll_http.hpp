// The event loop that bench/rawfloor.cpp (the floor) and bench/sinkapp.cpp (the http sinks' app)
// share: a listening socket on 127.0.0.1:PORT per thread (SO_REUSEPORT), accept with TCP_NODELAY,
// every available byte of a connection read into its `in`, and appending pieces to a file with
// writev. What a program does with the bytes (parse, store, answer) is its own: the callbacks.
// Header-only: bench/lib.sh compiles each program with g++ -O2 from its one .cpp.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unordered_map>
#include <vector>

namespace bench {

inline int listen_loopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), yes = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &yes, sizeof yes);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (sockaddr*)&a, sizeof a) != 0 || listen(fd, 4096) != 0) {
    perror("listen");
    exit(1);
  }
  return fd;
}

// Writes all of p[0..n) (waiting for a non-blocking socket to take it); false on an error.
inline bool write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EAGAIN) {
      pollfd q{fd, POLLOUT, 0};
      poll(&q, 1, 1000);
      continue;
    }
    if (w <= 0) return false;
    p += w;
    n -= w;
  }
  return true;
}

// One writev of every piece in iov (in chunks of IOV_MAX), complete or not at all: a short write
// (disk full, signal) finishes the rest of its chunk one piece at a time.
inline bool append_all(int fd, std::vector<iovec>& iov) {
  for (size_t i = 0; i < iov.size();) {
    size_t n = std::min<size_t>(IOV_MAX, iov.size() - i);
    ssize_t w = writev(fd, iov.data() + i, (int)n);
    if (w < 0) return false;
    for (size_t k = i; k < i + n; ++k) {
      size_t l = iov[k].iov_len;
      if ((size_t)w >= l) {
        w -= l;
        continue;
      }
      if (!write_all(fd, (const char*)iov[k].iov_base + w, l - w)) return false;
      w = 0;
    }
    i += n;
  }
  return true;
}

// Serves `port` on this thread forever. Conn has a `std::string in`; conns is node-based, so a
// Conn stays where it is. After a connection's reads: on_read(fd, conn) returns false to close
// it. After each wake-up's connections: on_wake(conns, closing) (group commits), which puts the
// connections to close in `closing`. `after_read(fd)` runs after each read that got bytes.
template <class Conn, class OnRead, class OnWake, class AfterRead>
void serve(int port, OnRead on_read, OnWake on_wake, AfterRead after_read) {
  int lfd = listen_loopback(port), ep = epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  std::unordered_map<int, Conn> conns;
  std::vector<epoll_event> evs(256);
  std::vector<int> closing;
  char buf[65536];
  const auto drop = [&](int fd) {
    close(fd);
    conns.erase(fd);
  };
  for (;;) {
    int n = epoll_wait(ep, evs.data(), (int)evs.size(), -1);
    for (int i = 0; i < n; ++i) {
      int fd = evs[i].data.fd;
      if (fd == lfd) {
        for (int c; (c = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK)) >= 0;) {
          int one = 1;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event e{};
          e.events = EPOLLIN;
          e.data.fd = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
          conns[c];
        }
        continue;
      }
      Conn& c = conns[fd];
      bool keep = true;
      for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r > 0) {
          c.in.append(buf, r);
          after_read(fd);
          continue;
        }
        if (r == 0) keep = false;
        break;
      }
      if (!keep || !on_read(fd, c)) drop(fd);
    }
    closing.clear();
    on_wake(conns, closing);
    for (int fd : closing) drop(fd);
  }
}

}  // namespace bench
