#pragma once
// Raw-socket helpers for hostile-client tests of the receiver: many non-blocking connections
// driven by one poll loop, byte-exact requests (malformed ones included), and a look at the
// receiver process from outside (open descriptors, still alive).
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

namespace tdhook::test {

// An owned socket descriptor; closes on destruction.
class RawSocket {
 public:
  RawSocket() = default;
  explicit RawSocket(int fd) : fd_(fd) {}
  ~RawSocket() { reset(); }
  RawSocket(RawSocket&& other) noexcept : fd_(other.release()) {}
  RawSocket& operator=(RawSocket&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = other.release();
    }
    return *this;
  }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;

  int fd() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  int release() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset() noexcept;

 private:
  int fd_ = -1;
};

// A non-blocking TCP socket connecting to 127.0.0.1:port (the connect may still be in
// progress: wait for POLLOUT, then connect_error()). Invalid when the socket cannot be made.
RawSocket connect_nonblocking(int port);
// 0 once a non-blocking connect succeeded, else its errno (SO_ERROR).
int connect_error(int fd);
// A connected non-blocking socket, or an invalid one when the connect fails within `timeout`.
RawSocket connect_to(int port, std::chrono::milliseconds timeout = std::chrono::seconds(5));

// What happened to a connection when reading from it.
enum class ReadState { open, eof, reset };
// Reads what is available now (never blocks) and appends it to `into`.
ReadState read_available(int fd, std::string& into);
// Sends as much of `data` as the socket takes now; returns the bytes sent, or -1 with `errno`
// when the peer is gone (EPIPE, ECONNRESET).
long send_available(int fd, std::string_view data);
// Sends all of `data` before `deadline`; false when the peer is gone or time runs out.
bool send_all(int fd, std::string_view data, std::chrono::steady_clock::time_point deadline);

// Reads until `done(text)` holds, EOF, reset or `deadline`; returns what the socket reached.
template <class Done>
ReadState read_until(int fd, std::string& text, std::chrono::steady_clock::time_point deadline,
                     Done done);

// A complete HTTP response at the start of `text`: the head and Content-Length bytes of body.
bool has_complete_response(std::string_view text);
// The status code of the first response in `text`, 0 when there is none.
int status_of(std::string_view text);
// The body of the first complete response in `text` ("" when incomplete).
std::string body_of(std::string_view text);
// The value of header `name` (case-insensitive) in the first response's head, "" if absent.
std::string header_of(std::string_view text, std::string_view name);

// One request on a fresh connection: connects (bounded), sends `request`, reads until one
// complete response, EOF, reset or the timeout. `elapsed` counts from before the connect.
struct Exchange {
  bool connected = false;
  int status = 0;  // 0: no response
  std::string text;
  ReadState end = ReadState::open;  // what the socket reached when reading stopped
  std::chrono::milliseconds elapsed{0};
};
Exchange exchange(int port, std::string_view request,
                  std::chrono::milliseconds timeout = std::chrono::seconds(5));

// POST `path` with Tiledesk's headers (secret, JSON) and `body`; `extra` is inserted as-is
// before the blank line (each field ending in CRLF).
std::string tiledesk_request(const std::string& body, const std::string& secret,
                             const std::string& extra = "Connection: close\r\n",
                             const std::string& path = "/");

// Open descriptors of process `pid` (entries of /proc/<pid>/fd); 0 when unreadable.
std::size_t open_fd_count(pid_t pid);
// True while `pid` exists and is not a zombie.
bool process_running(pid_t pid);
// Raises this process's soft RLIMIT_NOFILE to at least `want` (within the hard limit); returns
// the soft limit in force afterwards. Child processes started later inherit it.
std::size_t raise_fd_limit(std::size_t want);

// --- template definitions ---------------------------------------------------------------------

int wait_readable(int fd, std::chrono::steady_clock::time_point deadline);
// Milliseconds from now until `deadline`, for poll(): 0 when past, at most a minute.
int millis_until(std::chrono::steady_clock::time_point deadline);

template <class Done>
ReadState read_until(int fd, std::string& text, std::chrono::steady_clock::time_point deadline,
                     Done done) {
  while (!done(text)) {
    if (wait_readable(fd, deadline) <= 0) return ReadState::open;
    const auto state = read_available(fd, text);
    if (state != ReadState::open) return state;
  }
  return ReadState::open;
}

}  // namespace tdhook::test
