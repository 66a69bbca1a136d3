#pragma once
// The file read by `tdhook-receiver --config FILE`: TOML 1.0, parsed by toml++, then reduced to
// the shape the receiver uses:
//   [receiver]                 a table
//   [[sink]]                   an element of an array of tables
//   key = "basic string"       any TOML string: basic, 'literal', multi-line
//   key = 42                   integers (64-bit; sign, _ separators, 0x / 0o / 0b)
//   key = true                 booleans
//   key = ["a", 'b']           arrays of strings
// Values the receiver has no use for (floats, dates and times, arrays of anything but strings,
// tables inside tables) are an error with the file name, line and column. Keys at the top, before
// any table, are an error too: the receiver's keys live in [receiver].
//
// The document is copied out of toml++'s tree into the plain structs below so that only
// config_file.cpp sees toml++ (its header is heavy, and it is compiled without exceptions).

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
  int line = 0;                    // where the value starts, 1-based
  int column = 0;                  // in characters (UTF-8 code points), 1-based
};

struct TomlTable {
  std::string name;
  bool array_element = false;  // [[name]]
  int line = 0;
  int column = 0;
  std::vector<std::pair<std::string, TomlValue>> entries;  // in file order, keys unique
};

struct TomlDocument {
  std::string source;             // the file name, for messages
  std::vector<TomlTable> tables;  // in file order
};

// invalid_config with "FILE:LINE:COLUMN: what is wrong" on any error.
Result<TomlDocument> parse_toml(std::string_view text, std::string_view source);

// "FILE:LINE: " prefix for messages about a value (they name its key, which places it on the
// line).
std::string toml_where(const TomlDocument& doc, int line);

// The kind in words ("a string", "an integer", ...), for messages.
std::string_view toml_kind_name(TomlValue::Kind kind) noexcept;

}  // namespace tdhook::receiver
