#pragma once
// JSON-lines logging on stderr (stdout belongs to the stdout sink). One line per call:
//   {"ts":"2026-11-26T19:40:40.123Z","level":"info","msg":"listening","addr":"127.0.0.1:8080"}
// Thread-safe; a line is written with one write(2). Never pass a secret or a token as a field.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tdhook::receiver {

// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is invalid (overlong forms,
// surrogates and code points past U+10FFFF included). Log lines and stored errors use it to stay
// valid JSON whatever bytes a script or a remote app sent.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept;

enum class LogLevel { debug, info, warn, error };
bool parse_log_level(std::string_view text, LogLevel& out) noexcept;

// A field value is printed as a JSON string unless it is added as a number or bool.
class LogFields {
 public:
  LogFields& add(std::string_view key, std::string_view value);
  LogFields& add(std::string_view key, const char* value) {
    return add(key, std::string_view(value));
  }
  LogFields& add(std::string_view key, std::int64_t value);
  LogFields& add(std::string_view key, int value) {
    return add(key, static_cast<std::int64_t>(value));
  }
  LogFields& add(std::string_view key, double value);
  LogFields& add(std::string_view key, bool value);
  const std::string& json() const noexcept { return text_; }  // ,"k":v,... (leading comma)

 private:
  std::string text_;
};

class Logger {
 public:
  explicit Logger(LogLevel min_level = LogLevel::info, int fd = 2) : min_(min_level), fd_(fd) {}
  void log(LogLevel level, std::string_view msg, const LogFields& fields = {}) const;
  void debug(std::string_view msg, const LogFields& f = {}) const { log(LogLevel::debug, msg, f); }
  void info(std::string_view msg, const LogFields& f = {}) const { log(LogLevel::info, msg, f); }
  void warn(std::string_view msg, const LogFields& f = {}) const { log(LogLevel::warn, msg, f); }
  void error(std::string_view msg, const LogFields& f = {}) const { log(LogLevel::error, msg, f); }
  bool enabled(LogLevel level) const noexcept { return level >= min_; }

 private:
  LogLevel min_;
  int fd_;
};

}  // namespace tdhook::receiver
