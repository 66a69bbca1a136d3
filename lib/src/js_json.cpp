#include "js_json.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <system_error>
#include <unordered_map>
#include <utility>

namespace tdhook::detail {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void append_u_escape(std::string& out, unsigned unit) {
  out += "\\u";
  for (int shift = 12; shift >= 0; shift -= 4) out += kHex[(unit >> shift) & 0xFU];
}

// JSON.stringify's escaping of one ASCII character (QuoteJSONString).
void append_ascii(std::string& out, unsigned char c) {
  switch (c) {
    case '"':
      out += "\\\"";
      return;
    case '\\':
      out += "\\\\";
      return;
    case '\b':
      out += "\\b";
      return;
    case '\f':
      out += "\\f";
      return;
    case '\n':
      out += "\\n";
      return;
    case '\r':
      out += "\\r";
      return;
    case '\t':
      out += "\\t";
      return;
    default:
      if (c < 0x20) {
        append_u_escape(out, c);
      } else {
        out += static_cast<char>(c);
      }
  }
}

// A code point that is not a surrogate.
void append_code_point(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    append_ascii(out, static_cast<unsigned char>(cp));
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Length of the well-formed UTF-8 sequence starting at text[pos] (a non-ASCII lead byte), or 0.
std::size_t utf8_length(std::string_view text, std::size_t pos) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[pos + i]); };
  const unsigned char lead = byte(0);
  std::size_t len = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    len = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    len = 3;
    if (lead == 0xE0) lo = 0xA0;  // overlong
    if (lead == 0xED) hi = 0x9F;  // UTF-16 surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    len = 4;
    if (lead == 0xF0) lo = 0x90;  // overlong
    if (lead == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (text.size() - pos < len) return 0;
  if (byte(1) < lo || byte(1) > hi) return 0;
  for (std::size_t i = 2; i < len; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return 0;
  }
  return len;
}

bool is_array_index(std::string_view key_json) {
  const std::string_view digits = key_json.substr(1, key_json.size() - 2);
  if (digits.empty() || digits.size() > 10) return false;
  if (digits.size() > 1 && digits[0] == '0') return false;
  std::uint64_t value = 0;
  for (const char c : digits) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return value <= 4294967294ULL;  // 2^32 - 2, the largest array index
}

