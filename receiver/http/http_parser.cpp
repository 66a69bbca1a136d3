#include "http/http_parser.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

namespace tdhook::receiver {
namespace {

constexpr std::size_t max_chunk_line = 1024;
constexpr std::size_t max_trailer = 8 * 1024;
constexpr auto npos = std::string_view::npos;

// RFC 9110 tchar.
bool is_tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != 0;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(),
                                   [](char c) { return is_tchar(static_cast<unsigned char>(c)); });
}

// Field values: visible characters, obs-text, space and tab. No NUL, CR, LF or other controls.
bool is_field_value(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c == '\t' || (c >= 0x20 && c != 0x7f);
  });
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (x != y && (x | 0x20) != (y | 0x20)) return false;
    if (x != y && !((x | 0x20) >= 'a' && (x | 0x20) <= 'z')) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

HeadParse head_error(int status, std::string_view reason, std::string_view detail,
                     std::size_t line = 0) {
  HeadParse p;
  p.state = HeadParse::State::error;
  p.error = HttpError{status, reason, detail, line};
  return p;
}

bool is_error(const HeadParse& p) { return p.state == HeadParse::State::error; }

// Bare LF anywhere in the head is refused: a proxy in front may read it differently.
bool has_bare_lf(std::string_view s) {
  for (auto i = s.find('\n'); i != npos; i = s.find('\n', i + 1)) {
    if (i == 0 || s[i - 1] != '\r') return true;
  }
  return false;
}

// The offset just past the blank line that ends a head, or npos. Lenient, for strict input, finds
// the same: a "\n\n" there would be a bare LF, and "\n\r\n" is the end of the first CRLF CRLF.
std::size_t find_head_end(std::string_view s, Syntax syntax) {
  if (syntax == Syntax::strict) {
    const auto end = s.find("\r\n\r\n");
    return end == npos ? npos : end + 4;
  }
  for (auto i = s.find('\n'); i != npos; i = s.find('\n', i + 1)) {
    if (i + 1 < s.size() && s[i + 1] == '\n') return i + 2;
    if (i + 2 < s.size() && s[i + 1] == '\r' && s[i + 2] == '\n') return i + 3;
  }
  return npos;
}

// The line of `s` that starts at `pos`, without its LF and CR; `pos` moves past it. Strict heads
// have been checked for bare LF before, so there every line ended in CRLF.
std::string_view next_line(std::string_view s, std::size_t& pos) {
  const auto eol = s.find('\n', pos);
  auto line = s.substr(pos, eol - pos);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  pos = eol == npos ? s.size() : eol + 1;
  return line;
}

// "HTTP/1.d": the only version strict reads. 0-9 or -1 for the minor version, -2 for a version
// that is HTTP/d.d with another major version.
int http1_minor(std::string_view version) {
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
      version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9') {
    return -1;
  }
  return version[5] == '1' ? version[7] - '0' : -2;
}

