#include "http/http_loop.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <limits>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace tdhook::receiver {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds accept_grace{200};
constexpr milliseconds sweep_interval{50};
constexpr milliseconds linger_time{500};
// A client that keeps sending after an early answer (413) must get to read it before the close
// resets the connection (a reset discards what it has not read yet): with 1 MiB, a client
// pushing at full speed under ThreadSanitizer lost the answer once (4 ms after it was sent).
constexpr std::size_t linger_bytes = 4 * 1024 * 1024;
constexpr std::size_t read_chunk = 64 * 1024;
// Pipelined input kept while a request is with a worker; beyond it the loop stops reading.
constexpr std::size_t max_buffered_while_busy = 64 * 1024;
// Descriptors kept free for the spool, sinks, scripts and logs.
constexpr rlim_t reserved_fds = 256;

std::string peer_address(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr, text, sizeof text);
  } else if (addr.ss_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr, text,
                sizeof text);
  }
  return text;
}

// Raises the soft descriptor limit to the hard one; returns the connections that fit.
std::size_t connection_capacity(std::size_t wanted) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return wanted;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
    ::getrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur == RLIM_INFINITY) return wanted;
  const rlim_t usable =
      limit.rlim_cur > 2 * reserved_fds ? limit.rlim_cur - reserved_fds : limit.rlim_cur / 2;
  return std::min<std::size_t>(wanted, static_cast<std::size_t>(usable));
}

enum class Phase {
  head,       // waiting for (the rest of) a request head
  body,       // reading a body
  busy,       // the request is with a worker
  writing,    // an answer is being written
  lingering,  // answered without reading the body: dropping what still comes, then close
  streaming,  // a ResponseStream's chunks are written as they come; closed when it ends
};

struct Connection {
  int fd = -1;
  std::uint64_t id = 0;
  std::unique_ptr<Transport> io;  // plain TCP or TLS
  std::string remote;
  Phase phase = Phase::head;
  std::string in;  // received, not yet consumed
  HttpRequest request;
  std::optional<ChunkedDecoder> chunked;
  std::string out;
  std::size_t out_pos = 0;
  std::string interim;  // 100 Continue not yet written; goes out before the answer
  bool close_after_write = false;
  bool peer_closed = false;            // read EOF: answer what was sent, then close
  bool served = false;                 // at least one answer written
  bool head_started = false;           // the first bytes of the next head have arrived
  bool lingering_after_write = false;  // the body was not read: linger before closing
  bool head_only = false;              // HEAD request: no body in the answer
  bool keep_alive = true;              // of the current request
  bool reading = true;                 // EPOLLIN registered
  bool want_write = false;             // EPOLLOUT registered
  bool read_wants_write = false;       // TLS: a read (the handshake) waits for writability
  bool write_wants_read = false;       // TLS: a write waits for readability
  Clock::time_point deadline;
  std::size_t lingered = 0;
  std::shared_ptr<ResponseStream> stream;  // Phase::streaming
  bool stream_ended = false;               // its last chunk is in `out`: close once written
};

// Whether the connection has bytes of an answer to write.
bool has_output(const Connection& c) {
  return c.phase == Phase::writing || (c.phase == Phase::streaming && c.out_pos < c.out.size());
}

constexpr std::string_view last_chunk = "0\r\n\r\n";

struct Completion {
  int fd;
  std::uint64_t id;
  HttpResponse response;
};

}  // namespace

