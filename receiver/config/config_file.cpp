#include "config/config_file.hpp"

#include <cctype>
#include <limits>

namespace tdhook::receiver {
namespace {

// Reads one document line by line; a value (an array) may continue on following lines.
class Parser {
 public:
  Parser(std::string_view text, std::string_view source) : text_(text) {
    doc_.source = std::string(source);
  }

  Result<TomlDocument> run() {
    while (next_line()) {
      skip_space();
      if (at_end_of_line()) continue;
      Status step = peek() == '[' ? parse_header() : parse_key_value();
      if (!step) return std::move(step).error();
    }
    return std::move(doc_);
  }

 private:
  Error fail(std::string what) const {
    return Error{ErrorCode::invalid_config, toml_where(doc_, line_no_) + what};
  }

  bool next_line() {
    if (next_ >= text_.size() && line_no_ > 0) return false;
    if (next_ > text_.size()) return false;
    const auto end = text_.find('\n', next_);
    line_ =
        text_.substr(next_, end == std::string_view::npos ? std::string_view::npos : end - next_);
    if (!line_.empty() && line_.back() == '\r') line_.remove_suffix(1);
    next_ = end == std::string_view::npos ? text_.size() + 1 : end + 1;
    pos_ = 0;
    ++line_no_;
    return true;
  }

  char peek() const { return pos_ < line_.size() ? line_[pos_] : '\0'; }
  void skip_space() {
    while (pos_ < line_.size() && (line_[pos_] == ' ' || line_[pos_] == '\t')) ++pos_;
  }
  bool at_end_of_line() const { return pos_ >= line_.size() || line_[pos_] == '#'; }

  Status expect_end_of_line() {
    skip_space();
    if (!at_end_of_line()) return fail("unexpected text after the value: " + rest());
    return Ok{};
  }
  std::string rest() const { return std::string(line_.substr(pos_)); }

  static bool is_bare_key_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-';
  }

  std::string bare_key() {
    const auto start = pos_;
    while (pos_ < line_.size() && is_bare_key_char(line_[pos_])) ++pos_;
    return std::string(line_.substr(start, pos_ - start));
  }

  Status parse_header() {
    const bool array = line_.substr(pos_).starts_with("[[");
    pos_ += array ? 2 : 1;
    skip_space();
    auto name = bare_key();
    skip_space();
    if (name.empty()) return fail("expected a table name after '['");
    if (line_.substr(pos_).starts_with(array ? "]]" : "]")) {
      pos_ += array ? 2 : 1;
    } else {
      return fail(array ? "expected ']]' after [[" + name : "expected ']' after [" + name);
    }
    if (!array) {
      for (const auto& t : doc_.tables) {
        if (t.name == name) return fail("table [" + name + "] is defined twice");
      }
    }
    doc_.tables.push_back(TomlTable{name, array, line_no_, {}});
    return expect_end_of_line();
  }

  Status parse_key_value() {
    auto key = bare_key();
    if (key.empty()) return fail("expected a key (letters, digits, _ or -), got: " + rest());
    skip_space();
    if (peek() == '.') return fail("dotted keys are not supported: " + key + rest());
    if (peek() != '=') return fail("expected '=' after " + key);
    ++pos_;
    skip_space();
    if (doc_.tables.empty()) {
      return fail("key '" + key + "' outside of a table: put it under [receiver] or [[sink]]");
    }
    auto& table = doc_.tables.back();
    for (const auto& [existing, value] : table.entries) {
      if (existing == key) return fail("key '" + key + "' is given twice in this table");
    }
    TomlValue value;
    value.line = line_no_;
    if (auto parsed = parse_value(value); !parsed) return parsed;
    table.entries.emplace_back(std::move(key), std::move(value));
    return expect_end_of_line();
  }

  Status parse_value(TomlValue& value) {
    const char c = peek();
    if (c == '"' || c == '\'') {
      value.kind = TomlValue::Kind::string;
      return parse_string(value.text);
    }
    if (c == '[') {
      value.kind = TomlValue::Kind::array;
      return parse_array(value.items);
    }
    if (line_.substr(pos_).starts_with("true") || line_.substr(pos_).starts_with("false")) {
      value.kind = TomlValue::Kind::boolean;
      value.boolean = line_[pos_] == 't';
      pos_ += value.boolean ? 4 : 5;
      return Ok{};
    }
    if (c == '+' || c == '-' || std::isdigit(static_cast<unsigned char>(c)) != 0) {
      value.kind = TomlValue::Kind::integer;
      return parse_integer(value.integer);
    }
    if (at_end_of_line()) return fail("missing value");
    return fail("unsupported value (use a \"string\", an integer, true/false or [\"a\", \"b\"]): " +
                rest());
  }

