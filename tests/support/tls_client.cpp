#include "support/tls_client.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <stdexcept>

namespace tdhook::test {
namespace {

using SteadyClock = std::chrono::steady_clock;

bool wait_conn(const Conn& conn, short events, SteadyClock::time_point deadline) {
  pollfd p{conn.fd(), events, 0};
  return ::poll(&p, 1, millis_until(deadline)) == 1;
}

}  // namespace

std::string to_string(Wire wire) { return wire == Wire::tls ? "TLS" : "plain"; }

TestCert make_test_cert(const TempDir& dir, const std::string& common_name,
                        const std::string& stem) {
  TestCert made{dir / (stem + ".pem"), dir / (stem + ".key")};
  const std::string command =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj '/CN=" +
      common_name + "' -addext subjectAltName=IP:127.0.0.1 -keyout '" + made.key.string() +
      "' -out '" + made.cert.string() + "' 2>/dev/null";
  if (std::system(command.c_str()) != 0) throw std::runtime_error("openssl req failed");
  return made;
}

std::vector<std::string> with_wire(std::vector<std::string> args, Wire wire, const TempDir& dir) {
  if (wire == Wire::tls) {
    const auto made = make_test_cert(dir);
    args.insert(args.end(), {"--tls-cert", made.cert.string(), "--tls-key", made.key.string()});
  }
  return args;
}

SSL_CTX* new_client_context() {
  // OpenSSL writes with write(), not send(MSG_NOSIGNAL): a TLS client that writes to a connection
  // the receiver closed (the point of several tests) would die of SIGPIPE.
  static const bool ignored = [] { return std::signal(SIGPIPE, SIG_IGN) != SIG_ERR; }();
  (void)ignored;
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) throw std::runtime_error("SSL_CTX_new failed");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  return ctx;
}

SSL_CTX* default_client_context() {
  static SSL_CTX* const ctx = new_client_context();
  return ctx;
}

Conn::Conn(RawSocket socket, Wire wire)
    : Conn(std::move(socket), wire == Wire::tls ? default_client_context() : nullptr) {}

Conn::Conn(RawSocket socket, SSL_CTX* tls) : socket_(std::move(socket)) {
  if (tls == nullptr || !socket_.valid()) return;
  ssl_ = SSL_new(tls);
  if (ssl_ == nullptr || SSL_set_fd(ssl_, socket_.fd()) != 1) throw std::runtime_error("SSL_new");
  SSL_set_connect_state(ssl_);
  wanted_ = POLLOUT;
}

Conn::~Conn() { reset(); }

Conn::Conn(Conn&& other) noexcept
    : socket_(std::move(other.socket_)), ssl_(other.ssl_), wanted_(other.wanted_) {
  other.ssl_ = nullptr;
}

Conn& Conn::operator=(Conn&& other) noexcept {
  if (this != &other) {
    reset();
    socket_ = std::move(other.socket_);
    ssl_ = other.ssl_;
    wanted_ = other.wanted_;
    other.ssl_ = nullptr;
  }
  return *this;
}

void Conn::reset() noexcept {
  if (ssl_ != nullptr) SSL_free(ssl_);
  ssl_ = nullptr;
  socket_.reset();
}

long Conn::ssl_failure(int ret) {
  switch (SSL_get_error(ssl_, ret)) {
    case SSL_ERROR_WANT_READ:
      wanted_ = POLLIN;
      return 0;
    case SSL_ERROR_WANT_WRITE:
      wanted_ = POLLOUT;
      return 0;
    case SSL_ERROR_ZERO_RETURN:
      return -2;
    default:
      ERR_clear_error();
      return -1;
  }
}