std::string serialize_response(const HttpResponse& response, bool head_only) {
  std::string out;
  out.reserve(160 + response.body.size());
  out += "HTTP/1.1 ";
  out += std::to_string(response.status);
  out += ' ';
  out += status_text(response.status);
  out += "\r\nContent-Type: ";
  out += response.content_type;
  if (response.stream) {
    out += "\r\nTransfer-Encoding: chunked\r\n";
  } else {
    out += "\r\nContent-Length: ";
    out += std::to_string(response.body.size());
    out += "\r\n";
  }
  for (const auto& [name, value] : response.headers) {
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  if (response.close) out += "Connection: close\r\n";
  out += "\r\n";
  if (head_only) return out;
  if (!response.stream) {
    out += response.body;
  } else if (!response.body.empty()) {
    char size[20];
    out.append(size, static_cast<std::size_t>(
                         std::snprintf(size, sizeof size, "%zx\r\n", response.body.size())));
    out += response.body;
    out += "\r\n";
  }
  return out;
}

bool ResponseStream::write(std::string_view data) {
  std::function<void()> notify;
  bool ok = true;
  {
    std::lock_guard lock(mu_);
    if (ended_ || detached_) return false;
    if (data.empty()) return true;
    if (pending_.size() + data.size() > kMaxPending) {
      // The client does not read: the loop drops the connection.
      ended_ = true;
      aborted_ = true;
      ok = false;
      pending_.clear();
    } else {
      char size[20];
      pending_.append(
          size, static_cast<std::size_t>(std::snprintf(size, sizeof size, "%zx\r\n", data.size())));
      pending_ += data;
      pending_ += "\r\n";
    }
    notify = notify_;
  }
  if (notify) notify();
  return ok;
}

void ResponseStream::end() {
  std::function<void()> notify;
  {
    std::lock_guard lock(mu_);
    if (ended_ || detached_) return;
    ended_ = true;
    pending_ += last_chunk;
    notify = notify_;
  }
  if (notify) notify();
}

bool ResponseStream::open() const {
  std::lock_guard lock(mu_);
  return !ended_ && !detached_;
}

std::size_t ResponseStream::pending() const {
  std::lock_guard lock(mu_);
  return pending_.size();
}

void ResponseStream::attach(std::function<void()> notify) {
  std::lock_guard lock(mu_);
  notify_ = std::move(notify);
}

ResponseStream::Taken ResponseStream::take() {
  std::lock_guard lock(mu_);
  Taken taken;
  taken.data.swap(pending_);
  taken.ended = ended_;
  taken.aborted = aborted_;
  return taken;
}

void ResponseStream::detach() {
  std::lock_guard lock(mu_);
  detached_ = true;
  notify_ = nullptr;
  pending_.clear();
}

namespace {

// What every event loop shares: the listening socket, the handler, the worker pool, the
// connection count and the stop flag.
struct Shared {
  HttpLoopOptions options;
  HttpHandler& handler;
  int listen_fd = -1;
  int port = 0;
  std::size_t max_connections = 0;
  std::atomic<std::size_t> open{0};
  std::atomic<std::uint64_t> next_id{1};
  std::atomic<bool> stop_requested{false};
  std::atomic<int> listen_users{0};  // loops that still have the listening socket registered

  std::mutex jobs_mutex;
  std::condition_variable jobs_cv;
  std::deque<std::function<void()>> jobs;
  bool workers_stop = false;
  std::vector<std::thread> workers;

  Shared(const HttpLoopOptions& o, HttpHandler& h) : options(o), handler(h) {}
};

class EventLoop {
 public:
  explicit EventLoop(Shared& shared) : s_(shared) {}
  ~EventLoop() {
    for (auto& [fd, c] : conns_) {
      if (c->stream) c->stream->detach();
      ::close(fd);
    }
    for (int fd : {epoll_fd_, wake_fd_, reserve_fd_}) {
      if (fd >= 0) ::close(fd);
    }
  }
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  Status setup() {
    listen_fd_ = s_.listen_fd;
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (epoll_fd_ < 0 || wake_fd_ < 0) {
      return Error{ErrorCode::invalid_config,
                   std::string("epoll/eventfd: ") + std::strerror(errno)};
    }
    epoll_event ev{};
    // Every loop waits on the one listening socket; EPOLLEXCLUSIVE wakes one of them per
    // connection instead of all.
    ev.events = EPOLLIN | EPOLLEXCLUSIVE;
    ev.data.fd = listen_fd_;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev) != 0) {
      return Error{ErrorCode::invalid_config, std::string("epoll_ctl: ") + std::strerror(errno)};
    }
    s_.listen_users.fetch_add(1);
    listening_ = true;
    ev.events = EPOLLIN;
    ev.data.fd = wake_fd_;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
    scratch_.resize(read_chunk);
    return Ok{};
  }

  // Answers connection (fd, id) with `response`: from the loop's own thread or any other.
  void post(int fd, std::uint64_t id, HttpResponse response) {
    {
      std::lock_guard lock(done_mutex_);
      done_.push_back(Completion{fd, id, std::move(response)});
    }
    if (std::this_thread::get_id() != thread_id_) wake();
  }

  // A stream of connection (fd, id) has something to send.
  void stream_ready(int fd, std::uint64_t id) {
    {
      std::lock_guard lock(done_mutex_);
      streams_ready_.emplace_back(fd, id);
    }
    if (std::this_thread::get_id() != thread_id_) wake();
  }

  void wake() noexcept {
    if (wake_pending_.exchange(true)) return;
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wake_fd_, &one, sizeof one);
  }

  bool run() {
    thread_id_ = std::this_thread::get_id();
    ::pthread_setname_np(::pthread_self(), "tdhook-http");
    epoll_event events[256];
    auto next_sweep = Clock::now() + sweep_interval;
    while (true) {
      if (s_.stop_requested.load() && !draining_) {
        draining_ = true;
        drain_started_ = Clock::now();
      }
      if (draining_ && drain_step()) return true;
      const int n = ::epoll_wait(epoll_fd_, events, 256, static_cast<int>(sweep_interval.count()));
      if (n < 0 && errno != EINTR) return false;
      for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        if (fd == listen_fd_ && listening_) {
          // One connection per wake-up: while this loop serves it, another loop takes the
          // next, so that a burst of keep-alive connections does not all land on one thread.
          accept_some(1);
        } else if (fd == wake_fd_) {
          std::uint64_t value = 0;
          [[maybe_unused]] const auto r = ::read(wake_fd_, &value, sizeof value);
          wake_pending_.store(false);
        } else {
          on_event(fd, events[i].events);
        }
      }
      take_completions();
      const auto now = Clock::now();
      if (now >= next_sweep) {
        sweep(now);
        next_sweep = now + sweep_interval;
      }
    }
  }

 private:
  // True when the drain is complete: not listening, no connection, no answer outstanding.
  bool drain_step() {
    if (listening_ && Clock::now() - drain_started_ >= accept_grace) {
      accept_all();  // what already waits in the backlog is served
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
      listening_ = false;
      if (s_.listen_users.fetch_sub(1) == 1) ::close(listen_fd_);
    }
    // Idle keep-alive connections are closed once the grace is over, not at once: a client may
    // have sent its next request just before the signal, and that request is answered (with
    // Connection: close). Bytes already waiting on a connection also keep it open.
    if (listening_) return false;
    std::vector<int> streaming;
    for (auto& [fd, c] : conns_) {
      if (c->phase == Phase::streaming && !c->stream_ended) streaming.push_back(fd);
    }
    for (int fd : streaming) end_stream(*find(fd));
    std::vector<int> idle;
    for (auto& [fd, c] : conns_) {
      char byte = 0;
      if (c->phase == Phase::head && c->in.empty() && c->served &&
          ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) <= 0) {
        idle.push_back(fd);
      }
    }
    for (int fd : idle) close_connection(fd);
    return conns_.empty() && outstanding_ == 0;
  }

  void accept_all() { accept_some(std::numeric_limits<std::size_t>::max()); }

  void accept_some(std::size_t most) {
    for (std::size_t taken = 0; listening_ && taken < most;) {
      sockaddr_storage addr{};
      socklen_t len = sizeof addr;
      const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len,
                               SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if ((errno == EMFILE || errno == ENFILE) && reserve_fd_ >= 0) {
          // Out of descriptors: take the connection off the backlog and close it, rather than
          // leaving the listening socket readable forever.
          ::close(reserve_fd_);
          const int extra = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
          if (extra >= 0) ::close(extra);
          reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
          continue;
        }
        return;  // EAGAIN (another loop took it), or an error the next readiness shows again
      }
      // The place is taken before the check: two loops accepting at once must not both see
      // the last free place.
      if (s_.open.fetch_add(1) >= s_.max_connections) {
        s_.open.fetch_sub(1);
        ::close(fd);
        continue;
      }
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto c = std::make_unique<Connection>();
      c->fd = fd;
      c->id = s_.next_id.fetch_add(1);
      c->remote = peer_address(addr);
      if (s_.options.tls) {
        const auto context = s_.options.tls();
        if (context) c->io = context->accept(fd);
        if (!c->io) {
          s_.open.fetch_sub(1);
          ::close(fd);
          continue;
        }
        // The handshake and the first request head share one read timeout, counted from
        // here: a client that dribbles its ClientHello is closed like a slowloris head.
        c->head_started = true;
        c->deadline = Clock::now() + s_.options.read_timeout;
      } else {
        c->io = std::make_unique<PlainTransport>(fd);
        // A new connection gets a little longer than a read timeout to send its first request.
        c->deadline = Clock::now() + s_.options.read_timeout + std::chrono::seconds(1);
      }
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.fd = fd;
      if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
        s_.open.fetch_sub(1);
        ::close(fd);
        continue;
      }
      conns_.emplace(fd, std::move(c));
      ++taken;
      // A client usually sends its request right after connecting (Tiledesk opens a
      // connection per notification): read it now rather than after another epoll_wait. When
      // nothing is there yet, recv() says EAGAIN and the readiness comes later as usual.
      on_event(fd, EPOLLIN);
    }
  }

  Connection* find(int fd) {
    const auto it = conns_.find(fd);
    return it == conns_.end() ? nullptr : it->second.get();
  }

  void close_connection(int fd) {
    const auto it = conns_.find(fd);
    if (it == conns_.end()) return;
    if (it->second->phase == Phase::busy) {
      // Its answer is still to come: forget the connection when it does.
      it->second->peer_closed = true;
      set_interest(*it->second, false, false);
      return;
    }
    if (it->second->stream) it->second->stream->detach();
    it->second->io->close_notify();
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    ::close(fd);
    conns_.erase(it);
    s_.open.fetch_sub(1);
  }

  void set_interest(Connection& c, bool read, bool write) {
    if (c.reading == read && c.want_write == write) return;
    c.reading = read;
    c.want_write = write;
    epoll_event ev{};
    ev.events = (read ? EPOLLIN | EPOLLRDHUP : 0u) | (write ? EPOLLOUT : 0u);
    ev.data.fd = c.fd;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
  }

  void on_event(int fd, std::uint32_t events) {
    Connection* c = find(fd);
    if (c == nullptr) return;
    if ((events & EPOLLOUT) != 0u) {
      if (c->read_wants_write) {
        c->read_wants_write = false;
        set_interest(*c, c->reading, has_output(*c) || !c->interim.empty());
        on_readable(*c);
        c = find(fd);
        if (c == nullptr) return;
      }
      if (!c->interim.empty() && c->phase != Phase::writing) send_interim(*c);
      if (has_output(*c)) {
        if (!flush(*c)) return;
        c = find(fd);
        if (c == nullptr) return;
      }
    }
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) == 0u) return;
    if (c->write_wants_read && has_output(*c)) {
      c->write_wants_read = false;
      if (!flush(*c)) return;
      c = find(fd);
      if (c == nullptr) return;
    }
    if (c->reading) on_readable(*c);
  }

  void on_readable(Connection& c) {
    const int fd = c.fd;
    if (c.phase == Phase::lingering) return linger(c);
    const auto got = c.io->read(scratch_.data(), scratch_.size());
    if (got.status == IoStatus::want_read) return;
    if (got.status == IoStatus::want_write) {
      c.read_wants_write = true;
      set_interest(c, c.reading, true);
      return;
    }
    if (got.status == IoStatus::failed && s_.options.on_tls_failure) {
      if (const auto why = c.io->handshake_failure(); !why.empty()) s_.options.on_tls_failure(why);
    }
    if (got.status != IoStatus::done) return peer_ended(fd);  // EOF or reset
    if (c.phase == Phase::streaming) {
      if (got.ended) peer_ended(fd);
      return;  // nothing more is read on a stream
    }
    c.in.append(scratch_.data(), got.bytes);
    if (c.phase == Phase::busy || c.phase == Phase::writing) {
      if (c.in.size() > max_buffered_while_busy) set_interest(c, false, c.want_write);
    } else {
      process_input(c);
    }
    if (got.ended) peer_ended(fd);
  }

  // The peer ended the connection (EOF, reset, TLS close_notify), perhaps after what was just
  // read: a request with the handler or being written still gets its answer (a client may
  // half-close after sending), then the connection closes; anything else closes now.
  void peer_ended(int fd) {
    Connection* c = find(fd);
    if (c == nullptr) return;
    c->peer_closed = true;
    if (c->phase == Phase::busy || c->phase == Phase::writing) {
      set_interest(*c, false, c->want_write);
      return;
    }
    close_connection(fd);
  }

  // Advances the connection through what is buffered: at most one request at a time.
  void process_input(Connection& c) {
    if (c.phase == Phase::head) {
      if (c.in.empty()) return;
      HttpRequestHead head;
      const auto parsed = parse_request_head(c.in, s_.options.limits, head);
      if (parsed.state == HeadParse::State::incomplete) {
        if (!c.head_started) {
          c.head_started = true;
          c.deadline = Clock::now() + s_.options.read_timeout;
        }
        return;
      }
      if (parsed.state == HeadParse::State::error) return refuse(c, parsed.error);
      c.in.erase(0, parsed.consumed);
      c.head_started = false;
      if (!start_request(c, std::move(head))) return;
    }
    if (c.phase == Phase::body) read_body(c);
  }

  // After a complete head: limits, early answers, 100-continue. False when answered already.
  bool start_request(Connection& c, HttpRequestHead head) {
    const bool has_body = head.chunked || head.content_length > 0;
    c.head_only = head.method == "HEAD";
    c.keep_alive = head.keep_alive;
    if (!head.chunked && head.content_length > s_.options.limits.max_body) {
      refuse(c, HttpError{413, "body_too_large", "Content-Length larger than --max-body"});
      return false;
    }
    if (auto early = s_.handler.on_head(head, c.remote)) {
      if (has_body) early->close = true;
      answer(c, std::move(*early), /*body_unread=*/has_body);
      return false;
    }
    c.request.head = std::move(head);
    c.request.body.clear();
    c.request.remote = c.remote;
    c.chunked.reset();
    if (c.request.head.chunked) {
      c.chunked.emplace(s_.options.limits.max_body);
    } else {
      // Grow with what arrives: an announced length alone does not get memory.
      c.request.body.reserve(static_cast<std::size_t>(
          std::min<std::uint64_t>(c.request.head.content_length, read_chunk)));
    }
    if (c.request.head.expect_continue && has_body && c.in.empty()) {
      c.interim = "HTTP/1.1 100 Continue\r\n\r\n";
      send_interim(c);
    }
    c.phase = Phase::body;
    c.deadline = Clock::now() + s_.options.read_timeout;
    return true;
  }

  // Moves body bytes out of `in`; hands the request to the handler when it is complete.
  void read_body(Connection& c) {
    auto& body = c.request.body;
    if (c.chunked) {
      std::size_t consumed = 0;
      const auto status = c.chunked->feed(c.in, body, consumed);
      c.in.erase(0, consumed);
      if (status == ChunkedDecoder::Status::error) return refuse(c, c.chunked->error());
      if (status == ChunkedDecoder::Status::more) {
        c.deadline = Clock::now() + s_.options.read_timeout;
        return;
      }
    } else {
      const auto want = c.request.head.content_length - body.size();
      const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(want, c.in.size()));
      body.append(c.in, 0, take);
      c.in.erase(0, take);
      if (body.size() < c.request.head.content_length) {
        c.deadline = Clock::now() + s_.options.read_timeout;
        return;
      }
    }
    dispatch(c);
  }

  void dispatch(Connection& c) {
    c.phase = Phase::busy;
    ++outstanding_;
    HttpRequest request = std::move(c.request);
    c.request = HttpRequest{};
    const int fd = c.fd;
    const std::uint64_t id = c.id;
    try {
      s_.handler.handle(
          request, [this, fd, id](HttpResponse response) { post(fd, id, std::move(response)); });
    } catch (...) {
      post(fd, id,
           HttpResponse{500,
                        "application/json",
                        R"({"ok":false,"error":"internal_error"})",
                        {},
                        true,
                        nullptr});
    }
  }

  void take_completions() {
    {
      std::lock_guard lock(done_mutex_);
      if (done_.empty() && streams_ready_.empty()) return;
      ready_.swap(done_);
      streams_taken_.swap(streams_ready_);
    }
    for (const auto& [fd, id] : streams_taken_) {
      Connection* c = find(fd);
      if (c != nullptr && c->id == id && c->phase == Phase::streaming) pull_stream(*c);
    }
    streams_taken_.clear();
    for (auto& completion : ready_) {
      --outstanding_;
      Connection* c = find(completion.fd);
      if (c == nullptr || c->id != completion.id || c->phase != Phase::busy) continue;
      answer(*c, std::move(completion.response), false);
    }
    ready_.clear();
  }

  // Queues an answer and writes what the socket takes now.
  void answer(Connection& c, HttpResponse response, bool body_unread) {
    // A streamed answer closes the connection when it ends.
    if (draining_ || c.peer_closed || !c.keep_alive || response.stream) response.close = true;
    c.close_after_write = response.close;
    c.lingering_after_write = body_unread;
    c.out = serialize_response(response, c.head_only);
    if (!c.interim.empty()) {
      // What is left of a 100 Continue goes first (over TLS: the record already made).
      c.out.insert(0, c.interim);
      c.interim.clear();
    }
    c.out_pos = 0;
    c.deadline = Clock::now() + s_.options.write_timeout;
    if (response.stream) return start_stream(c, std::move(response.stream));
    c.phase = Phase::writing;
    flush(c);
  }

  // After a streamed answer's head (and its body as the first chunk): what the stream is given,
  // until it ends.
  void start_stream(Connection& c, std::shared_ptr<ResponseStream> stream) {
    if (c.head_only || draining_ || c.peer_closed) {
      // Nothing to stream to: the head (and what the body holds) and the end.
      stream->detach();
      if (!c.head_only) c.out += last_chunk;
      c.phase = Phase::writing;
      flush(c);
      return;
    }
    c.phase = Phase::streaming;
    c.stream = std::move(stream);
    c.stream_ended = false;
    const int fd = c.fd;
    const std::uint64_t id = c.id;
    c.stream->attach([this, fd, id] { stream_ready(fd, id); });
    pull_stream(c);  // what was written before the answer went out
  }

  // Moves what the stream was given into the output and writes it.
  void pull_stream(Connection& c) {
    auto taken = c.stream->take();
    if (taken.aborted) return close_connection(c.fd);
    if (taken.ended) c.stream_ended = true;
    if (!taken.data.empty()) {
      if (c.out_pos >= c.out.size()) {
        c.out = std::move(taken.data);
        c.out_pos = 0;
        c.deadline = Clock::now() + s_.options.write_timeout;
      } else {
        c.out += taken.data;
      }
      if (c.out.size() - c.out_pos > ResponseStream::kMaxPending) return close_connection(c.fd);
    }
    if (c.out_pos < c.out.size() || c.stream_ended) flush(c);
  }

  // The drain ends a stream from the loop's side: its last chunk, then the close.
  void end_stream(Connection& c) {
    c.stream->detach();
    c.stream_ended = true;
    if (c.out_pos >= c.out.size()) {
      c.out.assign(last_chunk);
      c.out_pos = 0;
      c.deadline = Clock::now() + s_.options.write_timeout;
    } else {
      c.out += last_chunk;
    }
    flush(c);
  }

  // Refuses what the loop could not take: the handler words the answer; then the connection
  // closes (after draining a little of what the client still sends).
  void refuse(Connection& c, const HttpError& error) {
    auto response = s_.handler.on_error(error, c.remote);
    response.close = true;
    answer(c, std::move(response), true);
  }

  // Writes an interim answer (100 Continue) while the body is read; what the socket does not
  // take now goes out on writability, or before the answer.
  void send_interim(Connection& c) {
    while (!c.interim.empty()) {
      const auto put = c.io->write(c.interim.data(), c.interim.size());
      if (put.status == IoStatus::done) {
        c.interim.erase(0, put.bytes);
        continue;
      }
      if (put.status == IoStatus::want_write) set_interest(c, c.reading, true);
      if (put.status == IoStatus::closed || put.status == IoStatus::failed) c.interim.clear();
      return;  // want_read: left for the answer
    }
    if (c.want_write && !c.read_wants_write) set_interest(c, c.reading, false);
  }

  // Writes pending output. False when the connection was closed.
  bool flush(Connection& c) {
    const int fd = c.fd;
    while (c.out_pos < c.out.size()) {
      const auto put = c.io->write(c.out.data() + c.out_pos, c.out.size() - c.out_pos);
      if (put.status == IoStatus::want_write) {
        set_interest(c, c.reading, true);
        return true;
      }
      if (put.status == IoStatus::want_read) {
        c.write_wants_read = true;
        set_interest(c, true, false);
        return true;
      }
      if (put.status != IoStatus::done) {
        close_connection(fd);
        return false;
      }
      c.out_pos += put.bytes;
      c.deadline = Clock::now() + s_.options.write_timeout;
    }
    c.out.clear();
    c.out_pos = 0;
    c.served = true;
    if (c.phase == Phase::streaming && !c.stream_ended) {
      // Everything given is written: wait for more (the write timeout no longer runs), and
      // keep reading to see the peer close.
      c.deadline = Clock::time_point::max();
      set_interest(c, true, false);
      return true;
    }
    if (c.close_after_write || c.peer_closed) {
      if (c.lingering_after_write && !c.peer_closed) {
        start_linger(c);
      } else {
        close_connection(fd);
      }
      return false;
    }
    c.phase = Phase::head;
    c.head_only = false;
    c.deadline = Clock::now() + s_.options.keep_alive_timeout;
    set_interest(c, true, false);
    if (!c.in.empty()) process_input(c);
    return find(fd) != nullptr;
  }

  void start_linger(Connection& c) {
    c.io->shutdown_write();
    c.phase = Phase::lingering;
    c.lingered = 0;
    c.in.clear();
    c.deadline = Clock::now() + linger_time;
    set_interest(c, true, false);
  }

  // Drops what still comes (over TLS, without decrypting it).
  void linger(Connection& c) {
    const auto n = ::recv(c.fd, scratch_.data(), scratch_.size(), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n > 0) c.lingered += static_cast<std::size_t>(n);
    if (n <= 0 || c.lingered >= linger_bytes) close_connection(c.fd);
  }

  void sweep(Clock::time_point now) {
    std::vector<int> expired;
    for (auto& [fd, c] : conns_) {
      if (c->phase != Phase::busy && now >= c->deadline) expired.push_back(fd);
    }
    for (int fd : expired) {
      Connection* c = find(fd);
      if (c == nullptr) continue;
      const bool mid_request =
          (c->phase == Phase::head && !c->in.empty()) || c->phase == Phase::body;
      if (mid_request) {
        // Too slow (slowloris, or a stalled body): say so and close.
        refuse(*c, HttpError{408, "request_timeout", "request not received in time"});
      } else {
        close_connection(fd);  // idle keep-alive, stalled write, linger over
      }
    }
  }

  Shared& s_;
  int listen_fd_ = -1;  // shared by every loop; closed by the last one to stop listening
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  int reserve_fd_ = -1;  // given up to accept-and-close when out of descriptors
  bool listening_ = false;
  bool draining_ = false;
  Clock::time_point drain_started_;
  std::thread::id thread_id_;
  std::unordered_map<int, std::unique_ptr<Connection>> conns_;
  std::size_t outstanding_ = 0;  // requests with the handler, answer not yet taken
  std::string scratch_;

  std::mutex done_mutex_;
  std::vector<Completion> done_, ready_;
  std::vector<std::pair<int, std::uint64_t>> streams_ready_, streams_taken_;
  std::atomic<bool> wake_pending_{false};
};

