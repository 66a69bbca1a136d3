#include "config/config_file.hpp"

#include <toml++/toml.h>
#include <algorithm>
#include <cctype>

// cmake/Dependencies.cmake gives toml++ TOML_EXCEPTIONS=0: a parse error must come back as a
// toml::parse_result, never as an exception through our Result-returning API.
#if TOML_EXCEPTIONS
#error "toml++ must be compiled with TOML_EXCEPTIONS=0 (the tdhook_tomlplusplus target)"
#endif

namespace tdhook::receiver {
namespace {

std::string where(const std::string& source, const toml::source_position& at) {
  return source + ":" + std::to_string(at.line) + ":" + std::to_string(at.column) + ": ";
}

std::string_view node_kind_name(toml::node_type type) noexcept {
  switch (type) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a floating-point number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "a value";
}

// toml++'s words for a syntax error, with a hint where the old habit of writing a unit after a
// number ("30s", "8MiB") is the likely cause: those are strings here.
std::string syntax_error_text(std::string_view description) {
  std::string text(description);
  if (!text.empty()) text.front() = static_cast<char>(std::tolower(text.front()));
  const bool in_number = text.find("integer:") != std::string::npos ||
                         text.find("floating-point:") != std::string::npos;
  const auto saw = text.rfind("saw '");
  if (in_number && saw != std::string::npos && saw + 5 < text.size() &&
      std::isalpha(static_cast<unsigned char>(text[saw + 5])) != 0) {
    text += " (durations and sizes with units are strings, e.g. \"30s\")";
  }
  return text;
}

bool before(int line_a, int column_a, int line_b, int column_b) {
  return line_a != line_b ? line_a < line_b : column_a < column_b;
}

// Copies toml++'s tree into a TomlDocument, refusing what the receiver cannot use.
class Reader {
 public:
  explicit Reader(std::string_view source) { doc_.source = std::string(source); }

  Result<TomlDocument> run(const toml::table& root) {
    for (auto&& [key, node] : root) {
      const std::string name(key.str());
      if (const auto* table = node.as_table()) {
        if (auto read = read_table(name, false, *table); !read) return std::move(read).error();
      } else if (const auto* array = node.as_array();
                 array != nullptr && array->is_array_of_tables()) {
        for (const auto& element : *array) {
          if (auto read = read_table(name, true, *element.as_table()); !read)
            return std::move(read).error();
        }
      } else {
        return fail(key.source().begin, "key '" + name +
                                            "' outside of a table: put it under [receiver] or "
                                            "[[sink]]");
      }
    }
    // toml++ keeps a table's keys sorted by name; file order makes the first error reported the
    // first one in the file, and [[sink]] elements keep their order either way.
    std::stable_sort(doc_.tables.begin(), doc_.tables.end(), [](const auto& a, const auto& b) {
      return before(a.line, a.column, b.line, b.column);
    });
    return std::move(doc_);
  }

 private:
  Error fail(const toml::source_position& at, const std::string& what) const {
    return Error{ErrorCode::invalid_config, where(doc_.source, at) + what};
  }

  Status read_table(const std::string& name, bool array_element, const toml::table& table) {
    const auto& at = table.source().begin;
    TomlTable out{name, array_element, static_cast<int>(at.line), static_cast<int>(at.column), {}};
    for (auto&& [key, node] : table) {
      TomlValue value;
      if (auto read = read_value(std::string(key.str()), node, value); !read) return read;
      out.entries.emplace_back(std::string(key.str()), std::move(value));
    }
    std::stable_sort(out.entries.begin(), out.entries.end(), [](const auto& a, const auto& b) {
      return before(a.second.line, a.second.column, b.second.line, b.second.column);
    });
    doc_.tables.push_back(std::move(out));
    return Ok{};
  }

  Status read_value(const std::string& key, const toml::node& node, TomlValue& out) {
    const auto& at = node.source().begin;
    out.line = static_cast<int>(at.line);
    out.column = static_cast<int>(at.column);
    if (const auto* s = node.as_string()) {
      out.kind = TomlValue::Kind::string;
      out.text = s->get();
    } else if (const auto* i = node.as_integer()) {
      out.kind = TomlValue::Kind::integer;
      out.integer = i->get();
    } else if (const auto* b = node.as_boolean()) {
      out.kind = TomlValue::Kind::boolean;
      out.boolean = b->get();
    } else if (const auto* array = node.as_array()) {
      out.kind = TomlValue::Kind::array;
      for (const auto& item : *array) {
        const auto* text = item.as_string();
        if (text == nullptr) {
          return fail(item.source().begin, key + ": arrays may only hold strings, got " +
                                               std::string(node_kind_name(item.type())));
        }
        out.items.emplace_back(text->get());
      }
    } else {
      return fail(at, key + ": unsupported value, " + std::string(node_kind_name(node.type())) +
                          " (use a \"string\", an integer, true/false or [\"a\", \"b\"])");
    }
    return Ok{};
  }

  TomlDocument doc_;
};

}  // namespace

Result<TomlDocument> parse_toml(std::string_view text, std::string_view source) {
  const toml::parse_result parsed = toml::parse(text, source);
  if (!parsed) {
    const auto& e = parsed.error();
    return Error{ErrorCode::invalid_config,
                 where(std::string(source), e.source().begin) + syntax_error_text(e.description())};
  }
  return Reader(source).run(parsed.table());
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