std::uint64_t index_value(std::string_view key_json) {
  std::uint64_t value = 0;
  for (const char c : key_json.substr(1, key_json.size() - 2)) {
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return value;
}

// OrdinaryOwnPropertyKeys: array indices ascending, then the other keys in creation order.
void order_like_javascript(std::vector<JsMember>& members) {
  const auto mid = std::stable_partition(
      members.begin(), members.end(), [](const JsMember& m) { return is_array_index(m.key_json); });
  std::sort(members.begin(), mid, [](const JsMember& a, const JsMember& b) {
    return index_value(a.key_json) < index_value(b.key_json);
  });
}

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  Result<JsValue> parse_document() {
    skip_ws();
    JsValue value;
    if (!parse_value(value, 0)) return failure();
    skip_ws();
    if (pos_ != text_.size()) {
      error_ = "unexpected content after the JSON value";
      return failure();
    }
    return value;
  }

 private:
  Error failure() const {
    return Error{ErrorCode::invalid_input,
                 "invalid JSON at byte " + std::to_string(pos_) + ": " + error_};
  }

  bool fail(const char* why) {
    error_ = why;
    return false;
  }

  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return at_end() ? '\0' : text_[pos_]; }

  void skip_ws() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) {
      ++pos_;
    }
  }

  bool parse_value(JsValue& out, std::size_t depth) {
    if (at_end()) return fail("unexpected end of input");
    switch (peek()) {
      case '{':
        return parse_object(out, depth + 1);
      case '[':
        return parse_array(out, depth + 1);
      case '"':
        out.kind = JsValue::Kind::string;
        return parse_string(out.string_json);
      case 't':
        return parse_literal("true", out, JsValue::Kind::boolean, true);
      case 'f':
        return parse_literal("false", out, JsValue::Kind::boolean, false);
      case 'n':
        return parse_literal("null", out, JsValue::Kind::null, false);
      default:
        return parse_number(out);
    }
  }

  bool parse_literal(std::string_view word, JsValue& out, JsValue::Kind kind, bool flag) {
    if (text_.substr(pos_, word.size()) != word) return fail("unexpected character");
    pos_ += word.size();
    out.kind = kind;
    out.boolean = flag;
    return true;
  }

  bool parse_object(JsValue& out, std::size_t depth) {
    if (depth > js_max_depth) return fail("nesting too deep");
    out.kind = JsValue::Kind::object;
    ++pos_;
    skip_ws();
    if (peek() == '}') {
      ++pos_;
      return true;
    }
    // Positions by key, only built for big objects so that small ones stay cheap.
    std::unordered_map<std::string, std::size_t> positions;
    while (true) {
      if (peek() != '"') return fail("expected a string key");
      JsMember member;
      if (!parse_string(member.key_json)) return false;
      skip_ws();
      if (peek() != ':') return fail("expected ':'");
      ++pos_;
      skip_ws();
      if (!parse_value(member.value, depth)) return false;
      add_member(out.members, positions, std::move(member));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        skip_ws();
        continue;
      }
      if (peek() != '}') return fail("expected ',' or '}'");
      ++pos_;
      break;
    }
    order_like_javascript(out.members);
    return true;
  }

  // A duplicated key keeps its first position and takes the last value, as JSON.parse does.
  static void add_member(std::vector<JsMember>& members,
                         std::unordered_map<std::string, std::size_t>& positions, JsMember member) {
    constexpr std::size_t kLinearLimit = 16;
    if (members.size() < kLinearLimit) {
      for (auto& existing : members) {
        if (existing.key_json == member.key_json) {
          existing.value = std::move(member.value);
          return;
        }
      }
    } else {
      if (positions.empty()) {
        for (std::size_t i = 0; i < members.size(); ++i) positions.emplace(members[i].key_json, i);
      }
      const auto [it, inserted] = positions.try_emplace(member.key_json, members.size());
      if (!inserted) {
        members[it->second].value = std::move(member.value);
        return;
      }
    }
    members.push_back(std::move(member));
  }

  bool parse_array(JsValue& out, std::size_t depth) {
    if (depth > js_max_depth) return fail("nesting too deep");
    out.kind = JsValue::Kind::array;
    ++pos_;
    skip_ws();
    if (peek() == ']') {
      ++pos_;
      return true;
    }
    while (true) {
      out.items.emplace_back();
      if (!parse_value(out.items.back(), depth)) return false;
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        skip_ws();
        continue;
      }
      if (peek() != ']') return fail("expected ',' or ']'");
      ++pos_;
      return true;
    }
  }

  // Writes the JSON.stringify form of the string at pos_ (an opening quote) into `out`.
  bool parse_string(std::string& out) {
    out = "\"";
    ++pos_;
    while (true) {
      if (at_end()) return fail("unterminated string");
      const auto c = static_cast<unsigned char>(text_[pos_]);
      if (c == '"') {
        ++pos_;
        out += '"';
        return true;
      }
      if (c == '\\') {
        if (!parse_escape(out)) return false;
      } else if (c < 0x20) {
        return fail("control character in string");
      } else if (c < 0x80) {
        append_ascii(out, c);
        ++pos_;
      } else {
        const std::size_t len = utf8_length(text_, pos_);
        if (len == 0) return fail("invalid UTF-8");
        out.append(text_.substr(pos_, len));
        pos_ += len;
      }
    }
  }

  bool read_hex4(std::size_t at, unsigned& unit) const {
    if (text_.size() < at + 4) return false;
    unit = 0;
    for (std::size_t i = at; i < at + 4; ++i) {
      const char h = text_[i];
      unsigned digit = 0;
      if (h >= '0' && h <= '9') {
        digit = static_cast<unsigned>(h - '0');
      } else if (h >= 'a' && h <= 'f') {
        digit = static_cast<unsigned>(h - 'a' + 10);
      } else if (h >= 'A' && h <= 'F') {
        digit = static_cast<unsigned>(h - 'A' + 10);
      } else {
        return false;
      }
      unit = unit * 16 + digit;
    }
    return true;
  }

  bool parse_escape(std::string& out) {
    if (text_.size() < pos_ + 2) return fail("unterminated string");
    const char e = text_[pos_ + 1];
    const std::string_view simple = "\"\\/bfnrt";
    const std::string_view decoded = "\"\\/\b\f\n\r\t";
    if (const auto at = simple.find(e); at != std::string_view::npos) {
      append_ascii(out, static_cast<unsigned char>(decoded[at]));
      pos_ += 2;
      return true;
    }
    if (e != 'u') return fail("invalid escape");
    unsigned unit = 0;
    if (!read_hex4(pos_ + 2, unit)) return fail("invalid \\u escape");
    pos_ += 6;
    if (unit >= 0xD800 && unit <= 0xDBFF) {
      unsigned low = 0;
      if (text_.substr(pos_, 2) == "\\u" && read_hex4(pos_ + 2, low) && low >= 0xDC00 &&
          low <= 0xDFFF) {
        pos_ += 6;
        append_code_point(out, 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00));
        return true;
      }
    }
    if (unit >= 0xD800 && unit <= 0xDFFF) {
      append_u_escape(out, unit);  // a lone surrogate: JSON.stringify escapes it
    } else {
      append_code_point(out, unit);
    }
    return true;
  }

  bool scan_digits() {
    const std::size_t start = pos_;
    while (!at_end() && peek() >= '0' && peek() <= '9') ++pos_;
    return pos_ > start;
  }

  bool parse_number(JsValue& out) {
    const std::size_t start = pos_;
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
    } else if (!scan_digits()) {
      return fail("unexpected character");
    }
    if (peek() == '.') {
      ++pos_;
      if (!scan_digits()) return fail("expected a digit after '.'");
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!scan_digits()) return fail("expected a digit in the exponent");
    }
    out.kind = JsValue::Kind::number;
    out.number = to_double(text_.substr(start, pos_ - start));
    return true;
  }

  // The nearest double, as JSON.parse gives; beyond the double range, +-Infinity or +-0.
  static double to_double(std::string_view literal) {
    double value = 0.0;
    const auto [ptr, ec] = std::from_chars(literal.data(), literal.data() + literal.size(), value);
    if (ec != std::errc::result_out_of_range) return value;
    const double magnitude =
        decimal_magnitude(literal) > 0 ? std::numeric_limits<double>::infinity() : 0.0;
    return literal.front() == '-' ? -magnitude : magnitude;
  }

  // Roughly log10 of a validated literal: only its sign matters, far from zero.
  static long decimal_magnitude(std::string_view literal) {
    long exponent = 0;
    if (const auto e = literal.find_first_of("eE"); e != std::string_view::npos) {
      long parsed = 0;
      auto rest = literal.substr(e + 1);
      if (!rest.empty() && rest.front() == '+') rest.remove_prefix(1);
      const auto res = std::from_chars(rest.data(), rest.data() + rest.size(), parsed);
      exponent = res.ec == std::errc() ? parsed : (rest.front() == '-' ? -100000 : 100000);
      literal = literal.substr(0, e);
    }
    const auto first = literal.find_first_of("123456789");
    if (first == std::string_view::npos) return 0;
    const auto dot = literal.find('.');
    const long before = static_cast<long>(dot == std::string_view::npos ? literal.size() : dot);
    const long position = static_cast<long>(first);
    return exponent + (position < before ? before - position : before - position + 1);
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  const char* error_ = "";
};

}  // namespace

