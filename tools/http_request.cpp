#include "http_request.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>

namespace tdhook::tools {
namespace {

using receiver::ChunkedDecoder;
using receiver::HeadParse;
using receiver::Syntax;

Error bad(std::string detail) { return Error{ErrorCode::invalid_input, std::move(detail)}; }

// A captured file is bounded by what was read (verify reads at most 64 MiB), so the receiver's
// limits, made for the network, do not apply.
receiver::HttpLimits file_limits(std::size_t size) {
  receiver::HttpLimits limits;
  limits.max_request_line = limits.max_head = size + 2;
  limits.max_fields = std::numeric_limits<std::size_t>::max();
  limits.max_body = size;
  return limits;
}

Result<std::string> request_body(const receiver::HttpRequestHead& head, std::string_view rest) {
  if (head.chunked) {
    ChunkedDecoder decoder(rest.size(), Syntax::lenient);
    std::string body;
    std::size_t used = 0;
    const auto status = decoder.feed(rest, body, used);
    // Trailer fields, or a file that stops right after the last chunk, are not part of the body.
    if (decoder.body_complete()) return body;
    if (status == ChunkedDecoder::Status::error) return bad(describe(decoder.error()));
    return bad("the chunked body ends before its last chunk");
  }
  if (head.find("content-length") == nullptr) return std::string(rest);
  if (rest.size() < head.content_length) {
    return bad("the body is shorter than its Content-Length (" + std::to_string(rest.size()) +
               " of " + std::to_string(head.content_length) + " bytes)");
  }
  // Bytes after Content-Length (an editor's final newline) are not part of the request.
  return std::string(rest.substr(0, static_cast<std::size_t>(head.content_length)));
}

}  // namespace

std::string describe(const receiver::HttpError& error) {
  std::string out = error.line == 0 ? "" : "line " + std::to_string(error.line) + ": ";
  return out.append(error.detail);
}

Result<RawRequest> parse_raw_request(std::string_view text) {
  if (text.empty()) return bad("the request is empty");
  RawRequest request;
  auto parsed =
      receiver::parse_request_head(text, file_limits(text.size()), request.head, Syntax::lenient);
  std::string_view rest;
  if (parsed.state == HeadParse::State::complete) {
    rest = text.substr(parsed.consumed);
  } else if (parsed.state == HeadParse::State::incomplete) {
    // A file that ends after its fields, without the blank line, is a request without a body.
    const std::string closed = std::string(text) + "\n\n";
    parsed = receiver::parse_request_head(closed, file_limits(closed.size()), request.head,
                                          Syntax::lenient);
    if (parsed.state == HeadParse::State::incomplete) {
      return bad("the request has no request line");
    }
  }
  if (parsed.state == HeadParse::State::error) return bad(describe(parsed.error));
  auto body = request_body(request.head, rest);
  if (!body) return std::move(body).error();
  request.body = std::move(*body);
  return request;
}

}  // namespace tdhook::tools

namespace tdhook::tools {
namespace {

constexpr std::size_t kMaxResponse = std::size_t{64} << 20;
constexpr std::size_t kMaxHead = 65536;

class SocketReader {
 public:
  SocketReader(int fd, std::optional<SteadyTime> deadline) : fd_(fd), deadline_(deadline) {}
  std::string buf;
  bool eof = false;
  // Reads more bytes: 0 (some bytes, or EOF: see eof) or an errno value.
  int fill() {
    if (buf.size() > kMaxResponse) return EMSGSIZE;
    char chunk[16384];
    while (true) {
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n > 0) {
        buf.append(chunk, static_cast<std::size_t>(n));
        return 0;
      }
      if (n == 0) {
        eof = true;
        return 0;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return errno;
      if (const int err = wait_fd(fd_, POLLIN, deadline_); err != 0) return err;
    }
  }

