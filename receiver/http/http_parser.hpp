#pragma once
// HTTP/1.1 request parsing for the receiver's event loop (http_loop.cpp): the request head
// (request line and header fields) and chunked bodies, incrementally, with hard limits.
//
// Strict on purpose: a webhook receiver talks to one kind of client, and every ambiguity that
// lets two parsers disagree about where a request ends (bare LF, obs-fold, Content-Length next
// to Transfer-Encoding, differing Content-Length values) is refused with 400, not guessed.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tdhook::receiver {

struct HttpLimits {
  std::size_t max_request_line = 8 * 1024;  // 414 beyond
  std::size_t max_head = 32 * 1024;         // request line + fields; 431 beyond
  std::size_t max_fields = 100;             // 431 beyond
  std::uint64_t max_body = 8 * 1024 * 1024;
};

// Why a request cannot be parsed: the status to answer and a stable reason code.
struct HttpError {
  int status = 400;
  std::string_view reason;
  std::string_view detail;
};

struct HttpRequestHead {
  std::string method;
  std::string target;  // as sent ("/hooks/tiledesk?x=1")
  std::string_view path() const;
  int minor_version = 1;                                    // HTTP/1.minor
  std::vector<std::pair<std::string, std::string>> fields;  // names as sent, values trimmed

  // The value of the first field named `name` (case-insensitive).
  const std::string* find(std::string_view name) const;

  // Framing, decided by parse_request_head:
  bool chunked = false;
  std::uint64_t content_length = 0;  // when !chunked
  bool expect_continue = false;
  bool keep_alive = true;  // HTTP/1.1 default; "Connection: close" or HTTP/1.0 without keep-alive
};

// The result of looking at the start of a buffer for a complete request head.
struct HeadParse {
  enum class State { incomplete, complete, error } state = State::incomplete;
  std::size_t consumed = 0;  // complete: bytes of the head, including the final CRLF CRLF
  HttpError error;
};

// Parses the request head at the start of `data`. Incomplete while no CRLF CRLF is present and
// no limit is passed yet. `head` is filled when complete.
HeadParse parse_request_head(std::string_view data, const HttpLimits& limits,
                             HttpRequestHead& head);

// Incremental decoder of a chunked body (RFC 9112 section 7.1): chunk extensions are ignored,
// trailer fields are read and dropped. Feed it bytes; decoded data is appended to `body`.
class ChunkedDecoder {
 public:
  enum class Status { more, done, error };
  explicit ChunkedDecoder(std::uint64_t max_body) : max_body_(max_body) {}

  // Consumes what it can of `data` (sets `consumed`); stops at the end of the body.
  Status feed(std::string_view data, std::string& body, std::size_t& consumed);
  const HttpError& error() const noexcept { return error_; }

 private:
  enum class Phase { size, data, data_crlf, trailer, done } phase_ = Phase::size;
  Status fail(int status, std::string_view reason, std::string_view detail);

  std::uint64_t max_body_;
  std::uint64_t chunk_left_ = 0;
  std::size_t trailer_bytes_ = 0;
  std::string line_;  // a size or trailer line being collected
  HttpError error_;
};

// "HTTP/1.1 200 OK"-style reason phrases for the statuses the receiver sends.
std::string_view status_text(int status) noexcept;

}  // namespace tdhook::receiver