  Status parse_integer(std::int64_t& out) {
    bool negative = false;
    if (peek() == '+' || peek() == '-') negative = line_[pos_++] == '-';
    std::uint64_t magnitude = 0;
    bool digits = false;
    constexpr auto limit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    while (pos_ < line_.size() && (std::isdigit(static_cast<unsigned char>(line_[pos_])) != 0 ||
                                   (line_[pos_] == '_' && digits))) {
      if (line_[pos_] != '_') {
        const auto digit = static_cast<std::uint64_t>(line_[pos_] - '0');
        // Checked before the multiplication, which would wrap around 2^64.
        if (magnitude > (limit - digit) / 10) return fail("integer out of range");
        magnitude = magnitude * 10 + digit;
        digits = true;
      }
      ++pos_;
    }
    if (!digits) return fail("expected digits: " + rest());
    if (pos_ < line_.size() &&
        (std::isalpha(static_cast<unsigned char>(line_[pos_])) != 0 || line_[pos_] == '.')) {
      return fail("not an integer (durations and sizes with units are strings, e.g. \"30s\"): " +
                  rest());
    }
    out = negative ? -static_cast<std::int64_t>(magnitude) : static_cast<std::int64_t>(magnitude);
    return Ok{};
  }

  Status parse_string(std::string& out) {
    const char quote = line_[pos_++];
    if (line_.substr(pos_).starts_with(std::string(2, quote))) {
      return fail("multi-line strings are not supported");
    }
    while (pos_ < line_.size()) {
      const char c = line_[pos_++];
      if (c == quote) return Ok{};
      if (c == '\\' && quote == '"') {
        if (auto escaped = parse_escape(out); !escaped) return escaped;
      } else {
        out += c;
      }
    }
    return fail("unterminated string");
  }

  Status parse_escape(std::string& out) {
    if (pos_ >= line_.size()) return fail("unterminated string");
    const char e = line_[pos_++];
    switch (e) {
      case '"':
        out += '"';
        return Ok{};
      case '\\':
        out += '\\';
        return Ok{};
      case 'n':
        out += '\n';
        return Ok{};
      case 't':
        out += '\t';
        return Ok{};
      case 'r':
        out += '\r';
        return Ok{};
      case 'u':
        return parse_unicode_escape(out);
      default:
        return fail(std::string("unknown escape \\") + e);
    }
  }

  Status parse_unicode_escape(std::string& out) {
    if (pos_ + 4 > line_.size()) return fail("\\u needs four hex digits");
    unsigned code = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = line_[pos_++];
      if (std::isxdigit(static_cast<unsigned char>(h)) == 0) return fail("bad \\u escape");
      code = code * 16 + static_cast<unsigned>(std::isdigit(static_cast<unsigned char>(h)) != 0
                                                   ? h - '0'
                                                   : (std::tolower(h) - 'a' + 10));
    }
    if (code >= 0xd800 && code <= 0xdfff) return fail("\\u escape of a surrogate");
    if (code < 0x80) {
      out += static_cast<char>(code);
    } else if (code < 0x800) {
      out += static_cast<char>(0xc0 | (code >> 6));
      out += static_cast<char>(0x80 | (code & 0x3f));
    } else {
      out += static_cast<char>(0xe0 | (code >> 12));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (code & 0x3f));
    }
    return Ok{};
  }

  // Skips spaces, comments and line ends inside an array.
  bool skip_array_space() {
    while (true) {
      skip_space();
      if (!at_end_of_line()) return true;
      if (!next_line()) return false;
    }
  }

  Status parse_array(std::vector<std::string>& items) {
    const int start_line = line_no_;
    ++pos_;  // '['
    while (true) {
      if (!skip_array_space()) {
        line_no_ = start_line;
        return fail("unterminated array");
      }
      if (peek() == ']') {
        ++pos_;
        return Ok{};
      }
      if (peek() != '"' && peek() != '\'') {
        return fail("arrays may only hold strings, got: " + rest());
      }
      std::string item;
      if (auto s = parse_string(item); !s) return s;
      items.push_back(std::move(item));
      if (!skip_array_space()) {
        line_no_ = start_line;
        return fail("unterminated array");
      }
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != ']') {
        return fail("expected ',' or ']' in array, got: " + rest());
      }
    }
  }

  std::string_view text_;
  std::size_t next_ = 0;
  std::string_view line_;
  std::size_t pos_ = 0;
  int line_no_ = 0;
  TomlDocument doc_;
};

}  // namespace

Result<TomlDocument> parse_toml(std::string_view text, std::string_view source) {
  return Parser(text, source).run();
}

std::string toml_where(const TomlDocument& doc, int line) {
  return doc.source + ":" + std::to_string(line) + ": ";
}

std::string_view toml_kind_name(TomlValue::Kind kind) noexcept {
  switch (kind) {
    case TomlValue::Kind::string:
      return "a string";
    case TomlValue::Kind::integer:
      return "an integer";
    case TomlValue::Kind::boolean:
      return "a boolean";
    case TomlValue::Kind::array:
      return "an array";
  }
  return "a value";
}

}  // namespace tdhook::receiver
