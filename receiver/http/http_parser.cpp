#include "http/http_parser.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

namespace tdhook::receiver {
namespace {

constexpr std::size_t max_chunk_line = 1024;
constexpr std::size_t max_trailer = 8 * 1024;

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

// True when the comma-separated list `value` holds `token` (case-insensitive).
bool list_has(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const auto comma = value.find(',');
    if (iequals(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

HeadParse head_error(int status, std::string_view reason, std::string_view detail) {
  HeadParse p;
  p.state = HeadParse::State::error;
  p.error = HttpError{status, reason, detail};
  return p;
}

// Bare LF anywhere in the head is refused: a proxy in front may read it differently.
bool has_bare_lf(std::string_view s) {
  for (auto i = s.find('\n'); i != std::string_view::npos; i = s.find('\n', i + 1)) {
    if (i == 0 || s[i - 1] != '\r') return true;
  }
  return false;
}

HeadParse parse_request_line(std::string_view line, HttpRequestHead& head) {
  const auto sp1 = line.find(' ');
  const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return head_error(400, "malformed_request_line", "request line is not METHOD TARGET VERSION");
  }
  const auto method = line.substr(0, sp1);
  const auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const auto version = line.substr(sp2 + 1);
  if (!is_token(method)) return head_error(400, "malformed_request_line", "bad method");
  if (target.empty() || !std::all_of(target.begin(), target.end(), [](char ch) {
        const auto c = static_cast<unsigned char>(ch);
        return c > 0x20 && c != 0x7f;
      })) {
    return head_error(400, "malformed_request_line", "bad request target");
  }
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
      version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9') {
    return head_error(400, "malformed_request_line", "bad HTTP version");
  }
  if (version[5] != '1') return head_error(505, "http_version_not_supported", "not HTTP/1.x");
  head.method.assign(method);
  head.target.assign(target);
  head.minor_version = version[7] - '0';
  return {};
}

// Content-Length, Transfer-Encoding, Expect, Connection.
HeadParse decide_framing(HttpRequestHead& head) {
  std::optional<std::uint64_t> length;
  int transfer_encodings = 0;
  bool keep_alive_token = false, close_token = false;
  for (const auto& [name, value] : head.fields) {
    if (iequals(name, "content-length")) {
      std::uint64_t n = 0;
      const auto* end = value.data() + value.size();
      const auto [ptr, ec] = std::from_chars(value.data(), end, n);
      if (value.empty() || ec != std::errc() || ptr != end || value.size() > 19) {
        return head_error(400, "bad_content_length", "Content-Length is not a number");
      }
      if (length && *length != n) {
        return head_error(400, "bad_content_length", "Content-Length given twice, differently");
      }
      length = n;
    } else if (iequals(name, "transfer-encoding")) {
      ++transfer_encodings;
      if (!iequals(value, "chunked")) {
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
  if (transfer_encodings > 1) {
    return head_error(400, "bad_transfer_encoding", "Transfer-Encoding given twice");
  }
  if (transfer_encodings == 1 && length) {
    return head_error(400, "bad_transfer_encoding",
                      "both Content-Length and Transfer-Encoding (request smuggling)");
  }
  if (transfer_encodings == 1 && head.minor_version == 0) {
    return head_error(400, "bad_transfer_encoding", "Transfer-Encoding in HTTP/1.0");
  }
  head.chunked = transfer_encodings == 1;
  head.content_length = length.value_or(0);
  head.keep_alive = !close_token && (head.minor_version >= 1 || keep_alive_token);
  return {};
}

}  // namespace

std::string_view HttpRequestHead::path() const {
  std::string_view t = target;
  return t.substr(0, t.find('?'));
}

const std::string* HttpRequestHead::find(std::string_view name) const {
  for (const auto& field : fields) {
    if (iequals(field.first, name)) return &field.second;
  }
  return nullptr;
}

HeadParse parse_request_head(std::string_view data, const HttpLimits& limits,
                             HttpRequestHead& head) {
  // RFC 9112 2.2: empty lines before the request line are ignored.
  std::size_t start = 0;
  while (data.size() - start >= 2 && data[start] == '\r' && data[start + 1] == '\n') start += 2;
  const auto rest = data.substr(start);
  const auto line_end = rest.find('\n');
  if (line_end == std::string_view::npos ? rest.size() > limits.max_request_line
                                         : line_end > limits.max_request_line) {
    return head_error(414, "request_line_too_long", "request line longer than the limit");
  }
  const auto end = rest.find("\r\n\r\n");
  const auto scanned = end == std::string_view::npos ? rest : rest.substr(0, end + 4);
  if (has_bare_lf(scanned)) return head_error(400, "bare_lf", "line ends in LF without CR");
  if (end == std::string_view::npos) {
    if (data.size() > limits.max_head) {
      return head_error(431, "header_too_large", "request head larger than the limit");
    }
    // A request line that is already complete and wrong need not wait for the rest.
    if (line_end != std::string_view::npos) {
      HttpRequestHead probe;
      auto p = parse_request_line(rest.substr(0, line_end - 1), probe);
      if (p.state == HeadParse::State::error) return p;
    }
    return {};
  }
  if (end + 4 > limits.max_head) {
    return head_error(431, "header_too_large", "request head larger than the limit");
  }
  head = HttpRequestHead{};
  auto p = parse_request_line(rest.substr(0, line_end - 1), head);
  if (p.state == HeadParse::State::error) return p;
  std::size_t pos = line_end + 1;
  while (pos < end + 2) {
    const auto eol = rest.find("\r\n", pos);
    const auto line = rest.substr(pos, eol - pos);
    pos = eol + 2;
    if (line.front() == ' ' || line.front() == '\t') {
      return head_error(400, "obsolete_line_folding", "header line starts with whitespace");
    }
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) {
      return head_error(400, "malformed_header", "header line without a colon");
    }
    const auto name = line.substr(0, colon);
    if (!is_token(name)) return head_error(400, "malformed_header", "bad header name");
    const auto value = trim(line.substr(colon + 1));
    if (!is_field_value(value)) {
      return head_error(400, "malformed_header", "control character in a header value");
    }
    if (head.fields.size() == limits.max_fields) {
      return head_error(431, "too_many_headers", "more header fields than the limit");
    }
    head.fields.emplace_back(std::string(name), std::string(value));
  }
  p = decide_framing(head);
  if (p.state == HeadParse::State::error) return p;
  HeadParse done;
  done.state = HeadParse::State::complete;
  done.consumed = start + end + 4;
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
    if (line_.size() < 2 || line_[line_.size() - 2] != '\r') {
      return fail(400, "bad_chunk", "chunk line ends in LF without CR");
    }
    const std::string_view line(line_.data(), line_.size() - 2);
    if (phase_ == Phase::data_crlf) {
      if (!line.empty()) return fail(400, "bad_chunk", "chunk data longer than its size");
      phase_ = Phase::size;
    } else if (phase_ == Phase::size) {
      const auto digits = line.substr(0, line.find_first_of("; \t"));
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