ReadState Conn::read_available(std::string& into) {
  if (ssl_ == nullptr) return tdhook::test::read_available(fd(), into);
  char buf[16384];
  while (true) {
    ERR_clear_error();
    const int n = SSL_read(ssl_, buf, sizeof buf);
    if (n > 0) {
      into.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    const auto why = ssl_failure(n);
    if (why == 0) return ReadState::open;
    return why == -2 ? ReadState::eof : ReadState::reset;
  }
}

long Conn::send_available(std::string_view data) {
  if (ssl_ == nullptr) return tdhook::test::send_available(fd(), data);
  std::size_t sent = 0;
  while (sent < data.size()) {
    ERR_clear_error();
    const int n = SSL_write(ssl_, data.data() + sent,
                            static_cast<int>(std::min<std::size_t>(data.size() - sent, INT_MAX)));
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    const auto why = ssl_failure(n);
    if (why == 0) break;
    return -1;
  }
  return static_cast<long>(sent);
}

int Conn::handshake_step() {
  if (ssl_ == nullptr) return 1;
  ERR_clear_error();
  const int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    wanted_ = POLLIN;
    return 1;
  }
  return ssl_failure(r) == 0 ? 0 : -1;
}

bool Conn::handshake(SteadyClock::time_point deadline) {
  while (true) {
    const int step = handshake_step();
    if (step != 0) return step == 1;
    if (!wait_conn(*this, wanted_, deadline)) return false;
  }
}

Conn connect_started(int port, Wire wire) { return Conn(connect_nonblocking(port), wire); }

Conn connect_wire(int port, Wire wire, std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  Conn conn(connect_to(port, timeout), wire);
  if (conn.valid() && !conn.handshake(deadline)) conn.reset();
  return conn;
}

bool send_all(Conn& conn, std::string_view data, SteadyClock::time_point deadline) {
  while (!data.empty()) {
    const auto n = conn.send_available(data);
    if (n < 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
    if (data.empty()) break;
    if (!wait_conn(conn, conn.tls() ? conn.wanted() : POLLOUT, deadline)) return false;
  }
  return true;
}

ReadState read_until(Conn& conn, std::string& text, SteadyClock::time_point deadline,
                     const std::function<bool(const std::string&)>& done) {
  while (!done(text)) {
    const auto state = conn.read_available(text);
    if (state != ReadState::open) return state;
    if (done(text)) break;
    if (!wait_conn(conn, conn.tls() ? conn.wanted() : POLLIN, deadline)) return ReadState::open;
  }
  return ReadState::open;
}

Exchange exchange(Wire wire, int port, std::string_view request,
                  std::chrono::milliseconds timeout) {
  if (wire == Wire::plain) return exchange(port, request, timeout);
  Exchange out;
  const auto started = SteadyClock::now();
  const auto deadline = started + timeout;
  auto conn = connect_wire(port, wire, timeout);
  if (conn.valid()) {
    out.connected = true;
    (void)send_all(conn, request, deadline);
    out.end = read_until(conn, out.text, deadline,
                         [](const std::string& text) { return has_complete_response(text); });
    out.status = status_of(out.text);
  }
  out.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - started);
  return out;
}

namespace {

// One connection of open_many/burst on its way: TCP connect, TLS handshake, bytes to send.
struct Opening {
  bool connected = false, ready = false, done = false;
  std::string to_send;
};

}  // namespace

