// Tiledesk's sender, byte for byte. For http:// targets this is a small HTTP/1.1 client on POSIX
// sockets, because the point is to put Tiledesk's headers on the wire in Tiledesk's order and
// case, and cpp-httplib sorts and adds headers itself. https:// goes through httplib::SSLClient
// (header order not guaranteed there).
#include "delivery.hpp"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <thread>

#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/uio.h>

#include "base/base64.hpp"
#include "http_request.hpp"

namespace tdhook::tools {

Result<Target> parse_target(std::string_view url) {
  auto parsed = receiver::parse_url(url);
  if (!parsed) return std::move(parsed).error();
  Target t{std::move(*parsed), {}};
  if (t.has_userinfo)
    t.authorization = "Basic " + receiver::base64_encode(t.user + ":" + t.password);
  return t;
}

namespace {

std::string request_head(const Target& target, const DeliveryRequest& request) {
  std::string head;
  head.reserve(512);
  head.append("POST ").append(target.path).append(" HTTP/1.1\r\n");
  head.append("Content-Type: application/json\r\n");
  if (!request.secret.empty()) head.append("x-hook-secret: ").append(request.secret).append("\r\n");
  head.append("User-Agent: tiledesk-webhooks\r\n");
  head.append("Origin: ").append(request.origin).append("\r\n");
  head.append("host: ").append(target.host_header).append("\r\n");
  if (!target.authorization.empty()) {
    head.append("authorization: ").append(target.authorization).append("\r\n");
  }
  head.append("accept: application/json\r\n");
  head.append("content-length: ").append(std::to_string(request.body.size())).append("\r\n");
  head.append(request.keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
  for (const auto& [name, value] : request.extra_headers) {
    head.append(name).append(": ").append(value).append("\r\n");
  }
  head.append("\r\n");
  return head;
}

using Deadline = std::optional<SteadyTime>;

Deadline deadline_from(std::optional<std::chrono::milliseconds> timeout) {
  if (!timeout) return std::nullopt;
  return std::chrono::steady_clock::now() + *timeout;
}

std::string numeric_address(const sockaddr* addr, socklen_t len, int port) {
  char host[NI_MAXHOST] = "?";
  ::getnameinfo(addr, len, host, sizeof host, nullptr, 0, NI_NUMERICHOST);
  return std::string(host) + ":" + std::to_string(port);
}

int try_connect(const addrinfo& ai, int port, const Deadline& deadline, std::string& error) {
  const int fd = ::socket(ai.ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    error = "socket " + errno_name(errno);
    return -1;
  }
  int err = 0;
  if (::connect(fd, ai.ai_addr, ai.ai_addrlen) != 0) {
    err = errno == EINPROGRESS ? wait_fd(fd, POLLOUT, deadline) : errno;
    socklen_t len = sizeof err;
    if (err == 0) ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  }
  if (err != 0) {
    error = "connect " + errno_name(err) + " " + numeric_address(ai.ai_addr, ai.ai_addrlen, port);
    ::close(fd);
    return -1;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

int connect_to(const std::string& host, int port, const Deadline& deadline, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &list) != 0) {
    error = "getaddrinfo ENOTFOUND " + host;
    return -1;
  }
  int fd = -1;
  for (const addrinfo* ai = list; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = try_connect(*ai, port, deadline, error);
  }
  ::freeaddrinfo(list);
  return fd;
}

// Sends head and body with one system call when the socket takes them. 0 or an errno value.
int send_all(int fd, std::string_view head, std::string_view body, const Deadline& deadline) {
  iovec parts[2] = {{const_cast<char*>(head.data()), head.size()},
                    {const_cast<char*>(body.data()), body.size()}};
  std::size_t index = 0;
  while (index < 2) {
    if (parts[index].iov_len == 0) {
      ++index;
      continue;
    }
    msghdr msg{};
    msg.msg_iov = parts + index;
    msg.msg_iovlen = 2 - index;
    const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return errno;
      if (const int err = wait_fd(fd, POLLOUT, deadline); err != 0) return err;
      continue;
    }
    auto left = static_cast<std::size_t>(n);
    while (index < 2 && left >= parts[index].iov_len) left -= parts[index++].iov_len;
    if (index < 2) {
      parts[index].iov_base = static_cast<char*>(parts[index].iov_base) + left;
      parts[index].iov_len -= left;
    }
  }
  return 0;
}

ReadOutcome exchange(int fd, std::string_view head, std::string_view body, const Deadline& deadline,
                     ReceivedResponse& out, std::string& error) {
  if (const int err = send_all(fd, head, body, deadline); err != 0) {
    // A server may answer (413, 401) and close before reading everything: take its answer.
    if (read_response(fd, deadline, out, error) == ReadOutcome::ok) {
      out.reusable = false;
      return ReadOutcome::ok;
    }
    error = err == ETIMEDOUT ? "ETIMEDOUT (could not send within the timeout)"
                             : "write " + errno_name(err);
    return err == EPIPE || err == ECONNRESET ? ReadOutcome::closed_before_response
                                             : ReadOutcome::failed;
  }
  return read_response(fd, deadline, out, error);
}

// Idle keep-alive connections of this thread, by host:port. Thread-local, so that post_once is
// safe from many threads at once without locks, and each load-generator thread reuses its own.
struct IdlePool {
  std::multimap<std::string, int> fds;
  ~IdlePool() {
    for (const auto& entry : fds) ::close(entry.second);
  }
};
thread_local IdlePool idle_pool;

int take_idle(const std::string& key) {
  const auto it = idle_pool.fds.find(key);
  if (it == idle_pool.fds.end()) return -1;
  const int fd = it->second;
  idle_pool.fds.erase(it);
  return fd;
}

AttemptResult post_http(const Target& target, const DeliveryRequest& request) {
  AttemptResult result;
  result.started = std::chrono::steady_clock::now();
  const Deadline deadline = deadline_from(request.timeout);
  const std::string key = target.host + ":" + std::to_string(target.port);
  const std::string head = request_head(target, request);
  for (int round = 0; round < 2; ++round) {
    int fd = request.keep_alive ? take_idle(key) : -1;
    const bool reused = fd >= 0;
    std::string error;
    if (!reused) fd = connect_to(target.host, target.port, deadline, error);
    if (fd < 0) {
      result.error = error;
      break;
    }
    ReceivedResponse response;
    const auto outcome = exchange(fd, head, request.body, deadline, response, error);
    // A reused connection that the server closed meanwhile gets one fresh try.
    if (outcome == ReadOutcome::closed_before_response && reused) {
      ::close(fd);
      continue;
    }
    if (outcome != ReadOutcome::ok) {
      ::close(fd);
      result.error = error;
      break;
    }
    result.status = response.head.status;
    result.body = std::move(response.body);
    if (const auto* type = response.head.find("content-type")) result.content_type = *type;
    if (request.keep_alive && response.reusable) {
      idle_pool.fds.emplace(key, fd);
    } else {
      ::close(fd);
    }
    break;
  }
  result.finished = std::chrono::steady_clock::now();
  return result;
}

struct SslClients {
  std::map<std::string, std::unique_ptr<httplib::SSLClient>> clients;
};
thread_local SslClients ssl_clients;

AttemptResult post_https(const Target& target, const DeliveryRequest& request) {
  AttemptResult result;
  result.started = std::chrono::steady_clock::now();
  const std::string key = target.host + ":" + std::to_string(target.port);
  auto& slot = ssl_clients.clients[key];
  if (!slot || !request.keep_alive) {
    slot = std::make_unique<httplib::SSLClient>(target.host, target.port);
  }
  auto& client = *slot;
  client.set_keep_alive(request.keep_alive);
  client.set_decompress(false);  // else httplib adds Accept-Encoding, which Tiledesk never sends
  client.enable_server_certificate_verification(true);
  // No timeout means waiting forever, as Tiledesk does; a day stands in for forever here.
  const auto timeout = request.timeout.value_or(std::chrono::hours(24));
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(timeout);
  const auto usecs = std::chrono::duration_cast<std::chrono::microseconds>(timeout - secs);
  client.set_connection_timeout(secs.count(), usecs.count());
  client.set_read_timeout(secs.count(), usecs.count());
  client.set_write_timeout(secs.count(), usecs.count());
  httplib::Headers headers;
  if (!request.secret.empty()) headers.emplace("x-hook-secret", request.secret);
  headers.emplace("User-Agent", "tiledesk-webhooks");
  headers.emplace("Origin", request.origin);
  headers.emplace("host", target.host_header);
  if (!target.authorization.empty()) headers.emplace("authorization", target.authorization);
  headers.emplace("accept", "application/json");
  for (const auto& [name, value] : request.extra_headers) headers.emplace(name, value);
  auto response = client.Post(target.path, headers, request.body, "application/json");
  if (response) {
    result.status = response->status;
    result.body = response->body;
    result.content_type = response->get_header_value("Content-Type");
  } else {
    result.error = "https request failed: " + httplib::to_string(response.error());
    slot.reset();
  }
  result.finished = std::chrono::steady_clock::now();
  return result;
}

bool status_retryable(int status) {
  return (status >= 100 && status < 200) || status == 429 || (status >= 500 && status < 600);
}

double default_jitter() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

}  // namespace

AttemptResult post_once(const Target& target, const DeliveryRequest& request) {
  return target.scheme == "https" ? post_https(target, request) : post_http(target, request);
}

DeliveryResult deliver(const DeliveryRequest& request, const RetryPolicy& policy) {
  DeliveryResult out;
  auto target = parse_target(request.url);
  if (!target) {
    AttemptResult bad;
    bad.started = bad.finished = std::chrono::steady_clock::now();
    bad.error = "invalid target URL: " + target.error().detail;
    out.attempts.push_back(std::move(bad));
    if (policy.on_attempt) policy.on_attempt(1, out.attempts.back());
    return out;
  }
  int transport_errors = 0;
  double planned_delay_ms = 0;
  while (true) {
    out.attempts.push_back(post_once(*target, request));
    out.attempts.back().planned_delay_ms = planned_delay_ms;
    const auto& last = out.attempts.back();
    const int attempts = static_cast<int>(out.attempts.size());
    if (policy.on_attempt) policy.on_attempt(attempts, last);
    if (!policy.enabled) break;
    int k = 0;
    if (last.status == 0) {
      if (++transport_errors > 2) break;
      k = transport_errors;
    } else if (status_retryable(last.status) && attempts - 1 < 2) {
      k = attempts;
    } else {
      break;
    }
    const double jitter = policy.jitter ? policy.jitter() : default_jitter();
    planned_delay_ms = (std::ldexp(1000.0, k) + 999.0 * jitter) * policy.scale;
    std::this_thread::sleep_until(
        last.finished + std::chrono::microseconds(std::llround(planned_delay_ms * 1000.0)));
  }
  return out;
}

}  // namespace tdhook::tools
