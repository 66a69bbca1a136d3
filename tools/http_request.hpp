#pragma once
// Reading HTTP/1.1 messages as text: a captured request (what `tdhook verify` reads from a file
// or stdin) and the head of a response (what the sender in delivery.cpp reads from a socket).
// Both accept CRLF and bare LF line ends, because captured files are often edited by hand.

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tdhook/result.hpp"

namespace tdhook::tools {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// The first header named `name` (case-insensitive), or nullopt.
std::optional<std::string_view> find_header(const HeaderList& headers, std::string_view name);

// True when the comma-separated header value holds `token` (case-insensitive), as in
// "Connection: keep-alive, Upgrade".
bool header_has_token(std::string_view value, std::string_view token);

struct RawRequest {
  std::string method;
  std::string target;   // request-target, as written
  std::string version;  // "HTTP/1.1"
  HeaderList headers;   // in file order, names as written
  std::string body;
};

// Parses a raw request: request line, headers, blank line, body. The body is Content-Length
// bytes when that header is present (it must not be longer than what follows), decoded when
// the request is chunked, else the rest of the text. invalid_input with a short reason (never
// quoting header values, which may hold secrets) for anything that is not such a request.
Result<RawRequest> parse_raw_request(std::string_view text);

struct ResponseHead {
  std::string version;  // "HTTP/1.1"
  int status = 0;
  std::string reason;
  HeaderList headers;
};

// Where the head of a message ends in `text`: the offset just past the blank line, or nullopt
// if the blank line has not been seen yet.
std::optional<std::size_t> find_head_end(std::string_view text);

// Parses a status line and headers (the text up to find_head_end()).
Result<ResponseHead> parse_response_head(std::string_view head);

// Decodes a complete chunked body (chunk sizes, data, last chunk, trailers). With `consumed`,
// the trailer section must be complete too and *consumed receives the length of the encoded
// body; without it, a file that stops right after the last chunk is accepted.
Result<std::string> decode_chunked(std::string_view text, std::size_t* consumed = nullptr);

// Reading one response from a connected non-blocking socket.
using SteadyTime = std::chrono::steady_clock::time_point;

// poll(2) until `fd` is ready for `events` or the deadline passes (nullopt: no limit).
// 0 = ready, else an errno value (ETIMEDOUT when the deadline passed).
int wait_fd(int fd, short events, std::optional<SteadyTime> deadline);

// Node's name for the usual socket errors ("ECONNREFUSED"), strerror() for others.
std::string errno_name(int err);

struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string body;
  bool reusable = false;  // the connection may carry another request
};

enum class ReadOutcome { ok, closed_before_response, failed };

// Reads the final response (interim 1xx ones are skipped), its body framed by Content-Length,
// chunked encoding, or the end of the connection. closed_before_response when the peer closed
// before sending a byte (an idle keep-alive connection the server dropped).
ReadOutcome read_response(int fd, std::optional<SteadyTime> deadline, HttpResponse& out,
                          std::string& error);

}  // namespace tdhook::tools