JsValue JsValue::make_number(double value) {
  JsValue v;
  v.kind = Kind::number;
  v.number = value;
  return v;
}

JsValue JsValue::make_string(std::string_view text) {
  JsValue v;
  v.kind = Kind::string;
  v.string_json = js_quote(text);
  return v;
}

JsValue* JsValue::find(std::string_view key) {
  for (auto& member : members) {
    const std::string_view k = member.key_json;
    if (k.size() == key.size() + 2 && k.substr(1, key.size()) == key) return &member.value;
  }
  return nullptr;
}

const JsValue* JsValue::find(std::string_view key) const {
  return const_cast<JsValue*>(this)->find(key);  // NOLINT: same lookup, no mutation
}

std::string js_quote(std::string_view utf8) {
  std::string out = "\"";
  out.reserve(utf8.size() + 2);
  for (const char ch : utf8) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x80) {
      append_ascii(out, c);
    } else {
      out += ch;
    }
  }
  out += '"';
  return out;
}

std::string js_number_to_string(double value) {
  if (!std::isfinite(value)) return "null";
  if (value == 0.0) return "0";  // also -0
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::scientific);
  const std::string_view sci(buf, static_cast<std::size_t>(res.ptr - buf));
  // Shortest round-trip digits "d.ddde+XX" -> digits s (k of them) and n, value = 0.s * 10^n.
  const bool negative = sci.front() == '-';
  const auto e = sci.find('e');
  std::string digits;
  for (const char c : sci.substr(negative ? 1 : 0, e - (negative ? 1 : 0))) {
    if (c != '.') digits += c;
  }
  int exponent = 0;
  auto exp_text = sci.substr(e + 1);
  if (exp_text.front() == '+') exp_text.remove_prefix(1);
  std::from_chars(exp_text.data(), exp_text.data() + exp_text.size(), exponent);
  const int k = static_cast<int>(digits.size());
  const int n = exponent + 1;

  // Number::toString, ECMA-262 §6.1.6.1.20 steps 6-10.
  std::string out = negative ? "-" : "";
  if (k <= n && n <= 21) {
    out += digits;
    out.append(static_cast<std::size_t>(n - k), '0');
  } else if (0 < n && n <= 21) {
    out += digits.substr(0, static_cast<std::size_t>(n));
    out += '.';
    out += digits.substr(static_cast<std::size_t>(n));
  } else if (-6 < n && n <= 0) {
    out += "0.";
    out.append(static_cast<std::size_t>(-n), '0');
    out += digits;
  } else {
    out += digits[0];
    if (k > 1) {
      out += '.';
      out += digits.substr(1);
    }
    out += 'e';
    out += n - 1 >= 0 ? '+' : '-';
    out += std::to_string(n - 1 >= 0 ? n - 1 : 1 - n);
  }
  return out;
}

Result<JsValue> parse_js_json(std::string_view text) { return Parser(text).parse_document(); }

void append_js_json(const JsValue& value, std::string& out) {
  switch (value.kind) {
    case JsValue::Kind::null:
      out += "null";
      return;
    case JsValue::Kind::boolean:
      out += value.boolean ? "true" : "false";
      return;
    case JsValue::Kind::number:
      out += js_number_to_string(value.number);
      return;
    case JsValue::Kind::string:
      out += value.string_json;
      return;
    case JsValue::Kind::array:
      out += '[';
      for (std::size_t i = 0; i < value.items.size(); ++i) {
        if (i > 0) out += ',';
        append_js_json(value.items[i], out);
      }
      out += ']';
      return;
    case JsValue::Kind::object:
      out += '{';
      for (std::size_t i = 0; i < value.members.size(); ++i) {
        if (i > 0) out += ',';
        out += value.members[i].key_json;
        out += ':';
        append_js_json(value.members[i].value, out);
      }
      out += '}';
      return;
  }
}

std::string stringify_js_json(const JsValue& value) {
  std::string out;
  append_js_json(value, out);
  return out;
}

}  // namespace tdhook::detail
