#include "support/raw_client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <filesystem>
#include <fstream>

namespace tdhook::test {
namespace {

using SteadyClock = std::chrono::steady_clock;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// Where the first response's head ends (its blank line), npos while incomplete.
std::size_t head_end(std::string_view text) { return text.find("\r\n\r\n"); }

}  // namespace

void RawSocket::reset() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

RawSocket connect_nonblocking(int port) {
  RawSocket s(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.valid()) return s;
  int yes = 1;
  ::setsockopt(s.fd(), IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (::connect(s.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 &&
      errno != EINPROGRESS) {
    s.reset();
  }
  return s;
}

int connect_error(int fd) {
  int error = 0;
  socklen_t len = sizeof error;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0) return errno;
  return error;
}

RawSocket connect_to(int port, std::chrono::milliseconds timeout) {
  auto s = connect_nonblocking(port);
  if (!s.valid()) return s;
  pollfd p{s.fd(), POLLOUT, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1 || connect_error(s.fd()) != 0) {
    s.reset();
  }
  return s;
}

ReadState read_available(int fd, std::string& into) {
  char buf[16384];
  while (true) {
    const auto n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      into.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) return ReadState::eof;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return ReadState::open;
    return ReadState::reset;
  }
}

long send_available(int fd, std::string_view data) {
  std::size_t sent = 0;
  while (sent < data.size()) {
    const auto n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return -1;
  }
  return static_cast<long>(sent);
}

bool send_all(int fd, std::string_view data, SteadyClock::time_point deadline) {
  while (!data.empty()) {
    const auto n = send_available(fd, data);
    if (n < 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
    if (data.empty()) break;
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, millis_until(deadline)) <= 0) return false;
  }
  return true;
}

int millis_until(SteadyClock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
  return static_cast<int>(std::clamp<long long>(left.count(), 0, 60000));
}

int wait_readable(int fd, SteadyClock::time_point deadline) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, millis_until(deadline));
}

bool has_complete_response(std::string_view text) {
  const auto end = head_end(text);
  if (end == std::string_view::npos) return false;
  const auto length_text = header_of(text, "Content-Length");
  std::size_t length = 0;
  std::from_chars(length_text.data(), length_text.data() + length_text.size(), length);
  return text.size() >= end + 4 + length;
}

int status_of(std::string_view text) {
  if (!text.starts_with("HTTP/1.") || text.size() < 12) return 0;
  int status = 0;
  std::from_chars(text.data() + 9, text.data() + 12, status);
  return status;
}

std::string body_of(std::string_view text) {
  if (!has_complete_response(text)) return {};
  const auto end = head_end(text);
  const auto length_text = header_of(text, "Content-Length");
  std::size_t length = 0;
  std::from_chars(length_text.data(), length_text.data() + length_text.size(), length);
  return std::string(text.substr(end + 4, length));
}

std::string header_of(std::string_view text, std::string_view name) {
  const auto end = head_end(text);
  if (end == std::string_view::npos) return {};
  auto head = text.substr(0, end + 2);
  for (auto pos = head.find("\r\n"); pos != std::string_view::npos;) {
    const auto next = head.find("\r\n", pos + 2);
    if (next == std::string_view::npos) break;
    const auto line = head.substr(pos + 2, next - pos - 2);
    const auto colon = line.find(':');
    if (colon != std::string_view::npos && iequals(line.substr(0, colon), name)) {
      auto value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
      return std::string(value);
    }
    pos = next;
  }
  return {};
}

Exchange exchange(int port, std::string_view request, std::chrono::milliseconds timeout) {
  Exchange out;
  const auto started = SteadyClock::now();
  const auto deadline = started + timeout;
  auto s = connect_to(port, timeout);
  if (s.valid()) {
    out.connected = true;
    // A server may answer and close before the whole request is sent (a head it refuses):
    // what it answered is still read.
    (void)send_all(s.fd(), request, deadline);
    out.end = read_until(s.fd(), out.text, deadline,
                         [](const std::string& text) { return has_complete_response(text); });
    out.status = status_of(out.text);
  }
  out.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - started);
  return out;
}

std::string tiledesk_request(const std::string& body, const std::string& secret,
                             const std::string& extra, const std::string& path) {
  return "POST " + path +
         " HTTP/1.1\r\nContent-Type: application/json\r\nx-hook-secret: " + secret +
         "\r\nUser-Agent: tiledesk-webhooks\r\nOrigin: http://localhost:3000\r\n"
         "host: 127.0.0.1\r\naccept: application/json\r\ncontent-length: " +
         std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body;
}

std::size_t open_fd_count(pid_t pid) {
  std::error_code ec;
  std::size_t n = 0;
  for (std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec), end;
       !ec && it != end; it.increment(ec)) {
    ++n;
  }
  return n;
}

bool process_running(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(stat, text)) return false;
  // The state follows the command name, which is in parentheses and may hold spaces.
  const auto paren = text.rfind(')');
  return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] != 'Z' &&
         text[paren + 2] != 'X';
}

std::size_t raise_fd_limit(std::size_t want) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur < want) {
    limit.rlim_cur = std::min<rlim_t>(want, limit.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &limit);
    ::getrlimit(RLIMIT_NOFILE, &limit);
  }
  return static_cast<std::size_t>(limit.rlim_cur);
}

}  // namespace tdhook::test
