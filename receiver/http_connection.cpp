#include "http_connection.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace tdhook::receiver {
namespace {

thread_local bool close_requested = false;

using SteadyClock = std::chrono::steady_clock;

int poll_one(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  while (true) {
    const int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    return r;
  }
}

int to_ms(time_t sec, time_t usec) { return static_cast<int>(sec * 1000 + usec / 1000); }

void address_of(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  const int rc = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len)
                      : ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  if (rc != 0) return;
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
    port = ntohs(a->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
    port = ntohs(a->sin6_port);
  }
  ip = text;
}

// A buffered socket stream: httplib reads request lines one byte at a time.
class SocketStream final : public httplib::Stream {
 public:
  SocketStream(int fd, int read_timeout_ms, int write_timeout_ms)
      : fd_(fd), read_timeout_ms_(read_timeout_ms), write_timeout_ms_(write_timeout_ms) {}

  bool is_readable() const override {
    return pos_ < len_ || poll_one(fd_, POLLIN, read_timeout_ms_) > 0;
  }
  bool is_writable() const override { return poll_one(fd_, POLLOUT, write_timeout_ms_) > 0; }

  ssize_t read(char* ptr, size_t size) override {
    if (pos_ == len_) {
      if (size >= sizeof buffer_) return recv_into(ptr, size);
      const auto n = recv_into(buffer_, sizeof buffer_);
      if (n <= 0) return n;
      pos_ = 0;
      len_ = static_cast<std::size_t>(n);
    }
    const auto n = std::min(size, len_ - pos_);
    std::memcpy(ptr, buffer_ + pos_, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    std::size_t done = 0;
    while (done < size) {
      if (poll_one(fd_, POLLOUT, write_timeout_ms_) <= 0) return -1;
      const auto n = ::send(fd_, ptr + done, size - done, MSG_NOSIGNAL);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) return -1;
      done += static_cast<std::size_t>(n);
    }
    return static_cast<ssize_t>(size);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    address_of(fd_, true, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    address_of(fd_, false, ip, port);
  }
  socket_t socket() const override { return fd_; }

  bool has_buffered() const { return pos_ < len_; }

 private:
  ssize_t recv_into(char* ptr, std::size_t size) {
    while (true) {
      if (poll_one(fd_, POLLIN, read_timeout_ms_) <= 0) return -1;
      const auto n = ::recv(fd_, ptr, size, 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      return n;
    }
  }

  int fd_;
  int read_timeout_ms_, write_timeout_ms_;
  char buffer_[16384];
  std::size_t pos_ = 0, len_ = 0;
};

// After answering without reading the body: send FIN, then read and drop what the client still
// sends for a moment, so that closing does not reset the connection before the client has read
// our answer. Bounded in time and bytes: the point is not to read the body.
void lingering_close(int fd) {
  ::shutdown(fd, SHUT_WR);
  const auto deadline = SteadyClock::now() + std::chrono::milliseconds(500);
  std::size_t dropped = 0;
  char sink[16384];
  while (dropped < 1024 * 1024) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
    if (left.count() <= 0 || poll_one(fd, POLLIN, static_cast<int>(left.count())) <= 0) break;
    const auto n = ::recv(fd, sink, sizeof sink, 0);
    if (n <= 0) break;
    dropped += static_cast<std::size_t>(n);
  }
}

}  // namespace

void close_connection_after_response() noexcept { close_requested = true; }

bool DrainableServer::wait_for_request(socket_t sock, bool first) const {
  // A new connection is served even while draining: its client has connected to send a request.
  if (!first && draining()) return poll_one(sock, POLLIN, 0) > 0;
  const auto deadline = SteadyClock::now() + std::chrono::seconds(first ? read_timeout_sec_ + 1
                                                                        : keep_alive_timeout_sec_);
  while (true) {
    const int r = poll_one(sock, POLLIN, 50);
    if (r != 0) return r > 0;
    if (SteadyClock::now() >= deadline) return false;
    if (!first && draining()) return poll_one(sock, POLLIN, 0) > 0;
  }
}

bool DrainableServer::process_and_close_socket(socket_t sock) {
  // Headers and body go out in separate writes: with Nagle, the body of a keep-alive response
  // would wait for the client's delayed ACK (40 ms).
  int one = 1;
  ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  SocketStream stream(sock, to_ms(read_timeout_sec_, read_timeout_usec_),
                      to_ms(write_timeout_sec_, write_timeout_usec_));
  bool ret = false;
  close_requested = false;
  for (auto count = keep_alive_max_count_; count > 0; --count) {
    const bool first = count == keep_alive_max_count_;
    if (!stream.has_buffered() && !wait_for_request(sock, first)) break;
    const bool close_connection = count == 1 || draining();
    bool connection_closed = false;
    ret = process_request(stream, close_connection, connection_closed, nullptr);
    if (!ret || connection_closed || close_connection || close_requested) break;
  }
  if (close_requested) lingering_close(sock);
  close_requested = false;
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ret;
}

}  // namespace tdhook::receiver