Result<int> listen_on(const HttpLoopOptions& options, int& port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const auto service = std::to_string(options.port);
  const char* host = options.host.empty() || options.host == "*" ? nullptr : options.host.c_str();
  if (::getaddrinfo(host, service.c_str(), &hints, &found) != 0 || found == nullptr) {
    return Error{ErrorCode::invalid_config, "cannot resolve " + options.host};
  }
  int fd = -1;
  for (auto* ai = found; ai != nullptr; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, options.backlog) == 0) break;
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(found);
  if (fd < 0) {
    return Error{ErrorCode::invalid_config, "cannot listen on " + options.host + ":" + service +
                                                " (address in use or not available)"};
  }
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  port = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                          : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  return fd;
}

}  // namespace

struct HttpLoop::Impl {
  Shared shared;
  std::vector<std::unique_ptr<EventLoop>> loops;

  Impl(const HttpLoopOptions& options, HttpHandler& handler) : shared(options, handler) {}
  ~Impl() {
    stop_workers();
    // A loop that never ran still holds the listening socket.
    if (shared.listen_users.load() > 0) ::close(shared.listen_fd);
    loops.clear();
  }

  void work() {
    std::unique_lock lock(shared.jobs_mutex);
    while (true) {
      shared.jobs_cv.wait(lock, [this] { return shared.workers_stop || !shared.jobs.empty(); });
      if (shared.jobs.empty()) return;
      auto job = std::move(shared.jobs.front());
      shared.jobs.pop_front();
      lock.unlock();
      try {
        job();
      } catch (...) {
        // A task answers its own request; one that throws has a bug, the loop lives on.
      }
      lock.lock();
    }
  }

