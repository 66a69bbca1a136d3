#include "base/log.hpp"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <ctime>

namespace tdhook::receiver {
namespace {

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const std::size_t len = utf8_sequence_length(s, i);
      if (len == 0) {
        out += "\\ufffd";
        ++i;
      } else {
        out.append(s.substr(i, len));
        i += len;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0x0f];
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  out += '"';
}

std::string_view level_name(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::debug:
      return "debug";
    case LogLevel::info:
      return "info";
    case LogLevel::warn:
      return "warn";
    case LogLevel::error:
      return "error";
  }
  return "info";
}

// "2026-11-26T19:40:40.123Z"
std::string utc_timestamp() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  std::tm tm{};
  gmtime_r(&now.tv_sec, &tm);
  char buf[40];
  const long ms = now.tv_nsec / 1000000;
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out(buf, n);
  char frac[8];
  frac[0] = '.';
  frac[1] = static_cast<char>('0' + ms / 100);
  frac[2] = static_cast<char>('0' + ms / 10 % 10);
  frac[3] = static_cast<char>('0' + ms % 10);
  frac[4] = 'Z';
  out.append(frac, 5);
  return out;
}

void write_all(int fd, std::string_view data) noexcept {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // nowhere left to report a failing log
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace

std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  std::size_t len = 0;
  unsigned min = 0;
  unsigned cp = 0;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2, min = 0x80, cp = c & 0x1fU;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3, min = 0x800, cp = c & 0x0fU;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4, min = 0x10000, cp = c & 0x07U;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xc0U) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3fU);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

bool parse_log_level(std::string_view text, LogLevel& out) noexcept {
  if (text == "debug") {
    out = LogLevel::debug;
  } else if (text == "info") {
    out = LogLevel::info;
  } else if (text == "warn" || text == "warning") {
    out = LogLevel::warn;
  } else if (text == "error") {
    out = LogLevel::error;
  } else {
    return false;
  }
  return true;
}

LogFields& LogFields::add(std::string_view key, std::string_view value) {
  text_ += ',';
  append_json_string(text_, key);
  text_ += ':';
  append_json_string(text_, value);
  return *this;
}

LogFields& LogFields::add(std::string_view key, std::int64_t value) {
  text_ += ',';
  append_json_string(text_, key);
  text_ += ':';
  text_ += std::to_string(value);
  return *this;
}

LogFields& LogFields::add(std::string_view key, double value) {
  text_ += ',';
  append_json_string(text_, key);
  text_ += ':';
  if (!std::isfinite(value)) {
    text_ += "null";  // JSON has no NaN or Infinity
    return *this;
  }
  char buf[32];
  const auto res = std::to_chars(buf, buf + sizeof buf, value);
  text_.append(buf, res.ptr);
  return *this;
}

LogFields& LogFields::add(std::string_view key, bool value) {
  text_ += ',';
  append_json_string(text_, key);
  text_ += value ? ":true" : ":false";
  return *this;
}

void Logger::log(LogLevel level, std::string_view msg, const LogFields& fields) const {
  if (!enabled(level)) return;
  std::string line = "{\"ts\":\"";
  line += utc_timestamp();
  line += "\",\"level\":\"";
  line += level_name(level);
  line += "\",\"msg\":";
  append_json_string(line, msg);
  line += fields.json();
  line += "}\n";
  write_all(fd_, line);
}

}  // namespace tdhook::receiver
