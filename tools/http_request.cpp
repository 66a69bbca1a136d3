#include "http_request.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstring>

namespace tdhook::tools {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::string_view trim_ows(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// RFC 9110 token characters.
bool is_token(std::string_view text) {
  if (text.empty()) return false;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) != 0) continue;
    if (std::string_view("!#$%&'*+-.^_`|~").find(ch) == std::string_view::npos) return false;
  }
  return true;
}

bool has_control(std::string_view text, bool allow_tab) {
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && !(allow_tab && c == '\t')) || c == 0x7f) return true;
  }
  return false;
}

// Splits a head into lines without their CR/LF.
std::vector<std::string_view> split_lines(std::string_view head) {
  std::vector<std::string_view> lines;
  while (!head.empty()) {
    const auto nl = head.find('\n');
    auto line = head.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    if (nl == std::string_view::npos) break;
    head.remove_prefix(nl + 1);
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

Error bad(std::string detail) { return Error{ErrorCode::invalid_input, std::move(detail)}; }

bool valid_version(std::string_view v) {
  if (v.substr(0, 5) != "HTTP/" || v.size() < 6) return false;
  for (const char c : v.substr(5)) {
    if (std::isdigit(static_cast<unsigned char>(c)) == 0 && c != '.') return false;
  }
  return true;
}

Status parse_header_lines(const std::vector<std::string_view>& lines, HeaderList& out) {
  for (std::size_t i = 1; i < lines.size(); ++i) {
    const auto line = lines[i];
    const std::string where = "header line " + std::to_string(i);
    if (line.front() == ' ' || line.front() == '\t') {
      return bad(where + " is a folded continuation line, which HTTP/1.1 does not allow");
    }
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return bad(where + " has no ':'");
    const auto name = line.substr(0, colon);
    if (!is_token(name)) return bad(where + " has an invalid header name");
    const auto value = trim_ows(line.substr(colon + 1));
    if (has_control(value, true)) return bad(where + " has a control character in its value");
    out.emplace_back(std::string(name), std::string(value));
  }
  return Ok{};
}

Result<std::size_t> content_length(const HeaderList& headers) {
  std::optional<std::size_t> length;
  for (const auto& [name, value] : headers) {
    if (!iequals(name, "content-length")) continue;
    if (value.empty() || value.size() > 15) return bad("invalid Content-Length");
    std::size_t n = 0;
    for (const char c : value) {
      if (c < '0' || c > '9') return bad("invalid Content-Length");
      n = n * 10 + static_cast<std::size_t>(c - '0');
    }
    if (length && *length != n) return bad("conflicting Content-Length headers");
    length = n;
  }
  if (!length) return bad("no Content-Length");
  return *length;
}

Result<std::string> request_body(const HeaderList& headers, std::string_view rest) {
  const auto te = find_header(headers, "transfer-encoding");
  const bool has_length = find_header(headers, "content-length").has_value();
  if (te && has_length) return bad("both Transfer-Encoding and Content-Length are present");
  if (te) {
    if (!header_has_token(*te, "chunked")) return bad("unsupported Transfer-Encoding");
    return decode_chunked(rest);
  }
  if (!has_length) return std::string(rest);
  auto length = content_length(headers);
  if (!length) return std::move(length).error();
  if (rest.size() < *length) {
    return bad("the body is shorter than its Content-Length (" + std::to_string(rest.size()) +
               " of " + std::to_string(*length) + " bytes)");
  }
  // Bytes after Content-Length (an editor's final newline) are not part of the request.
  return std::string(rest.substr(0, *length));
}

// Skips the trailer section after the last chunk, up to its blank line.
Result<std::string> finish_trailers(const char* start, std::string_view text, std::string& body,
                                    std::size_t& consumed) {
  while (true) {
    const auto nl = text.find('\n');
    if (nl == std::string_view::npos) return bad("truncated chunked body");
    const bool blank = nl == 0 || (nl == 1 && text[0] == '\r');
    text.remove_prefix(nl + 1);
    if (blank) {
      consumed = static_cast<std::size_t>(text.data() - start);
      return std::move(body);
    }
  }
}

}  // namespace

std::optional<std::string_view> find_header(const HeaderList& headers, std::string_view name) {
  for (const auto& [key, value] : headers) {
    if (iequals(key, name)) return std::string_view(value);
  }
  return std::nullopt;
}

bool header_has_token(std::string_view value, std::string_view token) {
  while (true) {
    const auto comma = value.find(',');
    if (iequals(trim_ows(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) return false;
    value.remove_prefix(comma + 1);
  }
}

std::optional<std::size_t> find_head_end(std::string_view text) {
  for (auto i = text.find('\n'); i != std::string_view::npos; i = text.find('\n', i + 1)) {
    if (i + 1 < text.size() && text[i + 1] == '\n') return i + 2;
    if (i + 2 < text.size() && text[i + 1] == '\r' && text[i + 2] == '\n') return i + 3;
  }
  return std::nullopt;
}

Result<RawRequest> parse_raw_request(std::string_view text) {
  if (text.empty()) return bad("the request is empty");
  // A file that ends after its headers, without the blank line, is a request without a body.
  const auto head_end = find_head_end(text);
  const auto head = text.substr(0, head_end.value_or(text.size()));
  const auto rest = head_end ? text.substr(*head_end) : std::string_view{};
  const auto lines = split_lines(head);
  if (lines.empty()) return bad("the request has no request line");

  RawRequest request;
  const auto line = lines.front();
  const auto sp1 = line.find(' ');
  const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return bad("the first line is not an HTTP request line (METHOD TARGET HTTP/1.1)");
  }
  const auto method = line.substr(0, sp1);
  const auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const auto version = line.substr(sp2 + 1);
  if (!is_token(method) || target.empty() || has_control(target, false) ||
      !valid_version(version)) {
    return bad("the first line is not an HTTP request line (METHOD TARGET HTTP/1.1)");
  }
  request.method = method;
  request.target = target;
  request.version = version;
  if (auto st = parse_header_lines(lines, request.headers); !st) return std::move(st).error();
  auto body = request_body(request.headers, rest);
  if (!body) return std::move(body).error();
  request.body = std::move(*body);
  return request;
}

Result<ResponseHead> parse_response_head(std::string_view head) {
  const auto lines = split_lines(head);
  if (lines.empty()) return bad("empty response");
  ResponseHead out;
  const auto line = lines.front();
  const auto sp1 = line.find(' ');
  const auto version = line.substr(0, sp1);
  if (sp1 == std::string_view::npos || !valid_version(version) || line.size() < sp1 + 4) {
    return bad("malformed status line");
  }
  const auto code = line.substr(sp1 + 1, 3);
  for (const char c : code) {
    if (c < '0' || c > '9') return bad("malformed status line");
  }
  if (line.size() > sp1 + 4 && line[sp1 + 4] != ' ') return bad("malformed status line");
  out.version = version;
  out.status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
  if (line.size() > sp1 + 5) out.reason = line.substr(sp1 + 5);
  if (auto st = parse_header_lines(lines, out.headers); !st) return std::move(st).error();
  return out;
}

Result<std::string> decode_chunked(std::string_view text, std::size_t* consumed) {
  const char* const start = text.data();
  std::string out;
  while (true) {
    const auto nl = text.find('\n');
    if (nl == std::string_view::npos) return bad("truncated chunked body");
    auto size_line = text.substr(0, nl);
    if (!size_line.empty() && size_line.back() == '\r') size_line.remove_suffix(1);
    size_line = trim_ows(size_line.substr(0, size_line.find(';')));
    text.remove_prefix(nl + 1);
    if (size_line.empty() || size_line.size() > 15) return bad("invalid chunk size");
    std::size_t size = 0;
    for (const char c : size_line) {
      const int digit = std::isxdigit(static_cast<unsigned char>(c)) == 0 ? -1
                        : (c <= '9')                                      ? c - '0'
                                     : (std::tolower(static_cast<unsigned char>(c)) - 'a' + 10);
      if (digit < 0) return bad("invalid chunk size");
      size = size * 16 + static_cast<std::size_t>(digit);
    }
    if (size == 0) {
      if (consumed == nullptr) return out;  // trailers, if any, are not part of the body
      return finish_trailers(start, text, out, *consumed);
    }
    if (text.size() < size) return bad("truncated chunked body");
    out.append(text.substr(0, size));
    text.remove_prefix(size);
    if (text.substr(0, 2) == "\r\n") {
      text.remove_prefix(2);
    } else if (text.substr(0, 1) == "\n") {
      text.remove_prefix(1);
    } else {
      return bad("chunk data not followed by a line end");
    }
  }
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

Result<std::size_t> response_length(std::string_view value) {
  std::size_t n = 0;
  if (value.empty()) return bad("invalid response Content-Length");
  for (const char c : value) {
    if (c < '0' || c > '9' || n > kMaxResponse) return bad("invalid response Content-Length");
    n = n * 10 + static_cast<std::size_t>(c - '0');
  }
  return n;
}

// Reads the body as the head frames it; false on a transport failure (error set).
bool read_body(SocketReader& in, const ResponseHead& head, HttpResponse& out, std::string& error) {
  if (head.status == 204 || head.status == 304) return true;
  int err = 0;
  const auto te = find_header(head.headers, "transfer-encoding");
  if (te && header_has_token(*te, "chunked")) {
    while (true) {
      std::size_t used = 0;
      if (auto body = decode_chunked(in.buf, &used)) {
        out.body = std::move(*body);
        return true;
      } else if (body.error().detail != "truncated chunked body") {
        error = "malformed chunked response: " + body.error().detail;
        return false;
      }
      if ((err = in.fill()) != 0 || in.eof) {
        error = read_error(err, "socket hang up (truncated chunked body)");
        return false;
      }
    }
  }
  if (const auto length = find_header(head.headers, "content-length")) {
    const auto n = response_length(*length);
    if (!n) {
      error = n.error().detail;
      return false;
    }
    while (in.buf.size() < *n) {
      if ((err = in.fill()) != 0 || in.eof) {
        error = read_error(err, "socket hang up (truncated body)");
        return false;
      }
    }
    out.body = in.buf.substr(0, *n);
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

ReadOutcome read_response(int fd, std::optional<SteadyTime> deadline, HttpResponse& out,
                          std::string& error) {
  SocketReader in(fd, deadline);
  while (true) {
    std::optional<std::size_t> head_end;
    while (!(head_end = find_head_end(in.buf))) {
      const int err = in.fill();
      if (err != 0 || in.eof) {
        error = read_error(err, "socket hang up");
        const bool nothing = in.buf.empty() && (err == 0 || err == ECONNRESET);
        return nothing ? ReadOutcome::closed_before_response : ReadOutcome::failed;
      }
      if (in.buf.size() > kMaxHead) {
        error = "response head too large";
        return ReadOutcome::failed;
      }
    }
    auto head = parse_response_head(std::string_view(in.buf).substr(0, *head_end));
    if (!head) {
      error = "malformed response: " + head.error().detail;
      return ReadOutcome::failed;
    }
    in.buf.erase(0, *head_end);
    // Interim responses (100 Continue, 103 Early Hints) are followed by the real one.
    if (head->status >= 100 && head->status < 200 && head->status != 101) continue;
    out.status = head->status;
    out.content_type = std::string(find_header(head->headers, "content-type").value_or(""));
    const auto connection = find_header(head->headers, "connection");
    out.reusable = head->version == "HTTP/1.1"
                       ? !(connection && header_has_token(*connection, "close"))
                       : (connection && header_has_token(*connection, "keep-alive"));
    return read_body(in, *head, out, error) ? ReadOutcome::ok : ReadOutcome::failed;
  }
}

}  // namespace tdhook::tools