std::vector<Conn> open_many(int port, Wire wire, std::size_t count,
                            const std::function<std::string(std::size_t)>& first_bytes,
                            std::chrono::milliseconds timeout) {
  std::vector<Conn> conns;
  std::vector<Opening> state(count);
  conns.reserve(count);
  for (std::size_t i = 0; i < count; ++i) conns.push_back(connect_started(port, wire));
  const auto deadline = SteadyClock::now() + timeout;
  std::vector<pollfd> fds;
  std::vector<std::size_t> index;
  while (SteadyClock::now() < deadline) {
    fds.clear();
    index.clear();
    for (std::size_t i = 0; i < count; ++i) {
      if (!conns[i].valid() || state[i].done) continue;
      const short events = !state[i].connected ? POLLOUT : conns[i].wanted();
      fds.push_back(pollfd{conns[i].fd(), events, 0});
      index.push_back(i);
    }
    if (fds.empty()) break;
    if (::poll(fds.data(), fds.size(), 100) <= 0) continue;
    for (std::size_t k = 0; k < fds.size(); ++k) {
      if (fds[k].revents == 0) continue;
      const auto i = index[k];
      auto& c = conns[i];
      auto& s = state[i];
      if (!s.connected) {
        if (connect_error(c.fd()) != 0) {
          c.reset();
          continue;
        }
        s.connected = true;
        s.to_send = first_bytes(i);
      }
      if (!s.ready) {
        const int step = c.handshake_step();
        if (step < 0) s.done = true;  // closed by the server: reap_closed counts it
        if (step != 1) continue;
        s.ready = true;
      }
      if (!s.to_send.empty()) {
        const auto n = c.send_available(s.to_send);
        if (n < 0) {
          s.done = true;
          continue;
        }
        s.to_send.erase(0, static_cast<std::size_t>(n));
      }
      if (s.to_send.empty()) s.done = true;
    }
  }
  for (std::size_t i = 0; i < count; ++i) {
    if (!state[i].connected) conns[i].reset();
  }
  return conns;
}

std::size_t reap_closed(std::vector<Conn>& conns) {
  std::size_t closed = 0;
  std::string scratch;
  for (auto& c : conns) {
    if (!c.valid()) continue;
    pollfd p{c.fd(), POLLIN, 0};
    if (::poll(&p, 1, 0) == 1 && c.read_available(scratch) != ReadState::open) {
      c.reset();
      ++closed;
    }
    scratch.clear();
  }
  return closed;
}

std::size_t count_valid(const std::vector<Conn>& conns) {
  return static_cast<std::size_t>(
      std::count_if(conns.begin(), conns.end(), [](const Conn& c) { return c.valid(); }));
}

Burst burst(int port, Wire wire, const std::vector<std::string>& requests,
            std::chrono::milliseconds timeout) {
  Burst out;
  const auto count = requests.size();
  const auto started = SteadyClock::now();
  const auto deadline = started + timeout;
  out.responses.assign(count, {});
  std::vector<Opening> state(count);
  out.conns.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    out.conns.push_back(connect_started(port, wire));
    state[i].to_send = requests[i];
  }
  std::vector<pollfd> fds;
  std::vector<std::size_t> index;
  while (SteadyClock::now() < deadline) {
    fds.clear();
    index.clear();
    for (std::size_t i = 0; i < count; ++i) {
      auto& c = out.conns[i];
      if (!c.valid() || state[i].done) continue;
      short events = POLLIN;
      if (!state[i].connected) {
        events = POLLOUT;
      } else if (c.tls()) {
        events = c.wanted();
      } else if (!state[i].to_send.empty()) {
        events = POLLOUT;
      }
      fds.push_back(pollfd{c.fd(), events, 0});
      index.push_back(i);
    }
    if (fds.empty()) break;
    if (::poll(fds.data(), fds.size(), millis_until(deadline)) <= 0) continue;
    for (std::size_t k = 0; k < fds.size(); ++k) {
      if (fds[k].revents == 0) continue;
      const auto i = index[k];
      auto& c = out.conns[i];
      auto& s = state[i];
      if (!s.connected) {
        if (connect_error(c.fd()) != 0) {
          s.done = true;
          continue;
        }
        s.connected = true;
      }
      if (!s.to_send.empty()) {
        const auto n = c.send_available(s.to_send);
        if (n < 0) {
          s.done = true;
          continue;
        }
        s.to_send.erase(0, static_cast<std::size_t>(n));
        if (!s.to_send.empty()) continue;
      }
      const auto how = c.read_available(out.responses[i]);
      if (has_complete_response(out.responses[i])) {
        s.done = true;
        out.last_answer =
            std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - started);
      } else if (how != ReadState::open) {
        s.done = true;
      }
    }
  }
  return out;
}

}  // namespace tdhook::test