  void stop_workers() {
    {
      std::lock_guard lock(shared.jobs_mutex);
      shared.workers_stop = true;
    }
    shared.jobs_cv.notify_all();
    for (auto& t : shared.workers) t.join();
    shared.workers.clear();
  }
};

HttpLoop::HttpLoop(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpLoop::~HttpLoop() = default;

Result<std::unique_ptr<HttpLoop>> HttpLoop::bind(const HttpLoopOptions& options,
                                                 HttpHandler& handler) {
  auto impl = std::make_unique<Impl>(options, handler);
  auto& shared = impl->shared;
  auto fd = listen_on(options, shared.port);
  if (!fd) return std::move(fd).error();
  shared.listen_fd = *fd;
  shared.max_connections = connection_capacity(options.max_connections);
  std::size_t loops = options.loops;
  if (loops == 0) loops = std::clamp<std::size_t>(std::thread::hardware_concurrency(), 1, 16);
  for (std::size_t i = 0; i < loops; ++i) {
    auto loop = std::make_unique<EventLoop>(shared);
    if (auto st = loop->setup(); !st) return std::move(st).error();
    impl->loops.push_back(std::move(loop));
  }
  return std::unique_ptr<HttpLoop>(new HttpLoop(std::move(impl)));
}

int HttpLoop::port() const noexcept { return impl_->shared.port; }

bool HttpLoop::run() {
  auto& impl = *impl_;
  const auto workers = std::max<std::size_t>(1, impl.shared.options.workers);
  for (std::size_t i = 0; i < workers; ++i)
    impl.shared.workers.emplace_back([&impl] { impl.work(); });
  std::vector<std::thread> others;
  std::atomic<bool> all_ok{true};
  for (std::size_t i = 1; i < impl.loops.size(); ++i) {
    others.emplace_back([&impl, &all_ok, i] {
      if (!impl.loops[i]->run()) all_ok.store(false);
    });
  }
  const bool ok = impl.loops[0]->run();
  for (auto& t : others) t.join();
  impl.stop_workers();
  return ok && all_ok.load();
}

void HttpLoop::shutdown() noexcept {
  impl_->shared.stop_requested.store(true);
  for (auto& loop : impl_->loops) loop->wake();
}

std::size_t HttpLoop::connections() const noexcept { return impl_->shared.open.load(); }

void HttpLoop::run_blocking(std::function<void()> task) {
  {
    std::lock_guard lock(impl_->shared.jobs_mutex);
    impl_->shared.jobs.push_back(std::move(task));
  }
  impl_->shared.jobs_cv.notify_one();
}

}  // namespace tdhook::receiver