 private:
  int fd_;
  std::optional<SteadyTime> deadline_;
};

std::string read_error(int err, std::string_view at_eof) {
  if (err == 0) return std::string(at_eof);
  if (err == ETIMEDOUT) return "ETIMEDOUT (no response within the timeout)";
  if (err == EMSGSIZE) return "response too large";
  return "read " + errno_name(err);
}

// Decodes the chunked body as it arrives; false on a transport failure (error set).
bool read_chunked(SocketReader& in, std::string& body, std::string& error) {
  ChunkedDecoder decoder(kMaxResponse, Syntax::lenient);
  while (true) {
    std::size_t used = 0;
    const auto status = decoder.feed(in.buf, body, used);
    in.buf.erase(0, used);
    if (status == ChunkedDecoder::Status::done) return true;
    if (status == ChunkedDecoder::Status::error) {
      error = decoder.error().status == 413
                  ? "response too large"
                  : "malformed chunked response: " + describe(decoder.error());
      return false;
    }
    if (const int err = in.fill(); err != 0 || in.eof) {
      error = read_error(err, "socket hang up (truncated chunked body)");
      return false;
    }
  }
}

// Reads the body as the head frames it; false on a transport failure (error set).
bool read_body(SocketReader& in, ReceivedResponse& out, std::string& error) {
  const auto& head = out.head;
  if (head.status == 204 || head.status == 304) return true;
  if (head.chunked) return read_chunked(in, out.body, error);
  int err = 0;
  if (head.content_length) {
    if (*head.content_length > kMaxResponse) {
      error = "response too large";
      return false;
    }
    const auto n = static_cast<std::size_t>(*head.content_length);
    while (in.buf.size() < n) {
      if ((err = in.fill()) != 0 || in.eof) {
        error = read_error(err, "socket hang up (truncated body)");
        return false;
      }
    }
    out.body = in.buf.substr(0, n);
    return true;
  }
  while (!in.eof) {
    if ((err = in.fill()) != 0) {
      error = read_error(err, "");
      return false;
    }
  }
  out.body = std::move(in.buf);
  out.reusable = false;  // the body ended with the connection
  return true;
}

}  // namespace

int wait_fd(int fd, short events, std::optional<SteadyTime> deadline) {
  pollfd p{fd, events, 0};
  while (true) {
    int timeout_ms = -1;
    if (deadline) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(
          *deadline - std::chrono::steady_clock::now());
      timeout_ms = static_cast<int>(std::clamp<std::int64_t>(left.count(), 0, 1 << 30));
    }
    const int n = ::poll(&p, 1, timeout_ms);
    if (n > 0) return 0;
    if (n == 0) return ETIMEDOUT;
    if (errno != EINTR) return errno;
  }
}

std::string errno_name(int err) {
  switch (err) {
    case ECONNREFUSED:
      return "ECONNREFUSED";
    case ECONNRESET:
      return "ECONNRESET";
    case ETIMEDOUT:
      return "ETIMEDOUT";
    case EHOSTUNREACH:
      return "EHOSTUNREACH";
    case ENETUNREACH:
      return "ENETUNREACH";
    case EPIPE:
      return "EPIPE";
    case EADDRNOTAVAIL:
      return "EADDRNOTAVAIL";
    default:
      return std::strerror(err);
  }
}

ReadOutcome read_response(int fd, std::optional<SteadyTime> deadline, ReceivedResponse& out,
                          std::string& error) {
  SocketReader in(fd, deadline);
  receiver::HttpLimits limits;
  limits.max_request_line = limits.max_head = kMaxHead;
  limits.max_fields = kMaxHead;  // the head's size bounds them
  while (true) {
    HeadParse parsed;
    while ((parsed = receiver::parse_response_head(in.buf, limits, out.head)).state ==
           HeadParse::State::incomplete) {
      const int err = in.fill();
      if (err != 0 || in.eof) {
        error = read_error(err, "socket hang up");
        const bool nothing = in.buf.empty() && (err == 0 || err == ECONNRESET);
        return nothing ? ReadOutcome::closed_before_response : ReadOutcome::failed;
      }
    }
    if (parsed.state == HeadParse::State::error) {
      error = "malformed response: " + describe(parsed.error);
      return ReadOutcome::failed;
    }
    in.buf.erase(0, parsed.consumed);
    // Interim responses (100 Continue, 103 Early Hints) are followed by the real one.
    const int status = out.head.status;
    if (status >= 100 && status < 200 && status != 101) continue;
    out.reusable = out.head.keep_alive;
    return read_body(in, out, error) ? ReadOutcome::ok : ReadOutcome::failed;
  }
}

}  // namespace tdhook::tools
