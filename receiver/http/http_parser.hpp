#pragma once
// HTTP/1.1 message syntax (RFC 9112), the project's one reading of it: request heads (the
// receiver's event loop, http_loop.cpp; captured requests, `tdhook verify`), response heads (the
// tools' own client, tools/delivery.cpp), chunked bodies (both sides) and field lookup. Knows
// nothing of sockets, files or Tiledesk.
//
// Two syntaxes, as a parameter rather than two parsers, so that they cannot drift apart:
//  - strict, for the network: a webhook receiver talks to one kind of client, and every
//    ambiguity that lets two parsers disagree about where a request ends (bare LF, obs-fold,
//    Content-Length next to Transfer-Encoding, differing Content-Length values) is refused with
//    400, not guessed. The receiver's refusals are a security property.
//  - lenient, for text a person may have edited by hand (captured requests) and for whatever
//    server the tools' client talks to: a line may end in LF alone, the version is any "HTTP/"
//    followed by digits and dots, only the first Transfer-Encoding field counts and it needs
//    only to list "chunked", and HTTP/1.0 may be chunked.
// Whatever strict accepts, lenient accepts and reads the same way (the fuzz target http_server
// checks it).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tdhook::receiver {

enum class Syntax { strict, lenient };

struct HttpLimits {
  std::size_t max_request_line = 8 * 1024;  // 414 beyond
  std::size_t max_head = 32 * 1024;         // request line + fields; 431 beyond
  std::size_t max_fields = 100;             // 431 beyond
  std::uint64_t max_body = 8 * 1024 * 1024;
};

// Why a message cannot be parsed: the status to answer, a stable reason code and a fixed
// sentence that never quotes the input (field values may hold secrets).
struct HttpError {
  int status = 400;
  std::string_view reason;
  std::string_view detail;
  std::size_t line = 0;  // the line at fault, counted from 1 at the start of the input; 0: none
};

// Header fields in the order sent, names as sent, values without surrounding whitespace (the
// same type as tdhook::Headers, so a head goes to Verifier::verify as it is).
using HttpFields = std::vector<std::pair<std::string, std::string>>;

// The value of the first field named `name` (case-insensitive), or nullptr.
const std::string* find_field(const HttpFields& fields, std::string_view name);

// True when the comma-separated field value holds `token` (case-insensitive), as in
// "Connection: keep-alive, Upgrade".
bool list_has(std::string_view value, std::string_view token);

struct HttpRequestHead {
  std::string method;
  std::string target;  // as sent ("/hooks/tiledesk?x=1")
  std::string_view path() const;
  int minor_version = 1;  // HTTP/1.minor (lenient, a version not of the form HTTP/1.d: 1)
  HttpFields fields;

  // The value of the first field named `name` (case-insensitive).
  const std::string* find(std::string_view name) const { return find_field(fields, name); }

  // Framing, decided by parse_request_head:
  bool chunked = false;
  std::uint64_t content_length = 0;  // when !chunked
  bool expect_continue = false;
  bool keep_alive = true;  // HTTP/1.1 default; "Connection: close" or HTTP/1.0 without keep-alive
};

// The result of looking at the start of a buffer for a complete head.
struct HeadParse {
  enum class State { incomplete, complete, error } state = State::incomplete;
  std::size_t consumed = 0;  // complete: bytes of the head, including the blank line
  HttpError error;
};

// Parses the request head at the start of `data`. Incomplete while no blank line is present and
// no limit is passed yet. `head` is filled when complete.
HeadParse parse_request_head(std::string_view data, const HttpLimits& limits, HttpRequestHead& head,
                             Syntax syntax = Syntax::strict);

struct HttpResponseHead {
  std::string version;  // as sent
  int status = 0;
  std::string reason;
  HttpFields fields;
  const std::string* find(std::string_view name) const { return find_field(fields, name); }

  // Framing as a client reads it (RFC 9112 6.3): chunked wins over Content-Length; with neither,
  // the body ends with the connection (responses without a body, 1xx, 204, 304, are the
  // caller's to know: they depend on the request too).
  bool chunked = false;
  std::optional<std::uint64_t> content_length;  // when !chunked
  bool keep_alive = true;
};

// Parses a status line and its fields at the start of `data`, like parse_request_head; errors
// carry 502, what a proxy would answer for such a response. The request limits apply, the
// request line's to the status line.
HeadParse parse_response_head(std::string_view data, const HttpLimits& limits,
                              HttpResponseHead& head, Syntax syntax = Syntax::lenient);

// Incremental decoder of a chunked body (RFC 9112 section 7.1): chunk extensions are ignored,
// trailer fields are read and dropped. Feed it bytes; decoded data is appended to `body`.
// Lenient: a line may end in LF alone, and a size may follow spaces or tabs.
class ChunkedDecoder {
 public:
  enum class Status { more, done, error };
  explicit ChunkedDecoder(std::uint64_t max_body, Syntax syntax = Syntax::strict)
      : max_body_(max_body), syntax_(syntax) {}

  // Consumes what it can of `data` (sets `consumed`); stops at the end of the body.
  Status feed(std::string_view data, std::string& body, std::size_t& consumed);
  const HttpError& error() const noexcept { return error_; }
  // The last chunk has been read: the body is whole, only trailer fields may follow.
  bool body_complete() const noexcept { return phase_ == Phase::trailer || phase_ == Phase::done; }

 private:
  enum class Phase { size, data, data_crlf, trailer, done } phase_ = Phase::size;
  Status fail(int status, std::string_view reason, std::string_view detail);

  std::uint64_t max_body_;
  Syntax syntax_;
  std::uint64_t chunk_left_ = 0;
  std::size_t trailer_bytes_ = 0;
  std::string line_;  // a size or trailer line being collected
  HttpError error_;
};

// "HTTP/1.1 200 OK"-style reason phrases for the statuses the receiver sends.
std::string_view status_text(int status) noexcept;

}  // namespace tdhook::receiver
