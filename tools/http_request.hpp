#pragma once
// The tools' HTTP/1.1 input, read with the receiver's message syntax (http/http_parser.hpp) in
// its lenient form: a captured request (what `tdhook verify` reads from a file or stdin) and a
// response read from a socket (the sender in delivery.cpp). What is left here is the tools' own:
// where the bytes come from, and how a captured file's body ends.

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "http/http_parser.hpp"
#include "tdhook/result.hpp"

namespace tdhook::tools {

struct RawRequest {
  receiver::HttpRequestHead head;  // fields in file order, names as written
  std::string body;
};

// Parses a captured request: request line, fields, blank line, body, leniently (LF line ends,
// which hand-edited files have). A file that ends after its fields, without the blank line, is
// a request without a body. The body is Content-Length bytes when that field is present (what
// follows must not be shorter; bytes after it, such as an editor's final newline, are dropped),
// decoded when the request is chunked (what follows the last chunk is ignored), else the rest of
// the text. invalid_input with a short reason (never quoting field values, which may hold
// secrets) for anything that is not such a request.
Result<RawRequest> parse_raw_request(std::string_view text);

// "line 3: header line without a colon": a parse error as the tools print it.
std::string describe(const receiver::HttpError& error);

// Reading one response from a connected non-blocking socket.
using SteadyTime = std::chrono::steady_clock::time_point;

// poll(2) until `fd` is ready for `events` or the deadline passes (nullopt: no limit).
// 0 = ready, else an errno value (ETIMEDOUT when the deadline passed).
int wait_fd(int fd, short events, std::optional<SteadyTime> deadline);

// Node's name for the usual socket errors ("ECONNREFUSED"), strerror() for others.
std::string errno_name(int err);

struct ReceivedResponse {
  receiver::HttpResponseHead head;
  std::string body;
  bool reusable = false;  // the connection may carry another request
};

enum class ReadOutcome { ok, closed_before_response, failed };

// Reads the final response (interim 1xx ones are skipped), its body framed by Content-Length,
// chunked encoding, or the end of the connection. closed_before_response when the peer closed
// before sending a byte (an idle keep-alive connection the server dropped).
ReadOutcome read_response(int fd, std::optional<SteadyTime> deadline, ReceivedResponse& out,
                          std::string& error);

}  // namespace tdhook::tools
