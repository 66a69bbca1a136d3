#pragma once
// JSON with JavaScript's semantics: what JSON.parse builds and JSON.stringify prints, to the byte.
//
// Tiledesk's bodies and token claims are JSON.stringify output, so reproducing them needs
// JavaScript's rules rather than a generic JSON printer's: every number is a double printed by
// Number.prototype.toString; an object lists its array-index keys ("0", "17") first in numeric
// order, then the other keys in insertion order; a duplicated key keeps the LAST value at the
// FIRST key's position; strings are escaped as JSON.stringify does (lone surrogates included).
// We parse ourselves because generic parsers reject lone surrogate escapes and turn numbers into
// integers.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "tdhook/result.hpp"

namespace tdhook::detail {

struct JsMember;

struct JsValue {
  enum class Kind { null, boolean, number, string, array, object };

  Kind kind = Kind::null;
  bool boolean = false;
  double number = 0.0;
  // For a string: its JSON.stringify form, quotes included. Keeping the printed form makes key
  // comparison exact (the escaping is injective) and lets lone surrogates survive.
  std::string string_json;
  std::vector<JsValue> items;     // array
  std::vector<JsMember> members;  // object, in JavaScript's enumeration order

  static JsValue make_number(double value);
  // `text` must be valid UTF-8.
  static JsValue make_string(std::string_view text);

  // The member whose key is the plain ASCII `key` (no character that needs escaping), or null.
  JsValue* find(std::string_view key);
  const JsValue* find(std::string_view key) const;
};

struct JsMember {
  std::string key_json;  // JSON.stringify form of the key, quotes included
  JsValue value;
};

// Nesting deeper than this is refused, like simdjson's default, so that what the verifier
// accepts can always be re-serialized and a hostile input cannot exhaust the stack.
inline constexpr std::size_t js_max_depth = 1024;

// JSON.parse. invalid_input for text that JSON.parse would refuse, for invalid UTF-8 and for
// nesting deeper than js_max_depth.
Result<JsValue> parse_js_json(std::string_view text);

// JSON.stringify, appended to `out`.
void append_js_json(const JsValue& value, std::string& out);
std::string stringify_js_json(const JsValue& value);

// Number.prototype.toString() as JSON.stringify uses it; non-finite values print as "null".
std::string js_number_to_string(double value);

// JSON.stringify of a string given as valid UTF-8, quotes included.
std::string js_quote(std::string_view utf8);

}  // namespace tdhook::detail