// What lenient also reads: "HTTP/" and digits and dots (captured files say "HTTP/2" and such).
bool is_lenient_version(std::string_view version) {
  return version.size() > 5 && version.substr(0, 5) == "HTTP/" &&
         std::all_of(version.begin() + 5, version.end(),
                     [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
}

HeadParse parse_request_line(std::string_view line, std::size_t line_no, Syntax syntax,
                             HttpRequestHead& head) {
  const auto sp1 = line.find(' ');
  const auto sp2 = sp1 == npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == npos || line.find(' ', sp2 + 1) != npos) {
    return head_error(400, "malformed_request_line", "request line is not METHOD TARGET VERSION",
                      line_no);
  }
  const auto method = line.substr(0, sp1);
  const auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const auto version = line.substr(sp2 + 1);
  if (!is_token(method)) return head_error(400, "malformed_request_line", "bad method", line_no);
  if (target.empty() || !std::all_of(target.begin(), target.end(), [](char ch) {
        const auto c = static_cast<unsigned char>(ch);
        return c > 0x20 && c != 0x7f;
      })) {
    return head_error(400, "malformed_request_line", "bad request target", line_no);
  }
  const int minor = http1_minor(version);
  if (syntax == Syntax::lenient ? !is_lenient_version(version) : minor == -1) {
    return head_error(400, "malformed_request_line", "bad HTTP version", line_no);
  }
  if (syntax == Syntax::strict && minor < 0) {
    return head_error(505, "http_version_not_supported", "not HTTP/1.x", line_no);
  }
  head.method.assign(method);
  head.target.assign(target);
  head.minor_version = minor < 0 ? 1 : minor;
  return {};
}

// The field lines from `pos` up to the blank line that ends `head` (which is there).
HeadParse parse_fields(std::string_view head, std::size_t pos, std::size_t line_no,
                       std::size_t max_fields, HttpFields& fields) {
  while (true) {
    const auto line = next_line(head, pos);
    ++line_no;
    if (line.empty()) return {};
    if (line.front() == ' ' || line.front() == '\t') {
      return head_error(400, "obsolete_line_folding", "header line starts with whitespace",
                        line_no);
    }
    const auto colon = line.find(':');
    if (colon == npos) {
      return head_error(400, "malformed_header", "header line without a colon", line_no);
    }
    const auto name = line.substr(0, colon);
    if (!is_token(name)) return head_error(400, "malformed_header", "bad header name", line_no);
    const auto value = trim(line.substr(colon + 1));
    if (!is_field_value(value)) {
      return head_error(400, "malformed_header", "control character in a header value", line_no);
    }
    if (fields.size() == max_fields) {
      return head_error(431, "too_many_headers", "more header fields than the limit", line_no);
    }
    fields.emplace_back(std::string(name), std::string(value));
  }
}

// A Content-Length value: digits only (no sign, no spaces), at most 19 of them.
std::optional<std::uint64_t> parse_length(std::string_view value) {
  std::uint64_t n = 0;
  const auto* end = value.data() + value.size();
  const auto [ptr, ec] = std::from_chars(value.data(), end, n);
  if (value.empty() || ec != std::errc() || ptr != end || value.size() > 19) return std::nullopt;
  return n;
}

// Content-Length, Transfer-Encoding, Expect, Connection.
HeadParse decide_framing(HttpRequestHead& head, Syntax syntax) {
  std::optional<std::uint64_t> length;
  int transfer_encodings = 0;
  bool keep_alive_token = false, close_token = false;
  for (const auto& [name, value] : head.fields) {
    if (iequals(name, "content-length")) {
      const auto n = parse_length(value);
      if (!n) return head_error(400, "bad_content_length", "Content-Length is not a number");
      if (length && *length != *n) {
        return head_error(400, "bad_content_length", "Content-Length given twice, differently");
      }
      length = n;
    } else if (iequals(name, "transfer-encoding")) {
      // Lenient reads the first field only, and "gzip, chunked" as chunked.
      ++transfer_encodings;
      const bool supported = syntax == Syntax::strict
                                 ? iequals(value, "chunked")
                                 : transfer_encodings > 1 || list_has(value, "chunked");
      if (!supported) {
        return head_error(501, "unsupported_transfer_encoding",
                          "only Transfer-Encoding: chunked is supported");
      }
    } else if (iequals(name, "expect")) {
      if (iequals(value, "100-continue")) head.expect_continue = true;
    } else if (iequals(name, "connection")) {
      close_token = close_token || list_has(value, "close");
      keep_alive_token = keep_alive_token || list_has(value, "keep-alive");
    }
  }
  if (transfer_encodings > 1 && syntax == Syntax::strict) {
    return head_error(400, "bad_transfer_encoding", "Transfer-Encoding given twice");
  }
  if (transfer_encodings > 0 && length) {
    return head_error(400, "bad_transfer_encoding",
                      "both Content-Length and Transfer-Encoding (request smuggling)");
  }
  if (transfer_encodings > 0 && head.minor_version == 0 && syntax == Syntax::strict) {
    return head_error(400, "bad_transfer_encoding", "Transfer-Encoding in HTTP/1.0");
  }
  head.chunked = transfer_encodings > 0;
  head.content_length = length.value_or(0);
  head.keep_alive = !close_token && (head.minor_version >= 1 || keep_alive_token);
  return {};
}

HeadParse parse_status_line(std::string_view line, Syntax syntax, HttpResponseHead& head) {
  const auto bad =
      head_error(502, "malformed_status_line", "status line is not VERSION STATUS [REASON]", 1);
  const auto sp = line.find(' ');
  const auto version = line.substr(0, sp);
  if (sp == npos || line.size() < sp + 4 || (line.size() > sp + 4 && line[sp + 4] != ' ')) {
    return bad;
  }
  if (syntax == Syntax::lenient ? !is_lenient_version(version) : http1_minor(version) < 0) {
    return bad;
  }
  const auto code = line.substr(sp + 1, 3);
  if (!std::all_of(code.begin(), code.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return bad;
  }
  head.version.assign(version);
  head.status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
  head.reason.assign(line.size() > sp + 5 ? line.substr(sp + 5) : std::string_view{});
  return {};
}

HeadParse decide_response_framing(HttpResponseHead& head) {
  const auto* te = find_field(head.fields, "transfer-encoding");
  head.chunked = te != nullptr && list_has(*te, "chunked");
  if (const auto* length = find_field(head.fields, "content-length"); length && !head.chunked) {
    head.content_length = parse_length(*length);
    if (!head.content_length) {
      return head_error(502, "bad_content_length", "Content-Length is not a number");
    }
  }
  const auto* connection = find_field(head.fields, "connection");
  const bool close = connection != nullptr && list_has(*connection, "close");
  const bool keep_alive = connection != nullptr && list_has(*connection, "keep-alive");
  head.keep_alive = !close && (http1_minor(head.version) >= 1 || keep_alive);
  return {};
}

}  // namespace

const std::string* find_field(const HttpFields& fields, std::string_view name) {
  for (const auto& field : fields) {
    if (iequals(field.first, name)) return &field.second;
  }
  return nullptr;
}

bool list_has(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const auto comma = value.find(',');
    if (iequals(trim(value.substr(0, comma)), token)) return true;
    if (comma == npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

std::string_view HttpRequestHead::path() const {
  std::string_view t = target;
  return t.substr(0, t.find('?'));
}

HeadParse parse_request_head(std::string_view data, const HttpLimits& limits, HttpRequestHead& head,
                             Syntax syntax) {
  // RFC 9112 2.2: empty lines before the request line are ignored.
  std::size_t start = 0, line_no = 1;
  while (true) {
    if (data.size() - start >= 2 && data[start] == '\r' && data[start + 1] == '\n') {
      start += 2;
    } else if (syntax == Syntax::lenient && start < data.size() && data[start] == '\n') {
      start += 1;
    } else {
      break;
    }
    ++line_no;
  }
  const auto rest = data.substr(start);
  const auto line_end = rest.find('\n');
  if (line_end == npos ? rest.size() > limits.max_request_line
                       : line_end > limits.max_request_line) {
    return head_error(414, "request_line_too_long", "request line longer than the limit", line_no);
  }
  const auto end = find_head_end(rest, syntax);
  if (syntax == Syntax::strict && has_bare_lf(end == npos ? rest : rest.substr(0, end))) {
    return head_error(400, "bare_lf", "line ends in LF without CR");
  }
  std::size_t pos = 0;
  if (end == npos) {
    if (data.size() > limits.max_head) {
      return head_error(431, "header_too_large", "request head larger than the limit");
    }
    // A request line that is already complete and wrong need not wait for the rest.
    if (line_end != npos) {
      HttpRequestHead probe;
      auto p = parse_request_line(next_line(rest, pos), line_no, syntax, probe);
      if (is_error(p)) return p;
    }
    return {};
  }
  if (end > limits.max_head) {
    return head_error(431, "header_too_large", "request head larger than the limit");
  }
  head = HttpRequestHead{};
  auto p = parse_request_line(next_line(rest, pos), line_no, syntax, head);
  if (is_error(p)) return p;
  p = parse_fields(rest.substr(0, end), pos, line_no, limits.max_fields, head.fields);
  if (is_error(p)) return p;
  p = decide_framing(head, syntax);
  if (is_error(p)) return p;
  HeadParse done;
  done.state = HeadParse::State::complete;
  done.consumed = start + end;
  return done;
}

HeadParse parse_response_head(std::string_view data, const HttpLimits& limits,
                              HttpResponseHead& head, Syntax syntax) {
  const auto line_end = data.find('\n');
  if (line_end == npos ? data.size() > limits.max_request_line
                       : line_end > limits.max_request_line) {
    return head_error(502, "status_line_too_long", "status line longer than the limit", 1);
  }
  const auto end = find_head_end(data, syntax);
  if (syntax == Syntax::strict && has_bare_lf(end == npos ? data : data.substr(0, end))) {
    return head_error(502, "bare_lf", "line ends in LF without CR");
  }
  if (end == npos) {
    if (data.size() > limits.max_head) {
      return head_error(502, "header_too_large", "response head larger than the limit");
    }
    return {};
  }
  if (end > limits.max_head) {
    return head_error(502, "header_too_large", "response head larger than the limit");
  }
  head = HttpResponseHead{};
  std::size_t pos = 0;
  auto p = parse_status_line(next_line(data, pos), syntax, head);
  if (is_error(p)) return p;
  p = parse_fields(data.substr(0, end), pos, 1, limits.max_fields, head.fields);
  if (!is_error(p)) p = decide_response_framing(head);
  if (is_error(p)) {
    p.error.status = 502;
    return p;
  }
  HeadParse done;
  done.state = HeadParse::State::complete;
  done.consumed = end;
  return done;
}

ChunkedDecoder::Status ChunkedDecoder::fail(int status, std::string_view reason,
                                            std::string_view detail) {
  error_ = HttpError{status, reason, detail};
  return Status::error;
}

ChunkedDecoder::Status ChunkedDecoder::feed(std::string_view data, std::string& body,
                                            std::size_t& consumed) {
  consumed = 0;
  while (consumed < data.size()) {
    if (phase_ == Phase::done) return Status::done;
    const auto rest = data.substr(consumed);
    if (phase_ == Phase::data) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_left_, rest.size()));
      body.append(rest.data(), n);
      consumed += n;
      chunk_left_ -= n;
      if (chunk_left_ == 0) phase_ = Phase::data_crlf;
      continue;
    }
    // The other phases read lines.
    const auto nl = rest.find('\n');
    const auto take = nl == std::string_view::npos ? rest.size() : nl + 1;
    line_.append(rest.data(), take);
    consumed += take;
    if (line_.size() > (phase_ == Phase::trailer ? max_trailer : max_chunk_line))
      return fail(400, "bad_chunk", "chunk line too long");
    if (nl == std::string_view::npos) continue;
    const bool crlf = line_.size() >= 2 && line_[line_.size() - 2] == '\r';
    if (!crlf && syntax_ == Syntax::strict) {
      return fail(400, "bad_chunk", "chunk line ends in LF without CR");
    }
    const std::string_view line(line_.data(), line_.size() - (crlf ? 2 : 1));
    if (phase_ == Phase::data_crlf) {
      if (!line.empty()) return fail(400, "bad_chunk", "chunk data longer than its size");
      phase_ = Phase::size;
    } else if (phase_ == Phase::size) {
      // Lenient: hand-edited files indent sizes, or align them on a column.
      const auto sized = syntax_ == Syntax::strict
                             ? line
                             : line.substr(std::min(line.find_first_not_of(" \t"), line.size()));
      const auto digits = sized.substr(0, sized.find_first_of("; \t"));
      std::uint64_t size = 0;
      const auto [ptr, ec] =
          std::from_chars(digits.data(), digits.data() + digits.size(), size, 16);
      if (digits.empty() || digits.size() > 16 || ec != std::errc() ||
          ptr != digits.data() + digits.size()) {
        return fail(400, "bad_chunk", "bad chunk size");
      }
      if (size > max_body_ || body.size() + size > max_body_) {
        return fail(413, "body_too_large", "chunked body larger than --max-body");
      }
      chunk_left_ = size;
      phase_ = size == 0 ? Phase::trailer : Phase::data;
    } else if (phase_ == Phase::trailer) {
      if (line.empty()) {
        phase_ = Phase::done;
        line_.clear();
        return Status::done;
      }
      // Trailer fields are read and dropped, within a budget.
      trailer_bytes_ += line_.size();
      if (trailer_bytes_ > max_trailer) return fail(431, "header_too_large", "trailer too large");
    }
    line_.clear();
  }
  return phase_ == Phase::done ? Status::done : Status::more;
}

std::string_view status_text(int status) noexcept {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 417:
      return "Expectation Failed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

}  // namespace tdhook::receiver
