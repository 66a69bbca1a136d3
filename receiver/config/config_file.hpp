#pragma once
// The TOML subset read by `tdhook-receiver --config FILE`:
//   # comments, blank lines
//   [receiver]                 a table
//   [[sink]]                   an element of an array of tables
//   key = "basic string"       escapes \" \\ \n \t \r \uXXXX
//   key = 'literal string'
//   key = 42                   integers (sign and _ separators allowed)
//   key = true                 booleans
//   key = ["a", 'b']           arrays of strings, on one line or several, trailing comma allowed
// Anything else (floats, dates, inline tables, dotted keys, multi-line strings) is an error with
// the file name and line number. Keys at the top, before any table, are an error too: the
// receiver's keys live in [receiver].

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tdhook/result.hpp"

namespace tdhook::receiver {

struct TomlValue {
  enum class Kind { string, integer, boolean, array };
  Kind kind = Kind::string;
  std::string text;                // string
  std::int64_t integer = 0;        // integer
  bool boolean = false;            // boolean
  std::vector<std::string> items;  // array of strings
  int line = 0;
};

struct TomlTable {
  std::string name;
  bool array_element = false;  // [[name]]
  int line = 0;
  std::vector<std::pair<std::string, TomlValue>> entries;  // in file order, keys unique
};

struct TomlDocument {
  std::string source;  // the file name, for messages
  std::vector<TomlTable> tables;
};

// invalid_config with "FILE:LINE: what is wrong" on any error.
Result<TomlDocument> parse_toml(std::string_view text, std::string_view source);

// "FILE:LINE: " prefix for messages about a value.
std::string toml_where(const TomlDocument& doc, int line);

// The kind in words ("a string", "an integer", ...), for messages.
std::string_view toml_kind_name(TomlValue::Kind kind) noexcept;

}  // namespace tdhook::receiver
